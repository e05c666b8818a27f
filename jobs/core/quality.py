"""The data-quality gate before every publish: the table's Great Expectations suite on the job's DataFrame.

`storage.publish_partition` calls `gate(df, table, ds)` before it writes anything. The gate

  1. loads `expectations/<pipeline>/<zone>.<name>.json` (one suite per published table, reviewed like code;
     every expectation carries meta.severity = critical | warning); a table outside the registry
     (an ods snapshot of a --source) gets one built from its keys instead (`key_suite`, `key_gate`);
  2. fills the suite's runtime parameters from ds and the warehouse: the row-count band against
     the previous published partition of the same table (`row_count_min` / `row_count_max`), the
     end of ds for ODS snapshots (`ods_dt_upper`) and the freshness floor (`ods_dt_fresh_since`);
  3. validates the persisted DataFrame through GX's Spark data source, once with BOOLEAN_ONLY
     (cheap: no unexpected-value lists) and, only when something failed, once more with SUMMARY
     for the failed expectations, to name a few offending values;
  4. appends one row per expectation to dq.validation_results (partition ds) and writes a Data
     Docs page (GX's own validation-results renderer) under {warehouse}/reports/data_docs/;
  5. raises DataQualityError if a critical expectation failed (so nothing is published);
     failed warnings are logged and recorded, and the job goes on.

Great Expectations is imported inside functions only (DAG files import jobs modules) with its
analytics off; one ephemeral context is reused for the whole process.

Settings (environment; `ostap validate` has options for the band):
  OSTAP_EXPECTATIONS_DIR       folder of the suites (default: expectations/ beside jobs/)
  OSTAP_DQ_ROW_COUNT_BAND      LO:HI ratio band against the previous partition, e.g. 0.5:2
                               (default: each suite's meta.row_count_band)
  OSTAP_DQ_MIN_PREVIOUS_ROWS   the band applies only when the previous partition had at least
                               this many rows (tiny tables swing; default: the suite's meta)
  OSTAP_DQ_DATA_DOCS           0 to skip the HTML pages (results are still recorded)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobs.core import data_docs, pii, settings
from jobs.core.errors import DataQualityError, OstapError
from jobs.core.resources import resource_dir
from jobs.core.run import RunContext, parse_ds

log = logging.getLogger(__name__)

EXPECTATIONS_DIR = resource_dir("expectations")
SEVERITIES = ("critical", "warning")
DEFAULT_BAND = (0.5, 2.0)
DEFAULT_MIN_PREVIOUS_ROWS = 100
DEFAULT_MAX_AGE_DAYS = 3
# A stand-in for "no upper bound": GX refuses an expectation whose bounds are both missing.
NO_UPPER_BOUND = 2**62
MAX_OBSERVED_CHARS = 1000
EXAMPLE_VALUES = 5

# Which failure to name first in the one-line error: the schema explains everything after it.
_FAILURE_ORDER = {
    "expect_table_columns_to_match_set": 0,
    "expect_column_values_to_be_of_type": 1,
    "expect_table_row_count_to_be_between": 2,
    "expect_column_values_to_not_be_null": 3,
    "expect_column_values_to_be_unique": 4,
    "expect_compound_columns_to_be_unique": 4,
}


# Arguments the one-line description leaves out (the column is named anyway; the column set is long).
_NOT_SHOWN = ("column", "column_list", "column_A", "column_B", "batch_id", "column_set", "exact_match")


@dataclass
class CheckResult:
    """The outcome of one expectation on one partition (one row of dq.validation_results)."""

    expectation: str
    column: str
    severity: str
    success: bool
    observed: str
    kwargs: dict = field(default_factory=dict)

    def describe(self) -> str:
        bounds = ", ".join(f"{k}={_fmt(v)}" for k, v in self.kwargs.items()
                           if k not in _NOT_SHOWN)
        target = f"column {self.column}" if self.column else "table"
        return f"{self.expectation} on {target}{f' ({bounds})' if bounds else ''}: {self.observed}"


@dataclass
class Verdict:
    """Everything one validation found, and what it takes to explain it in one line."""

    table: str
    ds: str
    run_id: str
    rows: int
    previous: tuple[str, int] | None
    checks: list[CheckResult]
    seconds: float
    docs_page: str | None = None
    suite: str = ""  # the suite file, as the repository names it

    @property
    def failed_critical(self) -> list[CheckResult]:
        failed = [c for c in self.checks if not c.success and c.severity == "critical"]
        return sorted(failed, key=lambda c: _FAILURE_ORDER.get(c.expectation, 9))

    @property
    def failed_warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity == "warning"]

    @property
    def passed(self) -> bool:
        return not self.failed_critical

    def error_message(self) -> str:
        failed = self.failed_critical
        shown = "; ".join(c.describe() for c in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        return (f"{self.table} ds={self.ds}: {len(failed)} critical expectation(s) failed, nothing was "
                f"published: {shown}{more} (suite {self.suite}; every result is in "
                f"dq.validation_results ds={self.ds} run_id={self.run_id})")

    def summary(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        previous = f", previous ds={self.previous[0]} rows={self.previous[1]}" if self.previous else ""
        lines = [f"{self.table} ds={self.ds}: {verdict} ({len(self.checks)} expectations, "
                 f"{len(self.failed_critical)} critical failed, {len(self.failed_warnings)} warnings; "
                 f"rows={self.rows}{previous}; {self.seconds:.1f} s; run_id={self.run_id})"]
        lines += [f"  critical: {c.describe()}" for c in self.failed_critical]
        lines += [f"  warning: {c.describe()}" for c in self.failed_warnings]
        if self.docs_page:
            lines.append(f"  data docs: {self.docs_page}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------- suites

def expectations_dir() -> Path:
    return Path(settings.EXPECTATIONS_DIR.get() or EXPECTATIONS_DIR)


def suite_path(table) -> Path:
    return expectations_dir() / table.pipeline / f"{table.qualified}.json"


def load_suite_config(table) -> dict | None:
    """The suite JSON of a table (None when the file does not exist), checked for severities."""
    path = suite_path(table)
    if not path.exists():
        return None
    try:
        suite = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise OstapError(f"expectation suite {path} is not valid JSON: {exc}") from None
    for i, expectation in enumerate(suite.get("expectations", [])):
        severity = (expectation.get("meta") or {}).get("severity")
        if severity not in SEVERITIES:
            raise OstapError(f"expectation suite {path}: expectation #{i} ({expectation.get('type')}) has "
                             f"meta.severity {severity!r}; expected one of {', '.join(SEVERITIES)}")
    return suite


def key_suite(table) -> dict:
    """The suite of a table without a file of its own (a snapshot of an entity outside the
    registry), in the form of the files: its key columns not null and unique, no ods_dt at or
    after the end of ds, the row count against the previous partition."""
    def check(kind: str, severity: str = "critical", **kwargs) -> dict:
        return {"type": kind, "kwargs": kwargs, "meta": {"severity": severity}}

    keys = list(table.keys)
    expectations = [check("expect_column_values_to_not_be_null", column=k) for k in keys]
    if len(keys) == 1:
        expectations.append(check("expect_column_values_to_be_unique", column=keys[0]))
    elif keys:
        expectations.append(check("expect_compound_columns_to_be_unique", column_list=keys))
    if "ods_dt" in table.columns:
        expectations.append(check("expect_column_max_to_be_between", column="ods_dt",
                                  max_value={"$PARAMETER": "ods_dt_upper"}, strict_max=True))
    expectations += [
        check("expect_table_row_count_to_be_between", min_value={"$PARAMETER": "row_count_min"}),
        check("expect_table_row_count_to_be_between", "warning", max_value={"$PARAMETER": "row_count_max"}),
    ]
    return {"name": f"{table.qualified}.keys", "meta": {"table": table.qualified}, "expectations": expectations}


def _build_suite(suite_config: dict, path: Path):
    import great_expectations as gx

    expected = suite_config.get("expectations", [])
    suite = gx.ExpectationSuite(name=suite_config.get("name") or path.stem, expectations=expected,
                                meta=suite_config.get("meta") or {})
    # GX logs and drops an expectation it cannot build; a dropped check must not pass silently.
    if len(suite.expectations) != len(expected):
        built = {e.expectation_type for e in suite.expectations}
        bad = sorted({e.get("type") for e in expected} - built) or ["(invalid kwargs)"]
        raise OstapError(f"expectation suite {path}: {len(expected) - len(suite.expectations)} expectation(s) "
                         f"could not be built by Great Expectations: {', '.join(map(str, bad))}")
    return suite


# ---------------------------------------------------------------------------------------- GX

_GX: dict = {}


def import_in_background() -> None:
    """Start importing Great Expectations on a daemon thread. The import takes about 3 s of CPU,
    and a job validates only after reading and computing its partition: the two overlap."""
    import sys
    import threading

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if "great_expectations" not in sys.modules:
        threading.Thread(target=_import_gx, name="import-great-expectations", daemon=True).start()


def _import_gx() -> None:
    try:
        import great_expectations  # noqa: F401
    except Exception:  # noqa: BLE001 - the import in _batch_definition raises it where it matters
        pass


def _batch_definition(spark, asset_name: str):
    """The whole-DataFrame batch definition of an asset in the process-wide ephemeral context."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # The session's identity (no SparkContext on Spark Connect, where sessions share one application).
    application = (spark.conf.get("spark.app.id", None), getattr(spark, "session_id", None))
    if _GX.get("application") != application:
        # A new SparkSession (the previous one stopped): GX's engine must not keep the old one.
        _GX.clear()
        _GX["application"] = application
    if "source" not in _GX:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _GX["context"] = context
        _GX["source"] = context.data_sources.add_spark(name="ostap_spark")
        _GX["definitions"] = {}
    definitions = _GX["definitions"]
    if asset_name not in definitions:
        asset = _GX["source"].add_dataframe_asset(name=asset_name)
        definitions[asset_name] = asset.add_batch_definition_whole_dataframe("whole_partition")
    return definitions[asset_name]


