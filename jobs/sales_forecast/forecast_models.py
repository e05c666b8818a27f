"""Monthly sales models, rolling-origin backtest and champion choice for one store.

Pure pandas/numpy (plus Prophet): no Spark here, so every piece is testable on its own.
`jobs.sales_forecast.forecast` runs `fit_store_frame` once per store inside `groupBy('store_id').applyInPandas`.

Models (name: months of history it needs):
  lin3      3   the analysts' baseline: least-squares line through the last three months
  naive     1   last month repeated (the last resort when nothing else fits)
  snaive   12   same month one year before
  ets      24   damped-trend additive Holt-Winters, smoothing weights chosen on a grid
  prophet  25   Prophet, linear trend + yearly seasonality (MAP fit, no sampling), fitted
                through Prophet's own Stan model without its pandas set-up (`prophet_forecast`)
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

Forecasts are floored at zero (returns can make a month negative; a plan cannot be).
Intervals (80%) come from each model's own backtest errors per horizon step (RMSE), which
is cheap and honest for every model alike; Prophet's sampling is therefore switched off.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

MODEL_ORDER = ("lin3", "snaive", "naive", "ets", "prophet", "ensemble")
MIN_MONTHS = {"lin3": 3, "naive": 1, "snaive": 12, "ets": 24, "prophet": 25, "ensemble": 25}
ENSEMBLE_PARTS = ("prophet", "snaive")
Z80 = 1.2815515655446004  # two-sided 80% normal interval
STAN_SEED = 20240601

# Internal result of one store: forecast rows and backtest rows in one frame (kind tells
# them apart), plus the sums the driver needs for overall errors and fit timings.
RESULT_SCHEMA = (
    "kind string, store_id int, model string, month date, yhat double, yhat_lower double, "
    "yhat_upper double, chosen boolean, origins int, mape double, wape double, abs_error double, "
    "abs_actual double, ape_sum double, ape_count int, fits int, fit_seconds double, cpu_seconds double, "
    "history_months int, note string"
)
RESULT_COLUMNS = [part.strip().split(" ")[0] for part in RESULT_SCHEMA.split(",")]


@dataclass(frozen=True)
class ProphetSettings:
    """Prophet options for monthly data. LBFGS rather than the Newton optimiser Prophet picks for
    series under 100 points (much faster: docs/benchmarks.md), and a few changepoints suffice for
    2-5 years of months."""

    yearly_order: int = 6  # monthly data has 12 phases a year: higher Fourier orders alias
    seasonality_mode: str = "multiplicative"
    n_changepoints: int = 8
    changepoint_prior_scale: float = 0.05
    holidays_country: str | None = None  # e.g. "US": adds the monthly count of public holidays
    algorithm: str = "LBFGS"
    warm_start: bool = True  # start each backtest refit from the previous origin's parameters


@dataclass(frozen=True)
class ForecastSettings:
    horizon: int = 3
    origins: int = 6
    models: tuple[str, ...] = MODEL_ORDER
    prophet: ProphetSettings = field(default_factory=ProphetSettings)


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


class _HandledStanError(logging.Filter):
    """Drops cmdstanpy's "Chain [1] error: code '1'" line of an L-BFGS run that stopped early:
    Prophet refits that store with Newton right away and logs a warning of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.ERROR and "error: code" in record.getMessage())


_LOGS_QUIET = False


def quiet_prophet_logs() -> None:
    """Stan's console output goes to files cmdstanpy deletes; its INFO chatter is muted here.
    cmdstanpy and Prophet set their loggers up on first use, so this runs after that."""
    global _LOGS_QUIET
    if _LOGS_QUIET:
        return
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)  # "plotly failed" at import
    import prophet  # noqa: F401
    from cmdstanpy.utils import get_logger

    stan_logger = get_logger()
    stan_logger.setLevel(logging.WARNING)
    stan_logger.addFilter(_HandledStanError())
    logging.getLogger("prophet").setLevel(logging.WARNING)
    _LOGS_QUIET = True


@lru_cache(maxsize=64)
def _holiday_counts(country: str, year: int) -> tuple[int, ...]:
    import holidays

    counts = [0] * 12
    for day in holidays.country_holidays(country, years=year):
        counts[day.month - 1] += 1
    return tuple(counts)


def holiday_counts(country: str, months: pd.DatetimeIndex) -> np.ndarray:
    return np.array([_holiday_counts(country, m.year)[m.month - 1] for m in months], dtype=float)


@lru_cache(maxsize=1)
def _stan_backend():
    """Prophet's CmdStanPy backend (its compiled prophet.stan), built once per Python worker."""
    quiet_prophet_logs()
    from prophet.models import CmdStanPyBackend

    return CmdStanPyBackend()


