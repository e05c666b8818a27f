"""`ostap snapshot`: the as-of snapshot of an ODS replica, full or incremental.

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from jobs.core import config, quality, sqlfiles, storage, tables
from jobs.core.errors import BadInputError, DataQualityError

HELP = "rebuild the as-of snapshot ods.<entity> for --ds from ODS change rows (full or incremental)"

log = logging.getLogger(__name__)

DEFAULT_MAX_REJECT_SHARE = 0.001
# A state partition names its run and its base when it is a delta (see the state layout in
# _incremental_input) in this sidecar, and counts its rows (when whole; partition_rows: the rows of
# the partition itself, whole or delta), tombstones, pending rows and conflicted keys: the next run
# skips the work those figures make needless.
STATE_SIDECAR = "_STATE.json"
# An ods partition names the run that wrote it (an incremental run reads ods(D-1) only when the
# run that wrote state(D-1) wrote it too).
SNAPSHOT_SIDECAR = "_SNAPSHOT.json"
DEFAULT_STATE_COMPACTION = 0.25
# How a state delta is written and read back (_stage_state).
DELTA_FILE_ROWS = 50_000
DELTA_OPEN_COST = 64 * 1024
FIRST_KEYS_SHOWN = 5
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def add_arguments(parser) -> None:
    parser.add_argument("--entity", required=True, metavar="NAME",
                        help=f"entity to snapshot ({', '.join(tables.ENTITIES)}; any name with --source)")
    parser.add_argument("--ds", required=True, metavar="YYYY-MM-DD", help="snapshot as of the end of this day")
    parser.add_argument("--source", metavar="PATH",
                        help="Parquet or CSV file or folder of change rows instead of raw/<entity>")
    parser.add_argument("--key", metavar="COL[,COL]", help="key columns (default: the registry's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="rebuild from every landed change row")
    mode.add_argument("--incremental", dest="mode", action="store_const", const="incremental",
                      help="from the state of the previous day plus the rows landed on --ds "
                           "(default; falls back to --full without that state)")
    parser.set_defaults(mode="auto")
    parser.add_argument("--on-conflict", choices=("fail", "quarantine"), default="fail",
                        help="on conflicting changes: publish nothing (fail) or publish all other keys")
    parser.add_argument("--max-reject-share", type=float, default=DEFAULT_MAX_REJECT_SHARE, metavar="SHARE",
                        help=f"fail when bad rows exceed this share of the rows read (default {DEFAULT_MAX_REJECT_SHARE})")
    parser.add_argument("--state-compaction", type=float, default=DEFAULT_STATE_COMPACTION, metavar="SHARE",
                        help="write the whole state again once the keys changed since its last whole copy exceed "
                             f"this share of it (default {DEFAULT_STATE_COMPACTION}; 0: every day)")


def run(args) -> int:
    from jobs.core.spark import spark_for

    _parse_ds(args.ds)  # refuse a bad date before starting Spark
    spark = spark_for(args, f"ostap-snapshot-{args.entity}")
    keys = tuple(k.strip() for k in args.key.split(",") if k.strip()) if args.key else None
    result = build_snapshot(spark, args.entity, args.ds, source=args.source, keys=keys, mode=args.mode,
                            on_conflict=args.on_conflict, max_reject_share=args.max_reject_share,
                            state_compaction=args.state_compaction)
    print(result.summary())
    return 0


@dataclass
class SnapshotResult:
    entity: str
    ds: str
    mode: str
    rows_read: int = 0
    state_rows_read: int = 0
    live_keys: int = 0
    deletes_applied: int = 0
    duplicates_collapsed: int = 0
    conflicts: int = 0
    rejects: int = 0
    pending_rows: int = 0
    seconds: float = 0.0
    run_id: str = ""
    state_base: str = ""  # ds of the whole state this run's state is a delta on ("": written whole)
    untouched_from: str = ""  # incremental runs: where the untouched keys' rows came from (ods | state)
    notes: list[str] = field(default_factory=list)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    excluded_keys: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"snapshot {self.entity} ds={self.ds} {self.mode}: read {self.rows_read} rows"
                + (f" + {self.state_rows_read} state rows" if self.mode == "incremental" else "")
                + f", {self.live_keys} live keys, {self.deletes_applied} deletes applied, "
                f"{self.duplicates_collapsed} duplicates collapsed, {self.conflicts} conflicts, "
                f"{self.rejects} rejects, {self.pending_rows} rows pending a later day, "
                + (f"state as a delta on ds={self.state_base}, " if self.state_base else "")
                + f"{self.seconds:.1f} s (run {self.run_id})")
        return text + "".join(f"; {note}" for note in self.notes)


@dataclass(frozen=True)
class _Spec:
    """What one snapshot run reads and writes."""

    entity: str
    keys: tuple[str, ...]
    payload_ddl: str  # payload columns (keys included), Spark DDL
    ods: tables.Table
    state: tables.Table
    source: str
    source_format: str  # parquet | csv

    @property
    def payload(self) -> list[str]:
        return tables.Table("_", "_", (), self.payload_ddl).columns

    @property
    def content(self) -> list[str]:
        """What makes two changes at one (key, ods_dt, ods_seq) the same change."""
        return ["ods_type"] + [c for c in self.payload if c not in self.keys]


def build_snapshot(spark, entity: str, ds: str, **options) -> SnapshotResult:
    """Publish ods.<entity> and state.<entity> partition `ds`; return the run's figures.

    Options: source, keys, mode (auto | full | incremental), on_conflict, max_reject_share, root,
    run_id, validate, state_compaction (see _build_snapshot). `validate=False` skips the Great
    Expectations gate of the ods publish (tests of the dedup semantics only; the job always
    validates). When the run fails, the figures appended to dq.job_metrics are those it
    computed, although nothing was published.

    An incremental run reads ods and state of the day before. When that day is republished
    while the run reads it (a rerun or a backfill of D-1 beside the run of D), the files the run
    listed are gone: it then waits for that publish to finish and runs once more, on the new
    partitions, rather than fail on a missing file.
    """
    try:
        return _build_snapshot(spark, entity, ds, **options)
    except Exception as exc:
        if not storage.java_error_caused_by(exc, "java.io.FileNotFoundException"):
            raise
        previous = str(_parse_ds(ds) - dt.timedelta(days=1))
        note = (f"an input file of {entity} vanished while the run read it (ds={previous} republished meanwhile?); "
                f"ran again once the publish of ds={previous} was over")
        log.warning("snapshot %s ds=%s: %s", entity, ds, note)
        for zone in ("ods", "state"):
            # Only the publish lock's path matters here: wait while another run holds it.
            table = tables.TABLES.get(f"{zone}.{entity}") or tables.Table(entity, zone, (), "")
            with storage.publishing(spark, table, previous, options.get("root")):
                pass
    result = _build_snapshot(spark, entity, ds, **options)
    result.notes.append(note)
    return result


def _build_snapshot(spark, entity: str, ds: str, *, source: str | None = None, keys: tuple[str, ...] | None = None,
                    mode: str = "auto", on_conflict: str = "fail",
                    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE, root: str | None = None,
                    run_id: str | None = None, validate: bool = True,
                    state_compaction: float = DEFAULT_STATE_COMPACTION) -> SnapshotResult:
    """One attempt of build_snapshot."""
    started = time.monotonic()
    day = _parse_ds(ds)
    if on_conflict not in ("fail", "quarantine"):
        raise BadInputError(f"--on-conflict {on_conflict!r}: expected fail or quarantine")
    if not 0 <= max_reject_share <= 1:
        raise BadInputError(f"--max-reject-share {max_reject_share}: expected a share between 0 and 1")
    if not state_compaction >= 0:
        raise BadInputError(f"--state-compaction {state_compaction}: expected a share of 0 or more")
    run_id = run_id or uuid.uuid4().hex[:12]
    # Unless told to rebuild, read the rows landed on D alone: listing every load_date folder of
    # the replica would cost each day time that grows with its history.
    spec, changes, has_load_date, day_only = _read_changes(spark, entity, source, keys, root,
                                                           landed_on=None if mode == "full" else day)
    cutoff = f"TIMESTAMP'{day + dt.timedelta(days=1)} 00:00:00'"
    previous = str(day - dt.timedelta(days=1))

    mode_used, notes = _choose_mode(spark, spec, mode, has_load_date, previous, root)
    if mode_used == "full" and day_only:  # no state of D-1: every landed row after all
        spec, changes, has_load_date, _ = _read_changes(spark, entity, source, keys, root)
    result = SnapshotResult(spec.entity, ds, mode_used, run_id=run_id, notes=notes)
    for note in notes:
        log.warning("%s", note)

    if mode_used == "incremental":
        new_rows = changes.where(f"load_date = DATE'{day}'")
    elif has_load_date:
        new_rows = changes.where(f"load_date <= DATE'{day}'")
    else:
        new_rows = changes
    # Rejected rows keep the values as read (for dq.rejects); valid rows drop them before the shuffle.
    as_read = ("ods_dt_text", "ods_seq_text", "load_date")
    checked = _checked(spark, spec, new_rows).selectExpr(
        *spec.state.columns, "reject_reason",
        *[f"CASE WHEN reject_reason IS NOT NULL THEN {c} END AS {c}" for c in as_read], "1 AS read_here")
    previous_state = None
    if mode_used == "incremental":
        previous_state = _incremental_input(spark, spec, checked, previous, root)
        checked = previous_state.rows

    # One pass over the rows read: every later step reads this cache of ~1 row per key.
    ranked = spark.sql(sqlfiles.load("ods_snapshot/ods_snapshot.sql", keys=", ".join(spec.keys), cutoff=cutoff,
                                     changes=_view(checked, "snapshot_changes"))).persist()
    resolved = None
    try:
        per_key = spark.sql(sqlfiles.load("ods_snapshot/ods_snapshot_winners.sql", keys=", ".join(spec.keys),
                                          content=", ".join(spec.content), ranked=_view(ranked, "snapshot_ranked")))
        same_content = " AND ".join(f"hi.{c} <=> lo.{c}" for c in spec.content)
        resolved = per_key.selectExpr("*", f"NOT ({same_content}) AS conflict").persist()
        _count_figures(spark, ranked, resolved, result)
        touched_state_rows = (result.live_keys + result.deletes_applied + 2 * result.conflicts
                              + result.pending_rows)
        if result.rejects:
            _write_rejects(spark, spec, ranked, ds, run_id, root)
        if result.rows_read and result.rejects / result.rows_read > max_reject_share:
            if previous_state is not None:
                previous_state.count_untouched(result)
            _finish(spark, result, started, root)
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result.rejects_by_reason.items()))
            raise DataQualityError(
                f"raw.{spec.entity} ds={ds}: {result.rejects} of {result.rows_read} change rows are bad "
                f"({reasons}), more than the allowed share {max_reject_share:g}; they are in dq.rejects "
                f"ds={ds} run {run_id}; nothing published")
        if result.conflicts:
            result.excluded_keys = _write_conflicts(spark, spec, resolved, ranked, ds, run_id, root)
            first = "; ".join(_key_text(k) for k in result.excluded_keys)
            if on_conflict == "fail":
                if previous_state is not None:
                    previous_state.count_untouched(result)
                _finish(spark, result, started, root)
                raise DataQualityError(
                    f"raw.{spec.entity} ds={ds}: {result.conflicts} keys have different changes at the "
                    f"same ({', '.join(spec.keys)}, ods_dt, ods_seq), first keys: {first}; rows in "
                    f"dq.conflicts ds={ds} run {run_id}; nothing published (--on-conflict quarantine "
                    "publishes the other keys)")
            result.notes.append(f"quarantined {result.conflicts} conflicting keys (first: {first}), "
                                f"rows in dq.conflicts ds={ds}")

        winner_columns = [c if c in spec.keys else f"hi.{c} AS {c}" for c in spec.payload]
        ods_df = resolved.where("NOT conflict AND hi.ods_type <> 'D'").selectExpr(
            *winner_columns, "hi.ods_dt AS ods_dt", "hi.ods_seq AS ods_seq")
        if previous_state is not None:
            ods_df = ods_df.select(*spec.ods.columns).unionByName(previous_state.untouched_live(spec, run_id))

        # A conflicted key keeps its two extreme contents: the next days then see the same
        # conflict a full rebuild would see, until a later change supersedes it.
        state_hi = resolved.selectExpr(*spec.keys, "hi.ods_dt AS ods_dt", "hi.ods_seq AS ods_seq",
                                       *[f"hi.{c} AS {c}" for c in spec.content])
        state_lo = resolved.where("conflict").selectExpr(
            *spec.keys, "hi.ods_dt AS ods_dt", "hi.ods_seq AS ods_seq", *[f"lo.{c} AS {c}" for c in spec.content])
        pending = ranked.where("row_class = 1")
        state_df = state_hi.unionByName(state_lo).select(*spec.state.columns).unionByName(
            pending.select(*spec.state.columns))

        # Both partitions are staged, then swapped in, ods first, only when both are written: a
        # failed state write leaves neither published. A run of the same entity and ds beside this
        # one waits on both publish locks (every run takes ods's first) until both are swapped in,
        # then replaces them. (Staging the ods one from a second thread while this one wrote the
        # state measured no faster on two cores.)
        with (storage.publishing(spark, spec.ods, ds, root, run_id),
              storage.publishing(spark, spec.state, ds, root, run_id)):
            try:
                ods_staging = storage.stage_partition(
                    ods_df.select(*spec.ods.columns), spec.ods, ds, check=quality.gate if validate else None,
                    root=root, run_id=run_id,
                    sidecar={SNAPSHOT_SIDECAR: json.dumps({"run_id": run_id})})
                base = delta_rows = None
                if previous_state is not None:
                    state_df, base, delta_rows = previous_state.next_state(spark, spec, state_df, touched_state_rows,
                                                                           state_compaction, root)
                state_staging = _stage_state(spark, spec, state_df, ds, root, run_id, delta=base is not None)
            except BaseException:
                storage.discard_staged(spark, spec.ods, ds, root, run_id)
                storage.discard_staged(spark, spec.state, ds, root, run_id)
                raise
            untouched_keys = previous_state.add_untouched(result) if previous_state is not None else 0
            result.state_base = base["ds"] if base else ""
            # A whole state records its rows: the deltas on it decide when to compact without a count.
            whole_rows = None if base else touched_state_rows + untouched_keys
            storage.write_sidecars(spark, state_staging, {STATE_SIDECAR: json.dumps({
                "run_id": run_id, "base": base, "rows": whole_rows, "partition_rows": delta_rows if base else whole_rows,
                "deletes": result.deletes_applied,
                "pending_rows": result.pending_rows, "conflicted_keys": result.conflicts})})
            storage.swap_in(spark, spec.ods, ds, ods_staging, root=root, run_id=run_id)
            storage.swap_in(spark, spec.state, ds, state_staging, root=root, run_id=run_id)
    finally:
        for cached in (ranked, resolved, *(previous_state.cached if previous_state else ())):
            if cached is not None:
                cached.unpersist()
    _finish(spark, result, started, root)
    return result


def _stage_state(spark, spec: _Spec, state_df, ds: str, root: str | None, run_id: str, delta: bool) -> str:
    """Stage state partition ds; a delta spread over files small enough to share out.

    A delta carries the rows of yesterday's delta whose keys today left alone, read from its
    files as it writes them. Spark packs small files into one read task (each costs
    spark.sql.files.openCostInBytes, 4 MB, as if it were that large) and cannot split a file of
    one row group, so the carried rows stayed in one file that one task read and wrote every day
    while the other cores idled, ~1 s of a ~7 s day at 150k carried rows, and growing until the
    next compaction. Files of at most DELTA_FILE_ROWS rows, packed by their real size, spread it.
    """
    if not delta:
        return storage.stage_partition(state_df, spec.state, ds, check=quality.gate, root=root, run_id=run_id)
    from jobs.core.spark import session_settings

    with session_settings(spark, {"spark.sql.files.openCostInBytes": str(DELTA_OPEN_COST)}):
        return storage.stage_partition(state_df, spec.state, ds, check=quality.gate, root=root, run_id=run_id,
                                       options={"maxRecordsPerFile": str(DELTA_FILE_ROWS)})


def _view(df, name: str) -> str:
    df.createOrReplaceTempView(name)
    return name


@dataclass
class _PreviousState:
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

    def untouched_live(self, spec: _Spec, run_id: str):
        """The ods rows of D of the keys nothing touched, counted as they stream into the publish.

        ods(D-1) holds exactly the live winners of state(D-1) when the same run wrote both and
        the state kept no conflict, so those rows are read from it: fewer rows and columns than
        the state, and no delta to resolve. Otherwise from the state rows, tombstones left out.
        """
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        self._untouched_seen = Observation(f"snapshot_untouched_{run_id}")
        if self.previous_ods is not None:
            rows = self.previous_ods.join(F.broadcast(self.touched), list(spec.keys), "left_anti")
            return rows.observe(self._untouched_seen, F.count("*").alias("live")).select(*spec.ods.columns)
        rows = self.untouched.observe(self._untouched_seen, *[F.expr(e) for e in _UNTOUCHED_FIGURES])
        return rows.where("ods_type <> 'D'").select(*spec.ods.columns)

    def add_untouched(self, result: SnapshotResult) -> int:
        """Add the untouched keys' figures once the publish has read them; return their number."""
        seen = _observed(self._untouched_seen, "live", "deletes")
        result.untouched_from = "state" if self.previous_ods is None else "ods"
        if self.previous_ods is not None:
            # A tombstone of state(D-1) stays one unless its key was touched.
            seen = {"live": seen["live"],
                    "deletes": self.previous_deletes - _observed(self.touched_tombstones, "tombstones")["tombstones"]}
        _add_untouched(seen, result)
        return seen["live"] + seen["deletes"]

    def count_untouched(self, result: SnapshotResult) -> None:
        """Add the untouched keys' figures by a pass of their own (failed runs publish nothing)."""
        _add_untouched(self.untouched.selectExpr(*_UNTOUCHED_FIGURES).first().asDict(), result)

    def next_state(self, spark, spec: _Spec, todays, todays_rows: int, compaction: float, root: str | None):
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
            carried_rows = (self.delta_rows - _observed(self.delta_touched, "rows")["rows"]
                            if self.delta_rows is not None
                            else carried.count())  # a sidecar written before it recorded partition_rows
        if todays_rows + carried_rows > compaction * base_rows:
            return todays.unionByName(self.untouched.select(*spec.state.columns)), None, None
        if carried is not None:
            todays = todays.unionByName(carried.select(*spec.state.columns))
        return todays, self.base, todays_rows + carried_rows


