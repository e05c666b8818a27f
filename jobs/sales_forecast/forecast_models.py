"""Monthly sales models, rolling-origin backtest and champion choice for one store.

Pure pandas/numpy (plus Prophet): no Spark here, so every piece is testable on its own.
`jobs.sales_forecast.forecast` runs `fit_store_frame` once per store inside `groupBy('store_id').applyInPandas`.

Models (name: months of history it needs):
  lin3      3   the analysts' baseline: least-squares line through the last three months
  naive     1   last month repeated (the last resort when nothing else fits)
  snaive   12   same month one year before
  ets      24   damped-trend additive Holt-Winters, smoothing weights chosen on a grid
  prophet  25   Prophet, linear trend + yearly seasonality (MAP fit, no sampling), fitted
                through Prophet's own Stan model without its pandas set-up (forecast_prophet.py)
  ensemble 25   mean of prophet and snaive (combining a smooth model with a seasonal
                naive one is a well-known cheap win on retail series)

Backtest: for origin i = 0 .. origins-1 each model is refitted on the history without its
last `horizon + i` months and forecasts the next `horizon` months, so every origin is scored
on exactly `horizon` actual months and the latest origin ends at the last history month.
A model that lacks history at an origin skips that origin; `origins` counts the ones it ran.
Fits run from the shortest history to the full one, and with `warm_start` each Prophet fit
starts its optimiser from the previous one's parameters (fewer L-BFGS iterations, same model).

Champion: among the models that fitted the full history and ran on as many origins as the
best-covered model, the lowest backtest WAPE (ties: MODEL_ORDER). Without any backtest
evidence (short history, all-zero store) the champion is the analysts' lin3, else naive.

Which stores are forecast (`store_status`; jobs/sales_forecast/README.md): a store's history
starts at its first month with sales, without that month when it opened after the 1st (partial);
a store without sales in the last `closed_after` months is closed and one without a full month of
sales has no history (neither gets forecast rows); one with fewer than `min_history` full months
gets the baseline only (lin3, or naive below 3 months). Every store gets a kind='store' row.

Forecasts are floored at zero (returns can make a month negative; a plan cannot be).
Intervals (80%) come from each model's own backtest errors per horizon step (RMSE), which
is cheap and honest for every model alike; Prophet's sampling is therefore switched off.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from jobs.sales_forecast.forecast_prophet import ProphetSettings, prophet_forecast

MODEL_ORDER = ("lin3", "snaive", "naive", "ets", "prophet", "ensemble")
MIN_MONTHS = {"lin3": 3, "naive": 1, "snaive": 12, "ets": 24, "prophet": 25, "ensemble": 25}
ENSEMBLE_PARTS = ("prophet", "snaive")
Z80 = 1.2815515655446004  # two-sided 80% normal interval

STATUSES = ("forecast", "short_history", "closed", "no_history")

# Internal result of one store: its status row, forecast rows and backtest rows in one frame
# (kind tells them apart), plus the sums the driver needs for overall errors and fit timings.
RESULT_SCHEMA = (
    "kind string, store_id int, model string, month date, yhat double, yhat_lower double, "
    "yhat_upper double, chosen boolean, origins int, mape double, wape double, abs_error double, "
    "abs_actual double, ape_sum double, ape_count int, fits int, fit_seconds double, cpu_seconds double, "
    "history_months int, note string, status string, first_month date, last_sales_month date"
)
RESULT_COLUMNS = [part.strip().split(" ")[0] for part in RESULT_SCHEMA.split(",")]


@dataclass(frozen=True)
class ForecastSettings:
    horizon: int = 3
    origins: int = 6
    models: tuple[str, ...] = MODEL_ORDER
    prophet: ProphetSettings = field(default_factory=ProphetSettings)
    closed_after: int = 1  # whole months without sales before the forecast month that mark a store closed
    min_history: int = 6  # full months below which a store gets the baseline only


# ---------------------------------------------------------------- models

def lin3(y: np.ndarray, horizon: int) -> np.ndarray:
    """Least-squares line through the last three months (x = 0, 1, 2), extrapolated to x = 3..."""
    last = np.asarray(y[-3:], dtype=float)
    slope = (last[2] - last[0]) / 2.0
    x = np.arange(3, 3 + horizon, dtype=float)
    return last.mean() + slope * (x - 1.0)


def naive(y: np.ndarray, horizon: int) -> np.ndarray:
    return np.full(horizon, float(y[-1]))


def snaive(y: np.ndarray, horizon: int) -> np.ndarray:
    """Value of the same calendar month in the last year of history (repeated for h > 12)."""
    last_year = np.asarray(y[-12:], dtype=float)
    return last_year[np.arange(horizon) % 12]


# Damped-trend additive Holt-Winters (ETS(A,Ad,A)); statsmodels is not a dependency, and on a
# few dozen months a grid over the smoothing weights fits as well as a numerical optimiser.
ETS_PERIOD = 12
ETS_GRID = np.array(np.meshgrid([0.05, 0.2, 0.4, 0.6, 0.8],  # alpha: level
                                [0.01, 0.05, 0.15, 0.3],  # beta: trend
                                [0.01, 0.1, 0.25, 0.5],  # gamma: season
                                [0.8, 0.9, 0.98],  # phi: trend damping
                                indexing="ij")).reshape(4, -1)


def holt_winters(y: np.ndarray, horizon: int, alpha, beta, gamma, phi,
                 period: int = ETS_PERIOD) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts (one row per parameter set) and the sum of squared one-step errors of
    additive Holt-Winters with a damped trend (Hyndman & Athanasopoulos, section 8.3):

        level   l_t = alpha (y_t - s_{t-m}) + (1 - alpha)(l_{t-1} + phi b_{t-1})
        trend   b_t = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}
        season  s_t = gamma (y_t - l_{t-1} - phi b_{t-1}) + (1 - gamma) s_{t-m}
        yhat_{t+h}  = l_t + (phi + ... + phi^h) b_t + s_{t+h-m}

    The state at the end of the first season comes from the first two: b = difference of the
    two seasons' means / m, l = first season's mean moved to its last month, s = the first
    season's values less that line. The recursion then runs from month m on.
    Parameters may be scalars or arrays of one shape (every combination at once)."""
    y = np.asarray(y, dtype=float)
    m = period
    alpha, beta, gamma, phi = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float))
                                                    for v in (alpha, beta, gamma, phi)))
    first, second = y[:m].mean(), y[m:2 * m].mean()
    slope = (second - first) / m
    centre = (m - 1) / 2
    level = np.full(alpha.shape, first + slope * centre)
    trend = np.full(alpha.shape, slope)
    season = [np.full(alpha.shape, y[j] - (first + slope * (j - centre))) for j in range(m)]
    sse = np.zeros(alpha.shape)
    for t in range(m, len(y)):
        s_old = season[t % m]
        predicted = level + phi * trend
        sse += (y[t] - predicted - s_old) ** 2
        new_level = alpha * (y[t] - s_old) + (1 - alpha) * predicted
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        season[t % m] = gamma * (y[t] - predicted) + (1 - gamma) * s_old
        level = new_level
    n = len(y)
    damped = np.cumsum(phi[..., None] ** np.arange(1, horizon + 1), axis=-1)
    seasonal = np.stack([season[(n + h) % m] for h in range(horizon)], axis=-1)
    return level[..., None] + damped * trend[..., None] + seasonal, sse