_EPOCH = pd.Timestamp("1970-01-01")
_YEAR_DAYS = 365.25  # Prophet's yearly period
_PRIOR_SCALE = 10.0  # Prophet's default seasonality_prior_scale and holidays_prior_scale
_CHANGEPOINT_RANGE = 0.8  # Prophet's default changepoint_range


def prophet_design(months: pd.DatetimeIndex, settings: ProphetSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prophet's regressor matrix X for `months` (yearly Fourier terms sin, cos per order, then
    the holiday count), and its s_a / s_m column indicators, computed the way Prophet does."""
    days = (pd.Series(months) - _EPOCH).dt.total_seconds() / (24 * 60 * 60)
    x_t = np.pi * 2 * days.to_numpy()
    columns = []
    for i in range(settings.yearly_order):
        c = (i + 1) / _YEAR_DAYS * x_t
        columns += [np.sin(c), np.cos(c)]
    multiplicative = settings.seasonality_mode == "multiplicative"
    s_m = [int(multiplicative)] * len(columns)
    if settings.holidays_country:
        columns.append(holiday_counts(settings.holidays_country, months))
        s_m.append(0)  # the regressor is additive
    s_m = np.array(s_m, dtype=int)
    return np.column_stack(columns), 1 - s_m, s_m


def prophet_forecast(y: np.ndarray, months: pd.DatetimeIndex, horizon: int, settings: ProphetSettings,
                     warm: dict | None = None) -> np.ndarray:
    """Prophet's fit and point forecast for a monthly series, without Prophet's pandas plumbing.

    This is `Prophet(...).fit(history).predict(future)['yhat']` for our configuration (linear
    growth, yearly Fourier seasonality, optional additive holiday-count regressor, MAP fit):
    the same scaling, changepoint grid, Fourier features, priors and initial values go to the
    same compiled Stan model through Prophet's own backend, and the forecast applies Prophet's
    trend and seasonality formulas. tests/test_forecast.py checks it against Prophet itself.
    Prophet's DataFrame set-up of history and future was most of a fit's time (docs/benchmarks.md).

    `warm`, if given, carries the parameters from the previous (shorter) fit of the same store
    to start the optimiser there (converted to this fit's scales); it is updated in place.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    all_months = months.append(pd.date_range(months[-1] + pd.offsets.MonthBegin(1), periods=horizon, freq="MS"))
    X, s_a, s_m = prophet_design(all_months, settings)
    start_ns = all_months[0].value
    t_scale = float(months[-1].value - start_ns)
    t_all = (all_months.asi8 - start_ns) / t_scale
    t, t_future = t_all[:n], t_all[n:]
    y_scale = float(np.abs(y).max()) or 1.0
    y_scaled = y / y_scale
    if settings.holidays_country:  # Prophet standardises a non-binary regressor on the history
        counts = pd.Series(X[:n, -1])
        if counts.nunique() >= 2 and set(counts.unique()) != {0, 1}:
            X[:, -1] = (X[:, -1] - float(counts.mean())) / float(counts.std())
    hist_size = int(np.floor(n * _CHANGEPOINT_RANGE))
    n_changepoints = min(settings.n_changepoints, max(n - 2, 0), hist_size - 1)
    if n_changepoints > 0:
        cp_index = np.linspace(0, hist_size - 1, n_changepoints + 1).round().astype(int)[1:]
        changepoints_t = np.sort(t[cp_index])
    else:
        changepoints_t = np.array([0.0])  # Prophet's dummy changepoint
    k0 = (y_scaled[-1] - y_scaled[0]) / (t[-1] - t[0])
    init = {"k": k0, "m": y_scaled[0] - k0 * t[0], "delta": np.zeros(len(changepoints_t)),
            "beta": np.zeros(X.shape[1]), "sigma_obs": 1.0}
    if y.min() == y.max():
        params = dict(init, sigma_obs=1e-9)  # Prophet skips Stan for a constant series
    else:
        data = {"T": n, "S": len(changepoints_t), "K": X.shape[1], "tau": settings.changepoint_prior_scale,
                "trend_indicator": 0, "y": y_scaled, "t": t, "cap": np.zeros(n), "t_change": changepoints_t,
                "s_a": s_a, "s_m": s_m, "X": pd.DataFrame(X[:n]), "sigmas": [_PRIOR_SCALE] * X.shape[1]}
        start = _warm_init(warm, init, y_scale, t_scale, s_a) if warm else init
        backend = _stan_backend()
        try:
            fitted = backend.fit(start, data, algorithm=settings.algorithm, seed=STAN_SEED)
        finally:
            _remove_stan_files(backend)
        params = {name: np.asarray(value).reshape(-1) for name, value in fitted.items()}
        if n_changepoints == 0:  # Prophet folds the dummy changepoint's delta into k
            params["k"] = params["k"] + params["delta"]
            params["delta"] = np.zeros_like(params["delta"])
    k, m = float(np.ravel(params["k"])[0]), float(np.ravel(params["m"])[0])
    delta, beta = np.ravel(params["delta"]), np.ravel(params["beta"])
    if warm is not None:
        warm.update(k=k, m=m, beta=beta, y_scale=y_scale, t_scale=t_scale)
    deltas_t = (changepoints_t[None, :] <= t_future[:, None]) * delta
    trend = ((deltas_t.sum(axis=1) + k) * t_future + (deltas_t * -changepoints_t).sum(axis=1) + m) * y_scale
    future_x = X[n:]
    multiplicative = future_x @ (beta * s_m)
    additive = future_x @ (beta * s_a) * y_scale
    return trend * (1 + multiplicative) + additive


def _warm_init(warm: dict, cold: dict, y_scale: float, t_scale: float, s_a: np.ndarray) -> dict:
    """The previous fit's trend (k, m) and seasonality (beta) in this fit's units. The
    changepoints moved with the history, so their deltas start from zero, and the noise scale
    starts at Prophet's 1.0: started at the previous optimum's small sigma_obs, Stan's L-BFGS
    line search failed on about one fit in fifteen and Prophet refitted it with Newton."""
    if len(warm["beta"]) != len(cold["beta"]):
        return cold
    to_y = warm["y_scale"] / y_scale
    beta = np.where(s_a == 1, warm["beta"] * to_y, warm["beta"])
    return {"k": warm["k"] * to_y * t_scale / warm["t_scale"], "m": warm["m"] * to_y, "delta": cold["delta"],
            "beta": beta, "sigma_obs": cold["sigma_obs"]}


def _remove_stan_files(backend) -> None:
    """cmdstanpy keeps every run's CSV and console log until the Python process exits; a Spark
    worker fits thousands of stores and may never exit cleanly, so each fit removes its own."""
    fit = getattr(backend, "stan_fit", None)
    if fit is None:
        return
    folders = {os.path.dirname(path) for path in fit.runset.csv_files}
    backend.cleanup()
    backend.stan_fit = None
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


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


def monthly_history(months: pd.Series, sales: pd.Series, target_month: pd.Timestamp) -> pd.Series:
    """Sales per calendar month from the store's first month to the month before target_month;
    months without any sales row count as zero."""
    frame = pd.DataFrame({"month": pd.to_datetime(months), "sales": sales.astype(float)})
    frame = frame[frame["month"] < target_month]
    if frame.empty:
        return pd.Series(dtype=float)
    per_month = frame.groupby("month")["sales"].sum()
    index = pd.date_range(per_month.index.min(), target_month - pd.offsets.MonthBegin(1), freq="MS")
    return per_month.reindex(index, fill_value=0.0).astype(float)


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

def fit_store_frame(pdf: pd.DataFrame, target_month: pd.Timestamp, settings: ForecastSettings) -> pd.DataFrame:
    """One store's monthly rows (store_id, month, sales) in, RESULT_SCHEMA rows out."""
    store_id = int(pdf["store_id"].iloc[0])
    history = monthly_history(pdf["month"], pdf["sales"], target_month)
    if history.empty:
        return pd.DataFrame([dict(kind="skipped", store_id=store_id, history_months=0,
                                  note="no history before the forecast month")], columns=RESULT_COLUMNS)
    result = forecast_store(history, settings)
    note = "; ".join(result.notes) or None
    fc = result.forecasts.assign(kind="forecast", store_id=store_id, history_months=len(history), note=note)
    bt = result.backtest.assign(kind="backtest", store_id=store_id, history_months=len(history), note=note)
    timing_rows = [dict(kind="timing", store_id=store_id, model=name, fits=len(seconds),
                        fit_seconds=float(sum(w for w, _ in seconds)), cpu_seconds=float(sum(c for _, c in seconds)),
                        history_months=len(history))
                   for name, seconds in sorted(result.timings.items())]
    out = pd.concat([fc, bt, pd.DataFrame(timing_rows)], ignore_index=True)
    out = out.reindex(columns=RESULT_COLUMNS)
    for col in ("origins", "ape_count", "fits", "history_months", "store_id"):
        out[col] = out[col].astype("Int32")
    out["chosen"] = out["chosen"].astype("boolean")
    return out
