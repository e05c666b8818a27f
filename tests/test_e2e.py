"""End to end (`make test-e2e`): a SIGKILL during a publish, two publishers racing, the same job on
a Spark standalone cluster, and the real Airflow scheduler running backfills of every DAG on
generated data, its Spark tasks on one warm Spark Connect server (a rebuild then through spark-submit)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ctx_for, personal_values_in, wh  # noqa: E402

from jobs.core import storage, tables
from jobs.local import airflow_local, redis_local
from jobs.serving import serving

# The scenario's first test also waits for the scheduler to run every backfill (its fixture).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DEMO_START, DEMO_DAYS, DEMO_DS = "2024-05-22", 11, "2024-06-01"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Small generated sources ending on DEMO_DS (the 1st of a month, so the forecast runs too)."""
    from jobs.generator.generate import generate_demo

    root = tmp_path_factory.mktemp("e2e_warehouse")
    generate_demo(str(root), DEMO_START, DEMO_DAYS, 11, "small")
    return root


def _ostap(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs", *args], env=env, capture_output=True, text=True)


def test_sigkill_during_publish_leaves_the_previous_partition(generated, tmp_path, spark):
    from jobs.ods_snapshot.snapshot import build_snapshot

    root = tmp_path / "wh"
    env = dict(os.environ, OSTAP_WAREHOUSE=str(root), OSTAP_SPARK_LOG_LEVEL="ERROR")
    (root / "raw").mkdir(parents=True)
    os.symlink(generated / "raw" / "page_views", root / "raw" / "page_views")
    build_snapshot(spark, "page_views", ctx_for(DEMO_DS, root=str(root)), mode="full")  # the previous publish
    table_dir = root / "ods" / "page_views"
    published = table_dir / f"ds={DEMO_DS}"
    before = sorted(p.name for p in published.iterdir())

    args = ("snapshot", "--entity", "page_views", "--ds", DEMO_DS, "--full", "--master", "local[2]")
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
    assert str(proc.pid) in lock.read_text()  # left by the killed run; the next run takes it over
    # Readers still see the previous partition, whole.
    assert sorted(p.name for p in published.iterdir()) == before
    import duckdb

    n = duckdb.connect().execute(
        f"select count(*) from read_parquet('{table_dir}/*/*.parquet', hive_partitioning=true)").fetchone()[0]
    import pyarrow.parquet as pq

    assert n == pq.read_table(published).num_rows > 0
    build_snapshot(spark, "page_views", ctx_for(DEMO_DS, root=str(root)), mode="full")  # a rerun after the kill
    assert pq.read_table(published).num_rows == n
    assert [p.name for p in table_dir.iterdir() if p.name.startswith("_")] == []


def test_two_runs_of_one_snapshot_at_once_both_succeed_and_publish_it_whole(generated, tmp_path, spark):
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
    from jobs.ods_snapshot.snapshot import build_snapshot

    build_snapshot(spark, "clients", ctx_for(DEMO_DS, root=str(tmp_path / "wh")), mode="full")  # a lone run
    key = lambda row: sorted(row.items())  # noqa: E731
    for zone in ("ods", "state"):
        again = pq.read_table(tmp_path / "wh" / zone / "clients" / f"ds={DEMO_DS}").to_pylist()
        assert sorted(map(key, again)) == sorted(map(key, published[zone])) and again


def test_snapshot_on_a_standalone_cluster_equals_local_mode(generated, tmp_path, spark):
    from jobs.local.cluster import start_local_cluster

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
    on_cluster = sorted(storage.read_partition(spark, t, DEMO_DS, str(tmp_path / "cluster_wh")).collect())
    from jobs.ods_snapshot.snapshot import build_snapshot

    local_root = tmp_path / "local_wh"
    local_root.mkdir()
    os.symlink(generated / "raw", local_root / "raw")
    build_snapshot(spark, "applications", ctx_for(DEMO_DS, root=str(local_root)), mode="full")
    local = sorted(storage.read_partition(spark, t, DEMO_DS, str(local_root)).collect())
    assert len(on_cluster) > 0 and on_cluster == local


# --------------------------------------------------------------------------------------------
# One embedded Airflow (one metadata database, one api-server, one scheduler) runs backfills of
# all four DAGs: two snapshot days, the targets of both days reading the snapshots the backfill
# just built, and the recommendations (served into Redis) and the monthly forecast of the second.
# --------------------------------------------------------------------------------------------

BACKFILL_DAYS = ["2024-05-31", DEMO_DS]
SNAPSHOT_DAG = "ods_snapshot_daily"
# dag_id -> the days it is backfilled over
BACKFILLS = {SNAPSHOT_DAG: BACKFILL_DAYS, "scoring_targets_daily": BACKFILL_DAYS,
             "recommendations_daily": [DEMO_DS], "sales_forecast_monthly": [DEMO_DS]}


def _dag_run_states(home, dag_id: str) -> dict[str, str]:
    """ds -> state of the DAG's runs, read straight from the metadata database (SQLite)."""
    return {run["logical_date"][:10]: run["state"] for run in airflow_local.dag_runs(home, dag_id)}


def _create_backfill(env: dict, dag_id: str, days: list[str], *options: str) -> None:
    """`airflow backfill create` over `days`, before the scheduler and api-server start: on SQLite,
    a CLI write racing their start-up writes can fail with "database is locked" (seen once in
    CI). The queued backfill runs wait for the scheduler either way."""
    created = airflow_local.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", days[0],
                                    "--to-date", days[-1], *options, env=env, capture=True, check=False)
    assert created.returncode == 0, created.stderr


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