def ets(y: np.ndarray, horizon: int) -> np.ndarray:
    """Damped-trend additive Holt-Winters with the weights of least one-step squared error on
    ETS_GRID (ties: the first in the grid, so the fit is deterministic)."""
    forecasts, sse = holt_winters(y, horizon, *ETS_GRID)
    return forecasts[int(np.argmin(sse))]


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (Stan runs in a child process)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def predict_all(y: np.ndarray, months: pd.DatetimeIndex, horizon: int, settings: ForecastSettings,
                timings: dict[str, list[tuple[float, float]]] | None = None,
                warm: dict | None = None) -> dict[str, np.ndarray]:
    """Forecasts of every configured model that has enough history; a model that raises is
    left out (the caller reports it), never the whole store. `warm` carries Prophet's last
    parameters from one call to the next (see ProphetSettings.warm_start)."""
    out: dict[str, np.ndarray] = {}
    n = len(y)
    simple = {"lin3": lin3, "naive": naive, "snaive": snaive, "ets": ets}
    wanted = set(settings.models)
    if "ensemble" in wanted:
        wanted.update(ENSEMBLE_PARTS)
    for name in ("lin3", "naive", "snaive", "ets", "prophet"):
        if name not in wanted or n < MIN_MONTHS[name]:
            continue
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        try:
            if name == "prophet":
                out[name] = prophet_forecast(y, months, horizon, settings.prophet, warm)
            else:
                out[name] = simple[name](y, horizon)
        except Exception:  # noqa: BLE001 - one failed fit must not sink the store
            logging.getLogger(__name__).warning("%s failed on %d months", name, n, exc_info=True)
        if timings is not None:
            timings.setdefault(name, []).append((time.perf_counter() - started, _cpu_seconds() - cpu_started))
    if "ensemble" in settings.models and all(p in out for p in ENSEMBLE_PARTS):
        out["ensemble"] = np.mean([out[p] for p in ENSEMBLE_PARTS], axis=0)
    # Monthly sales below zero are not a plan anyone can use: every forecast is floored at zero
    # (in the backtest too, so the errors measure what gets published).
    return {name: np.maximum(out[name], 0.0) for name in settings.models if name in out}


