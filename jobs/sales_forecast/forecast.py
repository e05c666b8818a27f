"""`ostap forecast`: monthly sales forecast per store, champion model by backtest, business plan.

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass

import pandas as pd

from jobs.core import config, quality, runs, sqlfiles, storage
from jobs.core.errors import BadInputError, OstapError
from jobs.core.run import RunContext
from jobs.core.spark import default_parallelism
from jobs.core.tables import TABLES
from jobs.sales_forecast.forecast_models import (
    MODEL_ORDER,
    RESULT_SCHEMA,
    ForecastSettings,
    ProphetSettings,
    fit_store_frame,
)

HELP = "forecast monthly sales per store (lin3, snaive, ETS, Prophet, ensemble), backtest, publish the plan"
# The CLI wraps each run in OpenLineage START and COMPLETE or FAIL events (jobs.core.lineage_events).
EMITS_LINEAGE = True

log = logging.getLogger(__name__)

OUTPUTS = ("marts.sales_forecast", "marts.forecast_backtest", "marts.sales_plan", "marts.forecast_stores")


def add_arguments(parser) -> None:
    parser.add_argument("--ds", required=True, metavar="YYYY-MM-DD",
                        help="run date: history is every month before its month, the forecast starts there")
    parser.add_argument("--sales", metavar="PATH",
                        help="CSV or Parquet with store_id, date, sales instead of the ods.sales snapshot")
    parser.add_argument("--horizon", type=int, default=3, help="months to forecast (default 3)")
    parser.add_argument("--ambition", type=float, default=1.0, help="plan = forecast x ambition (default 1.0)")
    parser.add_argument("--origins", type=int, default=6,
                        help="rolling backtest origins, the last ones whose horizon lies in history (default 6)")
    parser.add_argument("--models", default=",".join(MODEL_ORDER),
                        help=f"comma-separated models to fit (default {','.join(MODEL_ORDER)})")
    parser.add_argument("--holidays", metavar="COUNTRY",
                        help="add the monthly count of COUNTRY's public holidays to Prophet (e.g. US, DE)")
    parser.add_argument("--seasonality-mode", choices=("multiplicative", "additive"), default="multiplicative",
                        help="Prophet's yearly seasonality mode (default multiplicative)")
    parser.add_argument("--changepoints", type=int, default=ProphetSettings.n_changepoints,
                        help=f"Prophet trend changepoints (default {ProphetSettings.n_changepoints})")
    parser.add_argument("--partitions", type=int,
                        help="Spark tasks for the per-store fits (default 4 x the default parallelism)")
    parser.add_argument("--plot-stores", type=int, default=4,
                        help="stores drawn in the actual-vs-forecast plot (default 4, the largest)")


# ---------------------------------------------------------------- options

def settings_from_args(args) -> ForecastSettings:
    if args.horizon < 1:
        raise BadInputError(f"--horizon {args.horizon}: must be at least 1 month")
    if args.origins < 0:
        raise BadInputError(f"--origins {args.origins}: must be 0 or more")
    if not args.ambition > 0:
        raise BadInputError(f"--ambition {args.ambition}: must be a positive factor")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODEL_ORDER]
    if unknown or not models:
        raise BadInputError(f"--models {args.models!r}: unknown {unknown}; known: {', '.join(MODEL_ORDER)}")
    if args.holidays:
        import holidays

        if args.holidays.upper() not in holidays.list_supported_countries():
            raise BadInputError(f"--holidays {args.holidays!r}: not a country code the holidays package knows")
    prophet = ProphetSettings(seasonality_mode=args.seasonality_mode, n_changepoints=args.changepoints,
                              holidays_country=args.holidays.upper() if args.holidays else None)
    return ForecastSettings(horizon=args.horizon, origins=args.origins, models=models, prophet=prophet)


# ---------------------------------------------------------------- input

def load_sales(spark, ctx: RunContext, path: str | None = None):
    """Typed sales rows (store_id int, sale_date date, sales double) and the source's name."""
    if path:
        source = path
        fmt = "csv" if path.lower().rstrip("/").endswith((".csv", ".csv.gz")) else "parquet"
        if not storage.path_exists(spark, path):
            raise BadInputError(f"--sales {path}: no such file or folder")
        reader = spark.read.option("header", True) if fmt == "csv" else spark.read
        raw = reader.format(fmt).load(path)
        if "date" in raw.columns and "sale_date" not in raw.columns:
            raw = raw.withColumnRenamed("date", "sale_date")
    else:
        table, ds = TABLES["ods.sales"], ctx.ds
        source = table.qualified
        if not storage.path_exists(spark, table.partition_path(ds, ctx.warehouse)):
            raise OstapError(f"{source}: partition ds={ds} not found at {table.partition_path(ds, ctx.warehouse)}; "
                             "run `ostap snapshot --entity sales` for that date or pass --sales PATH")
        raw = storage.read_input(spark, table, ds, ctx)
    missing = [c for c in ("store_id", "sale_date", "sales") if c not in raw.columns]
    if missing:
        shown = ["date" if c == "sale_date" else c for c in missing]
        raise BadInputError(f"{source}: missing column(s) {', '.join(shown)}; found {', '.join(raw.columns)}")
    raw.createOrReplaceTempView("forecast_raw_sales")
    typed = spark.sql(sqlfiles.load("sales_forecast/forecast_input.sql", source="forecast_raw_sales"))
    _refuse_bad_sales(typed, source)
    return typed.select("store_id", "sale_date", "sales"), source


