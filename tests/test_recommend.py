"""Tests of `ostap recommend`: hard filters, A/B arms, LightFM against the baseline, cold start,
determinism, block scoring, generic mode, and the published tables.

The data is jobs.recommendations.synthetic_market: a small market whose deals, proposals and views come
from a hidden preference model the recommenders do not see. Its ods snapshots are published once
per module into a private warehouse and read back through the job's own Spark path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
from helpers import ctx_for, wh  # noqa: E402

from jobs import cli
from jobs.core import abtest, storage
from jobs.core.tables import TABLES
from jobs.recommendations import recommend
from jobs.recommendations.evaluation import as_known_at
from jobs.recommendations.filters import REJECTED_KINDS, FilterConfig, HardFilters
from jobs.recommendations.model import LightFMScorer, ModelConfig, fit_lightfm, top_k
from jobs.recommendations.recommender import recommend_agency
from jobs.recommendations.synthetic_market import BUSINESS_TYPES, DISTRICTS, oracle_scorer, synthetic_market

DS = "2026-04-30"
START = "2026-01-01"


@pytest.fixture(scope="module")
def market_warehouse(spark, tmp_path_factory):
    """A warehouse holding the ods snapshots of DS for a 1000-tenant x 400-premise market."""
    root = str(tmp_path_factory.mktemp("rec_warehouse"))
    previous = os.environ.get("OSTAP_WAREHOUSE")
    os.environ["OSTAP_WAREHOUSE"] = root
    market = recommend.publish_synthetic_market(spark, ctx_for(DS), n_tenants=1000, n_premises=400, start=START,
                                                days=120, seed=1)
    inputs = recommend.read_agency_inputs(spark, ctx_for(DS), eval_days=30)
    yield {"root": root, "market": market, "inputs": inputs}
    if previous is None:
        os.environ.pop("OSTAP_WAREHOUSE", None)
    else:
        os.environ["OSTAP_WAREHOUSE"] = previous


@pytest.fixture
def in_market(market_warehouse, monkeypatch):
    monkeypatch.setenv("OSTAP_WAREHOUSE", market_warehouse["root"])
    return market_warehouse


FAST = ModelConfig(epochs=5, no_components=8)


def _agency(inputs, tenants=None, **kwargs):
    return recommend_agency(
        tenants=inputs["tenants"] if tenants is None else tenants, premises=inputs["premises"],
        managers=inputs["managers"], events=inputs["events"], ds=DS,
        vacant_at_split=inputs["vacant_at_split"], **kwargs)


# ----------------------------------------------------------------------------------------------
# A/B arms
# ----------------------------------------------------------------------------------------------

# (client_id, bucket): sha256 of the id's decimal text, mod 100, worked out once with
# `python3 -c "import hashlib; print(int(hashlib.sha256(b'42').hexdigest(), 16) % 100)"` and
# never by the code under test. A change to the hashing moves clients between arms: these fail.
GOLDEN_BUCKETS = [(0, 5), (1, 15), (2, 61), (3, 78), (7, 49), (42, 53), (1000, 48), (123456, 22),
                  (987654321, 55), (2**31, 35), (2**62, 63), (2**63 - 1, 93), (-5, 3)]


def test_arms_of_golden_clients_follow_their_sha256_bucket():
    for client_id, bucket in GOLDEN_BUCKETS:
        assert abtest.bucket_for(client_id) == bucket, client_id
        assert abtest.arm_for(client_id) == ("treatment" if bucket < 50 else "control"), client_id
        assert abtest.arm_for(client_id, 20) == ("treatment" if bucket < 20 else "control"), client_id
    # the share's edge: bucket 49 is treated at 50% and not at 49%
    assert (abtest.arm_for(7, 50), abtest.arm_for(7, 49)) == ("treatment", "control")
    assert {abtest.arm_for(c, 0) for c, _ in GOLDEN_BUCKETS} == {"control"}
    assert {abtest.arm_for(c, 100) for c, _ in GOLDEN_BUCKETS} == {"treatment"}
    with pytest.raises(ValueError):
        abtest.arm_for(1, 101)


def test_arms_split_clients_at_the_configured_share():
    ids = range(1, 10_001)
    assert 0.45 <= sum(abtest.arm_for(i) == "treatment" for i in ids) / len(ids) <= 0.55
    assert 0.17 <= sum(abtest.arm_for(i, 20) == "treatment" for i in ids) / len(ids) <= 0.23


def test_a_new_experiment_reshuffles_the_clients():
    """The salt is the experiment's name: buckets are sha256("<name>:<id>") mod 100 (worked out here
    with hashlib), and two experiments put about half of the clients in different arms."""
    import hashlib

    first, second = abtest.Experiment("rec-a", 50), abtest.Experiment("rec-b", 50)
    assert abtest.bucket_for(42, first.salt) == int(hashlib.sha256(b"rec-a:42").hexdigest(), 16) % 100
    ids = range(1, 10_001)
    both_treated = sum(first.arm(i) == second.arm(i) == "treatment" for i in ids) / len(ids)
    assert 0.22 <= both_treated <= 0.28  # independent halves, not the same clients treated again
    assert sum(first.arm(i) != abtest.arm_for(i) for i in ids) > 4000  # the unsalted split is another one


def test_the_experiment_config_is_read_and_bad_ones_are_named(tmp_path, monkeypatch):
    from jobs.core.errors import BadInputError

    config = tmp_path / "experiments.toml"
    config.write_text('current = "b"\n[experiments.a]\ntreatment_share = 50\n'
                      '[experiments.b]\ntreatment_share = 20\nmin_detectable_lift = 0.1\n')
    monkeypatch.setenv("OSTAP_EXPERIMENTS", str(config))
    assert abtest.experiment() == abtest.Experiment("b", 20, 0.1)
    assert abtest.experiment("a").treatment_share == 50
    with pytest.raises(BadInputError, match="unknown experiment 'c'"):
        abtest.experiment("c")
    config.write_text('current = "a"\n[experiments.a]\ntreatment_share = 150\n')
    with pytest.raises(BadInputError, match="experiment a: treatment_share must be an integer within 0..100"):
        abtest.experiment()
    config.write_text('current = "a"\n[experiments.a]\nshare = 5\n')
    with pytest.raises(BadInputError, match=r"\[experiments.a\] has unknown keys share"):
        abtest.experiment()


def test_spark_arm_column_equals_python_arm(spark):
    rng = np.random.default_rng(3)
    ids = [c for c, _ in GOLDEN_BUCKETS] + rng.integers(1, 2**40, 2000).tolist()
    df = spark.createDataFrame([(int(i),) for i in ids] + [(None,)], "client_id bigint")
    rows = df.select("client_id", abtest.arm_column("client_id").alias("arm"),
                     abtest.arm_column("client_id", 30).alias("arm30"),
                     abtest.Experiment("exp-1", 30).arm_column("client_id").alias("salted"),
                     abtest.bucket_column("client_id").alias("bucket")).collect()
    for row in rows:
        if row.client_id is None:
            assert row.arm is None and row.bucket is None
            continue
        assert row.bucket == abtest.bucket_for(row.client_id)
        assert row.arm == abtest.arm_for(row.client_id)
        assert row.arm30 == abtest.arm_for(row.client_id, 30)
        assert row.salted == abtest.Experiment("exp-1", 30).arm(row.client_id)
    golden = {row.client_id: row.bucket for row in rows if row.client_id is not None}
    assert [(c, golden[c]) for c, _ in GOLDEN_BUCKETS] == GOLDEN_BUCKETS


# ----------------------------------------------------------------------------------------------
# Block scoring
# ----------------------------------------------------------------------------------------------

def test_block_top_k_matches_brute_force_ranking():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(53, 37)).astype(np.float32)
    allowed = rng.random((53, 37)) < 0.3

    def score(block):
        return scores[block]

    def mask(block):
        return allowed[block]

    small = top_k(score, mask, 53, 37, k=5, block_size=7, leads_k=4)
    large = top_k(score, mask, 53, 37, k=5, block_size=1024, leads_k=4)
    np.testing.assert_array_equal(small.items, large.items)
    np.testing.assert_array_equal(small.lead_users, large.lead_users)
    for u in range(53):
        candidates = [i for i in np.argsort(-scores[u], kind="stable") if allowed[u, i]][:5]
        assert [i for i in small.items[u] if i >= 0] == candidates
    for i in range(37):
        users = [u for u in np.argsort(-scores[:, i], kind="stable") if allowed[u, i]][:4]
        assert [u for u in small.lead_users[:, i] if u >= 0] == users


def test_block_top_k_breaks_ties_at_the_cut_by_the_lower_item():
    """Premises with the same features get the same feature-only score: which of them makes the
    list must not depend on argpartition's internals."""
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 3, size=(200, 60)).astype(np.float32)
    allowed = rng.random((200, 60)) < 0.8
    top = top_k(lambda b: scores[b], lambda b: allowed[b], 200, 60, k=7, block_size=64)
    for u in range(200):
        expected = [i for i in np.argsort(-scores[u], kind="stable") if allowed[u, i]][:7]
        assert top.items[u].tolist() == expected