def _observed(observation, *names: str) -> dict:
    """What an Observation counted, once the action that read its rows has run.

    Zeros when Spark optimized the observed rows away: on a day with no change rows, adaptive
    execution replaces a join with the (empty) touched keys by an empty relation, observation
    included, and the observation then holds an empty row.
    """
    if observation._jo.getRow().length() == 0:  # the public .get fails on an empty row
        return dict.fromkeys(names, 0)
    return observation.get


def _sidecar(spark, table: tables.Table, ds: str, name: str, root: str | None) -> dict | None:
    """The JSON sidecar `name` of partition ds of `table`, None when it has none."""
    text = storage.read_text(spark, f"{table.partition_path(ds, root)}/{name}")
    return json.loads(text) if text else None


def _state_info(spark, spec: _Spec, ds: str, root: str | None) -> dict | None:
    """The sidecar of state partition ds ({"run_id", "base", "rows", "partition_rows", "deletes",
    "pending_rows", "conflicted_keys"}; older ones lack some), None when it has none."""
    return _sidecar(spark, spec.state, ds, STATE_SIDECAR, root)


def read_state(spark, entity: str, ds: str, root: str | None = None, table: tables.Table | None = None):
    """The whole state.<entity> of ds: a delta partition overrides its base key by key."""
    from pyspark.sql import functions as F

    table = table or tables.TABLES[f"state.{entity}"]
    rows = storage.read_partition(spark, table, ds, root)
    base = (_sidecar(spark, table, ds, STATE_SIDECAR, root) or {}).get("base")
    if not base:
        return rows
    base_rows = storage.read_partition(spark, table, base["ds"], root)
    keys = list(table.keys)
    return base_rows.join(F.broadcast(rows.select(*keys)), keys, "left_anti").unionByName(rows)


