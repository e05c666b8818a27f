"""`ostap abtest land`: one day of the serving answer log as change rows of raw.serve_exposures.

What it computes, and why, is in README.md beside this module."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from jobs.core import answer_log, storage
from jobs.core.errors import BadInputError
from jobs.core.run import RunContext
from jobs.core.tables import TABLES

HELP = "land one day of the serving answer log as change rows of raw.serve_exposures (idempotent)"
# The CLI wraps each run in OpenLineage START and COMPLETE or FAIL events (jobs.core.lineage_events).
EMITS_LINEAGE = True

log = logging.getLogger(__name__)

RAW = TABLES["raw.serve_exposures"]
# What an exposure needs from its log line; a line lacking one of them is refused, naming it.
FIELDS = ("request_id", "ts", "experiment", "client_id", "arm", "model", "cold_start", "version", "item_ids")
TICK = "100ms"  # ods_dt resolution of every replica


def add_arguments(parser) -> None:
    parser.add_argument("--ds", required=True, metavar="YYYY-MM-DD", help="the day (UTC) of the answers to land")
    parser.add_argument("--log", metavar="PATH",
                        help="the answer log of `ostap serve` (default $OSTAP_SERVE_LOG or ./.serve/answers.jsonl); "
                             "its rotated siblings PATH.* and PATH-* are read too; a glob pattern is taken as given")


def exposures_of_day(paths, ds: str) -> tuple[pd.DataFrame, dict]:
    """The successful recommendation answers of day ds (UTC) in the raw.serve_exposures schema, one
    row per request id, and counts of what was left out."""
    rows, bad, figures = [], {}, {"lines": 0, "exposures": 0, "without_request_id": 0, "repeated": 0,
                                  "differing_repeats": 0}
    for path, number, record in answer_log.read_records(paths):
        figures["lines"] += 1
        if record.get("endpoint") != "recommendations" or record.get("status") != 200:
            continue
        if str(record.get("ts", ""))[:10] != ds:
            continue
        if "request_id" not in record:  # logged before answers carried ids: cannot be deduplicated
            figures["without_request_id"] += 1
            continue
        missing = [f for f in FIELDS if record.get(f) is None]
        if missing:
            bad.setdefault(missing[0], []).append(f"{path.name}:{number}")
            continue
        rows.append((record["request_id"], record["ts"], record["experiment"], record["client_id"], record["arm"],
                     record["model"], record["cold_start"], record["version"],
                     "|".join(str(int(i)) for i in record["item_ids"])))
    if bad:
        column, where = next(iter(bad.items()))
        raise BadInputError(f"{RAW.qualified} load_date={ds}: column {column} is missing in "
                            f"{sum(map(len, bad.values()))} answer lines (e.g. {', '.join(where[:5])})")
    frame = pd.DataFrame(rows, columns=["request_id", "ts", "experiment", "client_id", "arm", "model",
                                        "cold_start", "version", "item_ids"])
    served_at = pd.to_datetime(frame["ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    frame = frame.drop(columns="ts").assign(served_at=served_at)
    # One exposure per request id, whichever copy of the log a line comes from: the earliest
    # answer wins (then the lowest text, so that any order of the files lands the same rows).
    frame = frame.sort_values(["request_id", "served_at", "item_ids", "version"], kind="stable")
    figures["repeated"] = int(frame.duplicated("request_id").sum())
    figures["differing_repeats"] = int((frame.duplicated("request_id")
                                        & ~frame.duplicated(list(frame.columns))).sum())
    frame = frame.drop_duplicates("request_id", keep="first").reset_index(drop=True)
    frame["ods_dt"] = frame["served_at"].dt.floor(TICK)
    frame["ods_seq"] = np.int64(1)  # one insert per key: nothing to order
    frame["ods_type"] = "I"
    frame["client_id"] = frame["client_id"].astype("int64")
    frame["cold_start"] = frame["cold_start"].astype(bool)
    figures["exposures"] = len(frame)
    return frame[RAW.columns], figures


def land(spark, ctx: RunContext, log_path=None) -> dict:
    """Publish raw.serve_exposures load_date=ds from the answer log; returns the figures."""
    pattern = log_path or answer_log.default_path()
    paths = answer_log.log_files(pattern)
    if not paths:
        log.warning("no answer log at %s: landing an empty day (was `ostap serve` running?)", pattern)
    frame, figures = exposures_of_day(paths, ctx.ds)
    if figures["differing_repeats"]:
        log.warning("%s load_date=%s: %d request ids answered twice with different content; the earliest "
                    "answer is kept", RAW.qualified, ctx.ds, figures["differing_repeats"])
    df = spark.createDataFrame(frame, schema=RAW.spark_schema())
    storage.publish_partition(df.coalesce(1), RAW, ctx.ds, ctx=ctx, check=None)
    return {**figures, "files": [str(p) for p in paths]}


def run(args, ctx: RunContext) -> int:
    spark = ctx.spark("ostap-abtest-land")
    figures = land(spark, ctx, args.log)
    print(f"abtest land ds={ctx.ds}: {figures['exposures']} exposures from {figures['lines']} answer lines in "
          f"{len(figures['files'])} files ({figures['repeated']} repeated request ids collapsed, "
          f"{figures['without_request_id']} answers without a request id skipped)")
    return 0