# ----------------------------------------------------------------------------------------------
# Hard filters
# ----------------------------------------------------------------------------------------------

def _random_tenants(rng, n: int, start_id: int) -> pd.DataFrame:
    districts = list(DISTRICTS)
    lo = rng.uniform(10, 400, n)
    frame = pd.DataFrame({
        "client_id": np.arange(start_id, start_id + n, dtype=np.int64),
        "business_types": rng.choice(list(BUSINESS_TYPES), n),
        "districts": ["|".join(rng.choice(districts, rng.integers(0, 4), replace=False)) for _ in range(n)],
        "river_bank": rng.choice(["left", "right", "any", None], n),
        "scale": rng.choice(["small", "medium", "large"], n),
        "area_min": lo, "area_max": lo * rng.uniform(1.0, 4.0, n),
        "budget": rng.uniform(500, 20000, n), "manager_id": rng.integers(1, 13, n).astype(np.int32)})
    for column in ("area_min", "area_max", "budget"):  # some tenants leave a bound open
        frame.loc[rng.random(n) < 0.1, column] = np.nan
    return frame


def _violations(recs: pd.DataFrame, tenants: pd.DataFrame, premises: pd.DataFrame, cfg, rejected: set) -> list:
    """Independent check of every hard filter on every recommended pair (rows that break one)."""
    rows = recs[["user_id", "item_id"]].merge(
        tenants.rename(columns={"client_id": "user_id", "river_bank": "tenant_bank"}), on="user_id").merge(
        premises.rename(columns={"premise_id": "item_id"}), on="item_id")
    assert len(rows) == len(recs)
    broken = pd.Series(False, index=rows.index)
    if cfg.require_vacant:
        broken |= ~rows["vacant"].astype(bool)
    broken |= rows["area_min"].notna() & ~(rows["area"] >= rows["area_min"] * (1 - cfg.area_tolerance))
    broken |= rows["area_max"].notna() & ~(rows["area"] <= rows["area_max"] * (1 + cfg.area_tolerance))
    broken |= rows["budget"].notna() & ~(rows["price"] <= rows["budget"] * (1 + cfg.budget_tolerance))
    if cfg.match_district:
        wanted = rows["districts"].fillna("").str.split("|")
        broken |= np.array([bool([d for d in w if d]) and d not in w
                            for w, d in zip(wanted, rows["district"], strict=True)], dtype=bool)
    if cfg.match_river_bank:
        broken |= rows["tenant_bank"].notna() & (rows["tenant_bank"] != "any") & (
            rows["tenant_bank"] != rows["river_bank"])
    if cfg.exclude_rejected:
        broken |= np.array([(u, i) in rejected for u, i in zip(rows["user_id"], rows["item_id"], strict=True)],
                           dtype=bool)
    return rows.loc[broken, ["user_id", "item_id"]].values.tolist()


