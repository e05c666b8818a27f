"""The recommender on frames: train, evaluate and score both models on the driver (the agency's
snapshots, or any user-item log), from jobs.recommendations.features, .filters, .model and
.evaluation (pandas, numpy, scipy, LightFM).

Why on the driver: the agency's data is tens of thousands of tenants and premises and a few
million events, which fit in memory many times over, and LightFM trains in one process anyway.
Spark reads the snapshots and builds the interaction log (sql/recommendations/rec_interactions.sql); this
module gets pandas frames and returns pandas frames.

Scoring goes a block of users at a time from representations computed once (jobs.recommendations.model),
hard filters applied BEFORE ranking (jobs.recommendations.filters): a premise that fails a filter
can never appear in a list, however high the model scores it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobs.recommendations.evaluation import (
    RELEVANT_KINDS,
    SUCCESS_KINDS,
    as_known_at,
    pilot_miss_share,
    ranking_metrics,
)
from jobs.recommendations.features import (
    FeatureSpace,
    generic_tokens,
    interaction_matrix,
    popularity_tokens,
    premise_tokens,
    tenant_tokens,
)
from jobs.recommendations.filters import REJECTED_KINDS, ExcludeSeen, FilterConfig, HardFilters, NoFilters
from jobs.recommendations.model import (
    BASELINE,
    LIGHTFM,
    BaselineScorer,
    LightFMScorer,
    ModelConfig,
    TopK,
    fit_lightfm,
    top_k,
)

# The default settings (frozen dataclasses, shared by every call that does not pass its own).
DEFAULT_FILTERS = FilterConfig()
DEFAULT_MODEL = ModelConfig()


@dataclass
class RecResult:
    recommendations: pd.DataFrame  # user_id, item_id, rank, score, model
    leads: pd.DataFrame  # item_id, rank, user_id, score
    evaluation: pd.DataFrame  # model, metric, k, value
    metrics: dict
    artifact: dict  # what gets pickled: the model, the id maps, the vocabularies, the configs


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
                     model_config: ModelConfig = DEFAULT_MODEL, exclude_seen: bool = False,
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

    def evaluate_on_held_out():
        train = as_known_at(ev[ev["ts"] < split_ts], split_ts)
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

    def served_model():
        started = time.perf_counter()
        weights = interaction_matrix(ev, n_users, n_items)
        uf, itf = _feature_spaces(weights, user_tokens, item_tokens, model_config)
        model = fit_lightfm(weights, uf.matrix, itf.matrix, model_config)
        timings["train_s"] = time.perf_counter() - started
        return weights, uf, itf, model

    # The served model learns from everything up to ds. It trains beside the evaluation's model:
    # LightFM fits without the GIL, so on two cores the pair takes the time of one, and each fit
    # stays single-threaded (and so reproducible).
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="served-model")
    try:
        served = pool.submit(served_model)
        if evaluate:
            evaluate_on_held_out()
        weights, uf, itf, model = served.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
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
                     filter_config: FilterConfig = DEFAULT_FILTERS, model_config: ModelConfig = DEFAULT_MODEL,
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
                      model_config: ModelConfig = DEFAULT_MODEL, eval_days: int = 30, block_size: int = 1024,
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