@pytest.fixture(scope="module")
def backfilled(generated, tmp_path_factory):
    """The warehouse, Airflow home and environment after the scheduler ran every backfill, with
    what the scheduler reported before it started (`failed-deps` of the snapshot runs)."""
    base = tmp_path_factory.mktemp("backfill")
    root, home = base / "wh", base / "airflow"
    (root / "raw").mkdir(parents=True)
    for entity in tables.ENTITIES:
        os.symlink(generated / "raw" / entity, root / "raw" / entity)
    env = airflow_local.airflow_env(home=home, warehouse=str(root))
    env["OSTAP_TASK_RETRIES"] = "0"
    env["OSTAP_SENSOR_POKE_S"] = "10"  # the downstream sensors see the snapshots soon after they land
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"  # only the backfills run, no "latest interval" run
    airflow_local.migrate(env)
    airflow_local.airflow("dags", "reserialize", env=env, capture=True)
    for dag_id, days in BACKFILLS.items():
        airflow_local.airflow("dags", "unpause", dag_id, env=env, capture=True)
        # Both snapshot runs may be active at once: only depends_on_past orders an entity's days.
        # Airflow asks a DAG with depends_on_past for a reprocess behavior (README, Backfill).
        _create_backfill(env, dag_id, days, "--max-active-runs", "2", "--reprocess-behavior", "completed")
    # As the scheduler sees it before anything ran: the second day waits for the first, which waits for nothing.
    run_ids = {run["logical_date"][:10]: run["run_id"] for run in airflow_local.dag_runs(home, SNAPSHOT_DAG)}
    waits = {ds: airflow_local.airflow("tasks", "failed-deps", SNAPSHOT_DAG, "snapshot_clients", run_ids[ds], env=env,
                                       capture=True).stdout for ds in BACKFILL_DAYS}
    redis_url = airflow_local.serving_redis(env)  # the recommendations DAG loads its lists here
    try:
        # The embedded default: every Spark task on one warm Spark Connect server.
        with airflow_local.spark_connect(env, "connect"), airflow_local.api_server(env), \
                airflow_local.scheduler(env):
            deadline = time.monotonic() + 1500
            while True:
                states = {dag_id: _dag_run_states(home, dag_id) for dag_id in BACKFILLS}
                if all(len(states[d]) == len(days) and set(states[d].values()) <= {"success", "failed"}
                       for d, days in BACKFILLS.items()):
                    break
                assert time.monotonic() < deadline, f"backfill runs not finished: {states}"
                time.sleep(5)
        served = serving.status(redis_url)
    finally:
        redis_local.stop(airflow_local.redis_dir(env))
    return {"root": root, "home": home, "env": env, "waits": waits, "states": states, "served": served}


def test_every_backfill_run_succeeds(backfilled):
    expected = {dag_id: dict.fromkeys(days, "success") for dag_id, days in BACKFILLS.items()}
    assert backfilled["states"] == expected, f"see the task logs under {backfilled['home'] / 'logs'}"


