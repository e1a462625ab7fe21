"""The production deployment (deploy/) and the local instance, checked where they can be checked
without a cluster: both dagster.yaml files through Dagster's own loading and schema validation and
each configurable class's own config schema; the production instance as written, on a real Postgres
(127.0.0.1) with its compute logs in fake GCS; the Kubernetes Job a run would become; the Helm values
against the instance; the Dockerfile's command serving the code location.

The `dagster._...` imports below are what Dagster itself uses to validate an instance config, build a
run launcher's Job and talk to a code server: no public API does these checks, and they are the
checks, so they stay (and say so when a Dagster upgrade moves them)."""

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.scheduler import DagsterDaemonScheduler
from dagster._core.test_utils import create_run_for_test
from dagster._grpc.client import DagsterGrpcClient
from dagster._grpc.types import ListRepositoriesResponse
from dagster._serdes import ConfigurableClassData, deserialize_value

from keystroke_assets.resources import resources_from_env
from keystroke_assets.resources.object_store import GCSObjectStore

from .conftest import LOCAL_INSTANCE, REPO, _free_port
from .servers import stop_groups
from .test_postgres import PASSWORD as PG_PASSWORD
from .test_postgres import postgres  # noqa: F401 (fixture: a private Postgres cluster on 127.0.0.1)

DEPLOY = REPO / "deploy"
PROD_ENV = {  # what the pods' environment provides
    "DAGSTER_PG_HOST": "10.20.0.3",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "from-the-secret",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "keystroke-dagster-logs",
}
CODE_SERVER_START_S = 180  # importing Dagster and the definitions on a loaded 2-core machine


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def helm_values() -> dict:
    return load_yaml(DEPLOY / "helm-values.yaml")


def user_deployment() -> dict:
    [deployment] = helm_values()["dagster-user-deployments"]["deployments"]
    return deployment


def resolve(data: ConfigurableClassData) -> tuple[type, dict]:
    """The configured class and its config processed by the class's own schema (env vars resolved):
    what Dagster does when it builds the instance, short of calling the constructor."""
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
    if not result.success:
        raise dg.DagsterInvalidConfigError(f"{data.class_name}", result.errors, data.config_dict)
    return klass, result.value


def configured(ref: InstanceRef) -> dict[str, ConfigurableClassData]:
    return {
        "storage": ref.storage_data,
        "run_storage": ref.run_storage_data,
        "event_log_storage": ref.event_storage_data,
        "schedule_storage": ref.schedule_storage_data,
        "compute_logs": ref.compute_logs_data,
        "scheduler": ref.scheduler_data,
        "run_coordinator": ref.run_coordinator_data,
        "run_launcher": ref.run_launcher_data,
    }


