"""Schema drift between the load_date folders of a Parquet replica (README.md, "Schema drift").

A snapshot reads a fixed set of columns: the registry's raw.<entity>, or, for an entity outside
the registry, the columns of the replica's first load_date folder. Before any row is read, the
Parquet footers of the folders a run reads (incremental: the day's folder; full: every folder up
to ds) are checked against them:

  a column the reference lacks           ignored, one warning naming the folder and column
  a reference column of another type     BadInputError naming folder, column, both types
  a reference column missing             BadInputError, except a registry payload column (not a
                                         key) missing from the folders before the first that
                                         has it: it was added later, and the earlier rows read
                                         it as NULL

The replica is then read with the reference schema, never with one file's (Spark's default,
which reads a column missing from later folders as NULL without a word).
"""

from __future__ import annotations

import json
import os
import re

from jobs.core import config, storage, tables
from jobs.core.errors import BadInputError

LOAD_FOLDER = re.compile(r"load_date=\d{4}-\d{2}-\d{2}")
# Spark writes its own schema into every Parquet footer it writes; it reads it back from there.
SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"


def load_folders(spark, source: str) -> list[str]:
    """The load_date=YYYY-MM-DD folder names of a replica, in date order (one listing)."""
    return [name for name in storage.subfolder_names(spark, source) if LOAD_FOLDER.fullmatch(name)]


def checked_schema(spark, entity: str, source: str, keys: tuple[str, ...], days: list[str] | None, as_of):
    """(the schema, load_date included, to read a replica with once the folders a run reads passed
    the drift check, or None when the source has no load_date folders; the warnings of the
    columns ignored, for the run to log once).

    `days`: the folder names to check (an incremental run: its day's, or none when nothing
    landed); None: every folder up to `as_of` (a full run).
    """
    from pyspark.sql.types import StructType

    source = source.rstrip("/")
    known = entity in tables.ENTITY_PAYLOADS
    listed = None
    if days is None or not known:
        listed = load_folders(spark, source)
        if not listed:
            return None, []
    names = days if days is not None else [n for n in listed if as_of is None or n <= f"load_date={as_of}"]
    if known:
        raw = tables.TABLES[f"raw.{entity}"]
        reference = [(f.name, f.dataType.simpleString()) for f in raw.spark_schema().fields]
        # A payload column the registry gained later may be missing from the folders before it.
        optional = {c for c in tables.Table("_", "_", (), tables.ENTITY_PAYLOADS[entity][1]).columns
                    if c not in keys}
        label, against = raw.qualified, f"the registry's {raw.qualified}"
    else:
        first, columns = next(((name, schemas[0][1]) for name in listed
                               if (schemas := footer_schemas(spark, f"{source}/{name}"))), (listed[0], {}))
        reference = [(c, t) for c, t in columns.items() if c != "load_date"]
        optional = set()
        label, against = f"{entity} replica {source}", f"its first folder {first}"
    ignored = check_folders(spark, source, names, reference, optional, label, against)
    ddl = ", ".join(f"`{c}` {t}" for c, t in [*reference, ("load_date", "date")])
    try:
        return StructType.fromDDL(ddl), ignored
    except Exception:
        raise BadInputError(f"{label}: a column type Spark cannot read in {ddl}") from None


def check_folders(spark, source: str, names: list[str], reference: list[tuple[str, str]], optional: set[str],
                  label: str, against: str) -> list[str]:
    """Raise BadInputError at the first reference column missing or retyped in a folder (in
    date order); return a warning per column the reference lacks (at the first folder with it)."""
    expected = dict(reference)
    seen: set[str] = set()
    warned: dict[str, str] = {}
    for name in names:
        for columns in (columns for _, columns in footer_schemas(spark, f"{source}/{name}")):
            for column, type_ in reference:
                found = columns.get(column)
                if found is None:
                    if column in seen or column not in optional:
                        raise _drift(label, name, column, f"is missing ({type_} -> none)")
                    continue
                if found != type_:
                    raise _drift(label, name, column, f"changed type ({type_} -> {found})")
                seen.add(column)
            for column, type_ in columns.items():
                if column not in expected and column != "load_date" and column not in warned:
                    warned[column] = f"{label} {name}: column {column} ({type_}) is not in {against}: ignored"
    never = [c for c, _ in reference if c in optional and c not in seen]
    if names and never:
        raise _drift(label, names[-1], never[0], f"is missing ({expected[never[0]]} -> none)")
    return list(warned.values())


