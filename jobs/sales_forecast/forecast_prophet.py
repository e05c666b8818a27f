"""Prophet for one store's monthly series: its options, and its fit and forecast through
Prophet's own compiled Stan model without Prophet's pandas set-up (`prophet_forecast`).

Pure numpy/pandas around Prophet's backend; `forecast_models.predict_all` calls it per fit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

STAN_SEED = 20240601


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