# ---------------------------------------------------------------------------------------- parameters

def parse_band(text: str) -> tuple[float, float]:
    """'0.5:2' -> (0.5, 2.0); the ratios of the current row count to the previous partition's."""
    try:
        low, high = (float(part) for part in text.split(":"))
    except ValueError:
        raise OstapError(f"row count band {text!r}: expected LO:HI ratios, e.g. 0.5:2") from None
    if not 0 <= low <= 1 <= high:
        raise OstapError(f"row count band {text!r}: expected 0 <= LO <= 1 <= HI, e.g. 0.5:2")
    return low, high


def _band_settings(suite_meta: dict, band: str | None) -> tuple[float, float, int]:
    meta = suite_meta.get("row_count_band") or {}
    low, high = meta.get("min_ratio", DEFAULT_BAND[0]), meta.get("max_ratio", DEFAULT_BAND[1])
    text = band or settings.DQ_ROW_COUNT_BAND.get()
    if text:
        low, high = parse_band(text)
    min_previous = settings.DQ_MIN_PREVIOUS_ROWS.get()
    min_previous = int(min_previous) if min_previous else int(meta.get("min_previous_rows", DEFAULT_MIN_PREVIOUS_ROWS))
    return low, high, min_previous


def previous_partition(spark, table, ds: str, root: str) -> tuple[str, int] | None:
    """(ds, rows) of the newest published partition of the table before ds, or None."""
    from jobs.core import storage

    earlier = [value for value in storage.list_partitions(spark, table, root) if value < ds]
    if not earlier:
        return None
    return earlier[-1], storage.read_partition(spark, table, earlier[-1], root).count()