def _incremental_input(spark, spec: _Spec, checked, previous: str, root: str | None) -> _PreviousState:
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
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    info = _state_info(spark, spec, previous, root) or {}
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
        delta_touched = Observation(f"snapshot_delta_touched_{uuid.uuid4().hex[:12]}")
        contested = not_in_delta.join(F.broadcast(touched), list(spec.keys), "left_semi").unionByName(
            delta.join(F.broadcast(touched), list(spec.keys), "left_semi").observe(
                delta_touched, F.count("*").alias("rows")))
    previous_ods = touched_tombstones = None
    if (info.get("conflicted_keys") == 0 and info.get("deletes") is not None
            and _snapshot_run(spark, spec, previous, root) == info.get("run_id")):
        # The untouched keys' rows come from ods(D-1) (untouched_live); their tombstones are those
        # of state(D-1) less the touched keys' ones, counted as the ranking reads them.
        previous_ods = storage.read_partition(spark, spec.ods, previous, root)
        touched_tombstones = Observation(f"snapshot_touched_tombstones_{uuid.uuid4().hex[:12]}")
        contested = contested.observe(touched_tombstones, F.expr(
            f"count_if(ods_type = 'D' AND ods_dt < {previous_cutoff})").alias("tombstones"))
    rows = checked.unionByName(contested.selectExpr(*spec.state.columns, *from_state))
    untouched = previous_state.join(F.broadcast(touched), list(spec.keys), "left_anti")
    return _PreviousState(rows, untouched, touched, delta, base, cached=(touched,), previous_ods=previous_ods,
                          previous_deletes=info.get("deletes") or 0, touched_tombstones=touched_tombstones,
                          delta_rows=info.get("partition_rows") if delta_touched else None,
                          delta_touched=delta_touched)


