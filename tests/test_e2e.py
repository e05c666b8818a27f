"""End to end: the real Airflow running the real DAGs on generated data, a SIGKILL during a
publish, and the same job on a Spark standalone cluster. Slow; CI runs them."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time

import pytest

from jobs import airflow_local, redis_local, serving, storage, tables

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
    lock = table_dir / f"_lock_ds={DEMO_DS}"
    assert str(proc.pid) in lock.read_text()  # left by the killed run; the rerun takes it over
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
    assert [p.name for p in table_dir.iterdir() if p.name.startswith("_")] == []


def test_two_runs_of_one_snapshot_at_once_both_succeed_and_publish_it_whole(generated, tmp_path):
    """A CLI rerun started while the Airflow task still runs: the later publish waits for the
    earlier one's swap (without the lock, one run's clean-up deleted the other's staging and it
    failed), and the partitions end whole and equal to a lone run's."""
    env = dict(os.environ, OSTAP_WAREHOUSE=str(tmp_path / "wh"), OSTAP_SPARK_LOG_LEVEL="ERROR")
    raw = tmp_path / "wh" / "raw"
    raw.mkdir(parents=True)
    os.symlink(generated / "raw" / "clients", raw / "clients")
    args = ("snapshot", "--entity", "clients", "--ds", DEMO_DS, "--full", "--master", "local[1]")
    runs = [subprocess.Popen([sys.executable, "-m", "jobs", *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(run.wait(timeout=900), run.stderr.read()) for run in runs]
    for code, err in outcomes:
        assert code == 0, err[-3000:]
    import pyarrow.parquet as pq

    published = {zone: pq.read_table(tmp_path / "wh" / zone / "clients" / f"ds={DEMO_DS}").to_pylist()
                 for zone in ("ods", "state")}
    for zone in ("ods", "state"):
        table_dir = tmp_path / "wh" / zone / "clients"
        assert [p.name for p in table_dir.iterdir() if p.name.startswith("_")] == []
    alone = _ostap(*args, env=env)
    assert alone.returncode == 0, alone.stderr
    key = lambda row: sorted(row.items())  # noqa: E731
    for zone in ("ods", "state"):
        again = pq.read_table(tmp_path / "wh" / zone / "clients" / f"ds={DEMO_DS}").to_pylist()
        assert sorted(map(key, again)) == sorted(map(key, published[zone])) and again


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
    return {run["logical_date"][:10]: run["state"] for run in airflow_local.dag_runs(home, dag_id)}


def _airflow_for_backfill(generated, tmp_path, entities, dag_id: str):
    """(warehouse, Airflow home, env): a warehouse with the generated raw/ of `entities`, and a fresh
    embedded Airflow with `dag_id` unpaused, tasks not retried, and only backfills and manual runs
    scheduled (no "latest interval" run appears when the DAG is unpaused)."""
    root = tmp_path / "wh"
    (root / "raw").mkdir(parents=True)
    for entity in entities:
        os.symlink(generated / "raw" / entity, root / "raw" / entity)
    home = tmp_path / "airflow"
    env = airflow_local.airflow_env(home=home, warehouse=str(root))
    env["OSTAP_TASK_RETRIES"] = "0"
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    airflow_local.migrate(env)
    airflow_local.airflow("dags", "reserialize", env=env, capture=True)
    airflow_local.airflow("dags", "unpause", dag_id, env=env, capture=True)
    return root, home, env


def _create_backfill(env: dict, dag_id: str, days: list[str], *options: str) -> None:
    """`airflow backfill create` over `days`, before the scheduler and api-server start: on SQLite,
    a CLI write racing their start-up writes can fail with "database is locked" (seen once in
    CI). The queued backfill runs wait for the scheduler either way."""
    created = airflow_local.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", days[0],
                                    "--to-date", days[-1], *options, env=env, capture=True, check=False)
    assert created.returncode == 0, created.stderr


def _run_backfill(home, env: dict, dag_id: str, days: list[str], timeout_s: float) -> dict[str, str]:
    """Run the created backfill with a real scheduler (LocalExecutor) and api-server until every
    run has finished; ds -> state of each run."""
    with airflow_local.api_server(env), airflow_local.scheduler(env):
        deadline = time.monotonic() + timeout_s
        while True:
            states = _dag_run_states(home, dag_id)
            if len(states) == len(days) and all(s in ("success", "failed") for s in states.values()):
                return states
            assert time.monotonic() < deadline, f"backfill runs not finished: {states}"
            time.sleep(5)


def test_three_day_backfill_by_the_scheduler_equals_the_daily_runs(generated, tmp_path, monkeypatch, spark):
    """`airflow backfill create` over three dates, executed by a real scheduler (LocalExecutor),
    publishes three partitions per output, each equal to the job run directly for its date."""
    from jobs import targets
    from jobs.snapshot import build_snapshot

    dag_id = "scoring_targets_daily"
    root, home, env = _airflow_for_backfill(generated, tmp_path, ("clients", "contracts", "applications"), dag_id)
    for ds in BACKFILL_DATES:  # the inputs the DAG's sensor waits for
        for entity in ("clients", "contracts", "applications"):
            build_snapshot(spark, entity, ds, mode="full", root=str(root), validate=False)
    _create_backfill(env, dag_id, BACKFILL_DATES)
    states = _run_backfill(home, env, dag_id, BACKFILL_DATES, timeout_s=1500)
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


def _task_runs(home, dag_id: str, task_prefix: str) -> dict[str, dict[str, tuple]]:
    """task_id -> ds -> (start, end) of the DAG's task instances, from the metadata database."""
    rows = airflow_local.query_metadata(
        home, "select ti.task_id, dr.logical_date, ti.start_date, ti.end_date from task_instance ti "
              "join dag_run dr on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id "
              "where ti.dag_id = ? and ti.task_id like ?", (dag_id, f"{task_prefix}%"))
    runs: dict[str, dict[str, tuple]] = {}
    for task_id, logical, start, end in rows:
        runs.setdefault(task_id, {})[str(logical)[:10]] = (start, end)
    return runs


def test_a_snapshot_backfill_runs_each_entitys_days_in_order_and_incrementally(generated, tmp_path, spark):
    """`airflow backfill create` of ods_snapshot_daily lets its runs overlap, yet the scheduler holds
    each entity's day until its previous day has succeeded (depends_on_past), so every day after
    the first is computed incrementally from the state the backfill itself just wrote, and equals
    a full rebuild."""
    from jobs.snapshot import build_snapshot

    days = BACKFILL_DATES[-2:]  # two days show the chain; each day is 11 Spark tasks on 2 slots
    dag_id = "ods_snapshot_daily"
    root, home, env = _airflow_for_backfill(generated, tmp_path, tables.ENTITIES, dag_id)
    # Both runs may be active at once: only depends_on_past orders an entity's days. Airflow asks a
    # DAG with depends_on_past for a reprocess behavior (README, Backfill).
    _create_backfill(env, dag_id, days, "--max-active-runs", "2", "--reprocess-behavior", "completed")
    # As the scheduler sees it before anything ran: the second day waits for the first, which waits for nothing.
    run_ids = {run["logical_date"][:10]: run["run_id"] for run in airflow_local.dag_runs(home, dag_id)}
    waits = {ds: airflow_local.airflow("tasks", "failed-deps", dag_id, "snapshot_clients", run_ids[ds], env=env,
                                       capture=True).stdout for ds in days}
    assert "Previous Dagrun State" not in waits[days[0]], waits[days[0]]
    assert "Previous Dagrun State: depends_on_past is true" in waits[days[1]], waits[days[1]]

    states = _run_backfill(home, env, dag_id, days, timeout_s=2400)
    assert states == dict.fromkeys(days, "success"), f"see the task logs under {home / 'logs'}"

    runs = _task_runs(home, dag_id, "snapshot_")
    assert set(runs) == {f"snapshot_{e}" for e in tables.ENTITIES}
    for task_id, by_day in runs.items():
        assert sorted(by_day) == days, (task_id, by_day)
        for before, after in itertools.pairwise(days):
            assert by_day[after][0] >= by_day[before][1], f"{task_id} {after} started before {before} ended"

    metrics = {(r.entity, ds): r.mode for ds in days
               for r in storage.read_partition(spark, tables.TABLES["dq.job_metrics"], ds, root=str(root)).collect()
               if r.job == "snapshot"}
    # No state before the first day: a full rebuild; then each day from the one before.
    assert metrics == {(e, ds): "full" if ds == days[0] else "incremental" for e in tables.ENTITIES for ds in days}

    for entity in tables.ENTITIES:
        ods = tables.TABLES[f"ods.{entity}"]
        chained = sorted(storage.read_partition(spark, ods, days[-1], root=str(root)).collect())
        build_snapshot(spark, entity, days[-1], mode="full", root=str(root), validate=False)
        rebuilt = sorted(storage.read_partition(spark, ods, days[-1], root=str(root)).collect())
        assert len(chained) > 0 and chained == rebuilt, f"ods.{entity} ds={days[-1]}: the backfill's chain != a full rebuild"


def test_the_demo_fails_at_once_instead_of_waiting_on_an_unfinished_earlier_snapshot_run(generated, tmp_path):
    """A snapshot task waits for its previous run (depends_on_past), and `airflow dags test` would
    wait for it forever: the demo's runner names that run and stops before starting anything."""
    home = tmp_path / "airflow"
    env = airflow_local.airflow_env(home=home, warehouse=str(generated))
    airflow_local.migrate(env)
    airflow_local.airflow("dags", "reserialize", env=env, capture=True)
    # A run of the day before that never ran (no scheduler): its snapshot tasks hold the next day.
    airflow_local.airflow("dags", "trigger", "ods_snapshot_daily", "--logical-date", "2024-05-30T00:00:00+00:00",
                          env=env, capture=True)
    env["OSTAP_AIRFLOW_HOME"] = str(home)
    # In a process of its own, with a time limit: without the check it would hang, not fail.
    demo = subprocess.run([sys.executable, "-c", "from jobs import pipeline; pipeline.run_dates(['2024-05-31'])"],
                          env=env, cwd=str(airflow_local.REPO), capture_output=True, text=True, timeout=600)
    assert demo.returncode != 0
    assert "ods_snapshot_daily 2024-05-31 would wait forever" in demo.stderr, demo.stderr[-2000:]
    assert "2024-05-30" in demo.stderr and "is queued" in demo.stderr
    # Nothing ran: the only run is the one the test made.
    assert _dag_run_states(home, "ods_snapshot_daily") == {"2024-05-30": "queued"}