# What makes a sales row unusable, in the order they are reported (sales is a double: try_cast
# reads 'NaN' and 'Infinity' as such).
_BAD_SALES = (
    ("store_id IS NULL OR sale_date IS NULL OR sales IS NULL", "with a missing or unparsable value"),
    ("isnan(sales) OR abs(sales) = double('Infinity')", "whose sales is not a finite number"),
    ("sales < 0", "with negative sales"),
)


def _refuse_bad_sales(typed, source: str) -> None:
    """One line naming the first kind of bad row, with examples: an empty input, a value that does
    not parse, a sales value that is NaN, infinite or negative, or a store and day given twice
    (a daily file has one row per store and day: summing both would double that day)."""
    counts = typed.selectExpr("count(*) AS rows", "count(DISTINCT store_id, sale_date) AS days",
                              "sum(sales) AS total", "max(sales) AS largest",
                              *[f"count_if({cond}) AS bad{i}" for i, (cond, _) in enumerate(_BAD_SALES)]).first()
    if not counts["rows"]:
        raise BadInputError(f"{source}: no sales rows; nothing to forecast")
    for i, (cond, what) in enumerate(_BAD_SALES):
        if counts[f"bad{i}"]:
            examples = typed.where(cond).limit(3).collect()
            where = ""
            if i == 0:
                column = next(c for c in ("store_id", "sale_date", "sales") if any(r[c] is None for r in examples))
                where = f" (first in column {'date' if column == 'sale_date' else column})"
            shown = "; ".join(f"store_id={r['store_id_raw']} date={r['sale_date_raw']} sales={r['sales_raw']}"
                              for r in examples)
            raise BadInputError(f"{source}: {counts[f'bad{i}']} row(s) {what}{where}, e.g. {shown}")
    if counts["total"] in (float("inf"), float("-inf")):
        raise BadInputError(f"{source}: sales values too large to add up (the total overflows a double; "
                            f"largest value {counts['largest']})")
    if counts["days"] < counts["rows"]:
        twice = typed.groupBy("store_id", "sale_date").count().where("count > 1")
        examples = twice.orderBy("store_id", "sale_date").limit(3).collect()
        shown = "; ".join(f"store_id={r['store_id']} date={r['sale_date']} ({r['count']} rows)" for r in examples)
        raise BadInputError(f"{source}: {twice.count()} store and day(s) given more than once, e.g. {shown}; "
                            "a daily file has one row per store and day")


# ---------------------------------------------------------------- the Spark part

@dataclass
class ForecastRun:
    result: object  # cached DataFrame of RESULT_SCHEMA rows
    monthly: object  # DataFrame store_id, month, sales
    tables: dict  # qualified name -> DataFrame in the table's column order
    summary: pd.DataFrame  # model, stores, wape, mape (incl. 'chosen')
    input_rows: int
    seconds: float


