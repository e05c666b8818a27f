"""OpenLineage START, COMPLETE and FAIL events of a job run, sent with openlineage-python.

Datasets are named by the warehouse (namespace) and `zone.table` (name); the partition a run
read or wrote is the dataset's subset facet, and the run that wrote it its version. Outputs carry
their schema, row count and the quality gate's assertions; when Airflow runs the job, the parent
run facet names the Airflow task (`--lineage-parent`, from the OpenLineage provider's macro).

Where events go is configured the OpenLineage way (`openlineage.yml`, `OPENLINEAGE_CONFIG`,
`OPENLINEAGE_URL`, `OPENLINEAGE__TRANSPORT__*`); with none of it, they are appended to a file
under a local warehouse (OSTAP_OPENLINEAGE_FILE). Lineage never fails a job: a backend that
cannot be reached costs one warning and the run's later events.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import traceback
import uuid
from pathlib import Path

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    data_quality_assertions_dataset,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)
from openlineage.client.facet_v2 import base_subset_dataset as subset
from openlineage.client.serde import Serde
from openlineage.client.transport.file import FileConfig, FileTransport

from jobs.core import config, settings
from jobs.core.run import RunContext

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/ostap/ostap/tree/main/jobs/core/lineage_events.py"
DEFAULT_NAMESPACE = "ostap"
EVENTS_FILE = "openlineage.jsonl"
# The embedded Airflow's OpenLineage provider writes its DAG and task events beside them.
AIRFLOW_EVENTS_FILE = "airflow-openlineage.jsonl"
# The namespace of ostap run ids turned into OpenLineage's UUID run ids (stable: one run, one UUID).
RUN_UUID_NAMESPACE = uuid.UUID("6f9b1b52-4a4e-4d61-9a0e-0c2f1d6c7a11")


def openlineage_run_id(ostap_run_id: str) -> str:
    return str(uuid.uuid5(RUN_UUID_NAMESPACE, ostap_run_id))


def job_namespace() -> str:
    return os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE


def job_name(ctx: RunContext) -> str:
    """`ostap.<command>[.<action>]`, with the entity for commands run once per entity (the snapshot)."""
    parts = ["ostap", ctx.job, ctx.args.get("action"), ctx.args.get("entity")]
    return ".".join(str(part) for part in parts if part)


def _configured_elsewhere() -> bool:
    """True when OpenLineage's own configuration exists (it then decides where events go)."""
    if any(name in os.environ for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED")):
        return True
    if any(name.startswith("OPENLINEAGE__") for name in os.environ):
        return True
    return any(path.is_file() for path in (Path.cwd() / "openlineage.yml",
                                           Path("~/.openlineage/openlineage.yml").expanduser()))


def events_file(warehouse: str) -> str | None:
    """The default events file: OSTAP_OPENLINEAGE_FILE, or `_lineage/openlineage.jsonl` under a
    local warehouse (None: no default for a remote one)."""
    chosen = settings.OPENLINEAGE_FILE.get()
    if chosen:
        return None if chosen == "off" else chosen
    folder = lineage_dir(warehouse)
    return None if folder is None else str(folder / EVENTS_FILE)


def lineage_dir(warehouse: str) -> Path | None:
    """`_lineage/` of a local warehouse, where the default event files go (None for a remote one)."""
    return Path(config.local_path(warehouse)) / "_lineage" if config.is_local(warehouse) else None


def _client(warehouse: str):
    if _configured_elsewhere():
        return OpenLineageClient()
    path = events_file(warehouse)
    if path is None:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=LineAppendingTransport(FileConfig(log_file_path=path, append=True)))


