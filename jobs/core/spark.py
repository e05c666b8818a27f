"""The one SparkSession factory every job uses."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path

from jobs.core import config, settings

# Small enough for a 2-core laptop, large enough for a cluster; AQE coalesces further.
DEFAULT_SHUFFLE_PARTITIONS = "16"

# Every JVM's clock zone agrees with the sessions' (spark.sql.session.timeZone).
JVM_TIMEZONE = "-Duser.timezone=UTC"
# The driver JVM's options; in local mode that JVM runs every task. The throughput collector runs
# Spark's large sort and shuffle arrays faster than Java 17's default G1 (docs/benchmarks.md).
# Executors on a cluster keep the JVM default, which suits their larger heaps.
DRIVER_JAVA_OPTIONS = f"{JVM_TIMEZONE} -XX:+UseParallelGC"


def jvm_archive_path() -> Path:
    """Where `ostap jvm-archive` (run by `make install`) puts the driver JVM's class-data-sharing
    archive: beside the installed packages whose classes it holds, or $OSTAP_JVM_ARCHIVE."""
    return Path(settings.JVM_ARCHIVE.get() or Path(sys.prefix) / "share" / "ostap" / "spark-driver.jsa")


def driver_java_options() -> str:
    """DRIVER_JAVA_OPTIONS, plus the class-data-sharing archive when it exists (jobs/jvm_archive.py).

    A cold driver then starts sooner (bench/jvm_archive.py). Only an existing file is named:
    a JVM given a missing archive silently turns off class sharing altogether, the JDK's own
    default archive included. A stale one (another JVM or class path) costs a warning, not a run.
    """
    archive = jvm_archive_path()
    if not archive.is_file():
        return DRIVER_JAVA_OPTIONS
    # Spark splits these options shell-style: a path with a space must be quoted.
    return f"{DRIVER_JAVA_OPTIONS} -XX:SharedArchiveFile={shlex.quote(str(archive))}"


def session_conf(master: str | None = None, conf: dict[str, str] | None = None,
                 warehouse: str | None = None) -> dict[str, str]:
    """The settings a job's session gets; `conf` (from --conf) wins over the defaults."""
    root = config.warehouse_root(warehouse)
    session = {
        "spark.master": config.spark_master(master),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": DEFAULT_SHUFFLE_PARTITIONS,
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        # ... in cached plans too: a job that caches a few thousand rows (an incremental snapshot
        # caches its touched keys) would otherwise run 16-task stages over them in every later
        # job (bench/snapshot.py; docs/benchmarks.md).
        "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
        # Dynamic overwrite replaces only the partitions a job writes.
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.compression.codec": "snappy",
        # Parquet builds a column's dictionary until it outgrows this, then writes the column
        # plain: at the default 1 MB, near-unique columns (keys, timestamps, ods_seq, phones)
        # build a dictionary for nothing. At 64 KB they fall back early, while columns with
        # few values (region, status) keep theirs (docs/benchmarks.md).
        "spark.hadoop.parquet.dictionary.page.size": str(64 * 1024),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        # The driver's log level, set when it starts (Spark 4; setLogLevel needs the SparkContext).
        "spark.log.level": settings.SPARK_LOG_LEVEL.get(),
        "spark.driver.extraJavaOptions": driver_java_options(),
        "spark.executor.extraJavaOptions": JVM_TIMEZONE,
        "spark.sql.warehouse.dir": os.path.join(root, "_spark_catalog") if config.is_local(root)
        else root + "/_spark_catalog",
    }
    session.update(conf or {})
    return session


# The settings a Spark Connect session can take for itself; the rest (master, driver JVM, UI, log
# level, static SQL settings) belong to the server, which jobs.local.connect_server starts with them.
_SESSION_LEVEL = ("spark.sql.", "spark.hadoop.")
_SERVER_LEVEL = ("spark.sql.warehouse.dir",)


def get_spark(app_name: str = "ostap", master: str | None = None, conf: dict[str, str] | None = None,
              warehouse: str | None = None, remote: str | None = None):
    """Get or create the SparkSession with ostap's defaults: a session of its own on the Spark
    Connect server `remote` (or $OSTAP_SPARK_REMOTE), else a classic one on `master`.

    Under spark-submit the master is already set by the launcher; we keep it then.
    """
    from pyspark.sql import SparkSession

    remote = config.spark_remote(remote)
    if remote:
        builder = SparkSession.builder.remote(remote).appName(app_name)
        for key, value in session_conf(master, conf, warehouse).items():
            if key.startswith(_SESSION_LEVEL) and key not in _SERVER_LEVEL:
                builder = builder.config(key, value)
        return builder.getOrCreate()

    # Workers must run the same Python as the driver (the project's virtualenv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    wanted = session_conf(master, conf, warehouse)
    if master is None and _launched_by_spark_submit():
        # spark-submit already chose the master (--master); do not override it.
        wanted.pop("spark.master")
    for key, value in wanted.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def default_parallelism(spark) -> int:
    """The cores a stage can use at once, read from the session's settings (a Spark Connect
    session has no SparkContext to ask): spark.default.parallelism, else the cores of a
    local[N] master, else the shuffle partitions."""
    import re

    conf = spark.conf
    if value := conf.get("spark.default.parallelism", None):
        return int(value)
    master = conf.get("spark.master", None) or ""
    if master == "local":
        return 1
    if local := re.fullmatch(r"local\[(\*|\d+)(?:,\d+)?\]", master):
        return (os.cpu_count() or 1) if local.group(1) == "*" else int(local.group(1))
    return int(conf.get("spark.sql.shuffle.partitions", DEFAULT_SHUFFLE_PARTITIONS))


@contextlib.contextmanager
def session_settings(spark, values: dict[str, str]):
    """Set SQL settings of the session for the block, then put the previous values back."""
    before = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def observation(df, name: str):
    """An Observation for `df`'s session: pyspark picks the Spark Connect kind only when the
    process is in Connect mode by environment, not for a session made with builder.remote()."""
    if type(df).__module__.startswith("pyspark.sql.connect"):
        from pyspark.sql.connect.observation import Observation
    else:
        from pyspark.sql import Observation
    return Observation(name)


def end_remote_session() -> None:
    """End this process's Spark Connect session, if it made one: the server then drops its temp
    views, settings and cached data at once rather than when the session times out. (A classic
    session ends with its process.)"""
    import sys

    if "pyspark.sql.connect.session" not in sys.modules:
        return
    from pyspark.sql.connect.session import SparkSession as RemoteSession

    session = RemoteSession.getActiveSession()
    if session is not None:
        session.stop()


def _launched_by_spark_submit() -> bool:
    # spark-submit starts python with PYSPARK_GATEWAY_PORT set to its running JVM.
    return "PYSPARK_GATEWAY_PORT" in os.environ

