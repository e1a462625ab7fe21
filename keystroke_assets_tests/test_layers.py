"""Clean layers (issue 24 items 7 and 8): the library (keystroke_assets/lib/) and the feature modules
(keystroke_assets/features/, and the worked example of docs/adding-a-feature.md) hold no Dagster
and no wiring; nothing in lib/ imports from outside lib/."""

import ast
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "keystroke_assets"
WIRING = ["assets", "resources", "engine", "definitions", "sensors", "commands"]
WORKED_EXAMPLE = REPO / "keystroke_assets_tests" / "hold_by_key_class.py"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path = REPO) -> set[str]:
    """Every module a file under `root` imports, anywhere in it (in a function too; relative
    imports resolved; importlib.import_module("...") with a literal name)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found |= {a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return found


def is_dagster(module: str) -> bool:
    return module.split(".")[0] == "dagster" or module.startswith("dagster_")


def is_wiring(module: str) -> bool:
    return any(module == f"keystroke_assets.{w}" or module.startswith(f"keystroke_assets.{w}.") for w in WIRING)


def files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (PACKAGE / folder).rglob("*.py"))


def test_the_library_and_the_features_import_no_dagster_and_no_wiring():
    scanned = [*files("lib", "features"), WORKED_EXAMPLE]
    assert len(scanned) > 15 and PACKAGE / "lib" / "segments.py" in scanned
    wrong = {str(p.relative_to(REPO)): sorted(m for m in imported(p) if is_dagster(m) or is_wiring(m)) for p in scanned}
    assert {p: m for p, m in wrong.items() if m} == {}


def test_the_library_imports_only_the_library():
    outside = {
        str(p.relative_to(REPO)): sorted(
            m for m in imported(p) if m.split(".")[0] == "keystroke_assets" and not m.startswith("keystroke_assets.lib")
        )
        for p in files("lib")
    }
    assert {p: m for p, m in outside.items() if m} == {}


def test_importing_them_loads_no_dagster_and_no_wiring():
    """What they import imports, too: each module imported in a fresh interpreter."""
    modules = [module_name(p) for p in files("lib", "features")] + ["keystroke_assets_tests.hold_by_key_class"]
    probe = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster' or m.startswith('dagster_')"
        f" or any(m == 'keystroke_assets.' + w or m.startswith('keystroke_assets.' + w + '.') for w in {WIRING!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_scan_sees_an_import_wherever_it_is(tmp_path):
    """The scan itself: a relative import, one in a function and one by name are each found."""
    probe = tmp_path / "keystroke_assets" / "lib" / "ingest" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "from ..segments import crc32c\n"
        "def f():\n    from keystroke_assets.resources import object_store\n"
        "import importlib\nimportlib.import_module('dagster')\n"
    )
    found = imported(probe, tmp_path)
    assert {"keystroke_assets.lib.segments", "keystroke_assets.resources", "dagster"} <= found
    assert is_wiring("keystroke_assets.resources.object_store") and is_dagster("dagster_pandas")
    assert not is_wiring("keystroke_assets.lib.segments") and not is_wiring("keystroke_assets.assetsx")
