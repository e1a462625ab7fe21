"""Materializing from a plain Python script works with the default executor: a script that runs
Dagster at its top (no `if __name__ == "__main__":`) computes its segments in the step's process,
saying so once, instead of starting a pool whose processes would run the script again; a guarded
script that asks for processes gets a pool."""

import os
import subprocess
import sys
import textwrap

SCRIPT = """
import multiprocessing
import os
import sys

import dagster as dg

from keystroke_assets.definitions import defs
from keystroke_assets.partitions import dataset_versions
from keystroke_assets.resources import resources_from_env
from keystroke_assets.synthetic import web_app_uploads, write_uploads

VERSION = "2025-09-07_00-27-43_lab-mac"


def build(root):
    write_uploads(f"{root}/uploads", web_app_uploads(5, seed=3, broken_every=0))
    env = {**os.environ, "KEYSTROKE_UPLOADS": f"{root}/uploads", "KEYSTROKE_STORAGE": f"{root}/storage"}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(dataset_versions.name, [VERSION])
        result = dg.materialize(
            list(defs.assets),
            selection=["web_app_data", "raw_data"],
            partition_key=VERSION,
            instance=instance,
            resources=resources_from_env(env),
            # five segments: a pool is worth starting on any machine with up to two cores
            run_config={"ops": {"raw_data": {"config": {"participants_per_segment": 1}}}},
        )
    print("SUCCESS", result.success, "POOL", len(multiprocessing.active_children()))
"""


def run_script(tmp_path, body: str, **env) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data")],
        cwd=tmp_path,
        env={**_env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("KEYSTROKE_")}


def test_a_script_without_a_main_guard_computes_in_the_steps_process(tmp_path):
    done = run_script(tmp_path, "build(sys.argv[1])\n", KEYSTROKE_SEGMENT_WORKERS="0")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "SUCCESS True POOL 0" in done.stdout
    assert "bootstrapping phase" not in out
    assert out.count("segments run in the step's own process") == 1
    assert out.count("RUN_SUCCESS") == 1  # the script ran once: no process ran it again


def test_a_guarded_script_that_asks_for_processes_gets_a_pool(tmp_path):
    done = run_script(tmp_path, 'if __name__ == "__main__":\n    build(sys.argv[1])\n', KEYSTROKE_SEGMENT_WORKERS="2")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "SUCCESS True POOL 2" in done.stdout
    assert "segments run in the step's own process" not in out