def _drift(label: str, folder: str, column: str, what: str) -> BadInputError:
    return BadInputError(f"{label} {folder}: column {column} {what}; a replica keeps the columns a snapshot "
                         "reads, with their types (jobs/ods_snapshot/README.md, schema drift): nothing published")


def footer_schemas(spark, folder: str) -> list[tuple[str, dict[str, str]]]:
    """[(file, {column: Spark type})] of the Parquet files of a folder, from their footers alone.

    On a local warehouse pyarrow reads each file's footer (no Spark job); elsewhere Spark infers
    the folder's schema (one footer, a small job).
    """
    if not config.is_local(folder):
        return [("", {f.name: f.dataType.simpleString() for f in spark.read.parquet(folder).schema.fields})]
    import pyarrow.parquet as pq

    local = config.local_path(folder)
    files = sorted(os.path.join(top, name) for top, dirs, names in os.walk(local) for name in names
                   if not name.startswith((".", "_")))
    schemas = []
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise BadInputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        schemas.append((os.path.relpath(path, local), _spark_columns(parquet)))
    return schemas


def _spark_columns(parquet) -> dict[str, str]:
    """The Spark types Spark reads a Parquet file's columns as."""
    from pyspark.sql.types import StructType

    written_by_spark = (parquet.metadata.metadata or {}).get(SPARK_SCHEMA_KEY)
    if written_by_spark:
        schema = StructType.fromJson(json.loads(written_by_spark))
        return {f.name: f.dataType.simpleString() for f in schema.fields}
    physical = parquet.schema
    int96 = {physical.column(i).path for i in range(len(physical)) if physical.column(i).physical_type == "INT96"}
    return {f.name: spark_type(f.type, f.name in int96) for f in parquet.schema_arrow}


def spark_type(arrow, int96: bool = False) -> str:
    """The Spark SQL name of the type Spark reads an Arrow-written Parquet column as."""
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(arrow):
        return spark_type(arrow.value_type)
    if t.is_timestamp(arrow):
        # INT96 and UTC-adjusted timestamps read as timestamp; the others as timestamp_ntz.
        return "timestamp" if arrow.tz or int96 else "timestamp_ntz"
    if t.is_decimal(arrow):
        return f"decimal({arrow.precision},{arrow.scale})"
    if t.is_list(arrow) or t.is_large_list(arrow):
        return f"array<{spark_type(arrow.value_type)}>"
    if t.is_map(arrow):
        return f"map<{spark_type(arrow.key_type)},{spark_type(arrow.item_type)}>"
    if t.is_struct(arrow):
        return "struct<" + ",".join(f"{f.name}:{spark_type(f.type)}" for f in arrow) + ">"
    for test, name in ((t.is_boolean, "boolean"), (t.is_int8, "tinyint"), (t.is_int16, "smallint"),
                       (t.is_int32, "int"), (t.is_int64, "bigint"), (t.is_uint8, "smallint"),
                       (t.is_uint16, "int"), (t.is_uint32, "bigint"), (t.is_uint64, "decimal(20,0)"),
                       (t.is_float32, "float"), (t.is_float64, "double"), (t.is_string, "string"),
                       (t.is_large_string, "string"), (t.is_binary, "binary"), (t.is_large_binary, "binary"),
                       (t.is_date, "date")):
        if test(arrow):
            return name
    return str(arrow)  # no Spark name: compared as it is
