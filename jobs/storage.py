"""Reading and publishing table partitions so that a partition appears whole or not at all.

Publishing writes the partition to a staging folder beside the table, then swaps it in with
directory renames through the Hadoop FileSystem API (atomic on HDFS and local disk, a
copy on object stores). A reader sees the previous partition, or (for a moment during the
swap of a rerun) none, never a partial one. Staging and trash folders start with `_`, which
Spark, DuckDB and pyarrow all skip when they discover partitions.
"""

from __future__ import annotations

import uuid

from jobs.tables import Table


def _fs(spark, path: str):
    jvm = spark._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark._jsc.hadoopConfiguration()), hpath


def path_exists(spark, path: str) -> bool:
    fs, hpath = _fs(spark, path)
    return fs.exists(hpath)


def read_text(spark, path: str) -> str | None:
    """A small text file (a sidecar), or None when it does not exist."""
    fs, hpath = _fs(spark, path)
    if not fs.exists(hpath):
        return None
    stream = fs.open(hpath)
    try:
        reader = spark._jvm.java.io.BufferedReader(spark._jvm.java.io.InputStreamReader(stream, "UTF-8"))
        lines = []
        while (line := reader.readLine()) is not None:
            lines.append(line)
        return "\n".join(lines)
    finally:
        stream.close()


def write_bytes(spark, path: str, payload: bytes) -> None:
    """A small file (a sidecar, a report page, a model), replaced if it exists."""
    fs, hpath = _fs(spark, path)
    stream = fs.create(hpath, True)
    try:
        stream.write(bytearray(payload))
    finally:
        stream.close()


