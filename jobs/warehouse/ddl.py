"""`ostap ddl`: print (or write to sql/ddl/) the CREATE TABLE of every published table."""

from __future__ import annotations

import os

from jobs.core import tables

HELP = "print the DDL of every published table, or write it to sql/ddl/ with --write"


def add_arguments(parser) -> None:
    parser.add_argument("--write", metavar="DIR", nargs="?", const="sql/ddl",
                        help="write one file per table into DIR (default sql/ddl)")


def render() -> dict[str, str]:
    return {f"{t.zone}.{t.name}.sql": tables.ddl(t) for t in tables.published_tables()}


def run(args, ctx) -> int:
    files = render()
    if args.write:
        os.makedirs(args.write, exist_ok=True)
        for name, text in files.items():
            with open(os.path.join(args.write, name), "w") as fh:
                fh.write(text)
        print(f"wrote {len(files)} DDL files to {args.write}")
    else:
        print("\n".join(files.values()))
    return 0