def _as_spark_collects(moment: dt.datetime) -> dt.datetime:
    # PySpark hands timestamps to Python as naive local times; compare like with like.
    return moment.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


def suite_parameters(suite_meta: dict, ds: str, previous: tuple[str, int] | None,
                     band: str | None = None) -> dict:
    """Values of the $PARAMETER placeholders the suites use."""
    day = parse_ds(ds)
    low, high, min_previous = _band_settings(suite_meta, band)
    if previous is not None and previous[1] >= min_previous:
        row_count_min, row_count_max = math.ceil(previous[1] * low), math.floor(previous[1] * high)
    else:
        row_count_min, row_count_max = 0, NO_UPPER_BOUND
    end_of_ds = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    max_age = (suite_meta.get("freshness") or {}).get("max_age_days", DEFAULT_MAX_AGE_DAYS)
    return {
        "row_count_min": row_count_min,
        "row_count_max": row_count_max,
        "ds_date": day,
        "ods_dt_upper": _as_spark_collects(end_of_ds),
        "ods_dt_fresh_since": _as_spark_collects(end_of_ds - dt.timedelta(days=max_age)),
    }


# ---------------------------------------------------------------------------------------- validation

def validate(df, table, ds: str, ctx: RunContext, band: str | None = None, record: bool = True,
             suite_config: dict | None = None) -> Verdict:
    """Run the table's suite (or `suite_config`, one built at run time) on `df` (the partition to
    publish); record and return the verdict.

    Never raises for failed expectations (see `gate`); raises OstapError when the table has no
    suite or the suite is broken.
    """
    from pyspark import StorageLevel

    started = time.perf_counter()
    root, run_id = ctx.warehouse, ctx.run_id
    ds = parse_ds(ds).isoformat()
    suite_file = f"expectations/{table.pipeline}/{table.qualified}.json"
    if suite_config is not None:
        suite_file = f"{suite_config['name']}, built at run time"
    suite_config = suite_config or load_suite_config(table)
    if suite_config is None:
        raise DataQualityError(f"{table.qualified} has no expectation suite: every published table needs "
                               f"{suite_path(table)} (see the other files in {expectations_dir()})")
    suite = _build_suite(suite_config, suite_path(table))
    spark = df.sparkSession

    # GX runs several Spark jobs on the frame and the publish writes it next: compute it once.
    if not df.is_cached:
        df.persist(StorageLevel.MEMORY_AND_DISK)
    frame = df.drop(table.partition) if table.partition in df.columns else df
    rows = frame.count()
    previous = previous_partition(spark, table, ds, root)
    parameters = suite_parameters(suite_config.get("meta") or {}, ds, previous, band)

    batch = _batch_definition(spark, table.qualified).get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format="BOOLEAN_ONLY", expectation_parameters=parameters)
    failed = [i for i, r in enumerate(result.results) if not r.success]
    if failed:
        # Second pass only over what failed, with a few offending values per expectation.
        import great_expectations as gx

        detail_suite = gx.ExpectationSuite(name=f"{suite.name}.failed",
                                           expectations=[result.results[i].expectation_config for i in failed])
        detailed = batch.validate(detail_suite, result_format={"result_format": "SUMMARY",
                                                               "partial_unexpected_count": EXAMPLE_VALUES},
                                  expectation_parameters=parameters)
        for i, detail in zip(failed, detailed.results, strict=True):
            result.results[i] = detail

    _mask_personal_values(result, table.personal)
    checks = [_check(r, rows, previous, set(frame.columns)) for r in result.results]
    verdict = Verdict(table.qualified, ds, run_id, rows, previous, checks, 0.0,
                      suite=suite_file)
    if record:
        _record(spark, verdict, root)
        verdict.docs_page = data_docs.write_page(spark, verdict, result, root)
    verdict.seconds = time.perf_counter() - started
    ctx.verdicts[f"{table.qualified}/{ds}"] = {
        "passed": verdict.passed, "rows": rows, "expectations": len(checks),
        "failed_critical": len(verdict.failed_critical), "failed_warnings": len(verdict.failed_warnings),
        "suite": verdict.suite,
        "checks": [{"expectation": c.expectation, "column": c.column, "severity": c.severity, "success": c.success}
                   for c in checks]}
    log.info("data quality %s ds=%s: %s, %d expectations, %d critical failed, %d warnings, %.2f s",
             table.qualified, ds, "passed" if verdict.passed else "FAILED", len(checks),
             len(verdict.failed_critical), len(verdict.failed_warnings), verdict.seconds)
    return verdict