def _snapshot_run(spark, spec: _Spec, ds: str, root: str | None) -> str | None:
    """The run that wrote ods partition ds (None: unknown or not published)."""
    if not storage.path_exists(spark, f"{spec.ods.partition_path(ds, root)}/_SUCCESS"):
        return None
    return (_sidecar(spark, spec.ods, ds, SNAPSHOT_SIDECAR, root) or {}).get("run_id")


# --- input -------------------------------------------------------------------------------------


def _read_changes(spark, entity: str, source: str | None, keys: tuple[str, ...] | None, root: str | None,
                  landed_on: dt.date | None = None):
    """(spec, change rows normalized to typed columns + ods_dt_text/ods_seq_text/load_date, has_load_date,
    day_only).

    With `landed_on`, a Parquet source with a load_date=<that day> folder is read from that folder
    alone (day_only True: its rows only, load_date still a column); one with load_date folders but
    not that day's gives no rows (day_only True, the columns of its latest folder); otherwise the
    whole source is read.
    """
    if not entity or not _IDENTIFIER.match(entity):
        raise BadInputError(f"--entity {entity!r}: expected a name of letters, digits and underscores")
    known = entity in tables.ENTITY_PAYLOADS
    if source is None:
        registry_keys = tables.entity_keys(entity)  # unknown entity: one-line OstapError
        raw = tables.TABLES[f"raw.{entity}"]
        path = raw.path(root)
        if not storage.path_exists(spark, path):
            raise BadInputError(f"raw.{entity}: no change rows at {path} (run `ostap generate` or pass --source)")
        source, source_format = path, "parquet"
    else:
        registry_keys = tables.entity_keys(entity) if known else None
        if not storage.path_exists(spark, source):
            raise BadInputError(f"--source {source}: no such file or folder")
        source_format = _source_format(source)
    if keys and registry_keys and tuple(keys) != registry_keys:
        raise BadInputError(f"--key {','.join(keys)}: {entity} is keyed by {','.join(registry_keys)} in the "
                            "table registry; use another --entity name for a different key")
    keys = tuple(keys or registry_keys or ())
    if not keys:
        raise BadInputError(f"--entity {entity} is not in the table registry: pass --key COL[,COL] with --source")

    day_only = False
    if source_format == "csv":
        df = (spark.read.option("header", True).option("inferSchema", True)
              .option("timestampFormat", "yyyy-MM-dd[ HH:mm:ss[.SSSSSS]]").csv(source))
    else:
        day_folder = f"{source.rstrip('/')}/load_date={landed_on}" if landed_on else None
        nothing_landed = bool(day_folder) and not storage.path_exists(spark, day_folder)
        if nothing_landed:
            # No rows, with the columns of the latest load day: listing every load_date folder
            # to find no row of the day in them would cost the day time that grows with the
            # replica's history (a listing call per folder on HDFS or an object store).
            day_folder = _latest_load_folder(spark, source)
        day_only = day_folder is not None
        # basePath keeps load_date a column, as when the whole source is read.
        df = (spark.read.option("basePath", source).parquet(day_folder) if day_only
              else read_replica(spark, source))
        if nothing_landed and day_only:
            df = df.limit(0)
    columns = set(df.columns)
    missing = [c for c in (*keys, *tables.CDC_COLUMN_NAMES) if c not in columns]
    if missing:
        raise BadInputError(f"{source}: missing column(s) {', '.join(missing)} (need the key columns "
                            f"{', '.join(keys)} and {', '.join(tables.CDC_COLUMN_NAMES)})")
    if known:
        payload_ddl = tables.ENTITY_PAYLOADS[entity][1]
        ods, state = tables.TABLES[f"ods.{entity}"], tables.TABLES[f"state.{entity}"]
        missing = [c for c in tables.Table("_", "_", (), payload_ddl).columns if c not in columns]
        if missing:
            raise BadInputError(f"{source}: missing payload column(s) {', '.join(missing)} of {entity}")
    else:
        fields = [f for f in df.schema.fields if f.name not in (*tables.CDC_COLUMN_NAMES, "load_date")]
        odd = [f.name for f in fields if not _IDENTIFIER.match(f.name)]
        if odd:
            raise BadInputError(f"{source}: column name(s) {', '.join(map(repr, odd))} are not plain identifiers")
        payload_ddl = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in fields)
        # Not in the registry, so no expectation suite: the quality gate skips unpublished tables.
        ods = tables.Table(entity, "ods", keys, f"{payload_ddl}, ods_dt timestamp, ods_seq bigint",
                           description=f"Snapshot of {entity} from {source}.", published=False)
        state = tables.Table(entity, "state", keys, f"{tables.CDC_COLUMNS}, {payload_ddl}", published=False,
                             description=f"Last change per key of {entity} from {source}.")
    spec = _Spec(entity, keys, payload_ddl, ods, state, source, source_format)
    return spec, _normalize(df, spec), "load_date" in columns, day_only