def test_production_instance_config_passes_dagsters_validation(monkeypatch):
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    dagster_instance_config(str(DEPLOY))  # the top-level schema; raises on an unknown or ill-typed key
    ref = InstanceRef.from_dir(str(DEPLOY))
    classes = {section: resolve(data) for section, data in configured(ref).items()}

    from dagster_gcp.gcs.compute_log_manager import GCSComputeLogManager
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import (
        DagsterPostgresStorage,
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    assert {section: klass for section, (klass, _) in classes.items()} == {
        "storage": DagsterPostgresStorage,
        "run_storage": PostgresRunStorage,
        "event_log_storage": PostgresEventLogStorage,
        "schedule_storage": PostgresScheduleStorage,
        "compute_logs": GCSComputeLogManager,
        "scheduler": DagsterDaemonScheduler,
        "run_coordinator": QueuedRunCoordinator,
        "run_launcher": K8sRunLauncher,
    }
    # credentials and per-environment values come from the environment
    postgres_db = classes["storage"][1]["postgres_db"]
    assert postgres_db["password"] == "from-the-secret" and postgres_db["port"] == 5432
    assert classes["compute_logs"][1]["bucket"] == "keystroke-dagster-logs"

    # the coordinator built by Dagster from it: one run per version at a time
    coordinator = QueuedRunCoordinator.from_config_value(ref.run_coordinator_data, classes["run_coordinator"][1])
    queue = coordinator.get_run_queue_config()
    assert queue.max_concurrent_runs == 10
    [limit] = queue.tag_concurrency_limits
    assert limit == {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert ref.settings["telemetry"] == {"enabled": False}


def test_production_instance_has_no_credential_of_its_own(monkeypatch):
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    raw = load_yaml(DEPLOY / "dagster.yaml")["storage"]["postgres"]["postgres_db"]
    assert all(isinstance(v, dict) and set(v) == {"env"} for k, v in raw.items() if k != "scheme")
    with pytest.raises(dg.DagsterInvalidConfigError, match="DAGSTER_PG_PASSWORD"):
        resolve(InstanceRef.from_dir(str(DEPLOY)).storage_data)


def test_local_instance_config_passes_dagsters_validation(tmp_path, monkeypatch):
    """The repository root's dagster.yaml as `keystroke-assets demo` uses it: DAGSTER_HOME the folder
    holding it, every process running there, everything stored under its .dagster/."""
    dagster_instance_config(str(LOCAL_INSTANCE.parent))
    ref = InstanceRef.from_dir(str(LOCAL_INSTANCE.parent))
    for data in configured(ref).values():
        if data:  # None: Dagster's default for that section
            resolve(data)
    # and the instance itself, built by Dagster in a copy of the root
    shutil.copy(LOCAL_INSTANCE, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 3
        assert queue.tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert dg.materialize([hello_compute_logs], instance=instance).success
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dagster", "dagster.yaml"]
    stored = {p.relative_to(tmp_path / ".dagster").parts[0] for p in (tmp_path / ".dagster").rglob("*")}
    assert {"storage", "compute_logs"} <= stored


@dg.asset
def hello_compute_logs() -> int:
    print("hello from a step on the production instance")
    return 1


def test_production_instance_runs_on_postgres_with_compute_logs_in_gcs(
    postgres,  # noqa: F811 (the fixture imported above)
    gcs_bucket,
    tmp_path,
    monkeypatch,
):
    """deploy/dagster.yaml as written, on a real Postgres and fake GCS: a run is stored, found again by
    a second instance, and its captured stdout lands in the bucket. Only the run launcher (it needs a
    cluster) stays unused: the run executes in process."""
    env = {
        **PROD_ENV,
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(postgres),
        "DAGSTER_PG_PASSWORD": PG_PASSWORD,
        "DAGSTER_COMPUTE_LOGS_BUCKET": gcs_bucket.name,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize([hello_compute_logs], instance=instance)
        assert result.success
    with dg.DagsterInstance.from_config(str(home)) as again:
        assert again.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        assert again.get_latest_materialization_event(dg.AssetKey("hello_compute_logs")).run_id == result.run_id
    logs = [b for b in gcs_bucket.list_blobs(prefix="dagster/compute-logs/") if b.name.endswith(".out")]
    printed = [b.name for b in logs if "hello from a step on the production instance" in b.download_as_text()]
    assert printed, [b.name for b in logs]
    assert not list(home.rglob("*.db"))  # nothing went to SQLite


def test_a_run_becomes_this_kubernetes_job(tmp_path, monkeypatch):
    """The K8sRunLauncher built from deploy/dagster.yaml launches a run; the Kubernetes Job it would
    create (captured instead of sent) carries our namespace, image, resources and secrets."""
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    _, config = resolve(InstanceRef.from_dir(str(DEPLOY)).run_launcher_data)
    kubeconfig = tmp_path / "kubeconfig"  # never contacted: outside a cluster, in place of in-cluster config
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    created = []

    class BatchApi:
        def create_namespaced_job(self, body, namespace, **_):
            created.append((namespace, body))

    from dagster_k8s import K8sRunLauncher

    launcher = K8sRunLauncher(
        **{**config, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)},
        k8s_client_batch_api=BatchApi(),
    )
    deployment = user_deployment()
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    origin = JobPythonOrigin(
        "__ASSET_JOB",
        RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            container_image=image,
            code_pointer=ModuleCodePointer("keystroke_assets.definitions", "defs", None),
        ),
    )
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        run = create_run_for_test(instance, job_name="__ASSET_JOB", job_code_origin=origin)
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

    [(namespace, job)] = created
    assert namespace == "keystroke"
    assert job.spec.ttl_seconds_after_finished == 86400
    pod = job.spec.template.spec
    assert pod.service_account_name == "dagster"
    [container] = pod.containers
    assert container.image == image and container.image_pull_policy == "IfNotPresent"
    assert container.args[:5] == ["/usr/local/bin/python", "-m", "dagster", "api", "execute_run"]
    assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}
    assert container.resources.limits == {"memory": "16Gi"}
    assert [e.secret_ref.name for e in container.env_from if e.secret_ref] == ["keystroke-assets-env"]
    password = next(e for e in container.env if e.name == "DAGSTER_PG_PASSWORD").value_from.secret_key_ref
    assert (password.name, password.key) == ("dagster-postgresql-secret", "postgresql-password")
    assert next(e for e in container.env if e.name == "DAGSTER_HOME").value == "/opt/dagster/dagster_home"


def test_helm_values_have_what_the_chart_needs():
    values = helm_values()
    deployments = values["dagster-user-deployments"]
    assert deployments["enabled"] and deployments["enableSubchart"]
    deployment = user_deployment()
    assert deployment["name"] and deployment["image"]["repository"] and isinstance(deployment["port"], int)
    assert deployment["image"]["tag"] not in ("", "latest")  # every run of a release uses the same image
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    # the chart's env is what the code location reads: GCS for both stores
    stores = resources_from_env(deployment["env"])
    assert isinstance(stores["uploads"], GCSObjectStore) and isinstance(stores["storage"], GCSObjectStore)
    buckets = (stores["uploads"].bucket, stores["storage"].bucket)
    assert buckets == ("keystroke-study-uploads", "keystroke-study-datasets")
    assert [s["name"] for s in deployment["envSecrets"]] == ["keystroke-assets-env"]

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["loadInclusterConfig"] is True
    assert values["computeLogManager"]["type"] == "GCSComputeLogManager"
    assert values["computeLogManager"]["config"]["gcsComputeLogManager"]["bucket"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"

    # an external Postgres whose password only the existing Secret holds
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and pg["postgresqlDatabase"] and pg["service"]["port"]
    assert pg["postgresqlPassword"] == "" and values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"
    assert values["telemetry"] == {"enabled": False}


def test_helm_values_and_the_production_instance_agree():
    values, instance = helm_values(), load_yaml(DEPLOY / "dagster.yaml")
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    coordinator = instance["run_coordinator"]["config"]
    assert (queue["maxConcurrentRuns"], queue["tagConcurrencyLimits"]) == (
        coordinator["max_concurrent_runs"],
        coordinator["tag_concurrency_limits"],
    )

    k8s, launcher = values["runLauncher"]["config"]["k8sRunLauncher"], instance["run_launcher"]["config"]
    assert k8s["jobNamespace"] == launcher["job_namespace"]
    assert k8s["imagePullPolicy"] == launcher["image_pull_policy"]
    assert k8s["failPodOnRunFailure"] == launcher["fail_pod_on_run_failure"]
    assert [s["name"] for s in k8s["envSecrets"]] == launcher["env_secrets"]
    assert k8s["runK8sConfig"]["containerConfig"] == launcher["run_k8s_config"]["container_config"]
    assert k8s["runK8sConfig"]["jobSpecConfig"] == launcher["run_k8s_config"]["job_spec_config"]
    assert values["global"]["postgresqlSecretName"] == launcher["postgres_password_secret"]
    assert values["global"]["serviceAccountName"] == launcher["service_account_name"]

    gcs, logs = values["computeLogManager"]["config"]["gcsComputeLogManager"], instance["compute_logs"]["config"]
    assert (gcs["prefix"], gcs["uploadInterval"]) == (logs["prefix"], logs["upload_interval"])
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]

    daemon = values["dagsterDaemon"]
    assert daemon["runRetries"] == {
        "enabled": True,
        "maxRetries": instance["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": instance["run_retries"]["retry_on_asset_or_op_failure"],
    }
    monitoring = instance["run_monitoring"]
    assert daemon["runMonitoring"] == {
        "enabled": monitoring["enabled"],
        "startTimeoutSeconds": monitoring["start_timeout_seconds"],
        "cancelTimeoutSeconds": monitoring["cancel_timeout_seconds"],
    }
    assert values["retention"]["sensor"]["purgeAfterDays"] == instance["retention"]["sensor"]["purge_after_days"]
    assert values["retention"]["schedule"]["purgeAfterDays"] == instance["retention"]["schedule"]["purge_after_days"]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_builds_the_package_with_the_deploy_extra():
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert re.fullmatch(r">=3\.11(,<3\.1[2-9])?", pyproject["project"]["requires-python"])
    for args in (a for i, a in instructions if i == "COPY"):
        *sources, _ = args.split()
        assert all((REPO / s).exists() for s in sources), sources  # the build context is the repo root
    [install] = [a for i, a in instructions if i == "RUN" and "uv sync" in a]
    assert "--frozen" in install.split() and "--extra deploy" in install  # exactly the versions of uv.lock
    assert ("COPY", "pyproject.toml uv.lock ./") in instructions
    # the extra pins the Dagster libraries the image needs to the family's release
    gcp = next(d for d in pyproject["project"]["dependencies"] if d.startswith("dagster-gcp=="))
    family = gcp.split("==")[1]
    assert sorted(pyproject["project"]["optional-dependencies"]["deploy"]) == [
        f"dagster-k8s=={family}",
        f"dagster-postgres=={family}",
    ]


@pytest.mark.servers
def test_dockerfile_command_serves_the_code_location(tmp_path):
    """The image's command, run here on 127.0.0.1 (host and port swapped): a code server that loads
    the definitions and answers gRPC. Its module and port are the ones the Helm values give."""
    instructions = dict(dockerfile())
    command = json.loads(instructions["CMD"])
    assert command[:3] == ["dagster", "code-server", "start"]
    options = dict(zip(command[3::2], command[4::2]))
    assert options["-h"] == "0.0.0.0"  # reachable from the webserver's and daemon's pods
    assert int(options["-p"]) == int(instructions["EXPOSE"]) == user_deployment()["port"]
    assert user_deployment()["codeServerArgs"] == ["-m", options["-m"]]

    port = _free_port()
    local = {**options, "-h": "127.0.0.1", "-p": str(port)}
    argv = [str(Path(sys.executable).parent / "dagster"), *command[1:3], *[x for kv in local.items() for x in kv]]
    log = tmp_path / "code-server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        client = DagsterGrpcClient(host="127.0.0.1", port=port)
        deadline = time.monotonic() + CODE_SERVER_START_S
        response = None
        while not isinstance(response, ListRepositoriesResponse):
            assert server.poll() is None, f"{shlex.join(argv)} exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"no definitions on port {port} after {CODE_SERVER_START_S} s: {response}"
            )
            try:
                response = deserialize_value(client.list_repositories())
            except DagsterUserCodeUnreachableError:  # not listening yet
                time.sleep(0.5)
        assert [s.repository_name for s in response.repository_symbols] == ["__repository__"]
        assert response.executable_path == sys.executable or os.path.samefile(response.executable_path, sys.executable)
    finally:
        stop_groups([server])


def test_the_dask_cluster_runs_the_code_locations_image_where_its_runs_look_for_it():
    cluster = load_yaml(DEPLOY / "dask-cluster.yaml")
    deployment = user_deployment()
    image = deployment["image"]
    containers = [cluster["spec"][part]["spec"]["containers"][0] for part in ("worker", "scheduler")]
    assert {c["image"] for c in containers} == {f"{image['repository']}:{image['tag']}"}
    assert {cluster["spec"][part]["spec"]["serviceAccountName"] for part in ("worker", "scheduler")} == {
        helm_values()["global"]["serviceAccountName"]
    }
    assert containers[0]["env"] == [{"name": "KEYSTROKE_STORAGE", "value": deployment["env"]["KEYSTROKE_STORAGE"]}]
    # the scheduler address the values file names (commented out until the cluster is applied)
    port = cluster["spec"]["scheduler"]["service"]["ports"][0]["port"]
    address = f"tcp://{cluster['metadata']['name']}-scheduler.{cluster['metadata']['namespace']}:{port}"
    assert f"# KEYSTROKE_DASK_SCHEDULER: {address}" in (DEPLOY / "helm-values.yaml").read_text()
    assert resources_from_env({"KEYSTROKE_DASK_SCHEDULER": address})["segment_executor"].scheduler == address
