"""Reading and publishing table partitions so that a partition appears whole or not at all.

Publishing writes the partition to a staging folder beside the table, then swaps it in with
directory renames through the Python file-system layer (jobs.core.files, fsspec: atomic on HDFS
and local disk, a copy on object stores), never through the driver JVM, so that the same code
runs on a classic or a Spark Connect session. A reader sees the previous partition, or (for a moment during the
swap of a rerun) none, never a partial one. Staging and trash folders start with `_`, which
Spark, DuckDB and pyarrow all skip when they discover partitions.

Runs that publish the same partition at once (a CLI rerun beside the Airflow task, say) take
turns: staging and swapping a partition happen under its publish lock (`publishing`), so that
one run's clean-up of leftover staging folders never deletes another's work in progress, and
the later run waits, then replaces the partition whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from jobs.core import config, files, settings
from jobs.core.errors import OstapError
from jobs.core.manifest import manifest
from jobs.core.run import RunContext
from jobs.core.tables import Table

# Every staged partition carries its manifest (jobs.core.manifest): the run that wrote it, its inputs.
RUN_SIDECAR = "_RUN.json"

# A quality gate: check(df, table, value, ctx) raises to refuse df (jobs pass quality.gate).
Check = Callable[[object, Table, str, RunContext], None]


# The file-system helpers take the job's session first (unused: the files are reached from
# Python) so that every caller reads the same whichever session runs it.

def path_exists(spark, path: str) -> bool:
    return files.exists(path)


def read_text(spark, path: str) -> str | None:
    """A small text file (a sidecar), or None when it does not exist."""
    return files.read_text(path)


def write_bytes(spark, path: str, payload: bytes) -> None:
    """A small file (a sidecar, a report page, a model), replaced if it exists."""
    files.write_bytes(path, payload)


def delete_path(spark, path: str) -> None:
    files.delete(path)


def subfolder_names(spark, path: str) -> list[str]:
    """Names of the folders directly in `path`, sorted (one listing call); [] when there is no
    such folder (or `path` is a file)."""
    return [name for name, folder in files.entries(path) if folder]


def list_partitions(spark, table: Table, root: str) -> list[str]:
    """Partition values of a table that are published (have a _SUCCESS marker), sorted."""
    table_path = table.path(root)
    prefix = f"{table.partition}="
    return [name[len(prefix):] for name in subfolder_names(spark, table_path)
            if name.startswith(prefix) and path_exists(spark, f"{table_path}/{name}/_SUCCESS")]


log = logging.getLogger(__name__)

# How long a run waits for another run publishing the same partition, and the age at which a
# lock whose holder cannot be checked (it ran on another host) is taken for one left by a
# killed run. A lock covers one publish (the gate, the write, the swap), not a whole job.
PUBLISH_LOCK_WAIT_S = settings.PUBLISH_LOCK_WAIT_S.get_float()
PUBLISH_LOCK_STALE_S = settings.PUBLISH_LOCK_STALE_S.get_float()


class PartitionBusyError(OstapError):
    """Another run kept publishing the same partition for longer than this run would wait."""


def lock_path(table: Table, value: str, root: str) -> str:
    return f"{table.path(root)}/_lock_{table.partition}={value}"


@contextlib.contextmanager
def publishing(spark, table: Table, value: str, ctx: RunContext, wait_s: float | None = None):
    """Hold the publish lock of partition `value` of `table` for the block (stage, then swap).

    The lock is a file created only if it does not exist (O_EXCL on local disk, fsspec's
    exclusive mode elsewhere): one run holds it at a time. A run that finds it taken waits, polling,
    for up to `wait_s` (OSTAP_PUBLISH_LOCK_WAIT_S, default 15 min), then raises
    PartitionBusyError naming the holder; nothing is written. A lock whose holder is gone (its
    process no longer runs on this host, or it is older than OSTAP_PUBLISH_LOCK_STALE_S when
    it ran elsewhere) was left by a killed run and is taken over.
    """
    run_id = ctx.run_id
    wait_s = PUBLISH_LOCK_WAIT_S if wait_s is None else wait_s
    path = lock_path(table, value, ctx.warehouse)
    me = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
          "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    deadline = time.monotonic() + wait_s
    pause = 0.2
    waited = False
    while not _create_exclusive(spark, path, json.dumps(me)):
        holder = _read_lock(spark, path)
        if holder is not None and _lock_is_stale(holder):
            log.warning("%s %s=%s: taking over the publish lock of run %s (pid %s on %s since %s), which no "
                        "longer runs", table.qualified, table.partition, value, holder.get("run_id"), holder.get("pid"),
                        holder.get("host"), holder.get("since"))
            _delete_lock_of(spark, path, holder)
            continue
        if time.monotonic() >= deadline:
            who = (f"run {holder.get('run_id')} (pid {holder.get('pid')} on {holder.get('host')}, since "
                   f"{holder.get('since')})") if holder else "another run"
            raise PartitionBusyError(
                f"{table.qualified} {table.partition}={value}: {who} is publishing this partition and still "
                f"held its lock after {wait_s:g} s; nothing was written. Rerun once it has finished; if that "
                f"run was killed on another host, delete {path}")
        if not waited:
            log.info("%s %s=%s: waiting for %s to finish publishing it", table.qualified, table.partition, value,
                     f"run {holder.get('run_id')}" if holder else "another run")
            waited = True
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
    try:
        yield run_id
    finally:
        _delete_lock_of(spark, path, me)


def _create_exclusive(spark, path: str, text: str) -> bool:
    """Create the file with `text` unless it exists (atomically); False when it existed."""
    if config.is_local(path):
        local = config.local_path(path)
        make_local_folder(os.path.dirname(local))
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise WarehouseNotWritableError(f"cannot write {local}: {exc.strerror}; nothing was written "
                                            "(is the warehouse root writable?)") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return True
    return files.create_exclusive(path, text.encode())


class WarehouseNotWritableError(OstapError):
    """A publish could not write under the warehouse root (read-only, or not a folder)."""


def make_local_folder(folder: str) -> None:
    """os.makedirs, refused in one line when the folder cannot be made (a read-only warehouse, or
    a path through a regular file): the first write of a publish names the place."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise WarehouseNotWritableError(f"cannot create the folder {folder}: {exc.strerror}; nothing was "
                                        "written (is the warehouse root writable?)") from None


