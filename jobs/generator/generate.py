"""`ostap generate`: realistic ODS replicas of every source entity, for demos, tests and benchmarks.

    ostap generate --out WAREHOUSE --start 2024-01-01 --days N --seed S --scale small|medium|large
                   [--inject-conflicts] [--inject-bad-rows]

writes `{out}/raw/{entity}/load_date=YYYY-MM-DD/part-00000.parquet` for every entity of
jobs.core.tables.ENTITIES, with exactly the columns and types of the registry table raw.<entity>
(ods_dt, ods_seq, ods_type, then the payload). Only days with rows get a folder; the raw
folders of the entities are replaced as a whole. Files are written with pyarrow, and the
same arguments give byte-identical files.

What the replica looks like (it imitates a CRM and its ODS replica):
- Day `start` carries the initial load (00:00-02:00): every row that existed before, e.g.
  clients created over the past 5 years, 49+ months of daily sales, a year of page views,
  proposals and deals. Then every day of the window brings inserts, updates, deletes and
  re-inserts after delete, at business-hour times.
- ods_dt is at 0.1 s; ods_seq is the source's operation counter (increasing with ods_dt,
  with gaps). About 1% of changes share (key, ods_dt) with the previous change of the same
  key (two operations in one tick: only ods_seq orders them); about 0.5% of rows are
  re-delivered identically (same or a later load_date); about 1% land 1-3 days late.
- --inject-conflicts adds a few rows with the same key, ods_dt and ods_seq as another row
  but a different payload (at least 3 per entity, about 0.1%); --inject-bad-rows adds
  malformed rows (null key, ods_type 'X', null ods_dt, null ods_seq; at least 4 per entity).
  Without the flags neither exists.
- Domains: jobs.generator.credit (clients ~40% without msisdn, applications always with a phone,
  contracts with bad_flag ~5% revealed 90 days after signing), jobs.generator.retail (stores,
  daily sales with trend, seasonality, holidays, weekly pattern, noise, late openings),
  jobs.generator.leasing (premises, tenants, managers, proposals, deals, page views whose
  outcomes come from a hidden preference model documented in that module: latent
  tenant x premise taste plus type affinity, district, river bank, area and budget fit and
  premise popularity; managers propose by the visible fit only, the naive behaviour).

Sizes: small ~20-60k change rows (seconds), medium ~1M (the demo), large >= 10M (benchmarks).
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pyarrow.parquet as pq

from jobs.core import config
from jobs.core.errors import OstapError
from jobs.core.tables import ENTITIES

HELP = "generate demo ODS replicas of every source entity into raw/<entity>/load_date=..."

# Sizes of the sources at the initial load (and yearly activity of the leasing site).
SCALES: dict[str, dict[str, int]] = {
    "small": dict(clients=2_000, stores=10, premises=300, tenants=200, managers=8,
                  views_per_year=12_000, proposals_per_year=2_500, default_days=14),
    "medium": dict(clients=60_000, stores=50, premises=5_000, tenants=4_000, managers=60,
                   views_per_year=520_000, proposals_per_year=80_000, default_days=30),
    "large": dict(clients=700_000, stores=200, premises=60_000, tenants=48_000, managers=400,
                  views_per_year=6_000_000, proposals_per_year=1_000_000, default_days=30),
}
DEFAULT_START = "2024-01-01"
DEFAULT_SEED = 42


def parse_start(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise OstapError(f"--start {value!r} is not a date: use YYYY-MM-DD, e.g. --start 2024-01-01") from None


def _check(days, seed, scale) -> tuple[int, int]:
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise OstapError(f"--days {days!r} is not a whole number: use e.g. --days 30") from None
    if days < 1:
        raise OstapError(f"--days {days} must be at least 1 (the number of load dates to generate)")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise OstapError(f"--seed {seed!r} is not a whole number: use e.g. --seed 42") from None
    if seed < 0:
        raise OstapError(f"--seed {seed} must not be negative: use e.g. --seed 42")
    if scale not in SCALES:
        raise OstapError(f"--scale {scale!r} is unknown: use one of {', '.join(SCALES)}")
    return days, seed


def _filesystem(out: str):
    import pyarrow.fs as pafs

    if config.is_local(out):
        return pafs.LocalFileSystem(), config.local_path(out)
    return pafs.FileSystem.from_uri(out)


def _generate(out: str, start, days, seed, scale: str, inject_conflicts: bool, inject_bad_rows: bool,
              hidden: dict | None = None) -> dict:
    from jobs.generator import credit, leasing, retail
    from jobs.generator.cdc import Window

    first = parse_start(start)
    days, seed = _check(days, seed, scale)
    sizes = SCALES[scale]
    window = Window(first_day=(first - dt.date(1970, 1, 1)).days, days=days)
    entities = []
    for domain_id, domain in enumerate((credit, retail, leasing), start=1):
        extra = {"hidden": hidden} if domain is leasing and hidden is not None else {}
        entities += domain.generate(window, sizes, np.random.default_rng([seed, domain_id]), **extra)
    by_name = {e.name: e for e in entities}
    if sorted(by_name) != sorted(ENTITIES):
        raise AssertionError(f"generators cover {sorted(by_name)}, the registry has {sorted(ENTITIES)}")
    seq_rng = np.random.default_rng([seed, 0])
    fs, root = _filesystem(out)
    try:
        return _write(fs, root, window, by_name, seq_rng, inject_conflicts, inject_bad_rows)
    except OSError as exc:  # read-only, or a path through a regular file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OstapError(f"--out {out}: cannot write the replicas there ({first})") from None


def _write(fs, root: str, window, by_name: dict, seq_rng, inject_conflicts: bool, inject_bad_rows: bool) -> dict:
    report = {}
    for name in ENTITIES:
        landed = by_name[name].finalize(window.first_day, window.last_day, int(seq_rng.integers(10**6, 10**9)),
                                        inject_conflicts, inject_bad_rows)
        folder = f"{root}/raw/{name}"
        fs.delete_dir_contents(folder, missing_dir_ok=True)
        days_present, starts = np.unique(landed.load_days, return_index=True)
        bounds = list(starts) + [landed.table.num_rows]
        load_dates = []
        for i, day in enumerate(days_present.tolist()):
            load_date = (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
            part = f"{folder}/load_date={load_date}"
            fs.create_dir(part, recursive=True)
            pq.write_table(landed.table.slice(bounds[i], bounds[i + 1] - bounds[i]), f"{part}/part-00000.parquet",
                           filesystem=fs, compression="snappy")
            load_dates.append(load_date)
        report[name] = (landed.table.num_rows, load_dates)
    return report


def generate_demo(out: str, start: str | dt.date, days: int, seed: int, scale: str = "small",
                  inject_conflicts: bool = False, inject_bad_rows: bool = False,
                  hidden: dict | None = None) -> dict[str, int]:
    """Write the raw replicas of every entity under `out`; returns entity -> change rows written.
    `hidden`: see jobs.generator.leasing.generate."""
    report = _generate(out, start, days, seed, scale, inject_conflicts, inject_bad_rows, hidden)
    return {name: rows for name, (rows, _) in report.items()}


def add_arguments(parser) -> None:
    parser.add_argument("--out", metavar="WAREHOUSE",
                        help="warehouse root to write raw/ into (default: the warehouse root)")
    parser.add_argument("--start", default=DEFAULT_START, metavar="YYYY-MM-DD",
                        help=f"day of the initial load (default {DEFAULT_START})")
    parser.add_argument("--days", metavar="N",
                        help="number of load dates from --start (default: 14 small, 30 medium/large)")
    parser.add_argument("--seed", default=str(DEFAULT_SEED), metavar="S",
                        help=f"random seed; the same seed gives byte-identical files (default {DEFAULT_SEED})")
    parser.add_argument("--scale", default="small", metavar="small|medium|large",
                        help="small: ~40k change rows, medium: ~1M (the demo), large: >= 10M (default small)")
    parser.add_argument("--inject-conflicts", action="store_true",
                        help="add genuine conflicts (same key, ods_dt, ods_seq, different payload)")
    parser.add_argument("--inject-bad-rows", action="store_true",
                        help="add malformed rows (null key, ods_type 'X', null ods_dt or ods_seq)")


def run(args, ctx) -> int:
    out = config.warehouse_root(args.out) if args.out else ctx.warehouse
    scale = args.scale
    days = args.days if args.days is not None else SCALES.get(scale, {}).get("default_days", 14)
    began = time.perf_counter()
    report = _generate(out, args.start, days, args.seed, scale, args.inject_conflicts, args.inject_bad_rows)
    seconds = time.perf_counter() - began
    print(f"generated {scale} demo sources into {out}/raw (start {args.start}, {days} days, seed {args.seed})")
    print(f"{'entity':<14}{'change rows':>13}{'load dates':>12}  range")
    for name, (rows, load_dates) in report.items():
        span = f"{load_dates[0]} .. {load_dates[-1]}" if load_dates else "-"
        print(f"{name:<14}{rows:>13,}{len(load_dates):>12}  {span}")
    total = sum(rows for rows, _ in report.values())
    print(f"{'total':<14}{total:>13,}  in {seconds:.1f} s")
    return 0
