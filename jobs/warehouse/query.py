"""`ostap query "SQL"`: SQL over the published tables by name (DuckDB views over the partitions)."""

from __future__ import annotations

from jobs.warehouse import catalog
from jobs.core.errors import OstapError

HELP = "run SQL over the published tables (e.g. select * from marts.sales_plan where ds = '2024-06-01')"


def add_arguments(parser) -> None:
    parser.add_argument("sql", help="the query; tables are named zone.name (ods.clients, marts.sales_plan, ...)")
    parser.add_argument("--csv", metavar="PATH", help="write the full result to this CSV file instead of printing")
    parser.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")


def run(args, ctx) -> int:
    import duckdb

    con = catalog.connect(ctx.warehouse)
    try:
        result = con.execute(args.sql)
    except duckdb.Error as exc:
        raise OstapError(f"query failed: {str(exc).splitlines()[0]}") from exc
    header = [d[0] for d in result.description]
    if args.csv:
        frame = result.df()
        try:
            frame.to_csv(args.csv, index=False)
        except OSError as exc:
            raise OstapError(f"--csv {args.csv}: cannot write it ({exc.strerror or str(exc).splitlines()[0]})") from None
        print(f"wrote {len(frame)} rows to {args.csv}")
        return 0
    rows = result.fetchmany(args.limit + 1)
    print(catalog.format_table(header, rows[: args.limit]))
    if len(rows) > args.limit:
        print("... more rows (use --limit or --csv)")
    return 0
