"""Reading an ODS replica: its load-day folders, the day's folder alone for an incremental run, a
CSV or Parquet --source, typed and checked change rows."""

from __future__ import annotations

import datetime as dt
import os
import re

from jobs.core import config, sqlfiles, storage, tables
from jobs.core.errors import BadInputError
from jobs.ods_snapshot import drift
from jobs.ods_snapshot.spec import IDENTIFIER, Spec

# --- input -------------------------------------------------------------------------------------


def read_changes(spark, entity: str, source: str | None, keys: tuple[str, ...] | None, root: str,
                  landed_on: dt.date | None = None, as_of: dt.date | None = None):
    """(spec, change rows normalized to typed columns + ods_dt_text/ods_seq_text/load_date, has_load_date,
    day_only).

    With `landed_on`, a Parquet source with a load_date=<that day> folder is read from that folder
    alone (day_only True: its rows only, load_date still a column); one with load_date folders but
    not that day's gives no rows (day_only True, the replica's columns); otherwise the
    whole source is read. The load_date folders read (with `landed_on`, that day's; otherwise every
    one up to `as_of`) are checked for schema drift first (drift.py).
    """
    if not entity or not IDENTIFIER.match(entity):
        raise BadInputError(f"--entity {entity!r}: expected a name of letters, digits and underscores")
    known = entity in tables.ENTITY_PAYLOADS
    if source is None:
        registry_keys = tables.entity_keys(entity)  # unknown entity: one-line OstapError
        raw = tables.TABLES[f"raw.{entity}"]
        path = raw.path(root)
        if not storage.path_exists(spark, path):
            raise BadInputError(f"raw.{entity}: no change rows at {path} (run `ostap generate` or pass --source)")
        source, source_format = path, "parquet"
    else:
        registry_keys = tables.entity_keys(entity) if known else None
        if not storage.path_exists(spark, source):
            raise BadInputError(f"--source {source}: no such file or folder")
        source_format = format_of(source)
    if keys and registry_keys and tuple(keys) != registry_keys:
        raise BadInputError(f"--key {','.join(keys)}: {entity} is keyed by {','.join(registry_keys)} in the "
                            "table registry; use another --entity name for a different key")
    keys = tuple(keys or registry_keys or ())
    if not keys:
        raise BadInputError(f"--entity {entity} is not in the table registry: pass --key COL[,COL] with --source")

    day_only, ignored = False, []
    if source_format == "csv":
        df = (spark.read.option("header", True).option("inferSchema", True)
              .option("timestampFormat", "yyyy-MM-dd[ HH:mm:ss[.SSSSSS]]").csv(source))
    else:
        day_folder = f"{source.rstrip('/')}/load_date={landed_on}" if landed_on else None
        nothing_landed = bool(day_folder) and not storage.path_exists(spark, day_folder)
        if nothing_landed:
            # No rows, with the columns of the latest load day: listing every load_date folder
            # to find no row of the day in them would cost the day time that grows with the
            # replica's history (a listing call per folder on HDFS or an object store).
            day_folder = latest_load_folder(spark, source)
        day_only = day_folder is not None
        checked = ([] if nothing_landed else [f"load_date={landed_on}"]) if day_only else None
        schema, ignored = drift.checked_schema(spark, entity, source, tuple(keys), checked, as_of)
        reader = spark.read.schema(schema) if schema is not None else spark.read
        # basePath keeps load_date a column, as when the whole source is read.
        df = (reader.option("basePath", source).parquet(day_folder) if day_only
              else read_replica(spark, source, schema))
        if nothing_landed and day_only:
            df = df.limit(0)
    columns = set(df.columns)
    missing = [c for c in (*keys, *tables.CDC_COLUMN_NAMES) if c not in columns]
    if missing:
        raise BadInputError(f"{source}: missing column(s) {', '.join(missing)} (need the key columns "
                            f"{', '.join(keys)} and {', '.join(tables.CDC_COLUMN_NAMES)})")
    if known:
        payload_ddl = tables.ENTITY_PAYLOADS[entity][1]
        ods, state = tables.TABLES[f"ods.{entity}"], tables.TABLES[f"state.{entity}"]
        missing = [c for c in tables.Table("_", "_", (), payload_ddl).columns if c not in columns]
        if missing:
            raise BadInputError(f"{source}: missing payload column(s) {', '.join(missing)} of {entity}")
        refuse_unparseable(df, payload_ddl, source, entity)
    else:
        fields = [f for f in df.schema.fields if f.name not in (*tables.CDC_COLUMN_NAMES, "load_date")]
        odd = [f.name for f in fields if not IDENTIFIER.match(f.name)]
        if odd:
            raise BadInputError(f"{source}: column name(s) {', '.join(map(repr, odd))} are not plain identifiers")
        payload_ddl = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in fields)
        # Not in the registry, so no suite file: the job validates it with the checks of its keys.
        ods = tables.Table(entity, "ods", keys, f"{payload_ddl}, ods_dt timestamp, ods_seq bigint",
                           description=f"Snapshot of {entity} from {source}.", published=False)
        state = tables.Table(entity, "state", keys, f"{tables.CDC_COLUMNS}, {payload_ddl}", published=False,
                             description=f"Last change per key of {entity} from {source}.")
    spec = Spec(entity, keys, payload_ddl, ods, state, source, source_format, ignored=tuple(ignored))
    return spec, normalize(df, spec), "load_date" in columns, day_only


