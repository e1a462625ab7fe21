"""The team's daily flows in the Dagster UI, in a real browser: Playwright driving Debian's Chromium
(headless) against the webserver and daemon of `servers.py`, on two versions of synthetic uploads.

Made beforehand, in process: version 1 has every asset, version 2 lacks kvc and statistical (and
so statistical's evaluation and the evaluation summary). The sensors are stopped so that only what a
person launches runs. The tests, in any order:
- the asset graph shows every asset with its partitions and how full each is;
- "Materialize unsynced" with the "Missing" partitions materializes what version 2 lacks;
- a feature asset's latest materialization shows its plots and its column schema;
- an evaluation's EER is plotted across both versions, and the summary shows every feature type's
  EER and its bar chart.
A launch is checked through the instance: exactly the expected (asset, version) pairs ran. (A
backfill run by the daemon is test_backfill.py's.) Screenshots of every step go to
$KEYSTROKE_TEST_ARTIFACTS (default test-artifacts/ui).
"""

import os
import re
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from playwright import sync_api

from keystroke_assets.definitions import defs
from keystroke_assets.synthetic import web_app_uploads, write_uploads

from .conftest import REPO, materialize_version, require, stored
from .servers import dagster_home, dagster_servers, instance_at, wait_for

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser, pytest.mark.servers]
require(CHROMIUM.exists(), "Debian's chromium is not installed: apt-get install chromium")

expect = sync_api.expect

ARTIFACTS = Path(os.environ.get("KEYSTROKE_TEST_ARTIFACTS", REPO / "test-artifacts" / "ui"))
V1, V2 = "2025-09-01_10-00-00_lab-mac", "2025-09-02_10-00-00_lab-mac"
VERSIONS = [V1, V2]
ALL_KEYS = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.to_user_string())
NOT_MADE_IN_V2 = [dg.AssetKey(["features", "kvc"]), dg.AssetKey(["features", "statistical"])]
# and so neither is what is made from them (statistical's evaluation, the evaluation summary)
MISSING_IN_V2 = sorted(
    dg.AssetSelection.assets(*NOT_MADE_IN_V2).downstream().resolve(defs.resolve_asset_graph()),
    key=lambda k: k.to_user_string(),
)
FEATURE_KEYS = [k for k in ALL_KEYS if k.path[0] == "features"]
RUN_TIMEOUT_S = 420  # a run worker imports Dagster and the code location: slow on a loaded machine
UI_TIMEOUT_MS = 60_000


