"""A synthetic leasing market with a hidden preference model (tests and the benchmark), and the
oracle scorer that ranks by that preference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

BUSINESS_TYPES = ("retail", "cafe", "office", "warehouse", "beauty", "pharmacy")
PREMISE_TYPES = ("street_retail", "mall", "office", "warehouse")
# Hidden affinity of a business type for a premise type (rows: BUSINESS_TYPES).
_AFFINITY = np.array([
    [1.0, 0.9, 0.0, 0.1],
    [1.0, 0.6, 0.0, 0.0],
    [0.1, 0.2, 1.0, 0.0],
    [0.0, 0.0, 0.1, 1.0],
    [0.8, 0.8, 0.3, 0.0],
    [1.0, 0.7, 0.0, 0.0],
])
_TYPICAL_AREA = np.array([90, 110, 150, 600, 60, 70], dtype=float)  # m2 per business type
_PREMISE_AREA = np.array([90, 130, 160, 700], dtype=float)  # median m2 per premise type
DISTRICTS = {"podil": "right", "pechersk": "right", "shevchenko": "right", "holosiiv": "right",
             "obolon": "right", "darnytsia": "left", "dniprovskyi": "left", "desnianskyi": "left"}
_RATE = {"podil": 28.0, "pechersk": 35.0, "shevchenko": 30.0, "holosiiv": 20.0, "obolon": 18.0,
         "darnytsia": 15.0, "dniprovskyi": 16.0, "desnianskyi": 12.0}  # monthly rent per m2


def oracle_scorer(market: dict) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """f(tenant ids, premise ids) -> the synthetic market's hidden utility (rows are id - 1): the
    ranking a perfect model of the tenants' tastes would give (it does not know which premises
    managers showed, so it is a reference for the evaluation rather than a ceiling). In
    slices of 128 tenants, since the utility gathers a (tenants x premises x 3) style array."""
    hidden_utility = market["hidden_utility"]

    def scores(user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        out = np.empty((len(user_ids), len(item_ids)), dtype=np.float32)
        for start in range(0, len(user_ids), 128):
            rows = np.asarray(user_ids[start:start + 128]) - 1
            out[start:start + 128] = hidden_utility(rows, np.tile(np.asarray(item_ids) - 1, (len(rows), 1)))
        return out

    return scores


def synthetic_market(n_tenants: int = 300, n_premises: int = 150, start="2026-01-01", days: int = 120,
                     seed: int = 0, picks_per_tenant: int = 10, max_candidates: int = 400,
                     temperature: float = 0.3) -> dict:
    """Frames in the ods schemas (tenants, premises, managers, deals, proposals, page_views).

    Hidden preference: utility(t, p) = 3 * affinity(business type, premise type)
      + 0.8 * [p in t's districts] + 0.6 * quality(p) + 0.5 * <taste(t), style(p)>
      - 10 * relative overshoot of the budget - 8 * relative miss of the area range.
    Each tenant picks premises by Gumbel-top-n over the utility of up to `max_candidates`
    random premises (Gumbel noise scaled by `temperature`); every pick is a page view, 60% also a proposal (rejected below the
    tenant's median utility, else viewed), and the tenant's best pick ends in a deal with
    probability 0.5 (70% signed, 20% open, 10% lost). A premise is signed once: later
    signatures become lost. Signed premises are no longer vacant.
    A fifth of tenants arrive in the last quarter of the period (mostly cold at the split).
    """
    rng = np.random.default_rng(seed)
    start_ts = pd.Timestamp(start)
    district_names = np.array(list(DISTRICTS))
    banks = np.array([DISTRICTS[d] for d in district_names])
    rates = np.array([_RATE[d] for d in district_names])

    p_district = rng.integers(0, len(district_names), n_premises)
    p_type = rng.choice(len(PREMISE_TYPES), n_premises, p=[0.4, 0.2, 0.25, 0.15])
    p_area = np.round(_PREMISE_AREA[p_type] * rng.lognormal(0, 0.45, n_premises), 1)
    p_price = np.round(p_area * rates[p_district] * rng.lognormal(0, 0.15, n_premises), 0)
    p_quality = rng.normal(0, 1, n_premises)
    p_style = rng.normal(0, 1, (n_premises, 3))
    p_floor = np.where(p_type == 2, rng.integers(1, 12, n_premises), rng.integers(1, 3, n_premises))

    t_bt = rng.integers(0, len(BUSINESS_TYPES), n_tenants)
    t_bt2 = np.where(rng.random(n_tenants) < 0.3, rng.integers(0, len(BUSINESS_TYPES), n_tenants), -1)
    t_bank = rng.choice(["left", "right"], n_tenants, p=[0.35, 0.65])
    t_districts = np.zeros((n_tenants, len(district_names)), dtype=bool)
    n_districts = rng.integers(1, 4, n_tenants)
    for t in range(n_tenants):
        pool = np.flatnonzero(banks == t_bank[t])
        t_districts[t, rng.choice(pool, min(n_districts[t], len(pool)), replace=False)] = True
    t_any_bank = rng.random(n_tenants) < 0.3
    scale_idx = rng.integers(0, 3, n_tenants)
    scale_factor = np.array([0.6, 1.0, 1.8])[scale_idx]
    mid_area = _TYPICAL_AREA[t_bt] * scale_factor * rng.lognormal(0, 0.2, n_tenants)
    area_min, area_max = np.round(mid_area * 0.6, 0), np.round(mid_area * 1.6, 0)
    mean_rate = (t_districts * rates).sum(axis=1) / t_districts.sum(axis=1)
    budget = np.round(mid_area * mean_rate * rng.uniform(0.9, 1.6, n_tenants), -1)
    taste = rng.normal(0, 1, (n_tenants, 3))
    t_manager = rng.integers(1, 13, n_tenants)
    late = rng.random(n_tenants) < 0.2
    t_created = np.where(late, rng.uniform(0.75, 0.9, n_tenants), rng.uniform(0, 0.2, n_tenants)) * days

    def hidden_utility(ts_: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Utility of premise rows cand[r, :] for tenant row ts_[r] (rows are id - 1)."""
        aff = np.take_along_axis(_AFFINITY[t_bt[ts_]], p_type[cand], axis=1)
        second = np.where(t_bt2[ts_] >= 0, t_bt2[ts_], t_bt[ts_])
        aff = np.maximum(aff, np.take_along_axis(_AFFINITY[second], p_type[cand], axis=1))
        in_district = np.take_along_axis(t_districts[ts_], p_district[cand], axis=1)
        over_budget = np.maximum(0, p_price[cand] / budget[ts_, None] - 1)
        area = p_area[cand]
        area_miss = np.maximum(0, area_min[ts_, None] / area - 1) + np.maximum(0, area / area_max[ts_, None] - 1)
        return (3 * aff + 0.8 * in_district + 0.6 * p_quality[cand]
                + 0.5 * np.einsum("tc,tkc->tk", taste[ts_], p_style[cand])
                - 10 * over_budget - 8 * area_miss)

    n_cand = min(n_premises, max_candidates)
    n_picks = min(picks_per_tenant, n_cand)
    pick_t, pick_p, pick_u, pick_rank = [], [], [], []
    block = 2000
    for s0 in range(0, n_tenants, block):
        ts_ = np.arange(s0, min(n_tenants, s0 + block))
        if n_cand == n_premises:
            cand = np.tile(np.arange(n_premises), (len(ts_), 1))
        else:
            cand = rng.integers(0, n_premises, (len(ts_), n_cand))
        utility = hidden_utility(ts_, cand)
        keys = utility / temperature + rng.gumbel(size=utility.shape)
        top = np.argsort(-keys, axis=1)[:, :n_picks]
        chosen = np.take_along_axis(cand, top, axis=1)
        chosen_u = np.take_along_axis(utility, top, axis=1)
        for row, t in enumerate(ts_):
            _, first = np.unique(chosen[row], return_index=True)  # random candidates may repeat
            first = np.sort(first)
            pick_t.append(np.full(len(first), t))
            pick_p.append(chosen[row, first])
            pick_u.append(chosen_u[row, first])
            pick_rank.append(np.arange(len(first)))
    pick_t, pick_p = np.concatenate(pick_t), np.concatenate(pick_p)
    pick_u, pick_rank = np.concatenate(pick_u), np.concatenate(pick_rank)
    life = days - t_created[pick_t]
    at = start_ts + pd.to_timedelta(t_created[pick_t] + rng.uniform(0, 1, len(pick_t)) * life * 0.95, unit="D")
    at = at.floor("s")
    median_u = pd.Series(pick_u).groupby(pick_t).transform("median").to_numpy()

    page_views = pd.DataFrame({
        "view_id": np.arange(1, len(pick_t) + 1, dtype=np.int64), "client_id": pick_t + 1,
        "premise_id": pick_p + 1, "viewed_at": at, "session_id": [f"s{i}" for i in range(len(pick_t))],
        "duration_s": rng.integers(5, 600, len(pick_t)).astype(np.int32)})
    proposed = rng.random(len(pick_t)) < 0.6
    best = (pick_u == pd.Series(pick_u).groupby(pick_t).transform("max").to_numpy())
    dealt = proposed & best & (rng.random(len(pick_t)) < 0.5)
    outcome = np.where(dealt, "deal", np.where(pick_u < median_u, "rejected", "viewed"))
    later = at + pd.to_timedelta(rng.uniform(0.5, 3, len(pick_t)), unit="D")
    later = later.floor("s")
    proposals = pd.DataFrame({
        "proposal_id": np.arange(1, proposed.sum() + 1, dtype=np.int64), "client_id": pick_t[proposed] + 1,
        "premise_id": pick_p[proposed] + 1, "manager_id": t_manager[pick_t[proposed]].astype(np.int32),
        "proposed_at": later[proposed], "outcome": outcome[proposed]})
    deal_at = (later[dealt] + pd.to_timedelta(rng.uniform(1, 5, dealt.sum()), unit="D")).floor("s")
    status = rng.choice(["signed", "open", "lost"], dealt.sum(), p=[0.7, 0.2, 0.1])
    deals = pd.DataFrame({
        "deal_id": np.arange(1, dealt.sum() + 1, dtype=np.int64), "client_id": pick_t[dealt] + 1,
        "premise_id": pick_p[dealt] + 1, "manager_id": t_manager[pick_t[dealt]].astype(np.int32),
        "created_at": deal_at, "status": status, "signed_at": deal_at + pd.Timedelta(days=2),
        "monthly_rent": p_price[pick_p[dealt]]})
    deals = deals.sort_values("signed_at", ignore_index=True)
    signed = deals["status"] == "signed"
    repeat = signed & deals["premise_id"].where(signed).duplicated()
    deals.loc[repeat, "status"] = "lost"
    deals.loc[deals["status"] != "signed", "signed_at"] = pd.NaT
    leased = set(deals.loc[deals["status"] == "signed", "premise_id"])
    vacant = ~np.isin(np.arange(1, n_premises + 1), list(leased))

    premises = pd.DataFrame({
        "premise_id": np.arange(1, n_premises + 1, dtype=np.int64), "area": p_area, "price": p_price,
        "district": district_names[p_district], "river_bank": banks[p_district], "vacant": vacant,
        "floor": p_floor.astype(np.int32), "premise_type": np.array(PREMISE_TYPES)[p_type]})
    tenants = pd.DataFrame({
        "client_id": np.arange(1, n_tenants + 1, dtype=np.int64),
        "tenant_name": [f"tenant {i + 1}" for i in range(n_tenants)],
        "business_types": ["|".join(BUSINESS_TYPES[b] for b in ((a,) if c < 0 or c == a else (a, c)))
                           for a, c in zip(t_bt, t_bt2, strict=True)],
        "districts": ["|".join(district_names[row]) for row in t_districts],
        "river_bank": np.where(t_any_bank, "any", t_bank),
        "scale": np.array(["small", "medium", "large"])[scale_idx],
        "area_min": area_min, "area_max": area_max, "budget": budget,
        "manager_id": t_manager.astype(np.int32),
        "created_at": (start_ts + pd.to_timedelta(t_created, unit="D")).floor("s")})
    managers = pd.DataFrame({
        "manager_id": np.arange(1, 13, dtype=np.int32), "manager_name": [f"manager {i}" for i in range(1, 13)],
        "hired_date": [start_ts.date()] * 12, "fired": np.arange(1, 13) > 9})
    return {"tenants": tenants, "premises": premises, "managers": managers, "deals": deals,
            "proposals": proposals, "page_views": page_views, "hidden_utility": hidden_utility}