def refuse_unparseable(df, payload_ddl: str, source: str, entity: str) -> None:
    """Refuse a source whose payload column, read as another type than the registry's (a CSV
    --source), holds a value that does not convert: the cast would fail mid-job (or, lenient,
    turn it into NULL). One small job, only when some column's type differs."""
    from pyspark.sql.types import StructType

    have = dict(df.dtypes)
    differ = [(f.name, f.dataType.simpleString()) for f in StructType.fromDDL(payload_ddl).fields
              if have.get(f.name, f.dataType.simpleString()) != f.dataType.simpleString()]
    if not differ:
        return
    exprs = []
    for i, (column, type_) in enumerate(differ):
        bad = f"`{column}` IS NOT NULL AND try_cast(`{column}` AS {type_}) IS NULL"
        exprs += [f"count_if({bad}) AS bad{i}", f"min(CASE WHEN {bad} THEN CAST(`{column}` AS STRING) END) AS e{i}"]
    found = df.selectExpr(*exprs).first()
    for i, (column, type_) in enumerate(differ):
        if found[f"bad{i}"]:
            raise BadInputError(f"{source}: column {column} of {entity} must be {type_}; {found[f'bad{i}']} row(s) "
                                f"hold a value that is not, e.g. {found[f'e{i}']!r}; nothing published")


def latest_load_folder(spark, source: str) -> str | None:
    """The load_date=YYYY-MM-DD folder of the source with the latest date (one listing of the
    source's top level), None when it has none."""
    days = [name for name in storage.subfolder_names(spark, source)
            if re.fullmatch(r"load_date=\d{4}-\d{2}-\d{2}", name)]
    return f"{source.rstrip('/')}/{days[-1]}" if days else None


def read_replica(spark, source: str, schema=None):
    """The Parquet source, its partition folders listed on the driver.

    Above spark.sql.sources.parallelPartitionDiscovery.threshold (32) folders Spark lists them
    with a distributed job; a year of load_date folders then costs a job of 365 tasks per run
    where listing them from the driver takes a fraction of that (docs/benchmarks.md).
    """
    from jobs.core.spark import session_settings

    with session_settings(spark, {"spark.sql.sources.parallelPartitionDiscovery.threshold": "10000"}):
        return (spark.read.schema(schema) if schema is not None else spark.read).parquet(source)


def format_of(path: str) -> str:
    if path.lower().endswith(".csv"):
        return "csv"
    local = config.local_path(path)
    if config.is_local(path) and os.path.isdir(local):
        names = [n for _, _, files in os.walk(local) for n in files if not n.startswith((".", "_"))]
        if names and all(n.lower().endswith(".csv") for n in names):
            return "csv"
    return "parquet"


def normalize(df, spec: Spec):
    """Typed CDC columns plus the values as read (to tell null from unparseable)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegralType, StringType, StructType, TimestampType

    types = {f.name: f.dataType for f in df.schema.fields}
    # The text as read tells a null from a value that does not parse. A typed column cannot hold
    # an unparseable value, so it gets no text (dq.rejects formats the typed value instead):
    # formatting 10M timestamps as text would cost seconds per full rebuild.
    no_text = F.lit(None).cast("string")
    if isinstance(types["ods_dt"], StringType):
        ods_dt, ods_dt_text = F.expr("try_to_timestamp(ods_dt)"), F.col("ods_dt")
    elif isinstance(types["ods_dt"], TimestampType):
        ods_dt, ods_dt_text = F.col("ods_dt"), no_text
    else:
        ods_dt, ods_dt_text = F.col("ods_dt").cast("timestamp"), F.col("ods_dt").cast("string")
    if isinstance(types["ods_seq"], IntegralType):
        ods_seq, ods_seq_text = F.col("ods_seq").cast("bigint"), no_text
    else:
        ods_seq, ods_seq_text = F.expr("try_cast(ods_seq AS bigint)"), F.col("ods_seq").cast("string")
    payload_types = {f.name: f.dataType for f in StructType.fromDDL(spec.payload_ddl).fields}
    payload = [F.col(c).cast(payload_types[c]).alias(c) for c in spec.payload]
    load_date = F.col("load_date").cast("date") if "load_date" in types else F.lit(None).cast("date")
    return df.select(*payload, ods_dt.alias("ods_dt"), ods_seq.alias("ods_seq"),
                     F.col("ods_type").cast("string").alias("ods_type"),
                     ods_dt_text.alias("ods_dt_text"), ods_seq_text.alias("ods_seq_text"),
                     load_date.alias("load_date"))


def with_reject_reasons(spark, spec: Spec, rows):
    rows.createOrReplaceTempView("snapshot_read")
    null_key_checks = "\n    ".join(f"WHEN {k} IS NULL THEN 'null key column {k}'" for k in spec.keys)
    return spark.sql(sqlfiles.load("ods_snapshot/ods_snapshot_checks.sql", null_key_checks=null_key_checks,
                                   changes="snapshot_read"))
