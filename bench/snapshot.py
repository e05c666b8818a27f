"""Benchmark of `ostap snapshot`: full rebuild, one incremental day, the dedup formulations, and DuckDB.

    .venv/bin/python bench/snapshot.py [--scale large] [--days 30] [--entity NAME] [--master local[*]]

Generates the demo replicas once into bench/out/data/<scale>/ (reused when present), picks
the entity with the most change rows (or --entity), then in one run:

  1. full rebuild of day D-1 (also the state the incremental run starts from)
  2. incremental run of day D (state of D-1 + rows landed on D)
  3. full rebuild of day D (the same rows as 2; checked)
  4. the dedup alone (no publish) in both SQL formulations: the aggregate of
     sql/ods_snapshot.sql and the rank() window of sql/ods_snapshot_window.sql
  5. the same dedup in DuckDB on the same Parquet files, written to Parquet as well

and prints rows per second and the ratios against the targets (incremental >= 5x faster
than full; full within 3x of DuckDB). The job runs without the Great Expectations gate
here (it is measured by its own owner); everything else is the job as it runs in production.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs import sqlfiles, storage, tables  # noqa: E402
from jobs.snapshot import build_snapshot  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent / "out"
START = "2024-01-01"


def generated(scale: str, days: int) -> tuple[Path, dict[str, int]]:
    """The bench warehouse with raw/ of every entity, generated on first use."""
    from jobs.generate import generate_demo

    root = BENCH_DIR / "data" / f"{scale}-{days}d"
    report_path = root / "generated.json"
    if report_path.exists():
        return root, json.loads(report_path.read_text())
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started = time.perf_counter()
    report = generate_demo(out=str(root), start=START, days=days, seed=1, scale=scale)
    print(f"generated {scale} data, {days} days, {sum(report.values()):,} change rows in "
          f"{time.perf_counter() - started:.0f} s into {root}")
    report_path.write_text(json.dumps(report))
    return root, report


def timed(label: str, fn):
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {seconds:8.1f} s", flush=True)
    return value, seconds


def duckdb_dedup(raw_path: str, out_path: str, keys: tuple[str, ...], content: list[str], ds: str) -> int:
    """The dedup of sql/ods_snapshot.sql in DuckDB: same input rows, same per-key extremes, Parquet out."""
    import duckdb

    cutoff = (dt.date.fromisoformat(ds) + dt.timedelta(days=1)).isoformat()
    key_list = ", ".join(keys)
    hi = ", ".join(["ods_dt := ods_dt", "ods_seq := ods_seq"] + [f"{c} := {c}" for c in content])
    lo = ", ".join(["neg_dt := ~ epoch_us(ods_dt)", "neg_seq := ~ ods_seq"] + [f"{c} := {c}" for c in content])
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    query = f"""
        COPY (
          SELECT {key_list}, max(struct_pack({hi})) AS hi, min(struct_pack({lo})) AS lo, count(*) AS changes
          FROM read_parquet('{raw_path}/*/*.parquet', hive_partitioning = true, hive_types_autocast = false)
          WHERE load_date <= '{ds}' AND ods_dt < TIMESTAMP '{cutoff}'
          GROUP BY {key_list}
        ) TO '{out_path}' (FORMAT parquet)"""
    con.execute(query)
    return con.execute(f"SELECT count(*) FROM read_parquet('{out_path}')").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large", choices=("small", "medium", "large"))
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--entity", help="entity to snapshot (default: the one with the most change rows)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args()

    root, report = generated(args.scale, args.days)
    entity = args.entity or max(report, key=report.get)
    os.environ["OSTAP_WAREHOUSE"] = str(root)
    os.environ.setdefault("OSTAP_SPARK_LOG_LEVEL", "ERROR")
    from jobs.spark import get_spark

    spark = get_spark("ostap-bench-snapshot", master=args.master,
                      conf={"spark.driver.memory": args.driver_memory, "spark.ui.enabled": "false"})
    raw = tables.TABLES[f"raw.{entity}"]
    day = dt.date.fromisoformat(START) + dt.timedelta(days=args.days - 1)
    ds, previous = day.isoformat(), (day - dt.timedelta(days=1)).isoformat()
    total_rows = report[entity]
    landed_on_day = spark.read.parquet(raw.path()).where(f"load_date = DATE'{ds}'").count()
    print(f"entity {entity}: {total_rows:,} change rows over {args.days} days, {landed_on_day:,} landed on {ds}; "
          f"{os.cpu_count()} cores, master {args.master}, shuffle partitions "
          f"{spark.conf.get('spark.sql.shuffle.partitions')}")
    options = dict(validate=False)

    warm, _ = timed("warm-up: full rebuild of D-2 (not counted)",
                    lambda: build_snapshot(spark, entity, (day - dt.timedelta(days=2)).isoformat(),
                                           mode="full", **options))
    full_prev, full_prev_s = timed(f"full rebuild {previous}",
                                   lambda: build_snapshot(spark, entity, previous, mode="full", **options))
    incr, incr_s = timed(f"incremental {ds}", lambda: build_snapshot(spark, entity, ds, **options))
    assert incr.mode == "incremental", incr.notes
    ods = tables.TABLES[f"ods.{entity}"]
    # Row-by-row check of D between the modes (on the driver: only for data that fits comfortably).
    incremental_rows = storage.read_partition(spark, ods, ds).collect() if total_rows < 2_000_000 else None
    full, full_s = timed(f"full rebuild {ds}", lambda: build_snapshot(spark, entity, ds, mode="full", **options))
    if incremental_rows is not None:
        assert sorted(incremental_rows) == sorted(storage.read_partition(spark, ods, ds).collect())
        print("  incremental and full rows of D are identical")
    assert (full.live_keys, full.deletes_applied) == (incr.live_keys, incr.deletes_applied)

    # The dedup alone, both formulations, on the same due rows of D (no checks, no publish).
    keys, payload = raw.keys, tables.Table("_", "_", (), tables.ENTITY_PAYLOADS[entity][1]).columns
    content = ["ods_type"] + [c for c in payload if c not in keys]
    cutoff = f"TIMESTAMP'{day + dt.timedelta(days=1)} 00:00:00'"
    spark.read.parquet(raw.path()).where(f"load_date <= DATE'{ds}' AND ods_dt < {cutoff}") \
        .createOrReplaceTempView("bench_due")
    due_rows = spark.table("bench_due").count()
    formulation_s = {}
    for name in ("ods_snapshot.sql", "ods_snapshot_window.sql"):
        sql = sqlfiles.load(name, keys=", ".join(keys), content=", ".join(content), changes="bench_due")
        _, formulation_s[name] = timed(f"dedup only, {name}",
                                       lambda sql=sql: spark.sql(sql).write.format("noop").mode("overwrite").save())

    duck_out = str(BENCH_DIR / f"duckdb_{entity}_{ds}.parquet")
    duck_keys, duck_s = timed(f"DuckDB dedup {ds} (same Parquet)",
                              lambda: duckdb_dedup(raw.path(), duck_out, keys, content, ds))
    spark_keys = full.live_keys + full.deletes_applied + full.conflicts
    assert duck_keys == spark_keys, (duck_keys, spark_keys)

    print()
    print(f"full rebuild:  {full.rows_read:>12,} rows read   {full_s:7.1f} s  "
          f"{full.rows_read / full_s:>12,.0f} rows/s  ({full_prev_s:.1f} s for D-1)")
    print(f"incremental:   {incr.rows_read:>12,} rows read + {incr.state_rows_read:,} state rows  {incr_s:7.1f} s  "
          f"{(incr.rows_read + incr.state_rows_read) / incr_s:>12,.0f} rows/s")
    print(f"DuckDB:        {due_rows:>12,} rows         {duck_s:7.1f} s  {due_rows / duck_s:>12,.0f} rows/s")
    agg_s, win_s = formulation_s["ods_snapshot.sql"], formulation_s["ods_snapshot_window.sql"]
    print(f"dedup only:    aggregate {agg_s:.1f} s, window {win_s:.1f} s: the window takes "
          f"{win_s / agg_s:.2f}x the aggregate's time")
    speedup, vs_duck = full_s / incr_s, full_s / duck_s
    print(f"incremental is {speedup:.1f}x faster than full (target >= 5x: {'met' if speedup >= 5 else 'MISSED'})")
    print(f"full takes {vs_duck:.1f}x DuckDB's time (target <= 3x: {'met' if vs_duck <= 3 else 'MISSED'})")
    print(f"live keys {full.live_keys:,}, deletes applied {full.deletes_applied:,}, duplicates collapsed "
          f"{full.duplicates_collapsed:,}, pending {full.pending_rows:,}; warm-up read {warm.rows_read:,} rows")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