def test_every_table_is_published_validated_served_and_reported(backfilled, monkeypatch):
    from jobs.warehouse import catalog, report

    monkeypatch.setenv("OSTAP_WAREHOUSE", str(backfilled["root"]))
    counts = {t: n for t, ds, n in catalog.partition_counts(wh()) if ds == DEMO_DS}
    # The A/B test's tables need served traffic (abtest_daily; tests/test_abtest.py runs its loop).
    expected = [t.qualified for t in tables.published_tables() if t.zone in ("ods", "marts")
                and t.pipeline != "abtest" and t.name not in tables.LANDED_ENTITIES]
    missing = [t for t in expected if not counts.get(t)]
    assert missing == [], f"tables without rows for {DEMO_DS}: {missing}"
    con = catalog.connect(wh())
    validated = {r[0] for r in con.execute(
        "select distinct table_name from dq.validation_results where ds = ?", [DEMO_DS]).fetchall()}
    assert set(expected) <= validated
    critical = con.execute("select count(*) from dq.validation_results where ds = ? and not success "
                           "and severity = 'critical'", [DEMO_DS]).fetchone()[0]
    assert critical == 0
    # The DAG's serving step loaded that date's lists into Redis.
    served = backfilled["served"]
    assert served["versions"][served["current"]]["ds"] == DEMO_DS
    page = Path(report.write_run_report(wh(), DEMO_DS)).read_text()
    assert "marts.recommendations" in page and "ods.clients" in page


def test_a_snapshot_backfill_runs_each_entitys_days_in_order_and_incrementally(backfilled, spark):
    """The backfill's runs overlap, yet the scheduler holds each entity's day until its previous
    day has succeeded (depends_on_past), so the second day is computed incrementally from the
    state the backfill itself just wrote, and equals a full rebuild."""
    from jobs.ods_snapshot.snapshot import build_snapshot

    first, second = BACKFILL_DAYS
    waits = backfilled["waits"]
    assert "Previous Dagrun State" not in waits[first], waits[first]
    assert "Previous Dagrun State: depends_on_past is true" in waits[second], waits[second]

    root, home = backfilled["root"], backfilled["home"]
    runs = _task_runs(home, SNAPSHOT_DAG, "snapshot_")
    assert set(runs) == {f"snapshot_{e}" for e in tables.ENTITIES}
    for task_id, by_day in runs.items():
        assert sorted(by_day) == BACKFILL_DAYS, (task_id, by_day)
        assert by_day[second][0] >= by_day[first][1], f"{task_id} {second} started before {first} ended"

    metrics = {(r.entity, ds): r.mode for ds in BACKFILL_DAYS
               for r in storage.read_partition(spark, tables.TABLES["dq.job_metrics"], ds, str(root)).collect()
               if r.job == "snapshot"}
    # No state before the first day: a full rebuild; then each day from the one before.
    assert metrics == {(e, ds): "full" if ds == first else "incremental" for e in tables.ENTITIES for ds in BACKFILL_DAYS}

    rebuilt_root = backfilled["root"].parent / "rebuilt"
    (rebuilt_root / "raw").mkdir(parents=True)
    for entity in tables.ENTITIES:
        os.symlink(backfilled["root"] / "raw" / entity, rebuilt_root / "raw" / entity)
        ods = tables.TABLES[f"ods.{entity}"]
        chained = sorted(storage.read_partition(spark, ods, second, str(root)).collect())
        build_snapshot(spark, entity, ctx_for(second, root=str(rebuilt_root)), mode="full", validate=False)
        rebuilt = sorted(storage.read_partition(spark, ods, second, str(rebuilt_root)).collect())
        assert len(chained) > 0 and chained == rebuilt, f"ods.{entity} ds={second}: the backfill's chain != a full rebuild"


def test_the_targets_backfill_reads_the_backfilled_snapshots_and_equals_the_daily_runs(backfilled, spark, monkeypatch):
    """`airflow backfill create` of scoring_targets_daily, its sensor waiting for the snapshot
    backfill's partitions: one partition per day, each equal to the job run directly on them."""
    from jobs.scoring_targets import targets

    root = str(backfilled["root"])
    monkeypatch.setenv("OSTAP_PII_KEY", backfilled["env"]["OSTAP_PII_KEY"])  # the key the Spark tasks hashed with
    names = ("marts.scoring_targets", "marts.target_recovery")
    for name in names:
        assert storage.list_partitions(spark, tables.TABLES[name], root) == BACKFILL_DAYS
    for ds in BACKFILL_DAYS:
        backfilled_rows = {name: sorted(storage.read_partition(spark, tables.TABLES[name], ds, root).collect())
                           for name in names}
        targets.build_and_publish(spark, ctx_for(ds, root=root))  # the daily run of that date
        for name, rows in backfilled_rows.items():
            daily = sorted(storage.read_partition(spark, tables.TABLES[name], ds, root).collect())
            assert len(rows) > 0 and rows == daily, f"{name} ds={ds}: backfill differs from the daily run"


