"""Spark SQL kept in the repository's `sql/` folder, loaded by name.

Templates use `{name}` placeholders for identifiers the job chooses (view names, key lists);
values from users never go through string formatting.
"""

from __future__ import annotations

from functools import cache

from jobs.core.resources import resource_dir

SQL_DIR = resource_dir("sql")


@cache
def _read(name: str) -> str:
    return (SQL_DIR / name).read_text()


def load(name: str, **identifiers: str) -> str:
    """The text of sql/<name>, with `{identifier}` placeholders filled in."""
    text = _read(name)
    return text.format(**identifiers) if identifiers else text
