"""The recommendation core on the driver: hard filters, features, LightFM, baseline, block scoring,
offline evaluation (pandas, numpy, scipy, LightFM).

Why on the driver: the agency's data is tens of thousands of tenants and premises and a few
million events, which fit in memory many times over, and LightFM trains in one process anyway.
Spark reads the snapshots and builds the interaction log (sql/recommendations/rec_interactions.sql); this
module gets pandas frames and returns pandas frames.

Scoring never calls `predict` per user: it takes the user and item representations once
(`get_user_representations` / `get_item_representations`) and multiplies them for a block of
users at a time. Hard filters are a boolean mask over the same block applied BEFORE ranking
(a filtered-out premise gets score -inf and is dropped), so a premise that fails a filter can
never appear in a list, however high the model scores it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

LIGHTFM = "lightfm"
BASELINE = "baseline"
MODELS = (LIGHTFM, BASELINE)

# Event kinds of sql/recommendations/rec_interactions.sql that count as "the tenant wanted this premise" in the
# offline evaluation (a page view or a proposal merely shown is too weak a signal to score on).
RELEVANT_KINDS = ("deal_signed", "deal_open", "proposal_deal", "proposal_viewed")
SUCCESS_KINDS = ("deal_signed",)
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
    ranking of the rest; 0 turns it off. Measured on the synthetic market (bench/recommend.py, time
    split, recall@10 / NDCG@10 / pilot miss; lightfm with the boost vs without vs the baseline):
    20,000 x 8,000: 0.061 / 0.038 / 0.69 vs 0.047 / 0.027 / 0.76 vs 0.052 / 0.030 / 0.75;
    5,000 x 2,000: 0.149 / 0.080 / 0.48 vs 0.146 / 0.080 / 0.53 vs 0.126 / 0.068 / 0.53.
    On small dense markets, where the features alone fit the tenants well, it costs a little:
    1,000 x 400, seeds 0, 2, 3: recall 0.305-0.350 vs 0.318-0.354 (baseline 0.262-0.287), NDCG
    about 0.03 lower; finite boosts (0.01-0.3 sd) trade between the two ends, and NDCG on the last
    30 days of the training period picks the better end on both sizes (a candidate for tuning it
    per run). Without it, nothing beat the baseline at 20,000 x 8,000: per-tenant and per-premise
    identity vectors with user/item_alpha 1e-5..1e-4 and 3-20 epochs (recall@10 0.038-0.045),
    "tenant as a bag of its items" user features (0.033-0.047), 16-64 components, learning rate
    0.02-0.1 and 10-40 epochs (0.042-0.047)."""

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


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Hard filters
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