def test_every_published_partition_has_its_manifest_and_nothing_is_stale(backfilled):
    """Publishing wrote a manifest for every partition the DAGs published, naming its run, job and
    inputs; right after the backfills every partition was built from its inputs' current runs."""
    from jobs.core.tables import TABLES
    from jobs.warehouse import lineage

    root = Path(backfilled["root"])
    partitions = [(t, d) for t in TABLES.values() if t.zone in ("ods", "marts")
                  for d in sorted((root / t.zone / t.name).glob("ds=*/_SUCCESS"))]
    assert len(partitions) >= 11 * 2 + 10
    for table, marker in partitions:
        manifest = json.loads((marker.parent / "_RUN.json").read_text())
        # The targets test above republished its tables in-process, with no CLI command to name.
        assert manifest["job"] or table.pipeline == "scoring_targets", (table.qualified, marker)
        assert manifest["run_id"] and manifest["inputs"], (table.qualified, marker)
        assert manifest["quality"]["passed"], (table.qualified, marker)
    assert lineage.stale(str(root)) == []


def _events(root: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (root / "_lineage" / name).read_text().splitlines()]


def test_every_spark_task_sends_job_events_that_join_its_airflow_task_run(backfilled):
    """The OpenLineage provider reports each Airflow task run; the job it submits reports its own
    run with that task run as parent, so a lineage server draws one tree."""
    from jobs.core import lineage_events

    root = Path(backfilled["root"])
    task_runs = {e["run"]["runId"]: e["job"]["name"] for e in _events(root, lineage_events.AIRFLOW_EVENTS_FILE)
                 if e.get("job") and e["eventType"] in ("START", "COMPLETE")}
    jobs = [e for e in _events(root, lineage_events.EVENTS_FILE) if e["eventType"] == "COMPLETE"]
    parented = [e for e in jobs if "parent" in e["run"]["facets"]]
    spark_tasks = len(tables.ENTITIES) * len(BACKFILL_DAYS) + len(BACKFILL_DAYS) + 2  # snapshots, targets, recommend, forecast
    assert len(parented) >= spark_tasks, [e["job"]["name"] for e in jobs]
    for event in parented:
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] in task_runs, (event["job"]["name"], parent)
        assert task_runs[parent["run"]["runId"]] == parent["job"]["name"]
    snapshot = next(e for e in parented if e["job"]["name"] == "ostap.snapshot.clients")
    assert snapshot["run"]["facets"]["parent"]["job"]["name"] == f"{SNAPSHOT_DAG}.snapshot_clients"
    assert {d["name"] for d in snapshot["outputs"]} == {"ods.clients", "state.clients"}


