"""Benchmark of `ostap recommend`: train and score time for 50,000 tenants x 20,000 premises at k=10,
and the offline metrics of both models.

    .venv/bin/python bench/recommend.py [--tenants 50000] [--premises 20000] [--k 10] [--threads 1]
        [--history-boost inf]

The market is jobs.recommendations.synthetic_market (a hidden preference model; see its docstring);
an "oracle" row ranks by that hidden preference (not knowing which premises were shown, it is a
reference, not a ceiling: at 50,000 x 20,000 the history-aware LightFM matches it on recall).
Its ods snapshots are written into a temporary warehouse, then the job runs its own path:
Spark reads the snapshots and runs sql/recommendations/rec_interactions.sql, the driver trains LightFM twice
(the evaluation model on events before ds - 30 days, the served model on everything), scores
every tenant against every premise in blocks with the hard filters applied before ranking, and
Spark publishes the three marts. Figures are wall-clock seconds on this machine.

Metrics (both models, same tenants, same candidates: the hard filters as of the split): precision,
recall, NDCG, MAP @k and catalogue coverage on the relevant events after the split; "pilot miss"
is the share of (tenant, premise) pairs of deals signed after the split that the filters drop or
the model ranks below k; "filter-only miss" is the part the filters alone drop (the same for both).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from jobs.core.run import RunContext  # noqa: E402
from jobs.recommendations import recommend  # noqa: E402
from jobs.recommendations.model import MODELS, ModelConfig  # noqa: E402
from jobs.recommendations.synthetic_market import oracle_scorer  # noqa: E402

DS = "2026-04-30"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=50_000)
    parser.add_argument("--premises", type=int, default=20_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=ModelConfig.epochs)
    parser.add_argument("--history-boost", type=float, default=ModelConfig.history_boost,
                        help="ModelConfig.history_boost (inf: seen premises first; 0: LightFM alone)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary warehouse")
    args = parser.parse_args(argv)

    root = tempfile.mkdtemp(prefix="ostap_bench_rec_")
    run = RunContext.create(warehouse=root, ds=DS)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from jobs.core.spark import get_spark

    spark = get_spark("ostap-bench-recommend", master=args.master, warehouse=root,
                      conf={"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "4"})
    try:
        started = time.perf_counter()
        market = recommend.publish_synthetic_market(spark, run, n_tenants=args.tenants, n_premises=args.premises,
                                                    start="2026-01-01", days=120, seed=args.seed)
        publish_s = time.perf_counter() - started
        model = ModelConfig(epochs=args.epochs, num_threads=args.threads,
                            history_boost=args.history_boost)
        started = time.perf_counter()
        result = recommend.run_agency(spark, run, k=args.k, model=model,
                                      reference_scorers={"oracle": oracle_scorer(market)})
        job_s = time.perf_counter() - started
    finally:
        spark.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    m = result.metrics
    t = m["timings_s"]
    print(f"market: {args.tenants:,} tenants x {args.premises:,} premises, {m['events']:,} events "
          f"({m['train_events']:,} train / {m['test_events']:,} test), {m['vacant_premises']:,} vacant; "
          f"generated and published as ods in {publish_s:.1f} s")
    print(f"job total {job_s:.1f} s: read+SQL {t['read_s']:.1f} s | "
          f"train (served model) {t['train_s']:.1f} s | score lightfm {t['score_lightfm_s']:.1f} s "
          f"(k={args.k}, incl. top-10 leads per premise) | score baseline {t['score_baseline_s']:.1f} s | "
          f"eval train {t['eval_train_s']:.1f} s | eval scoring "
          f"{t['eval_score_lightfm_s'] + t['eval_score_baseline_s']:.1f} s | publish 3 marts (GX gate incl.) "
          f"{t['publish_s']:.1f} s")
    print(f"{'model':<10}{'prec@k':>9}{'recall@k':>10}{'ndcg@k':>9}{'map@k':>9}{'coverage':>10}{'pilot miss':>12}"
          f"{'filter-only miss':>18}")
    nan = float("nan")
    for name, v in [*((name, m[name]) for name in MODELS), ("oracle", m["references"]["oracle"])]:
        print(f"{name:<10}{v['precision']:>9.4f}{v['recall']:>10.4f}{v['ndcg']:>9.4f}{v['map']:>9.4f}"
              f"{v['coverage']:>10.4f}{v.get('pilot_miss_share', nan):>12.3f}"
              f"{v.get('pilot_dropped_by_filters', nan):>18.3f}")
    print(json.dumps({"tenants": args.tenants, "premises": args.premises, "k": args.k, "threads": args.threads,
                      "history_boost": str(args.history_boost),
                      "job_s": round(job_s, 1), "timings_s": t,
                      "metrics": {name: m[name] for name in MODELS},
                      "oracle": m["references"]["oracle"]}, default=float))
    print("oracle: the same filters, users and candidates ranked by the market's hidden utility (the generator's "
          "own preference, before its choice noise and without knowing which premises were shown)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