def interaction_matrix(events: pd.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Summed weights per (user row, item row) from events with columns u, i, weight."""
    matrix = sp.coo_matrix((events["weight"].to_numpy(dtype=np.float32),
                            (events["u"].to_numpy(), events["i"].to_numpy())), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix.tocsr()


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


# ----------------------------------------------------------------------------------------------
# Offline evaluation
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Orchestration on frames
# ----------------------------------------------------------------------------------------------

@dataclass
class RecResult:
    recommendations: pd.DataFrame  # user_id, item_id, rank, score, model
    leads: pd.DataFrame  # item_id, rank, user_id, score
    evaluation: pd.DataFrame  # model, metric, k, value
    metrics: dict
    artifact: dict  # what gets pickled: the model, the id maps, the vocabularies, the configs


def popularity_tokens(weights: sp.csr_matrix) -> list[str]:
    """A premise's demand bucket from the training interactions alone: log2(1 + distinct tenants).
    WARP learns item biases poorly from sparse positives; a shared bucket token lets every
    premise of similar demand borrow one learned vector (and a new premise starts at pop:0)."""
    tenants_per_item = np.asarray((weights > 0).sum(axis=0)).ravel()
    return [f"pop:{int(np.log2(1 + count))}" for count in tenants_per_item]


def _feature_spaces(weights: sp.csr_matrix, user_tokens, item_tokens, config: ModelConfig):
    """Identity columns are switched on only for users/items with training interactions."""
    if config.popularity_feature:
        item_tokens = [row + [pop] for row, pop in zip(item_tokens, popularity_tokens(weights), strict=True)]
    users_seen = np.asarray(weights.getnnz(axis=1) > 0) & config.user_identity
    items_seen = np.asarray(weights.getnnz(axis=0) > 0) & config.item_identity
    return (FeatureSpace.build(user_tokens, users_seen, normalize=config.normalize_features),
            FeatureSpace.build(item_tokens, items_seen, normalize=config.normalize_features))


def _without_rejected(filters, rejected: pd.DataFrame, n_users: int, n_items: int):
    if not (isinstance(filters, HardFilters) and filters.config.exclude_rejected) or rejected.empty:
        return filters
    pairs = sp.csr_matrix((np.ones(len(rejected), dtype=np.float32), (rejected["u"], rejected["i"])),
                          shape=(n_users, n_items))
    return ExcludeSeen(filters, pairs)


def _catalog_size(filters, n_items: int) -> int:
    """Items that can be offered at all (the vacant ones, when vacancy is required)."""
    if isinstance(filters, HardFilters) and filters.config.require_vacant:
        return int(filters.vacant.sum())
    return n_items


# What a proposal whose outcome came only after the split still was at the split: shown.
_SHOWN_KIND, _SHOWN_WEIGHT = "proposal_shown", 0.5


def _as_known_at(train: pd.DataFrame, split_ts) -> pd.DataFrame:
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


def _as_json_values(record: dict) -> dict:
    """Infinite settings (history_boost) as the text "inf": strict JSON has no Infinity."""
    return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in record.items()}


def _index(ids: pd.Series) -> dict:
    return {v: i for i, v in enumerate(ids.tolist())}


def _lists_frame(top: TopK, user_ids: np.ndarray, item_ids: np.ndarray, model: str) -> pd.DataFrame:
    rows, ranks = np.nonzero(top.items >= 0)
    return pd.DataFrame({
        "user_id": user_ids[rows].astype(np.int64),
        "item_id": item_ids[top.items[rows, ranks]].astype(np.int64),
        "rank": (ranks + 1).astype(np.int32),
        "score": top.scores[rows, ranks].astype(np.float64),
        "model": model,
    })


def recommend_frames(*, users: pd.DataFrame, items: pd.DataFrame, events: pd.DataFrame, split_ts,
                     k: int = 10, leads_k: int = 10, user_tokens: list[list[str]],
                     item_tokens: list[list[str]], make_filters: Callable[[bool], object],
                     model_config: ModelConfig = ModelConfig(), exclude_seen: bool = False,
                     block_size: int = 1024, evaluate: bool = True, timings: dict | None = None,
                     relevant_kinds: tuple[str, ...] = RELEVANT_KINDS,
                     success_kinds: tuple[str, ...] = SUCCESS_KINDS,
                     reference_scorers: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] | None = None,
                     ) -> RecResult:
    """Train, evaluate and score both models.

    users/items: frames whose first column is the id (rows define the matrix order).
    events: user_id, item_id, ts, weight, kind. Events on unknown users or items are ignored.
    split_ts: events before it train the evaluation model, events from it on are the test set.
    make_filters(at_split): the hard filters for scoring now (False) or as of the split (True).
    reference_scorers: name -> f(user ids, item ids) -> scores, evaluated like the models on the
    same users and candidates but neither served nor published (metrics["references"]): the
    benchmark's ranking by the synthetic market's hidden utility, an upper reference.
    """
    import time

    timings = timings if timings is not None else {}
    user_ids = users.iloc[:, 0].to_numpy(dtype=np.int64)
    item_ids = items.iloc[:, 0].to_numpy(dtype=np.int64)
    u_index, i_index = _index(users.iloc[:, 0]), _index(items.iloc[:, 0])
    ev = events.assign(u=events["user_id"].map(u_index), i=events["item_id"].map(i_index))
    ev = ev.dropna(subset=["u", "i"]).astype({"u": np.int64, "i": np.int64})
    rejected = ev[ev["kind"].isin(REJECTED_KINDS)]
    ev = ev[ev["weight"] > 0]
    n_users, n_items = len(users), len(items)
    metrics: dict = {"users": n_users, "items": n_items, "events": int(len(ev)), "k": k,
                     "model_config": _as_json_values(asdict(model_config))}
    eval_rows = []

    if evaluate:
        train = _as_known_at(ev[ev["ts"] < split_ts], split_ts)
        test = ev[ev["ts"] >= split_ts]
        metrics["split_ts"] = str(split_ts)
        metrics["train_events"], metrics["test_events"] = int(len(train)), int(len(test))
        started = time.perf_counter()
        weights = interaction_matrix(train, n_users, n_items)
        uf, itf = _feature_spaces(weights, user_tokens, item_tokens, model_config)
        model = fit_lightfm(weights, uf.matrix, itf.matrix, model_config)
        timings["eval_train_s"] = time.perf_counter() - started
        relevant_events = test[test["kind"].isin(relevant_kinds)]
        relevant_by_user = relevant_events.groupby("u")["i"].agg(set)
        eval_users = np.array(sorted(relevant_by_user.index), dtype=np.int64)
        filters = make_filters(True)
        catalog = _catalog_size(filters, n_items)
        filters = _without_rejected(filters, rejected[rejected["ts"] < split_ts], n_users, n_items)
        if exclude_seen:
            # Re-finding what one already saw is not a hit when the lists exclude it.
            filters = ExcludeSeen(filters, weights)
            relevant_by_user = pd.Series(
                {u: relevant_by_user[u] - set(weights[u].indices.tolist()) for u in eval_users}, dtype=object)
        relevant = [relevant_by_user[u] for u in eval_users]
        scorers = {LIGHTFM: LightFMScorer(model, uf.matrix, itf.matrix, weights, model_config.history_boost),
                   BASELINE: BaselineScorer(weights, filters)}
        success = list(test[test["kind"].isin(success_kinds)][["u", "i"]].drop_duplicates()
                       .itertuples(index=False, name=None))

        def evaluated(name: str, scorer) -> dict:
            started = time.perf_counter()
            top = top_k(scorer, filters.mask, n_users, n_items, k, block_size, users=eval_users)
            timings[f"eval_score_{name}_s"] = time.perf_counter() - started
            values = ranking_metrics(top.items, relevant, k, catalog)
            full = np.full((n_users, k), -1, dtype=np.int64)
            full[eval_users] = top.items
            if success_kinds:
                values.update(pilot_miss_share(full, success, filters.mask, k))
            return values

        for name, scorer in scorers.items():
            metrics[name] = values = evaluated(name, scorer)
            for metric, value in values.items():
                if np.isfinite(value):  # the pilot share is undefined without successful deals
                    eval_rows.append({"model": name, "metric": metric, "k": k, "value": float(value)})
        for name, reference in (reference_scorers or {}).items():
            metrics.setdefault("references", {})[name] = evaluated(
                name, lambda rows, reference=reference: reference(user_ids[rows], item_ids))

    # The served model learns from everything up to ds.
    started = time.perf_counter()
    weights = interaction_matrix(ev, n_users, n_items)
    uf, itf = _feature_spaces(weights, user_tokens, item_tokens, model_config)
    model = fit_lightfm(weights, uf.matrix, itf.matrix, model_config)
    timings["train_s"] = time.perf_counter() - started
    filters = _without_rejected(make_filters(False), rejected, n_users, n_items)
    if exclude_seen:
        filters = ExcludeSeen(filters, weights)
    started = time.perf_counter()
    scorer = LightFMScorer(model, uf.matrix, itf.matrix, weights, model_config.history_boost)
    lightfm_top = top_k(scorer, filters.mask, n_users, n_items, k, block_size, leads_k=leads_k)
    timings["score_lightfm_s"] = time.perf_counter() - started
    started = time.perf_counter()
    baseline_top = top_k(BaselineScorer(weights, filters), filters.mask, n_users, n_items, k, block_size)
    timings["score_baseline_s"] = time.perf_counter() - started
    recommendations = pd.concat([_lists_frame(lightfm_top, user_ids, item_ids, LIGHTFM),
                                 _lists_frame(baseline_top, user_ids, item_ids, BASELINE)], ignore_index=True)
    ranks, cols = np.nonzero(lightfm_top.lead_users >= 0) if leads_k else (np.array([], int), np.array([], int))
    leads = pd.DataFrame({
        "item_id": item_ids[cols].astype(np.int64),
        "rank": (ranks + 1).astype(np.int32),
        "user_id": user_ids[lightfm_top.lead_users[ranks, cols]].astype(np.int64) if leads_k else
        np.array([], np.int64),
        "score": lightfm_top.lead_scores[ranks, cols].astype(np.float64) if leads_k else np.array([], float),
    }).sort_values(["item_id", "rank"], ignore_index=True)
    metrics["timings_s"] = {name: round(value, 3) for name, value in timings.items()}
    metrics["users_with_full_list"] = int((lightfm_top.items[:, -1] >= 0).sum()) if k else 0
    artifact = {"model": model, "user_ids": user_ids, "item_ids": item_ids,
                "user_feature_tokens": uf.token_names, "item_feature_tokens": itf.token_names,
                "model_config": asdict(model_config), "k": k}
    evaluation = pd.DataFrame(eval_rows, columns=["model", "metric", "k", "value"])
    return RecResult(recommendations, leads, evaluation, metrics, artifact)


# ----------------------------------------------------------------------------------------------
# Adapters: the agency's snapshots, and any user-item log
# ----------------------------------------------------------------------------------------------

def recommend_agency(*, tenants: pd.DataFrame, premises: pd.DataFrame, managers: pd.DataFrame,
                     events: pd.DataFrame, ds, k: int = 10, leads_k: int = 10,
                     filter_config: FilterConfig = FilterConfig(), model_config: ModelConfig = ModelConfig(),
                     eval_days: int = 30, vacant_at_split: pd.Series | None = None, block_size: int = 1024,
                     timings: dict | None = None, reference_scorers: dict | None = None) -> RecResult:
    """Both models for every tenant of the snapshot over every premise of the snapshot.

    events: user_id (client_id), item_id (premise_id), ts, weight, kind (sql/recommendations/rec_interactions.sql).
    vacant_at_split: premise_id -> vacant as of the split day (from that day's snapshot when it
    exists). Without it, a premise counts as vacant at the split if it is vacant now or was
    leased in the test period: the snapshot of ds cannot tell more.
    """
    tenants = tenants.drop_duplicates("client_id").sort_values("client_id", ignore_index=True)
    premises = premises.drop_duplicates("premise_id").sort_values("premise_id", ignore_index=True)
    fired = set(managers.loc[managers["fired"].eq(True), "manager_id"].astype(int))
    split_ts = pd.Timestamp(ds) - pd.Timedelta(days=eval_days)
    vacant_now = premises["vacant"].eq(True).to_numpy()
    if vacant_at_split is not None:
        split_vacancy = premises["premise_id"].map(vacant_at_split).eq(True).to_numpy()
        vacancy_rule = "snapshot at split"
    else:
        leased_in_test = set(events.loc[(events["ts"] >= split_ts) & events["kind"].isin(SUCCESS_KINDS), "item_id"])
        split_vacancy = vacant_now | premises["premise_id"].isin(leased_in_test).to_numpy()
        vacancy_rule = "vacant now or leased in the test period"

    def make_filters(at_split: bool) -> HardFilters:
        return HardFilters(tenants, premises, filter_config, vacant_override=split_vacancy if at_split else None)

    result = recommend_frames(
        users=tenants, items=premises, events=events, split_ts=split_ts, k=k, leads_k=leads_k,
        user_tokens=tenant_tokens(tenants, fired), item_tokens=premise_tokens(premises),
        make_filters=make_filters, model_config=model_config, block_size=block_size, timings=timings,
        reference_scorers=reference_scorers)
    # Leads are offered for premises on the market only (the mask already drops the others).
    result.metrics.update({"mode": "agency", "filter_config": asdict(filter_config), "eval_days": eval_days,
                           "vacancy_at_split": vacancy_rule, "vacant_premises": int(vacant_now.sum())})
    result.artifact["filter_config"] = asdict(filter_config)
    return result


def recommend_generic(*, events: pd.DataFrame, users: pd.DataFrame | None = None,
                      items: pd.DataFrame | None = None, ds, k: int = 10, exclude_seen: bool = False,
                      model_config: ModelConfig = ModelConfig(), eval_days: int = 30, block_size: int = 1024,
                      timings: dict | None = None) -> RecResult:
    """Both models on any user-item log (user_id, item_id[, weight][, ts]); users/items frames carry
    optional feature columns beside user_id / item_id. No hard filters (there is nothing to filter
    on); --exclude-seen drops what a user already interacted with.

    Time split at ds minus eval_days when both sides have events; otherwise at the 80% quantile
    of ts; without ts, a seeded random 20% of events is held out.
    """
    # A log's users and items are known mostly (without --users / --items, only) by their history:
    # each gets its own vector beside any features (cold ones still go through features alone).
    model_config = replace(model_config, user_identity=True, item_identity=True)
    events = events.copy()
    if "weight" not in events:
        events["weight"] = 1.0
    events["weight"] = events["weight"].astype(float)
    events = events[events["weight"] > 0]
    events["kind"] = "interaction"
    if "ts" in events and events["ts"].notna().any():
        events["ts"] = pd.to_datetime(events["ts"])
        split_ts = pd.Timestamp(ds) - pd.Timedelta(days=eval_days)
        split_rule = f"ds minus {eval_days} days"
        if not ((events["ts"] < split_ts).any() and (events["ts"] >= split_ts).any()):
            split_ts = events["ts"].quantile(0.8)
            split_rule = "80% quantile of ts"
    else:
        rng = np.random.default_rng(model_config.random_state)
        events["ts"] = (rng.random(len(events)) >= 0.8).astype(np.int64)
        split_ts, split_rule = 1, "random 20% holdout (no ts column)"
    user_ids = sorted(set(events["user_id"]) | (set(users["user_id"]) if users is not None else set()))
    item_ids = sorted(set(events["item_id"]) | (set(items["item_id"]) if items is not None else set()))
    user_frame = pd.DataFrame({"user_id": np.array(user_ids, dtype=np.int64)})
    item_frame = pd.DataFrame({"item_id": np.array(item_ids, dtype=np.int64)})
    if users is not None:
        u_tokens = generic_tokens(user_frame.merge(users.drop_duplicates("user_id"), on="user_id", how="left"),
                                  "user_id")
    else:
        u_tokens = [[] for _ in user_ids]
    if items is not None:
        i_tokens = generic_tokens(item_frame.merge(items.drop_duplicates("item_id"), on="item_id", how="left"),
                                  "item_id")
    else:
        i_tokens = [[] for _ in item_ids]
    result = recommend_frames(
        users=user_frame, items=item_frame, events=events, split_ts=split_ts, k=k, leads_k=0,
        user_tokens=u_tokens, item_tokens=i_tokens, make_filters=lambda at_split: NoFilters(len(item_ids)),
        model_config=model_config, exclude_seen=exclude_seen, block_size=block_size, timings=timings,
        relevant_kinds=("interaction",), success_kinds=())
    result.metrics.update({"mode": "generic", "split_rule": split_rule, "exclude_seen": exclude_seen})
    return result


# ----------------------------------------------------------------------------------------------
# A synthetic market with a hidden preference model (tests and the benchmark)
# ----------------------------------------------------------------------------------------------

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