def _read_lock(spark, path: str) -> dict | None:
    """The holder recorded in a lock file (only its age while its holder is still writing it);
    None when the lock is gone."""
    if config.is_local(path):
        try:
            with open(config.local_path(path)) as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
    else:
        text = read_text(spark, path)
        if text is None:
            return None
    try:
        return json.loads(text)
    except ValueError:  # a holder killed between creating the file and writing it, or writing now
        since = _modified(spark, path)
        return None if since is None else {"since": since}


def _modified(spark, path: str) -> str | None:
    """When the file was last written (None when it is gone)."""
    if config.is_local(path):
        try:
            seconds = os.path.getmtime(config.local_path(path))
        except FileNotFoundError:
            return None
    else:
        seconds = files.modified(path)
        if seconds is None:
            return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def java_error_caused_by(exc: BaseException, class_name: str) -> bool:
    """Whether `exc` carries a Java error of class `class_name` (fully qualified) or caused by one:
    on a classic session py4j's Py4JJavaError or a pyspark error raised from the JVM (subclasses
    count), on a Spark Connect session the server's error classes and stack trace.

    Spark wraps what failed in a task (a file gone between listing and reading, say) in a
    SparkException, several levels deep; a direct call throws it bare.
    """
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is None:  # Spark Connect: the server sends its stack trace ("Caused by: ..." lines) as text
        trace = exc.getStackTrace() if callable(getattr(exc, "getStackTrace", None)) else None
        return class_name in f"{exc}\n{trace or ''}"
    for _ in range(20):  # a cause chain can loop back on itself
        if java is None:
            return False
        cls = java.getClass()
        while cls is not None:
            if cls.getName() == class_name:
                return True
            cls = cls.getSuperclass()
        java = java.getCause()
    return False


