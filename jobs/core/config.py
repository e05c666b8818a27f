"""The warehouse root and the Spark master (jobs.core.settings), and warehouse paths."""

from __future__ import annotations

import os
import re

from jobs.core import settings

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def warehouse_root(override: str | None = None) -> str:
    """The warehouse root as a URI-or-path without a trailing slash.

    Local paths are made absolute so that Spark executors in other working directories
    (spark-submit, a standalone cluster on the same machine) resolve the same folder.
    """
    root = override or settings.WAREHOUSE.get()
    if _URI.match(root):
        return root.rstrip("/")
    return os.path.abspath(root)


def is_local(uri: str) -> bool:
    return not _URI.match(uri) or uri.startswith("file:")


def local_path(uri: str) -> str:
    """A local file-system path for a warehouse location (for pyarrow/DuckDB readers)."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if uri.startswith("file:"):
        return uri[len("file:"):]
    return uri


def spark_master(override: str | None = None) -> str:
    return override or settings.SPARK_MASTER.get()


def spark_remote(override: str | None = None) -> str | None:
    """The Spark Connect server a session runs on (`sc://host:port`), or None for a classic session."""
    return override or settings.SPARK_REMOTE.get()


def parse_conf(pairs: list[str] | None) -> dict[str, str]:
    """Turn repeated `--conf key=value` options into a dict, refusing malformed ones."""
    from jobs.core.errors import OstapError

    conf: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OstapError(f"--conf {pair!r}: expected key=value, e.g. --conf spark.sql.shuffle.partitions=8")
        conf[key.strip()] = value.strip()
    return conf