def _latest_load_folder(spark, source: str) -> str | None:
    """The load_date=YYYY-MM-DD folder of the source with the latest date (one listing of the
    source's top level), None when it has none."""
    days = [name for name in storage.subfolder_names(spark, source)
            if re.fullmatch(r"load_date=\d{4}-\d{2}-\d{2}", name)]
    return f"{source.rstrip('/')}/{days[-1]}" if days else None


def read_replica(spark, source: str):
    """The Parquet source, its partition folders listed on the driver.

    Above spark.sql.sources.parallelPartitionDiscovery.threshold (32) folders Spark lists them
    with a distributed job; a year of load_date folders then costs a job of 365 tasks per run
    (1.6-1.8 s in a warm session on local disk), where listing them from the driver takes
    0.2-0.3 s there, and milliseconds per folder on HDFS.
    """
    from jobs.core.spark import session_settings

    with session_settings(spark, {"spark.sql.sources.parallelPartitionDiscovery.threshold": "10000"}):
        return spark.read.parquet(source)


def _source_format(path: str) -> str:
    if path.lower().endswith(".csv"):
        return "csv"
    local = config.local_path(path)
    if config.is_local(path) and os.path.isdir(local):
        names = [n for _, _, files in os.walk(local) for n in files if not n.startswith((".", "_"))]
        if names and all(n.lower().endswith(".csv") for n in names):
            return "csv"
    return "parquet"