def gate(df, table, ds: str, ctx: RunContext) -> None:
    """Fail before publishing when a critical expectation fails; warnings are recorded and logged.

    Tables outside the published registry (state.*) are checked only if a suite exists for them.
    """
    if not table.published and not suite_path(table).exists():
        return None
    _enforce(validate(df, table, ds, ctx))
    return None


def _enforce(verdict: Verdict) -> None:
    """Log the verdict's warnings; raise when a critical expectation failed."""
    for warning in verdict.failed_warnings:
        log.warning("data quality warning %s ds=%s: %s", verdict.table, verdict.ds, warning.describe())
    if not verdict.passed:
        raise DataQualityError(verdict.error_message())


def key_gate(df, table, ds: str, ctx: RunContext) -> None:
    """`gate` for a table outside the registry: with its suite file when it has one, otherwise
    with key_suite(table), so that no partition is published unchecked."""
    if suite_path(table).exists():
        return gate(df, table, ds, ctx)
    _enforce(validate(df, table, ds, ctx, suite_config=key_suite(table)))
    return None


# ---------------------------------------------------------------------------------------- results

def _check(result, rows: int, previous: tuple[str, int] | None, columns: set[str]) -> CheckResult:
    configuration = result.expectation_config
    kwargs = {k: v for k, v in configuration.kwargs.items() if k != "batch_id"}
    column = kwargs.get("column") or ",".join(kwargs.get("column_list") or []) or \
        ",".join(c for c in (kwargs.get("column_A"), kwargs.get("column_B")) if c)
    if configuration.type == "expect_table_columns_to_match_set":
        column = ""
    observed = _observed(result)
    absent = [c for c in column.split(",") if c and c not in columns]
    if absent:
        # GX's own error for a missing column is an internal one ("list index out of range").
        observed = f"column {', '.join(absent)} does not exist"
    if configuration.type == "expect_table_row_count_to_be_between":
        prior = f", previous ds={previous[0]} rows={previous[1]}" if previous else ", no previous partition"
        observed = f"rows={rows}{prior}"
    return CheckResult(configuration.type, column, (configuration.meta or {}).get("severity", "critical"),
                       bool(result.success), observed[:MAX_OBSERVED_CHARS], kwargs)