def fit_stores(spark, sales, ds: dt.date, settings: ForecastSettings, ambition: float,
               partitions: int | None = None) -> ForecastRun:
    """Monthly aggregation, per-store fits in applyInPandas, and the three output DataFrames."""
    started = time.perf_counter()
    target_month = pd.Timestamp(ds.year, ds.month, 1)
    sales.createOrReplaceTempView("forecast_sales")
    monthly = spark.sql(sqlfiles.load("sales_forecast/forecast_monthly.sql", source="forecast_sales"))
    partitions = partitions or 4 * default_parallelism(spark)

    def fit_group(pdf: pd.DataFrame) -> pd.DataFrame:
        return fit_store_frame(pdf, target_month, settings)

    # An explicit repartition by store: AQE would otherwise coalesce this tiny shuffle into one
    # task and fit every store on one core. The groupBy reuses this partitioning.
    result = (monthly.repartition(partitions, "store_id")
              .groupBy("store_id").applyInPandas(fit_group, schema=RESULT_SCHEMA)
              .cache())
    rows = result.count()
    log.info("fitted the stores in %d Spark tasks: %d result rows in %.1f s", partitions, rows,
             time.perf_counter() - started)
    result.createOrReplaceTempView("forecast_result")
    tables = {
        "marts.sales_forecast": spark.sql(sqlfiles.load("sales_forecast/forecast_sales_forecast.sql", result="forecast_result")),
        "marts.forecast_backtest": spark.sql(sqlfiles.load("sales_forecast/forecast_backtest.sql", result="forecast_result")),
        "marts.sales_plan": spark.sql(sqlfiles.load("sales_forecast/forecast_sales_plan.sql", result="forecast_result"),
                                      args={"ambition": float(ambition)}),
        "marts.forecast_stores": spark.sql(sqlfiles.load("sales_forecast/forecast_stores.sql", result="forecast_result")),
    }
    tables = {name: df.select(*TABLES[name].columns) for name, df in tables.items()}
    summary = spark.sql(sqlfiles.load("sales_forecast/forecast_summary.sql", result="forecast_result")).toPandas()
    input_rows = sales.count()
    return ForecastRun(result, monthly, tables, summary, input_rows, time.perf_counter() - started)


# ---------------------------------------------------------------- report

def report_lines(run: ForecastRun) -> list[str]:
    lines = []
    by_model = run.summary.set_index("model")
    for model in ("lin3", "chosen"):
        if model in by_model.index:
            row = by_model.loc[model]
            lines.append(f"backtest {model:<7} MAPE {_pct(row['mape'])}  WAPE {_pct(row['wape'])}  "
                         f"({int(row['stores'])} stores)")
    others = [m for m in by_model.index if m not in ("lin3", "chosen")]
    if others:
        lines.append("other models: " + ", ".join(f"{m} WAPE {_pct(by_model.loc[m, 'wape'])}" for m in others))
    return lines


def _pct(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * float(value):.1f}%"


def write_report(run: ForecastRun, ctx: RunContext, plot_stores: int, extra: dict) -> str | None:
    """PNG plots and a JSON summary under {warehouse}/reports/forecast/ds=D/ (local warehouses)."""
    root, ds = ctx.warehouse, ctx.ds
    if not config.is_local(root):
        log.info("warehouse %s is not local: plots skipped", root)
        return None
    folder = os.path.join(config.local_path(root), "reports", "forecast", f"ds={ds}")
    os.makedirs(folder, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pyspark.sql import functions as F

    history = run.monthly.where(F.col("month") < F.lit(dt.date.fromisoformat(ds).replace(day=1)))
    largest = [r["store_id"] for r in history.groupBy("store_id").agg(F.sum("sales").alias("total"))
               .orderBy(F.desc("total"), "store_id").limit(plot_stores).collect()]
    monthly = history.where(F.col("store_id").isin(largest)).toPandas()
    forecasts = run.tables["marts.sales_forecast"].where(F.col("store_id").isin(largest)).toPandas()
    if largest:
        fig, axes = plt.subplots(len(largest), 1, figsize=(9, 2.6 * len(largest)), squeeze=False)
        for ax, store in zip(axes[:, 0], sorted(largest), strict=True):
            hist = monthly[monthly["store_id"] == store].sort_values("month")
            ax.plot(pd.to_datetime(hist["month"]), hist["sales"], color="black", label="actual")
            fc = forecasts[forecasts["store_id"] == store].sort_values("month")
            for model, part in fc.groupby("model"):
                chosen = bool(part["chosen"].iloc[0])
                if chosen or model == "lin3":
                    months = pd.to_datetime(part["month"])
                    line = ax.plot(months, part["yhat"], marker="o", label=f"{model}{' (chosen)' if chosen else ''}")
                    if chosen:
                        ax.fill_between(months, part["yhat_lower"], part["yhat_upper"], alpha=0.2,
                                        color=line[0].get_color())
            ax.set_title(f"store {store}")
            ax.tick_params(axis="x", labelsize=7)
            ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "actual_vs_forecast.png"), dpi=90)
        plt.close(fig)

    summary = run.summary.dropna(subset=["wape"])
    if not summary.empty:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        x = range(len(summary))
        ax.bar([i - 0.2 for i in x], 100 * summary["wape"], width=0.4, label="WAPE")
        ax.bar([i + 0.2 for i in x], 100 * summary["mape"].astype(float), width=0.4, label="MAPE")
        ax.set_xticks(list(x), [f"{m}\n{n} stores" for m, n in zip(summary["model"], summary["stores"], strict=True)],
                      fontsize=8)
        ax.set_ylabel("backtest error, %")
        ax.set_title(f"Backtest error by model (each over the stores it could run on), ds={ds}", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "error_by_model.png"), dpi=90)
        plt.close(fig)

    with open(os.path.join(folder, "summary.json"), "w") as fh:
        json.dump({"ds": ds, **extra, "summary": json.loads(run.summary.to_json(orient="records"))}, fh, indent=2)
    return folder