def user_string(key: dg.AssetKey) -> str:
    return key.to_user_string()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Uploads, both versions materialized as described above, then the webserver and the daemon
    with the sensors stopped. Yields (servers, instance opened on the same DAGSTER_HOME)."""
    root = tmp_path_factory.mktemp("ui")
    env = {"KEYSTROKE_UPLOADS": str(root / "uploads"), "KEYSTROKE_STORAGE": str(root / "storage")}
    assert set(NOT_MADE_IN_V2) <= set(FEATURE_KEYS)
    write_uploads(root / "uploads", web_app_uploads(4, seed=7, broken_every=0))
    home = dagster_home(root / "home")
    with instance_at(home) as instance:
        assert materialize_version(instance, env, V1).success
        assert materialize_version(
            instance, env, V2, selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*MISSING_IN_V2)
        ).success
    # the daemon starts once the sensors are stopped: declarative automation would fill the missing
    # partitions at its first tick, and these tests are about what a person launches
    with (
        dagster_servers(home, env, root / "logs", before_daemon=stop_sensors) as servers,
        instance_at(home) as instance,
    ):
        yield servers, instance


def stop_sensors(servers) -> None:
    query = (
        '{ sensorsOrError(repositorySelector: {repositoryName: "__repository__", repositoryLocationName: '
        '"keystroke_assets"}) { ... on Sensors { results { name sensorState { id status } } } } }'
    )
    deadline = time.monotonic() + 90
    while not (sensors := servers.graphql(query)["sensorsOrError"].get("results")):  # the location still loading
        assert time.monotonic() < deadline, "the webserver never listed the sensors"
        time.sleep(0.5)
    assert {s["name"] for s in sensors} == {s.name for s in defs.sensors}
    for sensor in sensors:
        stopped = servers.graphql(
            f'mutation {{ stopSensor(id: "{sensor["sensorState"]["id"]}") {{ ... on StopSensorMutationResult '
            "{ instigationState { status } } } }"
        )
        assert stopped["stopSensor"]["instigationState"]["status"] == "STOPPED", sensor["name"]


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    """A fresh page; on failure its last state is saved as FAILED-<test>.png."""
    expect.set_options(timeout=UI_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:
        page.screenshot(path=ARTIFACTS / f"FAILED-{request.node.name}.png")
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png")


def materializations(instance) -> Counter:
    """(asset, version) -> number of materializations."""
    counts = Counter()
    for key in ALL_KEYS:
        for record in instance.fetch_materializations(key, limit=1000).records:
            counts[(user_string(key), record.partition_key)] += 1
    return counts


def graph_nodes(page):
    """The 'N% filled' link of every expanded asset node in the graph."""
    return page.locator('a[href^="/assets/"][href$="?view=partitions"]', has_text="% filled")


def zoom_out_until_all_visible(page, n_nodes: int) -> None:
    """Ctrl + wheel (a person's zoom) until every asset node lies inside the viewport."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    slider = page.get_by_role("slider")
    for _ in range(10):
        expect(graph_nodes(page)).to_have_count(n_nodes)
        boxes = [b for b in (n.bounding_box() for n in graph_nodes(page).all()) if b]
        if len(boxes) == n_nodes and all(
            0 <= b["x"] and b["x"] + b["width"] <= width and 0 <= b["y"] and b["y"] + b["height"] <= height
            for b in boxes
        ):
            return
        zoom = slider.get_attribute("aria-valuenow")
        page.mouse.move(width / 2, height / 2)
        page.keyboard.down("Control")
        page.mouse.wheel(0, 100)
        page.keyboard.up("Control")
        expect(slider).not_to_have_attribute("aria-valuenow", zoom)
    pytest.fail("the asset graph does not fit the viewport")


def test_asset_graph_shows_every_asset_with_its_partitions(stack, page):
    servers, instance = stack
    page.set_viewport_size({"width": 2400, "height": 1600})
    page.goto(f"{servers.url}/asset-groups")
    expect(page.get_by_role("button", name="asset_group features features")).to_be_visible()
    page.get_by_role("button", name="settings", exact=True).click()  # the graph's own settings menu
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.reload()  # the graph is laid out and fitted again, groups expanded
    page.get_by_role("button", name="panel_show_right", exact=True).click()  # hide the asset tree
    zoom_out_until_all_visible(page, len(ALL_KEYS))

    # 2 versions: 2 materialized -> 100 %, 1 -> 50 % (what version 2 lacks, unless the
    # test that materializes them ran first)
    filled = {k: 50 * len(instance.get_materialized_partitions(k)) for k in ALL_KEYS}
    assert set(filled.values()) <= {50, 100}
    for key in ALL_KEYS:
        links = page.locator(f'a[href="/assets/{user_string(key)}?view=partitions"]')
        expect(links.filter(has_text="filled")).to_have_text(f"{filled[key]}% filled")
        expect(links.filter(has_text="partitions")).to_have_text("2 partitions")
        expect(links.filter(has_text="filled")).to_be_in_viewport()
    shot(page, "1-asset-graph")


def test_materialize_what_a_version_is_missing(stack, page):
    servers, instance = stack
    before = materializations(instance)
    missing = {k for k in ALL_KEYS if before[(user_string(k), V2)] == 0}
    assert missing == set(MISSING_IN_V2)
    runs_before = {r.run_id for r in instance.get_runs()}

    page.goto(f"{servers.url}/asset-groups")
    page.get_by_role("button", name="arrow_drop_down").last.click()  # beside "Materialize all…"
    page.get_by_role("menuitem", name="Materialize unsynced").click()
    dialog = page.get_by_role("dialog").filter(has_text="Materialize unsynced assets")
    # partitioned assets are "unsynced" when one of their partitions is missing
    for key in MISSING_IN_V2:
        expect(dialog.get_by_text(" / ".join(key.path), exact=True).first).to_be_visible()
    launch = dialog.get_by_role("button", name=f"Materialize {len(MISSING_IN_V2)} assets")
    expect(launch).to_be_visible()  # and so no other asset is listed
    shot(page, "3a-unsynced-assets")
    launch.click()

    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dialog.get_by_role("button", name="Missing", exact=True).click()
    expect(dialog.locator('[title^="2025-"]')).to_have_count(1)
    expect(dialog.locator('[title^="2025-"]')).to_have_attribute("title", V2)
    shot(page, "3b-missing-partitions")
    dialog.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_role("listitem").filter(has_text=re.compile(r"Launched run \w+"))
    toast.get_by_role("link", name="View").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)

    run = wait_for(
        lambda: (r := instance.get_run_by_id(run_id)).is_finished and r,
        RUN_TIMEOUT_S,
        f"run {run_id} to finish",
        servers.log_tails,
    )
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == V2 and run.asset_selection == set(MISSING_IN_V2)
    assert {r.run_id for r in instance.get_runs()} - runs_before == {run_id}
    # exactly what version 2 lacked, nothing already there
    assert materializations(instance) - before == Counter({(user_string(k), V2): 1 for k in MISSING_IN_V2})

    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    shot(page, "3c-run-succeeded")