def _observed(result) -> str:
    """A short text of what GX saw: the exception, the mismatch, or counts and a few values."""
    message = _exception_message(result.exception_info)
    if message:
        return f"error: {message}"
    found = result.result or {}
    mismatched = (found.get("details") or {}).get("mismatched")
    if mismatched:
        parts = [f"{kind} {sorted(values)}" for kind, values in mismatched.items() if values]
        return f"columns {'; '.join(parts)}"
    if "unexpected_count" in found:
        shown = found.get("partial_unexpected_list") or []
        text = f"{found['unexpected_count']} of {found.get('element_count')} rows unexpected"
        return text + (f", e.g. {_fmt(shown[:EXAMPLE_VALUES])}" if shown else "")
    if "observed_value" in found:
        return f"observed {_fmt(found['observed_value'])}"
    return "ok" if result.success else "failed"


def _mask_personal_values(result, personal: dict[str, str]) -> None:
    """Mask the example values GX kept of personal columns, before they reach dq.validation_results,
    Data Docs or a message: counts stay, values keep at most their last two characters."""
    if not personal:
        return
    for item in result.results:
        kwargs = item.expectation_config.kwargs
        columns = {kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B"),
                   *(kwargs.get("column_list") or [])}
        found = item.result
        # A type check observes the column's type, not its values.
        if not found or not columns & personal.keys() or "_of_type" in item.expectation_config.type:
            continue
        for name in ("partial_unexpected_list", "unexpected_list"):
            if name in found:
                found[name] = [pii.mask(v) for v in found[name] or []]
        if "partial_unexpected_counts" in found:
            found["partial_unexpected_counts"] = [{**c, "value": pii.mask(c.get("value"))}
                                                  for c in found["partial_unexpected_counts"] or []]
        for name in ("partial_unexpected_index_list", "unexpected_index_list", "unexpected_index_query", "details"):
            found.pop(name, None)
        if "observed_value" in found and not isinstance(found["observed_value"], int | float):
            found["observed_value"] = pii.mask(found["observed_value"])


def _exception_message(info) -> str:
    if not isinstance(info, dict):
        return ""
    if info.get("raised_exception") and info.get("exception_message"):
        return str(info["exception_message"]).splitlines()[0]
    for value in info.values():  # keyed by metric id when a metric failed to resolve
        if isinstance(value, dict) and value.get("exception_message"):
            return str(value["exception_message"]).splitlines()[0]
    return ""


def _fmt(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dict) and "$PARAMETER" in value:
        return f"${value['$PARAMETER']}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def _record(spark, verdict: Verdict, root: str) -> None:
    from jobs.core import storage
    from jobs.core.tables import TABLES

    records = [{"table_name": verdict.table, "suite": verdict.table, "expectation": c.expectation,
                "column_name": c.column, "severity": c.severity, "success": c.success,
                "observed_value": c.observed, "run_id": verdict.run_id} for c in verdict.checks]
    storage.append_records(spark, TABLES["dq.validation_results"], records, verdict.ds, root)
