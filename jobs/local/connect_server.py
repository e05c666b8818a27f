"""A warm Spark Connect server on loopback for the embedded Airflow, the demo, the tests and the benchmark.

Spark 4 ships the server (`spark-connect_*.jar` in the pyspark install): it is started with
pyspark's own `spark-submit --class ...SparkConnectServer`, bound to 127.0.0.1 on a free port,
with the driver settings every job's session gets (jobs.core.spark.session_conf: UTC, the class
archive, ...). Its one driver JVM then stays warm (JIT, loaded classes, Great Expectations'
Python workers aside) for every task, each of which opens its own session on it (`--remote`,
OSTAP_SPARK_REMOTE): temp views and SQL settings are per session. Nothing is downloaded.

    with running(tmp / "connect") as server:      # tests: stopped on exit
        server.url                                # sc://127.0.0.1:PORT
    url = ensure_running(".connect")              # demo, make airflow: reuse the folder's server or start one
    stop(".connect")
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from jobs.core import config, settings
from jobs.core.errors import OstapError
from jobs.local.net import LocalService, alive, forget_state, free_port, read_state, wait_ready, write_state

HELP = ("start (or --stop) a Spark Connect server on loopback and print its sc:// URL; --foreground: run one "
        "in this process (a deployment's)")

HOST = "127.0.0.1"
DEFAULT_PORT = 15002
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
REPO = Path(__file__).resolve().parents[2]


class LocalConnect(LocalService):
    @property
    def url(self) -> str:
        return f"sc://{HOST}:{self.port}"


def _pyspark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def connect_jar() -> Path:
    jars = sorted((_pyspark_home() / "jars").glob("spark-connect_*.jar"))
    if not jars:
        raise OstapError(f"no spark-connect jar in {_pyspark_home() / 'jars'}: pyspark 4 ships it; reinstall pyspark")
    return jars[-1]


def answers(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when something accepts connections on host:port (the gRPC service binds last, once
    the server's SparkContext is up)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def server_command(port: int, master: str = "local[*]", warehouse: str | None = None,
                   conf: dict[str, str] | None = None, host: str = HOST) -> list[str]:
    """The spark-submit command line of the server: the jobs' driver settings, bound to `host`
    (loopback unless a deployment opens it)."""
    from jobs.core.spark import session_conf

    wanted = session_conf(master, conf, warehouse)
    wanted.pop("spark.master")
    wanted.update({"spark.connect.grpc.binding.address": host, "spark.connect.grpc.binding.port": str(port)})
    command = [str(_pyspark_home() / "bin" / "spark-submit"), "--master", master, "--class", SERVER_CLASS,
               "--name", "ostap-connect", "--driver-memory", settings.DRIVER_MEMORY.get()]
    for key, value in wanted.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, str(connect_jar())]


def _log_tail(folder: Path, lines: int = 8) -> str:
    log = folder / "server.log"
    if not log.exists():
        return ""
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


def start(folder: str | Path, port: int | None = None, master: str = "local[*]", warehouse: str | None = None,
          conf: dict[str, str] | None = None, timeout: float = 180.0, detach: bool = False,
          warm: bool = True) -> LocalConnect:
    """Start the server on 127.0.0.1 (a free port unless given) and wait until it answers; with
    `warm`, run `warm_up` on it before returning.

    It runs in a session of its own, so that a Ctrl-C of the caller does not kill it before `stop`;
    detach=True leaves it running after this process exits (the demo, `make airflow`).
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    with open(folder / "server.log", "ab") as log:
        process = subprocess.Popen(server_command(port, master, warehouse, conf), env=_process_env(),
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True)
    failure = wait_ready(process, lambda: answers(port), timeout, pause=0.2)
    if failure == "exited":
        raise OstapError(f"the Spark Connect server exited with code {process.returncode}: "
                         f"{_log_tail(folder) or 'no log'} (log: {folder / 'server.log'})")
    if failure == "timeout":
        _kill_group(process.pid, signal.SIGKILL)
        process.wait()
        raise OstapError(f"the Spark Connect server did not answer on {HOST}:{port} within {timeout:.0f} s "
                         f"(log: {folder / 'server.log'})")
    write_state(folder, port, process.pid)
    server = LocalConnect(folder=folder, port=port, pid=process.pid, process=None if detach else process)
    if warm:
        warm_up(server.url, folder)
    return server


