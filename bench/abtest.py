"""Benchmark of the A/B readout's statistics (jobs.abtest.statistics), over many seeds.

    .venv/bin/python bench/abtest.py [--seeds 20] [--clients 20000] [--base 0.05] [--lift 0.2]
                                     [--market-scale medium] [--days 28] [--visit-rate 0.3] [--no-market]

The statistics run in-process on simulated clients (the loop itself is `ostap abtest simulate`,
tested end to end in tests/test_abtest.py); each seed is one experiment of --clients clients split
by the configured experiment's hash:

- coverage: a known relative --lift on a --base signing rate; how often the 95% interval of the
  lift (signed_any_share) holds it (target >= 90%);
- A/A: no lift; how often p < 0.05 (target <= 10%);
- sample-ratio alarms (chi-square p < 0.001) with 10% of the treatment clients' exposures lost
  (target 20 of 20) and with none lost (target at most 1 of 20);
- days to detect, on the demo market: `ostap generate --scale medium` is snapshotted and the real
  recommend job publishes both lists; each tenant's chance to sign per visit under each list comes
  from the generator's hidden preferences (as `ostap abtest simulate` draws it); then every seed
  simulates --days days of visits and reads the cumulative test out each day: the first day with
  p < 0.05 on signed_any_share (and the lift's interval above 0) is the day it detects LightFM's
  real effect.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jobs.abtest import statistics  # noqa: E402
from jobs.core import abtest  # noqa: E402


def clients_frame(ids: np.ndarray, arms: np.ndarray, signed: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"client_id": ids, "arm": arms, "arms_logged": 1, "signed_any": signed.astype(int),
                         "signed_shown": signed.astype(int), "rent_signed": signed * 1000.0})


def metric(rows: list[dict], name: str, arm: str) -> dict:
    return next(r for r in rows if r["metric"] == name and r["arm"] == arm)


def statistics_figures(args, experiment: abtest.Experiment) -> dict:
    covered = aa_positive = srm_dropped = srm_clean = 0
    for seed in range(args.seeds):
        rng = np.random.default_rng([seed, 29])
        ids = np.arange(1, args.clients + 1) + seed * 10_000_000
        arms = np.array([experiment.arm(int(i)) for i in ids])
        treated = arms == abtest.TREATMENT
        signed = rng.random(args.clients) < np.where(treated, args.base * (1 + args.lift), args.base)
        lift = metric(statistics.readout(clients_frame(ids, arms, signed), experiment, revenue=False),
                      "signed_any_share", "lift")
        covered += lift["ci_low"] <= args.lift <= lift["ci_high"]
        aa = rng.random(args.clients) < args.base
        clean = statistics.readout(clients_frame(ids, arms, aa), experiment, revenue=False)
        aa_positive += metric(clean, "signed_any_share", "diff")["p_value"] < 0.05
        srm_clean += "sample_ratio_mismatch" in metric(clean, "treatment_share", "all")["flags"]
        kept = ~treated | (rng.random(args.clients) >= 0.10)  # 10% of treatment exposures lost
        dropped = statistics.readout(clients_frame(ids[kept], arms[kept], aa[kept]), experiment, revenue=False)
        srm_dropped += "sample_ratio_mismatch" in metric(dropped, "treatment_share", "all")["flags"]
    return {"coverage": covered / args.seeds, "aa_fp": aa_positive / args.seeds, "srm_dropped": srm_dropped,
            "srm_clean": srm_clean}


def market_probabilities(args, root: str, experiment: abtest.Experiment) -> pd.DataFrame:
    """Per tenant of the demo market: its arm and its chance to sign per visit under each list."""
    import datetime as dt

    from jobs.core.run import RunContext
    from jobs.core.spark import get_spark
    from jobs.core.tables import TABLES
    from jobs.generator import generate
    from jobs.local.abtest_simulate import SOURCES, Market
    from jobs.ods_snapshot.snapshot import build_snapshot
    from jobs.recommendations import recommend
    from jobs.serving import serving

    spark = get_spark("bench-abtest", master="local[2]")
    hidden: dict = {}
    started = time.perf_counter()
    generate.generate_demo(root, "2024-01-01", args.history_days, 42, args.market_scale, hidden=hidden)
    d0 = (dt.date(2024, 1, 1) + dt.timedelta(days=args.history_days - 1)).isoformat()
    for entity in SOURCES:
        build_snapshot(spark, entity, RunContext.create(warehouse=root, ds=d0, job="snapshot"), mode="full")
    recommend.run_agency(spark, RunContext.create(warehouse=root, ds=d0, job="recommend"), experiment=experiment)
    print(f"demo market ({args.market_scale}) generated, snapshotted and recommended in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    market = Market(hidden, root, d0, spark, types.SimpleNamespace(sign_rate=args.sign_rate, lift=0.0),
                    np.random.default_rng(0))
    recs = serving.read_published(TABLES["marts.recommendations"], d0, root)
    popular = serving.popular_list(recs)["item_id"].head(10).tolist()
    lists = {model: frame.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].apply(list).to_dict()
             for model, frame in recs.groupby("model")}
    rows = []
    for client_id in market.client_ids:
        chance = {}
        for model in ("lightfm", "baseline"):
            shown = [i for i in lists[model].get(client_id, popular) if i in market.vacant]
            p = market.sign_probabilities(int(client_id), shown, treated=False) if shown else np.zeros(0)
            chance[model] = 1 - np.prod(1 - p)  # the first shown premise the tenant signs ends the visit
        rows.append((client_id, experiment.arm(int(client_id)), chance["lightfm"], chance["baseline"]))
    return pd.DataFrame(rows, columns=["client_id", "arm", "p_lightfm", "p_baseline"])


def days_to_detect(args, probabilities: pd.DataFrame, experiment: abtest.Experiment, aa: bool = False) -> list[float]:
    """Per seed, the first day the cumulative test finds a lift (p < 0.05, interval off 0 on
    either side with `aa`, where both arms get the baseline's list: a false alarm of daily peeks)."""
    treated = (probabilities["arm"] == abtest.TREATMENT).to_numpy()
    chance = np.where(treated & (not aa), probabilities["p_lightfm"], probabilities["p_baseline"])
    ids, arms = probabilities["client_id"].to_numpy(), probabilities["arm"].to_numpy()
    found = []
    for seed in range(args.seeds):
        rng = np.random.default_rng([seed, 31])
        exposed = np.zeros(len(ids), dtype=bool)
        signed = np.zeros(len(ids), dtype=bool)
        day_found = float("nan")
        for day in range(1, args.days + 1):
            visits = rng.random(len(ids)) < args.visit_rate
            exposed |= visits
            signed |= visits & ~signed & (rng.random(len(ids)) < chance)
            rows = statistics.readout(clients_frame(ids[exposed], arms[exposed], signed[exposed]), experiment,
                                      revenue=False)
            lift = metric(rows, "signed_any_share", "lift")
            off_zero = lift["ci_low"] is not None and (lift["ci_low"] > 0 or (aa and lift["ci_high"] < 0))
            if lift["p_value"] is not None and lift["p_value"] < 0.05 and off_zero:
                day_found = day
                break
        found.append(day_found)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--base", type=float, default=0.05)
    parser.add_argument("--lift", type=float, default=0.2)
    parser.add_argument("--market-scale", default="medium")
    parser.add_argument("--history-days", type=int, default=14)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--visit-rate", type=float, default=0.3)
    parser.add_argument("--sign-rate", type=float, default=None, help="default: ostap abtest simulate's")
    parser.add_argument("--no-market", action="store_true", help="the statistics only (no demo market)")
    parser.add_argument("--market-cache", metavar="PATH",
                        help="Parquet of the market's per-tenant chances: read if it exists, else written")
    args = parser.parse_args()
    experiment = abtest.experiment()
    if args.sign_rate is None:
        from jobs.local.abtest_simulate import DEFAULT_SIGN_RATE

        args.sign_rate = DEFAULT_SIGN_RATE
    started = time.perf_counter()
    figures = statistics_figures(args, experiment)
    print(f"statistics over {args.seeds} seeds x {args.clients:,} clients ({time.perf_counter() - started:.0f} s):")
    print(f"  coverage of a +{args.lift:.0%} lift by the 95% interval: {figures['coverage']:.0%} (target >= 90%)")
    print(f"  A/A false positives at p < 0.05: {figures['aa_fp']:.0%} (target <= 10%)")
    print(f"  sample-ratio alarms, 10% of treatment exposures lost: {figures['srm_dropped']} of {args.seeds} "
          f"(target all); none lost: {figures['srm_clean']} of {args.seeds} (target <= {max(1, args.seeds // 20)})")
    if args.no_market:
        return 0
    if args.market_cache and os.path.exists(args.market_cache):
        probabilities = pd.read_parquet(args.market_cache)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-abtest-") as root:
            probabilities = market_probabilities(args, root, experiment)
        if args.market_cache:
            probabilities.to_parquet(args.market_cache)
    mean_l, mean_b = probabilities["p_lightfm"].mean(), probabilities["p_baseline"].mean()
    found = days_to_detect(args, probabilities, experiment)
    detected = [d for d in found if d == d]
    print(f"demo market: {len(probabilities):,} tenants; chance to sign per visit lightfm {mean_l:.4f} vs baseline "
          f"{mean_b:.4f} (real lift {mean_l / mean_b - 1:+.1%}); visit rate {args.visit_rate}/day")
    median = f"median {np.median(detected):.0f} days" if detected else "never"
    print(f"  days to detect it (p < 0.05, lift interval above 0): {median}; detected within {args.days} days "
          f"in {len(detected)} of {args.seeds} seeds; days: {found}")
    false_alarms = [d for d in days_to_detect(args, probabilities, experiment, aa=True) if d == d]
    print(f"  A/A on the same market, read out every day for {args.days} days: a 'significant' lift on some day "
          f"in {len(false_alarms)} of {args.seeds} seeds (the price of peeking daily at p < 0.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