def _normalize(df, spec: _Spec):
    """Typed CDC columns plus the values as read (to tell null from unparseable)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegralType, StringType, StructType, TimestampType

    types = {f.name: f.dataType for f in df.schema.fields}
    # The text as read tells a null from a value that does not parse. A typed column cannot hold
    # an unparseable value, so it gets no text (dq.rejects formats the typed value instead):
    # formatting 10M timestamps as text would cost seconds per full rebuild.
    no_text = F.lit(None).cast("string")
    if isinstance(types["ods_dt"], StringType):
        ods_dt, ods_dt_text = F.expr("try_to_timestamp(ods_dt)"), F.col("ods_dt")
    elif isinstance(types["ods_dt"], TimestampType):
        ods_dt, ods_dt_text = F.col("ods_dt"), no_text
    else:
        ods_dt, ods_dt_text = F.col("ods_dt").cast("timestamp"), F.col("ods_dt").cast("string")
    if isinstance(types["ods_seq"], IntegralType):
        ods_seq, ods_seq_text = F.col("ods_seq").cast("bigint"), no_text
    else:
        ods_seq, ods_seq_text = F.expr("try_cast(ods_seq AS bigint)"), F.col("ods_seq").cast("string")
    payload_types = {f.name: f.dataType for f in StructType.fromDDL(spec.payload_ddl).fields}
    payload = [F.col(c).cast(payload_types[c]).alias(c) for c in spec.payload]
    load_date = F.col("load_date").cast("date") if "load_date" in types else F.lit(None).cast("date")
    return df.select(*payload, ods_dt.alias("ods_dt"), ods_seq.alias("ods_seq"),
                     F.col("ods_type").cast("string").alias("ods_type"),
                     ods_dt_text.alias("ods_dt_text"), ods_seq_text.alias("ods_seq_text"),
                     load_date.alias("load_date"))


def _checked(spark, spec: _Spec, rows):
    rows.createOrReplaceTempView("snapshot_read")
    null_key_checks = "\n    ".join(f"WHEN {k} IS NULL THEN 'null key column {k}'" for k in spec.keys)
    return spark.sql(sqlfiles.load("ods_snapshot/ods_snapshot_checks.sql", null_key_checks=null_key_checks,
                                   changes="snapshot_read"))


def _choose_mode(spark, spec: _Spec, mode: str, has_load_date: bool, previous: str, root: str | None):
    if mode not in ("auto", "full", "incremental"):
        raise BadInputError(f"mode {mode!r}: expected full or incremental")
    if mode == "full":
        return "full", []
    if not has_load_date:
        if mode == "incremental":
            raise BadInputError(f"--incremental needs load_date=YYYY-MM-DD partitions in {spec.source} "
                                "to know which rows landed on --ds; use --full")
        return "full", []
    marker = f"{spec.state.partition_path(previous, root)}/_SUCCESS"
    if not storage.path_exists(spark, marker):
        return "full", [f"no state.{spec.entity} ds={previous}: incremental run fell back to a full rebuild"]
    base = (_state_info(spark, spec, previous, root) or {}).get("base")
    if base:
        # A delta is only as good as the base it was computed on: a base rerun since (or
        # missing) would mix two histories, so the run rebuilds from the change rows instead.
        base_info = _state_info(spark, spec, base["ds"], root)
        base_published = storage.path_exists(spark, f"{spec.state.partition_path(base['ds'], root)}/_SUCCESS")
        if not base_published or (base_info or {}).get("base") or (base_info or {}).get("run_id") != base["run_id"]:
            return "full", [f"state.{spec.entity} ds={previous} is a delta on ds={base['ds']}, which was "
                            "rewritten or removed since: incremental run fell back to a full rebuild"]
    return "incremental", []


# --- figures and dq records ------------------------------------------------------------------


def _count_figures(spark, ranked, resolved, result: SnapshotResult) -> None:
    """The run's figures from the two cached frames (no pass over the rows read)."""
    per_key = resolved.selectExpr(
        "count_if(conflict) AS conflicts",
        "count_if(NOT conflict AND hi.ods_type = 'D') AS deletes",
        "count_if(NOT conflict AND hi.ods_type <> 'D') AS live",
        "coalesce(sum(IF(conflict, 0, copies - 1)), 0) AS duplicates",
        "coalesce(sum(due_rows_read), 0) AS due_read",
        "coalesce(sum(due_rows - due_rows_read), 0) AS due_from_state").first()
    result.conflicts, result.deletes_applied, result.live_keys = (
        per_key["conflicts"], per_key["deletes"], per_key["live"])
    result.duplicates_collapsed = per_key["duplicates"]
    result.rows_read, result.state_rows_read = per_key["due_read"], per_key["due_from_state"]
    for row in ranked.where("row_class > 0").groupBy("row_class", "reject_reason").agg(
            {"*": "count", "read_here": "sum"}).collect():
        rows, read = row["count(1)"], row["sum(read_here)"]
        result.rows_read += read
        result.state_rows_read += rows - read
        if row["row_class"] == 1:
            result.pending_rows = rows
        else:
            result.rejects_by_reason[row["reject_reason"]] = rows
            result.rejects += rows


