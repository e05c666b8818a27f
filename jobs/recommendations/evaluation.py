"""Offline evaluation on a time split: which events count, ranking metrics, the pilot miss share, and
the training events as the agency knew them at the split."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Event kinds of sql/recommendations/rec_interactions.sql that count as "the tenant wanted this premise" in the
# offline evaluation (a page view or a proposal merely shown is too weak a signal to score on).
RELEVANT_KINDS = ("deal_signed", "deal_open", "proposal_deal", "proposal_viewed")
SUCCESS_KINDS = ("deal_signed",)

# What a proposal whose outcome came only after the split still was at the split: shown.
_SHOWN_KIND, _SHOWN_WEIGHT = "proposal_shown", 0.5


def as_known_at(train: pd.DataFrame, split_ts) -> pd.DataFrame:
    """Training events as the agency knew them at the split: a proposal made before it whose outcome
    (e.g. the deal) came after it counts as merely shown. Without this the test deal leaks into
    training through its proposal, and the baseline puts it first as "already proposed"."""
    if "outcome_at" not in train or train.empty:
        return train
    later = train["kind"].str.startswith("proposal_") & (pd.to_datetime(train["outcome_at"]) >= split_ts)
    if not later.any():
        return train
    train = train.copy()
    train.loc[later, "kind"] = _SHOWN_KIND
    train.loc[later, "weight"] = _SHOWN_WEIGHT
    return train


def ranking_metrics(recommended: np.ndarray, relevant: list[set[int]], k: int, n_catalog: int) -> dict:
    """precision@k, recall@k, NDCG@k, MAP@k (binary relevance) averaged over users with at least one
    relevant item; coverage = distinct recommended items / catalogue size."""
    recs = recommended[:, :k]
    precision, recall, ndcg, ap = [], [], [], []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for row, rel in zip(recs, relevant, strict=True):
        if not rel:
            continue
        hits = np.array([item >= 0 and item in rel for item in row], dtype=bool)
        n_hits = hits.sum()
        precision.append(n_hits / k)
        recall.append(n_hits / len(rel))
        ideal = discounts[:min(len(rel), k)].sum()
        ndcg.append((hits * discounts).sum() / ideal)
        cum_hits = np.cumsum(hits)
        ap.append((hits * cum_hits / np.arange(1, k + 1)).sum() / min(len(rel), k))

    def mean(values: list) -> float:
        return float(np.mean(values)) if values else 0.0

    shown = recs[recs >= 0]
    return {
        "precision": mean(precision), "recall": mean(recall), "ndcg": mean(ndcg), "map": mean(ap),
        "coverage": float(len(np.unique(shown)) / n_catalog) if n_catalog else 0.0,
        "users_evaluated": float(len(precision)),
    }


def pilot_miss_share(recommended: np.ndarray, success_pairs: list[tuple[int, int]], mask_block, k: int) -> dict:
    """Of (tenant row, premise row) pairs of successful deals, the share the system would have missed:
    dropped by the hard filters, or kept but ranked below k. Target: at most 20%."""
    if not success_pairs:
        return {"pilot_miss_share": float("nan"), "pilot_dropped_by_filters": float("nan"),
                "pilot_ranked_below_k": float("nan"), "pilot_pairs": 0.0}
    dropped = below = 0
    for u, i in success_pairs:
        if i < 0 or not mask_block(np.array([u]))[0, i]:
            dropped += 1
        elif i not in set(recommended[u, :k].tolist()):
            below += 1
    n = len(success_pairs)
    return {"pilot_miss_share": (dropped + below) / n, "pilot_dropped_by_filters": dropped / n,
            "pilot_ranked_below_k": below / n, "pilot_pairs": float(n)}
