"""The manifest of a published partition (`_RUN.json`, written by publishing, never by a job):
which run wrote it, with what code and options, from which inputs, and what the quality gate said."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path

from jobs.core.run import RunContext, _now

LIBRARIES = ("pyspark", "great-expectations", "pandas", "apache-airflow", "prophet", "rectools-lightfm")


@functools.cache
def code_version() -> dict[str, str | None]:
    """The package version, and the git commit when the code runs from a checkout."""
    try:
        version = importlib.metadata.version("ostap")
    except importlib.metadata.PackageNotFoundError:
        version = None
    commit = None
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"package": version, "git_commit": commit}


@functools.cache
def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def manifest(ctx: RunContext, table: str, value: str) -> str:
    """The `_RUN.json` text of partition `value` of `table` staged by the run `ctx`."""
    verdict = ctx.verdicts.get(f"{table}/{value}")
    return json.dumps({
        "run_id": ctx.run_id, "table": table, "partition": value, "job": ctx.job, "args": dict(ctx.args),
        "code": code_version(), "versions": library_versions(), "started_at": ctx.started_at,
        "staged_at": _now(), "rows": (verdict or {}).get("rows"), "quality": verdict,
        "inputs": list(ctx.inputs),
    }, default=str, indent=1)
