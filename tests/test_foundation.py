"""The foundation every job uses: registry, DDL, CLI, SparkSession factory, partition publishing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import ctx_for, wh  # noqa: E402

from jobs.cli import COMMANDS, build_parser
from jobs.core import config, files, storage, tables
from jobs.core.spark import DRIVER_JAVA_OPTIONS, driver_java_options, jvm_archive_path, session_conf
from jobs.warehouse.ddl import render

REPO = Path(__file__).resolve().parent.parent


def test_registry_covers_every_entity_in_three_zones():
    for entity in tables.ENTITIES:
        for zone in ("raw", "ods", "state"):
            assert f"{zone}.{entity}" in tables.TABLES
        raw, ods = tables.TABLES[f"raw.{entity}"], tables.TABLES[f"ods.{entity}"]
        assert raw.columns[:3] == ["ods_dt", "ods_seq", "ods_type"]
        assert set(raw.keys) <= set(raw.columns)
        # a snapshot row is the payload plus the winning change's position
        assert ods.columns[-2:] == ["ods_dt", "ods_seq"]
        assert "ods_type" not in ods.columns


def test_every_schema_parses_as_spark_ddl(spark):
    for t in tables.TABLES.values():
        assert [f.name for f in t.spark_schema().fields] == t.columns, t.qualified


def test_sql_ddl_files_match_the_registry():
    expected = render()
    on_disk = {p.name: p.read_text() for p in (REPO / "sql" / "ddl").glob("*.sql")}
    assert on_disk == expected, "sql/ddl is stale: run `ostap ddl --write`"


def test_unknown_table_and_entity_are_clear_errors():
    with pytest.raises(tables.OstapError, match="unknown table 'nope'"):
        tables.table("nope")
    with pytest.raises(tables.OstapError, match="unknown entity 'nope'"):
        tables.entity_keys("nope")
    assert tables.table("scoring_targets").qualified == "marts.scoring_targets"


def test_warehouse_root_and_conf(monkeypatch, tmp_path):
    monkeypatch.setenv("OSTAP_WAREHOUSE", "hdfs://nn:8020/ostap/")
    assert config.warehouse_root() == "hdfs://nn:8020/ostap"
    monkeypatch.delenv("OSTAP_WAREHOUSE")
    monkeypatch.chdir(tmp_path)
    assert config.warehouse_root() == str(tmp_path / "warehouse")
    assert config.parse_conf(["a.b=1", "c = x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(tables.OstapError, match="expected key=value"):
        config.parse_conf(["novalue"])


def test_session_defaults_and_conf_override():
    from jobs.core.spark import session_conf

    conf = session_conf(master="local[1]", conf={"spark.sql.shuffle.partitions": "3"})
    assert conf["spark.master"] == "local[1]"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.sql.shuffle.partitions"] == "3"


def test_session_settings_are_put_back_after_the_block(spark):
    from jobs.core.spark import session_settings

    set_key, unset_key = "spark.sql.files.openCostInBytes", "spark.ostap.test.unset"
    before = spark.conf.get(set_key)
    with pytest.raises(RuntimeError, match="inside"):
        with session_settings(spark, {set_key: "65536", unset_key: "1"}):
            assert (spark.conf.get(set_key), spark.conf.get(unset_key)) == ("65536", "1")
            raise RuntimeError("a failure inside the block")
    assert spark.conf.get(set_key) == before
    assert spark.conf.get(unset_key, None) is None


def test_a_command_run_in_process_leaves_no_setting_on_the_shared_session(spark):
    from conftest import put_back_settings

    from jobs.core.spark import get_spark

    baseline = spark.conf.getAll
    # What `ostap <command> --conf ...` does in-process: getOrCreate hands back the shared session
    # with the command's settings applied to it.
    assert get_spark("a command", conf={"spark.sql.shuffle.partitions": "7"}) is spark
    assert spark.conf.get("spark.sql.shuffle.partitions") == "7"
    # tests/conftest.py puts them back after every test with this.
    assert "spark.sql.shuffle.partitions" in put_back_settings(spark, baseline)
    assert spark.conf.getAll == baseline


def test_parquet_writes_give_up_dictionaries_that_grow_past_64_kb(spark, tmp_path):
    """jobs.core.spark's dictionary page limit reaches the Parquet writer: a column of many values falls
    back to plain encoding once its dictionary passes 64 KB (at the 1 MB default it would keep
    its ~220 KB dictionary: each value repeats 4 times), a column of few values keeps its own."""
    import pyarrow.parquet as pq

    spark.range(20_000).selectExpr("sha1(cast(id % 5000 AS string)) AS many_values",
                                   "concat('region_', id % 7) AS region").coalesce(1).write.parquet(str(tmp_path / "t"))
    (path,) = (tmp_path / "t").glob("*.parquet")
    chunk = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {chunk.column(i).path_in_schema: set(chunk.column(i).encodings) for i in range(chunk.num_columns)}
    assert "PLAIN" in encodings["many_values"], encodings
    assert "PLAIN" not in encodings["region"] and "PLAIN_DICTIONARY" in encodings["region"], encodings


def test_live_session_is_utc(spark):
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sql("select cast(timestamp'2024-01-01 00:00:00' as bigint) as s").first().s == 1704067200


def test_live_driver_runs_the_throughput_collector(spark):
    # jobs.core.spark.DRIVER_JAVA_OPTIONS must reach the JVM PySpark starts, not only the session conf.
    jvm = spark.sparkContext._jvm
    beans = jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    collectors = {beans.get(i).getName() for i in range(beans.size())}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}, collectors
    assert jvm.java.lang.System.getProperty("user.timezone") == "UTC"
    # ... and so must the class-data-sharing archive `make install` made (jobs/local/jvm_archive.py).
    arguments = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={jvm_archive_path()}" in arguments, arguments


def test_a_fresh_driver_loads_spark_from_the_install_time_class_archive(tmp_path):
    """The archive is made at install and a new driver JVM really maps it: Spark's classes come
    from its "top" layer, not from the jars (the JVM logs each class's source)."""
    archive = jvm_archive_path()
    assert archive.is_file(), f"no class archive at {archive}: `make install` makes it (`ostap jvm-archive`)"
    assert driver_java_options().endswith(f" -XX:SharedArchiveFile={archive}")
    log = tmp_path / "class-load.log"
    code = ("import sys; from jobs.core.spark import driver_java_options, get_spark\n"
            "spark = get_spark('ostap-archive-check', master='local[1]', conf={'spark.ui.enabled': 'false', "
            "'spark.driver.extraJavaOptions': driver_java_options() + ' -Xlog:class+load=info:file=' + sys.argv[1]})\n"
            "assert spark.range(5).selectExpr('sum(id) AS s').first().s == 10\n"
            "spark.stop()\n")
    subprocess.run([sys.executable, "-c", code, str(log)], check=True, cwd=REPO, timeout=300)
    sources = {}
    for line in log.read_text().splitlines():
        if " source: " in line:
            name, source = line.split("] ", 1)[-1].split(" source: ", 1)
            sources[name] = source
    archived = "shared objects file (top)"
    # Spark's own classes, from its jars or the archive (classes made at run time, lambdas and
    # generated code, are never archived: their source names the class that made them).
    spark_classes = {name: source for name, source in sources.items()
                     if name.startswith("org.apache.spark.") and (source == archived or source.endswith(".jar"))}
    assert len(spark_classes) > 1000, len(spark_classes)
    from_archive = [name for name, source in spark_classes.items() if source == archived]
    # A few are loaded by this query and not by the training run (spark.range): those come from the jars.
    assert len(from_archive) > 0.95 * len(spark_classes), (len(from_archive), len(spark_classes))
    assert "org.apache.spark.SparkContext" in from_archive


def test_a_missing_class_archive_is_not_named(tmp_path, monkeypatch):
    # A JVM given a missing archive turns class sharing off altogether (the JDK's default one too).
    monkeypatch.setenv("OSTAP_JVM_ARCHIVE", str(tmp_path / "none.jsa"))
    assert driver_java_options() == DRIVER_JAVA_OPTIONS
    assert session_conf()["spark.driver.extraJavaOptions"] == DRIVER_JAVA_OPTIONS
    (tmp_path / "with space").mkdir()
    monkeypatch.setenv("OSTAP_JVM_ARCHIVE", str(tmp_path / "with space" / "a.jsa"))
    (tmp_path / "with space" / "a.jsa").write_bytes(b"")
    assert driver_java_options() == f"{DRIVER_JAVA_OPTIONS} -XX:SharedArchiveFile='{tmp_path}/with space/a.jsa'"


def _processes_naming(text: str) -> dict[int, str]:
    """pid -> command line of the live processes whose command line contains `text`."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State:"))
            except (OSError, StopIteration):
                continue  # gone meanwhile
            if text in cmdline and "zombie" not in state:
                found[int(proc.name)] = cmdline
    return found


def test_a_class_archive_training_run_out_of_time_is_stopped_with_its_jvm(tmp_path):
    """`ostap jvm-archive` past its time limit: a one-line error, its training run and that run's
    driver JVM killed, and no archive or partial file left."""
    from jobs.core.errors import OstapError
    from jobs.local.jvm_archive import make_archive

    out_dir = tmp_path / "archive"
    seen: dict[int, str] = {}
    done = threading.Event()

    def watch():  # the training run's processes name the partial archive in their command lines
        while not done.is_set():
            seen.update(_processes_naming(str(out_dir)))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(OstapError, match=r"training run took over 15 s and was stopped"):
            make_archive(out_dir / "a.jsa", timeout_s=15)
    finally:
        done.set()
        watcher.join()
    # The kill was exercised on a real driver JVM (PySpark starts java as the run's child) ...
    assert any("java" in cmd and "-XX:ArchiveClassesAtExit=" in cmd for cmd in seen.values()), seen
    # ... and nothing of the run is left: no process, no file.
    assert _processes_naming(str(out_dir)) == {}
    assert list(out_dir.iterdir()) == []


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "jobs", "--help"], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in out.stdout
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_publish_is_a_staged_swap(spark, warehouse):
    t = tables.Table("demo_swap", "marts", ("id",), "id bigint, v string")
    first = spark.createDataFrame([(1, "a"), (2, "b")], t.spark_schema())
    storage.publish_partition(first, t, "2024-01-01", ctx=ctx_for(), check=None)
    second = spark.createDataFrame([(3, "c")], t.spark_schema())
    storage.publish_partition(second, t, "2024-01-01", ctx=ctx_for(), check=None)
    rows = storage.read_partition(spark, t, "2024-01-01", wh()).collect()
    assert [(r.id, r.v) for r in rows] == [(3, "c")]
    assert storage.list_partitions(spark, t, wh()) == ["2024-01-01"]
    leftovers = [p.name for p in Path(t.path(wh())).iterdir() if p.name.startswith("_")]
    assert leftovers == []
    # readers that discover partitions (Spark, DuckDB) see exactly the published ones
    assert spark.read.parquet(t.path(wh())).count() == 1


def _lock_table():
    return tables.Table("demo_lock", "marts", ("id",), "id bigint, v string")


class _LocksThroughFsspec:
    """jobs.core.config as storage sees it, but with every path off local disk: the publish lock then
    takes the branch it takes on HDFS or an object store (jobs.core.files, fsspec: exclusive create,
    open, modified, rm), here on fsspec's local file system."""

    def __getattr__(self, name):
        return getattr(config, name)

    @staticmethod
    def is_local(uri: str) -> bool:
        return False


@pytest.fixture(params=["local disk", "fsspec"])
def lock_file_system(request, monkeypatch):
    if request.param == "fsspec":
        monkeypatch.setattr(storage, "config", _LocksThroughFsspec())
    return request.param


def _rows(spark, t, *rows):
    return spark.createDataFrame(list(rows), t.spark_schema())


def test_a_run_waits_for_another_publishing_the_same_partition_then_replaces_it(spark, warehouse):
    t = _lock_table()
    storage.publish_partition(_rows(spark, t, (1, "first")), t, "2024-01-01", ctx=ctx_for(), check=None)
    held, released = threading.Event(), []

    def another_run():
        with storage.publishing(spark, t, "2024-01-01", ctx_for(run_id="other")):
            held.set()
            time.sleep(2)
            released.append(time.monotonic())

    holder = threading.Thread(target=another_run)
    holder.start()
    assert held.wait(30)
    lock = Path(storage.lock_path(t, "2024-01-01", wh()))
    assert '"run_id": "other"' in lock.read_text()
    storage.publish_partition(_rows(spark, t, (2, "second")), t, "2024-01-01", ctx=ctx_for(), check=None)
    published = time.monotonic()
    holder.join()
    assert released and published > released[0]  # it waited for the other run's publish to end
    assert [tuple(r) for r in storage.read_partition(spark, t, "2024-01-01", wh()).collect()] == [(2, "second")]
    assert not lock.exists()
    assert [p.name for p in Path(t.path(wh())).iterdir() if p.name.startswith("_")] == []


def test_a_run_gives_up_naming_the_run_that_holds_the_partition(spark, warehouse, monkeypatch, lock_file_system):
    t = _lock_table()
    storage.publish_partition(_rows(spark, t, (1, "first")), t, "2024-01-01", ctx=ctx_for(), check=None)
    monkeypatch.setattr(storage, "PUBLISH_LOCK_WAIT_S", 1.0)
    with storage.publishing(spark, t, "2024-01-01", ctx_for(run_id="slowrun")):
        with pytest.raises(storage.PartitionBusyError) as busy:
            storage.publish_partition(_rows(spark, t, (2, "second")), t, "2024-01-01", ctx=ctx_for(), check=None)
    message = str(busy.value)
    assert "marts.demo_lock ds=2024-01-01" in message and "run slowrun" in message
    assert "nothing was written" in message
    assert [tuple(r) for r in storage.read_partition(spark, t, "2024-01-01", wh()).collect()] == [(1, "first")]
    assert [p.name for p in Path(t.path(wh())).iterdir() if p.name.startswith("_")] == []


def _released_after(call, lock: Path, calls: list):
    """`call`, after which the lock's holder releases it (deletes the file), as a waiter sees it."""
    def then_released(*args, **kwargs):
        result = call(*args, **kwargs)
        lock.unlink()
        calls.append(call.__name__)
        return result
    return then_released


class _FileSystemReleasingBeforeOpen:
    """The fsspec file system as a waiter's read_text sees it when the holder releases the lock
    just before the waiter opens it."""

    def __init__(self, fs, lock: Path, calls: list):
        self.fs, self._lock, self._calls = fs, lock, calls

    def __getattr__(self, name):
        return getattr(self.fs, name)

    def open(self, path, *args, **kwargs):
        if self._lock.exists():
            self._lock.unlink()
            self._calls.append("open")
        return self.fs.open(path, *args, **kwargs)


def test_a_lock_released_while_another_run_reads_it_reads_as_free(spark, warehouse, lock_file_system, monkeypatch):
    # A waiter polls the lock while its holder deletes it: whichever call finds it gone sees no
    # holder and raises nothing. The holder's delete is placed at each gap in turn.
    path = storage.lock_path(_lock_table(), "2024-01-01", wh())
    lock = Path(path)
    assert storage._read_lock(spark, path) is None and storage._modified(spark, path) is None  # never taken
    lock.parent.mkdir(parents=True)

    # Created, not yet written (the waiter reads nothing it can parse), then released before the
    # waiter asks for the file's age.
    calls: list = []
    with monkeypatch.context() as patch:
        if lock_file_system == "local disk":
            patch.setattr(storage, "open", _released_after(open, lock, calls), raising=False)
        else:
            patch.setattr(storage, "read_text", _released_after(storage.read_text, lock, calls))
        lock.write_text("")
        assert storage._read_lock(spark, path) is None
    assert calls and not lock.exists()

    if lock_file_system == "fsspec":
        # Written whole, but released just before the waiter opens it.
        calls.clear()
        real_fs = files._fs
        with monkeypatch.context() as patch:
            patch.setattr(files, "_fs", lambda *args: (lambda fs, p: (
                _FileSystemReleasingBeforeOpen(fs, lock, calls), p))(*real_fs(*args)))
            lock.write_text('{"run_id": "gone"}')
            assert storage._read_lock(spark, path) is None
        assert calls == ["open"] and not lock.exists()

    lock.write_text('{"run_id": "here"}')  # and a lock that stays is read as held
    assert storage._read_lock(spark, path) == {"run_id": "here"}


def test_a_publish_lock_left_by_a_killed_run_is_taken_over(spark, warehouse, monkeypatch, lock_file_system):
    import datetime as dt
    import json
    import socket

    t = _lock_table()
    lock = Path(storage.lock_path(t, "2024-01-01", wh()))
    lock.parent.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    now = dt.datetime.now(dt.UTC)
    monkeypatch.setattr(storage, "PUBLISH_LOCK_WAIT_S", 1.0)
    holders = [
        ({"run_id": "killed", "host": socket.gethostname(), "pid": dead_pid, "since": now.isoformat()}, True),
        ({"run_id": "remote", "host": "elsewhere", "pid": 1, "since": (now - dt.timedelta(hours=7)).isoformat()}, True),
        ({"run_id": "remote", "host": "elsewhere", "pid": 1, "since": now.isoformat()}, False),
    ]
    for value, (holder, stale) in enumerate(holders):
        lock.write_text(json.dumps(holder))
        frame = _rows(spark, t, (value, holder["run_id"]))
        if stale:
            storage.publish_partition(frame, t, "2024-01-01", ctx=ctx_for(), check=None)
            published = storage.read_partition(spark, t, "2024-01-01", wh()).collect()
            assert [tuple(r) for r in published] == [tuple(frame.first())]
            assert not lock.exists()
        else:  # a live run elsewhere, as far as this host can tell
            with pytest.raises(storage.PartitionBusyError, match="run remote .*on elsewhere"):
                storage.publish_partition(frame, t, "2024-01-01", ctx=ctx_for(), check=None)
            assert json.loads(lock.read_text()) == holder


def test_append_records_keeps_earlier_records(spark, warehouse):
    t = tables.TABLES["dq.rejects"]
    for reason, run_id in (("r1", "a"), ("r2", "b")):
        storage.append_records(spark, t, [{"entity": "x", "reason": reason, "row_json": "{}", "run_id": run_id}],
                               "2024-01-01", wh())
    reasons = sorted(r.reason for r in storage.read_partition(spark, t, "2024-01-01", wh()).collect())
    assert reasons == ["r1", "r2"]


def test_tables_and_query_read_published_partitions(spark, warehouse, capsys, tmp_path):
    from jobs.cli import main
    from jobs.warehouse import catalog

    t = tables.TABLES["marts.sales_plan"]
    import datetime as dt

    rows = [(1, dt.date(2024, 6, 1), 100.0, 1.1, 110.0), (2, dt.date(2024, 6, 1), 50.0, 1.1, 55.0)]
    storage.publish_partition(spark.createDataFrame(rows, t.spark_schema()), t, "2024-06-01", ctx=ctx_for(), check=None)
    storage.publish_partition(spark.createDataFrame(rows[:1], t.spark_schema()), t, "2024-07-01", ctx=ctx_for(),
                              check=None)
    assert ("marts.sales_plan", "2024-06-01", 2) in catalog.partition_counts(wh())
    assert ("marts.sales_plan", "2024-07-01", 1) in catalog.partition_counts(wh())

    assert main(["query", "select store_id, plan from marts.sales_plan where ds = '2024-06-01' order by 1"]) == 0
    out = capsys.readouterr().out
    assert "110.0" in out and "55.0" in out
    csv = tmp_path / "plan.csv"
    assert main(["query", "select * from marts.sales_plan", "--csv", str(csv)]) == 0
    assert len(csv.read_text().strip().splitlines()) == 1 + 3
    assert main(["query", "select * from marts.no_such_table"]) == 2
    assert "query failed" in capsys.readouterr().err
    assert main(["tables", "--zone", "marts"]) == 0
    assert "marts.sales_plan  2024-07-01  1" in capsys.readouterr().out


def test_every_ostap_variable_the_code_names_is_a_setting_and_in_the_readme():
    import re

    from jobs.core import settings

    known = {s.name for s in settings.ALL}
    named = {name for folder in ("jobs", "dags", "bin") for path in (REPO / folder).rglob("*.py")
             for name in re.findall(r"OSTAP_[A-Z0-9_]+", path.read_text())}
    assert named - known == set(), "read through jobs.core.settings and listed there"
    unread = {s.name for s in settings.ALL
              if not any(f"settings.{attr}" in path.read_text() for attr, value in vars(settings).items()
                         if value is s for path in (REPO / "jobs").rglob("*.py"))}
    assert unread == set()
    assert settings.markdown_table() in (REPO / "README.md").read_text(), \
        "README's configuration table is stale: python -m jobs.core.settings prints it"