def warm_up(url: str, folder: Path, timeout: float = 300.0) -> float | None:
    """Run one small job of the kinds the tasks run (a window ranking, a join, an aggregate, a
    Parquet write and read, a pandas UDF) on the new server, so that its first tasks find Spark's
    code compiled and its Python workers started. In a process of its own: a Spark Connect session
    changes pyspark's process-wide mode. Seconds taken; None (and a warning) when it failed, which
    costs only speed."""
    import logging
    import shutil

    started = time.monotonic()
    scratch = folder / "warm_up"
    try:
        done = subprocess.run([sys.executable, "-c", "import sys; from jobs.local.connect_server import "
                               "_warm_up_job; _warm_up_job(sys.argv[1], sys.argv[2])", url, str(scratch)],
                              env=_process_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        done = None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if done is None or done.returncode != 0:
        why = "timed out" if done is None else (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        logging.getLogger(__name__).warning("warming up the Spark Connect server at %s failed (its first tasks "
                                            "will only be slower): %s", url, why)
        return None
    return time.monotonic() - started


def _warm_up_job(url: str, scratch: str) -> None:
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    spark = SparkSession.builder.remote(url).create()
    try:
        rows = spark.range(200_000).select((F.col("id") % 5_000).alias("key"), F.col("id").alias("seq"),
                                           (F.col("id") * 7 % 13).alias("value"))
        latest = (rows.withColumn("rank", F.row_number().over(Window.partitionBy("key").orderBy(F.desc("seq"))))
                  .where("rank = 1"))
        counted = rows.groupBy("key").agg(F.count("*").alias("rows"), F.max("value").alias("top"))
        latest.join(counted, "key").write.mode("overwrite").parquet(scratch)
        written = spark.read.parquet(scratch)
        written.groupBy("top").applyInPandas(lambda frame: frame.head(1), written.schema).count()
    finally:
        spark.stop()


def _process_env() -> dict[str, str]:
    """The environment of the server and of its warm-up client. The server's Python workers run the
    jobs' pandas UDFs (applyInPandas): the project's interpreter and code."""
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
               GX_ANALYTICS_ENABLED="false")
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return env


def _kill_group(pid: int, sig: int) -> None:
    # spark-submit is a shell script that execs the JVM; its own session holds nothing else of ours.
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)


def stop(server: LocalConnect | str | Path, timeout: float = 30.0) -> bool:
    """Stop a server (SIGTERM to its process group, SIGKILL after `timeout`); True if one was running."""
    if isinstance(server, LocalConnect):
        folder, pid, process = server.folder, server.pid, server.process
    else:
        folder = Path(server).resolve()
        state = read_state(folder)
        if not state:
            return False
        pid, process = int(state["pid"]), None
    was_running = alive(pid)
    if was_running:
        _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (process.poll() is None if process else alive(pid)):
            time.sleep(0.1)
        if process.poll() is None if process else alive(pid):
            _kill_group(pid, signal.SIGKILL)
        if process is not None:
            process.wait()
    forget_state(folder)
    return was_running


@contextlib.contextmanager
def running(folder: str | Path, **options):
    """A server for the duration of a `with` block (tests, benchmarks)."""
    server = start(folder, **options)
    try:
        yield server
    finally:
        stop(server)


def ensure_running(folder: str | Path, **options) -> str:
    """URL of the server recorded in `folder` if it still answers, else of a newly started,
    detached one (it keeps running after this process exits; `stop(folder)` ends it)."""
    folder = Path(folder).resolve()
    state = read_state(folder)
    if state and alive(int(state["pid"])) and answers(int(state["port"])):
        return LocalConnect(folder=folder, port=int(state["port"]), pid=int(state["pid"])).url
    return start(folder, detach=True, **options).url


def add_arguments(parser) -> None:
    parser.add_argument("--dir", default=".connect", help="folder of the local server (default .connect)")
    parser.add_argument("--stop", action="store_true", help="stop the local server of --dir")
    parser.add_argument("--foreground", action="store_true",
                        help="become the server (a container's or a service manager's process) instead of "
                             "starting it in the background")
    parser.add_argument("--host", default=HOST, help=f"--foreground: address to listen on (default {HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"--foreground: port to listen on (default {DEFAULT_PORT}, Spark Connect's own)")


def run_in_foreground(host: str, port: int, master: str, warehouse: str, conf: dict[str, str]) -> None:
    """Replace this process with the server (next to a cluster's master: docker/compose.yaml), so
    that its supervisor's signals and exit code are the server's own."""
    command = server_command(port, master, warehouse, conf, host=host)
    sys.stdout.flush()
    os.execve(command[0], command, _process_env())


def run(args, ctx) -> int:
    if args.foreground:
        run_in_foreground(args.host, args.port, config.spark_master(ctx.master), ctx.warehouse, dict(ctx.conf))
    if args.stop:
        print("stopped" if stop(args.dir) else f"no local Spark Connect server running for {args.dir}")
        return 0
    print(ensure_running(args.dir, master=config.spark_master(ctx.master), warehouse=ctx.warehouse,
                         conf=dict(ctx.conf)))
    return 0
