"""Leasing sources: premises, tenants, managers, deals, proposals, page_views.

The hidden preference model (what a recommender should recover; never written to the data):

    utility(t, p) = 1.2 * <u_t, v_p>                  latent taste, u, v ~ N(0, k^-1/2 I), k = 4
                  + AFFINITY[business types of t, premise_type of p]   best over t's types
                  + 1.5 * [district of p in t's districts]
                  + 0.5 * [river_bank of t is 'any' or equals p's bank]
                  + 0.4 * quality_p                     premise popularity, N(0, 1)
                  - 3 * max(0, log(area_min / area), log(area / area_max))
                  - 4 * max(0, log(price / budget))

(AFFINITY is the table below: e.g. logistics likes warehouses, cafes like cafes.) Tenants
browse the site in sessions of 1-6 page views, picking the best premises out of 40 random
candidates (85% of them on the market) by utility + Gumbel noise; duration_s grows with
utility. Managers propose premises using only what they see (district, bank, type, area,
price, popularity, plus their own noise) -- the naive behaviour; the tenant's reaction
comes from the full utility: viewed with probability sigmoid(U - 0.5), then a deal with
probability sigmoid(1.2 U - 3.5). High-utility page views also lead to deals. A tenant signs
inside the stated criteria: a deal needs area within [area_min, area_max] and price within the
budget, each with CRITERIA_SLACK (5%) of slack, except for a documented STRETCH_SHARE (10%) of the
would-be deals outside them that go ahead anyway (the tenant stretched); so about 2-4% of deals
lie outside the criteria beyond the slack, and later CRM edits (budget changes, repricing) move
a few more. A deal is signed
(70%) unless the premise was already taken by an earlier signed deal, then it is lost;
signing marks the premise not vacant. Random updates end leases (vacant again) and change
prices; some listings are removed and re-listed (delete, re-insert).

Managers: about 15% fired before the start and one fired during the window; half of the
tenants of fired managers have been reassigned, the rest still point at the fired manager.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.generator.cdc import (
    DAY_US,
    HOUR_US,
    I64_NULL,
    OP_I,
    OP_U,
    TICK_US,
    Entity,
    Lifecycle,
    Window,
    codes_decoder,
    daytime_us,
    poisson,
)
from jobs.generator.credit import LAST_NAMES, decode_names

DISTRICTS = ["Old Town", "Harbour", "Market", "University", "Cathedral",
             "Riverside", "Industrial", "Green Hills", "New Town", "Airport"]
DISTRICT_BANK = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])  # 0 left, 1 right
DISTRICT_PRESTIGE = np.array([1.6, 1.2, 1.1, 1.0, 1.4, 1.1, 0.7, 0.9, 0.9, 0.8])
BANKS = ["left", "right", "any"]
PREMISE_TYPES = ["retail", "office", "warehouse", "cafe", "showroom"]
TYPE_AREA = np.array([100.0, 150.0, 800.0, 90.0, 300.0])   # typical m2
TYPE_RATE = np.array([25.0, 20.0, 8.0, 30.0, 22.0])        # monthly rent per m2
BUSINESS_TYPES = ["grocery", "cafe", "pharmacy", "clothing", "electronics", "beauty", "office",
                  "logistics", "fitness", "furniture"]
SCALES = ["small", "medium", "large"]
SCALE_AREA = np.array([50.0, 150.0, 600.0])
TENANT_SUFFIXES = ["LLC", "Trading", "Group", "& Co", "Retail", "Holding"]
DEAL_STATUSES = ["open", "signed", "lost"]
OUTCOMES = ["shown", "viewed", "rejected", "deal"]
LATENT_DIM = 4
CANDIDATES = 40
# Real agencies sign inside the tenant's stated area range and budget (a little slack allowed);
# a deal outside them happens for only a small share of the would-be deals (the tenant stretched).
CRITERIA_SLACK = 0.05
STRETCH_SHARE = 0.10
HISTORY_DAYS = 365

# Hidden affinity of a business type (rows) for a premise type (columns); -0.8 where not listed.
AFFINITY = np.full((len(BUSINESS_TYPES), len(PREMISE_TYPES)), -0.8)
for _b, _likes in {
    "grocery": {"retail": 1.0, "cafe": 0.3, "showroom": 0.2},
    "cafe": {"cafe": 1.2, "retail": 0.5},
    "pharmacy": {"retail": 1.0},
    "clothing": {"retail": 0.9, "showroom": 0.6},
    "electronics": {"retail": 0.7, "showroom": 0.9},
    "beauty": {"retail": 0.8, "office": 0.3, "cafe": 0.2},
    "office": {"office": 1.2},
    "logistics": {"warehouse": 1.3},
    "fitness": {"showroom": 0.6, "warehouse": 0.4, "office": 0.3},
    "furniture": {"showroom": 1.1, "warehouse": 0.6},
}.items():
    for _p, _value in _likes.items():
        AFFINITY[BUSINESS_TYPES.index(_b), PREMISE_TYPES.index(_p)] = _value
# Best affinity over every set of business types (a bit mask over BUSINESS_TYPES).
AFFINITY_BY_MASK = np.full((1 << len(BUSINESS_TYPES), len(PREMISE_TYPES)), -0.8)
for _mask in range(1, 1 << len(BUSINESS_TYPES)):
    _rows = [b for b in range(len(BUSINESS_TYPES)) if _mask >> b & 1]
    AFFINITY_BY_MASK[_mask] = AFFINITY[_rows].max(axis=0)


def _mask_decoder(names: list[str]):
    table = pa.array(["|".join(n for b, n in enumerate(names) if m >> b & 1) for m in range(1 << len(names))])

    def decode(masks: np.ndarray) -> pa.Array:
        return table.take(pa.array(masks.astype(np.int32)))

    return decode


def decode_tenant_names(codes: np.ndarray) -> pa.Array:
    last = pa.array(LAST_NAMES).take(pa.array(codes // 10))
    suffix = pa.array(TENANT_SUFFIXES).take(pa.array(codes % 10))
    return pc.binary_join_element_wise(last, suffix, " ")


def decode_sessions(codes: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise("S", pa.array(codes, type=pa.int64()).cast(pa.string()), "")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _tweak_price(cols, rng):
    cols["price"] = np.round(cols["price"] + 100.0 * rng.integers(1, 10, cols["price"].size), 2)


def _tweak_budget(cols, rng):
    cols["budget"] = np.round(cols["budget"] + 1000.0 * rng.integers(1, 10, cols["budget"].size), 2)


def _tweak_manager(cols, rng):
    cols["manager_name"] = (cols["manager_name"] // 1000 * 1000
                            + (cols["manager_name"] % 1000 + rng.integers(1, len(LAST_NAMES), cols["manager_name"].size))
                            % len(LAST_NAMES))


def _tweak_rent(cols, rng):
    cols["monthly_rent"] = np.round(cols["monthly_rent"] + 100.0 * rng.integers(1, 10, cols["monthly_rent"].size), 2)


def _tweak_proposal(cols, rng):
    cols["proposed_at"] = cols["proposed_at"] + rng.integers(1, 60, cols["proposed_at"].size) * 1_000_000


def _tweak_duration(cols, rng):
    cols["duration_s"] = (cols["duration_s"] + rng.integers(1, 30, cols["duration_s"].size)).astype(np.int32)


class Market:
    """Hidden attributes of tenants and premises and the utility of a (tenant, premise) pair."""

    def __init__(self, rng, n_tenants, n_premises):
        sigma = LATENT_DIM ** -0.25
        self.u = rng.normal(0, sigma, (n_tenants, LATENT_DIM))
        self.v = rng.normal(0, sigma, (n_premises, LATENT_DIM))
        self.quality = rng.normal(0, 1, n_premises)

    def fit(self, tenants: dict, premises: dict, t, p):
        """The part of the utility anyone can see in the data (what managers go by)."""
        if "log_area" not in premises:  # logs once per entity, not once per (tenant, premise) pair
            premises["log_area"], premises["log_price"] = np.log(premises["area"]), np.log(premises["price"])
            for column in ("area_min", "area_max", "budget"):
                tenants[f"log_{column}"] = np.log(tenants[column])
        log_area = premises["log_area"][p]
        area_misfit = np.maximum(0, np.maximum(tenants["log_area_min"][t] - log_area,
                                               log_area - tenants["log_area_max"][t]))
        price_over = np.maximum(0, premises["log_price"][p] - tenants["log_budget"][t])
        district_ok = (tenants["districts"][t] >> premises["district"][p]) & 1
        bank = tenants["river_bank"][t]
        bank_ok = (bank == 2) | (bank == premises["river_bank"][p])
        return (AFFINITY_BY_MASK[tenants["business_types"][t], premises["premise_type"][p]]
                + 1.5 * district_ok + 0.5 * bank_ok - 3 * area_misfit - 4 * price_over)

    @staticmethod
    def within_criteria(tenants: dict, premises: dict, t, p, slack: float = CRITERIA_SLACK):
        """Whether premise p meets tenant t's stated area range and budget, with relative slack."""
        area, price = premises["area"][p], premises["price"][p]
        return ((area >= tenants["area_min"][t] * (1 - slack)) & (area <= tenants["area_max"][t] * (1 + slack))
                & (price <= tenants["budget"][t] * (1 + slack)))

    def utility(self, tenants: dict, premises: dict, t, p):
        latent = np.einsum("...k,...k->...", self.u[t], self.v[p])
        return 1.2 * latent + self.fit(tenants, premises, t, p) + 0.4 * self.quality[p]


