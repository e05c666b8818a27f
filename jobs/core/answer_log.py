"""The serving answer log: JSON lines `ostap serve` appends (one per answer) and the exposure
landing reads. Here, in core, so that the writer (jobs.serving) and the reader (jobs.abtest)
share one format without importing each other.

Durability: each line is one os.write on a file opened with O_APPEND, so lines of several
threads or processes never interleave, and a line is in the file (the kernel's page cache) before
the answer is sent: killing or restarting the service loses none (a machine crash could lose the
last seconds that the kernel had not yet written out).
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from jobs.core import settings
from jobs.core.errors import BadInputError

# A request id a client may send (X-Request-Id) to make its retries one exposure.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def default_path() -> Path:
    return Path(settings.SERVE_LOG.get() or Path.cwd() / ".serve" / "answers.jsonl")


class AnswerLog:
    """JSON lines appended with one os.write each (O_APPEND: whole lines, no lock needed)."""

    def __init__(self, path: str | Path | None):
        self.fd = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict) -> None:
        if self.fd is not None:
            os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def log_files(pattern: str | Path) -> list[Path]:
    """The log file and its rotated siblings: PATH, PATH.1, PATH-2026-03-01, ... (a glob pattern
    is taken as given)."""
    text = str(pattern)
    if glob.has_magic(text):
        return sorted(Path(p) for p in glob.glob(text))
    return sorted(Path(p) for p in {*glob.glob(text), *glob.glob(f"{glob.escape(text)}[.-]*")})


def read_records(paths: list[Path]) -> Iterator[tuple[Path, int, dict]]:
    """(file, line number, record) of every line. A line that is not a JSON object is refused,
    naming file and line, except a last line without its newline: an answer being written
    right now, which the next landing reads whole."""
    for path in paths:
        lines = path.read_bytes().split(b"\n")
        lines.pop()  # after the last newline: b"", or a line still being written (read next time)
        bad = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                bad.append(number)
                continue
            yield path, number, record
        if bad:
            raise BadInputError(f"answer log {path}: {len(bad)} lines are not JSON objects "
                                f"(lines {', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''})")