def test_the_printed_rebuild_run_through_airflow_leaves_nothing_stale(backfilled):
    """Rerun one entity's first day by hand: `ostap lineage stale` names what was built from it,
    and its `airflow tasks clear` lines, run in order by the scheduler, leave nothing stale. The
    rebuild's Spark tasks go through spark-submit (a driver each) where the backfill's ran on the
    Connect server: the scheduler runs both paths, and they agree."""
    import shlex

    env, home, first, second = dict(backfilled["env"]), backfilled["home"], *BACKFILL_DAYS
    rerun = _ostap("snapshot", "--entity", "clients", "--ds", first, "--full", env=env)
    assert rerun.returncode == 0, rerun.stderr
    found = json.loads(_ostap("lineage", "stale", "--json", env=env).stdout)
    assert sorted((f["table"], f["partition"]) for f in found) == [
        ("marts.scoring_targets", first), ("marts.scoring_targets", second), ("marts.target_recovery", first),
        ("marts.target_recovery", second), ("ods.clients", second), ("state.clients", second)]
    printed = _ostap("lineage", "stale", env=env).stdout
    commands = printed.split("rebuild, in this order")[1].splitlines()[1:]
    assert commands == [f"airflow tasks clear scoring_targets_daily -s {first} -e {first} -y",
                        f"airflow tasks clear {SNAPSHOT_DAG} -t snapshot_clients -s {second} -e {second} -y",
                        f"airflow tasks clear scoring_targets_daily -s {second} -e {second} -y"]
    with airflow_local.spark_connect(env, "spark-submit"), airflow_local.api_server(env), \
            airflow_local.scheduler(env):
        for command in commands:
            dag_id = shlex.split(command)[3]
            airflow_local.airflow(*shlex.split(command)[1:], env=env, capture=True)
            deadline = time.monotonic() + 600
            while set(_dag_run_states(home, dag_id).values()) - {"success", "failed"}:
                assert time.monotonic() < deadline, f"{command}: runs not finished: {_dag_run_states(home, dag_id)}"
                time.sleep(3)
            assert set(_dag_run_states(home, dag_id).values()) == {"success"}, command
    assert _ostap("lineage", "stale", env=env).stdout.startswith("nothing is stale")
    # Which path each attempt of the second day's clients snapshot took, from its Airflow task log.
    logs = sorted((home / "logs" / f"dag_id={SNAPSHOT_DAG}").glob("run_id=*/task_id=snapshot_clients/attempt=*.log"))
    second_day = [log for log in logs if re.search(rf"--ds\W+{second}", log.read_text())]
    backfill, rebuild = (log.read_text() for log in sorted(second_day, key=lambda log: log.name))
    assert "--remote" in backfill and "Spark-Submit cmd" not in backfill
    assert "Spark-Submit cmd" in rebuild and "--remote" not in rebuild


def test_no_personal_value_leaves_the_source_zones(backfilled):
    """After every DAG ran (marts, dq, models, reports, Data Docs, the Airflow task logs), no name or
    phone of the sources appears outside raw/, ods/ and state/, in any spelling of the phone."""
    import pyarrow.dataset as pads

    from jobs.core.pii import normalize_phone

    root = Path(backfilled["root"])
    names, phones = set(), set()
    for entity, columns in {"clients": ("full_name", "msisdn"), "applications": ("phone",),
                            "tenants": ("tenant_name",), "managers": ("manager_name",)}.items():
        landed = pads.dataset(root / "raw" / entity, format="parquet", partitioning="hive").to_table(columns=list(columns))
        for column in columns:
            values = {v for v in landed.column(column).to_pylist() if v}
            if column in ("msisdn", "phone"):
                phones |= {normalize_phone(v) for v in values} - {None}
            else:
                names |= values
    assert len(names) > 50 and len(phones) > 1000  # the sources do hold personal data
    outside = [p for p in root.iterdir() if p.name not in ("raw", "ods", "state")]
    assert {p.name for p in outside} >= {"marts", "dq", "models", "reports"}
    logs = Path(backfilled["home"]) / "logs"
    assert any(logs.rglob("*.log")), "the Airflow task logs are scanned too"
    assert personal_values_in([*outside, logs], names, phones) == []


def test_the_demo_fails_at_once_instead_of_waiting_on_an_unfinished_earlier_snapshot_run(backfilled):
    """A snapshot task waits for its previous run (depends_on_past), and `airflow dags test` would
    wait for it forever: the demo's runner names that run and stops before starting anything."""
    env, home = dict(backfilled["env"]), backfilled["home"]
    # A run of the day after the backfill that never ran (no scheduler now): it holds the next day.
    airflow_local.airflow("dags", "trigger", SNAPSHOT_DAG, "--logical-date", "2024-06-02T00:00:00+00:00",
                          env=env, capture=True)
    env["OSTAP_AIRFLOW_HOME"] = str(home)
    # In a process of its own, with a time limit: without the check it would hang, not fail.
    demo = subprocess.run([sys.executable, "-c", "from jobs.local import pipeline; pipeline.run_dates(['2024-06-03'])"],
                          env=env, cwd=str(airflow_local.REPO), capture_output=True, text=True, timeout=600)
    assert demo.returncode != 0
    assert f"{SNAPSHOT_DAG} 2024-06-03 would wait forever" in demo.stderr, demo.stderr[-2000:]
    assert "2024-06-02" in demo.stderr and "is queued" in demo.stderr
    # Nothing ran: the runs are the backfill's and the one the test made.
    assert _dag_run_states(home, SNAPSHOT_DAG) == {**dict.fromkeys(BACKFILL_DAYS, "success"), "2024-06-02": "queued"}