def test_hard_filter_edge_cases_by_hand():
    tenants = pd.DataFrame({
        "client_id": [1, 2, 3], "districts": ["podil|obolon", "", None], "river_bank": ["right", "any", None],
        "area_min": [100.0, np.nan, 50.0], "area_max": [200.0, np.nan, 60.0], "budget": [5000.0, np.nan, 1000.0]})
    premises = pd.DataFrame({
        "premise_id": [10, 11, 12, 13, 14],
        "area": [95.0, 215.0, np.nan, 150.0, 55.0], "price": [5400.0, 4000.0, 100.0, np.nan, 1000.0],
        "district": ["podil", "darnytsia", "podil", "obolon", "pechersk"],
        "river_bank": ["right", "left", "right", "right", "right"], "vacant": [True, True, True, True, None]})
    cfg = FilterConfig(area_tolerance=0.1, budget_tolerance=0.1, match_district=True,
                       match_river_bank=True)
    mask = HardFilters(tenants, premises, cfg).mask(np.arange(3))
    expected = np.array([
        # 10: area 95 >= 90, price 5400 <= 5500; 11: 215 <= 220 but darnytsia/left; 12: unknown area;
        # 13: unknown price; 14: vacancy unknown
        [True, False, False, False, False],
        [True, True, True, True, False],  # no bounds, any district, any bank; only vacancy binds
        [False, False, False, False, False],  # 50-60 m2: only 14 fits, and it is not known to be vacant
    ])
    np.testing.assert_array_equal(mask, expected)
    relaxed = FilterConfig(require_vacant=False, area_tolerance=0.0, budget_tolerance=0.0)
    mask = HardFilters(tenants, premises, relaxed).mask(np.arange(3))
    np.testing.assert_array_equal(mask[0], [False, False, False, False, False])
    np.testing.assert_array_equal(mask[2], [False, False, False, False, True])