def plot_entries(materialization: dg.AssetMaterialization) -> dict[str, str]:
    """Metadata entries holding an inline PNG: name -> the image's data URI."""
    found = {}
    for name, value in materialization.metadata.items():
        image = isinstance(value, dg.MarkdownMetadataValue) and re.search(
            r"\((data:image/png;base64,[^)]+)\)", value.value
        )
        if image:
            found[name] = image.group(1)
    return found


def test_latest_materialization_shows_plots_and_column_schema(stack, page):
    servers, instance = stack
    latest = {k: instance.get_latest_materialization_event(k) for k in FEATURE_KEYS}
    with_plots = [k for k in FEATURE_KEYS if latest[k] and plot_entries(latest[k].asset_materialization)]
    if not with_plots:
        pytest.fail("no feature asset attaches a plot to its materializations (keypairs is not a feature asset)")
    key = next((k for k in MISSING_IN_V2 if k in with_plots), with_plots[0])  # one launched from the UI if it can
    event = latest[key]
    materialization = event.asset_materialization
    # every column of the stored table (one object or segments), under <storage>/<key path>/
    path = Path(materialization.metadata["path"].value)
    columns = list(stored(path.parents[len(key.path)], user_string(key), materialization.partition).columns)

    # Overview: the column schema of the latest materialization, every column of the file
    page.goto(f"{servers.url}/assets/{user_string(key)}")
    table = page.get_by_role("table").filter(has=page.get_by_role("cell", name="Column name"))
    expect(table.get_by_role("row")).to_have_count(len(columns) + 1)
    assert table.locator("tbody tr td:first-child").all_inner_texts() == columns
    table.scroll_into_view_if_needed()
    shot(page, "4a-column-schema")

    # Events: the latest materialization is the one shown; each plot opens as an image
    page.get_by_role("tab", name="Events").click()
    expect(page.get_by_role("link", name=event.run_id[:8])).to_be_visible()
    expect(page.get_by_role("link", name=materialization.partition, exact=True)).to_be_visible()
    shot(page, "4b-latest-materialization")
    for name, uri in plot_entries(materialization).items():
        page.get_by_role("row", name=re.compile(rf"^{re.escape(name)} ")).get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog").filter(has_text=name)
        image = dialog.locator("img[src^='data:image/png']")
        expect(image).to_have_attribute("src", uri)
        image.wait_for(state="visible")
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")  # decoded, not a broken image
        shot(page, f"4c-plot-{name}")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_have_count(0)