# ---------------------------------------------------------------- metrics

def wape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Sum of absolute errors over sum of absolute actuals (NaN when the actuals are all zero)."""
    denom = float(np.abs(actual).sum())
    return float(np.abs(np.asarray(actual) - predicted).sum()) / denom if denom > 0 else float("nan")


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error over the months with non-zero actuals (NaN if none)."""
    actual = np.asarray(actual, dtype=float)
    mask = actual != 0
    if not mask.any():
        return float("nan")
    return float(np.mean(np.abs(actual[mask] - np.asarray(predicted)[mask]) / np.abs(actual[mask])))


# ---------------------------------------------------------------- one store

@dataclass
class StoreResult:
    forecasts: pd.DataFrame  # model, month, yhat, yhat_lower, yhat_upper, chosen
    backtest: pd.DataFrame  # model, origins, mape, wape, chosen, abs_error, abs_actual, ape_sum, ape_count
    chosen: str | None
    notes: list[str]
    timings: dict[str, list[tuple[float, float]]]  # model -> (wall, cpu) seconds per fit


def monthly_history(months: pd.Series, sales: pd.Series, target_month: pd.Timestamp,
                    first_sale: pd.Series | None = None) -> pd.Series:
    """Sales per calendar month from the store's opening month to the month before target_month;
    months without any sales row count as zero. The opening month is the first with sales (rows of
    zeros before it are not history); it is left out when `first_sale` (each month's first day with
    sales) shows it began after the 1st, as a partial month would drag every model down."""
    frame = pd.DataFrame({"month": pd.to_datetime(months).to_numpy(), "sales": sales.astype(float).to_numpy()})
    frame = frame[frame["month"] < target_month]
    per_month = frame.groupby("month")["sales"].sum()
    start = opening_month(per_month)
    if start is not None and first_sale is not None:
        if _partial(first_sale[(pd.to_datetime(months) == start).to_numpy()]):
            start += pd.offsets.MonthBegin(1)
    if start is None or start >= target_month:
        return pd.Series(dtype=float)
    index = pd.date_range(start, target_month - pd.offsets.MonthBegin(1), freq="MS")
    return per_month.reindex(index, fill_value=0.0).astype(float)


def opening_month(per_month: pd.Series) -> pd.Timestamp | None:
    sold = per_month[per_month > 0]
    return None if sold.empty else pd.Timestamp(sold.index.min())


def _partial(first_sale: pd.Series) -> bool:
    day = pd.to_datetime(first_sale).min()
    return bool(pd.notna(day) and day.day > 1)


