"""Every OSTAP_* environment variable ostap reads, with its default and meaning, in one place.

Each is read when it is used (`settings.WAREHOUSE.get()`), so a test, Airflow or spark-submit
that sets the variable is seen at once. The README's configuration table is this list
(`python -m jobs.core.settings` prints it; tests/test_foundation.py keeps the two in sync).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None  # as the environment would carry it; None: unset
    meaning: str
    shown_default: str = ""  # for the table, when the default is computed

    def get(self) -> str | None:
        """The variable's value; its default when it is unset or empty."""
        return os.environ.get(self.name) or self.default

    def get_int(self) -> int:
        return int(self.get())

    def get_float(self) -> float:
        return float(self.get())


WAREHOUSE = Setting("OSTAP_WAREHOUSE", "./warehouse",
                    "warehouse root; a local path or a URI both Spark and fsspec read (`hdfs://`, `s3a://` with s3fs, `file:`)")
SPARK_MASTER = Setting("OSTAP_SPARK_MASTER", "local[*]",
                       "Spark master when a job is run by the CLI (spark-submit sets its own)")
SPARK_REMOTE = Setting("OSTAP_SPARK_REMOTE", None,
                       "Spark Connect server (`sc://host:port`) the commands run their sessions on; unset: a "
                       "classic session on the master", "(none)")
SPARK_LOG_LEVEL = Setting("OSTAP_SPARK_LOG_LEVEL", "WARN", "log level of the Spark driver")
JVM_ARCHIVE = Setting("OSTAP_JVM_ARCHIVE", None,
                      "the driver JVM's class-data-sharing archive (`ostap jvm-archive`)",
                      "`.venv/share/ostap/spark-driver.jsa`")
PII_KEY = Setting("OSTAP_PII_KEY", None,
                  "HMAC key of the phone hashes; under Airflow also the Variable `ostap_pii_key`", "(none)")
PUBLISH_LOCK_WAIT_S = Setting("OSTAP_PUBLISH_LOCK_WAIT_S", "900",
                              "how long a publish waits for another run publishing the same partition")
PUBLISH_LOCK_STALE_S = Setting("OSTAP_PUBLISH_LOCK_STALE_S", "21600",
                               "age at which a lock held from another host is taken for one left by a killed run")
EXPECTATIONS_DIR = Setting("OSTAP_EXPECTATIONS_DIR", None, "folder of the Great Expectations suites",
                           "the packaged `expectations/`")
DQ_ROW_COUNT_BAND = Setting("OSTAP_DQ_ROW_COUNT_BAND", None,
                            "`LO:HI` band of a partition's rows against the previous one, e.g. `0.5:2`",
                            "the suite's")
DQ_MIN_PREVIOUS_ROWS = Setting("OSTAP_DQ_MIN_PREVIOUS_ROWS", None,
                               "the row-count band applies only above this many previous rows", "the suite's")
DQ_DATA_DOCS = Setting("OSTAP_DQ_DATA_DOCS", "1", "`0` skips the Data Docs pages (results are still recorded)")
TASK_RETRIES = Setting("OSTAP_TASK_RETRIES", "2", "retries of every DAG task (read when the DAGs are parsed)")
SPARK_TASKS = Setting("OSTAP_SPARK_TASKS", "spark-submit",
                      "how the DAGs' Spark tasks run: `spark-submit` (a driver per task, connection `spark_default`) "
                      "or `connect` (`ostap ... --remote` on the server of connection `spark_connect_default`); read "
                      "when the DAGs are parsed; the demo and `make airflow` choose `connect`")
DRIVER_MEMORY = Setting("OSTAP_DRIVER_MEMORY", "3g", "driver memory of the DAGs' spark-submit tasks")
SENSOR_POKE_S = Setting("OSTAP_SENSOR_POKE_S", "120",
                        "how often the DAGs' partition sensors look for their inputs (read when the DAGs are parsed)")
REDIS_URL = Setting("OSTAP_REDIS_URL", None,
                    "Redis the serving step loads and `ostap serve` reads; the demo and `make airflow` start a "
                    "private one when unset", "(none)")
SERVE_PORT = Setting("OSTAP_SERVE_PORT", "8090", "port of `ostap serve`")
SERVE_LOG = Setting("OSTAP_SERVE_LOG", None, "JSON-lines log of every API answer (with the client's arm)",
                    "`./.serve/answers.jsonl`")
OPENLINEAGE_FILE = Setting("OSTAP_OPENLINEAGE_FILE", None,
                           "file the jobs append OpenLineage events to when OpenLineage has no configuration "
                           "of its own (`openlineage.yml`, `OPENLINEAGE_URL`); `off`: none",
                           "`_lineage/openlineage.jsonl` under a local warehouse")
EXPERIMENTS = Setting("OSTAP_EXPERIMENTS", None,
                      "TOML file of the A/B experiments (name, treatment share) the recommend job, the API and "
                      "the readout read", "`jobs/core/experiments.toml`")
AIRFLOW_HOME = Setting("OSTAP_AIRFLOW_HOME", None, "home of the embedded Airflow (development)", "`./.airflow`")
AIRFLOW_PARALLELISM = Setting("OSTAP_AIRFLOW_PARALLELISM", "2", "tasks the embedded Airflow runs at once")
AIRFLOW_HOST = Setting("OSTAP_AIRFLOW_HOST", "127.0.0.1",
                       "address the embedded Airflow's UI and API listen on; `0.0.0.0` opens them to the network")
AIRFLOW_PORT = Setting("OSTAP_AIRFLOW_PORT", "8080", "port of the embedded Airflow's UI and API")
REDIS_DIR = Setting("OSTAP_REDIS_DIR", ".redis", "folder of the private Redis of `ostap redis` (development)")

ALL = [value for value in dict(globals()).values() if isinstance(value, Setting)]


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for setting in ALL:
        default = setting.shown_default or (f"`{setting.default}`" if setting.default is not None else "(none)")
        rows.append(f"| `{setting.name}` | {default} | {setting.meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
