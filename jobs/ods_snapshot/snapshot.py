"""`ostap snapshot`: the as-of snapshot of an ODS replica, full or incremental.

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

from jobs.core import pii, quality, runs, sqlfiles, storage, tables
from jobs.core.errors import BadInputError, DataQualityError
from jobs.core.run import RunContext
from jobs.ods_snapshot.replica import read_changes, read_replica, with_reject_reasons
from jobs.ods_snapshot.spec import (
    DEFAULT_MAX_REJECT_SHARE,
    DEFAULT_STATE_COMPACTION,
    FIRST_KEYS_SHOWN,
    SNAPSHOT_SIDECAR,
    STATE_SIDECAR,
    SnapshotResult,
    Spec,
    key_text,
    view,
)
from jobs.ods_snapshot.state import incremental_input, read_state, stage_state, state_info

# The names tests, benchmarks and other commands use, whichever module of the job defines them.
__all__ = ["DEFAULT_STATE_COMPACTION", "SNAPSHOT_SIDECAR", "STATE_SIDECAR", "SnapshotResult", "build_snapshot",
           "read_replica", "read_state"]

HELP = "rebuild the as-of snapshot ods.<entity> for --ds from ODS change rows (full or incremental)"
# The CLI wraps each run in OpenLineage START and COMPLETE or FAIL events (jobs.core.lineage_events).
EMITS_LINEAGE = True

log = logging.getLogger(__name__)


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


def run(args, ctx: RunContext) -> int:
    spark = ctx.spark(f"ostap-snapshot-{args.entity}")
    keys = tuple(k.strip() for k in args.key.split(",") if k.strip()) if args.key else None
    result = build_snapshot(spark, args.entity, ctx, source=args.source, keys=keys, mode=args.mode,
                            on_conflict=args.on_conflict, max_reject_share=args.max_reject_share,
                            state_compaction=args.state_compaction)
    print(result.summary())
    return 0


def build_snapshot(spark, entity: str, ctx: RunContext, **options) -> SnapshotResult:
    """Publish ods.<entity> and state.<entity> partition `ctx.ds`; return the run's figures.

    Options: source, keys, mode (auto | full | incremental), on_conflict, max_reject_share,
    validate, state_compaction (see _build_snapshot). `validate=False` skips the Great
    Expectations gate of the ods publish (tests of the dedup semantics only; the job always
    validates). When the run fails, the figures appended to dq.job_metrics are those it
    computed, although nothing was published.

    An incremental run reads ods and state of the day before. When that day is republished
    while the run reads it (a rerun or a backfill of D-1 beside the run of D), the files the run
    listed are gone: it then waits for that publish to finish and runs once more, on the new
    partitions, rather than fail on a missing file.
    """
    ds = ctx.ds
    try:
        return _build_snapshot(spark, entity, ctx, **options)
    except Exception as exc:
        if not storage.java_error_caused_by(exc, "java.io.FileNotFoundException"):
            raise
        previous = str(ctx.ds_date - dt.timedelta(days=1))
        note = (f"an input file of {entity} vanished while the run read it (ds={previous} republished meanwhile?); "
                f"ran again once the publish of ds={previous} was over")
        log.warning("snapshot %s ds=%s: %s", entity, ds, note)
        for zone in ("ods", "state"):
            # Only the publish lock's path matters here: wait while another run holds it.
            table = tables.TABLES.get(f"{zone}.{entity}") or tables.Table(entity, zone, (), "")
            with storage.publishing(spark, table, previous, ctx):
                pass
    result = _build_snapshot(spark, entity, ctx, **options)
    result.notes.append(note)
    return result


def _build_snapshot(spark, entity: str, ctx: RunContext, *, source: str | None = None, keys: tuple[str, ...] | None = None,
                    mode: str = "auto", on_conflict: str = "fail",
                    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE, validate: bool = True,
                    state_compaction: float = DEFAULT_STATE_COMPACTION) -> SnapshotResult:
    """One attempt of build_snapshot."""
    started = time.monotonic()
    day, ds, root, run_id = ctx.ds_date, ctx.ds, ctx.warehouse, ctx.run_id
    if on_conflict not in ("fail", "quarantine"):
        raise BadInputError(f"--on-conflict {on_conflict!r}: expected fail or quarantine")
    if not 0 <= max_reject_share <= 1:
        raise BadInputError(f"--max-reject-share {max_reject_share}: expected a share between 0 and 1")
    if not state_compaction >= 0:
        raise BadInputError(f"--state-compaction {state_compaction}: expected a share of 0 or more")
    # Unless told to rebuild, read the rows landed on D alone: listing every load_date folder of
    # the replica would cost each day time that grows with its history.
    spec, changes, has_load_date, day_only = read_changes(spark, entity, source, keys, root,
                                                           landed_on=None if mode == "full" else day, as_of=day)
    cutoff = f"TIMESTAMP'{day + dt.timedelta(days=1)} 00:00:00'"
    previous = str(day - dt.timedelta(days=1))

    mode_used, notes = _choose_mode(spark, spec, mode, has_load_date, previous, root)
    if mode_used == "full" and day_only:  # no state of D-1: every landed row after all
        spec, changes, has_load_date, _ = read_changes(spark, entity, source, keys, root, as_of=day)
    result = SnapshotResult(spec.entity, ds, mode_used, run_id=run_id, notes=notes)
    _record_inputs(spark, ctx, spec, mode_used, has_load_date, source is None)
    for note in [*notes, *spec.ignored]:
        log.warning("%s", note)

    if mode_used == "incremental":
        new_rows = changes.where(f"load_date = DATE'{day}'")
    elif has_load_date:
        new_rows = changes.where(f"load_date <= DATE'{day}'")
    else:
        new_rows = changes
    # Rejected rows keep the values as read (for dq.rejects); valid rows drop them before the shuffle.
    as_read = ("ods_dt_text", "ods_seq_text", "load_date")
    checked = with_reject_reasons(spark, spec, new_rows).selectExpr(
        *spec.state.columns, "reject_reason",
        *[f"CASE WHEN reject_reason IS NOT NULL THEN {c} END AS {c}" for c in as_read], "1 AS read_here")
    previous_state = None
    if mode_used == "incremental":
        previous_state = incremental_input(spark, spec, checked, previous, root)
        checked = previous_state.rows

    # One pass over the rows read: every later step reads this cache of ~1 row per key.
    ranked = spark.sql(sqlfiles.load("ods_snapshot/ods_snapshot.sql", keys=", ".join(spec.keys), cutoff=cutoff,
                                     changes=view(checked, "snapshot_changes"))).persist()
    resolved = None
    try:
        per_key = spark.sql(sqlfiles.load("ods_snapshot/ods_snapshot_winners.sql", keys=", ".join(spec.keys),
                                          content=", ".join(spec.content), ranked=view(ranked, "snapshot_ranked")))
        same_content = " AND ".join(f"hi.{c} <=> lo.{c}" for c in spec.content)
        resolved = per_key.selectExpr("*", f"NOT ({same_content}) AS conflict").persist()
        _count_figures(spark, ranked, resolved, result)
        if mode_used == "full" and not result.rows_read:
            _finish(spark, result, started, root)
            raise BadInputError(f"{spec.source}: no change rows of {spec.entity} landed by ds={ds}; "
                                "nothing to snapshot, nothing published")
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
            first = "; ".join(key_text(k) for k in result.excluded_keys)
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

        # Both partitions are staged, then swapped in together (jobs.core.runs), only when both are
        # written: a failed state write or a kill between the swaps leaves neither published. A run
        # of the same entity and ds beside this one waits on both publish locks (every run takes ods's first) until both are swapped in,
        # then replaces them.
        with (storage.publishing(spark, spec.ods, ds, ctx),
              storage.publishing(spark, spec.state, ds, ctx)):
            try:
                ods_staging = storage.stage_partition(
                    ods_df.select(*spec.ods.columns), spec.ods, ds, ctx=ctx,
                    check=_gate(spec) if validate else None,
                    sidecar={SNAPSHOT_SIDECAR: json.dumps({"run_id": run_id})})
                base = delta_rows = None
                if previous_state is not None:
                    state_df, base, delta_rows = previous_state.next_state(spark, spec, state_df, touched_state_rows,
                                                                           state_compaction, root)
                state_staging = stage_state(spark, spec, state_df, ctx, delta=base is not None)
            except BaseException:
                storage.discard_staged(spark, spec.ods, ds, ctx)
                storage.discard_staged(spark, spec.state, ds, ctx)
                raise
            untouched_keys = previous_state.add_untouched(result) if previous_state is not None else 0
            result.state_base = base["ds"] if base else ""
            # A whole state records its rows: the deltas on it decide when to compact without a count.
            whole_rows = None if base else touched_state_rows + untouched_keys
            storage.write_sidecars(spark, state_staging, {STATE_SIDECAR: json.dumps({
                "run_id": run_id, "base": base, "rows": whole_rows, "partition_rows": delta_rows if base else whole_rows,
                "deletes": result.deletes_applied,
                "pending_rows": result.pending_rows, "conflicted_keys": result.conflicts})})
            runs.swap_together(spark, [(spec.ods, ds, ods_staging), (spec.state, ds, state_staging)], ctx)
    finally:
        for cached in (ranked, resolved, *(previous_state.cached if previous_state else ())):
            if cached is not None:
                cached.unpersist()
    _finish(spark, result, started, root)
    return result


def _record_inputs(spark, ctx: RunContext, spec: Spec, mode: str, has_load_date: bool, registered: bool) -> None:
    """The manifest's inputs: the replica's load-day folders read, and the state it started from."""
    raw = f"raw.{spec.entity}" if registered else spec.source
    if not has_load_date:
        ctx.record_input(raw, "*", None)
    elif mode == "incremental":
        ctx.record_input(raw, f"load_date={ctx.ds}", None)
        previous = str(ctx.ds_date - dt.timedelta(days=1))
        ctx.record_input(spec.state.qualified, previous, storage.run_of(spark, spec.state, previous, ctx.warehouse))
    else:
        ctx.record_input(raw, f"load_date<={ctx.ds}", None)


def _gate(spec: Spec):
    # An entity outside the registry has no suite file: the checks of its keys, built at run time.
    return quality.gate if spec.ods.published else quality.key_gate


def _choose_mode(spark, spec: Spec, mode: str, has_load_date: bool, previous: str, root: str):
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
    base = (state_info(spark, spec, previous, root) or {}).get("base")
    if base:
        # A delta is only as good as the base it was computed on: a base rerun since (or
        # missing) would mix two histories, so the run rebuilds from the change rows instead.
        base_info = state_info(spark, spec, base["ds"], root)
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

def _payload_outside_sources(spec: Spec) -> list:
    """The payload columns for a dq record: personal ones as their keyed hash (jobs.core.pii)."""
    from pyspark.sql import functions as F

    personal = tables.PERSONAL_COLUMNS.get(spec.entity, {})
    key = pii.optional_key() if personal else None
    if personal and key is None:
        log.warning("%s: no PII key (%s): personal columns of refused rows are recorded as %s",
                    spec.entity, pii.KEY_ENV, pii.REDACTED)
    return [pii.protected_column(c, personal[c], key).alias(c) if c in personal else F.col(c) for c in spec.payload]


def _write_rejects(spark, spec: Spec, ranked, ds: str, run_id: str, root: str) -> None:
    from pyspark.sql import functions as F

    as_read = [*_payload_outside_sources(spec),
               F.coalesce("ods_dt_text", F.col("ods_dt").cast("string")).alias("ods_dt"),
               F.coalesce("ods_seq_text", F.col("ods_seq").cast("string")).alias("ods_seq"), "ods_type", "load_date"]
    rejects = ranked.where("row_class = 2").select(
        F.lit(spec.entity).alias("entity"), F.col("reject_reason").alias("reason"),
        F.to_json(F.struct(*as_read), {"ignoreNullFields": "false"}).alias("row_json"),
        F.lit(run_id).alias("run_id"))
    storage.append_records(spark, tables.TABLES["dq.rejects"], None, ds, root=root, df=rejects)


def _write_conflicts(spark, spec: Spec, resolved, ranked, ds: str, run_id: str, root: str) -> list[dict]:
    """Append every distinct change at the winning position of a conflicted key; return the first keys."""
    from pyspark.sql import functions as F

    conflicted = resolved.where("conflict").select(*spec.keys)
    # The due rows kept in `ranked` are exactly the changes at each key's winning position.
    rows = (ranked.where("row_class = 0").join(F.broadcast(conflicted), list(spec.keys))
            .select(*spec.state.columns).distinct())
    records = rows.select(
        F.lit(spec.entity).alias("entity"),
        F.to_json(F.struct(*spec.keys)).alias("key_json"), "ods_dt", "ods_seq",
        F.to_json(F.struct("ods_type", *_payload_outside_sources(spec)), {"ignoreNullFields": "false"})
        .alias("row_json"),
        F.lit(run_id).alias("run_id"))
    storage.append_records(spark, tables.TABLES["dq.conflicts"], None, ds, root=root, df=records)
    first = conflicted.orderBy(*spec.keys).limit(FIRST_KEYS_SHOWN).collect()
    return [row.asDict() for row in first]


def _finish(spark, result: SnapshotResult, started: float, root: str) -> None:
    result.seconds = round(time.monotonic() - started, 3)
    record = {
        "job": "snapshot", "entity": result.entity, "mode": result.mode, "rows_read": result.rows_read,
        "live_keys": result.live_keys, "deletes_applied": result.deletes_applied,
        "duplicates_collapsed": result.duplicates_collapsed, "conflicts": result.conflicts,
        "rejects": result.rejects, "seconds": result.seconds, "run_id": result.run_id,
        "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }
    storage.append_records(spark, tables.TABLES["dq.job_metrics"], [record], result.ds, root=root)

