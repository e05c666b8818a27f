"""All or nothing per run: a run's outputs appear together or not at all.

`publish_together` takes every output's publish lock (in one order, so two runs cannot deadlock),
stages and gates every output, and only then swaps them in (`swap_together`). Before the first
swap it writes a run record, `{warehouse}/_runs/<run_id>.json`, naming every partition with its
staging and trash folders; the previous partitions are kept aside until the last swap is done and
the record deleted (the commit). A run killed between two swaps leaves its record: the next
publish of any of those partitions rolls that run back first (its partitions go, the previous
ones come back), so readers never see two runs' outputs mixed for longer than a restart.

Every published partition carries `_RUN.json` (storage.stage_partition writes it) naming its run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging

from jobs.core import files, storage
from jobs.core.run import RunContext
from jobs.core.tables import Table

log = logging.getLogger(__name__)



@dataclasses.dataclass
class Output:
    """One partition a run publishes: its rows and what goes with them."""

    df: object
    table: Table
    value: str
    sidecar: dict[str, str] | None = None
    options: dict[str, str] | None = None


def record_path(ctx: RunContext, run_id: str | None = None) -> str:
    return f"{ctx.warehouse}/_runs/{run_id or ctx.run_id}.json"


run_of = storage.run_of


def publish_together(outputs: list[Output], *, ctx: RunContext, check: storage.Check | None) -> dict[str, str]:
    """Check and stage every output, then swap them all in; returns {table: final path}.

    A check that refuses any output raises before anything is swapped: every table keeps its
    previous partition.
    """
    if not outputs:
        return {}
    spark = outputs[0].df.sparkSession
    with contextlib.ExitStack() as locks:
        for output in sorted(outputs, key=lambda o: (o.table.qualified, o.value)):
            locks.enter_context(storage.publishing(spark, output.table, output.value, ctx))
        roll_back_unfinished(spark, [(output.table, output.value) for output in outputs], ctx)
        staged = []
        try:
            for output in outputs:
                staged.append((output.table, output.value, storage.stage_partition(
                    output.df, output.table, output.value, ctx=ctx, check=check,
                    sidecar=output.sidecar, options=output.options)))
        except BaseException:
            for output in outputs:
                storage.discard_staged(spark, output.table, output.value, ctx)
            raise
        return swap_together(spark, staged, ctx)


def swap_together(spark, staged: list[tuple[Table, str, str]], ctx: RunContext) -> dict[str, str]:
    """Swap staged partitions in as one step; the caller holds every one's publish lock."""
    roll_back_unfinished(spark, [(table, value) for table, value, _ in staged], ctx)
    entries = [{"table": table.qualified, "value": value, "staging": staging,
                "final": table.partition_path(value, ctx.warehouse),
                "trash": f"{table.path(ctx.warehouse)}/_trash_{table.partition}={value}.{ctx.run_id}"}
               for table, value, staging in staged]
    record = record_path(ctx)
    storage.write_bytes(spark, record, json.dumps({"run_id": ctx.run_id, "started_at": _now(),
                                                   "partitions": entries}, indent=1).encode())
    try:
        for entry in entries:
            _swap_one(spark, entry)
    except BaseException:
        _roll_back(spark, ctx.run_id, entries)
        storage.delete_path(spark, record)
        raise
    storage.delete_path(spark, record)  # the commit: from here the run's partitions stand
    for (table, value, _), entry in zip(staged, entries, strict=True):
        storage.delete_path(spark, entry["trash"])
        storage._remove_leftovers(spark, table, value, ctx.warehouse)
    return {entry["table"]: entry["final"] for entry in entries}


def _swap_one(spark, entry: dict) -> None:
    if files.exists(entry["final"]):
        files.rename(entry["final"], entry["trash"])
    files.rename(entry["staging"], entry["final"])


def _roll_back(spark, run_id: str, entries: list[dict]) -> None:
    """Undo a run's swaps: its partitions go, the previous ones (kept as trash) come back."""
    for entry in entries:
        final, trash = entry["final"], entry["trash"]
        if files.exists(final) and storage.run_in(spark, final) == run_id:
            files.delete(final)
        if files.exists(trash) and not files.exists(final):
            files.rename(trash, final)
        storage.delete_path(spark, entry["staging"])


def roll_back_unfinished(spark, partitions: list[tuple[Table, str]], ctx: RunContext) -> list[str]:
    """Roll back, for these partitions (whose locks the caller holds), every run that was killed
    between its swaps; returns the run ids rolled back. Entries of other partitions stay in the
    record for whoever publishes them next."""
    folder = f"{ctx.warehouse}/_runs"
    wanted = {(table.qualified, value) for table, value in partitions}
    rolled = []
    for name, _ in files.entries(folder):
        if not name.endswith(".json") or name == f"{ctx.run_id}.json":
            continue
        text = storage.read_text(spark, f"{folder}/{name}")
        if not text:
            continue
        record = json.loads(text)
        mine = [e for e in record["partitions"] if (e["table"], e["value"]) in wanted]
        if not mine:
            continue
        log.warning("run %s stopped between its swaps (started %s): rolling back %s", record["run_id"],
                    record.get("started_at"), ", ".join(f"{e['table']} {e['value']}" for e in mine))
        _roll_back(spark, record["run_id"], mine)
        rest = [e for e in record["partitions"] if (e["table"], e["value"]) not in wanted]
        if rest:
            storage.write_bytes(spark, f"{folder}/{name}", json.dumps({**record, "partitions": rest}).encode())
        else:
            storage.delete_path(spark, f"{folder}/{name}")
        rolled.append(record["run_id"])
    return rolled


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
