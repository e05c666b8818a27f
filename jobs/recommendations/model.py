"""The two models and block scoring: LightFM (its settings, its fit, scores from its representations)
and the baseline, and the top-k per user (and top users per item) over masked scores.

Scoring never calls `predict` per user: it takes the user and item representations once
(`get_user_representations` / `get_item_representations`) and multiplies them for a block of
users at a time; the hard filters (jobs.recommendations.filters) mask the same block."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

LIGHTFM = "lightfm"
BASELINE = "baseline"
MODELS = (LIGHTFM, BASELINE)


@dataclass(frozen=True)
class ModelConfig:
    """LightFM settings. The defaults were chosen on held-out time splits of the synthetic market
    (5,000 x 2,000 and 20,000 x 8,000; see bench/recommend.py): unnormalised feature rows, no
    per-tenant or per-premise identity vector but a premise demand-bucket token. With a handful of
    interactions per tenant and per premise, identity vectors overfit after 5-10 epochs (recall@10
    falls as coverage rises); the shared tokens keep improving up to ~20 epochs.

    history_boost: the tenant's own history. A feature-only model cannot know which premises a
    tenant has already looked at, yet a premise it viewed or was proposed (and did not reject:
    the hard filters drop those) is the likeliest to come back in a proposal or deal. The boost is
    added to the LightFM score of such candidates, in units of the standard deviation of the
    scores; inf (the default) ranks every one of them first, ordered by LightFM, then LightFM's
    ranking of the rest; 0 turns it off. What each choice measured, and what was tried and dropped,
    is in docs/benchmarks.md (bench/recommend.py)."""

    no_components: int = 32
    epochs: int = 20
    learning_rate: float = 0.05
    loss: str = "warp"
    max_sampled: int = 10
    item_alpha: float = 1e-6
    user_alpha: float = 1e-6
    random_state: int = 42
    num_threads: int = 1  # one thread makes training bit-for-bit reproducible (Hogwild otherwise)
    user_identity: bool = False  # a per-tenant latent vector beside the features (known tenants only)
    item_identity: bool = False  # a per-premise latent vector beside the features (known premises only)
    normalize_features: bool = False  # scale each feature row to sum 1 (LightFM's Dataset default)
    popularity_feature: bool = True  # a premise demand-bucket token from the training interactions
    history_boost: float = math.inf  # score sds added to candidates the tenant already engaged with (see above)


def fit_lightfm(weights: sp.csr_matrix, user_features: sp.csr_matrix, item_features: sp.csr_matrix,
                config: ModelConfig):
    """WARP on the binary interactions, each weighted by its summed (log-damped) event weight."""
    from lightfm import LightFM

    coo = weights.tocoo()
    interactions = sp.coo_matrix((np.ones_like(coo.data, dtype=np.float32), (coo.row, coo.col)), shape=coo.shape)
    # log1p keeps a tenant who opened a page fifty times from drowning out one signed lease.
    sample_weight = sp.coo_matrix((np.log1p(coo.data).astype(np.float32), (coo.row, coo.col)), shape=coo.shape)
    model = LightFM(no_components=config.no_components, loss=config.loss, learning_rate=config.learning_rate,
                    max_sampled=config.max_sampled, item_alpha=config.item_alpha, user_alpha=config.user_alpha,
                    random_state=np.random.RandomState(config.random_state))
    model.fit(interactions, user_features=user_features, item_features=item_features,
              sample_weight=sample_weight, epochs=config.epochs, num_threads=config.num_threads)
    return model


class LightFMScorer:
    """Scores from representations computed once: bias_u + bias_i + <e_u, e_i>, a block at a time.

    With `history` (the interaction weights the model learnt from) and a non-zero `history_boost`
    (ModelConfig.history_boost), candidates the user already engaged with get the boost on top:
    inf lifts them above every other score (by twice a bound on |score|, the same for all users,
    so the top-tenants-per-premise lists compare like with like); a finite value adds that many
    standard deviations of the scores (measured on the first 1,024 users)."""

    def __init__(self, model, user_features: sp.csr_matrix, item_features: sp.csr_matrix,
                 history: sp.csr_matrix | None = None, history_boost: float = 0.0):
        self.user_bias, self.user_emb = model.get_user_representations(user_features)
        self.item_bias, self.item_emb = model.get_item_representations(item_features)
        self.item_emb_t = np.ascontiguousarray(self.item_emb.T)
        self.history, self.boost = None, 0.0
        if history is not None and history_boost and history.nnz:
            if math.isinf(history_boost):
                bound = (np.abs(self.user_bias).max(initial=0.0) + np.abs(self.item_bias).max(initial=0.0)
                         + np.linalg.norm(self.user_emb, axis=1).max(initial=0.0)
                         * np.linalg.norm(self.item_emb, axis=1).max(initial=0.0))
                boost = 2.0 * float(bound) + 1.0
            else:
                boost = float(history_boost) * float(self._raw(np.arange(min(1024, len(self.user_bias)))).std())
            self.history, self.boost = history.tocsr(), boost

    def _raw(self, users: np.ndarray) -> np.ndarray:
        scores = self.user_emb[users] @ self.item_emb_t
        scores += self.item_bias[None, :]
        scores += self.user_bias[users][:, None]
        return scores

    def __call__(self, users: np.ndarray) -> np.ndarray:
        scores = self._raw(users)
        if self.history is not None:
            scores += np.float32(self.boost) * (self.history[users].toarray() > 0)
        return scores


class BaselineScorer:
    """Premises already proposed to or viewed by the tenant first (more engagement first), then the
    most popular in the tenant's districts, then the most popular anywhere."""

    def __init__(self, weights: sp.csr_matrix, filters):
        self.seen = weights
        popularity = np.asarray((weights > 0).sum(axis=0)).ravel().astype(np.float64)
        self.popularity = (popularity / (popularity.max() + 1.0)) if popularity.size else popularity
        self.filters = filters

    def __call__(self, users: np.ndarray) -> np.ndarray:
        seen = self.seen[users].toarray()
        scores = np.broadcast_to(self.popularity, seen.shape).copy()
        scores += self.filters.in_districts(users)
        scores = np.where(seen > 0, 2.0 + seen / (1.0 + seen), scores)
        return scores.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Block scoring
