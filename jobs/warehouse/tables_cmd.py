"""`ostap tables`: every published table with its partitions and row counts."""

from __future__ import annotations

from jobs.warehouse import catalog

HELP = "list every published table with its partitions and row counts"


def add_arguments(parser) -> None:
    parser.add_argument("--zone", choices=["ods", "marts", "dq"], help="only tables of this zone")


def run(args, ctx) -> int:
    rows = [r for r in catalog.partition_counts(ctx.warehouse) if not args.zone or r[0].startswith(args.zone + ".")]
    if not rows:
        print("no published partitions yet (run `ostap demo` or the DAGs first)")
        return 0
    print(catalog.format_table(["table", "ds", "rows"], rows))
    return 0
