"""`ostap targets`: scoring targets with phones recovered from applications, point in time, PII-safe.

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import datetime as dt
import logging
import time

from jobs.core import pii, quality, runs, sqlfiles, storage
from jobs.core.errors import BadInputError, OstapError
from jobs.core.run import RunContext
from jobs.core.tables import TABLES

HELP = "scoring targets: contracts linked to a hashed phone (client's, else latest prior application's)"
# The CLI wraps each run in OpenLineage START and COMPLETE or FAIL events (jobs.core.lineage_events).
EMITS_LINEAGE = True

DEFAULT_OUTCOME_WINDOW_DAYS = 90
INPUTS = ("ods.contracts", "ods.clients", "ods.applications")
TARGETS = TABLES["marts.scoring_targets"]
RECOVERY = TABLES["marts.target_recovery"]
RECOVERY_FIGURES = RECOVERY.columns

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--ds", required=True, metavar="YYYY-MM-DD",
                        help="date of the ods snapshots to read and of the partitions to write")
    parser.add_argument("--outcome-window-days", type=int, default=DEFAULT_OUTCOME_WINDOW_DAYS, metavar="N",
                        help="keep contracts signed at least N days before ds, whose outcome is known "
                             f"(default {DEFAULT_OUTCOME_WINDOW_DAYS})")


def _read_input(spark, name: str, ctx: RunContext):
    ds, root = ctx.ds, ctx.warehouse
    table = TABLES[name]
    if not storage.path_exists(spark, f"{table.partition_path(ds, root)}/_SUCCESS"):
        entity = table.name
        raise OstapError(
            f"{name} has no published partition ds={ds} (looked in {table.partition_path(ds, root)}): "
            f"run the snapshot for it first: ostap snapshot --entity {entity} --ds {ds}")
    return storage.read_input(spark, table, ds, ctx)


def link_contracts(spark, ctx: RunContext, outcome_window_days: int = DEFAULT_OUTCOME_WINDOW_DAYS):
    """Every observable contract with its normalised phone (NULL when none) and phone_source.

    Columns: contract_id, client_id, sign_date, target, client_in_snapshot, has_client_phone,
    phone (plain, normalised: never publish it), phone_source.
    """
    from pyspark.sql import functions as F

    if outcome_window_days < 0:
        raise BadInputError(f"--outcome-window-days {outcome_window_days}: must be 0 or more")
    last_sign_date = ctx.ds_date - dt.timedelta(days=outcome_window_days)
    contracts, clients, applications = (_read_input(spark, name, ctx) for name in INPUTS)

    contracts.select("contract_id", "client_id", "sign_date", "bad_flag") \
        .createOrReplaceTempView("targets_contracts")
    clients.select("client_id", pii.normalized_phone("msisdn").alias("client_phone")) \
        .createOrReplaceTempView("targets_clients")
    applications.select("application_id", "client_id", "created_at",
                        pii.normalized_phone("phone").alias("application_phone")) \
        .createOrReplaceTempView("targets_applications")
    linked = spark.sql(sqlfiles.load("scoring_targets/scoring_targets.sql"), args={"last_sign_date": last_sign_date})
    return linked.withColumn("target", F.col("target").cast("int"))


def recovery_figures(linked) -> dict:
    """The target_recovery row (plus two check counts) for a `link_contracts` result."""
    linked.createOrReplaceTempView("targets_linked")
    return linked.sparkSession.sql(sqlfiles.load("scoring_targets/target_recovery.sql")).first().asDict()


def hashed_targets(linked, key: bytes):
    """The published scoring_targets rows: contracts with a phone, the phone replaced by its hash."""
    from pyspark.sql import functions as F

    return (linked.where(F.col("phone").isNotNull())
            .select("contract_id", "client_id",
                    pii.hmac_column(F.col("phone"), key).alias("phone_hash"),
                    "phone_source", "sign_date", "target"))


def _check_targets(linked, figures: dict) -> None:
    from pyspark.sql import functions as F

    if figures["bad_targets"]:
        sample = [r.contract_id for r in linked.where(F.col("target").isNull() | ~F.col("target").isin(0, 1))
                  .select("contract_id").orderBy("contract_id").limit(5).collect()]
        raise BadInputError(
            f"ods.contracts column bad_flag must be 0 or 1 for contracts with an observable outcome: "
            f"{figures['bad_targets']} rows are not, e.g. contract_id {sample}; nothing was published")


def format_figures(ds: str, figures: dict) -> str:
    ratio = figures["positives_ratio"]
    parts = [f"{name}={figures[name]}" for name in RECOVERY_FIGURES if name != "positives_ratio"]
    parts.append(f"positives_ratio={'n/a' if ratio is None else f'{ratio:.3f}'}")
    return f"targets ds={ds}: " + " ".join(parts)


def build_and_publish(spark, ctx: RunContext, outcome_window_days: int = DEFAULT_OUTCOME_WINDOW_DAYS) -> dict:
    """Build both outputs for ctx.ds, publish them, return the recovery figures."""
    started = time.monotonic()
    ds = ctx.ds
    key = pii.pii_key()  # fail before any Spark work when the key is missing
    linked = link_contracts(spark, ctx, outcome_window_days).cache()
    try:
        figures = recovery_figures(linked)
        _check_targets(linked, figures)
        if figures["contracts_without_client"]:
            log.info("%d observable contracts have no client in ods.clients ds=%s (deleted in the source): "
                     "their phones come from applications", figures["contracts_without_client"], ds)
        recovery = spark.createDataFrame([tuple(figures[c] for c in RECOVERY_FIGURES)],
                                         RECOVERY.spark_schema())
        runs.publish_together([runs.Output(hashed_targets(linked, key), TARGETS, ds),
                               runs.Output(recovery, RECOVERY, ds)], ctx=ctx, check=quality.gate)
    finally:
        linked.unpersist()
    kept = figures["phones_from_clients"] + figures["phones_from_applications"]
    storage.append_records(spark, TABLES["dq.job_metrics"], [{
        "job": "targets", "entity": TARGETS.qualified, "mode": "full",
        "rows_read": figures["contracts"], "live_keys": kept,
        "deletes_applied": None, "duplicates_collapsed": None, "conflicts": None,
        "rejects": figures["contracts_without_phone"],
        "seconds": round(time.monotonic() - started, 3), "run_id": ctx.run_id,
        "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }], ds, ctx.warehouse)
    return {name: figures[name] for name in RECOVERY_FIGURES} | {
        "contracts_without_client": figures["contracts_without_client"]}


def run(args, ctx: RunContext) -> int:
    pii.pii_key()  # a missing key is reported before Spark starts
    spark = ctx.spark("ostap-targets")
    figures = build_and_publish(spark, ctx, args.outcome_window_days)
    print(format_figures(ctx.ds, figures))
    return 0
