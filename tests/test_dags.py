"""DAG integrity: the real DagBag loads every DAG file with no import errors, wiring as designed."""

from __future__ import annotations

import pytest

from jobs.core.tables import ENTITIES

EXPECTED_DAGS = {"ods_snapshot_daily", "scoring_targets_daily", "recommendations_daily", "sales_forecast_monthly",
                 "abtest_daily"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    import os

    from jobs.local.airflow_local import DAGS, airflow_env

    env = airflow_env(tmp_path_factory.mktemp("airflow_home"))
    for key, value in env.items():
        if key.startswith("AIRFLOW"):
            os.environ[key] = value
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors_and_all_dags_found(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


def test_shared_defaults(dagbag):
    from jinja2 import StrictUndefined

    for dag in dagbag.dags.values():
        assert dag.default_args["owner"] == "ostap"
        assert dag.default_args["retries"] >= 1
        assert dag.template_undefined is StrictUndefined
        assert "ostap" in dag.tags
        assert dag.doc_md and dag.dag_id in dag.doc_md
        assert dag.catchup is False
        # one final task other DAGs can wait on
        assert [t.task_id for t in dag.leaves] == ["published"]


def test_snapshot_dag_runs_entities_in_parallel(dagbag):
    dag = dagbag.dags["ods_snapshot_daily"]
    snapshot_tasks = {t.task_id for t in dag.tasks if t.task_id.startswith("snapshot_")}
    assert snapshot_tasks == {f"snapshot_{e}" for e in ENTITIES}
    for task_id in snapshot_tasks:
        task = dag.get_task(task_id)
        assert task.upstream_task_ids == set()
        assert task.downstream_task_ids == {"published"}
        # Day D builds on D-1's state: an entity's days run in order (tests/test_e2e.py backfills them).
        assert task.depends_on_past is True


@pytest.mark.parametrize("dag_id,chain", [
    ("scoring_targets_daily", ["wait_for_snapshots", "build_targets", "published"]),
    ("recommendations_daily", ["wait_for_snapshots", "train_and_recommend", "load_serving", "published"]),
    ("sales_forecast_monthly", ["wait_for_snapshots", "forecast_sales", "published"]),
    ("abtest_daily", ["land_exposures", "snapshot_serve_exposures", "ab_readout", "published"]),
])
def test_downstream_dags_wait_for_their_snapshots(dagbag, dag_id, chain):
    dag = dagbag.dags[dag_id]
    assert {t.task_id for t in dag.tasks} == {"wait_for_snapshots", *chain}
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    # The readout waits for the deals' snapshot of its date as well as for the exposures'.
    assert "ab_readout" in dag.get_task("wait_for_snapshots").downstream_task_ids or dag_id != "abtest_daily"


EXPECTED_COMMANDS = __import__("pathlib").Path(__file__).parent / "expected" / "spark_submit_commands.txt"


def rendered_spark_submit_commands(dagbag, ds: str) -> str:
    """Every Spark task's spark-submit command for a fixed date, as the provider's hook builds it."""
    import sys

    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from jobs.core.spark import jvm_archive_path
    from jobs.local.airflow_local import REPO

    lines = []
    for dag_id in sorted(dagbag.dag_ids):
        dag = dagbag.dags[dag_id]
        for task in sorted(dag.tasks, key=lambda t: t.task_id):
            if not isinstance(task, SparkSubmitOperator):
                continue
            task.render_template_fields({"ds": ds, "params": dag.params.dump()})
            cmd = task._get_hook()._build_spark_submit_command(task.application)
            # The class archive lives in the install (jobs.core.spark.jvm_archive_path), wherever that is.
            line = (" ".join(cmd).replace(str(jvm_archive_path()), "<jvm-archive>").replace(str(REPO), "<repo>")
                    .replace(sys.executable, "<python>"))
            lines.append(f"{dag_id}.{task.task_id}: {line}")
    return "\n".join(lines) + "\n"


def test_serving_load_renders_the_date(dagbag):
    import shlex
    import sys

    dag = dagbag.dags["recommendations_daily"]
    task = dag.get_task("load_serving")
    task.render_template_fields({"ds": "2024-06-01", "params": dag.params.dump()})
    assert shlex.split(task.bash_command) == [sys.executable, "-m", "jobs", "serve", "load", "--ds", "2024-06-01"]


def test_rendered_spark_submit_commands_match_expected(dagbag):
    import os

    rendered = rendered_spark_submit_commands(dagbag, "2024-06-01")
    if os.environ.get("OSTAP_UPDATE_EXPECTED") and rendered != EXPECTED_COMMANDS.read_text():
        # Never passes while rewriting: the new file is reviewed (git diff), then the test rerun.
        EXPECTED_COMMANDS.write_text(rendered)
        pytest.fail(f"rewrote {EXPECTED_COMMANDS}: review `git diff`, then rerun without OSTAP_UPDATE_EXPECTED")
    assert rendered == EXPECTED_COMMANDS.read_text()


def test_a_spark_task_names_an_existing_pipeline():
    from jobs.airflow.dag_defaults import pipeline_package, spark_job

    assert pipeline_package("scoring_targets") == "jobs.scoring_targets"
    with pytest.raises(ValueError, match="no pipeline 'scoring_target'"):
        spark_job("build_targets", "targets", pipeline="scoring_target")


EXPECTED_CONNECT_COMMANDS = EXPECTED_COMMANDS.parent / "connect_commands.txt"


def test_rendered_connect_commands_match_expected(tmp_path, monkeypatch):
    """With OSTAP_SPARK_TASKS=connect the same tasks (one per entity and job) run the `ostap`
    command itself with --remote, the URL rendered from connection spark_connect_default."""
    import json
    import os
    import shlex
    import sys

    from airflow.dag_processing.dagbag import DagBag

    from jobs.local.airflow_local import DAGS, REPO

    monkeypatch.setenv("OSTAP_SPARK_TASKS", "connect")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_CONNECT_DEFAULT",
                       json.dumps({"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": 15002}))
    dagbag = DagBag(dag_folder=str(DAGS))
    assert dagbag.import_errors == {}
    lines = []
    for dag_id in sorted(dagbag.dag_ids):
        dag = dagbag.dags[dag_id]
        for task in sorted(dag.tasks, key=lambda t: t.task_id):
            command = getattr(task, "bash_command", None)
            if command is None or "--remote" not in command:
                continue
            task.render_template_fields({"ds": "2024-06-01", "params": dag.params.dump()})
            line = shlex.join(shlex.split(task.bash_command)).replace(sys.executable, "<python>").replace(str(REPO), "<repo>")
            lines.append(f"{dag_id}.{task.task_id}: {line}")
    rendered = "\n".join(lines) + "\n"
    spark_tasks = [line.split(":")[0] for line in EXPECTED_COMMANDS.read_text().splitlines()]
    assert [line.split(":")[0] for line in lines] == spark_tasks  # the same tasks as the spark-submit path
    if os.environ.get("OSTAP_UPDATE_EXPECTED") and rendered != EXPECTED_CONNECT_COMMANDS.read_text():
        EXPECTED_CONNECT_COMMANDS.write_text(rendered)
        pytest.fail(f"rewrote {EXPECTED_CONNECT_COMMANDS}: review `git diff`, then rerun without OSTAP_UPDATE_EXPECTED")
    assert rendered == EXPECTED_CONNECT_COMMANDS.read_text()
