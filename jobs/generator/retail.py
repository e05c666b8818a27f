"""Retail sources: stores and their daily sales (the forecasting domain).

Daily sales of a store = level (by format) x trend (yearly growth per store) x yearly
seasonality x holidays (December peak before New Year, New Year dip, 8 March, a late-November
sale) x weekly pattern (Friday/Saturday high, Sunday low) x ramp-up after opening x noise;
a few closed days (0 sales). About 85% of the stores have more than 48 months of history
before the start; the rest opened 6-18 months before it. Sales of day D land on D+1 at
03:00-05:00; recent days are corrected (updates), and a few rows are deleted and re-inserted.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jobs.generator.cdc import DAY_US, HOUR_US, TICK_US, Entity, Lifecycle, Window, codes_decoder
from jobs.generator.credit import REGIONS

FORMATS = ["hypermarket", "supermarket", "express"]
FORMAT_LEVEL = np.array([40_000.0, 15_000.0, 5_000.0])
FORMAT_TICKET = np.array([35.0, 20.0, 8.0])
NAME_SUFFIXES = ["", " Mall", " Plaza", " Centre", " Station"]
HISTORY_DAYS = 1520  # a bit more than 49 months of daily sales before the start
WEEKLY = np.array([0.92, 0.93, 0.95, 0.98, 1.12, 1.20, 0.90])  # Monday..Sunday


def _tweak_store(cols, rng):
    cols["store_format"] = ((cols["store_format"] + rng.integers(1, len(FORMATS), cols["store_format"].size))
                            % len(FORMATS)).astype(cols["store_format"].dtype)


def _tweak_sales(cols, rng):
    cols["sales"] = np.round(cols["sales"] + rng.integers(1, 50, cols["sales"].size) * 1.0, 2)


def decode_store_names(codes: np.ndarray) -> pa.Array:
    return pa.array([f"Store {c // 10:03d}{NAME_SUFFIXES[c % 10]}" for c in codes.tolist()], type=pa.string())


def seasonal_factor(days: np.ndarray) -> np.ndarray:
    """Yearly seasonality and holidays for dates given as days since the epoch."""
    dates = days.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]")
    doy = (dates - years).astype(np.int64)  # 0 = 1 January
    month_day = dates - dates.astype("datetime64[M]")
    month = (dates.astype("datetime64[M]").astype(np.int64) % 12) + 1
    mday = month_day.astype(np.int64) + 1
    factor = 1.0 + 0.07 * np.sin(2 * np.pi * (doy - 80) / 365.25) - 0.05 * np.cos(4 * np.pi * doy / 365.25)
    factor *= 1.0 + 0.45 * np.exp(-0.5 * ((doy - 356) / 6.0) ** 2)  # the December peak
    factor *= np.where((month == 1) & (mday == 1), 0.35, 1.0)
    factor *= np.where((month == 1) & (mday == 2), 0.6, 1.0)
    factor *= np.where((month == 1) & (mday >= 3) & (mday <= 8), 0.85, 1.0)
    factor *= np.where((month == 3) & (mday >= 6) & (mday <= 8), 1.3, 1.0)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    factor *= np.where((month == 11) & (mday >= 23) & (mday <= 29) & (weekday == 4), 1.5, 1.0)
    return factor


def generate(window: Window, sizes: dict, rng: np.random.Generator) -> list[Entity]:
    first, last = window.first_day, window.last_day
    n_stores = sizes["stores"]
    n_late = max(1, round(0.15 * n_stores))
    opened = first - rng.integers(5 * 365, 12 * 365, n_stores)
    late = rng.choice(n_stores, n_late, replace=False)
    opened[late] = first - rng.integers(180, 550, n_late)
    store_format = rng.choice(3, n_stores, p=[0.2, 0.5, 0.3]).astype(np.int8)
    store_ids = np.arange(1, n_stores + 1, dtype=np.int32)
    stores = Entity("stores", {
        "store_id": store_ids,
        "store_name": store_ids.astype(np.int64) * 10 + rng.integers(0, len(NAME_SUFFIXES), n_stores),
        "region": rng.integers(0, len(REGIONS), n_stores).astype(np.int16),
        "store_format": store_format,
        "opened_date": opened.astype(np.int32),
    }, _tweak_store, rng, {"store_name": decode_store_names, "region": codes_decoder(REGIONS),
                           "store_format": codes_decoder(FORMATS)})
    store_born = opened * DAY_US + 9 * HOUR_US

    # ---- the sales grid: every (store, date) from opening (or the history start) to last-1
    dates = np.arange(first - HISTORY_DAYS, last, dtype=np.int64)
    grid_store = np.repeat(np.arange(n_stores), dates.size)
    grid_date = np.tile(dates, n_stores)
    open_rows = grid_date >= opened[grid_store]
    grid_store, grid_date = grid_store[open_rows], grid_date[open_rows]
    n = grid_date.size
    level = FORMAT_LEVEL[store_format] * np.exp(rng.normal(0, 0.3, n_stores))
    growth = rng.normal(0.04, 0.05, n_stores)
    years = (grid_date - first) / 365.25
    age = grid_date - opened[grid_store]
    expected = (level[grid_store] * np.exp(growth[grid_store] * years) * seasonal_factor(grid_date)
                * WEEKLY[(grid_date + 3) % 7] * (1 - 0.5 * np.exp(-age / 60.0)))
    sales = expected * np.exp(rng.normal(0, 0.08, n))
    closed = rng.random(n) < 0.002
    new_year = ((grid_date.astype("datetime64[D]") - grid_date.astype("datetime64[D]").astype("datetime64[Y]"))
                .astype(np.int64) == 0)
    closed |= new_year & (rng.random(n) < 0.2)
    sales = np.where(closed, 0.0, np.round(sales, 2))
    ticket = FORMAT_TICKET[store_format][grid_store] * np.exp(rng.normal(0, 0.05, n))
    receipts = np.round(sales / ticket).astype(np.int32)
    sales_entity = Entity("sales", {
        "store_id": store_ids[grid_store],
        "sale_date": grid_date.astype(np.int32),
        "sales": sales,
        "receipts": receipts,
    }, _tweak_sales, rng)
    # Sales of day D land on D+1 between 03:00 and 05:00.
    sales_born = (grid_date + 1) * DAY_US + 3 * HOUR_US + rng.integers(0, 2 * HOUR_US // TICK_US, n) * TICK_US

    def correct_sales(idx):
        factor = rng.uniform(0.9, 1.1, idx.size)
        sales_entity.state["sales"][idx] = np.round(sales_entity.state["sales"][idx] * factor, 2)
        sales_entity.state["receipts"][idx] = np.round(sales_entity.state["receipts"][idx] * factor).astype(np.int32)

    def rename_stores(idx):
        stores.state["store_name"][idx] = (stores.state["store_name"][idx] // 10 * 10
                                           + rng.integers(0, len(NAME_SUFFIXES), idx.size))

    store_life = Lifecycle(stores, store_born)
    sales_life = Lifecycle(sales_entity, sales_born)
    store_life.initial_load(window, rng)
    sales_life.initial_load(window, rng)
    for d in window.day_range():
        store_life.day(d, rng, update_rate=0.003, delete_rate=0.0, reinsert_rate=0.0, update=rename_stores)
        not_recent = (grid_date < d - 8) | (grid_date > d - 2)  # only the last week gets corrected
        sales_life.day(d, rng, update_rate=0.02, delete_rate=0.002, reinsert_rate=0.5,
                       update=correct_sales, busy=not_recent & sales_life.alive)
    return [stores, sales_entity]
