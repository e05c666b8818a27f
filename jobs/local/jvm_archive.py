"""`ostap jvm-archive`: the class-data-sharing archive every Spark driver JVM starts from.

A cold Spark driver spends seconds loading and verifying the same ~20k classes (Spark,
Catalyst, Parquet, Hadoop) that every earlier driver loaded too, and each Airflow task starts
one. Java 17 can dump the classes a run loaded into a dynamic archive (-XX:ArchiveClassesAtExit)
and map it into later JVMs (-XX:SharedArchiveFile), which then skip parsing and verifying them.
`make install` runs this command once; jobs.core.spark.driver_java_options() adds the archive to
every driver it exists for (local sessions and the DAGs' spark-submit commands alike).

The archive is made by a real run: a small generated replica snapshotted in full and then
incrementally, with the Great Expectations gate, in one driver JVM started with the same
options and class path as a job's. It is tied to that JVM build and class path: a JVM that
finds it stale (another Java, another pyspark) prints one warning and starts without it, so a
stale archive costs the gain, never a run; rerun this command after upgrading either.
bench/jvm_archive.py measures the gain.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from jobs.core.errors import OstapError

HELP = "make the class-data-sharing archive that starts every Spark driver JVM faster (make install runs it)"

# The training run: two days of the smallest generated replica, as the daily snapshot DAG runs them.
TRAINING_ENTITY = "clients"
TRAINING_START = "2024-01-01"
TRAINING_TIMEOUT_S = 900


def add_arguments(parser) -> None:
    from jobs.core.spark import jvm_archive_path

    parser.add_argument("--out", metavar="PATH", default=None,
                        help=f"where to write the archive (default {jvm_archive_path()}, "
                             "where jobs look for it; $OSTAP_JVM_ARCHIVE overrides both)")


def run(args, ctx) -> int:
    from jobs.core.spark import jvm_archive_path

    out = Path(args.out) if args.out else jvm_archive_path()
    started = time.monotonic()
    size = make_archive(out)
    print(f"jvm-archive: {out} ({size / 2**20:.0f} MB) in {time.monotonic() - started:.0f} s; "
          "Spark drivers started from now on map it")
    return 0


def make_archive(out: Path, timeout_s: float = TRAINING_TIMEOUT_S) -> int:
    """Write the archive to `out` (atomically: a reader sees the old file or the new one); return its size.

    The training run gets `timeout_s`; past that (or on Ctrl-C) it is killed with its driver JVM
    (its own process group), and no partial file is left.
    """
    from jobs.generator.generate import generate_demo

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ostap-jvm-archive-") as work:
        warehouse = Path(work) / "warehouse"
        generate_demo(str(warehouse), TRAINING_START, 2, 42, "small")
        env = {**os.environ, "OSTAP_WAREHOUSE": str(warehouse), "OSTAP_SPARK_LOG_LEVEL": "ERROR",
               "GX_ANALYTICS_ENABLED": "false"}
        env.pop("OSTAP_JVM_ARCHIVE", None)  # the training JVM must not map an archive: it dumps one
        log_path = Path(work) / "training.log"
        try:
            with open(log_path, "w") as log:
                returncode = _run_training(partial, env, log, timeout_s)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if returncode != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            what = f"took over {timeout_s:g} s and was stopped" if returncode is None else f"failed (exit {returncode})"
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise OstapError(f"jvm-archive: the training run {what}; its last lines:\n{tail}")
    os.replace(partial, out)
    return out.stat().st_size


def _run_training(partial: Path, env: dict, log, timeout_s: float) -> int | None:
    """The training run's exit code, None when it ran out of time.

    It runs in a process group of its own, its driver JVM included (PySpark starts that as a
    child), so that a timeout or an interrupt stops both: a JVM left behind would hold gigabytes
    and finish writing the archive after this command gave up on it.
    """
    training = subprocess.Popen([sys.executable, "-c", _TRAINING_RUN, str(partial)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return training.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if training.returncode != 0:
            # A run that failed by itself may leave its JVM exiting (and dumping) behind it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(training.pid, signal.SIGKILL)
            training.wait()


# Runs in a fresh interpreter so that its driver JVM starts with -XX:ArchiveClassesAtExit. The JVM
# dumps the archive while it exits, after Python let go of it: closing the gateway's stdin is what
# ends it (PythonGatewayServer exits on EOF), and waiting for that process is what makes the file
# complete before this interpreter returns.
_TRAINING_RUN = textwrap.dedent(f"""
    import shlex
    import sys
    import datetime as dt
    from jobs.core.run import RunContext
    from jobs.core.spark import DRIVER_JAVA_OPTIONS, get_spark
    from jobs.ods_snapshot.snapshot import build_snapshot

    spark = get_spark("ostap-jvm-archive", master="local[2]", conf={{
        "spark.driver.extraJavaOptions": DRIVER_JAVA_OPTIONS + " -XX:ArchiveClassesAtExit=" + shlex.quote(sys.argv[1])
                                         + " -Xlog:cds=error,cds+dynamic=error",
        "spark.ui.enabled": "false"}})
    first = dt.date.fromisoformat("{TRAINING_START}")
    for day, mode in ((first, "full"), (first + dt.timedelta(days=1), "incremental")):
        result = build_snapshot(spark, "{TRAINING_ENTITY}", RunContext.create(ds=day), mode=mode)
        print(result.summary(), flush=True)
    gateway = spark.sparkContext._gateway
    spark.stop()
    gateway.shutdown()
    gateway.proc.stdin.close()
    sys.exit(gateway.proc.wait(timeout={TRAINING_TIMEOUT_S}))
""")
