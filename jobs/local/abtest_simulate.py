"""`ostap abtest simulate` (development): the A/B test as a closed loop on the generated market.

    ostap abtest simulate [--days 28] [--seed S] [--lift L] [--aa] [--drop-treatment-exposures F]

1. `ostap generate` writes --history-days of the small (or --scale) market into the warehouse,
   keeping the generator's hidden preference model (jobs.generator.leasing.Market);
2. the real jobs snapshot the sources of the last history day D0 and train and publish both
   arms' lists (`ostap recommend`); they are loaded into a real Redis (`ostap serve load`; with
   --aa both arms get the baseline's list) and the real `ostap serve` is started on loopback;
3. every simulated day, each tenant visits with probability --visit-rate, asks the HTTP API for
   its list, and may sign one shown premise with a probability from its hidden utility for it,
   lower down the list (times (1 + --lift) in treatment), or, rarely, a premise it was not shown;
   the deals land as change rows in raw/deals (load_date = the day), the day's answer lines are
   stamped with the simulated visit time (the service stamps its own clock) and, with
   --drop-treatment-exposures F, a share F of treatment lines is lost; then `ostap abtest land`,
   the snapshots of deals and serve_exposures and `ostap abtest readout` run for the day.

So the treatment wins only as much as LightFM really ranks the tenants' hidden tastes better.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.abtest import land, readout
from jobs.core import abtest, config
from jobs.core.errors import BadInputError, OstapError
from jobs.core.run import RunContext
from jobs.core.tables import TABLES
from jobs.generator import cdc, generate
from jobs.local import net, redis_local
from jobs.ods_snapshot.snapshot import build_snapshot
from jobs.recommendations import recommend
from jobs.serving import serving
from jobs.warehouse import report

HELP = "(development) closed loop: generated tenants visit the real `ostap serve`, sign deals by hidden taste"

log = logging.getLogger(__name__)

SOURCES = ("tenants", "premises", "managers", "deals", "proposals", "page_views")
TENANT_ID0, PREMISE_ID0 = 2_000_001, 300_001  # jobs.generator.leasing's first ids
ORGANIC_RATE = 0.002  # a visit ending in a lease of a premise the tenant was not shown
# Scale of the signing probability: about 2% of visits to the baseline's list end in a lease (the
# generator's own deals are rarer still per page view; a visit here is a tenant actively searching).
DEFAULT_SIGN_RATE = 0.015


def add_arguments(parser) -> None:
    parser.add_argument("--days", type=int, default=28, help="days of traffic (default 28)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the market and of the visits (default 7)")
    parser.add_argument("--lift", type=float, default=0.0,
                        help="extra relative effect of treatment on signing a shown premise (default 0)")
    parser.add_argument("--aa", action="store_true", help="serve both arms the baseline's list (an A/A test)")
    parser.add_argument("--drop-treatment-exposures", type=float, default=0.0, metavar="F",
                        help="lose this share of treatment answer lines before landing (default 0)")
    parser.add_argument("--scale", default="small", help="generator scale (default small)")
    parser.add_argument("--start", default="2024-01-01", help="first day of the generated history")
    parser.add_argument("--history-days", type=int, default=14, help="generated days before the test (default 14)")
    parser.add_argument("--visit-rate", type=float, default=0.3, help="share of tenants visiting per day (default 0.3)")
    parser.add_argument("--sign-rate", type=float, default=DEFAULT_SIGN_RATE,
                        help=f"scale of the signing probability from the hidden utility (default {DEFAULT_SIGN_RATE})")
    parser.add_argument("--window-days", type=int, default=30, help="readout window (default 30)")
    parser.add_argument("--experiment", metavar="NAME", help="experiment (default: the configured current one)")
    parser.add_argument("--redis", metavar="URL", help="Redis to use (default: a private one, stopped at the end)")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _check(args) -> None:
    if args.days < 1 or args.history_days < 2:
        raise BadInputError("--days must be >= 1 and --history-days >= 2")
    if not 0 <= args.drop_treatment_exposures < 1 or not 0 < args.visit_rate <= 1 or args.lift <= -1:
        raise BadInputError("--drop-treatment-exposures must be in [0, 1), --visit-rate in (0, 1], --lift > -1")


def _ctx(root: str, ds, job: str, **options) -> RunContext:
    return RunContext.create(warehouse=root, ds=ds, job=job, args=options)


class Service:
    """The real `ostap serve` as a child process on a free loopback port, asked over keep-alive HTTP."""

    def __init__(self, redis_url: str, log_path: Path):
        self.port, self.log_path = net.free_port(), log_path
        env = {**os.environ, "OSTAP_REDIS_URL": redis_url}
        self.process = subprocess.Popen([sys.executable, "-m", "jobs", "serve", "--port", str(self.port),
                                         "--log", str(log_path)], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None:
                raise OstapError(f"`ostap serve` exited: {self.process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise OstapError("`ostap serve` did not answer /health within 60 s")
            time.sleep(0.2)
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def _healthy(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def recommendations(self, client_id: int, k: int = 10) -> dict:
        self.connection.request("GET", f"/recommendations/{client_id}?k={k}")
        response = self.connection.getresponse()
        body = json.loads(response.read())
        if response.status != 200:
            raise OstapError(f"GET /recommendations/{client_id}: {response.status} {body}")
        return body

    def stop(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.wait(timeout=15)


def _load_lists(root: str, ds: str, redis_url: str, experiment: abtest.Experiment, aa: bool) -> str:
    if not aa:
        return serving.load_version(_ctx(root, ds, "serve"), redis_url, experiment=experiment, make_current=True)
    # A/A: both arms are served the baseline's list (each client keeps its arm).
    recs = serving.read_published(TABLES["marts.recommendations"], ds, root)
    baseline = recs[recs["model"] == "baseline"]
    recs = pd.concat([baseline, baseline.assign(model="lightfm")], ignore_index=True)
    leads = serving.read_published(TABLES["marts.premise_leads"], ds, root)
    return serving.load_frames(recs, leads, ds, redis_url, experiment=experiment, make_current=True,
                               popular=serving.popular_list(recs))


class Market:
    """The generated tenants reacting to what they are shown, by the generator's hidden model."""

    def __init__(self, hidden: dict, root: str, ds: str, spark, args, rng):
        self.hidden, self.args, self.rng = hidden, args, rng
        tenants = spark.read.parquet(TABLES["ods.tenants"].partition_path(ds, root)).select("client_id").toPandas()
        premises = spark.read.parquet(TABLES["ods.premises"].partition_path(ds, root)).select(
            "premise_id", "vacant").toPandas()
        self.client_ids = np.sort(tenants["client_id"].to_numpy(np.int64))
        self.vacant = set(premises.loc[premises["vacant"].eq(True), "premise_id"].astype(np.int64))
        self.next_deal_id = hidden["deal_ids"] + 1
        self.next_seq = 10**12

    def sign_probabilities(self, client_id: int, item_ids: list[int], treated: bool) -> np.ndarray:
        t = np.full(len(item_ids), client_id - TENANT_ID0)
        p = np.asarray(item_ids, dtype=np.int64) - PREMISE_ID0
        utility = self.hidden["market"].utility(self.hidden["tenants"], self.hidden["premises"], t, p)
        # As in the generator: a look with sigmoid(U - 0.5), a deal with sigmoid(1.2 U - 3.5); a
        # list is read from the top, so lower ranks are looked at less.
        rank_weight = 1.0 / np.sqrt(np.arange(1, len(item_ids) + 1))
        prob = self.args.sign_rate * _sigmoid(utility - 0.5) * _sigmoid(1.2 * utility - 3.5) * rank_weight
        if treated:
            prob = prob * (1 + self.args.lift)
        return np.clip(prob, 0, 1)

    def deal(self, client_id: int, premise_id: int, at: dt.datetime, day_end: dt.datetime) -> dict:
        signed = min(at + dt.timedelta(hours=float(self.rng.uniform(0.5, 4))), day_end - dt.timedelta(seconds=1))
        tenant = client_id - TENANT_ID0
        row = {"ods_dt": signed, "ods_seq": self.next_seq, "ods_type": "I", "deal_id": self.next_deal_id,
               "client_id": client_id, "premise_id": premise_id,
               "manager_id": int(self.hidden["tenants"]["manager_id"][tenant]), "created_at": at,
               "status": "signed", "signed_at": signed,
               "monthly_rent": float(self.hidden["premises"]["price"][premise_id - PREMISE_ID0])}
        self.next_deal_id += 1
        self.next_seq += 1
        self.vacant.discard(premise_id)
        return row


