"""`ostap demo` never waits in silence: while a DAG runs through `airflow dags test`, each task is
printed as it finishes (DAG, task, state, seconds), and a failed one with its log path and the lines
that explain it. Real Airflow (LocalExecutor, an api-server) on a two-task DAG of its own."""

from __future__ import annotations

import pytest

from jobs.local import airflow_local, pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DAG = '''
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from jobs.airflow.dag_defaults import DAG_DEFAULTS

with DAG(dag_id="progress_probe", schedule=None, **DAG_DEFAULTS) as dag:
    ok = BashOperator(task_id="prepare", bash_command="echo preparing")
    bad = BashOperator(task_id="publish", bash_command=(
        "echo reading the inputs; echo 'ostap targets: error: no partition ods.clients ds=2024-06-01' >&2; exit 2"))
    ok >> bad
'''


def test_the_runner_prints_each_task_as_it_finishes_and_explains_a_failure(tmp_path, capsys):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "progress_probe.py").write_text(DAG)
    env = airflow_local.airflow_env(home=tmp_path / "airflow", warehouse=str(tmp_path / "wh"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    env["OSTAP_TASK_RETRIES"] = "0"
    airflow_local.migrate(env)
    with airflow_local.api_server(env), pytest.raises(RuntimeError, match="progress_probe failed"):
        pipeline.run_dag("progress_probe", "2024-06-01", env, poll_s=0.5)
    out = capsys.readouterr().out
    lines = out.splitlines()
    prepare = next(i for i, line in enumerate(lines) if line.split()[:3] == ["progress_probe", "prepare", "success"])
    publish = next(i for i, line in enumerate(lines) if line.split()[:3] == ["progress_probe", "publish", "failed"])
    assert prepare < publish, out
    assert lines[prepare].rstrip().endswith(" s")
    log_line = lines[publish + 1].strip()
    assert log_line.startswith("log: ") and log_line.endswith("attempt=1.log"), out
    from pathlib import Path

    assert Path(log_line.removeprefix("log: ")).is_file()
    assert "ostap targets: error: no partition ods.clients ds=2024-06-01" in out, out


ONE_TASK = '''
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from jobs.airflow.dag_defaults import DAG_DEFAULTS

with DAG(dag_id="over_probe", schedule=None, **DAG_DEFAULTS) as dag:
    BashOperator(task_id="only", bash_command="echo done")
'''


def test_a_runner_that_never_exits_after_its_run_is_over_is_stopped_and_the_run_reported(tmp_path, monkeypatch,
                                                                                          capsys):
    """Airflow's LocalExecutor can hang at shutdown after the run is over (apache/airflow#45329):
    here `airflow dags test` is followed by a sleep that never ends; the run is still reported
    by its recorded state and nothing of it is left running."""
    import subprocess
    import sys
    from pathlib import Path

    import psutil

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "over_probe.py").write_text(ONE_TASK)
    env = airflow_local.airflow_env(home=tmp_path / "airflow", warehouse=str(tmp_path / "wh"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    airflow_local.migrate(env)
    started = []

    def never_exiting(*args, env, stdout):
        airflow = str(Path(sys.executable).parent / "airflow")
        proc = subprocess.Popen(["bash", "-c", '"$0" "$@"; sleep 600', airflow, *args], env=env, stdout=stdout,
                                stderr=subprocess.STDOUT)
        started.append(proc.pid)
        return proc

    monkeypatch.setattr(airflow_local, "airflow_background", never_exiting)
    monkeypatch.setattr(pipeline, "SHUTDOWN_GRACE_S", 2.0)
    with airflow_local.api_server(env):
        pipeline.run_dag("over_probe", "2024-06-01", env, poll_s=0.5)
    out = capsys.readouterr().out
    assert "the run is over (success)" in out, out
    assert any(line.split()[:3] == ["over_probe", "2024-06-01", "success"] for line in out.splitlines()), out
    assert not psutil.pid_exists(started[0]) or psutil.Process(started[0]).status() == psutil.STATUS_ZOMBIE


def test_the_runs_of_a_stage_run_at_once_and_each_is_reported(tmp_path, capsys):
    """The demo runs the DAGs that read the same snapshots at once, as the scheduler would: two
    `airflow dags test` on one SQLite metadata database, their tasks overlapping in time."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("left_probe", "right_probe"):
        (dags / f"{name}.py").write_text(ONE_TASK.replace("over_probe", name).replace("echo done", "sleep 20"))
    env = airflow_local.airflow_env(home=tmp_path / "airflow", warehouse=str(tmp_path / "wh"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    airflow_local.migrate(env)
    with airflow_local.api_server(env):
        seconds = pipeline.run_dags([("left_probe", "2024-06-01"), ("right_probe", "2024-06-01")], env, poll_s=0.5)
    assert len(seconds) == 2 and all(s > 20 for s in seconds)
    out = capsys.readouterr().out
    for name in ("left_probe", "right_probe"):
        assert any(line.split()[:3] == [name, "2024-06-01", "success"] for line in out.splitlines()), out
    (left_start, left_end), (right_start, right_end) = airflow_local.query_metadata(
        env["AIRFLOW_HOME"], "select start_date, end_date from task_instance order by dag_id")
    assert right_start < left_end and left_start < right_end, "the two runs' tasks did not overlap"
