"""A wheel (non-editable) install carries its SQL, suites and spark-submit entry point: installed
into a scratch venv, the package runs a small snapshot from a folder far from the repository, by
itself and through spark-submit as the DAGs run it."""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_non_editable_install_runs_a_snapshot_with_its_packaged_sql_and_suites(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    scratch_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                       check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies come from the project's venv (appended after the scratch site, so the
    # installed ostap wins); ostap itself is built from the repository and installed as a wheel.
    (scratch_site / "project_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(REPO)],
                   check=True, capture_output=True, text=True, timeout=600)

    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OSTAP_EXPECTATIONS_DIR")}
    env.update(OSTAP_WAREHOUSE=str(away / "wh"), OSTAP_SPARK_LOG_LEVEL="ERROR", GX_ANALYTICS_ENABLED="false",
               PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python))
    where = subprocess.run(
        [str(python), "-c", "import json, jobs; from jobs.core.resources import resource_dir; "
         "print(json.dumps([jobs.__file__, str(resource_dir('sql')), str(resource_dir('expectations'))]))"],
        cwd=away, env=env, check=True, capture_output=True, text=True)
    package, sql, suites = json.loads(where.stdout)
    assert Path(package).is_relative_to(scratch_site), package
    assert Path(sql) == scratch_site / "jobs" / "sql" and Path(suites) == scratch_site / "jobs" / "expectations"

    ostap = [str(python), "-m", "jobs"]
    generated = subprocess.run([*ostap, "generate", "--start", "2024-01-01", "--days", "2", "--scale", "small"],
                               cwd=away, env=env, capture_output=True, text=True)
    assert generated.returncode == 0, generated.stderr[-2000:]
    run = subprocess.run([*ostap, "snapshot", "--entity", "stores", "--ds", "2024-01-02", "--master", "local[1]"],
                         cwd=away, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    read = re.match(r"snapshot stores ds=2024-01-02 full: read (\d+) rows, (\d+) live keys", run.stdout)
    assert read and int(read[2]) > 0, run.stdout
    assert (away / "wh" / "ods" / "stores" / "ds=2024-01-02" / "_SUCCESS").exists()
    assert any((away / "wh" / "dq" / "validation_results").glob("ds=2024-01-02/*.parquet"))  # the suite ran

    # What the DAGs hand to spark-submit ships in the install too, and runs the installed package.
    app = subprocess.run([str(python), "-c", "from jobs.airflow.dag_defaults import SPARK_APP; print(SPARK_APP)"],
                         cwd=away, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(app) == scratch_site / "jobs" / "bin" / "spark_app.py", app
    submit = Path(sys.executable).parent / "spark-submit"
    submitted = subprocess.run([str(submit), "--master", "local[1]", app, "snapshot", "--entity", "managers",
                                "--ds", "2024-01-02"], cwd=away, env=env, capture_output=True, text=True, timeout=600)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert "snapshot managers ds=2024-01-02 full" in submitted.stdout, submitted.stdout[-2000:]
    assert (away / "wh" / "ods" / "managers" / "ds=2024-01-02" / "_SUCCESS").exists()