def test_filters_are_never_violated(market_warehouse):
    inputs = market_warehouse["inputs"]
    events = inputs["events"]
    rejected = set(zip(events.loc[events["kind"].isin(REJECTED_KINDS), "user_id"],
                       events.loc[events["kind"].isin(REJECTED_KINDS), "item_id"], strict=True))
    assert rejected, "the market should contain rejected proposals"
    rng = np.random.default_rng(42)
    checked = 0
    for trial in range(5):
        cfg = FilterConfig(
            require_vacant=bool(trial != 2), area_tolerance=float(rng.choice([0.0, 0.1, 0.3])),
            budget_tolerance=float(rng.choice([0.0, 0.1, 0.25])), match_district=bool(rng.random() < 0.5),
            match_river_bank=bool(rng.random() < 0.5), exclude_rejected=bool(trial != 3))
        tenants = pd.concat([inputs["tenants"], _random_tenants(rng, 300, 100_000 + 1000 * trial)],
                            ignore_index=True)
        result = _agency(inputs, tenants=tenants, k=10, leads_k=5, filter_config=cfg, model_config=FAST)
        recs = result.recommendations
        assert set(recs["model"]) == {"lightfm", "baseline"}
        assert _violations(recs, tenants, inputs["premises"], cfg, rejected) == []
        leads = result.leads
        assert _violations(leads, tenants, inputs["premises"], cfg, rejected) == []
        checked += len(recs) + len(leads)
    assert checked > 20_000


def test_generated_deals_respect_the_tenants_criteria():
    """The demo generator signs deals inside the tenant's area range and budget (5% slack) apart
    from a small share of exceptions, so the 10% filters keep at least 90% of them."""
    import datetime as dt

    from jobs.generator import leasing
    from jobs.generator.cdc import Window
    from jobs.generator.generate import SCALES

    window = Window(first_day=(dt.date(2024, 1, 1) - dt.date(1970, 1, 1)).days, days=14)
    entities = {e.name: e for e in leasing.generate(window, SCALES["small"], np.random.default_rng([1, 3]))}
    tenants = pd.DataFrame(entities["tenants"].state)
    premises = pd.DataFrame(entities["premises"].state)
    deals = pd.DataFrame(entities["deals"].state)[["client_id", "premise_id"]]
    rows = deals.merge(tenants, on="client_id").merge(premises, on="premise_id")
    assert len(rows) == len(deals) >= 200
    inside = ((rows["area"] >= rows["area_min"] * 0.9) & (rows["area"] <= rows["area_max"] * 1.1)
              & (rows["price"] <= rows["budget"] * 1.1))
    assert inside.mean() >= 0.9, inside.mean()
    assert inside.mean() < 1.0  # the documented exceptions exist


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

def _assert_lightfm_clearly_better(result):
    lightfm, baseline = result.metrics["lightfm"], result.metrics["baseline"]
    assert lightfm["users_evaluated"] >= 100
    # Both are scored on the same tenants, over the same candidates (filters as of the split), on
    # events after the split they never trained on. The hidden preference rewards business-type /
    # premise-type fit, districts and a latent taste, which only the hybrid model can learn.
    assert lightfm["recall"] >= baseline["recall"] * 1.1 and lightfm["recall"] - baseline["recall"] >= 0.03, (
        lightfm, baseline)
    assert lightfm["ndcg"] > baseline["ndcg"]


