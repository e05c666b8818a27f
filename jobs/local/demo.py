"""`ostap demo`: the README's main command. Generates demo sources and runs the whole pipeline
on them through the real Airflow DAGs (`airflow dags test`, LocalExecutor), then prints a
summary: every published table with its rows per date, the data-quality verdicts, the wall
time of each DAG run and the path of each run report.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time

from jobs.core import config
from jobs.core.errors import OstapError

HELP = "generate demo sources and run the whole pipeline on them through the Airflow DAGs"

# The demo replays the last days of the generated period; the forecast runs on the 1st of a month.
DEFAULT_START = "2024-05-18"
DEFAULT_DAYS = 15  # through 2024-06-01


def add_arguments(parser) -> None:
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "large"],
                        help="size of the generated sources (default medium, about 1M change rows)")
    parser.add_argument("--start", default=DEFAULT_START, help=f"first generated day (default {DEFAULT_START})")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"generated days (default {DEFAULT_DAYS})")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=2,
                        help="how many of the last generated dates to run the daily DAGs for (default 2)")
    parser.add_argument("--spark-tasks", default="connect", choices=["connect", "spark-submit"],
                        help="run the Spark tasks on one warm Spark Connect server (default) or each through "
                             "spark-submit with a driver of its own")
    parser.add_argument("--generate-only", action="store_true", help="only generate the sources and report them")
    parser.add_argument("--keep", action="store_true",
                        help="keep an existing warehouse instead of regenerating it from scratch")


def demo_dates(start: str, days: int, runs: int) -> list[str]:
    first = dt.date.fromisoformat(start)
    last = first + dt.timedelta(days=days - 1)
    return [(last - dt.timedelta(days=i)).isoformat() for i in reversed(range(min(runs, days)))]


def run(args, ctx) -> int:
    from jobs.generator import generate

    root = ctx.warehouse
    if not config.is_local(root):
        raise OstapError(f"the demo writes a local warehouse; OSTAP_WAREHOUSE is {root}")
    if args.days < 1 or args.runs < 1:
        raise OstapError("--days and --runs must be at least 1")
    if os.path.isdir(root) and not args.keep:
        shutil.rmtree(root)
    started = time.monotonic()
    print(f"ostap demo: generating {args.scale} demo sources into {root} "
          f"({args.days} days from {args.start}, seed {args.seed})", flush=True)
    counts = generate.generate_demo(root, args.start, args.days, args.seed, args.scale)
    from jobs.warehouse.catalog import format_table

    print(format_table(["entity", "change rows"], sorted(counts.items()) + [("total", sum(counts.values()))]))
    print(f"generated in {time.monotonic() - started:.1f} s", flush=True)
    if args.generate_only:
        return 0
    from jobs.local import pipeline

    return pipeline.run_dates(demo_dates(args.start, args.days, args.runs), root, spark_tasks=args.spark_tasks)
