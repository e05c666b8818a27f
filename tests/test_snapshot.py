"""Tests of `ostap snapshot`: as-of dedup semantics, conflicts, bad rows, determinism, full == incremental.

Expected snapshots are written by hand or computed by a small pure-Python reference
(`reference_snapshot`), never by the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import ctx_for, wh  # noqa: E402

from jobs.core import pii, storage, tables
from jobs.core.errors import BadInputError, DataQualityError, OstapError
from jobs.ods_snapshot import replica
from jobs.ods_snapshot import snapshot as snapshot_job
from jobs.ods_snapshot import state as snapshot_state
from jobs.ods_snapshot.snapshot import STATE_SIDECAR, build_snapshot, read_state

RAW = tables.TABLES["raw.clients"]
ODS = tables.TABLES["ods.clients"]
STATE = tables.TABLES["state.clients"]
PAYLOAD = ["client_id", "full_name", "birth_date", "msisdn", "region", "created_at"]


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def change(client_id, ods_dt, seq, ods_type="U", name="a", region="north", load_date=None):
    """One raw.clients change row as a dict (load_date defaults to the day of ods_dt)."""
    when = ts(ods_dt) if ods_dt is not None else None
    return {
        "ods_dt": when, "ods_seq": seq, "ods_type": ods_type, "client_id": client_id, "full_name": name,
        "birth_date": dt.date(1990, 1, 1), "msisdn": None, "region": region,
        "created_at": ts("2023-12-01 00:00:00"),
        "load_date": load_date or (when.date().isoformat() if when else "2024-01-01"),
    }


def write_raw(spark, rows, files=1, entity="clients", mode="append"):
    """Land rows under raw/<entity>/load_date=... as `files` Parquet files per load date."""
    table = tables.TABLES[f"raw.{entity}"]
    df = spark.createDataFrame(rows, schema=f"{table.schema}, load_date string")
    df.repartition(files).write.mode(mode).partitionBy("load_date").parquet(table.path(wh()))


def snapshot(spark, entity, ds, **options):
    """build_snapshot without the Great Expectations gate, which has its own tests and costs seconds
    per publish on shared cores; the CLI test below runs the whole job, gate included.

    On a handful of keys every day touches more than the default compaction share, so incremental
    runs here write their state as deltas (never compacting) unless a test says otherwise: the
    hand-made cases then go through the delta path, and the 30-day test mixes both.
    """
    options.setdefault("state_compaction", float("inf"))
    return build_snapshot(spark, entity, ctx_for(ds), validate=False, **options)


def snapshot_rows(spark, ds, table=ODS):
    # A state partition may be a delta on an earlier day's: compare whole states.
    df = read_state(spark, "clients", ds, wh()) if table is STATE else storage.read_partition(spark, table, ds, wh())
    return sorted(tuple(r) for r in df.select(*table.columns).collect())


def names_by_key(spark, ds):
    df = storage.read_partition(spark, ODS, ds, wh())
    return {r["client_id"]: (r["full_name"], r["ods_seq"]) for r in df.collect()}


def dq_rows(spark, name, ds):
    table = tables.TABLES[f"dq.{name}"]
    if not storage.path_exists(spark, table.partition_path(ds, wh())):
        return []
    return spark.read.schema(table.spark_schema()).parquet(table.partition_path(ds, wh())).collect()


# --- semantics on hand-made rows ------------------------------------------------------------


def test_tie_on_ods_dt_is_broken_by_ods_seq(spark, warehouse):
    # Listed out of order on purpose: the later operation (seq 8) must win although both share ods_dt.
    write_raw(spark, [
        change(1, "2024-01-01 10:00:00.1", 8, name="second"),
        change(1, "2024-01-01 10:00:00.1", 7, name="first"),
        change(1, "2024-01-01 09:00:00", 9, ods_type="I", name="insert"),
        change(2, "2024-01-01 10:00:00.2", 3, ods_type="I", name="only"),
    ])
    result = snapshot(spark, "clients", "2024-01-01")
    assert names_by_key(spark, "2024-01-01") == {1: ("second", 8), 2: ("only", 3)}
    assert (result.live_keys, result.rows_read, result.conflicts, result.rejects) == (2, 4, 0, 0)
    assert result.mode == "full" and "fell back" in result.notes[0]


def test_delete_then_reinsert_and_delete_as_last_change(spark, warehouse):
    write_raw(spark, [
        change(1, "2024-01-01 08:00:00", 1, "I", name="v1"),
        change(1, "2024-01-01 09:00:00", 2, "D", name="v1"),
        change(1, "2024-01-01 10:00:00", 3, "I", name="back"),
        change(2, "2024-01-01 08:00:00", 4, "I", name="gone"),
        change(2, "2024-01-01 09:00:00", 5, "U", name="gone2"),
        change(2, "2024-01-01 11:00:00", 6, "D", name="gone2"),
    ])
    result = snapshot(spark, "clients", "2024-01-01")
    assert names_by_key(spark, "2024-01-01") == {1: ("back", 3)}
    assert (result.live_keys, result.deletes_applied) == (1, 1)
    # The state keeps the tombstone, so a later day still knows key 2 is deleted.
    state = {r["client_id"]: r["ods_type"] for r in read_state(spark, "clients", "2024-01-01", wh()).collect()}
    assert state == {1: "I", 2: "D"}


def test_redelivered_duplicates_collapse(spark, warehouse):
    row = change(1, "2024-01-01 10:00:00.5", 4, "I", name="same")
    redelivered = dict(row, load_date="2024-01-02")
    write_raw(spark, [row, row, redelivered, change(2, "2024-01-02 10:00:00", 5, "I")])
    first = snapshot(spark, "clients", "2024-01-01")
    assert names_by_key(spark, "2024-01-01") == {1: ("same", 4)}
    assert first.duplicates_collapsed == 1 and first.conflicts == 0
    second = snapshot(spark, "clients", "2024-01-02", mode="incremental")
    assert second.mode == "incremental" and second.conflicts == 0
    assert names_by_key(spark, "2024-01-02") == {1: ("same", 4), 2: ("a", 5)}


def test_late_and_early_rows_full_equals_incremental(spark, warehouse):
    write_raw(spark, [
        change(1, "2024-01-01 08:00:00", 1, "I", name="d1"),
        # Late: happened on day 1 after the row above, landed on day 3.
        change(1, "2024-01-01 09:00:00", 2, "U", name="late", load_date="2024-01-03"),
        change(2, "2024-01-02 08:00:00", 3, "I", name="d2"),
        # Late but older than the winner: must not override it.
        change(2, "2024-01-02 07:00:00", 1, "U", name="stale", load_date="2024-01-03"),
        # Early (source clock ahead): landed on day 1, belongs to day 3.
        change(3, "2024-01-03 12:00:00", 9, "I", name="early", load_date="2024-01-01"),
    ])
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    incremental = {}
    for ds in days:
        result = snapshot(spark, "clients", ds)
        incremental[ds] = snapshot_rows(spark, ds)
        assert result.mode == ("full" if ds == days[0] else "incremental")
        assert result.pending_rows == (0 if ds == days[2] else 1)
    assert {k: v[0] for k, v in names_by_key(spark, "2024-01-01").items()} == {1: "d1"}
    assert {k: v[0] for k, v in names_by_key(spark, "2024-01-02").items()} == {1: "d1", 2: "d2"}
    assert {k: v[0] for k, v in names_by_key(spark, "2024-01-03").items()} == {1: "late", 2: "d2", 3: "early"}
    for ds in days:
        snapshot(spark, "clients", ds, mode="full")
        assert snapshot_rows(spark, ds) == incremental[ds]


def test_a_day_without_landed_rows_carries_the_snapshot_over(spark, warehouse):
    # Nothing lands on days 2 and 4: the first follows a whole state, the second a delta. With no
    # touched keys, Spark drops the joins with them (and the counts observed on them) from the plan.
    write_raw(spark, [
        change(1, "2024-01-01 08:00:00", 1, "I", name="a"),
        change(2, "2024-01-01 08:00:00", 2, "I", name="b"),
        change(3, "2024-01-01 08:00:00", 3, "I", name="c"),
        change(2, "2024-01-03 08:00:00", 4, "D"),
        change(3, "2024-01-03 09:00:00", 5, "U", name="c3"),
    ])
    days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    incremental = {}
    for ds in days:
        result = snapshot(spark, "clients", ds)
        assert result.mode == ("full" if ds == days[0] else "incremental")
        assert result.rows_read == {"2024-01-01": 3, "2024-01-03": 2}.get(ds, 0), ds
        # Every incremental day meets the state's 3 rows: touched (ranked again) or carried over.
        assert result.state_rows_read == (0 if ds == days[0] else 3), ds
        incremental[ds] = (snapshot_rows(spark, ds), snapshot_rows(spark, ds, STATE), key_figures(result))
    assert incremental["2024-01-02"] == incremental["2024-01-01"]
    assert incremental["2024-01-04"] == incremental["2024-01-03"]
    assert incremental["2024-01-04"][2] == {"live_keys": 2, "deletes_applied": 1, "pending_rows": 0, "conflicts": 0}
    assert {k: v[0] for k, v in names_by_key(spark, "2024-01-04").items()} == {1: "a", 3: "c3"}
    for ds in days:
        full = snapshot(spark, "clients", ds, mode="full")
        assert (snapshot_rows(spark, ds), snapshot_rows(spark, ds, STATE), key_figures(full)) == incremental[ds], ds


def test_an_incremental_day_reads_the_folder_of_its_landing_day_alone(spark, warehouse):
    write_raw(spark, [change(1, "2024-01-01 10:00:00", 1, "I"), change(2, "2024-01-01 11:00:00", 2, "I"),
                      change(1, "2024-01-02 10:00:00", 3, "U", name="b"),
                      change(2, "2024-01-03 10:00:00", 4, "U", name="c"),
                      change(3, "2024-01-03 11:00:00", 5, "I", name="d")])
    spec, changes, has_load_date, day_only = replica.read_changes(
        spark, "clients", None, None, wh(), landed_on=dt.date(2024, 1, 3))
    assert day_only and has_load_date
    assert changes.inputFiles() and all("/load_date=2024-01-03/" in f for f in changes.inputFiles())
    assert sorted((r["client_id"], r["load_date"]) for r in changes.collect()) == [
        (2, dt.date(2024, 1, 3)), (3, dt.date(2024, 1, 3))]
    day_columns = changes.dtypes
    # Nothing landed on that day: no rows, with the columns of the latest load day, no file read
    # and no folder listed but the source's top level (a quiet entity's day must not cost what
    # its whole history does).
    _, changes, has_load_date, day_only = replica.read_changes(spark, "clients", None, None, wh(),
                                                                     landed_on=dt.date(2024, 1, 4))
    assert day_only and has_load_date and changes.count() == 0
    assert changes.dtypes == day_columns and changes.inputFiles() == []
    # The same before the first load day (a backfill of an early date).
    _, changes, _, day_only = replica.read_changes(spark, "clients", None, None, wh(),
                                                         landed_on=dt.date(2023, 12, 31))
    assert day_only and changes.count() == 0
    # Without landed_on (a full run) the whole source.
    _, changes, _, day_only = replica.read_changes(spark, "clients", None, None, wh())
    assert not day_only and changes.count() == 5
    # Without the state of D-1 the run falls back to a full rebuild, which reads every landed row,
    # on a day with rows and on one without.
    snapshot(spark, "clients", "2024-01-01")
    result = snapshot(spark, "clients", "2024-01-03")
    assert result.mode == "full" and result.rows_read == 5, result.notes
    assert names_by_key(spark, "2024-01-03") == {1: ("b", 3), 2: ("c", 4), 3: ("d", 5)}
    result = snapshot(spark, "clients", "2024-01-06")
    assert result.mode == "full" and result.rows_read == 5, result.notes
    assert names_by_key(spark, "2024-01-06") == {1: ("b", 3), 2: ("c", 4), 3: ("d", 5)}


def test_a_full_run_lists_the_load_days_of_its_replica_without_a_spark_job(spark, tmp_path):
    # Above 32 folders Spark lists them with a job of a task per folder: 1.6-1.8 s for a year of
    # load days in a warm session, where the driver lists them in 0.2-0.3 s.
    replica = str(tmp_path / "raw")
    spark.range(40).selectExpr("id", "date_add(DATE'2024-01-01', CAST(id AS int)) AS load_date").write.partitionBy(
        "load_date").parquet(replica)
    sc = spark.sparkContext
    tracker = sc.statusTracker()

    def tasks_of_jobs_run_by(read, group):
        sc.setJobGroup(group, "read a replica of 40 load days")
        try:
            frame = read()
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
        assert frame.count() == 40 and "load_date" in frame.columns
        return sorted(sum(tracker.getStageInfo(stage).numTasks for stage in tracker.getJobInfo(job).stageIds)
                      for job in tracker.getJobIdsForGroup(group))

    by_spark = tasks_of_jobs_run_by(lambda: spark.read.parquet(replica), "spark-listing")
    by_the_job = tasks_of_jobs_run_by(lambda: snapshot_job.read_replica(spark, replica), "driver-listing")
    assert 40 in by_spark  # Spark's own listing: one task per folder (this test would not see a change)
    assert max(by_the_job) < 40, by_the_job  # only the schema's footer read
    assert spark.conf.get("spark.sql.sources.parallelPartitionDiscovery.threshold") == "32"  # put back


# --- conflicts -----------------------------------------------------------------------------


def conflict_rows():
    return [
        change(1, "2024-01-01 10:00:00", 5, "I", name="left"),
        change(1, "2024-01-01 10:00:00", 5, "I", name="right"),  # same key, ods_dt, ods_seq
        change(2, "2024-01-01 10:00:00", 6, "I", name="fine"),
        # A conflict on a change superseded by a later one affects no snapshot: not reported.
        change(3, "2024-01-01 09:00:00", 1, "I", name="x"),
        change(3, "2024-01-01 09:00:00", 1, "U", name="y"),
        change(3, "2024-01-01 11:00:00", 2, "U", name="settled"),
    ]


def test_conflict_fails_and_publishes_nothing(spark, warehouse, monkeypatch):
    monkeypatch.setenv(pii.KEY_ENV, "snapshot-test-key-0123456789")
    write_raw(spark, conflict_rows())
    with pytest.raises(DataQualityError) as err:
        snapshot(spark, "clients", "2024-01-01")
    message = str(err.value)
    assert "clients" in message and "1 keys" in message and "client_id=1" in message
    assert "\n" not in message
    assert not storage.path_exists(spark, ODS.partition_path("2024-01-01", wh()))
    assert not storage.path_exists(spark, STATE.partition_path("2024-01-01", wh()))
    conflicts = dq_rows(spark, "conflicts", "2024-01-01")
    # Names are personal: dq records keep their keyed hash (tests/test_pii.py).
    hashed = {pii.hash_phone(name, b"snapshot-test-key-0123456789"): name for name in ("left", "right")}
    assert sorted(hashed[json.loads(r["row_json"])["full_name"]] for r in conflicts) == ["left", "right"]
    assert {r["key_json"] for r in conflicts} == {'{"client_id":1}'}
    metrics = dq_rows(spark, "job_metrics", "2024-01-01")
    assert [(m["conflicts"], m["live_keys"]) for m in metrics] == [(1, 2)]  # computed, not published


def test_conflict_quarantine_publishes_other_keys_and_stays_until_superseded(spark, warehouse):
    write_raw(spark, conflict_rows())
    result = snapshot(spark, "clients", "2024-01-01", on_conflict="quarantine")
    assert names_by_key(spark, "2024-01-01") == {2: ("fine", 6), 3: ("settled", 2)}
    assert result.excluded_keys == [{"client_id": 1}] and "quarantined 1" in result.summary()
    # Next day, nothing new for key 1: the incremental run still sees the conflict.
    write_raw(spark, [change(2, "2024-01-02 10:00:00", 7, "U", name="fine2")])
    with pytest.raises(DataQualityError, match="client_id=1"):
        snapshot(spark, "clients", "2024-01-02", mode="incremental")
    # Day 3 supersedes the conflict: both modes publish key 1 again.
    write_raw(spark, [change(1, "2024-01-03 10:00:00", 8, "U", name="resolved")])
    snapshot(spark, "clients", "2024-01-02", on_conflict="quarantine")
    result = snapshot(spark, "clients", "2024-01-03", mode="incremental")
    assert result.conflicts == 0
    incremental = snapshot_rows(spark, "2024-01-03")
    assert {r[0]: r[1] for r in incremental} == {1: "resolved", 2: "fine2", 3: "settled"}
    snapshot(spark, "clients", "2024-01-03", mode="full")
    assert snapshot_rows(spark, "2024-01-03") == incremental


# --- bad rows ------------------------------------------------------------------------------


def test_each_bad_row_kind_is_rejected_with_its_reason(spark, warehouse):
    good = [change(k, "2024-01-01 10:00:00", k, "I") for k in range(10, 20)]
    bad = [change(None, "2024-01-01 10:00:00", 1, "I"),
           change(2, None, 2, "I", load_date="2024-01-01"),
           change(3, "2024-01-01 10:00:00", None, "I"),
           change(4, "2024-01-01 10:00:00", 4, "X"),
           change(5, "2024-01-01 10:00:00", 5, None)]
    write_raw(spark, good + bad)
    with pytest.raises(DataQualityError, match=r"5 of 15 change rows are bad"):
        snapshot(spark, "clients", "2024-01-01")
    assert not storage.path_exists(spark, ODS.partition_path("2024-01-01", wh()))
    result = snapshot(spark, "clients", "2024-01-01", max_reject_share=0.5)
    assert result.rejects_by_reason == {"null key column client_id": 1, "null ods_dt": 1, "null ods_seq": 1,
                                        "ods_type outside I/U/D": 2}
    assert sorted(names_by_key(spark, "2024-01-01")) == list(range(10, 20))
    rejects = dq_rows(spark, "rejects", "2024-01-01")
    assert len(rejects) == 10  # both runs logged their five
    assert {json.loads(r["row_json"])["client_id"] for r in rejects} == {None, 2, 3, 4, 5}


def test_csv_source_with_key_and_unparseable_values(spark, warehouse, tmp_path):
    csv = tmp_path / "widgets.csv"
    csv.write_text(
        "shop,sku,ods_dt,ods_seq,ods_type,price,label\n"
        "1,A,2024-01-01 10:00:00.1,1,I,5.0,old\n"
        "1,A,2024-01-01 10:00:00.1,2,U,6.5,new\n"
        "1,B,2024-01-01 11:00:00,3,I,1.0,b\n"
        "1,B,2024-01-01 12:00:00,4,D,1.0,b\n"
        "2,A,2024-01-01 09:00:00,5,I,2.0,two\n"
        "2,A,not a time,6,U,3.0,broken\n"
        "2,A,2024-01-01 13:00:00,seven,U,3.0,broken\n"
        "2,A,2024-01-02 01:00:00,8,U,4.0,tomorrow\n")
    with pytest.raises(BadInputError, match="--key"):
        snapshot(spark, "widgets", "2024-01-01", source=str(csv))
    result = snapshot(spark, "widgets", "2024-01-01", source=str(csv), keys=("shop", "sku"),
                            max_reject_share=0.5)
    assert result.rejects_by_reason == {"unparseable ods_dt": 1, "unparseable ods_seq": 1}
    assert result.mode == "full" and result.pending_rows == 1
    ods = tables.Table("widgets", "ods", ("shop", "sku"), "")
    rows = spark.read.parquet(ods.partition_path("2024-01-01", wh())).collect()
    assert sorted((r["shop"], r["sku"], r["price"], r["label"], r["ods_seq"]) for r in rows) == [
        (1, "A", 6.5, "new", 2), (2, "A", 2.0, "two", 5)]
    assert rows[0]["ods_dt"].__class__ is dt.datetime
    with pytest.raises(BadInputError, match="load_date"):
        snapshot(spark, "widgets", "2024-01-01", source=str(csv), keys=("shop", "sku"), mode="incremental")


def test_bad_rows_landing_on_an_incremental_day_go_to_rejects_and_the_rest_is_published(spark, warehouse):
    write_raw(spark, [change(k, "2024-01-01 10:00:00", k, "I", name=f"c{k}") for k in (1, 2, 3)])
    snapshot(spark, "clients", "2024-01-01")
    good = [change(1, "2024-01-02 10:00:00", 11, "U", name="new1"), change(3, "2024-01-02 11:00:00", 12, "D"),
            change(4, "2024-01-02 12:00:00", 13, "I", name="c4")]
    # Bad rows of live keys, later than their good changes: none of them may touch its key.
    bad = [change(None, "2024-01-02 10:00:00", 14, "U"),
           change(2, None, 15, "U", name="bad", load_date="2024-01-02"),
           change(2, "2024-01-02 13:00:00", None, "U", name="bad"),
           change(1, "2024-01-02 23:00:00", 16, "X", name="bad")]
    write_raw(spark, good + bad)
    with pytest.raises(DataQualityError, match=r"4 of 7 change rows are bad"):
        snapshot(spark, "clients", "2024-01-02")  # the default share
    for table in (ODS, STATE):
        assert storage.list_partitions(spark, table, wh()) == ["2024-01-01"], table.qualified
    result = snapshot(spark, "clients", "2024-01-02", max_reject_share=0.6)
    assert result.mode == "incremental" and result.rows_read == 7
    assert result.rejects_by_reason == {"null key column client_id": 1, "null ods_dt": 1, "null ods_seq": 1,
                                        "ods_type outside I/U/D": 1}
    expected = {1: ("new1", 11), 2: ("c2", 2), 4: ("c4", 13)}
    assert names_by_key(spark, "2024-01-02") == expected
    assert (result.live_keys, result.deletes_applied) == (3, 1)
    rejects = [r for r in dq_rows(spark, "rejects", "2024-01-02") if r["run_id"] == result.run_id]
    assert sorted((r["reason"], json.loads(r["row_json"])["ods_seq"]) for r in rejects) == [
        ("null key column client_id", "14"), ("null ods_dt", "15"), ("null ods_seq", None),
        ("ods_type outside I/U/D", "16")]
    assert {json.loads(r["row_json"])["load_date"] for r in rejects} == {"2024-01-02"}
    # Only the bad rows landed on day 2 were read: day 1's state holds no bad row to report again.
    assert len(dq_rows(spark, "rejects", "2024-01-02")) == 8  # both runs of day 2 logged their four
    incremental = snapshot_rows(spark, "2024-01-02"), snapshot_rows(spark, "2024-01-02", STATE)
    snapshot(spark, "clients", "2024-01-02", mode="full", max_reject_share=0.6)
    assert (snapshot_rows(spark, "2024-01-02"), snapshot_rows(spark, "2024-01-02", STATE)) == incremental


def test_unparseable_change_rows_of_a_text_replica_on_an_incremental_day(spark, warehouse, tmp_path):
    # ods_dt and ods_seq as text, as some replicas land them; the key has two parts.
    source = tmp_path / "widgets"
    schema = "shop int, sku string, price double, ods_dt string, ods_seq string, ods_type string"
    for day, rows in [("2024-01-01", [(1, "A", 5.0, "2024-01-01 10:00:00", "1", "I"),
                                      (1, "B", 6.0, "2024-01-01 10:00:00.5", "2", "I")]),
                      ("2024-01-02", [(1, "A", 7.0, "2024-01-02 10:00:00", "3", "U"),
                                      (1, "B", 0.0, "not a time", "4", "U"),
                                      (1, "B", 0.0, "2024-01-02 11:00:00", "five", "U"),
                                      (None, "B", 0.0, "2024-01-02 11:00:00", "6", "U"),
                                      (1, None, 0.0, "2024-01-02 11:00:00", "7", "I"),
                                      (2, "A", 8.0, "2024-01-02 12:00:00", "8", "I")])]:
        spark.createDataFrame(rows, schema).write.parquet(str(source / f"load_date={day}"))
    options = dict(source=str(source), keys=("shop", "sku"), max_reject_share=0.7)
    snapshot(spark, "widgets", "2024-01-01", **options)
    result = snapshot(spark, "widgets", "2024-01-02", **options)
    assert result.mode == "incremental"
    assert result.rejects_by_reason == {"unparseable ods_dt": 1, "unparseable ods_seq": 1, "null key column shop": 1,
                                        "null key column sku": 1}
    ods = tables.Table("widgets", "ods", ("shop", "sku"), "")
    rows = spark.read.parquet(ods.partition_path("2024-01-02", wh())).collect()
    assert sorted((r["shop"], r["sku"], r["price"], r["ods_seq"]) for r in rows) == [
        (1, "A", 7.0, 3), (1, "B", 6.0, 2), (2, "A", 8.0, 8)]
    rejects = dq_rows(spark, "rejects", "2024-01-02")
    assert sorted(json.loads(r["row_json"])["ods_seq"] for r in rejects) == ["4", "6", "7", "five"]
    assert {r["entity"] for r in rejects} == {"widgets"}
    assert "not a time" in {json.loads(r["row_json"])["ods_dt"] for r in rejects}


# --- schema drift between load_date folders -------------------------------------------------


def land(rows, load_date, drop=(), retype=None, extra=None, folder=None):
    """Land raw.clients change rows in one folder as a pyarrow-written file: the registry's columns
    less `drop`, `retype` {column: (arrow type, value)} in place of theirs, `extra` {column: value}."""
    from jobs.generator.cdc import raw_schema

    columns = {}
    for field in raw_schema("clients"):
        if field.name in drop:
            continue
        if field.name in (retype or {}):
            arrow_type, value = retype[field.name]
            columns[field.name] = pa.array([value] * len(rows), arrow_type)
        else:
            columns[field.name] = pa.array([r[field.name] for r in rows], field.type)
    for name, value in (extra or {}).items():
        columns[name] = pa.array([value] * len(rows))
    folder = os.path.join(folder or RAW.path(wh()), f"load_date={load_date}")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.table(columns), os.path.join(folder, "part-00000.parquet"))


def drift_warnings(caplog, column):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and f"column {column} " in r.getMessage()]


def test_an_added_column_is_ignored_with_a_warning_unless_the_registry_lists_it(spark, warehouse, caplog):
    # The source added msisdn (in the registry) on day 2 and email (not in it) on day 2 as well.
    land([change(1, "2024-01-01 10:00:00", 1, "I"), change(2, "2024-01-01 11:00:00", 2, "I")], "2024-01-01",
         drop=("msisdn",))
    land([dict(change(1, "2024-01-02 10:00:00", 3, "U", name="b"), msisdn="79160000001")], "2024-01-02",
         extra={"email": "b@example.com"})
    land([dict(change(3, "2024-01-03 10:00:00", 4, "I", name="c"), msisdn="79160000003")], "2024-01-03",
         extra={"email": "c@example.com"})
    # Up to day 1 no folder has msisdn: the registry's column is missing, in either mode.
    with pytest.raises(BadInputError, match=r"raw.clients load_date=2024-01-01: column msisdn is missing "
                                            r"\(string -> none\)"):
        snapshot(spark, "clients", "2024-01-01")
    assert not storage.path_exists(spark, ODS.path(wh()))
    caplog.clear()
    result = snapshot(spark, "clients", "2024-01-02")  # no state of day 1: a full run
    assert result.mode == "full"
    # msisdn is carried from the folder that has it on (NULL before); email is left out, said once.
    rows = {r["client_id"]: r.asDict() for r in storage.read_partition(spark, ODS, "2024-01-02", wh()).collect()}
    assert {k: (r["full_name"], r["msisdn"]) for k, r in rows.items()} == {1: ("b", "79160000001"), 2: ("a", None)}
    assert os.listdir(ODS.partition_path("2024-01-02", wh())) and "email" not in spark.read.parquet(
        ODS.partition_path("2024-01-02", wh())).columns
    warned = drift_warnings(caplog, "email")
    assert len(warned) == 1 and "raw.clients load_date=2024-01-02" in warned[0] and "ignored" in warned[0], warned
    caplog.clear()
    result = snapshot(spark, "clients", "2024-01-03")
    assert result.mode == "incremental"
    warned = drift_warnings(caplog, "email")
    assert len(warned) == 1 and "raw.clients load_date=2024-01-03" in warned[0], warned
    incremental = snapshot_rows(spark, "2024-01-03"), snapshot_rows(spark, "2024-01-03", STATE)
    assert {r[0]: r[3] for r in incremental[0]} == {1: "79160000001", 2: None, 3: "79160000003"}
    snapshot(spark, "clients", "2024-01-03", mode="full")
    assert (snapshot_rows(spark, "2024-01-03"), snapshot_rows(spark, "2024-01-03", STATE)) == incremental


@pytest.mark.parametrize("drift, message", [
    (dict(drop=("region",)), "column region is missing (string -> none)"),
    (dict(retype={"region": (pa.int32(), 7)}), "column region changed type (string -> int)"),
    (dict(retype={"ods_seq": (pa.int32(), 3)}), "column ods_seq changed type (bigint -> int)"),
], ids=["dropped", "retyped", "retyped-cdc"])
def test_a_dropped_or_retyped_column_fails_the_run_and_publishes_nothing(spark, warehouse, capsys, drift, message):
    from jobs.cli import main

    write_raw(spark, [change(1, "2024-01-01 10:00:00", 1, "I"), change(2, "2024-01-01 11:00:00", 2, "I")])
    land([change(1, "2024-01-02 10:00:00", 3, "U", name="b", region="south")], "2024-01-02", **drift)
    # Day 1 reads no folder after it, in either mode.
    snapshot(spark, "clients", "2024-01-01", mode="full")
    day_1 = (snapshot_rows(spark, "2024-01-01"), snapshot_rows(spark, "2024-01-01", STATE),
             storage.read_text(spark, f"{ODS.partition_path('2024-01-01', wh())}/{snapshot_job.SNAPSHOT_SIDECAR}"))
    for mode in ("incremental", "full"):
        with pytest.raises(BadInputError) as err:
            snapshot(spark, "clients", "2024-01-02", mode=mode)
        text = str(err.value)
        assert text.startswith("raw.clients load_date=2024-01-02: ") and message in text, text
        assert "\n" not in text and "nothing published" in text
    assert main(["snapshot", "--entity", "clients", "--ds", "2024-01-02"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    for table in (ODS, STATE):
        assert storage.list_partitions(spark, table, wh()) == ["2024-01-01"], table.qualified
        assert [n for n in os.listdir(table.path(wh())) if n.startswith("_")] == [], table.qualified
    assert (snapshot_rows(spark, "2024-01-01"), snapshot_rows(spark, "2024-01-01", STATE),
            storage.read_text(spark, f"{ODS.partition_path('2024-01-01', wh())}/{snapshot_job.SNAPSHOT_SIDECAR}")) == day_1


def test_schema_drift_of_a_replica_outside_the_registry(spark, warehouse, tmp_path, caplog):
    # Outside the registry, the first load_date folder fixes the columns.
    source = tmp_path / "widgets"
    widget = "shop int, sku string, price double, ods_dt timestamp, ods_seq bigint, ods_type string"
    for day, rows in [("2024-01-01", [(1, "A", 5.0, ts("2024-01-01 10:00:00"), 1, "I"),
                                      (1, "B", 6.0, ts("2024-01-01 10:00:00"), 2, "I")]),
                      ("2024-01-02", [(1, "A", 7.0, ts("2024-01-02 10:00:00"), 3, "U", "red")])]:
        schema = widget + (", colour string" if len(rows[0]) > 6 else "")
        spark.createDataFrame(rows, schema).write.parquet(str(source / f"load_date={day}"))
    spark.createDataFrame([(2, "A", "8.0", ts("2024-01-03 10:00:00"), 4, "I")],
                          widget.replace("price double", "price string")).write.parquet(
        str(source / "load_date=2024-01-03"))
    options = dict(source=str(source), keys=("shop", "sku"))
    snapshot(spark, "widgets", "2024-01-01", **options)
    caplog.clear()
    assert snapshot(spark, "widgets", "2024-01-02", **options).mode == "incremental"
    warned = drift_warnings(caplog, "colour")
    assert len(warned) == 1 and "widgets" in warned[0] and "load_date=2024-01-02" in warned[0], warned
    ods = tables.Table("widgets", "ods", ("shop", "sku"), "")
    published = spark.read.parquet(ods.partition_path("2024-01-02", wh()))
    assert published.columns == ["shop", "sku", "price", "ods_dt", "ods_seq"]
    incremental = sorted(map(tuple, published.collect()))
    assert [r[:3] for r in incremental] == [(1, "A", 7.0), (1, "B", 6.0)]
    snapshot(spark, "widgets", "2024-01-02", mode="full", **options)
    assert sorted(map(tuple, spark.read.parquet(ods.partition_path("2024-01-02", wh())).collect())) == incremental
    for mode in ("incremental", "full"):
        with pytest.raises(BadInputError, match=r"widgets replica .* load_date=2024-01-03: column price changed "
                                                r"type \(double -> string\)"):
            snapshot(spark, "widgets", "2024-01-03", mode=mode, **options)
    assert not storage.path_exists(spark, ods.partition_path("2024-01-03", wh()))


def test_footer_types_are_the_types_spark_reads(spark, tmp_path, monkeypatch):
    # The drift check reads footers with pyarrow on a local warehouse and through Spark elsewhere:
    # both must name a column's type alike, or a replica would drift between two warehouses.
    from jobs.ods_snapshot import drift

    for name in ("arrow", "int96"):
        (tmp_path / name).mkdir()
    table = pa.table({
        "utc": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us", tz="UTC")),
        "naive": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("ms")),
        "day": pa.array([dt.date(2024, 1, 1)], pa.date32()), "small": pa.array([1], pa.int16()),
        "n": pa.array([1], pa.int32()), "big": pa.array([1], pa.int64()), "u": pa.array([1], pa.uint32()),
        "x": pa.array([1.5], pa.float32()), "y": pa.array([1.5], pa.float64()), "flag": pa.array([True]),
        "text": pa.array(["a"]), "cat": pa.array(["a"]).dictionary_encode(), "blob": pa.array([b"a"]),
        "money": pa.array([1], pa.decimal128(12, 2)), "tags": pa.array([["a"]]),
        "pair": pa.array([{"a": 1, "b": "c"}]),
    })
    pq.write_table(table, tmp_path / "arrow" / "part-0.parquet")
    pq.write_table(pa.table({"old": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("ns"))}),
                   tmp_path / "int96" / "part-0.parquet", use_deprecated_int96_timestamps=True)
    spark.createDataFrame([(1, dt.datetime(2024, 1, 1))], "id bigint, at timestamp").coalesce(1).write.parquet(
        str(tmp_path / "spark"))
    for name in ("arrow", "int96", "spark"):
        [(_, by_pyarrow)] = drift.footer_schemas(spark, str(tmp_path / name))
        monkeypatch.setattr(drift.config, "is_local", lambda _: False)
        assert by_pyarrow == drift.footer_schemas(spark, str(tmp_path / name))[0][1], name
        monkeypatch.undo()


# --- the cutoff -----------------------------------------------------------------------------


def test_a_change_at_the_cutoff_is_in_the_next_days_snapshot(spark, warehouse):
    write_raw(spark, [
        change(1, "2024-01-01 10:00:00", 1, "I", name="before"),
        # Exactly at the cutoff of day 1, landed early (day 1) or on its own day.
        change(1, "2024-01-02 00:00:00.000", 2, "U", name="at cutoff", load_date="2024-01-01"),
        change(3, "2024-01-02 00:00:00.000", 3, "I", name="new at cutoff"),
        # The last instants of day 1.
        change(2, "2024-01-01 23:59:59.999", 4, "I", name="last ms"),
        change(4, "2024-01-01 23:59:59.999999", 5, "I", name="last us", load_date="2024-01-02"),
    ])
    day_1 = snapshot(spark, "clients", "2024-01-01")
    assert names_by_key(spark, "2024-01-01") == {1: ("before", 1), 2: ("last ms", 4)}
    assert day_1.pending_rows == 1
    day_2 = snapshot(spark, "clients", "2024-01-02")
    assert day_2.mode == "incremental" and day_2.pending_rows == 0
    assert names_by_key(spark, "2024-01-02") == {1: ("at cutoff", 2), 2: ("last ms", 4), 3: ("new at cutoff", 3),
                                                 4: ("last us", 5)}
    for ds in ("2024-01-01", "2024-01-02"):
        incremental = snapshot_rows(spark, ds), snapshot_rows(spark, ds, STATE)
        snapshot(spark, "clients", ds, mode="full")
        assert (snapshot_rows(spark, ds), snapshot_rows(spark, ds, STATE)) == incremental, ds


def test_the_gate_refuses_a_snapshot_row_at_the_cutoff(spark, warehouse):
    # Every suite's "no ods_dt after ds" must hold the cutoff itself out: it is the next day's.
    from jobs.core import quality

    rows = [(k, "n", dt.date(1990, 1, 1), None, "north", ts("2023-12-01 00:00:00"), ts("2024-01-01 10:00:00"), k)
            for k in range(1, 4)]

    def upper_check(last_ods_dt):
        df = spark.createDataFrame(rows + [(9, "n", None, None, "north", None, ts(last_ods_dt), 9)], ODS.spark_schema())
        verdict = quality.validate(df, ODS, "2024-01-01", ctx_for(), record=False)
        [check] = [c for c in verdict.checks if c.expectation == "expect_column_max_to_be_between"
                   and c.severity == "critical"]
        return check.success

    assert upper_check("2024-01-01 23:59:59.999999")
    assert not upper_check("2024-01-02 00:00:00")


# --- composite keys --------------------------------------------------------------------------


def random_sales_changes(seed: int, days: int = 3) -> list[dict]:
    """raw.sales change rows (key: store_id, sale_date) over a few days: keys sharing one part,
    ties on ods_dt, deletes and re-inserts, re-deliveries, late and early landings, a few bad rows."""
    rng = random.Random(seed)
    first = dt.date(2024, 1, 1)
    ticks = [dt.time(0, 0), dt.time(9, 0), dt.time(9, 0, 0, 100_000), dt.time(23, 59, 59, 900_000)]
    seqs = rng.sample(range(1, 1000), 200)  # operation numbers need not follow the clock
    rows = []
    for store in (1, 2, 3):
        for sale_date in (first - dt.timedelta(days=1), first, first + dt.timedelta(days=1)):
            for _ in range(rng.randint(1, 5)):
                day = rng.randrange(days + 1)  # days: after the last day, always pending
                landed = min(max(day + rng.choice([0, 0, 0, 1, -1]), 0), days - 1)
                rows.append({
                    "ods_dt": dt.datetime.combine(first + dt.timedelta(days=day), rng.choice(ticks)),
                    "ods_seq": seqs.pop(), "ods_type": rng.choice("IUUD"), "store_id": store, "sale_date": sale_date,
                    "sales": float(rng.randrange(100)), "receipts": rng.randrange(10),
                    "load_date": (first + dt.timedelta(days=landed)).isoformat()})
                if rng.random() < 0.15:  # re-delivered, maybe a day later
                    rows.append(dict(rows[-1], load_date=(first + dt.timedelta(
                        days=min(landed + rng.randint(0, 1), days - 1))).isoformat()))
    for i, part in enumerate(("store_id", "sale_date")):
        rows.append(dict(rows[i], **{part: None}, ods_seq=seqs.pop(), load_date=(first + dt.timedelta(days=i + 1)).isoformat()))
    return rows


def duckdb_snapshot(rows: list[dict], ds: str) -> list[tuple]:
    """The as-of snapshot by its definition, in DuckDB SQL."""
    import duckdb
    import pandas as pd

    con = duckdb.connect()
    con.register("changes", pd.DataFrame(rows))
    return sorted(con.execute("""
        SELECT store_id, sale_date, sales, receipts, ods_dt, ods_seq FROM (
          SELECT *, row_number() OVER (PARTITION BY store_id, sale_date ORDER BY ods_dt DESC, ods_seq DESC) AS n
          FROM changes
          WHERE load_date <= $ds AND ods_dt < CAST($ds AS DATE) + INTERVAL 1 DAY
            AND store_id IS NOT NULL AND sale_date IS NOT NULL)
        WHERE n = 1 AND ods_type <> 'D'""", {"ds": ds}).fetchall())


def test_composite_keys_incremental_and_full_against_duckdb(spark, warehouse):
    sales_ods = tables.TABLES["ods.sales"]
    rows = random_sales_changes(seed=2)
    write_raw(spark, rows, entity="sales")
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    for ds in days:
        result = snapshot(spark, "sales", ds, max_reject_share=1.0)
        assert result.mode == ("full" if ds == days[0] else "incremental")
        published = sorted(map(tuple, storage.read_partition(spark, sales_ods, ds, wh()).select(*sales_ods.columns).collect()))
        assert published == duckdb_snapshot(rows, ds), ds
    sales_state = tables.TABLES["state.sales"]
    state = sorted(map(tuple, read_state(spark, "sales", ds, wh()).select(*sales_state.columns).collect()))
    snapshot(spark, "sales", ds, mode="full", max_reject_share=1.0)
    assert sorted(map(tuple, storage.read_partition(spark, sales_ods, ds, wh()).select(*sales_ods.columns).collect())) == published
    assert sorted(map(tuple, read_state(spark, "sales", ds, wh()).select(*sales_state.columns).collect())) == state


# --- determinism ---------------------------------------------------------------------------


def random_changes(seed: int, keys: int, days: int, start="2024-01-01", rate=3):
    """Change rows with ties on ods_dt, re-deliveries, deletes/re-inserts, late and early landings."""
    rng = random.Random(seed)
    first = dt.datetime.fromisoformat(start)
    rows, seq = [], 0
    for key in range(1, keys + 1):
        alive = False
        for _ in range(rng.randint(1, rate * 2)):
            seq += rng.randint(1, 3)
            day = rng.randrange(days)
            when = first + dt.timedelta(days=day, seconds=rng.randrange(0, 86400 * 10) / 10)
            kind = "U" if alive and rng.random() < 0.8 else ("D" if alive else "I")
            alive = kind != "D"
            landing = day + (rng.choice([1, 2, 3]) if rng.random() < 0.1 else 0)
            landing -= 1 if rng.random() < 0.02 and landing > 0 else 0  # clock ahead: lands early
            row = change(key, when.isoformat(" "), seq, kind, name=f"n{rng.randrange(5)}",
                         region=rng.choice(["north", "south", None]),
                         load_date=(first + dt.timedelta(days=landing)).date().isoformat())
            rows.append(row)
            if rng.random() < 0.1:  # a second operation in the same tick
                seq += 1
                rows.append(dict(row, ods_seq=seq, full_name=f"tick{seq}", ods_type="U" if alive else "D"))
            if rng.random() < 0.05:  # re-delivered, maybe on a later day
                rows.append(dict(row, load_date=(first + dt.timedelta(days=min(landing + 1, days + 2))).date()
                                 .isoformat()))
    return rows


def reference_snapshot(rows, ds: str):
    """Pure-Python as-of snapshot (the definition in jobs/ods_snapshot/README.md), as sorted ods rows."""
    cutoff = dt.datetime.fromisoformat(ds) + dt.timedelta(days=1)
    best = {}
    for r in rows:
        if r["load_date"] <= ds and r["ods_dt"] < cutoff:
            if r["client_id"] not in best or (r["ods_dt"], r["ods_seq"]) > best[r["client_id"]][:2]:
                best[r["client_id"]] = (r["ods_dt"], r["ods_seq"], r)
    return sorted(tuple(r[c] for c in ODS.columns) for _, _, r in best.values() if r["ods_type"] != "D")


def test_same_rows_for_any_shuffle_partitions_and_file_order(spark, warehouse):
    rows = random_changes(seed=3, keys=300, days=2)
    expected = reference_snapshot(rows, "2024-01-02")
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    outputs = []
    try:
        for partitions, files, order_seed in [(1, 1, 0), (7, 5, 1), (200, 3, 2)]:
            shuffled = rows[:]
            random.Random(order_seed).shuffle(shuffled)
            write_raw(spark, shuffled, files=files, mode="overwrite")
            spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
            snapshot(spark, "clients", "2024-01-02", mode="full")
            outputs.append(snapshot_rows(spark, "2024-01-02"))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)
    assert outputs[0] == expected
    assert outputs[1] == expected and outputs[2] == expected


def key_figures(result) -> dict:
    """The figures of a run that do not depend on how it ran (full or incremental)."""
    return {"live_keys": result.live_keys, "deletes_applied": result.deletes_applied,
            "pending_rows": result.pending_rows, "conflicts": result.conflicts}


@pytest.mark.slow
def test_incremental_equals_full_over_30_generated_days(spark, warehouse):
    from jobs.generator.generate import generate_demo

    generate_demo(out=str(warehouse), start="2024-01-01", days=30, seed=1, scale="small")
    days = [(dt.date(2024, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(30)]
    late = spark.read.parquet(RAW.path(wh())).where("to_date(ods_dt) < load_date").count()
    assert late > 0, "the generated data must contain late rows"
    incremental, state_bases = {}, []
    for ds in days:
        # A compaction share that both writes deltas and, every few days, the whole state again.
        result = snapshot(spark, "clients", ds, state_compaction=0.03)
        assert result.mode == ("full" if ds == days[0] else "incremental")
        # No conflicts here: every incremental day takes the untouched keys from ods(D-1).
        assert result.untouched_from == ("" if ds == days[0] else "ods")
        incremental[ds] = (snapshot_rows(spark, ds), snapshot_rows(spark, ds, STATE), key_figures(result))
        state_bases.append(result.state_base)
        # The next day decides on compaction from the rows its sidecar says the partition holds
        # (a delta's carried rows are counted without a pass of their own).
        sidecar = json.loads(storage.read_text(spark, f"{STATE.partition_path(ds, wh())}/{STATE_SIDECAR}"))
        assert sidecar["partition_rows"] == storage.read_partition(spark, STATE, ds, wh()).count(), ds
    deltas = sum(1 for base in state_bases if base)
    assert 5 <= deltas <= len(days) - 3, state_bases  # both layouts were written and read back
    landed = [r.asDict() for r in spark.read.parquet(RAW.path(wh())).collect()]
    for r in landed:
        r["load_date"] = r["load_date"].isoformat()
    for ds in days:
        # Every day against the pure-Python definition of a full rebuild, row by row ...
        assert incremental[ds][0] == reference_snapshot(landed, ds), ds
    for ds in days[1::4] + [days[-1]]:
        # ... and a sample of days against the job's own full mode, state included (each run
        # costs seconds on shared cores).
        full = snapshot(spark, "clients", ds, mode="full")
        assert snapshot_rows(spark, ds) == incremental[ds][0], ds
        assert snapshot_rows(spark, ds, STATE) == incremental[ds][1], ds
        # The untouched keys of an incremental run are counted as they stream into its publish.
        assert key_figures(full) == incremental[ds][2], ds
        assert full.live_keys == len(incremental[ds][0]), ds


def test_state_is_a_delta_on_the_last_whole_state_until_compaction(spark, warehouse):
    rows = [change(k, "2024-01-01 10:00:00", k, "I", name=f"c{k}") for k in range(1, 11)]
    rows.append(change(1, "2024-01-02 10:00:00", 20, "U", name="day2"))
    rows += [change(k, "2024-01-03 10:00:00", 30 + k, "U", name="day3") for k in (2, 3, 4)]
    write_raw(spark, rows)
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    results = {ds: snapshot(spark, "clients", ds, state_compaction=0.25) for ds in days}
    # Day 2 touches 1 of 10 keys: its state partition holds that key only, on day 1's whole state.
    assert results["2024-01-02"].state_base == "2024-01-01"
    assert storage.read_partition(spark, STATE, "2024-01-02", wh()).count() == 1
    # Day 3 would carry 1 + 3 keys, more than a quarter of 10: the whole state is written again.
    assert results["2024-01-03"].state_base == ""
    assert storage.read_partition(spark, STATE, "2024-01-03", wh()).count() == 10
    incremental = {ds: (snapshot_rows(spark, ds), snapshot_rows(spark, ds, STATE)) for ds in days}
    assert {k: v[0] for k, v in names_by_key(spark, "2024-01-02").items()}[1] == "day2"
    for ds in days:
        snapshot(spark, "clients", ds, mode="full")
        assert (snapshot_rows(spark, ds), snapshot_rows(spark, ds, STATE)) == incremental[ds], ds


def test_a_state_delta_is_written_in_files_small_enough_to_share_out(spark, warehouse, monkeypatch):
    # A delta carries yesterday's delta rows of the keys left alone today: written as one file
    # they would be read and rewritten by one task every day (jobs/ods_snapshot/state.py, stage_state).
    monkeypatch.setattr(snapshot_state, "DELTA_FILE_ROWS", 3)
    rows = [change(k, "2024-01-01 10:00:00", k, "I", name=f"c{k}") for k in range(1, 21)]
    rows += [change(k, "2024-01-02 10:00:00", 100 + k, "U", name="day2") for k in range(1, 8)]
    rows += [change(k, "2024-01-03 10:00:00", 200 + k, "U", name="day3") for k in range(10, 13)]
    write_raw(spark, rows)
    open_cost = spark.conf.get("spark.sql.files.openCostInBytes")
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    results = {ds: snapshot(spark, "clients", ds) for ds in days}
    assert results["2024-01-03"].state_base == "2024-01-01"
    folder = STATE.partition_path("2024-01-03", wh())
    per_file = [pq.ParquetFile(os.path.join(folder, name)).metadata.num_rows
                for name in os.listdir(folder) if name.endswith(".parquet")]
    assert sum(per_file) == 10 and max(per_file) <= 3, per_file  # 7 carried + 3 touched today
    assert spark.conf.get("spark.sql.files.openCostInBytes") == open_cost  # put back after the write
    incremental = snapshot_rows(spark, "2024-01-03"), snapshot_rows(spark, "2024-01-03", STATE)
    snapshot(spark, "clients", "2024-01-03", mode="full")
    assert (snapshot_rows(spark, "2024-01-03"), snapshot_rows(spark, "2024-01-03", STATE)) == incremental


def test_untouched_keys_come_from_the_state_when_ods_was_written_by_another_run(spark, warehouse):
    write_raw(spark, [change(1, "2024-01-01 10:00:00", 1, "I"), change(2, "2024-01-01 10:00:00", 2, "I"),
                      change(3, "2024-01-01 10:00:00", 3, "I"), change(3, "2024-01-02 10:00:00", 4, "D"),
                      change(1, "2024-01-03 10:00:00", 5, "U", name="c")])
    snapshot(spark, "clients", "2024-01-01")
    assert snapshot(spark, "clients", "2024-01-02").untouched_from == "ods"
    # ods of 2024-01-02 republished by another run (say a crash between the ods and state swaps
    # of a rerun): it no longer matches state 2024-01-02, so the run reads the state instead.
    ods_rows = storage.read_partition(spark, ODS, "2024-01-02", wh()).where("client_id <> 2")
    storage.publish_partition(ods_rows.localCheckpoint(), ODS, "2024-01-02", ctx=ctx_for(run_id="another"),
                              check=None, sidecar={snapshot_job.SNAPSHOT_SIDECAR: '{"run_id": "another"}'})
    result = snapshot(spark, "clients", "2024-01-03")
    assert result.untouched_from == "state"
    assert names_by_key(spark, "2024-01-03") == {1: ("c", 5), 2: ("a", 2)}
    assert (result.live_keys, result.deletes_applied) == (2, 1)
    full = snapshot(spark, "clients", "2024-01-03", mode="full")
    assert key_figures(full) == key_figures(result)


def test_a_failed_state_write_publishes_neither_partition(spark, warehouse, monkeypatch):
    write_raw(spark, [change(1, "2024-01-01 10:00:00", 1, "I"), change(1, "2024-01-02 10:00:00", 2, "U", name="b")])
    snapshot(spark, "clients", "2024-01-01")
    stage_partition = storage.stage_partition

    def state_write_fails(df, table, *args, **kwargs):
        staged = stage_partition(df, table, *args, **kwargs)
        if table is STATE:  # the rows are staged, then the disk fills up
            raise OSError(f"disk full after writing {staged}")
        return staged

    monkeypatch.setattr(storage, "stage_partition", state_write_fails)
    with pytest.raises(OSError, match="disk full"):
        snapshot(spark, "clients", "2024-01-02")
    # The ods partition was staged first, but neither is published and no staging folder is left.
    for table in (ODS, STATE):
        assert not storage.path_exists(spark, table.partition_path("2024-01-02", wh())), table.qualified
        assert [n for n in os.listdir(table.path(wh())) if n.startswith("_")] == [], table.qualified
    monkeypatch.setattr(storage, "stage_partition", stage_partition)  # the disk has room again
    assert snapshot(spark, "clients", "2024-01-02").mode == "incremental"
    assert names_by_key(spark, "2024-01-02") == {1: ("b", 2)}


def test_a_delta_whose_base_was_rerun_falls_back_to_a_full_rebuild(spark, warehouse):
    write_raw(spark, [change(1, "2024-01-01 10:00:00", 1, "I"), change(2, "2024-01-01 10:00:00", 2, "I"),
                      change(1, "2024-01-02 10:00:00", 3, "U", name="b"),
                      change(2, "2024-01-03 10:00:00", 4, "U", name="c")])
    snapshot(spark, "clients", "2024-01-01")
    assert snapshot(spark, "clients", "2024-01-02").state_base == "2024-01-01"
    snapshot(spark, "clients", "2024-01-01", mode="full")  # a rerun: another history for the delta
    result = snapshot(spark, "clients", "2024-01-03")
    assert result.mode == "full" and "rewritten or removed since" in result.notes[0]
    assert names_by_key(spark, "2024-01-03") == {1: ("b", 3), 2: ("c", 4)}


def test_a_run_whose_previous_day_is_republished_meanwhile_runs_again_on_it(spark, warehouse, monkeypatch):
    write_raw(spark, [change(k, "2024-01-01 10:00:00", k, "I", name=f"c{k}") for k in range(1, 6)]
              + [change(1, "2024-01-02 10:00:00", 11, "U", name="day2"),
                 change(2, "2024-01-03 10:00:00", 12, "U", name="day3")])
    snapshot(spark, "clients", "2024-01-01")
    snapshot(spark, "clients", "2024-01-02")
    stage_partition, reruns = storage.stage_partition, []

    def republish_day_2_first(df, table, value, *args, **kwargs):
        # While the run of day 3 is about to write the snapshot it planned on ods(day 2), a
        # rerun of day 2 (a backfill, say) swaps in new files for it: the listed ones are gone.
        if table is ODS and value == "2024-01-03" and not reruns:
            reruns.append(snapshot(spark, "clients", "2024-01-02", mode="full"))
        return stage_partition(df, table, value, *args, **kwargs)

    monkeypatch.setattr(storage, "stage_partition", republish_day_2_first)
    result = snapshot(spark, "clients", "2024-01-03")
    assert len(reruns) == 1 and any("ran again" in note for note in result.notes), result.notes
    assert result.mode == "incremental" and result.live_keys == 5
    monkeypatch.setattr(storage, "stage_partition", stage_partition)
    incremental = snapshot_rows(spark, "2024-01-03"), snapshot_rows(spark, "2024-01-03", STATE)
    assert {k: v[0] for k, v in names_by_key(spark, "2024-01-03").items()} == {
        1: "day2", 2: "day3", 3: "c3", 4: "c4", 5: "c5"}
    snapshot(spark, "clients", "2024-01-03", mode="full")
    assert (snapshot_rows(spark, "2024-01-03"), snapshot_rows(spark, "2024-01-03", STATE)) == incremental
    for table in (ODS, STATE):  # the first attempt left no staging folder behind
        assert [n for n in os.listdir(table.path(wh())) if n.startswith("_staging")] == [], table.qualified


# --- every snapshot validated ----------------------------------------------------------------


def test_a_snapshot_outside_the_registry_is_validated_by_the_checks_of_its_keys(spark, warehouse, tmp_path, capsys):
    from jobs.cli import main

    source = tmp_path / "widgets"
    schema = "shop int, sku string, price double, ods_dt timestamp, ods_seq bigint, ods_type string"
    for day, rows in [("2024-01-01", [(1, "A", 5.0, ts("2024-01-01 10:00:00"), 1, "I"),
                                      (1, "B", 6.0, ts("2024-01-01 10:00:00"), 2, "I"),
                                      (2, "A", 7.0, ts("2024-01-01 11:00:00"), 3, "I")]),
                      ("2024-01-02", [(2, "A", 8.0, ts("2024-01-02 10:00:00"), 4, "U")])]:
        spark.createDataFrame(rows, schema).write.parquet(str(source / f"load_date={day}"))
    ods = tables.Table("widgets", "ods", ("shop", "sku"), "")
    command = ["snapshot", "--entity", "widgets", "--source", str(source), "--key", "shop,sku"]
    assert main([*command, "--ds", "2024-01-01"]) == 0
    results = [r for r in dq_rows(spark, "validation_results", "2024-01-01") if r["table_name"] == "ods.widgets"]
    assert {(r["expectation"], r["column_name"]) for r in results} >= {
        ("expect_column_values_to_not_be_null", "shop"), ("expect_column_values_to_not_be_null", "sku"),
        ("expect_compound_columns_to_be_unique", "shop,sku"), ("expect_column_max_to_be_between", "ods_dt"),
        ("expect_table_row_count_to_be_between", "")}
    assert all(r["success"] for r in results) and storage.list_partitions(spark, ods, wh()) == ["2024-01-01"]
    # The job's dedup leaves one row per key; a duplicate can still come in with the rows an
    # incremental run carries over from ods(D-1): here a hand-edited partition that kept the
    # sidecar naming the run of state(D-1), so the run trusts it.
    run_id = json.loads(storage.read_text(spark, f"{ods.partition_path('2024-01-01', wh()).replace('/ods/', '/state/')}/"
                                          f"{STATE_SIDECAR}"))["run_id"]
    published = storage.read_partition(spark, tables.Table("widgets", "ods", (), "shop int, sku string, "
                                                           "price double, ods_dt timestamp, ods_seq bigint"), "2024-01-01", wh())
    storage.publish_partition(published.unionByName(published.where("sku = 'B'")).localCheckpoint(), ods, "2024-01-01", ctx=ctx_for(), check=None, sidecar={snapshot_job.SNAPSHOT_SIDECAR: json.dumps(
                                  {"run_id": run_id})})
    with pytest.raises(DataQualityError, match=r"ods.widgets ds=2024-01-02: .*expect_compound_columns_to_be_unique"):
        build_snapshot(spark, "widgets", ctx_for("2024-01-02", run_id="dup"), source=str(source), keys=("shop", "sku"))
    assert storage.list_partitions(spark, ods, wh()) == ["2024-01-01"]
    assert not storage.path_exists(spark, f"{ods.path(wh()).replace('/ods/', '/state/')}/ds=2024-01-02")
    refused = [(r["expectation"], r["success"]) for r in dq_rows(spark, "validation_results", "2024-01-02")
               if r["run_id"] == "dup" and not r["success"]]
    assert refused == [("expect_compound_columns_to_be_unique", False)]


# --- command line --------------------------------------------------------------------------


def test_cli_prints_one_summary_line_and_one_line_errors(spark, warehouse, capsys):
    from jobs.cli import main

    write_raw(spark, [change(1, "2024-01-01 10:00:00", 1, "I")])
    assert main(["snapshot", "--entity", "clients", "--ds", "2024-01-01"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("snapshot clients ds=2024-01-01 full: read 1 rows, 1 live keys")
    for argv, fragment in [
        (["--entity", "clients", "--ds", "2024-13-01"], "--ds '2024-13-01'"),
        (["--entity", "nosuch", "--ds", "2024-01-01"], "unknown entity 'nosuch'"),
        (["--entity", "x", "--ds", "2024-01-01", "--source", "/nonexistent/x.csv"], "no such file"),
        (["--entity", "clients", "--ds", "2024-01-01", "--key", "full_name"], "keyed by client_id"),
    ]:
        assert main(["snapshot", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ostap snapshot: error:") and fragment in err[0], err


def test_unknown_entity_error_is_an_ostap_error(spark, warehouse):
    with pytest.raises(OstapError, match="unknown entity"):
        snapshot(spark, "nosuch", "2024-01-01")