def test_lightfm_beats_baseline_on_recall(market_warehouse):
    oracle = oracle_scorer(market_warehouse["market"])
    result = _agency(market_warehouse["inputs"], k=10, reference_scorers={"oracle": oracle})
    _assert_lightfm_clearly_better(result)
    metrics = set(result.evaluation["metric"])
    assert {"precision", "recall", "ndcg", "map", "coverage", "pilot_miss_share"} <= metrics
    # The reference is evaluated on the same users but neither served nor published ...
    assert set(result.evaluation["model"]) == {"lightfm", "baseline"}
    assert set(result.recommendations["model"]) == {"lightfm", "baseline"}
    reference = result.metrics["references"]["oracle"]
    assert reference["users_evaluated"] == result.metrics["lightfm"]["users_evaluated"]
    # ... and on this small market, ranking by the generator's own preference beats the model
    # learnt from its events (at 50,000 x 20,000 exposure dominates and the two are level).
    assert reference["recall"] > result.metrics["lightfm"]["recall"], (reference, result.metrics["lightfm"])


@pytest.mark.parametrize("seed", [2, 3])
def test_lightfm_beats_baseline_on_other_markets(spark, seed):
    """The margin is not one lucky market: two more seeds, events through the same SQL."""
    market = synthetic_market(n_tenants=1000, n_premises=400, start=START, days=120, seed=seed)
    events = recommend.market_events(spark, market, DS)
    result = recommend_agency(tenants=market["tenants"], premises=market["premises"],
                              managers=market["managers"], events=events, ds=DS, k=10, leads_k=0)
    _assert_lightfm_clearly_better(result)


def test_history_boost_lists_engaged_premises_first_then_lightfm_order(market_warehouse):
    """ModelConfig.history_boost=inf (the default): premises the tenant already viewed or was proposed
    come first, the rest keep LightFM's own order; 0 gives LightFM alone. The model is the same
    (same seed, one thread): only the ranking differs. (test_filters_are_never_violated runs with
    the boost: a rejected premise the tenant also viewed is still never offered.)"""
    inputs = market_warehouse["inputs"]
    config = ModelConfig(epochs=10, num_threads=1)
    boosted = _agency(inputs, k=10, leads_k=0, model_config=config).recommendations.query("model == 'lightfm'")
    plain = _agency(inputs, k=10, leads_k=0, model_config=dataclasses.replace(config, history_boost=0.0))
    plain = plain.recommendations.query("model == 'lightfm'")
    events = inputs["events"]
    engaged = events[events["weight"] > 0].groupby("user_id")["item_id"].agg(set)
    plain_lists = plain.sort_values("rank").groupby("user_id")["item_id"].agg(list)
    lifted = reordered = 0
    for user, items in boosted.sort_values("rank").groupby("user_id")["item_id"]:
        items = items.tolist()
        seen = engaged.get(user, set())
        flags = [item in seen for item in items]
        assert flags == sorted(flags, reverse=True), (user, items)  # engaged premises form a prefix
        rest = [item for item in items if item not in seen]
        plain_rest = [item for item in plain_lists[user] if item not in seen]
        assert rest == plain_rest[:len(rest)], (user, items, plain_lists[user])
        lifted += sum(flags)
        reordered += items != plain_lists[user]
    assert lifted >= 200 and reordered >= 100, (lifted, reordered)


def test_finite_history_boost_adds_standard_deviations_of_the_score():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    weights = sp.csr_matrix((rng.random((40, 30)) < 0.15).astype(np.float32))
    features_u = sp.identity(40, format="csr", dtype=np.float32)
    features_i = sp.identity(30, format="csr", dtype=np.float32)
    model = fit_lightfm(weights, features_u, features_i, ModelConfig(epochs=3, no_components=4))
    users = np.arange(40)
    raw = LightFMScorer(model, features_u, features_i)(users)
    half = LightFMScorer(model, features_u, features_i, weights, 0.5)(users)
    first = LightFMScorer(model, features_u, features_i, weights, float("inf"))(users)
    seen = weights.toarray() > 0
    np.testing.assert_allclose(half - raw, np.where(seen, 0.5 * raw.std(), 0.0), rtol=1e-4, atol=1e-4)
    for row, mask in zip(first, seen, strict=True):
        if mask.any() and (~mask).any():
            assert row[mask].min() > row[~mask].max()