def delete_path(spark, path: str) -> None:
    fs, hpath = _fs(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def subfolder_names(spark, path: str) -> list[str]:
    """Names of the folders directly in `path`, sorted (one listing call); [] when there is no
    such folder (listing a file gives the file itself, which is not a folder)."""
    fs, hpath = _fs(spark, path)
    if not fs.exists(hpath):
        return []
    return sorted(status.getPath().getName() for status in fs.listStatus(hpath) if status.isDirectory())


def list_partitions(spark, table: Table, root: str | None = None) -> list[str]:
    """Partition values of a table that are published (have a _SUCCESS marker), sorted."""
    table_path = table.path(root)
    prefix = f"{table.partition}="
    return [name[len(prefix):] for name in subfolder_names(spark, table_path)
            if name.startswith(prefix) and path_exists(spark, f"{table_path}/{name}/_SUCCESS")]


def publish_partition(df, table: Table, value: str, root: str | None = None, run_id: str | None = None,
                      validate: bool = True, sidecar: dict[str, str] | None = None) -> str:
    """Check `df` against the table's data-quality suite, then write it (without the partition
    column) as partition `value` of `table` by staged swap.

    `sidecar` maps file names (starting with `_`, so that readers skip them) to small texts
    written into the partition before the swap: they appear together with its rows.
    A failed critical expectation raises DataQualityError and nothing is written.
    Returns the final partition path.
    """
    run_id = run_id or uuid.uuid4().hex[:12]
    staging = stage_partition(df, table, value, root=root, run_id=run_id, validate=validate, sidecar=sidecar)
    return swap_in(df.sparkSession, table, value, staging, root=root, run_id=run_id)


def stage_partition(df, table: Table, value: str, root: str | None = None, run_id: str | None = None,
                    validate: bool = True, sidecar: dict[str, str] | None = None) -> str:
    """The first half of publish_partition: gate and write `df` into a staging folder readers
    never see (its name starts with `_`); return that folder for swap_in or discard_staged.

    A job that publishes two partitions can stage both and swap them in only when both are
    written.
    """
    spark = df.sparkSession
    run_id = run_id or uuid.uuid4().hex[:12]
    if validate:
        from jobs import quality  # Great Expectations loads only in jobs that publish

        quality.gate(df, table, value, run_id=run_id, root=root)
    staging = staging_path(table, value, root, run_id)
    columns = [c for c in df.columns if c != table.partition]
    try:
        df.select(*columns).write.mode("overwrite").parquet(staging)
    finally:
        # The gate cached df so that validation and this write compute it once.
        df.unpersist()
    write_sidecars(spark, staging, sidecar)
    return staging


def staging_path(table: Table, value: str, root: str | None, run_id: str) -> str:
    return f"{table.path(root)}/_staging_{table.partition}={value}.{run_id}"


def discard_staged(spark, table: Table, value: str, root: str | None, run_id: str) -> None:
    """Delete what stage_partition wrote for this run (nothing is published)."""
    delete_path(spark, staging_path(table, value, root, run_id))


def write_sidecars(spark, staging: str, sidecar: dict[str, str] | None) -> None:
    """Write small texts into a staged partition; their names start with `_` so readers skip them."""
    for name, text in (sidecar or {}).items():
        if not name.startswith("_"):
            raise ValueError(f"sidecar file {name!r}: its name must start with '_' so that readers skip it")
        write_bytes(spark, f"{staging}/{name}", text.encode())


def swap_in(spark, table: Table, value: str, staging: str, root: str | None = None,
            run_id: str | None = None) -> str:
    """Replace partition `value` by the staged folder (the second half of publish_partition)."""
    run_id = run_id or uuid.uuid4().hex[:12]
    final = table.partition_path(value, root)
    trash = f"{table.path(root)}/_trash_{table.partition}={value}.{run_id}"
    fs, final_path = _fs(spark, final)
    jvm = spark._jvm
    staged_path = jvm.org.apache.hadoop.fs.Path(staging)
    trash_path = jvm.org.apache.hadoop.fs.Path(trash)
    had_previous = fs.exists(final_path)
    if had_previous and not fs.rename(final_path, trash_path):
        raise RuntimeError(f"could not move the previous partition {final} aside")
    if not fs.rename(staged_path, final_path):
        if had_previous:
            fs.rename(trash_path, final_path)
        raise RuntimeError(f"could not move the staged partition into {final}")
    if had_previous:
        fs.delete(trash_path, True)
    _remove_leftovers(spark, table, value, root)
    return final


def _remove_leftovers(spark, table: Table, value: str, root: str | None) -> None:
    """Delete staging and trash folders of this partition left by runs that were killed.

    Readers never see them (their names start with `_`), but they would pile up.
    """
    fs, table_path = _fs(spark, table.path(root))
    prefixes = (f"_staging_{table.partition}={value}.", f"_trash_{table.partition}={value}.")
    for status in fs.listStatus(table_path):
        if status.getPath().getName().startswith(prefixes):
            fs.delete(status.getPath(), True)


def read_partition(spark, table: Table, value: str, root: str | None = None):
    """A published partition as a DataFrame with the registry's schema (partition column excluded)."""
    return spark.read.schema(table.spark_schema()).parquet(table.partition_path(value, root))


def append_records(spark, table: Table, rows: list[dict] | None, value: str, root: str | None = None, df=None):
    """Append rows to an append-log table (dq.*) under partition `value`.

    Each append is its own Parquet file set in the partition, written to staging and moved in,
    so earlier records are never rewritten and a crash leaves no partial file visible.
    """
    if df is None:
        df = spark.createDataFrame(rows or [], schema=table.spark_schema())
    run = uuid.uuid4().hex[:12]
    staging = f"{table.path(root)}/_staging_append.{run}"
    df.select(*table.columns).write.mode("overwrite").parquet(staging)
    fs, part_path = _fs(spark, table.partition_path(value, root))
    jvm = spark._jvm
    fs.mkdirs(part_path)
    staged = jvm.org.apache.hadoop.fs.Path(staging)
    for status in fs.listStatus(staged):
        name = status.getPath().getName()
        if name.endswith(".parquet"):
            fs.rename(status.getPath(), jvm.org.apache.hadoop.fs.Path(part_path, f"{run}-{name}"))
    fs.create(jvm.org.apache.hadoop.fs.Path(part_path, "_SUCCESS"), True).close()
    fs.delete(staged, True)