def forecast_store(history: pd.Series, settings: ForecastSettings) -> StoreResult:
    """All models, their backtest and the champion for one store's monthly history."""
    y = history.to_numpy(dtype=float)
    months = pd.DatetimeIndex(history.index)
    n, horizon = len(y), settings.horizon
    timings: dict[str, list[tuple[float, float]]] = {}
    notes: list[str] = []

    # Rolling-origin backtest: errors[model] = list of (origin, actual, predicted) per origin.
    # Origins run oldest first so that each Prophet fit can start from the previous one.
    errors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m: [] for m in settings.models}
    warm = {} if settings.prophet.warm_start else None
    cuts = [n - horizon - i for i in range(settings.origins) if n - horizon - i >= 1]
    for cut in reversed(cuts):
        predicted = predict_all(y[:cut], months[:cut], horizon, settings, timings, warm)
        actual = y[cut:cut + horizon]
        for name, values in predicted.items():
            errors[name].append((actual, values))

    final = predict_all(y, months, horizon, settings, timings, warm)
    future = pd.date_range(months[-1] + pd.offsets.MonthBegin(1), periods=horizon, freq="MS")

    rows = []
    for name in settings.models:
        pairs = errors[name]
        if pairs:
            actual = np.concatenate([a for a, _ in pairs])
            predicted = np.concatenate([p for _, p in pairs])
            abs_err = np.abs(actual - predicted)
            nonzero = actual != 0
            rows.append(dict(model=name, origins=len(pairs), mape=mape(actual, predicted),
                             wape=wape(actual, predicted), abs_error=float(abs_err.sum()),
                             abs_actual=float(np.abs(actual).sum()),
                             ape_sum=float((abs_err[nonzero] / np.abs(actual[nonzero])).sum()),
                             ape_count=int(nonzero.sum())))
        else:
            rows.append(dict(model=name, origins=0, mape=np.nan, wape=np.nan, abs_error=0.0,
                             abs_actual=0.0, ape_sum=0.0, ape_count=0))
        if name not in final:
            need = MIN_MONTHS[name]
            notes.append(f"{name}: not fitted ({n} months of history, needs {need})" if n < need
                         else f"{name}: fit failed")
    backtest = pd.DataFrame(rows)

    chosen = choose(backtest, set(final))
    if notes and chosen is not None:
        notes.append(f"chosen among the rest: {chosen}")
    backtest["chosen"] = backtest["model"] == chosen

    forecast_rows = []
    for name, values in final.items():
        sigma = step_sigma(errors[name], y, horizon)
        for step, month in enumerate(future):
            forecast_rows.append(dict(model=name, month=month.date(), yhat=float(values[step]),
                                      yhat_lower=float(max(values[step] - Z80 * sigma[step], 0.0)),
                                      yhat_upper=float(values[step] + Z80 * sigma[step]),
                                      chosen=name == chosen))
    forecasts = pd.DataFrame(forecast_rows, columns=["model", "month", "yhat", "yhat_lower", "yhat_upper",
                                                     "chosen"])
    return StoreResult(forecasts, backtest, chosen, notes, timings)


def choose(backtest: pd.DataFrame, fitted: set[str]) -> str | None:
    """Lowest WAPE among fitted models with full backtest coverage; see the module docstring."""
    candidates = backtest[backtest["model"].isin(fitted)]
    if candidates.empty:
        return None
    full = candidates[(candidates["origins"] == candidates["origins"].max()) & candidates["wape"].notna()]
    if not full.empty and full["origins"].iloc[0] > 0:
        rank = full.assign(order=full["model"].map(MODEL_ORDER.index)).sort_values(["wape", "order"])
        return str(rank["model"].iloc[0])
    for name in ("lin3", "naive"):
        if name in fitted:
            return name
    return sorted(fitted, key=MODEL_ORDER.index)[0]


def step_sigma(pairs: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray, horizon: int) -> np.ndarray:
    """Error scale per horizon step: backtest RMSE when at least two origins ran, else the
    random-walk scale of the history (std of month-on-month changes x sqrt(step))."""
    if len(pairs) >= 2:
        residuals = np.array([a - p for a, p in pairs])
        return np.sqrt(np.mean(residuals ** 2, axis=0))
    changes = np.diff(y)
    scale = float(np.std(changes)) if len(changes) >= 2 else 0.0
    return scale * np.sqrt(np.arange(1, horizon + 1))


# ---------------------------------------------------------------- the applyInPandas function

@dataclass
class StoreStatus:
    status: str  # one of STATUSES
    history: pd.Series  # the first full month to the month before ds (what the models see)
    last_sales_month: pd.Timestamp | None
    notes: list[str]
    baseline: str | None = None  # the only model of a short_history store