EVALUATED = dg.AssetKey(["evaluation", "typenet_ml", "session"])  # a desktop EER from the 4 generated typists
SUMMARY = dg.AssetKey(["evaluation", "summary"])


def plotted_points(canvas) -> dict[str, float]:
    """x label -> y of a metadata plot: the data the chart (a Chart.js canvas, no text to read)
    was drawn from, read from the props of the React component around it."""
    data = canvas.evaluate(
        """canvas => {
            let fiber = canvas[Object.keys(canvas).find(k => k.startsWith("__reactFiber"))];
            for (; fiber; fiber = fiber.return) {
                if (fiber.memoizedProps?.data?.datasets) return fiber.memoizedProps.data;
            }
        }"""
    )
    (dataset,) = data["datasets"]
    return {data["labels"][point["x"]]: point["y"] for point in dataset["data"]}


def test_evaluation_plot_across_versions_and_summary(stack, page):
    servers, instance = stack
    eer = {}
    for version in VERSIONS:
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=EVALUATED, asset_partitions=[version]), limit=1
        ).records
        eer[version] = record.asset_materialization.metadata["eer/desktop"].value

    # Overview -> Metadata -> Plots: eer/desktop over the partitions, one point per version
    page.goto(f"{servers.url}/assets/{user_string(EVALUATED)}")
    page.get_by_role("button", name="Plots").click()
    title = page.get_by_text("eer/desktop", exact=True)
    canvas = title.locator("xpath=../..").locator("canvas")
    expect(canvas).to_be_visible()
    assert plotted_points(canvas) == eer
    expect(page.get_by_role("button", name="Partitions")).to_have_attribute("aria-selected", "true")
    title.scroll_into_view_if_needed()
    shot(page, "evaluation_1-eer-across-versions")

    # Events: the summary's latest materialization, every evaluated feature type with its EER
    event = instance.get_latest_materialization_event(SUMMARY)
    metadata = event.asset_materialization.metadata
    evaluated = {name: value.value for name, value in metadata.items() if name.startswith("eer/")}
    features = {k.to_user_string().removeprefix("evaluation/") for k in ALL_KEYS if k.path[0] == "evaluation"}
    # every evaluation but the summary's own and typenet_ml/platform's (not evaluable: its rows pool sessions)
    assert {name.split("/", 1)[1].rsplit("/", 1)[0] for name in evaluated} == features - {
        "summary",
        "typenet_ml/platform",
    }
    page.set_viewport_size({"width": 2000, "height": 1100})  # the table's eer column in view
    page.goto(f"{servers.url}/assets/{user_string(SUMMARY)}?view=events")
    expect(page.get_by_role("link", name=event.asset_materialization.partition, exact=True)).to_be_visible()
    table = page.get_by_role("row", name=re.compile(r"^summary ")).get_by_role("table")
    expect(table.locator("tbody tr")).to_have_count(len(metadata["summary"].value.records))
    header = table.locator("thead th").all_inner_texts()
    shown = {}
    for row in table.locator("tbody tr").all():
        cells = dict(zip(header, row.locator("td").all_inner_texts()))
        if cells["status"] == "evaluated":
            shown[f"eer/{cells['feature']}/{cells['device_type']}"] = float(cells["eer"])
    assert shown == evaluated
    table.scroll_into_view_if_needed()
    shot(page, "evaluation_2-summary-table")

    page.get_by_role("row", name=re.compile(r"^eer_chart ")).get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog").filter(has_text="eer_chart")
    image = dialog.locator("img[src^='data:image/png']")
    expect(image).to_have_attribute("src", plot_entries(event.asset_materialization)["eer_chart"])
    image.wait_for(state="visible")
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")  # decoded, not a broken image
    shot(page, "evaluation_3-summary-eer-chart")
