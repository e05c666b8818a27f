"""Benchmark of `ostap forecast`'s Spark path: N generated stores x M months.

    GX_ANALYTICS_ENABLED=false .venv/bin/python bench/forecast.py [--stores 1000] [--months 48] [--master local[2]]

Generates monthly sales (level, trend, a December-peaked yearly cycle of random strength,
noise, a few stores with zero months), runs them through `jobs.sales_forecast.forecast.fit_stores` (the
groupBy('store_id').applyInPandas fit of every model plus the rolling backtest, exactly what
the job runs before publishing) and prints:

- wall time of the fit stage and stores per second;
- per model: fits (final + backtest refits), wall and CPU seconds per fit inside the tasks
  (CPU includes the Stan child processes; it is counted in 10 ms ticks, so
  only the slow models' CPU figure is meaningful) and fits per second on the given cores, both as
  measured (wall) and as the machine would give without other load (CPU);
- overall backtest WAPE/MAPE of lin3 against the chosen models;
- the load average, because a shared machine slows every figure above;
- a reference measured in the same run, in this (driver) process on --reference stores:
  Prophet's own `Prophet().fit().predict()` against the job's `prophet_forecast` (same Stan
  model and data, without Prophet's pandas set-up), cold and warm-started, per fit.

A "fit" is one model fitted once: a store with 48 months and 6 origins costs 7 Prophet fits
(6 backtest refits + the final one); "store fits/s" divides by that.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jobs.sales_forecast import forecast_prophet as fp  # noqa: E402
from jobs.sales_forecast.forecast import fit_stores  # noqa: E402
from jobs.sales_forecast.forecast_models import ForecastSettings  # noqa: E402


def generate(stores: int, months: int, end_month: pd.Timestamp, seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.date_range(end=end_month, periods=months, freq="MS")
    month_of_year = index.month.to_numpy()
    t = np.arange(months)
    frames = []
    for store in range(1, stores + 1):
        level = rng.lognormal(mean=11, sigma=0.6)
        trend = rng.normal(0.003, 0.006)
        amplitude = rng.uniform(0.05, 0.35)
        season = amplitude * np.cos(2 * np.pi * (month_of_year - 12) / 12)
        noise = rng.normal(0, rng.uniform(0.02, 0.10), months)
        sales = level * (1 + trend * t) * (1 + season) * (1 + noise)
        if store % 50 == 0:  # refurbishment: a few closed months
            sales[rng.integers(0, months, 2)] = 0.0
        frames.append(pd.DataFrame({"store_id": store, "sale_date": index.date, "sales": sales.round(2)}))
    return pd.concat(frames, ignore_index=True)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def prophet_itself(y: np.ndarray, months: pd.DatetimeIndex, horizon: int, settings: fp.ProphetSettings) -> np.ndarray:
    """What the job ran before: Prophet's own fit and predict, configured as the job does."""
    from prophet import Prophet

    model = Prophet(growth="linear", yearly_seasonality=settings.yearly_order, weekly_seasonality=False,
                    daily_seasonality=False, seasonality_mode=settings.seasonality_mode,
                    n_changepoints=min(settings.n_changepoints, len(y) - 2),
                    changepoint_prior_scale=settings.changepoint_prior_scale, uncertainty_samples=0)
    model.fit(pd.DataFrame({"ds": months, "y": y}), algorithm=settings.algorithm, seed=fp.STAN_SEED)
    future = pd.DataFrame({"ds": pd.date_range(months[-1] + pd.offsets.MonthBegin(1), periods=horizon, freq="MS")})
    try:
        return model.predict(future)["yhat"].to_numpy()
    finally:
        fp._remove_stan_files(model.stan_backend)


def reference(data: pd.DataFrame, stores: int, horizon: int, origins: int) -> None:
    """Per-fit cost of the three ways to fit Prophet on the same backtest cuts, interleaved
    store by store so that all three see the same machine load."""
    fp.quiet_prophet_logs()
    settings = fp.ProphetSettings()
    totals = {"Prophet fit+predict": [0.0, 0.0, 0], "fast path, cold": [0.0, 0.0, 0],
              "fast path, warm (job)": [0.0, 0.0, 0]}
    for _, store in list(data.groupby("store_id"))[:stores]:
        y = store["sales"].to_numpy(dtype=float)
        months = pd.DatetimeIndex(pd.to_datetime(store["sale_date"]))
        cuts = [len(y) - horizon - i for i in reversed(range(origins))] + [len(y)]
        warm: dict = {}
        for name in totals:
            for cut in cuts:
                wall, cpu = time.perf_counter(), _cpu_seconds()
                if name.startswith("Prophet"):
                    prophet_itself(y[:cut], months[:cut], horizon, settings)
                else:
                    fp.prophet_forecast(y[:cut], months[:cut], horizon, settings, warm if "warm" in name else None)
                totals[name][0] += time.perf_counter() - wall
                totals[name][1] += _cpu_seconds() - cpu
                totals[name][2] += 1
    print(f"reference in the driver process, {stores} stores x {len(cuts)} cuts, one core:")
    for name, (wall, cpu, fits) in totals.items():
        print(f"  {name:<24}{1000 * wall / fits:8.1f} ms/fit wall{1000 * cpu / fits:8.1f} ms/fit cpu"
              f"   -> {fits / wall:6.1f} fits/s/core wall, {fits / cpu:6.1f} cpu")


