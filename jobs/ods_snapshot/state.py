"""The snapshot's state layout: state(D) whole or as a delta on an earlier whole state, read back key
by key, and the previous day's state and snapshot an incremental run starts from (README.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from jobs.core import quality, storage, tables
from jobs.core.run import RunContext
from jobs.core.spark import observation
from jobs.ods_snapshot.spec import (
    DELTA_FILE_ROWS,
    DELTA_OPEN_COST,
    SNAPSHOT_SIDECAR,
    STATE_SIDECAR,
    SnapshotResult,
    Spec,
    observed,
    sidecar,
)


def stage_state(spark, spec: Spec, state_df, ctx: RunContext, delta: bool) -> str:
    """Stage state partition ds; a delta spread over files small enough to share out.

    A delta carries the rows of yesterday's delta whose keys today left alone, read from its
    files as it writes them. Spark packs small files into one read task (each costs
    spark.sql.files.openCostInBytes, 4 MB, as if it were that large) and cannot split a file of
    one row group, so the carried rows stayed in one file that one task read and wrote every day
    while the other cores idled, a growing share of the day until the
    next compaction. Files of at most DELTA_FILE_ROWS rows, packed by their real size, spread it.
    """
    if not delta:
        return storage.stage_partition(state_df, spec.state, ctx.ds, ctx=ctx, check=quality.gate)
    from jobs.core.spark import session_settings

    with session_settings(spark, {"spark.sql.files.openCostInBytes": str(DELTA_OPEN_COST)}):
        return storage.stage_partition(state_df, spec.state, ctx.ds, ctx=ctx, check=quality.gate,
                                       options={"maxRecordsPerFile": str(DELTA_FILE_ROWS)})


@dataclass
class PreviousState:
    """What an incremental run takes from state(D-1)."""

    rows: Any  # the change rows read now plus the state rows of the keys they touch
    untouched: Any  # the rows of state(D-1) of every other key, as they are
    touched: Any  # the touched keys (cached)
    delta: Any | None  # the delta rows of state(D-1); None when it is whole
    base: dict  # {"ds", "run_id", "rows"}: the whole state a delta written for D builds on
    cached: tuple = ()
    # ods(D-1) when it can stand in for the untouched keys' state rows (see untouched_live), the
    # tombstones state(D-1) holds, and an Observation counting those of the touched keys.
    previous_ods: Any | None = None
    previous_deletes: int = 0
    touched_tombstones: Any | None = None
    # The rows delta(D-1) holds (its sidecar's partition_rows) and an Observation counting those of
    # the touched keys: the rows a delta of D carries over are the difference, without a count job.
    delta_rows: int | None = None
    delta_touched: Any | None = None
    _untouched_seen: Any | None = None

    def untouched_live(self, spec: Spec, run_id: str):
        """The ods rows of D of the keys nothing touched, counted as they stream into the publish.

        ods(D-1) holds exactly the live winners of state(D-1) when the same run wrote both and
        the state kept no conflict, so those rows are read from it: fewer rows and columns than
        the state, and no delta to resolve. Otherwise from the state rows, tombstones left out.
        """
        from pyspark.sql import functions as F

        self._untouched_seen = observation(self.touched, f"snapshot_untouched_{run_id}")
        if self.previous_ods is not None:
            rows = self.previous_ods.join(F.broadcast(self.touched), list(spec.keys), "left_anti")
            return rows.observe(self._untouched_seen, F.count("*").alias("live")).select(*spec.ods.columns)
        rows = self.untouched.observe(self._untouched_seen, *[F.expr(e) for e in UNTOUCHED_FIGURES])
        return rows.where("ods_type <> 'D'").select(*spec.ods.columns)

    def add_untouched(self, result: SnapshotResult) -> int:
        """Add the untouched keys' figures once the publish has read them; return their number."""
        seen = observed(self._untouched_seen, "live", "deletes")
        result.untouched_from = "state" if self.previous_ods is None else "ods"
        if self.previous_ods is not None:
            # A tombstone of state(D-1) stays one unless its key was touched.
            seen = {"live": seen["live"],
                    "deletes": self.previous_deletes - observed(self.touched_tombstones, "tombstones")["tombstones"]}
        add_figures_of_untouched(seen, result)
        return seen["live"] + seen["deletes"]

    def count_untouched(self, result: SnapshotResult) -> None:
        """Add the untouched keys' figures by a pass of their own (failed runs publish nothing)."""
        add_figures_of_untouched(self.untouched.selectExpr(*UNTOUCHED_FIGURES).first().asDict(), result)

    def next_state(self, spark, spec: Spec, todays, todays_rows: int, compaction: float, root: str):
        """(state rows to publish for D, the base they are a delta on or None when written whole,
        the rows of that delta or None).

        `todays` are the state rows of the touched keys. The delta of D is those plus the
        delta rows of D-1 of keys not touched today; once it would exceed `compaction` times
        the base, the whole state is written instead (a compaction, as costly as before).
        """
        from pyspark.sql import functions as F

        carried = (self.delta.join(F.broadcast(self.touched), list(spec.keys), "left_anti")
                   if self.delta is not None else None)
        base_rows = self.base.get("rows")
        if base_rows is None:  # a state written before its sidecar recorded its rows
            base_rows = storage.read_partition(spark, spec.state, self.base["ds"], root).count()  # footers only
        carried_rows = 0
        if carried is not None:
            # The ranking has read the touched keys' delta rows by now, so the Observation is set.
            carried_rows = (self.delta_rows - observed(self.delta_touched, "rows")["rows"]
                            if self.delta_rows is not None
                            else carried.count())  # a sidecar written before it recorded partition_rows
        if todays_rows + carried_rows > compaction * base_rows:
            return todays.unionByName(self.untouched.select(*spec.state.columns)), None, None
        if carried is not None:
            todays = todays.unionByName(carried.select(*spec.state.columns))
        return todays, self.base, todays_rows + carried_rows


