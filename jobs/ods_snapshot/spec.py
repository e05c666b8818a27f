"""What a snapshot run reads and writes (Spec), its figures (SnapshotResult), and the names and
limits the job, the replica reader and the state layout share."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from jobs.core import storage, tables

DEFAULT_MAX_REJECT_SHARE = 0.001
# A state partition names its run and its base when it is a delta (see the state layout in
# incremental_input) in this sidecar, and counts its rows (when whole; partition_rows: the rows of
# the partition itself, whole or delta), tombstones, pending rows and conflicted keys: the next run
# skips the work those figures make needless.
STATE_SIDECAR = "_STATE.json"
# An ods partition names the run that wrote it (an incremental run reads ods(D-1) only when the
# run that wrote state(D-1) wrote it too).
SNAPSHOT_SIDECAR = "_SNAPSHOT.json"
DEFAULT_STATE_COMPACTION = 0.25
# How a state delta is written and read back (stage_state).
DELTA_FILE_ROWS = 50_000
DELTA_OPEN_COST = 64 * 1024
FIRST_KEYS_SHOWN = 5
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class SnapshotResult:
    entity: str
    ds: str
    mode: str
    rows_read: int = 0
    state_rows_read: int = 0
    live_keys: int = 0
    deletes_applied: int = 0
    duplicates_collapsed: int = 0
    conflicts: int = 0
    rejects: int = 0
    pending_rows: int = 0
    seconds: float = 0.0
    run_id: str = ""
    state_base: str = ""  # ds of the whole state this run's state is a delta on ("": written whole)
    untouched_from: str = ""  # incremental runs: where the untouched keys' rows came from (ods | state)
    notes: list[str] = field(default_factory=list)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    excluded_keys: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"snapshot {self.entity} ds={self.ds} {self.mode}: read {self.rows_read} rows"
                + (f" + {self.state_rows_read} state rows" if self.mode == "incremental" else "")
                + f", {self.live_keys} live keys, {self.deletes_applied} deletes applied, "
                f"{self.duplicates_collapsed} duplicates collapsed, {self.conflicts} conflicts, "
                f"{self.rejects} rejects, {self.pending_rows} rows pending a later day, "
                + (f"state as a delta on ds={self.state_base}, " if self.state_base else "")
                + f"{self.seconds:.1f} s (run {self.run_id})")
        return text + "".join(f"; {note}" for note in self.notes)


@dataclass(frozen=True)
class Spec:
    """What one snapshot run reads and writes."""

    entity: str
    keys: tuple[str, ...]
    payload_ddl: str  # payload columns (keys included), Spark DDL
    ods: tables.Table
    state: tables.Table
    source: str
    source_format: str  # parquet | csv
    ignored: tuple[str, ...] = ()  # warnings of the replica's columns left out (drift.py)

    @property
    def payload(self) -> list[str]:
        return tables.Table("_", "_", (), self.payload_ddl).columns

    @property
    def content(self) -> list[str]:
        """What makes two changes at one (key, ods_dt, ods_seq) the same change."""
        return ["ods_type"] + [c for c in self.payload if c not in self.keys]


def view(df, name: str) -> str:
    df.createOrReplaceTempView(name)
    return name


def observed(observation, *names: str) -> dict:
    """What an Observation counted, once the action that read its rows has run.

    Zeros when Spark optimized the observed rows away: on a day with no change rows, adaptive
    execution replaces a join with the (empty) touched keys by an empty relation, observation
    included, and the observation then holds an empty row.
    """
    try:
        return observation.get or dict.fromkeys(names, 0)  # Connect: {} for an empty row
    except Exception as error:  # noqa: BLE001 - a classic session's error is py4j's
        # A classic session's .get fails on an empty row, in the JVM's conversion of it to Python.
        if "toPyRow" not in str(error):
            raise
        return dict.fromkeys(names, 0)


def sidecar(spark, table: tables.Table, ds: str, name: str, root: str) -> dict | None:
    """The JSON sidecar `name` of partition ds of `table`, None when it has none."""
    text = storage.read_text(spark, f"{table.partition_path(ds, root)}/{name}")
    return json.loads(text) if text else None


def key_text(key: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in key.items())
