"""`ostap abtest readout`: did the model win? The A/B readout of the served arms on deal outcomes,
per client, published as marts.ab_readout.

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

from jobs.abtest import statistics
from jobs.core import abtest, quality, runs, sqlfiles, storage
from jobs.core.errors import BadInputError
from jobs.core.run import RunContext
from jobs.core.tables import TABLES

HELP = "read out the A/B test of the served arms on deal outcomes per client (marts.ab_readout)"
# The CLI wraps each run in OpenLineage START and COMPLETE or FAIL events (jobs.core.lineage_events).
EMITS_LINEAGE = True

log = logging.getLogger(__name__)

READOUT = TABLES["marts.ab_readout"]
EXPOSURES = TABLES["ods.serve_exposures"]
DEALS = TABLES["ods.deals"]


def add_arguments(parser) -> None:
    parser.add_argument("--ds", required=True, metavar="YYYY-MM-DD",
                        help="read out the clients exposed up to the end of this day")
    parser.add_argument("--experiment", metavar="NAME",
                        help="experiment to read out (default: the current one of $OSTAP_EXPERIMENTS)")
    parser.add_argument("--window-days", type=int, default=30,
                        help="deals count when signed within this many days after the client's first exposure "
                             "(and by the end of ds; default 30)")


def _read(spark, table, ctx: RunContext):
    if ctx.ds not in storage.list_partitions(spark, table, ctx.warehouse):
        how = ("`ostap abtest land --ds D` then `ostap snapshot --entity serve_exposures --ds D`"
               if table is EXPOSURES else f"`ostap snapshot --entity {table.name} --ds {ctx.ds}`")
        raise BadInputError(f"{table.qualified} has no published partition ds={ctx.ds} "
                            f"(at {table.path(ctx.warehouse)}); run {how} first")
    return storage.read_input(spark, table, ctx.ds, ctx)


def client_outcomes(spark, ctx: RunContext, experiment: abtest.Experiment, window_days: int):
    """(one row per exposed client as pandas, exposure figures) from the ods snapshots of ds."""
    from pyspark.sql import functions as F

    exposures = _read(spark, EXPOSURES, ctx)
    _read(spark, DEALS, ctx).createOrReplaceTempView("ab_deals")
    exposures.createOrReplaceTempView("ab_exposures")
    cutoff = (ctx.ds_date + dt.timedelta(days=1)).isoformat()
    clients = spark.sql(sqlfiles.load("abtest/ab_clients.sql"),
                        args={"experiment": experiment.name, "window_days": window_days, "cutoff": cutoff})
    clients = clients.withColumn("arm", experiment.arm_column("client_id"))
    mine = exposures.where(F.col("experiment") == experiment.name)
    integrity = mine.agg(
        F.count(F.lit(1)).alias("exposures"),
        F.sum((F.col("arm") != experiment.arm_column("client_id")).cast("int")).alias("mismatched"),
        F.countDistinct(F.when(F.col("arm") != experiment.arm_column("client_id"), F.col("client_id")))
        .alias("mismatched_clients")).collect()[0]
    frame = clients.toPandas()
    return frame, {"exposures": int(integrity["exposures"]), "mismatched_exposures": int(integrity["mismatched"] or 0),
                   "mismatched_clients": int(integrity["mismatched_clients"] or 0)}


def readout(spark, ctx: RunContext, experiment: abtest.Experiment | None = None, window_days: int = 30) -> pd.DataFrame:
    """Compute and publish marts.ab_readout ds (through its suite); returns the rows."""
    if window_days < 1:
        raise BadInputError(f"--window-days must be at least 1, got {window_days}")
    experiment = experiment or abtest.experiment()
    clients, figures = client_outcomes(spark, ctx, experiment, window_days)
    others = [e for name, e in abtest.experiments()[1].items() if name != experiment.name]
    if not figures["exposures"]:
        log.warning("experiment %s: no exposures up to %s; the readout says so (empty_arm)", experiment.name, ctx.ds)
    rows = pd.DataFrame(statistics.readout(clients, experiment, exposures=figures["exposures"],
                                           mismatched_exposures=figures["mismatched_exposures"],
                                           mismatched_clients=figures["mismatched_clients"], others=others),
                        columns=READOUT.columns)
    df = spark.createDataFrame(rows.astype(object).where(rows.notna(), None), schema=READOUT.spark_schema())
    runs.publish_together([runs.Output(df.coalesce(1), READOUT, ctx.ds)], ctx=ctx, check=quality.gate)
    return rows


def summary(rows: pd.DataFrame, metric: str = "signed_any_share") -> str:
    """One line: the metric per arm, the lift with its interval and p-value, the flags."""
    by_arm = rows[rows["metric"] == metric].set_index("arm")
    if by_arm.empty:
        return f"{metric}: no rows"
    t, c, lift = by_arm.loc[abtest.TREATMENT], by_arm.loc[abtest.CONTROL], by_arm.loc[statistics.LIFT]

    def pct(x):
        return "n/a" if pd.isna(x) else f"{100 * x:+.1f}%"

    flags = by_arm.loc[statistics.DIFF, "flags"] or "none"
    return (f"{metric}: treatment {t['value']:.4f} (n={t['n_clients']}), control {c['value']:.4f} "
            f"(n={c['n_clients']}); lift {pct(lift['value'])} [{pct(lift['ci_low'])}, {pct(lift['ci_high'])}] "
            f"p={lift['p_value'] if pd.notna(lift['p_value']) else float('nan'):.3g}; flags: {flags}")


def run(args, ctx: RunContext) -> int:
    spark = ctx.spark("ostap-abtest-readout")
    experiment = abtest.experiment(args.experiment)
    rows = readout(spark, ctx, experiment, args.window_days)
    print(f"abtest readout {experiment.name} ds={ctx.ds} (window {args.window_days} days)")
    for metric in ("signed_shown_share", "signed_any_share", "rent_per_client"):
        print("  " + summary(rows, metric))
    return 0