def test_outcomes_known_only_after_the_split_do_not_train_the_evaluation_model():
    split = pd.Timestamp("2026-03-31")
    events = pd.DataFrame({
        "user_id": [1, 1, 1, 2], "item_id": [10, 11, 12, 10],
        "ts": pd.to_datetime(["2026-03-29", "2026-03-20", "2026-03-29", "2026-03-30"]),
        "weight": [8.0, 8.0, 3.0, 1.0],
        "kind": ["proposal_deal", "proposal_deal", "proposal_viewed", "page_view"],
        # the first deal came after the split; the second before it
        "outcome_at": pd.to_datetime(["2026-04-02", "2026-03-25", "2026-03-29", "2026-03-30"])})
    known = as_known_at(events, split)
    assert known["kind"].tolist() == ["proposal_shown", "proposal_deal", "proposal_viewed", "page_view"]
    assert known["weight"].tolist() == [0.5, 8.0, 3.0, 1.0]


def test_cold_start_tenant_is_scored_through_features(market_warehouse):
    inputs = market_warehouse["inputs"]
    districts = "|".join(DISTRICTS)
    cold = pd.DataFrame({
        "client_id": [900_001, 900_002], "business_types": ["office", "warehouse"],
        "districts": [districts, districts], "river_bank": ["any", "any"], "scale": ["large", "large"],
        "area_min": [80.0, 80.0], "area_max": [1200.0, 1200.0], "budget": [60_000.0, 60_000.0],
        "manager_id": np.array([1, 1], dtype=np.int32)})
    tenants = pd.concat([inputs["tenants"], cold], ignore_index=True)
    result = _agency(inputs, tenants=tenants, k=10)
    premises = inputs["premises"].set_index("premise_id")
    lists = result.recommendations.query("model == 'lightfm'")
    office = lists[lists["user_id"] == 900_001]["item_id"].tolist()
    warehouse = lists[lists["user_id"] == 900_002]["item_id"].tolist()
    assert len(office) == 10 and len(warehouse) == 10
    assert office != warehouse
    # Both tenants pass the same candidates; the lists follow each one's business type.
    candidates = premises[premises["vacant"] & premises["area"].between(72, 1320) & (premises["price"] <= 66_000)]
    base_office = (candidates["premise_type"] == "office").mean()
    base_warehouse = (candidates["premise_type"] == "warehouse").mean()
    assert (premises.loc[office, "premise_type"] == "office").mean() > max(0.5, base_office)
    assert (premises.loc[warehouse, "premise_type"] == "warehouse").mean() > max(0.5, base_warehouse)


def test_fixed_seed_with_one_thread_gives_identical_lists(market_warehouse):
    inputs = market_warehouse["inputs"]
    config = ModelConfig(epochs=10, random_state=7, num_threads=1)
    first = _agency(inputs, k=10, model_config=config)
    second = _agency(inputs, k=10, model_config=config)
    pd.testing.assert_frame_equal(first.recommendations, second.recommendations)
    pd.testing.assert_frame_equal(first.leads, second.leads)
    pd.testing.assert_frame_equal(first.evaluation, second.evaluation)


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------

def _published(spark, name: str, ds: str = DS) -> pd.DataFrame:
    return storage.read_partition(spark, TABLES[name], ds, wh()).toPandas()


