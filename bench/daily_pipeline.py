"""Benchmark of the daily pipeline through Airflow: a driver per task (spark-submit) against one warm
Spark Connect server, side by side in one run, on the same generated sources.

    .venv/bin/python bench/daily_pipeline.py [--scale medium] [--dates 2] [--paths spark-submit,connect]

The demo sources (bench/out/data/daily-<scale>, made once) end on 2024-06-01; the dates run are the
last `--dates` days before it (no 1st of a month: the monthly forecast is measured apart, bench/forecast.py).
For each path, in a fresh warehouse (the raw sources linked in) and a fresh Airflow home, the three daily
DAGs (ods_snapshot_daily, scoring_targets_daily, recommendations_daily) run for each date in turn through
`airflow dags test` (LocalExecutor, OSTAP_AIRFLOW_PARALLELISM tasks at once), exactly as `ostap demo` runs
them: the snapshots, then the targets and the recommendations at once (both wait only on the
snapshots); the first date's snapshots are full rebuilds (no state yet), the next ones incremental.
Printed: each DAG run's seconds per path, the daily pipeline's wall time per date (target: <= 150 s
on 2 cores), the wall time of each path (the Connect server's start included) and the speed-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BENCH_DIR = Path(__file__).resolve().parent / "out"
LAST_DAY = "2024-06-01"
DAILY = ["ods_snapshot_daily", "scoring_targets_daily", "recommendations_daily"]
TARGET_S = 150.0


def sources(scale: str) -> Path:
    from jobs.generator.generate import generate_demo
    from jobs.local.demo import DEFAULT_DAYS, DEFAULT_START

    root = BENCH_DIR / "data" / f"daily-{scale}"
    if not (root / "raw").is_dir() or not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        generate_demo(str(root), DEFAULT_START, DEFAULT_DAYS, 42, scale)
        (root / ".complete").touch()
    return root


def run_path(path: str, data: Path, dates: list[str], work: Path) -> dict:
    """The daily DAGs of `dates` on one path, in a warehouse and Airflow home of their own."""
    from jobs.local import airflow_local, pipeline, redis_local

    root, home = work / path / "warehouse", work / path / "airflow"
    shutil.rmtree(work / path, ignore_errors=True)
    (root / "raw").mkdir(parents=True)
    for entity in (data / "raw").iterdir():
        os.symlink(entity, root / "raw" / entity.name)
    env = airflow_local.airflow_env(home=home, warehouse=str(root))
    env["OSTAP_TASK_RETRIES"] = "0"
    airflow_local.migrate(env)
    airflow_local.serving_redis(env)
    print(f"\n== {path}", flush=True)
    try:
        timings, total, walls = pipeline.run_plan(pipeline.plan(dates), env, spark_tasks=path)
    finally:
        redis_local.stop(airflow_local.redis_dir(env))
    return {"timings": timings, "total_s": total, "daily_s": walls}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--dates", type=int, default=2, help="how many days before 2024-06-01 to run (default 2)")
    parser.add_argument("--paths", default="spark-submit,connect")
    parser.add_argument("--work", default=str(BENCH_DIR / "daily_pipeline"))
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    last = dt.date.fromisoformat(LAST_DAY)
    dates = [str(last - dt.timedelta(days=i)) for i in range(args.dates, 0, -1)]
    started = time.monotonic()
    data = sources(args.scale)
    print(f"{args.scale} sources in {data} ({time.monotonic() - started:.0f} s); dates {', '.join(dates)}; "
          f"{os.cpu_count()} cores", flush=True)
    results = {path: run_path(path, data, dates, Path(args.work)) for path in args.paths.split(",")}

    paths = list(results)
    print("\nDAG run seconds (through `airflow dags test`):")
    print(f"{'dag':<24} {'ds':<11} " + " ".join(f"{p:>13}" for p in paths))
    for ds in dates:
        for dag in DAILY:
            cells = [next(s for d, day, s in results[p]["timings"] if d == dag and day == ds) for p in paths]
            print(f"{dag:<24} {ds:<11} " + " ".join(f"{c:13.1f}" for c in cells))
        daily = [results[p]["daily_s"][ds] for p in paths]
        print(f"{'daily pipeline (wall)':<24} {ds:<11} " + " ".join(f"{c:13.1f}" for c in daily)
              + f"   (target <= {TARGET_S:.0f} s)")
    print(f"{'wall, engine start incl.':<36} " + " ".join(f"{results[p]['total_s']:13.1f}" for p in paths))
    if len(paths) == 2:
        a, b = (results[p]["total_s"] for p in paths)
        print(f"{paths[1]} / {paths[0]}: {b / a:.2f} of the wall time")
    out = Path(args.work) / "results.json"
    out.write_text(json.dumps({"scale": args.scale, "dates": dates, "results": results}, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