def store_status(pdf: pd.DataFrame, target_month: pd.Timestamp, settings: ForecastSettings) -> StoreStatus:
    """What becomes of one store (its monthly rows: month, sales, optionally first_sale), and why."""
    first_sale = pdf["first_sale"] if "first_sale" in pdf.columns else None
    history = monthly_history(pdf["month"], pdf["sales"], target_month, first_sale)
    months = pd.to_datetime(pdf["month"])
    before = pdf[(months < target_month).to_numpy()]
    per_month = before.groupby(pd.to_datetime(before["month"]))["sales"].sum()
    sold = per_month[per_month > 0]
    label = f"{target_month:%Y-%m}"
    if sold.empty:
        return StoreStatus("no_history", history, None, [f"no sales before {label}"])
    last = pd.Timestamp(sold.index.max())
    idle = (target_month.year - last.year) * 12 + target_month.month - last.month - 1
    if idle >= settings.closed_after:
        return StoreStatus("closed", history, last, [f"no sales in the {idle} month{'s' if idle > 1 else ''} "
                                                     f"before {label} (last sales in {last:%Y-%m})"])
    opened = opening_month(per_month)
    notes = []
    if history.empty or history.index[0] > opened:  # only a partial opening month moves the start
        day = pd.to_datetime(first_sale[(months == opened).to_numpy()]).min().date()
        if history.empty:
            return StoreStatus("no_history", history, last,
                               [f"opened on {day}: no full month of sales before {label}"])
        notes.append(f"opening month {opened:%Y-%m} left out (first sale on {day})")
    if len(history) < settings.min_history:
        baseline = "lin3" if len(history) >= MIN_MONTHS["lin3"] else "naive"
        notes.append(f"{len(history)} full month{'s' if len(history) > 1 else ''} of history "
                     f"(fewer than {settings.min_history}): the baseline {baseline} only")
        return StoreStatus("short_history", history, last, notes, baseline)
    return StoreStatus("forecast", history, last, notes)


def fit_store_frame(pdf: pd.DataFrame, target_month: pd.Timestamp, settings: ForecastSettings) -> pd.DataFrame:
    """One store's monthly rows (store_id, month, sales[, first_sale]) in, RESULT_SCHEMA rows out."""
    store_id = int(pdf["store_id"].iloc[0])
    state = store_status(pdf, target_month, settings)
    history = state.history
    store_row = dict(kind="store", store_id=store_id, status=state.status, history_months=len(history),
                     first_month=history.index[0].date() if len(history) else None,
                     last_sales_month=state.last_sales_month.date() if state.last_sales_month else None)
    if state.status in ("closed", "no_history"):
        return _typed(pd.DataFrame([dict(store_row, note="; ".join(state.notes))]).reindex(columns=RESULT_COLUMNS))
    if state.baseline:
        settings = replace(settings, models=(state.baseline,))
    result = forecast_store(history, settings)
    store_row.update(model=result.chosen, note="; ".join(state.notes + result.notes) or None)
    note = "; ".join(result.notes) or None
    fc = result.forecasts.assign(kind="forecast", store_id=store_id, history_months=len(history), note=note)
    bt = result.backtest.assign(kind="backtest", store_id=store_id, history_months=len(history), note=note)
    timing_rows = [dict(kind="timing", store_id=store_id, model=name, fits=len(seconds),
                        fit_seconds=float(sum(w for w, _ in seconds)), cpu_seconds=float(sum(c for _, c in seconds)),
                        history_months=len(history))
                   for name, seconds in sorted(result.timings.items())]
    out = pd.concat([pd.DataFrame([store_row]), fc, bt, pd.DataFrame(timing_rows)], ignore_index=True)
    return _typed(out.reindex(columns=RESULT_COLUMNS))


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    for col in ("origins", "ape_count", "fits", "history_months", "store_id"):
        out[col] = out[col].astype("Int32")
    out["chosen"] = out["chosen"].astype("boolean")
    # A column that is all NaN is float to pandas, which Arrow will not turn into dates or strings.
    for col in ("model", "month", "note", "status", "first_month", "last_sales_month"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out
