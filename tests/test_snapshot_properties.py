"""Property test of `ostap snapshot`: on random change sets, the incremental chain of days, a full
rebuild and an independent pandas reference agree row for row, whatever the shuffle partition
count and the state's layout (deltas or whole).

The change sets have ties on `ods_dt` broken by `ods_seq`, deletes and re-inserts after deletes,
re-delivered rows, rows landing days late and rows from the future (landed before their `ods_dt`
day). `make test` runs a few fixed examples (the "fast" profile); `make test-e2e` explores more
(--hypothesis-profile=thorough, tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import pytest
from helpers import ctx_for  # noqa: E402
from hypothesis import given
from hypothesis import strategies as st

from jobs.core import storage, tables
from jobs.core.spark import session_settings
from jobs.ods_snapshot.snapshot import build_snapshot, read_state

# 40 random examples (the e2e tier) take about 3 minutes alone, more beside other work.
pytestmark = [pytest.mark.property, pytest.mark.timeout(900)]

ODS = tables.TABLES["ods.clients"]
STATE = tables.TABLES["state.clients"]
RAW = tables.TABLES["raw.clients"]
DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(3)]
# A few instants per day, so that changes of one key often share ods_dt (0.1 s resolution).
TICKS = [dt.time(0, 0), dt.time(9, 0), dt.time(9, 0, 0, 100_000), dt.time(23, 59, 59, 900_000)]


@st.composite
def change_sets(draw) -> list[dict]:
    """raw.clients change rows with their load_date; no two different rows share key, ods_dt and
    ods_seq (that would be a conflict, which has tests of its own)."""
    n = draw(st.integers(4, 16))
    seqs = draw(st.permutations(range(1, n + 1)))  # operation numbers need not follow the clock
    rows = []
    for i in range(n):
        if i and draw(st.integers(0, 2)) == 0:  # another operation of the last key in the same tick
            key, when, landed = rows[-1]["client_id"], rows[-1]["ods_dt"], DAYS.index(
                dt.date.fromisoformat(rows[-1]["load_date"]))
        else:
            key = draw(st.integers(1, 4))
            day = draw(st.integers(0, len(DAYS)))  # len(DAYS): after the last day, so always pending
            lag = draw(st.sampled_from([0, 0, 0, 1, 2, -1]))  # late by one or two days, or early
            landed = 0 if i == 0 else min(max(day + lag, 0), len(DAYS) - 1)
            when = dt.datetime.combine(DAYS[0] + dt.timedelta(days=day), draw(st.sampled_from(TICKS)))
        rows.append({
            "ods_dt": when, "ods_seq": seqs[i], "ods_type": draw(st.sampled_from("IUD")),
            "client_id": key, "full_name": draw(st.sampled_from(["ann", "bob", "cat"])),
            "birth_date": dt.date(1990, 1, 1), "msisdn": None,
            "region": draw(st.sampled_from(["north", "south", None])),
            "created_at": dt.datetime(2023, 12, 1), "load_date": DAYS[landed].isoformat(),
        })
    for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):  # re-delivered, the same or a later day
        again = min(DAYS.index(dt.date.fromisoformat(rows[i]["load_date"])) + draw(st.integers(0, 1)), len(DAYS) - 1)
        rows.append(dict(rows[i], load_date=DAYS[again].isoformat()))
    return rows


def pandas_snapshot(rows: list[dict], ds: str) -> list[tuple]:
    """The as-of snapshot by its definition, in pandas: of the rows landed by ds with ods_dt
    before ds + 1 day, identical re-deliveries collapsed, each key's last change by (ods_dt,
    ods_seq), unless it is a delete."""
    frame = pd.DataFrame(rows)
    cutoff = pd.Timestamp(ds) + pd.Timedelta(days=1)
    seen = frame[(frame["load_date"] <= ds) & (frame["ods_dt"] < cutoff)]
    seen = seen.drop(columns="load_date").astype({"region": object}).drop_duplicates()
    last = seen.sort_values(["client_id", "ods_dt", "ods_seq"]).groupby("client_id").tail(1)
    live = last[last["ods_type"] != "D"]
    return sorted(tuple(rows[i][c] for c in ODS.columns) for i in live.index)


def published(spark, ds: str, root: str) -> tuple[list[tuple], list[tuple]]:
    ods = storage.read_partition(spark, ODS, ds, root).select(*ODS.columns).collect()
    state = read_state(spark, "clients", ds, root).select(*STATE.columns).collect()
    return sorted(map(tuple, ods)), sorted(map(tuple, state))


def figures(result) -> tuple:
    return result.live_keys, result.deletes_applied, result.pending_rows, result.conflicts


@given(rows=change_sets(), partitions=st.sampled_from([1, 3, 7, 16]),
       compaction=st.sampled_from([0.0, 0.5, float("inf")]))
def test_the_incremental_chain_a_full_rebuild_and_pandas_agree(spark, tmp_path_factory, rows, partitions, compaction):
    chain_root = str(tmp_path_factory.mktemp("chain"))
    full_root = str(tmp_path_factory.mktemp("full"))
    landed = spark.createDataFrame(rows, schema=f"{RAW.schema}, load_date string")
    landed.write.partitionBy("load_date").parquet(RAW.path(chain_root))
    os.symlink(os.path.join(chain_root, "raw"), os.path.join(full_root, "raw"))
    with session_settings(spark, {"spark.sql.shuffle.partitions": str(partitions)}):
        for i, day in enumerate(DAYS):
            ds = day.isoformat()
            chained = build_snapshot(spark, "clients", ctx_for(ds, root=chain_root), validate=False,
                                     mode="auto" if i == 0 else "incremental", state_compaction=compaction)
            assert chained.mode == ("full" if i == 0 else "incremental")
            chain_ods, chain_state = published(spark, ds, chain_root)
            assert chain_ods == pandas_snapshot(rows, ds), ds
        # The last day rebuilt in full from every landed folder (each run costs a second or two).
        full = build_snapshot(spark, "clients", ctx_for(ds, root=full_root), validate=False, mode="full")
        assert published(spark, ds, full_root) == (chain_ods, chain_state)
        assert figures(full) == figures(chained)