def _candidates(rng, n_rows, n_premises, on_market, premise_born_us, at_us):
    pool = np.flatnonzero(on_market)
    cand = np.where(rng.random((n_rows, CANDIDATES)) < 0.85,
                    pool[rng.integers(0, pool.size, (n_rows, CANDIDATES))],
                    rng.integers(0, n_premises, (n_rows, CANDIDATES)))
    listed = premise_born_us[cand] < at_us[:, None]
    return cand, listed


def _event_times(rng, window, born_us, n, weights):
    """n events of tenants drawn by weight, at business-hour times after the tenant was created."""
    start = (window.first_day - HISTORY_DAYS) * DAY_US
    end = (window.last_day + 1) * DAY_US
    tenant = rng.choice(born_us.size, size=n, p=weights / weights.sum())
    lo = np.maximum(born_us[tenant] // DAY_US + 1, start // DAY_US)
    day = lo + (rng.random(n) * (end // DAY_US - lo)).astype(np.int64)
    at = day * DAY_US + daytime_us(rng, n)
    order = np.argsort(at, kind="stable")
    return tenant[order], at[order]


def generate(window: Window, sizes: dict, rng: np.random.Generator, hidden: dict | None = None) -> list[Entity]:
    """The leasing entities; `hidden`, when given, receives the hidden preference model (the
    Market, and the tenants' and premises' attributes as created: what `Market.utility` reads),
    for a simulation that lets the generated tenants react to what they are shown."""
    first = window.first_day
    span_days = HISTORY_DAYS + window.days
    # ---- managers ---------------------------------------------------------------------
    n_managers = sizes["managers"]
    manager_born = np.sort(window.start_us - rng.integers(30, 6 * 365, n_managers) * DAY_US
                           + daytime_us(rng, n_managers))
    if window.days >= 3:  # one new hire during the window
        manager_born[-1] = (first + rng.integers(1, window.days)) * DAY_US + daytime_us(rng, 1)[0]
    fired = rng.random(n_managers) < 0.15
    fired[-1] = False
    managers = Entity("managers", {
        "manager_id": np.arange(1, n_managers + 1, dtype=np.int32),
        "manager_name": rng.integers(0, 20, n_managers) * 1000 + rng.integers(0, len(LAST_NAMES), n_managers),
        "hired_date": (manager_born // DAY_US).astype(np.int32),
        "fired": fired.copy(),
    }, _tweak_manager, rng, {"manager_name": decode_names})
    active = np.flatnonzero(~fired[:-1]) if n_managers > 1 else np.arange(n_managers)

    # ---- premises ---------------------------------------------------------------------
    n_initial = sizes["premises"]
    n_new = sum(poisson(rng, n_initial * 0.002) for _ in window.day_range())
    premise_born = np.sort(np.concatenate([
        window.start_us - rng.integers(1, 3 * 365, n_initial) * DAY_US + daytime_us(rng, n_initial),
        (first + rng.integers(0, window.days, n_new)) * DAY_US + daytime_us(rng, n_new)]))
    n_premises = premise_born.size
    district = rng.integers(0, len(DISTRICTS), n_premises)
    type_weights = np.tile([0.35, 0.25, 0.12, 0.13, 0.15], (len(DISTRICTS), 1))
    type_weights[[6, 9]] = [0.15, 0.15, 0.5, 0.05, 0.15]  # industrial districts: warehouses
    type_weights[[0, 4]] = [0.4, 0.3, 0.0, 0.2, 0.1]      # old centre: no warehouses
    cumulative = np.cumsum(type_weights, axis=1)[district]
    premise_type = (rng.random(n_premises)[:, None] > cumulative).sum(axis=1).clip(0, len(PREMISE_TYPES) - 1)
    market = Market(rng, sizes["tenants"] * 2, n_premises)
    area = np.round(TYPE_AREA[premise_type] * np.exp(rng.normal(0, 0.5, n_premises)), 1).clip(12, None)
    price = np.round(area * TYPE_RATE[premise_type] * DISTRICT_PRESTIGE[district]
                     * np.exp(rng.normal(0, 0.15, n_premises) + 0.1 * market.quality), -2).clip(100, None)
    floor = np.where(premise_type == 1, rng.integers(1, 16, n_premises),
                     np.where(rng.random(n_premises) < 0.08, -1, rng.integers(0, 2, n_premises)))
    on_market = rng.random(n_premises) < 0.55
    premises_state = {
        "premise_id": 300_001 + np.arange(n_premises, dtype=np.int64),
        "area": area,
        "price": price,
        "district": district.astype(np.int16),
        "river_bank": DISTRICT_BANK[district].astype(np.int16),
        "vacant": on_market.copy(),
        "floor": floor.astype(np.int32),
        "premise_type": premise_type.astype(np.int16),
    }

    # ---- tenants ----------------------------------------------------------------------
    n_initial = sizes["tenants"]
    n_new = sum(poisson(rng, n_initial * 0.003) for _ in window.day_range())
    tenant_born = np.sort(np.concatenate([
        window.start_us - rng.integers(1, 3 * 365, n_initial) * DAY_US + daytime_us(rng, n_initial),
        (first + rng.integers(0, window.days, n_new)) * DAY_US + daytime_us(rng, n_new)]))
    n_tenants = tenant_born.size
    if n_tenants > market.u.shape[0]:
        market.u = np.concatenate([market.u, rng.normal(0, LATENT_DIM ** -0.25, (n_tenants, LATENT_DIM))])
    primary = rng.integers(0, len(BUSINESS_TYPES), n_tenants)
    business = (1 << primary) | np.where(rng.random(n_tenants) < 0.5, 1 << rng.integers(0, 10, n_tenants), 0) \
        | np.where(rng.random(n_tenants) < 0.2, 1 << rng.integers(0, 10, n_tenants), 0)
    home = rng.integers(0, len(DISTRICTS), n_tenants)
    districts = 1 << home
    for _ in range(3):
        same_bank = DISTRICT_BANK[home] * 5 + rng.integers(0, 5, n_tenants)
        other = np.where(rng.random(n_tenants) < 0.7, same_bank, rng.integers(0, 10, n_tenants))
        districts |= np.where(rng.random(n_tenants) < 0.45, 1 << other, 0)
    left = (districts & 0b11111) > 0
    right = (districts >> 5) > 0
    bank = np.where(left & right, 2, np.where(left, 0, 1))
    bank = np.where(rng.random(n_tenants) < 0.2, 2, bank)
    scale = rng.choice(3, n_tenants, p=[0.5, 0.35, 0.15])
    big_business = (primary == BUSINESS_TYPES.index("logistics")) | (primary == BUSINESS_TYPES.index("furniture"))
    scale = np.where(big_business & (scale == 0), 1, scale)
    centre = SCALE_AREA[scale] * np.exp(rng.normal(0, 0.35, n_tenants))
    best_type = AFFINITY_BY_MASK[business].argmax(axis=1)
    budget = np.round(centre * 1.2 * TYPE_RATE[best_type] * rng.uniform(0.8, 1.5, n_tenants), -3).clip(1000, None)
    staff = np.arange(n_managers - 1 if window.days >= 3 and n_managers > 1 else n_managers)
    manager_of = rng.choice(staff, n_tenants)
    orphaned = fired[manager_of] & (rng.random(n_tenants) < 0.5)
    manager_of[orphaned] = rng.choice(active, orphaned.sum())
    tenants_state = {
        "client_id": 2_000_001 + np.arange(n_tenants, dtype=np.int64),
        "tenant_name": rng.integers(0, len(LAST_NAMES), n_tenants) * 10 + rng.integers(0, len(TENANT_SUFFIXES), n_tenants),
        "business_types": business.astype(np.int32),
        "districts": districts.astype(np.int32),
        "river_bank": bank.astype(np.int16),
        "scale": scale.astype(np.int16),
        "area_min": np.round(centre * 0.7, -1).clip(10, None),
        "area_max": np.round(centre * 1.5, -1).clip(20, None),
        "budget": budget,
        "manager_id": (manager_of + 1).astype(np.int32),
        "created_at": tenant_born,
    }
    # The hidden model reads the attributes as created (later edits are the CRM's noise).
    tenants_hidden = {c: v.copy() for c, v in tenants_state.items()}
    premises_hidden = {c: v.copy() for c, v in premises_state.items()}

    def utility(t, p):
        return market.utility(tenants_hidden, premises_hidden, t, p)

    activity = np.exp(rng.normal(0, 1.0, n_tenants))

    # ---- page views: sessions of 1-6 views ----------------------------------------------
    n_sessions = max(1, int(sizes["views_per_year"] / 3.0 * span_days / 365))
    s_tenant, s_at = _event_times(rng, window, tenant_born, n_sessions, activity)
    s_views = np.minimum(1 + rng.poisson(2.0, n_sessions), 6)
    view_t, view_p, view_at, view_session, view_u = [], [], [], [], []
    session_codes = 10_000_000 + rng.permutation(n_sessions * 5)[:n_sessions].astype(np.int64)
    for lo in range(0, n_sessions, 50_000):
        sl = slice(lo, min(lo + 50_000, n_sessions))
        t, at = s_tenant[sl], s_at[sl]
        cand, listed = _candidates(rng, t.size, n_premises, on_market, premise_born, at)
        u_all = utility(t[:, None], cand)
        score = np.where(listed, u_all + rng.gumbel(0, 1, cand.shape), -np.inf)
        top = np.argsort(-score, axis=1, kind="stable")[:, :6]
        rank = np.arange(6)[None, :]
        chosen = (rank < s_views[sl][:, None]) & np.isfinite(np.take_along_axis(score, top, 1))
        rows, cols = np.nonzero(chosen)
        view_t.append(t[rows])
        view_p.append(cand[rows, top[rows, cols]])
        gaps = rng.integers(20, 300, (t.size, 6)).cumsum(axis=1) * 1_000_000
        view_at.append(at[rows] + gaps[rows, cols])
        view_session.append(session_codes[sl][rows])
        view_u.append(u_all[rows, top[rows, cols]])
    view_t, view_p = np.concatenate(view_t), np.concatenate(view_p)
    view_at, view_session, view_u = np.concatenate(view_at), np.concatenate(view_session), np.concatenate(view_u)
    order = np.argsort(view_at, kind="stable")
    view_t, view_p, view_at, view_session, view_u = (a[order] for a in (view_t, view_p, view_at, view_session, view_u))
    n_views = view_at.size
    duration = np.exp(3.0 + 0.4 * view_u + rng.normal(0, 0.5, n_views)).round().clip(3, 3600)
    page_views = Entity("page_views", {
        "view_id": 70_000_001 + np.arange(n_views, dtype=np.int64),
        "client_id": tenants_state["client_id"][view_t],
        "premise_id": premises_state["premise_id"][view_p],
        "viewed_at": view_at,
        "session_id": view_session,
        "duration_s": duration.astype(np.int32),
    }, _tweak_duration, rng, {"session_id": decode_sessions})

    # ---- proposals: managers pick by what they see; tenants react by the hidden utility ---
    n_prop = max(1, int(sizes["proposals_per_year"] * span_days / 365))
    p_tenant, p_at = _event_times(rng, window, tenant_born, n_prop, np.sqrt(activity))
    cand, listed = _candidates(rng, n_prop, n_premises, on_market, premise_born, p_at)
    seen = market.fit(tenants_hidden, premises_hidden, p_tenant[:, None], cand) + 0.4 * market.quality[cand]
    pick = np.argmax(np.where(listed, seen + rng.gumbel(0, 1.5, cand.shape), -np.inf), axis=1)
    p_premise = cand[np.arange(n_prop), pick]
    p_utility = utility(p_tenant, p_premise)
    viewed = rng.random(n_prop) < _sigmoid(p_utility - 0.5)
    dealt = viewed & (rng.random(n_prop) < _sigmoid(1.2 * p_utility - 3.5))
    dealt &= (Market.within_criteria(tenants_hidden, premises_hidden, p_tenant, p_premise)
              | (rng.random(n_prop) < STRETCH_SHARE))
    coin = rng.random(n_prop) < 0.5
    outcome = np.where(dealt, 3, np.where(viewed, np.where(coin, 1, 2), np.where(coin, 0, 2)))
    resolved_us = p_at + rng.integers(1, 8, n_prop) * DAY_US + rng.integers(0, HOUR_US // TICK_US, n_prop) * TICK_US
    proposals = Entity("proposals", {
        "proposal_id": 40_000_001 + np.arange(n_prop, dtype=np.int64),
        "client_id": tenants_state["client_id"][p_tenant],
        "premise_id": premises_state["premise_id"][p_premise],
        "manager_id": tenants_state["manager_id"][p_tenant],
        "proposed_at": p_at,
        "outcome": np.where(resolved_us < window.start_us, outcome, 0).astype(np.int8),
    }, _tweak_proposal, rng, {"outcome": codes_decoder(OUTCOMES)})

    # ---- deals: from proposals that ended in a deal and from keen page views -------------
    keen = rng.random(n_views) < _sigmoid(1.2 * view_u - 7.5)
    keen &= (Market.within_criteria(tenants_hidden, premises_hidden, view_t, view_p)
             | (rng.random(n_views) < STRETCH_SHARE))
    from_views = np.flatnonzero(keen)
    from_props = np.flatnonzero(dealt)
    d_tenant = np.concatenate([p_tenant[from_props], view_t[from_views]])
    d_premise = np.concatenate([p_premise[from_props], view_p[from_views]])
    d_created = np.concatenate([resolved_us[from_props], view_at[from_views]
                                + rng.integers(1, 4, from_views.size) * DAY_US])
    order = np.lexsort((d_created, d_premise))  # by premise, then time: the first signed deal wins
    d_tenant, d_premise, d_created = d_tenant[order], d_premise[order], d_created[order]
    n_deals = d_created.size
    # The first deal per premise that wants to sign gets it; every later one is lost.
    wants = rng.random(n_deals) < 0.7
    group_start = np.r_[True, d_premise[1:] != d_premise[:-1]][:n_deals]
    group = np.cumsum(group_start) - 1
    wanted = np.cumsum(wants)
    wanted_before_group = (wanted - wants)[np.flatnonzero(group_start)][group]
    signed = wants & (wanted - wanted_before_group == 1)
    d_resolved = d_created + np.where(signed, rng.integers(2, 21, n_deals), rng.integers(3, 31, n_deals)) * DAY_US
    status_final = np.where(signed, 1, 2).astype(np.int8)
    order = np.argsort(d_created, kind="stable")
    d_tenant, d_premise, d_created, d_resolved, status_final = (
        a[order] for a in (d_tenant, d_premise, d_created, d_resolved, status_final))
    done = d_resolved < window.start_us
    rent = np.round(premises_state["price"][d_premise] * rng.uniform(0.9, 1.0, n_deals), -2)
    deals = Entity("deals", {
        "deal_id": 80_000_001 + np.arange(n_deals, dtype=np.int64),
        "client_id": tenants_state["client_id"][d_tenant],
        "premise_id": premises_state["premise_id"][d_premise],
        "manager_id": tenants_state["manager_id"][d_tenant],
        "created_at": d_created,
        "status": np.where(done, status_final, 0).astype(np.int8),
        "signed_at": np.where(done & (status_final == 1), d_resolved, I64_NULL),
        "monthly_rent": rent,
    }, _tweak_rent, rng, {"status": codes_decoder(DEAL_STATUSES)})
    # Premises leased in the last 8 months before the start are not vacant at the initial load
    # (older leases of the demo history have ended).
    recent_lease = done & (status_final == 1) & (d_resolved >= window.start_us - 240 * DAY_US)
    premises_state["vacant"][d_premise[recent_lease]] = False
    premises = Entity("premises", premises_state, _tweak_price, rng,
                      {"district": codes_decoder(DISTRICTS), "river_bank": codes_decoder(BANKS[:2]),
                       "premise_type": codes_decoder(PREMISE_TYPES)})
    tenants = Entity("tenants", tenants_state, _tweak_budget, rng,
                     {"tenant_name": decode_tenant_names, "business_types": _mask_decoder(BUSINESS_TYPES),
                      "districts": _mask_decoder(DISTRICTS), "river_bank": codes_decoder(BANKS),
                      "scale": codes_decoder(SCALES)})

    def update_premises(idx):
        vacant = premises.state["vacant"][idx]
        freed = idx[~vacant & (rng.random(idx.size) < 0.5)]
        premises.state["vacant"][freed] = True  # a lease ended
        repriced = np.setdiff1d(idx, freed)
        premises.state["price"][repriced] = np.round(premises.state["price"][repriced]
                                                     * rng.uniform(0.9, 1.06, repriced.size), -2)

    def update_tenants(idx):
        kind = rng.random(idx.size)
        rebudget = idx[kind < 0.5]
        tenants.state["budget"][rebudget] = np.round(tenants.state["budget"][rebudget]
                                                     * rng.uniform(0.9, 1.25, rebudget.size), -3)
        widen = idx[(kind >= 0.5) & (kind < 0.8)]
        tenants.state["area_max"][widen] = np.round(tenants.state["area_max"][widen] * 1.2, -1)
        more = idx[kind >= 0.8]
        tenants.state["districts"][more] |= 1 << rng.integers(0, len(DISTRICTS), more.size)

    # ---- the replica ----------------------------------------------------------------------
    manager_life = Lifecycle(managers, manager_born)
    premise_life = Lifecycle(premises, premise_born)
    tenant_life = Lifecycle(tenants, tenant_born)
    for life in (manager_life, premise_life, tenant_life):
        life.initial_load(window, rng)
    for entity, at in ((page_views, view_at), (proposals, p_at), (deals, d_created)):
        initial = np.flatnonzero(at < window.start_us)
        entity.emit(initial, window.initial_load_times(rng, initial.size), OP_I)
    fire_day = first + int(rng.integers(0, window.days)) if window.days >= 2 else None
    view_day, prop_day, deal_day = view_at // DAY_US, p_at // DAY_US, d_created // DAY_US
    resolved_day, deal_resolved_day = resolved_us // DAY_US, d_resolved // DAY_US
    for d in window.day_range():
        manager_life.day(d, rng, 0.0, 0.0, 0.0, None)
        busy_tenants = np.zeros(n_tenants, dtype=bool)
        if d == fire_day and active.size > 1:
            victim = int(rng.choice(active))
            managers.state["fired"][victim] = True
            at = d * DAY_US + 10 * HOUR_US
            managers.emit([victim], at, OP_U)
            theirs = np.flatnonzero((tenants.state["manager_id"] == victim + 1) & tenant_life.alive
                                    & (tenant_life.born_day < d))
            moved = theirs[rng.random(theirs.size) < 0.5]
            others = active[active != victim]
            tenants.state["manager_id"][moved] = (rng.choice(others, moved.size) + 1).astype(np.int32)
            tenants.emit(moved, at + HOUR_US, OP_U)
            busy_tenants[theirs] = True
        tenant_life.day(d, rng, 0.003, 0.0005, 0.1, update_tenants, busy=busy_tenants)
        # Deals signed today take their premise off the market an hour later.
        signing = np.flatnonzero((deal_resolved_day == d) & (d_created < d * DAY_US) & (status_final == 1))
        signing_premises, first_of = np.unique(d_premise[signing], return_index=True)
        busy_premises = np.zeros(n_premises, dtype=bool)
        busy_premises[signing_premises] = True
        premise_life.day(d, rng, 0.004, 0.001, 0.15, update_premises, busy=busy_premises)
        live = premise_life.alive[signing_premises]
        premises.state["vacant"][signing_premises[live]] = False
        taken_at = np.minimum(d_resolved[signing][first_of][live] + HOUR_US, (d + 1) * DAY_US - TICK_US)
        premises.emit(signing_premises[live], taken_at, OP_U)
        # Activity of the day.
        new_views = np.flatnonzero(view_day == d)
        page_views.emit(new_views, view_at[new_views], OP_I)
        new_props = np.flatnonzero(prop_day == d)
        proposals.emit(new_props, p_at[new_props], OP_I)
        answered = np.flatnonzero((resolved_day == d) & (outcome != 0))
        proposals.state["outcome"][answered] = outcome[answered]
        proposals.emit(answered, resolved_us[answered], OP_U)
        new_deals = np.flatnonzero(deal_day == d)
        deals.emit(new_deals, d_created[new_deals], OP_I)
        closing = np.flatnonzero((deal_resolved_day == d) & (d_created < d * DAY_US))
        deals.state["status"][closing] = status_final[closing]
        won = closing[status_final[closing] == 1]
        deals.state["signed_at"][won] = d_resolved[won]
        deals.emit(closing, d_resolved[closing], OP_U)
    if hidden is not None:
        hidden.update(market=market, tenants=tenants_hidden, premises=premises_hidden,
                      deal_ids=int(deals.state["deal_id"].max()) if n_deals else 80_000_000)
    return [premises, tenants, managers, deals, proposals, page_views]
