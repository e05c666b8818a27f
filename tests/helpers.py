"""Run contexts for tests: the CLI makes one per command; tests make theirs here."""

from __future__ import annotations

from jobs.core import config
from jobs.core.run import RunContext


def wh() -> str:
    """The warehouse root the fixtures point OSTAP_WAREHOUSE at (the session's, or `warehouse`'s)."""
    return config.warehouse_root()


def ctx_for(ds=None, root=None, run_id: str | None = None) -> RunContext:
    """A run context for `ds` on warehouse `root` (default: wh())."""
    return RunContext.create(warehouse=None if root is None else str(root), ds=ds, run_id=run_id)