def _write_deals(root: str, day: str, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = cdc.raw_schema("deals")
    folder = Path(config.local_path(TABLES["raw.deals"].path(root))) / f"load_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=schema.names)
    for column in ("ods_dt", "created_at", "signed_at"):
        frame[column] = pd.to_datetime(frame[column]).dt.tz_localize("UTC")
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), folder / "part-sim.parquet")


def _day_log(service: Service, offset: int, visit_times: dict, drop: float, rng, path: Path) -> tuple[int, int, int]:
    """The service's answer lines since `offset`, stamped with the simulated visit time, a share
    `drop` of treatment lines lost, written to `path`; (new offset, lines kept, lines dropped)."""
    with open(service.log_path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data[:data.rfind(b"\n") + 1]
    kept, dropped = [], 0
    for raw in complete.splitlines():
        record = json.loads(raw)
        if record.get("request_id") not in visit_times:
            continue
        record["ts"] = visit_times[record["request_id"]].isoformat(timespec="milliseconds") + "+00:00"
        if record.get("arm") == abtest.TREATMENT and rng.random() < drop:
            dropped += 1
            continue
        kept.append(json.dumps(record, separators=(",", ":")))
    path.write_text("".join(line + "\n" for line in kept))
    return offset + len(complete), len(kept), dropped


def simulate(spark, root: str, args) -> dict:
    """Run the loop; returns the figures of every day and the last readout's rows."""
    _check(args)
    experiment = abtest.experiment(args.experiment)
    hidden: dict = {}
    generate.generate_demo(root, args.start, args.history_days, args.seed, args.scale, hidden=hidden)
    d0 = dt.date.fromisoformat(args.start) + dt.timedelta(days=args.history_days - 1)
    for entity in SOURCES:
        build_snapshot(spark, entity, _ctx(root, d0, "snapshot", entity=entity), mode="full")
    recommend.run_agency(spark, _ctx(root, d0, "recommend"), experiment=experiment)
    folder = Path(config.local_path(root)) / "_simulation"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([args.seed, 29])
    market = Market(hidden, root, d0.isoformat(), spark, args, rng)
    first_deal_id = market.next_deal_id
    days, rows = [], None
    with _redis(args.redis, folder / "redis") as redis_url:
        _load_lists(root, d0.isoformat(), redis_url, experiment, args.aa)
        service = Service(redis_url, folder / "answers.jsonl")
        offset = service.log_path.stat().st_size if service.log_path.exists() else 0
        try:
            for n in range(1, args.days + 1):
                day = d0 + dt.timedelta(days=n)
                figures, offset = _one_day(spark, root, day, service, market, offset, experiment, args, rng, folder)
                rows = figures.pop("rows")
                days.append(figures)
                log.info("abtest simulate %s: %s", day, readout.summary(rows))
        finally:
            service.stop()
    report_path = report.write_run_report(root, days[-1]["ds"])  # with the cumulative lift plot
    return {"days": days, "rows": rows, "experiment": experiment.name, "first_day": (d0 + dt.timedelta(days=1)),
            "first_deal_id": first_deal_id, "report": report_path}


def _one_day(spark, root, day: dt.date, service: Service, market: Market, offset: int, experiment, args, rng,
             folder: Path):
    start = dt.datetime.combine(day, dt.time())
    end = start + dt.timedelta(days=1)
    visitors = market.client_ids[rng.random(len(market.client_ids)) < args.visit_rate]
    visit_times, deals, arms = {}, [], {}
    for client_id in visitors:
        at = start + dt.timedelta(hours=float(rng.uniform(8, 20)))
        body = service.recommendations(int(client_id))
        visit_times[body["request_id"]] = at
        arms[body["arm"]] = arms.get(body["arm"], 0) + 1
        shown = [i["item_id"] for i in body["items"] if i["item_id"] in market.vacant]
        if shown:
            signs = rng.random(len(shown)) < market.sign_probabilities(int(client_id), shown,
                                                                       body["arm"] == abtest.TREATMENT)
            if signs.any():
                deals.append(market.deal(int(client_id), shown[int(np.argmax(signs))], at, end))
                continue
        if market.vacant and rng.random() < ORGANIC_RATE:
            others = sorted(market.vacant - set(shown))
            if others:
                deals.append(market.deal(int(client_id), int(rng.choice(others)), at, end))
    _write_deals(root, day.isoformat(), deals)
    day_log = folder / f"answers-{day.isoformat()}.jsonl"
    offset, kept, dropped = _day_log(service, offset, visit_times, args.drop_treatment_exposures, rng, day_log)
    landed = land.land(spark, _ctx(root, day, "abtest land"), day_log)
    for entity in ("deals", "serve_exposures"):
        build_snapshot(spark, entity, _ctx(root, day, "snapshot", entity=entity), mode="auto")
    rows = readout.readout(spark, _ctx(root, day, "abtest readout"), experiment, args.window_days)
    return {"ds": day.isoformat(), "visits": len(visitors), "deals": len(deals), "answers_kept": kept,
            "answers_dropped": dropped, "exposures_landed": landed["exposures"], "arms": arms, "rows": rows}, offset


class _redis:
    """The given Redis URL, or a private redis-server for the duration of the loop."""

    def __init__(self, url: str | None, folder: Path):
        self.url, self.folder, self.server = url, folder, None

    def __enter__(self) -> str:
        if self.url:
            return self.url
        self.server = redis_local.start(self.folder)
        return self.server.url

    def __exit__(self, *exc):
        if self.server is not None:
            redis_local.stop(self.server)


def run(args, ctx: RunContext) -> int:
    spark = ctx.spark("ostap-abtest-simulate")
    result = simulate(spark, ctx.warehouse, args)
    print(f"abtest simulate {result['experiment']}: {args.days} days from {result['first_day']} "
          f"(lift {args.lift:+.0%}{', A/A' if args.aa else ''}, dropped treatment lines {args.drop_treatment_exposures:.0%})")
    for figures in result["days"]:
        print(f"  {figures['ds']}: {figures['visits']} visits, {figures['deals']} deals, "
              f"{figures['exposures_landed']} exposures landed ({figures['answers_dropped']} lines lost)")
    for metric in ("signed_shown_share", "signed_any_share", "rent_per_client"):
        print("  " + readout.summary(result["rows"], metric))
    print(f"  run report with the cumulative lift plot: {result['report']}")
    return 0
