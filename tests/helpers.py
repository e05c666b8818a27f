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


def personal_values_in(paths, names: set[str], phones: set[str]) -> list[tuple[str, str]]:
    """(file, value) for every source name or phone found in the files under `paths`.

    Parquet files are read column by column (their pages are compressed, so their bytes would
    hide a value); other files as text. A phone counts in any spelling that normalises to it
    (digit runs of 10+), so '+79161234567' and '8 916 123-45-67' are the same phone."""
    import re
    from pathlib import Path

    import pyarrow.parquet as pq

    from jobs.core.pii import normalize_phone

    name_pattern = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))) if names else None
    digit_runs = re.compile(r"\+?\d[\d\s()\-]{8,}\d")
    found = []
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            if path.suffix == ".parquet":
                table = pq.read_table(path)
                text = "\n".join(str(v) for column in table.columns for v in column.to_pylist() if v is not None)
            else:
                text = path.read_bytes().decode("utf-8", errors="replace")
            if name_pattern:
                found += [(str(path), m.group(0)) for m in name_pattern.finditer(text)]
            found += [(str(path), m.group(0)) for m in digit_runs.finditer(text)
                      if normalize_phone(m.group(0)) in phones]
    return found