# ----------------------------------------------------------------------------------------------

@dataclass
class TopK:
    items: np.ndarray  # (n_users, k) item rows, -1 where fewer than k candidates passed the filters
    scores: np.ndarray  # (n_users, k) float32, nan where items == -1
    lead_users: np.ndarray | None = None  # (leads_k, n_items) user rows per item, -1 padded
    lead_scores: np.ndarray | None = None


def _top_rows(scores: np.ndarray, kk: int) -> np.ndarray:
    """Column indices of the kk highest scores of each row, ties at the k-th score resolved to the
    lower column (argpartition alone picks an arbitrary one of tied columns, and a feature-only
    model gives premises with the same features the same score)."""
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    room = kk - (scores > kth[:, None]).sum(axis=1)
    tied = (scores == kth[:, None]).sum(axis=1)
    # Only rows with more tied columns than places left are ambiguous; -inf ties are dropped later.
    for row in np.flatnonzero((tied > room) & np.isfinite(kth)):
        values = scores[row]
        part[row] = np.concatenate([np.flatnonzero(values > kth[row]),
                                    np.flatnonzero(values == kth[row])[:room[row]]])
    return part


def top_k(score_block: Callable[[np.ndarray], np.ndarray], mask_block: Callable[[np.ndarray], np.ndarray],
          n_users: int, n_items: int, k: int, block_size: int = 1024, leads_k: int = 0,
          users: np.ndarray | None = None) -> TopK:
    """Top-k items per user (and optionally top-`leads_k` users per item) over masked scores.

    Ties are broken by the lower item (or user) row, so the same scores give the same lists.
    """
    users = np.arange(n_users) if users is None else np.asarray(users)
    kk = min(k, n_items)
    out_items = np.full((len(users), k), -1, dtype=np.int64)
    out_scores = np.full((len(users), k), np.nan, dtype=np.float32)
    lead_scores = np.full((leads_k, n_items), -np.inf, dtype=np.float32)
    lead_users = np.full((leads_k, n_items), -1, dtype=np.int64)
    for start in range(0, len(users), block_size):
        block = users[start:start + block_size]
        scores = np.asarray(score_block(block), dtype=np.float32)
        scores = np.where(mask_block(block), scores, -np.inf).astype(np.float32)
        if kk:
            part = _top_rows(scores, kk) if kk < n_items else np.tile(np.arange(n_items), (len(block), 1))
            part_scores = np.take_along_axis(scores, part, axis=1)
            order = np.lexsort((part, -part_scores), axis=1)
            best = np.take_along_axis(part, order, axis=1)
            best_scores = np.take_along_axis(part_scores, order, axis=1)
            valid = np.isfinite(best_scores)
            out_items[start:start + len(block), :kk] = np.where(valid, best, -1)
            out_scores[start:start + len(block), :kk] = np.where(valid, best_scores, np.nan)
        if leads_k:
            cand_scores = np.concatenate([lead_scores, scores], axis=0)
            cand_users = np.concatenate([lead_users, np.broadcast_to(block[:, None], scores.shape)], axis=0)
            if cand_scores.shape[0] > leads_k:
                pick = np.argpartition(-cand_scores, leads_k - 1, axis=0)[:leads_k]
                lead_scores = np.take_along_axis(cand_scores, pick, axis=0)
                lead_users = np.take_along_axis(cand_users, pick, axis=0)
            else:
                lead_scores, lead_users = cand_scores, cand_users
    if leads_k:
        order = np.lexsort((np.where(lead_users < 0, np.iinfo(np.int64).max, lead_users), -lead_scores), axis=0)
        lead_scores = np.take_along_axis(lead_scores, order, axis=0)
        lead_users = np.take_along_axis(lead_users, order, axis=0)
        lead_users = np.where(np.isfinite(lead_scores), lead_users, -1)
        return TopK(out_items, out_scores, lead_users, lead_scores)
    return TopK(out_items, out_scores)