def test_command_publishes_lists_leads_eval_and_model_and_reruns_identically(spark, in_market, capsys):
    root = in_market["root"]
    argv = ["recommend", "--ds", DS, "--warehouse", root, "--k", "10", "--epochs", "10"]
    assert cli.main(argv) == 0
    assert "lightfm: recall@10=" in capsys.readouterr().out
    recs = _published(spark, "marts.recommendations")
    leads = _published(spark, "marts.premise_leads")
    evaluation = _published(spark, "marts.rec_eval")

    tenants = in_market["inputs"]["tenants"]
    assert set(recs["model"]) == {"lightfm", "baseline"}
    # Every tenant with at least one candidate has a list from both models.
    per_user_models = recs.groupby("user_id")["model"].nunique()
    assert (per_user_models == 2).all() and len(per_user_models) >= 0.9 * len(tenants)
    for _, group in recs.groupby(["user_id", "model"]):
        assert group["rank"].sort_values().tolist() == list(range(1, len(group) + 1))
        assert group.sort_values("rank")["score"].is_monotonic_decreasing
    assert (recs.groupby("user_id")["arm"].nunique() == 1).all()
    assert all(recs["arm"] == [abtest.experiment().arm(u) for u in recs["user_id"]])
    vacant = set(in_market["inputs"]["premises"].query("vacant")["premise_id"])
    assert set(recs["item_id"]) <= vacant and set(leads["item_id"]) <= vacant
    assert leads.groupby("item_id")["rank"].max().max() <= 10
    assert {"lightfm", "baseline"} == set(evaluation["model"]) and (evaluation["k"] == 10).all()

    model_dir = recommend.model_dir(DS, root)
    with open(os.path.join(model_dir, "metrics.json")) as fh:
        metrics = json.loads(fh.read(), parse_constant=lambda name: pytest.fail(f"metrics.json is not strict JSON: {name}"))
    assert metrics["mode"] == "agency" and metrics["lightfm"]["recall"] > 0
    assert metrics["model_config"]["history_boost"] == "inf"
    with open(os.path.join(model_dir, "model.pkl"), "rb") as fh:
        artifact = pickle.load(fh)
    assert len(artifact["item_ids"]) == len(in_market["inputs"]["premises"])
    job_metrics = _published(spark, "dq.job_metrics")
    assert "recommend" in set(job_metrics["job"])

    assert cli.main(argv) == 0  # rerun: the same rows
    again = _published(spark, "marts.recommendations")
    key = ["user_id", "model", "rank"]
    pd.testing.assert_frame_equal(recs.sort_values(key, ignore_index=True), again.sort_values(key, ignore_index=True))


def test_missing_snapshot_is_a_one_line_error(spark, warehouse, capsys):
    assert cli.main(["recommend", "--ds", "2026-05-01", "--warehouse", str(warehouse)]) == 2
    err = capsys.readouterr().err
    assert "ods.tenants has no published partition ds=2026-05-01" in err and len(err.strip().splitlines()) == 1


def _generic_log(tmp_path, rng):
    """Two user groups, each liking one half of the items; weights 1-3; timestamps over 60 days."""
    rows = []
    for user in range(1, 201):
        group = user % 2
        liked = rng.choice(np.arange(1 + group * 50, 51 + group * 50), 8, replace=False)
        for item in liked:
            rows.append((user, int(item), int(rng.integers(1, 4)),
                         pd.Timestamp("2026-03-01") + pd.Timedelta(days=int(rng.integers(0, 60)))))
    log = pd.DataFrame(rows, columns=["user_id", "item_id", "weight", "ts"])
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    items = pd.DataFrame({"item_id": np.arange(1, 101), "genre": np.where(np.arange(1, 101) <= 50, "a", "b")})
    items_path = tmp_path / "items.csv"
    items.to_csv(items_path, index=False)
    return log, str(path), str(items_path)


def test_generic_mode_on_a_csv_log(spark, warehouse, tmp_path):
    log, path, items_path = _generic_log(tmp_path, np.random.default_rng(5))
    argv = ["recommend", "--ds", "2026-04-30", "--warehouse", str(warehouse), "--interactions", path,
            "--items", items_path, "--exclude-seen", "--k", "5", "--epochs", "10"]
    assert cli.main(argv) == 0
    recs = _published(spark, "marts.recommendations", "2026-04-30")
    assert set(recs["model"]) == {"lightfm", "baseline"}
    assert set(recs["user_id"]) == set(log["user_id"])
    assert recs.groupby(["user_id", "model"]).size().max() == 5
    seen = set(zip(log["user_id"], log["item_id"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user_id"], recs["item_id"], strict=True))
    # The hybrid model keeps each group within its half of the catalogue.
    lightfm = recs[recs["model"] == "lightfm"]
    same_half = ((lightfm["item_id"] > 50).astype(int) == (lightfm["user_id"] % 2)).mean()
    assert same_half > 0.9
    evaluation = _published(spark, "marts.rec_eval", "2026-04-30")
    assert {"precision", "recall", "ndcg", "map", "coverage"} <= set(evaluation["metric"])


def test_generic_mode_refuses_non_integer_ids(spark, warehouse, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"user_id": ["u1", "u2"], "item_id": [1, 2]}).to_csv(path, index=False)
    argv = ["recommend", "--ds", "2026-04-30", "--warehouse", str(warehouse), "--interactions", str(path)]
    assert cli.main(argv) == 2
    assert "column user_id must hold integer ids" in capsys.readouterr().err
