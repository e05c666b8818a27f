"""Hard filters: which premises each tenant may be offered, as a boolean mask over a block of
tenants, applied BEFORE ranking (a filtered-out premise gets score -inf and is dropped), so a
premise that fails a filter can never appear in a list, however high the model scores it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobs.recommendations.features import split_list

# A premise the tenant turned down is not offered again (a hard filter, see FilterConfig).
REJECTED_KINDS = ("proposal_rejected", "deal_lost")


@dataclass(frozen=True)
class FilterConfig:
    """Hard filters applied before ranking. Tolerances are relative (0.1 = 10%)."""

    require_vacant: bool = True
    area_tolerance: float = 0.10  # premise area may be up to 10% outside [area_min, area_max]
    budget_tolerance: float = 0.10  # monthly rent may exceed the budget by up to 10%
    match_district: bool = False  # premise district must be one of the tenant's districts
    match_river_bank: bool = False  # premise bank must equal the tenant's unless it says "any"
    exclude_rejected: bool = True  # never offer a premise the tenant rejected or lost a deal on


class HardFilters:
    """Which premises each tenant may be offered, as a boolean mask per block of tenants."""

    def __init__(self, tenants: pd.DataFrame, premises: pd.DataFrame, config: FilterConfig,
                 vacant_override: np.ndarray | None = None):
        self.config = config
        self.n_items = len(premises)
        vacant = premises["vacant"].eq(True).to_numpy()
        self.vacant = vacant if vacant_override is None else vacant_override.astype(bool)
        # A premise with an unknown area or price cannot be shown to satisfy a tenant's bound: it fails it.
        self.area = premises["area"].to_numpy(dtype=float)
        self.price = premises["price"].to_numpy(dtype=float)
        self.area_min = tenants["area_min"].to_numpy(dtype=float)
        self.area_max = tenants["area_max"].to_numpy(dtype=float)
        self.budget = tenants["budget"].to_numpy(dtype=float)
        districts = sorted(set(premises["district"].dropna()))
        district_index = {d: i for i, d in enumerate(districts)}
        self.item_district = np.array([district_index.get(d, -1) for d in premises["district"]], dtype=np.int64)
        rows, cols = [], []
        self.any_district = np.ones(len(tenants), dtype=bool)
        for i, value in enumerate(tenants["districts"]):
            for d in split_list(value):
                self.any_district[i] = False
                if d in district_index:
                    rows.append(i)
                    cols.append(district_index[d])
        self.tenant_districts = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)),
                                              shape=(len(tenants), max(1, len(districts))), dtype=bool)
        banks = tenants["river_bank"].fillna("any").str.lower().to_numpy()
        self.tenant_bank = banks
        self.item_bank = premises["river_bank"].fillna("").str.lower().to_numpy()

    def in_districts(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) bool: premise lies in one of the tenant's listed districts."""
        dense = self.tenant_districts[users].toarray()
        out = np.zeros((len(users), self.n_items), dtype=bool)
        known = self.item_district >= 0
        out[:, known] = dense[:, self.item_district[known]]
        return out

    def mask(self, users: np.ndarray) -> np.ndarray:
        cfg = self.config
        ok = np.ones((len(users), self.n_items), dtype=bool)
        if cfg.require_vacant:
            ok &= self.vacant[None, :]
        with np.errstate(invalid="ignore"):
            lo = self.area_min[users][:, None] * (1 - cfg.area_tolerance)
            hi = self.area_max[users][:, None] * (1 + cfg.area_tolerance)
            area = self.area[None, :]
            # An open bound (null) accepts anything; a comparison with an unknown value is False.
            ok &= np.isnan(lo) | (area >= lo)
            ok &= np.isnan(hi) | (area <= hi)
            budget = self.budget[users][:, None] * (1 + cfg.budget_tolerance)
            ok &= np.isnan(budget) | (self.price[None, :] <= budget)
        if cfg.match_district:
            ok &= self.in_districts(users) | self.any_district[users][:, None]
        if cfg.match_river_bank:
            tb = self.tenant_bank[users][:, None]
            ok &= (tb == "any") | (tb == self.item_bank[None, :])
        return ok

    def check(self, tenant_row: int, item_row: int) -> bool:
        return bool(self.mask(np.array([tenant_row]))[0, item_row])


class NoFilters:
    """Generic mode: every item is a candidate (optionally minus what the user has seen)."""

    def __init__(self, n_items: int):
        self.n_items = n_items

    def mask(self, users: np.ndarray) -> np.ndarray:
        return np.ones((len(users), self.n_items), dtype=bool)

    def in_districts(self, users: np.ndarray) -> np.ndarray:
        return np.zeros((len(users), self.n_items), dtype=bool)


class ExcludeSeen:
    """Wraps a filter and also drops given (user, item) pairs: what a user already interacted with
    (generic --exclude-seen), or what a tenant rejected."""

    def __init__(self, inner, seen: sp.csr_matrix):
        self.inner, self.seen, self.n_items = inner, seen, inner.n_items

    def mask(self, users: np.ndarray) -> np.ndarray:
        return self.inner.mask(users) & ~(self.seen[users].toarray() > 0)

    def in_districts(self, users: np.ndarray) -> np.ndarray:
        return self.inner.in_districts(users)
