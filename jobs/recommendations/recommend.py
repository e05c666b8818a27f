"""`ostap recommend`: premises for tenants (and tenants for premises) from the ods snapshots of ds,

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import time

from jobs.core import abtest, files, quality, runs, sqlfiles, storage
from jobs.core.errors import BadInputError, OstapError
from jobs.core.run import RunContext
from jobs.core.tables import TABLES
from jobs.recommendations import synthetic_market
from jobs.recommendations.filters import FilterConfig
from jobs.recommendations.model import LIGHTFM, MODELS, ModelConfig
from jobs.recommendations.recommender import RecResult, recommend_agency, recommend_generic

HELP = "recommend premises to tenants (LightFM vs baseline, A/B arms, leads, offline eval) or items of any log"
# The CLI wraps each run in OpenLineage START and COMPLETE or FAIL events (jobs.core.lineage_events).
EMITS_LINEAGE = True

log = logging.getLogger(__name__)

AGENCY_INPUTS = ("tenants", "premises", "managers", "deals", "proposals", "page_views")


def add_arguments(parser) -> None:
    parser.add_argument("--ds", required=True, metavar="YYYY-MM-DD", help="snapshot day to recommend on")
    parser.add_argument("--k", type=int, default=10, help="list length per tenant (default 10)")
    parser.add_argument("--leads-k", type=int, default=10, help="tenants per premise in premise_leads (default 10)")
    parser.add_argument("--experiment", metavar="NAME",
                        help="A/B experiment whose arms the lists carry (default: the current one of "
                             "$OSTAP_EXPERIMENTS, jobs/core/experiments.toml)")
    parser.add_argument("--eval-days", type=int, default=30, help="test period of the offline evaluation (days)")
    filters = parser.add_argument_group("hard filters (agency mode)")
    filters.add_argument("--area-tolerance", type=float, default=0.10, help="relative, default 0.10")
    filters.add_argument("--budget-tolerance", type=float, default=0.10, help="relative, default 0.10")
    filters.add_argument("--match-district", action="store_true", help="premise must be in a tenant's district")
    filters.add_argument("--match-river-bank", action="store_true", help="premise must be on the tenant's bank")
    filters.add_argument("--include-occupied", action="store_true", help="do not require premises to be vacant")
    filters.add_argument("--offer-rejected", action="store_true",
                         help="allow premises the tenant rejected before")
    model = parser.add_argument_group("model")
    model.add_argument("--epochs", type=int, default=ModelConfig.epochs)
    model.add_argument("--components", type=int, default=ModelConfig.no_components)
    model.add_argument("--threads", type=int, default=1,
                       help="LightFM threads (default 1: more is faster but not reproducible)")
    model.add_argument("--seed", type=int, default=ModelConfig.random_state)
    model.add_argument("--history-boost", type=float, default=ModelConfig.history_boost,
                       help="score standard deviations added to premises the tenant already viewed or was "
                            "proposed (default inf: those first, by LightFM score; 0: LightFM alone)")
    model.add_argument("--block-size", type=int, default=1024, help="users scored per matrix block")
    generic = parser.add_argument_group("generic mode")
    generic.add_argument("--interactions", metavar="PATH",
                         help="CSV or Parquet with user_id, item_id[, weight][, ts]: recommend from this log")
    generic.add_argument("--users", metavar="PATH", help="CSV or Parquet: user_id and user feature columns")
    generic.add_argument("--items", metavar="PATH", help="CSV or Parquet: item_id and item feature columns")
    generic.add_argument("--exclude-seen", action="store_true", help="never recommend what a user already saw")


def _check_args(args) -> None:
    if args.k < 1 or args.leads_k < 0:
        raise BadInputError(f"--k must be >= 1 and --leads-k >= 0, got {args.k} and {args.leads_k}")
    if args.eval_days < 1:
        raise BadInputError(f"--eval-days must be >= 1, got {args.eval_days}")
    if (args.users or args.items or args.exclude_seen) and not args.interactions:
        raise BadInputError("--users, --items and --exclude-seen belong to generic mode: add --interactions PATH")


def model_config(args) -> ModelConfig:
    return ModelConfig(no_components=args.components, epochs=args.epochs, random_state=args.seed,
                       num_threads=args.threads, history_boost=args.history_boost)


def filter_config(args) -> FilterConfig:
    return FilterConfig(require_vacant=not args.include_occupied, area_tolerance=args.area_tolerance,
                        budget_tolerance=args.budget_tolerance, match_district=args.match_district,
                        match_river_bank=args.match_river_bank, exclude_rejected=not args.offer_rejected)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------

def _read_ods(spark, entity: str, ctx: RunContext):
    table, ds = TABLES[f"ods.{entity}"], ctx.ds
    if ds not in storage.list_partitions(spark, table, ctx.warehouse):
        raise BadInputError(f"{table.qualified} has no published partition ds={ds} "
                            f"(at {table.path(ctx.warehouse)}); run `ostap snapshot --ds {ds}` first")
    return storage.read_input(spark, table, ds, ctx)


def read_agency_inputs(spark, ctx: RunContext, eval_days: int) -> dict:
    """pandas frames of the ods snapshots of ctx.ds, the event log, and vacancy as of the split day."""
    ds = ctx.ds
    frames = {entity: _read_ods(spark, entity, ctx) for entity in AGENCY_INPUTS}
    events = agency_events(spark, frames, ds)
    tenants = frames["tenants"].select("client_id", "business_types", "districts", "river_bank", "scale",
                                       "area_min", "area_max", "budget", "manager_id").toPandas()
    premises = frames["premises"].select("premise_id", "area", "price", "district", "river_bank", "vacant",
                                         "floor", "premise_type").toPandas()
    managers = frames["managers"].select("manager_id", "fired").toPandas()
    _refuse_null_keys(tenants, "ods.tenants", "client_id")
    _refuse_null_keys(premises, "ods.premises", "premise_id")
    split_day = (ctx.ds_date - dt.timedelta(days=eval_days)).isoformat()
    vacant_at_split = None
    if split_day in storage.list_partitions(spark, TABLES["ods.premises"], ctx.warehouse):
        at_split = storage.read_input(spark, TABLES["ods.premises"], split_day, ctx).select(
            "premise_id", "vacant").toPandas()
        vacant_at_split = at_split.set_index("premise_id")["vacant"].eq(True)
    return {"tenants": tenants, "premises": premises, "managers": managers, "events": events,
            "vacant_at_split": vacant_at_split}


def agency_events(spark, frames: dict, ds: str):
    """The weighted event log (sql/recommendations/rec_interactions.sql) as pandas, from Spark DataFrames of the
    deals, proposals and page_views snapshots."""
    for entity in ("deals", "proposals", "page_views"):
        frames[entity].createOrReplaceTempView(f"rec_{entity}")
    return spark.sql(sqlfiles.load("recommendations/rec_interactions.sql"), args={"ds": ds}).toPandas()


def market_events(spark, market: dict, ds: str):
    """agency_events of in-memory frames in the ods schemas (e.g. a market of
    jobs.recommendations.synthetic_market)."""
    frames = {}
    for entity in ("deals", "proposals", "page_views"):
        table = TABLES[f"ods.{entity}"]
        frames[entity] = spark.createDataFrame(_as_ods(market[entity], ds)[table.columns], schema=table.spark_schema())
    return agency_events(spark, frames, ds)


def _as_ods(frame, ds: str):
    """A source frame with the ods bookkeeping columns, in the ods column order."""
    import numpy as np
    import pandas as pd

    frame = frame.copy()
    frame["ods_dt"] = pd.Timestamp(ds)
    frame["ods_seq"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    return frame


def _refuse_null_keys(frame, table: str, column: str) -> None:
    nulls = frame[column].isna()
    if nulls.any():
        raise BadInputError(f"{table}: column {column} is null in {int(nulls.sum())} rows "
                            f"(first: {frame[nulls].head(3).to_dict('records')})")


def _read_any(spark, path: str, what: str):
    lowered = path.lower().rstrip("/")
    try:
        if lowered.endswith(".csv") or lowered.endswith(".csv.gz"):
            return spark.read.option("header", True).option("inferSchema", True).csv(path).toPandas()
        return spark.read.parquet(path).toPandas()
    except Exception as exc:  # noqa: BLE001 - Spark raises many kinds; the user needs the path
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{what} {path}: cannot read it as CSV (with header) or Parquet: {first}") from None


def _integer_ids(frame, column: str, what: str, path: str):
    import pandas as pd

    if not len(frame.columns):
        raise BadInputError(f"{what} {path}: the file is empty (not even a header with {column})")
    if column not in frame.columns:
        raise BadInputError(f"{what} {path}: no column {column!r} (columns: {', '.join(frame.columns)})")
    values = pd.to_numeric(frame[column], errors="coerce")
    # Beyond bigint an id would wrap around when converted (ids are bigint in the marts).
    bad = values.isna() | (values != values.round()) | (values.abs() > 2**63 - 1)
    if bad.any():
        raise BadInputError(f"{what} {path}: column {column} must hold integer ids (bigint); {int(bad.sum())} "
                            f"rows do not (first: {[str(v) for v in frame.loc[bad, column].head(3)]})")
    frame[column] = values.astype("int64")
    return frame


def read_generic_inputs(spark, args) -> dict:
    events = _read_any(spark, args.interactions, "--interactions")
    for column in ("user_id", "item_id"):
        _integer_ids(events, column, "--interactions", args.interactions)
    keep = [c for c in ("user_id", "item_id", "weight", "ts") if c in events.columns]
    events = events[keep]
    if "weight" in events:
        import numpy as np
        import pandas as pd

        weights = pd.to_numeric(events["weight"], errors="coerce")
        # 0 means no signal (such events are dropped); a negative or infinite weight is an error.
        bad = ~np.isfinite(weights.astype(float)) | (weights < 0)
        if bad.any():
            raise BadInputError(f"--interactions {args.interactions}: column weight must be a finite number "
                                f">= 0; {int(bad.sum())} rows are not "
                                f"(first: {[str(v) for v in events.loc[bad, 'weight'].head(3)]})")
        events = events.assign(weight=weights)
    if "ts" in events:
        import pandas as pd

        # As recommend_generic parses it, so that a bad value is named here rather than fail there.
        try:
            ts = pd.to_datetime(events["ts"], errors="coerce")
        except (ValueError, TypeError) as exc:
            raise BadInputError(f"--interactions {args.interactions}: column ts does not parse as timestamps "
                                f"({str(exc).splitlines()[0]})") from None
        bad = ts.isna() & events["ts"].notna()
        if bad.any():
            raise BadInputError(f"--interactions {args.interactions}: column ts must hold timestamps; "
                                f"{int(bad.sum())} rows do not (first: {[str(v) for v in events.loc[bad, 'ts'].head(3)]})")
    users = items = None
    if args.users:
        users = _integer_ids(_read_any(spark, args.users, "--users"), "user_id", "--users", args.users)
    if args.items:
        items = _integer_ids(_read_any(spark, args.items, "--items"), "item_id", "--items", args.items)
    return {"events": events, "users": users, "items": items}


def publish_synthetic_market(spark, ctx: RunContext, **market_args) -> dict:
    """Generate jobs.recommendations.synthetic_market.synthetic_market(**market_args) and publish its
    frames as the ods snapshots of ds (tests and bench/recommend.py run the job's own read path on them). Returns
    the market (frames plus its hidden utility)."""
    market = synthetic_market.synthetic_market(**market_args)
    outputs = []
    for entity in AGENCY_INPUTS:
        table = TABLES[f"ods.{entity}"]
        frame = _as_ods(market[entity], ctx.ds)[table.columns]
        outputs.append(runs.Output(spark.createDataFrame(frame, schema=table.spark_schema()), table, ctx.ds))
    runs.publish_together(outputs, ctx=ctx, check=None)
    return market


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------

def _to_spark(spark, frame, table_name: str, extra_columns=()):
    table = TABLES[table_name]
    columns = [c for c in table.columns if c not in extra_columns]
    from pyspark.sql.types import StructType

    schema = StructType([f for f in table.spark_schema().fields if f.name in columns])
    return spark.createDataFrame(frame[columns], schema=schema)


def publish(spark, result: RecResult, ctx: RunContext, experiment: abtest.Experiment) -> dict:
    """Publish the run's tables together: all of them, or (a refused gate, a kill) none."""
    ds = ctx.ds
    recs = _to_spark(spark, result.recommendations, "marts.recommendations", extra_columns=("arm",))
    recs = recs.withColumn("arm", experiment.arm_column("user_id"))
    recs_table = TABLES["marts.recommendations"]
    outputs = [runs.Output(recs.select(*recs_table.columns), recs_table, ds)]
    if result.metrics.get("mode") == "agency":  # leads are premises' tenants: not a generic-log notion
        outputs.append(runs.Output(_to_spark(spark, result.leads, "marts.premise_leads"),
                                   TABLES["marts.premise_leads"], ds))
    outputs.append(runs.Output(_to_spark(spark, result.evaluation, "marts.rec_eval"), TABLES["marts.rec_eval"], ds))
    published = runs.publish_together(outputs, ctx=ctx, check=quality.gate)
    return {name.split(".", 1)[1]: path for name, path in published.items()}


def model_dir(ds: str, root: str) -> str:
    return f"{root}/models/recommend/ds={ds}"


def save_model(spark, result: RecResult, ctx: RunContext) -> str:
    """model.pkl and metrics.json into models/recommend/ds=D, staged and swapped in like a partition."""
    final = model_dir(ctx.ds, ctx.warehouse)
    staging = f"{ctx.warehouse}/models/recommend/_staging_ds={ctx.ds}.{ctx.run_id}"
    payloads = {"model.pkl": pickle.dumps(result.artifact, protocol=pickle.HIGHEST_PROTOCOL),
                "metrics.json": json.dumps(result.metrics, indent=2, sort_keys=True, default=_json_default).encode()}
    for name, payload in payloads.items():
        storage.write_bytes(spark, f"{staging}/{name}", payload)
    files.delete(final)
    try:
        files.rename(staging, final)
    except OSError as exc:
        raise OstapError(f"could not move the model into {final}: {exc}") from None
    return final


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _record_metrics(spark, result: RecResult, ctx: RunContext, mode: str, seconds: float) -> None:
    row = {"job": "recommend", "entity": "recommendations", "mode": mode,
           "rows_read": int(result.metrics.get("events", 0)), "live_keys": int(result.metrics.get("users", 0)),
           "deletes_applied": 0, "duplicates_collapsed": 0, "conflicts": 0, "rejects": 0,
           "seconds": float(seconds), "run_id": ctx.run_id,
           "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}
    storage.append_records(spark, TABLES["dq.job_metrics"], [row], ctx.ds, ctx.warehouse)


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------

def run_agency(spark, ctx: RunContext, *, k: int = 10, leads_k: int = 10,
               experiment: abtest.Experiment | None = None, eval_days: int = 30,
               filters: FilterConfig | None = None, model: ModelConfig | None = None,
               block_size: int = 1024, reference_scorers: dict | None = None) -> RecResult:
    """`reference_scorers`: see jobs.recommendations.recommender.recommend_frames (the benchmark's oracle)."""
    filters = filters or FilterConfig()
    model = model or ModelConfig()
    started = time.perf_counter()
    inputs = read_agency_inputs(spark, ctx, eval_days)
    timings = {"read_s": time.perf_counter() - started}
    result = recommend_agency(
        tenants=inputs["tenants"], premises=inputs["premises"], managers=inputs["managers"],
        events=inputs["events"], ds=ctx.ds, k=k, leads_k=leads_k, filter_config=filters, model_config=model,
        eval_days=eval_days, vacant_at_split=inputs["vacant_at_split"], block_size=block_size, timings=timings,
        reference_scorers=reference_scorers)
    return _finish(spark, result, ctx, "agency", experiment, started)


def run_generic(spark, ctx: RunContext, *, events, users=None, items=None, k: int = 10, exclude_seen: bool = False,
                experiment: abtest.Experiment | None = None, eval_days: int = 30, model: ModelConfig | None = None,
                block_size: int = 1024) -> RecResult:
    model = model or ModelConfig()
    started = time.perf_counter()
    if events.empty:
        raise BadInputError("--interactions: the log has no rows")
    result = recommend_generic(events=events, users=users, items=items, ds=ctx.ds, k=k, exclude_seen=exclude_seen,
                               model_config=model, eval_days=eval_days, block_size=block_size)
    return _finish(spark, result, ctx, "generic", experiment, started)


def _finish(spark, result, ctx: RunContext, mode, experiment: abtest.Experiment | None, started) -> RecResult:
    experiment = experiment or abtest.experiment()
    result.metrics["experiment"] = experiment.name
    result.metrics["treatment_share"] = experiment.treatment_share
    result.metrics["run_id"] = ctx.run_id
    publishing = time.perf_counter()
    publish(spark, result, ctx, experiment)
    result.metrics["timings_s"]["publish_s"] = round(time.perf_counter() - publishing, 3)
    result.metrics["model_dir"] = save_model(spark, result, ctx)
    seconds = time.perf_counter() - started
    _record_metrics(spark, result, ctx, mode, seconds)
    return result


def run(args, ctx: RunContext) -> int:
    ds = ctx.ds
    _check_args(args)
    spark = ctx.spark("ostap-recommend")
    common = {"k": args.k, "experiment": abtest.experiment(args.experiment), "eval_days": args.eval_days,
              "model": model_config(args), "block_size": args.block_size}
    if args.interactions:
        inputs = read_generic_inputs(spark, args)
        result = run_generic(spark, ctx, exclude_seen=args.exclude_seen, **inputs, **common)
    else:
        result = run_agency(spark, ctx, leads_k=args.leads_k, filters=filter_config(args), **common)
    metrics = result.metrics
    summary = []
    for name in MODELS:
        if name in metrics:
            m = metrics[name]
            summary.append(f"{name}: recall@{args.k}={m['recall']:.3f} ndcg@{args.k}={m['ndcg']:.3f} "
                           f"coverage={m['coverage']:.3f}"
                           + (f" pilot_miss={m['pilot_miss_share']:.2f}" if "pilot_miss_share" in m else ""))
    print(f"recommend ds={ds} ({metrics['mode']}): {metrics['users']} users x {metrics['items']} items, "
          f"{len(result.recommendations)} list rows, {len(result.leads)} lead rows; " + "; ".join(summary))
    pilot = metrics.get(LIGHTFM, {}).get("pilot_miss_share")
    if pilot is not None and pilot == pilot and pilot > 0.20:
        log.warning("pilot metric above target: lightfm misses %.0f%% of premises of successful deals "
                    "(target at most 20%%)", 100 * pilot)
    return 0