def state_info(spark, spec: Spec, ds: str, root: str) -> dict | None:
    """The sidecar of state partition ds ({"run_id", "base", "rows", "partition_rows", "deletes",
    "pending_rows", "conflicted_keys"}; older ones lack some), None when it has none."""
    return sidecar(spark, spec.state, ds, STATE_SIDECAR, root)


def read_state(spark, entity: str, ds: str, root: str, table: tables.Table | None = None):
    """The whole state.<entity> of ds: a delta partition overrides its base key by key."""
    from pyspark.sql import functions as F

    table = table or tables.TABLES[f"state.{entity}"]
    rows = storage.read_partition(spark, table, ds, root)
    base = (sidecar(spark, table, ds, STATE_SIDECAR, root) or {}).get("base")
    if not base:
        return rows
    base_rows = storage.read_partition(spark, table, base["ds"], root)
    keys = list(table.keys)
    return base_rows.join(F.broadcast(rows.select(*keys)), keys, "left_anti").unionByName(rows)


def incremental_input(spark, spec: Spec, checked, previous: str, root: str) -> PreviousState:
    """The rows to rank (those read now plus the state rows of the keys they touch) and the
    rows of state(D-1) that nothing touched.

    Only keys with a change read today, a pending row or a conflict kept in the state go
    through the dedup (a few percent of the keys on a normal day). Every other key's winner
    passes from state(D-1) to D unchanged: its rows are streamed from the state files through a
    broadcast anti-join straight into the ods publish, never shuffled, cached or ranked. The
    touched keys are computed once and cached: the semi-join, the anti-join and both publishes
    read them.

    State layout: a state partition is either whole, or a delta on the whole partition of an
    earlier day (its sidecar names it): the rows of every key touched since then. Pending rows
    and quarantined conflicts always sit in a delta (the run after a whole state touches their
    keys, and every delta after it carries them), so finding them reads the delta only; the bulk
    of the state is then neither shuffled nor rewritten on an ordinary day.
    """
    from pyspark.sql import functions as F

    info = state_info(spark, spec, previous, root) or {}
    base = info.get("base")
    delta = delta_touched = None
    if base:
        delta = storage.read_partition(spark, spec.state, previous, root)
        base_rows = storage.read_partition(spark, spec.state, base["ds"], root)
        # An anti-join needs no distinct build side: the delta's key column is broadcast as it is.
        not_in_delta = base_rows.join(F.broadcast(delta.select(*spec.keys)), list(spec.keys), "left_anti")
        previous_state, flagged_in = not_in_delta.unionByName(delta), delta
    else:
        previous_state = flagged_in = storage.read_partition(spark, spec.state, previous, root)
        base = {"ds": previous, "run_id": info.get("run_id"), "rows": info.get("rows")}
    previous_cutoff = f"TIMESTAMP'{previous} 00:00:00' + INTERVAL 1 DAY"
    from_state = ["NULL AS reject_reason", "NULL AS ods_dt_text", "NULL AS ods_seq_text",
                  "CAST(NULL AS date) AS load_date", "0 AS read_here"]
    touched = checked.where("reject_reason IS NULL").select(*spec.keys)
    # The sidecar of D-1 says how many pending rows and conflicted keys its state holds (states
    # written before it was added say nothing: both are looked for then). Either kind is rare.
    if info.get("pending_rows", 1):
        # Pending rows of D-1 (ods_dt after D-1) have not reached any winner yet: they arrive now.
        touched = touched.unionByName(flagged_in.where(f"ods_dt >= {previous_cutoff}").select(*spec.keys))
    if info.get("conflicted_keys", 1):
        # A quarantined conflict is the only way a key has two winner rows in the state: it must
        # be re-examined every day (key columns only are shuffled to find those keys).
        touched = touched.unionByName(flagged_in.where(f"ods_dt < {previous_cutoff}").groupBy(*spec.keys)
                                      .count().where("count > 1").select(*spec.keys))
    # Not made distinct: semi- and anti-joins do not need it, and it would cost a shuffle.
    touched = touched.persist()
    # Arriving rows are rows of touched keys: the semi-join brings them in with the winners.
    contested = previous_state.join(F.broadcast(touched), list(spec.keys), "left_semi")
    if delta is not None and info.get("partition_rows") is not None:
        # The same rows, the delta's counted as they stream by (next_state needs their number).
        delta_touched = observation(delta, f"snapshot_delta_touched_{uuid.uuid4().hex[:12]}")
        contested = not_in_delta.join(F.broadcast(touched), list(spec.keys), "left_semi").unionByName(
            delta.join(F.broadcast(touched), list(spec.keys), "left_semi").observe(
                delta_touched, F.count("*").alias("rows")))
    previous_ods = touched_tombstones = None
    if (info.get("conflicted_keys") == 0 and info.get("deletes") is not None
            and snapshot_run(spark, spec, previous, root) == info.get("run_id")):
        # The untouched keys' rows come from ods(D-1) (untouched_live); their tombstones are those
        # of state(D-1) less the touched keys' ones, counted as the ranking reads them.
        previous_ods = storage.read_partition(spark, spec.ods, previous, root)
        touched_tombstones = observation(contested, f"snapshot_touched_tombstones_{uuid.uuid4().hex[:12]}")
        contested = contested.observe(touched_tombstones, F.expr(
            f"count_if(ods_type = 'D' AND ods_dt < {previous_cutoff})").alias("tombstones"))
    rows = checked.unionByName(contested.selectExpr(*spec.state.columns, *from_state))
    untouched = previous_state.join(F.broadcast(touched), list(spec.keys), "left_anti")
    return PreviousState(rows, untouched, touched, delta, base, cached=(touched,), previous_ods=previous_ods,
                          previous_deletes=info.get("deletes") or 0, touched_tombstones=touched_tombstones,
                          delta_rows=info.get("partition_rows") if delta_touched else None,
                          delta_touched=delta_touched)


def snapshot_run(spark, spec: Spec, ds: str, root: str) -> str | None:
    """The run that wrote ods partition ds (None: unknown or not published)."""
    if not storage.path_exists(spark, f"{spec.ods.partition_path(ds, root)}/_SUCCESS"):
        return None
    return (sidecar(spark, spec.ods, ds, SNAPSHOT_SIDECAR, root) or {}).get("run_id")

UNTOUCHED_FIGURES = ("count_if(ods_type <> 'D') AS live", "count_if(ods_type = 'D') AS deletes")


def add_figures_of_untouched(figures: dict, result: SnapshotResult) -> None:
    result.live_keys += figures["live"]
    result.deletes_applied += figures["deletes"]
    result.state_rows_read += figures["live"] + figures["deletes"]
