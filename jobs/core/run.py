"""The run context: what one command run knows (its date, run id, warehouse root, Spark master
or Connect server, and settings). The CLI makes it once from the command line and passes it down; jobs, publishing
and the quality gate read the root and the run id from it, never from the environment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Mapping

from jobs.core import config
from jobs.core.errors import BadInputError


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A short random id naming one run in partitions, locks, staging folders and dq records."""
    return uuid.uuid4().hex[:12]


# Run dates the jobs can compute with: a job steps a day either side of D (0001-01-01 and
# 9999-12-31 overflow), and pandas timestamps end in 2262.
FIRST_DS, LAST_DS = dt.date(1900, 1, 1), dt.date(2199, 12, 31)


def parse_ds(value: str | dt.date, option: str = "--ds") -> dt.date:
    """A partition date from YYYY-MM-DD, refused in one line naming the option."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value).strip()):
            raise ValueError
        day = dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise BadInputError(f"{option} {value!r}: expected a date YYYY-MM-DD, e.g. 2024-06-01") from None
    if not FIRST_DS <= day <= LAST_DS:
        raise BadInputError(f"{option} {value!r}: expected a date between {FIRST_DS} and {LAST_DS}")
    return day


@dataclasses.dataclass(frozen=True)
class RunContext:
    warehouse: str
    ds_date: dt.date | None = None
    run_id: str = dataclasses.field(default_factory=new_run_id)
    master: str | None = None  # None: OSTAP_SPARK_MASTER, or the master spark-submit chose
    remote: str | None = None  # a Spark Connect server (sc://host:port); None: OSTAP_SPARK_REMOTE, else classic
    conf: Mapping[str, str] = dataclasses.field(default_factory=dict)
    job: str = ""  # the command, e.g. "targets"
    args: Mapping[str, object] = dataclasses.field(default_factory=dict)  # its options, for the manifest
    started_at: str = dataclasses.field(default_factory=lambda: _now())
    # What the run read, recorded as it reads (jobs.core.storage.read_input) for the manifests it
    # writes: {"table", "partition", "run_id"}; and the quality verdicts of what it staged.
    inputs: list[dict] = dataclasses.field(default_factory=list, compare=False)
    verdicts: dict[str, dict] = dataclasses.field(default_factory=dict, compare=False)
    # What it staged: {"table", "partition", "columns"} (its OpenLineage outputs; rows are in verdicts).
    outputs: list[dict] = dataclasses.field(default_factory=list, compare=False)
    # The OpenLineage parent run when a scheduler runs the job: namespace/job_name/run_id.
    lineage_parent: str | None = None

    @classmethod
    def create(cls, *, warehouse: str | None = None, ds: str | dt.date | None = None, run_id: str | None = None,
               master: str | None = None, conf: Mapping[str, str] | None = None, job: str = "",
               args: Mapping[str, object] | None = None, remote: str | None = None,
               lineage_parent: str | None = None) -> RunContext:
        """A context whose unset parts come from the settings (OSTAP_WAREHOUSE, OSTAP_SPARK_MASTER)."""
        return cls(warehouse=config.warehouse_root(warehouse),
                   ds_date=None if ds is None else parse_ds(ds),
                   run_id=run_id or new_run_id(),
                   master=master, remote=remote,
                   conf=dict(conf or {}), job=job, args=dict(args or {}), lineage_parent=lineage_parent or None)

    @classmethod
    def from_args(cls, args) -> RunContext:
        """The context of a CLI command: --warehouse, --master, --conf and --ds when it has one."""
        options = {k: v for k, v in vars(args).items()
                   if not k.startswith("_") and k not in ("verbose", "command", "lineage_parent") and isinstance(v, str | int | float | bool)}
        return cls.create(warehouse=getattr(args, "warehouse", None), ds=getattr(args, "ds", None),
                          master=getattr(args, "master", None), remote=getattr(args, "remote", None),
                          conf=config.parse_conf(getattr(args, "conf", [])),
                          job=getattr(args, "command", "") or "", args=options,
                          lineage_parent=getattr(args, "lineage_parent", None))

    @property
    def ds(self) -> str:
        """The run's date as YYYY-MM-DD (the partition value of daily tables)."""
        if self.ds_date is None:
            raise BadInputError("this command needs a date: pass --ds YYYY-MM-DD")
        return self.ds_date.isoformat()

    def on(self, ds: str | dt.date) -> RunContext:
        """The same run (id, warehouse, Spark) for another date, e.g. a chain of days in one process."""
        return dataclasses.replace(self, ds_date=parse_ds(ds), inputs=[], verdicts={}, outputs=[])

    def record_input(self, table: str, partition: str, run_id: str | None, **extra) -> None:
        """Note an input the run read (once per table and partition)."""
        entry = {"table": table, "partition": partition, "run_id": run_id, **extra}
        if not any(i["table"] == table and i["partition"] == partition for i in self.inputs):
            self.inputs.append(entry)

    def spark(self, app_name: str):
        """The run's SparkSession (created with its master and settings, or the one running)."""
        from jobs.core.spark import get_spark

        return get_spark(app_name, master=self.master, conf=dict(self.conf), warehouse=self.warehouse,
                         remote=self.remote)