# One state row per untouched key: keys with a conflict or a pending row are always touched.
_UNTOUCHED_FIGURES = ("count_if(ods_type <> 'D') AS live", "count_if(ods_type = 'D') AS deletes")


def _add_untouched(figures: dict, result: SnapshotResult) -> None:
    result.live_keys += figures["live"]
    result.deletes_applied += figures["deletes"]
    result.state_rows_read += figures["live"] + figures["deletes"]


def _write_rejects(spark, spec: _Spec, ranked, ds: str, run_id: str, root: str | None) -> None:
    from pyspark.sql import functions as F

    as_read = [*spec.payload, F.coalesce("ods_dt_text", F.col("ods_dt").cast("string")).alias("ods_dt"),
               F.coalesce("ods_seq_text", F.col("ods_seq").cast("string")).alias("ods_seq"), "ods_type", "load_date"]
    rejects = ranked.where("row_class = 2").select(
        F.lit(spec.entity).alias("entity"), F.col("reject_reason").alias("reason"),
        F.to_json(F.struct(*as_read), {"ignoreNullFields": "false"}).alias("row_json"),
        F.lit(run_id).alias("run_id"))
    storage.append_records(spark, tables.TABLES["dq.rejects"], None, ds, root=root, df=rejects)


def _write_conflicts(spark, spec: _Spec, resolved, ranked, ds: str, run_id: str, root: str | None) -> list[dict]:
    """Append every distinct change at the winning position of a conflicted key; return the first keys."""
    from pyspark.sql import functions as F

    conflicted = resolved.where("conflict").select(*spec.keys)
    # The due rows kept in `ranked` are exactly the changes at each key's winning position.
    rows = (ranked.where("row_class = 0").join(F.broadcast(conflicted), list(spec.keys))
            .select(*spec.state.columns).distinct())
    records = rows.select(
        F.lit(spec.entity).alias("entity"),
        F.to_json(F.struct(*spec.keys)).alias("key_json"), "ods_dt", "ods_seq",
        F.to_json(F.struct("ods_type", *spec.payload), {"ignoreNullFields": "false"}).alias("row_json"),
        F.lit(run_id).alias("run_id"))
    storage.append_records(spark, tables.TABLES["dq.conflicts"], None, ds, root=root, df=records)
    first = conflicted.orderBy(*spec.keys).limit(FIRST_KEYS_SHOWN).collect()
    return [row.asDict() for row in first]


def _finish(spark, result: SnapshotResult, started: float, root: str | None) -> None:
    result.seconds = round(time.monotonic() - started, 3)
    record = {
        "job": "snapshot", "entity": result.entity, "mode": result.mode, "rows_read": result.rows_read,
        "live_keys": result.live_keys, "deletes_applied": result.deletes_applied,
        "duplicates_collapsed": result.duplicates_collapsed, "conflicts": result.conflicts,
        "rejects": result.rejects, "seconds": result.seconds, "run_id": result.run_id,
        "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }
    storage.append_records(spark, tables.TABLES["dq.job_metrics"], [record], result.ds, root=root)


def _key_text(key: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in key.items())


def _parse_ds(ds: str) -> dt.date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", ds or ""):
            raise ValueError
        return dt.date.fromisoformat(ds)
    except ValueError:
        raise BadInputError(f"--ds {ds!r}: expected a date YYYY-MM-DD") from None