class LineAppendingTransport(FileTransport):
    """The file transport, writing each event as one line in a single O_APPEND write: concurrent
    tasks append to one file without interleaving (a buffered write may split a long line)."""

    def emit(self, event) -> None:
        line = (Serde.to_json(event) + "\n").encode()
        fd = os.open(self.config.log_file_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


@attr.define
class OstapRunFacet(RunFacet):
    """The ostap run id, which names the run in manifests, `_RUN.json` and the dq tables."""

    runId: str  # noqa: N815 - OpenLineage's field style
    command: str
    ds: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{PRODUCER}#OstapRunFacet"


class RunEvents:
    """The events of one job run: `start()`, then `complete()` or `fail(error)`."""

    def __init__(self, ctx: RunContext, parent: str | None = None):
        self.ctx = ctx
        self.parent = parent or None
        self.run_id = openlineage_run_id(ctx.run_id)
        self._client = None
        self._broken = False

    def start(self) -> None:
        self._emit("START", datasets=False)

    def complete(self) -> None:
        self._emit("COMPLETE")

    def fail(self, error: BaseException | str) -> None:
        self._emit("FAIL", error=error)

    def _emit(self, kind: str, *, datasets: bool = True, error=None) -> None:
        if self._broken:
            return
        try:
            if self._client is None:
                self._client = _client(self.ctx.warehouse) or False
            if self._client is False:
                return
            self._client.emit(self.event(kind, datasets=datasets, error=error))
        except Exception as exc:  # noqa: BLE001 - lineage must never fail the job
            self._broken = True
            log.warning("OpenLineage: could not send the %s event of run %s (%s: %s); the job goes on "
                        "without lineage events", kind, self.ctx.run_id, type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "")

    def event(self, kind: str, *, datasets: bool = True, error=None):
        ctx = self.ctx
        facets = {"ostap": OstapRunFacet(runId=ctx.run_id, command=ctx.job, ds=ctx.ds if ctx.ds_date else None,
                                         producer=PRODUCER)}
        if ctx.ds_date is not None:
            day = dt.datetime.combine(ctx.ds_date, dt.time(), tzinfo=dt.UTC)
            facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
                nominalStartTime=day.isoformat(), nominalEndTime=(day + dt.timedelta(days=1)).isoformat())
        if self.parent:
            facets["parent"] = _parent_facet(self.parent)
        if error is not None:
            stack = "".join(traceback.format_exception(error)) if isinstance(error, BaseException) else None
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=str(error) or type(error).__name__, programmingLanguage="python", stackTrace=stack)
        return RunEvent(
            eventType=getattr(RunState, kind), eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=self.run_id, facets=facets),
            job=Job(namespace=job_namespace(), name=job_name(ctx), facets={"jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="OSTAP", jobType="JOB")}),
            inputs=self.input_datasets() if datasets else [], outputs=self.output_datasets() if datasets else [],
            producer=PRODUCER)

    def input_datasets(self) -> list:
        datasets = []
        for entry in self.ctx.inputs:
            facets = {}
            if entry.get("run_id"):
                facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=entry["run_id"])
            condition = _subset_condition(entry["table"], entry["partition"])
            input_facets = {"subset": subset.InputSubsetInputDatasetFacet(inputCondition=condition)} if condition else {}
            datasets.append(InputDataset(namespace=self.namespace, name=entry["table"], facets=facets,
                                         inputFacets=input_facets))
        return datasets

    def output_datasets(self) -> list:
        """What the run staged, with the verdicts of what it validated (also a FAIL's refused outputs)."""
        staged = {(o["table"], o["partition"]): o for o in self.ctx.outputs}
        checked = {tuple(key.rsplit("/", 1)): verdict for key, verdict in self.ctx.verdicts.items()}
        datasets = []
        for table, partition in sorted(set(staged) | set(checked)):
            output, verdict = staged.get((table, partition)), checked.get((table, partition))
            facets, output_facets = {}, {}
            if output:
                facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
                    schema_dataset.SchemaDatasetFacetFields(name=name, type=kind) for name, kind in output["columns"]])
                facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=self.ctx.run_id)
            if verdict and verdict.get("checks") is not None:
                facets["dataQualityAssertions"] = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                    assertions=[data_quality_assertions_dataset.Assertion(
                        assertion=check["expectation"], success=check["success"], column=check["column"] or None,
                        severity=check["severity"]) for check in verdict["checks"]])
            rows = (verdict or {}).get("rows")
            if output and rows is not None:
                output_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=rows)
            condition = _subset_condition(table, partition)
            if condition:
                output_facets["subset"] = subset.OutputSubsetOutputDatasetFacet(outputCondition=condition)
            datasets.append(OutputDataset(namespace=self.namespace, name=table, facets=facets,
                                          outputFacets=output_facets))
        return datasets

    @property
    def namespace(self) -> str:
        """The warehouse as a URI (`file:///...` for a local one)."""
        warehouse = self.ctx.warehouse
        if config.is_local(warehouse):
            return Path(config.local_path(warehouse)).resolve().as_uri()
        return warehouse.rstrip("/")


def _parent_facet(parent: str):
    """The ParentRunFacet of `namespace/job_name/run_id` (the provider's lineage_parent_id)."""
    namespace, _, rest = parent.partition("/")
    name, _, run_id = rest.rpartition("/")
    if not (namespace and name and run_id):
        raise ValueError(f"--lineage-parent {parent!r}: expected namespace/job_name/run_id")
    return parent_run.ParentRunFacet(run=parent_run.Run(runId=run_id),
                                     job=parent_run.Job(namespace=namespace, name=name))


def _subset_condition(table: str, partition: str):
    """The partition as a subset condition: `ds=D` or a plain value of the table's partition
    column, or `col<=D` (a replica read up to a load day); None for a whole table (`*`)."""
    if partition in ("", "*"):
        return None
    if "<=" in partition:
        column, _, value = partition.partition("<=")
        return subset.CompareSubsetCondition(
            left=subset.FieldBaseCompareExpression(field=column), right=subset.LiteralCompareExpression(value=value),
            comparison="LESS_EQUAL_THAN")
    column, sep, value = partition.partition("=")
    if not sep:
        column, value = _partition_column(table), partition
    return subset.PartitionSubsetCondition(partitions=[
        subset.Partition(identifier=f"{column}={value}", dimensions={column: value})])


def _partition_column(table: str) -> str:
    from jobs.core import tables

    try:
        return tables.table(table).partition
    except KeyError:
        return "ds"
