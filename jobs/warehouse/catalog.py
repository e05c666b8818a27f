"""Reading the published tables without Spark: DuckDB views named like the tables.

`ostap tables` lists every table with its published partitions and row counts;
`ostap query "SQL"` runs SQL over them (for example
`select * from marts.sales_plan where ds = '2024-06-01'`). Each view reads the table's
Hive-partitioned Parquet, so it sees exactly what Spark sees: published `ds=` folders only,
never a `_staging_` folder of a run in progress.
"""

from __future__ import annotations

import os

from jobs.core import config, tables
from jobs.core.errors import OstapError

_DUCKDB_TYPES = {"bigint": "BIGINT", "int": "INTEGER", "string": "VARCHAR", "double": "DOUBLE",
                 "date": "DATE", "timestamp": "TIMESTAMPTZ", "boolean": "BOOLEAN"}


def _partition_glob(t: tables.Table, root: str) -> str:
    return f"{config.local_path(t.path(root))}/{t.partition}=*/*.parquet"


def _has_files(t: tables.Table, root: str) -> bool:
    base = config.local_path(t.path(root))
    if not os.path.isdir(base):
        return False
    prefix = f"{t.partition}="
    return any(name.startswith(prefix) and any(f.endswith(".parquet") for f in os.listdir(os.path.join(base, name)))
               for name in os.listdir(base))


def connect(root: str, zones: tuple[str, ...] = ("ods", "marts", "dq")):
    """An in-memory DuckDB connection with one view per table of the given zones."""
    import duckdb

    if not config.is_local(root):
        raise OstapError(f"ostap tables/query read a local warehouse; {root} is remote: "
                         "read it with Spark SQL (see the README)")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for zone in zones:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {zone}")
    for t in tables.TABLES.values():
        if t.zone not in zones:
            continue
        if _has_files(t, root):
            source = (f"read_parquet('{_partition_glob(t, root)}', hive_partitioning = true, "
                      f"hive_types = {{'{t.partition}': VARCHAR}}, union_by_name = true)")
            con.execute(f"CREATE VIEW {t.qualified} AS SELECT * FROM {source}")
        else:
            cols = ", ".join(f"CAST(NULL AS {_duck_type(ddl_type)}) AS {name}"
                             for name, ddl_type in t.column_types) + f", CAST(NULL AS VARCHAR) AS {t.partition}"
            con.execute(f"CREATE VIEW {t.qualified} AS SELECT {cols} WHERE false")
    return con


def _duck_type(ddl_type: str) -> str:
    return _DUCKDB_TYPES.get(ddl_type.strip().lower(), "VARCHAR")


def partition_counts(root: str) -> list[tuple[str, str, int]]:
    """(table, ds, rows) for every published partition of every ods/marts/dq table."""
    con = connect(root)
    out = []
    for t in tables.TABLES.values():
        if t.zone not in ("ods", "marts", "dq"):
            continue
        rows = con.execute(f"SELECT {t.partition}, count(*) FROM {t.qualified} GROUP BY 1 ORDER BY 1").fetchall()
        out.extend((t.qualified, ds, n) for ds, n in rows)
    return out


def format_table(header: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in header]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