def _rate(cores: int, fits: float, seconds: float) -> str:
    # CPU time is counted in 10 ms ticks: below ~1 s in total the rate means nothing.
    return f"{cores * fits / seconds:.1f}" if seconds >= 1.0 else ">1000"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--months", type=int, default=48)
    parser.add_argument("--horizon", type=int, default=3)
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--reference", type=int, default=10,
                        help="stores for the in-process Prophet reference (0: skip)")
    args = parser.parse_args()

    from jobs.core.spark import get_spark

    os.environ.setdefault("OSTAP_SPARK_LOG_LEVEL", "ERROR")
    # Python workers are reused across tasks (Spark's default, stated here because the per-worker
    # Prophet/Stan set-up would otherwise be paid per task).
    spark = get_spark("ostap-bench-forecast", master=args.master,
                      conf={"spark.ui.enabled": "false", "spark.python.worker.reuse": "true"})
    cores = spark.sparkContext.defaultParallelism
    ds = dt.date(2024, 6, 15)
    data = generate(args.stores, args.months, pd.Timestamp("2024-05-01"))
    sales = spark.createDataFrame(data, schema="store_id int, sale_date date, sales double")
    settings = ForecastSettings(horizon=args.horizon, origins=args.origins)
    if args.reference:
        reference(data, args.reference, args.horizon, args.origins)

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    run = fit_stores(spark, sales, ds, settings, ambition=1.0)
    fit_seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]

    timings = (run.result.where("kind = 'timing'").groupBy("model")
               .agg({"fits": "sum", "fit_seconds": "sum", "cpu_seconds": "sum"}).toPandas()
               .set_index("model").sort_index())
    print(f"{args.stores} stores x {args.months} months, horizon {args.horizon}, {args.origins} origins, "
          f"master {args.master} ({cores} cores); load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"fit stage (all models + backtest, Spark applyInPandas): {fit_seconds:.1f} s wall, "
          f"{args.stores / fit_seconds:.1f} stores/s")
    print(f"{'model':<9}{'fits':>7}{'wall s/fit':>12}{'cpu s/fit':>11}{'fits/s (wall)':>15}{'fits/s (cpu)':>14}")
    for model, row in timings.iterrows():
        fits, wall, cpu = row["sum(fits)"], row["sum(fit_seconds)"], row["sum(cpu_seconds)"]
        print(f"{model:<9}{int(fits):>7}{wall / fits:>12.4f}{cpu / fits:>11.4f}"
              f"{_rate(cores, fits, wall):>15}{_rate(cores, fits, cpu):>14}")
    print("(fits/s = fits per second on all cores: cores / seconds per fit; 'cpu' leaves out time lost to "
          "other processes on the machine)")
    if "prophet" in timings.index:
        row = timings.loc["prophet"]
        per_store = row["sum(fits)"] / max(args.stores, 1)
        print(f"prophet store fits/s ({per_store:.0f} Prophet fits per store incl. backtest): "
              f"wall {cores * row['sum(fits)'] / row['sum(fit_seconds)'] / per_store:.1f}, "
              f"cpu {cores * row['sum(fits)'] / row['sum(cpu_seconds)'] / per_store:.1f}; "
              f"whole stores (all models + backtest) through Spark: {args.stores / fit_seconds:.1f}/s")
    summary = run.summary.set_index("model")
    for model in ("lin3", "chosen", *[m for m in settings.models if m != "lin3"]):
        if model not in summary.index:
            continue
        row = summary.loc[model]
        print(f"backtest {model:<8} WAPE {100 * row['wape']:.2f}%  MAPE {100 * row['mape']:.2f}%  "
              f"({int(row['stores'])} stores)")
    chosen = (run.result.where("kind = 'backtest' AND chosen").groupBy("model").count().toPandas()
              .set_index("model")["count"].sort_index())
    print("chosen models: " + ", ".join(f"{m} {n}" for m, n in chosen.items()))
    run.result.unpersist()
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