def _lock_is_stale(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False
    since = holder.get("since")
    if not since:
        return False
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(since)
    return age.total_seconds() > PUBLISH_LOCK_STALE_S


def _delete_lock_of(spark, path: str, holder: dict) -> None:
    """Delete the lock if `holder` still holds it (never one another run has taken since)."""
    current = _read_lock(spark, path)
    if current is None or any(current.get(k) != holder.get(k) for k in ("run_id", "host", "pid", "since")):
        return
    if config.is_local(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.local_path(path))
    else:
        delete_path(spark, path)


def publish_partition(df, table: Table, value: str, *, ctx: RunContext, check: Check | None,
                      sidecar: dict[str, str] | None = None) -> str:
    """Run `check` on `df` (the job's quality gate, e.g. jobs.core.quality.gate; None publishes
    unchecked), then write it (without the partition column) as partition `value` of `table` by
    staged swap.

    `sidecar` maps file names (starting with `_`, so that readers skip them) to small texts
    written into the partition before the swap: they appear together with its rows.
    A check that refuses `df` raises, and nothing is written. Returns the final partition path.
    """
    with publishing(df.sparkSession, table, value, ctx):
        staging = stage_partition(df, table, value, ctx=ctx, check=check, sidecar=sidecar)
        return swap_in(df.sparkSession, table, value, staging, ctx)


def stage_partition(df, table: Table, value: str, *, ctx: RunContext, check: Check | None,
                    sidecar: dict[str, str] | None = None,
                    options: dict[str, str] | None = None) -> str:
    """The first half of publish_partition: check and write `df` into a staging folder readers
    never see (its name starts with `_`); return that folder for swap_in or discard_staged.

    A job that publishes two partitions can stage both and swap them in only when both are
    written; it holds both partitions' `publishing` locks meanwhile. `options` go to the
    Parquet writer (maxRecordsPerFile, say).
    """
    spark = df.sparkSession
    if check is not None:
        check(df, table, value, ctx)
    staging = staging_path(table, value, ctx)
    columns = [c for c in df.columns if c != table.partition]
    try:
        df.select(*columns).write.mode("overwrite").options(**(options or {})).parquet(staging)
    finally:
        # A gate caches df so that validation and this write compute it once.
        df.unpersist()
    write_sidecars(spark, staging, {**(sidecar or {}), RUN_SIDECAR: manifest(ctx, table.qualified, value)})
    ctx.outputs.append({"table": table.qualified, "partition": value,
                        "columns": [(f.name, f.dataType.simpleString()) for f in df.schema.fields
                                    if f.name != table.partition]})
    return staging


def staging_path(table: Table, value: str, ctx: RunContext) -> str:
    return f"{table.path(ctx.warehouse)}/_staging_{table.partition}={value}.{ctx.run_id}"


def discard_staged(spark, table: Table, value: str, ctx: RunContext) -> None:
    """Delete what stage_partition wrote for this run (nothing is published)."""
    delete_path(spark, staging_path(table, value, ctx))


def write_sidecars(spark, staging: str, sidecar: dict[str, str] | None) -> None:
    """Write small texts into a staged partition; their names start with `_` so readers skip them."""
    for name, text in (sidecar or {}).items():
        if not name.startswith("_"):
            raise ValueError(f"sidecar file {name!r}: its name must start with '_' so that readers skip it")
        write_bytes(spark, f"{staging}/{name}", text.encode())


def swap_in(spark, table: Table, value: str, staging: str, ctx: RunContext) -> str:
    """Replace partition `value` by the staged folder (the second half of publish_partition)."""
    root, run_id = ctx.warehouse, ctx.run_id
    final = table.partition_path(value, root)
    trash = f"{table.path(root)}/_trash_{table.partition}={value}.{run_id}"
    had_previous = files.exists(final)
    if had_previous:
        files.rename(final, trash)
    try:
        files.rename(staging, final)
    except OSError:
        if had_previous:
            files.rename(trash, final)
        raise
    if had_previous:
        files.delete(trash)
    _remove_leftovers(spark, table, value, root)
    return final


def _remove_leftovers(spark, table: Table, value: str, root: str) -> None:
    """Delete staging and trash folders of this partition left by runs that were killed.

    Readers never see them (their names start with `_`), but they would pile up. Called under
    the partition's publish lock: no other run is staging this partition now.
    """
    prefixes = (f"_staging_{table.partition}={value}.", f"_trash_{table.partition}={value}.")
    for name, _ in files.entries(table.path(root)):
        if name.startswith(prefixes):
            files.delete(f"{table.path(root)}/{name}")


def read_input(spark, table: Table, value: str, ctx: RunContext):
    """read_partition for a job's input: the run notes the partition and the run that wrote it
    (for the manifests of what it publishes)."""
    ctx.record_input(table.qualified, value, run_of(spark, table, value, ctx.warehouse))
    return read_partition(spark, table, value, ctx.warehouse)


def run_of(spark, table: Table, value: str, root: str) -> str | None:
    """The run id that wrote a published partition (None for none or one without a manifest)."""
    return run_in(spark, table.partition_path(value, root))


def run_in(spark, folder: str) -> str | None:
    """The run id in the manifest of a partition folder (None when it has none)."""
    text = read_text(spark, f"{folder}/{RUN_SIDECAR}")
    return json.loads(text).get("run_id") if text else None


def read_partition(spark, table: Table, value: str, root: str):
    """A published partition as a DataFrame with the registry's schema (partition column excluded)."""
    return spark.read.schema(table.spark_schema()).parquet(table.partition_path(value, root))


def append_records(spark, table: Table, rows: list[dict] | None, value: str, root: str, df=None):
    """Append rows to an append-log table (dq.*) under partition `value`.

    Each append is its own Parquet file set in the partition, written to staging and moved in,
    so earlier records are never rewritten and a crash leaves no partial file visible.
    """
    if df is None:
        df = spark.createDataFrame(rows or [], schema=table.spark_schema())
    if config.is_local(root):
        make_local_folder(config.local_path(table.path(root)))
    run = uuid.uuid4().hex[:12]  # names this append's files: one run may append twice
    staging = f"{table.path(root)}/_staging_append.{run}"
    df.select(*table.columns).write.mode("overwrite").parquet(staging)
    part_path = table.partition_path(value, root)
    files.make_folder(part_path)
    for name, _ in files.entries(staging):
        if name.endswith(".parquet"):
            files.rename(f"{staging}/{name}", f"{part_path}/{run}-{name}")
    files.write_bytes(f"{part_path}/_SUCCESS", b"")
    files.delete(staging)
