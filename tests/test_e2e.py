"""End to end: the real Airflow running the real DAGs on generated data, a SIGKILL during a
publish, and the same job on a Spark standalone cluster. Slow; CI runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from jobs import redis_local, serving, storage, tables

pytestmark = pytest.mark.slow

DEMO_START, DEMO_DAYS, DEMO_DS = "2024-05-22", 11, "2024-06-01"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Small generated sources ending on DEMO_DS (the 1st of a month, so the forecast runs too)."""
    from jobs.generate import generate_demo

    root = tmp_path_factory.mktemp("e2e_warehouse")
    generate_demo(str(root), DEMO_START, DEMO_DAYS, 11, "small")
    return root


def _ostap(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs", *args], env=env, capture_output=True, text=True)


def test_every_dag_through_airflow_publishes_every_table(generated, tmp_path, monkeypatch, spark):
    from jobs import catalog, pipeline

    monkeypatch.setenv("OSTAP_WAREHOUSE", str(generated))
    monkeypatch.setenv("OSTAP_AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("OSTAP_REDIS_URL", raising=False)
    try:
        assert pipeline.run_dates([DEMO_DS]) == 0
        # The DAG's serving step loaded that date's lists into the embedded Redis.
        served = serving.status(redis_local.url_of(tmp_path / "airflow" / "redis"))
        assert served["versions"][served["current"]]["ds"] == DEMO_DS
    finally:
        redis_local.stop(tmp_path / "airflow" / "redis")

    counts = {t: n for t, ds, n in catalog.partition_counts() if ds == DEMO_DS}
    expected = [t.qualified for t in tables.published_tables() if t.zone in ("ods", "marts")]
    missing = [t for t in expected if not counts.get(t)]
    assert missing == [], f"tables without rows for {DEMO_DS}: {missing}"
    con = catalog.connect()
    validated = {r[0] for r in con.execute(
        "select distinct table_name from dq.validation_results where ds = ?", [DEMO_DS]).fetchall()}
    assert set(expected) <= validated
    critical = con.execute("select count(*) from dq.validation_results where ds = ? and not success "
                           "and severity = 'critical'", [DEMO_DS]).fetchone()[0]
    assert critical == 0
    report = generated / "reports" / f"run_{DEMO_DS}.html"
    assert report.exists() and "marts.recommendations" in report.read_text()

    # What Airflow published equals the job run directly (idempotent per ds).
    from jobs.snapshot import build_snapshot

    via_airflow = sorted(storage.read_partition(spark, tables.TABLES["ods.clients"], DEMO_DS).collect())
    build_snapshot(spark, "clients", DEMO_DS, mode="full")
    assert sorted(storage.read_partition(spark, tables.TABLES["ods.clients"], DEMO_DS).collect()) == via_airflow


def test_sigkill_during_publish_leaves_the_previous_partition(generated, tmp_path):
    env = dict(os.environ, OSTAP_WAREHOUSE=str(tmp_path / "wh"), OSTAP_SPARK_LOG_LEVEL="ERROR")
    raw = tmp_path / "wh" / "raw"
    raw.mkdir(parents=True)
    os.symlink(generated / "raw" / "page_views", raw / "page_views")
    args = ("snapshot", "--entity", "page_views", "--ds", DEMO_DS, "--full", "--master", "local[2]")
    first = _ostap(*args, env=env)
    assert first.returncode == 0, first.stderr
    table_dir = tmp_path / "wh" / "ods" / "page_views"
    published = table_dir / f"ds={DEMO_DS}"
    before = sorted(p.name for p in published.iterdir())

    proc = subprocess.Popen([sys.executable, "-m", "jobs", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not any(p.name.startswith("_staging_") for p in table_dir.iterdir()):
        assert proc.poll() is None, "the rerun ended before it started writing"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM, mid-write
    proc.wait()
    # Readers still see the previous partition, whole.
    assert sorted(p.name for p in published.iterdir()) == before
    import duckdb

    n = duckdb.connect().execute(
        f"select count(*) from read_parquet('{table_dir}/*/*.parquet', hive_partitioning=true)").fetchone()[0]
    import pyarrow.parquet as pq

    assert n == pq.read_table(published).num_rows > 0
    rerun = _ostap(*args, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert pq.read_table(published).num_rows == n
    assert not any(p.name.startswith("_staging_") for p in table_dir.iterdir())


def test_snapshot_on_a_standalone_cluster_equals_local_mode(generated, tmp_path, spark):
    from jobs.cluster import start_local_cluster

    env = dict(os.environ, OSTAP_WAREHOUSE=str(generated), OSTAP_SPARK_LOG_LEVEL="ERROR")
    cluster = start_local_cluster(workers=2, cores=1, memory="1g")
    try:
        assert cluster.alive_workers() == 2
        env["OSTAP_WAREHOUSE"] = str(tmp_path / "cluster_wh")
        (tmp_path / "cluster_wh").mkdir()
        os.symlink(generated / "raw", tmp_path / "cluster_wh" / "raw")
        result = _ostap("snapshot", "--entity", "applications", "--ds", DEMO_DS, "--full",
                        "--master", cluster.master_url, "--conf", "spark.executor.memory=512m",
                        "--conf", "spark.cores.max=2", env=env)
        assert result.returncode == 0, result.stderr
    finally:
        cluster.stop()
    t = tables.TABLES["ods.applications"]
    on_cluster = sorted(storage.read_partition(spark, t, DEMO_DS, root=str(tmp_path / "cluster_wh")).collect())
    from jobs.snapshot import build_snapshot

    local_root = tmp_path / "local_wh"
    local_root.mkdir()
    os.symlink(generated / "raw", local_root / "raw")
    build_snapshot(spark, "applications", DEMO_DS, mode="full", root=str(local_root))
    local = sorted(storage.read_partition(spark, t, DEMO_DS, root=str(local_root)).collect())
    assert len(on_cluster) > 0 and on_cluster == local


BACKFILL_DATES = ["2024-05-30", "2024-05-31", "2024-06-01"]


def _dag_run_states(home, dag_id: str) -> dict[str, str]:
    """ds -> state of the DAG's runs, read straight from the metadata database (SQLite)."""
    import sqlite3

    with sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute("select logical_date, state from dag_run where dag_id = ?", (dag_id,)).fetchall()
    return {str(logical)[:10]: state for logical, state in rows}


def test_three_day_backfill_by_the_scheduler_equals_the_daily_runs(generated, tmp_path, monkeypatch, spark):
    """`airflow backfill create` over three dates, executed by a real scheduler (LocalExecutor),
    publishes three partitions per output, each equal to the job run directly for its date."""
    from jobs import airflow_local, targets
    from jobs.snapshot import build_snapshot

    root = tmp_path / "wh"
    (root / "raw").mkdir(parents=True)
    for entity in ("clients", "contracts", "applications"):
        os.symlink(generated / "raw" / entity, root / "raw" / entity)
    for ds in BACKFILL_DATES:  # the inputs the DAG's sensor waits for
        for entity in ("clients", "contracts", "applications"):
            build_snapshot(spark, entity, ds, mode="full", root=str(root), validate=False)

    home = tmp_path / "airflow"
    env = airflow_local.airflow_env(home=home, warehouse=str(root))
    env["OSTAP_TASK_RETRIES"] = "0"
    # Only the backfill runs: no "latest interval" run appears when the DAG is unpaused.
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    airflow_local.migrate(env)
    airflow_local.airflow("dags", "reserialize", env=env, capture=True)
    dag_id = "scoring_targets_daily"
    airflow_local.airflow("dags", "unpause", dag_id, env=env, capture=True)
    # Created before the scheduler and api-server start: on SQLite, a CLI write racing their
    # start-up writes can fail with "database is locked" (seen once in CI). The queued backfill
    # runs wait for the scheduler either way.
    created = airflow_local.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", BACKFILL_DATES[0],
                                    "--to-date", BACKFILL_DATES[-1], env=env, capture=True, check=False)
    assert created.returncode == 0, created.stderr
    with airflow_local.api_server(env), airflow_local.scheduler(env):
        deadline = time.monotonic() + 1500
        while True:
            states = _dag_run_states(home, dag_id)
            if len(states) == len(BACKFILL_DATES) and all(s in ("success", "failed") for s in states.values()):
                break
            assert time.monotonic() < deadline, f"backfill runs not finished: {states}"
            time.sleep(5)
    assert states == dict.fromkeys(BACKFILL_DATES, "success"), f"see the task logs under {home / 'logs'}"

    monkeypatch.setenv("OSTAP_PII_KEY", env["OSTAP_PII_KEY"])  # the key the Spark tasks hashed with
    for name in ("marts.scoring_targets", "marts.target_recovery"):
        assert storage.list_partitions(spark, tables.TABLES[name], root=str(root)) == BACKFILL_DATES
    for ds in BACKFILL_DATES:
        backfilled = {name: sorted(storage.read_partition(spark, tables.TABLES[name], ds, root=str(root)).collect())
                      for name in ("marts.scoring_targets", "marts.target_recovery")}
        targets.build_and_publish(spark, ds, root=str(root))  # the daily run of that date
        for name, rows in backfilled.items():
            daily = sorted(storage.read_partition(spark, tables.TABLES[name], ds, root=str(root)).collect())
            assert len(rows) > 0 and rows == daily, f"{name} ds={ds}: backfill differs from the daily run"