# ---------------------------------------------------------------- the command

def run(args, ctx: RunContext) -> int:
    ds, run_id = ctx.ds, ctx.run_id
    settings = settings_from_args(args)
    spark = ctx.spark("ostap-forecast")
    started = time.perf_counter()
    sales, source = load_sales(spark, ctx, args.sales)
    fitted = fit_stores(spark, sales, ctx.ds_date, settings, args.ambition, args.partitions)
    try:
        published = time.perf_counter()
        runs.publish_together([runs.Output(fitted.tables[name], TABLES[name], ds) for name in OUTPUTS],
                              ctx=ctx, check=quality.gate)
        log.info("published %s ds=%s in %.1f s", ", ".join(OUTPUTS), ds, time.perf_counter() - published)
        counts = _store_counts(fitted)
        for line in _fallback_lines(fitted, settings):
            log.info(line)
        for line in report_lines(fitted):
            print(line)
        folder = write_report(fitted, ctx, args.plot_stores,
                              {"source": source, "run_id": run_id, "horizon": settings.horizon,
                               "origins": settings.origins, "ambition": args.ambition, **counts})
        seconds = time.perf_counter() - started
        storage.append_records(spark, TABLES["dq.job_metrics"], [{
            "job": "forecast", "entity": "sales", "mode": "spark-applyInPandas",
            "rows_read": fitted.input_rows, "live_keys": counts["stores_forecast"], "deletes_applied": 0,
            "duplicates_collapsed": 0, "conflicts": 0, "rejects": counts["stores_skipped"],
            "seconds": round(seconds, 3), "run_id": run_id,
            "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }], ds, ctx.warehouse)
        print(f"forecast ds={ds}: {counts['stores_forecast']} stores forecast "
              f"({counts['short_history']} on a short history: baseline only), {counts['closed']} closed, "
              f"{counts['no_history']} without history (why: marts.forecast_stores), "
              f"published {', '.join(OUTPUTS)} in {seconds:.1f} s"
              + (f"; plots in {folder}" if folder else ""))
    finally:
        fitted.result.unpersist()
    return 0


def _store_counts(fitted: ForecastRun) -> dict:
    """Stores per status; stores_skipped are those without forecast rows (closed or no history)."""
    row = fitted.result.where("kind = 'store'").selectExpr(
        "count_if(status IN ('forecast', 'short_history')) AS stores_forecast",
        "count_if(status = 'short_history') AS short_history",
        "count_if(status = 'closed') AS closed",
        "count_if(status = 'no_history') AS no_history",
    ).first()
    counts = {name: int(row[name]) for name in ("stores_forecast", "short_history", "closed", "no_history")}
    return dict(counts, stores_skipped=counts["closed"] + counts["no_history"])


def _fallback_lines(fitted: ForecastRun, settings: ForecastSettings) -> list[str]:
    """One log line per model that some stores lacked history or a fit for."""
    rows = fitted.result.where("kind = 'backtest'").groupBy("model").agg(
        {"store_id": "count"}).toPandas()
    fitted_per_model = (fitted.result.where("kind = 'forecast'").select("store_id", "model").distinct()
                        .groupBy("model").count().toPandas().set_index("model")["count"])
    lines = []
    for model, stores in rows.set_index("model")["count(store_id)"].items():
        missing = int(stores) - int(fitted_per_model.get(model, 0))
        if missing:
            lines.append(f"{model}: not fitted for {missing} store(s) (short history or failed fit); "
                         "those stores chose among the other models")
    return lines
