"""What every ostap DAG shares: defaults, the Spark task factory and the partition sensor.

Imported by the DAG files only; it must stay cheap to import (no Spark, no Great Expectations).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from jinja2 import StrictUndefined

from jobs.core import config, settings
from jobs.core.spark import driver_java_options

# Shipped inside the package, so an installed (non-editable) ostap finds it too.
SPARK_APP = str(Path(__file__).resolve().parents[1] / "bin" / "spark_app.py")

START_DATE = datetime(2024, 1, 1)
OWNER = "ostap"

DEFAULT_ARGS = {
    "owner": OWNER,
    "retries": settings.TASK_RETRIES.get_int(),
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}

def spark_connect_url(conn_id: str = "spark_connect_default") -> str:
    """The sc:// URL of an Airflow Spark Connect connection (the Spark provider's hook builds it,
    with its user, token and SSL settings); a template macro, rendered when the task runs."""
    from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

    return SparkConnectHook(conn_id).get_connection_url()


DAG_DEFAULTS = {
    "start_date": START_DATE,
    "user_defined_macros": {"spark_connect_url": spark_connect_url},
    "default_args": DEFAULT_ARGS,
    "catchup": False,
    "max_active_runs": 3,
    "template_undefined": StrictUndefined,
}


def dag_tags(*extra: str) -> list[str]:
    return ["ostap", *extra]


def pipeline_package(pipeline: str) -> str:
    """jobs.<pipeline>, checked to exist when a DAG file names it (the DAG fails to load otherwise)."""
    import importlib.util

    package = f"jobs.{pipeline}"
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"no pipeline {pipeline!r}: there is no package {package}")
    return package


# The Airflow task's OpenLineage run (namespace/job/run id), the parent of the job's own events;
# empty when the OpenLineage provider is disabled (it then registers no macros).
LINEAGE_PARENT = ("{{ macros.OpenLineageProviderPlugin.lineage_parent_id(task_instance) "
                  'if macros is defined and macros.OpenLineageProviderPlugin is defined else "" }}')


def spark_job(task_id: str, *cli_args: str, pipeline: str, outlets=None, **kwargs):
    """The task running one `ostap` command of `pipeline`, as OSTAP_SPARK_TASKS chooses: a
    SparkSubmitOperator through connection spark_default (a driver of its own, on local[*] or a
    cluster: only the connection changes), or (`connect`) the command itself with `--remote` on
    the Spark Connect server of connection spark_connect_default, whose driver stays warm.
    Either way one task per entity and job, with its own retries and log.
    """
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    pipeline_package(pipeline)
    choice = settings.SPARK_TASKS.get()
    if choice == "connect":
        return ostap_command(task_id, *cli_args, "--remote", "{{ spark_connect_url() }}",
                             "--lineage-parent", LINEAGE_PARENT, outlets=outlets or [], **kwargs)
    if choice != "spark-submit":
        raise ValueError(f"OSTAP_SPARK_TASKS={choice!r}: expected spark-submit or connect")

    return SparkSubmitOperator(
        task_id=task_id,
        application=SPARK_APP,
        application_args=[*cli_args, "--lineage-parent", LINEAGE_PARENT],
        conn_id="spark_default",
        name=f"ostap-{task_id}",
        driver_memory=settings.DRIVER_MEMORY.get(),
        # The driver starts before the job's own session settings apply: its JVM options go here.
        conf={"spark.sql.session.timeZone": "UTC", "spark.driver.extraJavaOptions": driver_java_options()},
        outlets=outlets or [],
        **kwargs,
    )


def ostap_command(task_id: str, *cli_args: str, **kwargs):
    """A light `ostap` command that needs no Spark (e.g. loading Redis), run by the worker itself
    with the interpreter Airflow runs on."""
    import shlex
    import sys

    from airflow.providers.standard.operators.bash import BashOperator

    return BashOperator(task_id=task_id, bash_command=shlex.join([sys.executable, "-m", "jobs", *cli_args]),
                        **kwargs)


def partition_ready(table: str, ds: str) -> bool:
    """True when `table` (zone.name) has a published partition ds (its _SUCCESS marker exists)."""
    from jobs.core.tables import table as lookup

    t = lookup(table)
    # The deployment's warehouse (OSTAP_WAREHOUSE in the Airflow workers' environment).
    marker = t.partition_path(ds, config.warehouse_root()) + "/_SUCCESS"
    if "://" in marker and not marker.startswith("file:"):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(marker).exists()
    return os.path.exists(marker.removeprefix("file://").removeprefix("file:"))


def wait_for_partitions(task_id: str, tables: list[str], ds: str = "{{ ds }}"):
    """A sensor that waits until every input partition of the run's date is published."""
    from airflow.providers.standard.sensors.python import PythonSensor

    return PythonSensor(
        task_id=task_id,
        python_callable=_all_ready,
        op_kwargs={"tables": tables, "ds": ds},
        mode="reschedule",
        poke_interval=timedelta(seconds=settings.SENSOR_POKE_S.get_int()),
        timeout=timedelta(hours=12),
        retries=0,
    )


def _all_ready(tables: list[str], ds: str) -> bool:
    return all(partition_ready(t, ds) for t in tables)


def asset(table: str):
    """The Airflow Asset of a published table (lineage in the UI)."""
    from airflow.sdk import Asset

    return Asset(name=table, uri=f"ostap://{table.replace('.', '/')}")
