"""Benchmark of the driver JVM's class-data-sharing archive (`ostap jvm-archive`): cold Spark tasks.

    .venv/bin/python bench/jvm_archive.py [--rounds 3] [--scale small] [--days 4]

Every Airflow task starts a new driver JVM, so what the archive saves is paid by every task.
On a generated replica (bench/out/data/jvm-archive-<scale>-<days>d, made once), each round runs,
in a fresh process each and in alternating order (this machine is noisy; only pairs compare):

  session  a Spark session started and one query answered, as the first lines of any job
  snapshot `ostap snapshot --entity clients --ds <last day>` through the CLI (incremental, the
           Great Expectations gate included), as the daily DAG's task runs it

once with the archive (jobs.core.spark.driver_java_options()) and once without (DRIVER_JAVA_OPTIONS),
and prints each run, the medians and the median of the paired differences.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jobs.core.spark import DRIVER_JAVA_OPTIONS, driver_java_options, jvm_archive_path  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent / "out"
START = "2024-01-01"
ENTITY = "clients"

_SESSION = (
    "import json, sys, time; started = time.perf_counter()\n"
    "from jobs.core.spark import get_spark\n"
    "spark = get_spark('ostap-bench-archive', conf={'spark.driver.extraJavaOptions': sys.argv[1], "
    "'spark.ui.enabled': 'false'})\n"
    "assert spark.range(1000).selectExpr('sum(id) AS s').first().s == 499500\n"
    "print(json.dumps({'session_s': time.perf_counter() - started}))\n")


def warehouse(scale: str, days: int) -> Path:
    from jobs.generator.generate import generate_demo

    root = BENCH_DIR / "data" / f"jvm-archive-{scale}-{days}d"
    if not (root / "raw" / ENTITY).is_dir():
        shutil.rmtree(root, ignore_errors=True)
        generate_demo(str(root), START, days, 42, scale)
    return root


def session_run(java_options: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _SESSION, java_options], capture_output=True, text=True,
                          check=True, cwd=REPO)
    return {"process_s": time.perf_counter() - started, **json.loads(done.stdout.strip().splitlines()[-1])}


def snapshot_run(java_options: str, root: Path, ds: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jobs", "snapshot", "--entity", ENTITY, "--ds", ds, "--incremental",
                           "--warehouse", str(root), "--conf", f"spark.driver.extraJavaOptions={java_options}"],
                          capture_output=True, text=True, check=True, cwd=REPO)
    process_s = time.perf_counter() - started
    summary = [line for line in done.stdout.splitlines() if line.startswith(f"snapshot {ENTITY}")][-1]
    job_s = float(summary.rsplit(" s (run ", 1)[0].rsplit(", ", 1)[-1])
    return {"process_s": process_s, "job_s": job_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating pairs per measurement (default 3)")
    parser.add_argument("--scale", default="small", choices=["small", "medium", "large"])
    parser.add_argument("--days", type=int, default=4, help="generated days; the snapshot runs the last (default 4)")
    args = parser.parse_args()

    archive = jvm_archive_path()
    if not archive.is_file():
        print(f"no class archive at {archive}: run `ostap jvm-archive` (make install does) first")
        return 2
    with_archive = driver_java_options()
    variants = {"archive": with_archive, "no archive": DRIVER_JAVA_OPTIONS}
    os.environ.setdefault("OSTAP_SPARK_LOG_LEVEL", "ERROR")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    root = warehouse(args.scale, args.days)
    last = (dt.date.fromisoformat(START) + dt.timedelta(days=args.days - 1)).isoformat()
    previous = (dt.date.fromisoformat(START) + dt.timedelta(days=args.days - 2)).isoformat()
    # The incremental day needs the state of the day before: one untimed full run makes it.
    subprocess.run([sys.executable, "-m", "jobs", "snapshot", "--entity", ENTITY, "--ds", previous, "--full",
                    "--warehouse", str(root)], capture_output=True, check=True, cwd=REPO)
    print(f"archive {archive} ({archive.stat().st_size / 2**20:.0f} MB); {args.rounds} alternating pairs of fresh "
          f"processes; snapshot: {ENTITY} {last} incremental on {root.name}; {os.cpu_count()} CPUs", flush=True)

    figures: dict[tuple[str, str], list[dict]] = {}
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for what, run in (("session", session_run), ("snapshot", snapshot_run)):
            for name in order:
                result = run(variants[name]) if what == "session" else run(variants[name], root, last)
                figures.setdefault((what, name), []).append(result)
                print(f"  round {round_ + 1} {what:<8} {name:<10} "
                      + ", ".join(f"{k} {v:5.1f} s" for k, v in result.items()), flush=True)

    print()
    for what, measure in (("session", "session_s"), ("session", "process_s"),
                          ("snapshot", "job_s"), ("snapshot", "process_s")):
        on = [r[measure] for r in figures[(what, "archive")]]
        off = [r[measure] for r in figures[(what, "no archive")]]
        saved = statistics.median(b - a for a, b in zip(on, off, strict=True))
        print(f"{what:<8} {measure:<9} archive median {statistics.median(on):5.1f} s ({min(on):.1f}-{max(on):.1f}), "
              f"without {statistics.median(off):5.1f} s ({min(off):.1f}-{max(off):.1f}): "
              f"{saved:+.1f} s saved per run (median of the pairs), "
              f"{saved / statistics.median(off):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
