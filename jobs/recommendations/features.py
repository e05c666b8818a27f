"""Feature tokens of tenants, premises and any user/item table, the LightFM feature matrices built
from them, and the interaction matrix of an event log (pandas, numpy, scipy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


def log_bucket(value, base: float = 1.5) -> str:
    """A scale-free bucket label: values within a factor `base` of each other share a bucket."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value <= 0:
        return "na"
    return f"b{math.floor(math.log(value) / math.log(base))}"


def split_list(value) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [part.strip() for part in str(value).split("|") if part.strip()]


def tenant_tokens(tenants: pd.DataFrame, fired_managers: set[int]) -> list[list[str]]:
    """Feature tokens per tenant: business types and districts (several each), river bank, scale,
    budget and area buckets, manager (all fired managers share one token: their personal
    signal is gone, and their tenants are being handed over)."""
    rows = []
    for t in tenants.itertuples(index=False):
        tokens = [f"bt:{b}" for b in split_list(t.business_types)]
        tokens += [f"district:{d}" for d in split_list(t.districts)]
        tokens.append(f"bank:{t.river_bank or 'na'}")
        tokens.append(f"scale:{t.scale or 'na'}")
        tokens.append(f"budget:{log_bucket(t.budget)}")
        lo, hi = t.area_min, t.area_max
        mid = math.sqrt(lo * hi) if lo == lo and hi == hi and lo and hi and lo > 0 and hi > 0 else (
            hi if hi == hi else lo)
        tokens.append(f"area:{log_bucket(mid)}")
        if t.manager_id is None or t.manager_id != t.manager_id:
            tokens.append("mgr:none")
        elif int(t.manager_id) in fired_managers:
            tokens.append("mgr:fired")
        else:
            tokens.append(f"mgr:{int(t.manager_id)}")
        rows.append(tokens)
    return rows


def premise_tokens(premises: pd.DataFrame) -> list[list[str]]:
    """Feature tokens per premise: area and price buckets, district, river bank, type, ground floor."""
    rows = []
    for p in premises.itertuples(index=False):
        floor = p.floor
        rows.append([
            f"area:{log_bucket(p.area)}",
            f"price:{log_bucket(p.price)}",
            f"district:{p.district}",
            f"bank:{p.river_bank}",
            f"type:{p.premise_type}",
            "floor:na" if floor is None or floor != floor else ("floor:ground" if floor <= 1 else "floor:upper"),
        ])
    return rows


def generic_tokens(frame: pd.DataFrame, id_column: str) -> list[list[str]]:
    """Feature tokens from any table: text columns by value ('|' splits lists), numeric columns by
    quintile."""
    columns = [c for c in frame.columns if c != id_column]
    per_column = []
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            ranks = values.rank(method="first")
            bins = pd.qcut(ranks, q=min(5, max(1, values.notna().sum())), labels=False, duplicates="drop")
            per_column.append([[f"{column}:q{int(b)}"] if b == b else [] for b in bins])
        else:
            per_column.append([[f"{column}:{v}" for v in split_list(x)] for x in values])
    return [sum((col[i] for col in per_column), []) for i in range(len(frame))]


@dataclass
class FeatureSpace:
    """Row-normalised [identity | tokens] feature matrix, and the token vocabulary."""

    matrix: sp.csr_matrix
    token_names: list[str]  # names of the non-identity columns, in column order

    @classmethod
    def build(cls, tokens: list[list[str]], with_identity: np.ndarray, vocabulary: list[str] | None = None,
              normalize: bool = True):
        """`with_identity[i]` says whether row i gets its own identity column switched on: only
        entities seen in training do (a new tenant's untrained identity vector would be noise, so
        it is scored through its features alone)."""
        n = len(tokens)
        names = vocabulary if vocabulary is not None else sorted({t for row in tokens for t in row})
        index = {name: n + j for j, name in enumerate(names)}
        rows, cols = [], []
        for i, row in enumerate(tokens):
            if with_identity[i]:
                rows.append(i)
                cols.append(i)
            for token in set(row):
                j = index.get(token)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float32)
        matrix = sp.csr_matrix((data, (rows, cols)), shape=(n, n + len(names)), dtype=np.float32)
        if normalize:
            sums = np.asarray(matrix.sum(axis=1)).ravel()
            sums[sums == 0] = 1.0
            matrix = sp.diags(1.0 / sums).astype(np.float32) @ matrix
        return cls(sp.csr_matrix(matrix, dtype=np.float32), names)


def popularity_tokens(weights: sp.csr_matrix) -> list[str]:
    """A premise's demand bucket from the training interactions alone: log2(1 + distinct tenants).
    WARP learns item biases poorly from sparse positives; a shared bucket token lets every
    premise of similar demand borrow one learned vector (and a new premise starts at pop:0)."""
    tenants_per_item = np.asarray((weights > 0).sum(axis=0)).ravel()
    return [f"pop:{int(np.log2(1 + count))}" for count in tenants_per_item]


def interaction_matrix(events: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Summed weights per (user row, item row) from events with columns u, i, weight."""
    matrix = sp.coo_matrix((events["weight"].to_numpy(dtype=np.float32),
                            (events["u"].to_numpy(), events["i"].to_numpy())), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix.tocsr()
