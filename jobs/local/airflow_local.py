"""The embedded Airflow of ostap: standalone, SQLite, LocalExecutor, the project's DAGs.

Everything lives under one folder (default `<repo>/.airflow`, `OSTAP_AIRFLOW_HOME` overrides),
configured only through environment variables, so the same settings serve `make airflow`,
`ostap demo` and the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from jobs.core import settings
from jobs.local.net import free_port

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


def airflow_home() -> Path:
    return Path(settings.AIRFLOW_HOME.get() or REPO / ".airflow").resolve()


def airflow_env(home: Path | None = None, spark_master: str = "local[*]", warehouse: str | None = None) -> dict:
    """Environment for running the `airflow` CLI (and the Spark tasks it starts) on this project."""
    from jobs.core import config

    home = home or airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    host, port = settings.AIRFLOW_HOST.get(), settings.AIRFLOW_PORT.get()
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Each Spark task is a JVM using the machine's cores; more at once only thrashes 2 cores.
        "AIRFLOW__CORE__PARALLELISM": settings.AIRFLOW_PARALLELISM.get(),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # Loopback unless OSTAP_AIRFLOW_HOST opens it: the simple auth manager is for development only.
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": port,
        # Airflow's default is localhost:8080 whatever the port; tasks call back on loopback
        # when the server listens on every address.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
            f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/execution/",
        # A task's Execution API token is issued when it is queued; on 2 cores the last of eleven
        # Spark tasks can wait longer than the default 10 minutes and would start with a dead token.
        # (The workload token lives `task_queued_timeout`, the Execution API's own tokens
        # `jwt_expiration_time`.)
        "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "14400",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "14400",
        # A task's supervisor can see its sockets close just before the process is reaped; it then
        # sleeps one heartbeat interval before noticing the exit, and the executor slot stays taken.
        # At the default 5 s that cost about half the tasks of a DAG run 5 s each.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "simple_auth_manager_passwords.json"),
        # spark_default points at local[*] in the embedded setup; a cluster only changes this.
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": spark_master}),
        "OSTAP_WAREHOUSE": config.warehouse_root(warehouse),
        "GX_ANALYTICS_ENABLED": "false",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        "NO_PROXY": "*",
        "OSTAP_PII_KEY": settings.PII_KEY.get() or _local_pii_key(home),
    })
    env.update(_openlineage_env(env))
    return env


def _openlineage_env(env: dict) -> dict:
    """The OpenLineage provider's events of DAG and task runs, appended to a file beside the
    jobs' own events, unless OpenLineage is configured already (then both follow that)."""
    from jobs.core import lineage_events

    if any(name.startswith(("OPENLINEAGE", "AIRFLOW__OPENLINEAGE__")) for name in env):
        return {}
    folder = lineage_events.lineage_dir(env["OSTAP_WAREHOUSE"])
    if folder is None:
        return {}
    events = folder / lineage_events.AIRFLOW_EVENTS_FILE
    events.parent.mkdir(parents=True, exist_ok=True)
    return {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events),
                                                           "append": True}),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": lineage_events.DEFAULT_NAMESPACE}


def query_metadata(home: Path, sql: str, parameters: tuple = ()) -> list[tuple]:
    """Rows of one read-only query of the embedded Airflow's metadata database (SQLite); none
    before the first migrate. Read only, so that it never holds a write lock the scheduler waits on."""
    import sqlite3

    database = Path(home) / "airflow.db"
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql, parameters).fetchall()


def dag_runs(home: Path, dag_id: str) -> list[dict]:
    """The runs of a DAG, oldest first: {"logical_date": "YYYY-MM-DD ...", "state", "run_id"}."""
    rows = query_metadata(home, "select logical_date, state, run_id from dag_run where dag_id = ? "
                                "order by logical_date", (dag_id,))
    return [{"logical_date": str(logical), "state": state, "run_id": run_id} for logical, state, run_id in rows]


def finished_run_state(home: Path, dag_id: str, ds: str, since: str) -> str | None:
    """'success' or 'failed' once the DAG's run of logical date `ds` that ended after `since`
    (UTC, 'YYYY-MM-DD HH:MM:SS...') is over; None before."""
    rows = query_metadata(home, "select state from dag_run where dag_id = ? and substr(logical_date, 1, 10) = ? "
                                "and end_date is not null and end_date >= ? and state in ('success', 'failed')",
                          (dag_id, ds, since))
    return rows[-1][0] if rows else None


def finished_tasks(home: Path, dag_id: str, ds: str) -> list[dict]:
    """The finished task instances of the DAG's run(s) of logical date `ds`, by end time:
    {"task_id", "run_id", "state", "seconds", "try_number", "end_date", "map_index"}."""
    rows = query_metadata(
        home, "select ti.task_id, ti.run_id, ti.state, ti.duration, ti.try_number, ti.end_date, ti.map_index "
              "from task_instance ti join dag_run dr on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id "
              "where ti.dag_id = ? and substr(dr.logical_date, 1, 10) = ? and ti.end_date is not null "
              "and ti.state in ('success', 'failed', 'upstream_failed', 'skipped', 'up_for_retry') "
              "order by ti.end_date", (dag_id, ds))
    return [{"task_id": task_id, "run_id": run_id, "state": state, "seconds": duration or 0.0,
             "try_number": try_number, "end_date": str(end), "map_index": map_index}
            for task_id, run_id, state, duration, try_number, end, map_index in rows]


def task_log_path(home: Path, dag_id: str, task: dict) -> Path:
    """The log file of one attempt of a task (Airflow's default log_filename_template)."""
    mapped = f"map_index={task['map_index']}/" if (task.get("map_index") or -1) >= 0 else ""
    return (Path(home) / "logs" / f"dag_id={dag_id}" / f"run_id={task['run_id']}" / f"task_id={task['task_id']}"
            / f"{mapped}attempt={max(task['try_number'] or 1, 1)}.log")


def serving_redis(env: dict) -> str:
    """Point `env` at the Redis the serving step loads (OSTAP_REDIS_URL if set, else a private
    redis-server in `$AIRFLOW_HOME/redis`, started once and left running for `ostap serve`)."""
    from jobs.local import redis_local

    if not env.get("OSTAP_REDIS_URL"):
        env["OSTAP_REDIS_URL"] = redis_local.ensure_running(redis_dir(env))
    return env["OSTAP_REDIS_URL"]


@contextlib.contextmanager
def spark_connect(env: dict, spark_tasks: str = "connect"):
    """For the block, point `env`'s DAGs at their Spark tasks' engine: with `connect`, a warm Spark
    Connect server in `$AIRFLOW_HOME/connect` (started here, stopped after the block) as connection
    spark_connect_default; with `spark-submit`, a driver per task as before. Yields the server's URL or None."""
    env["OSTAP_SPARK_TASKS"] = spark_tasks
    if spark_tasks != "connect":
        yield None
        return
    from jobs.local import connect_server

    master = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])["host"]
    with connect_server.running(Path(env["AIRFLOW_HOME"]) / "connect", master=master,
                                warehouse=env["OSTAP_WAREHOUSE"]) as server:
        env["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"] = json.dumps(
            {"conn_type": "spark_connect", "host": f"sc://{connect_server.HOST}", "port": server.port})
        yield server.url


def redis_dir(env: dict) -> Path:
    return Path(env["AIRFLOW_HOME"]) / "redis"


def _local_pii_key(home: Path) -> str:
    """The phone-hash key of this embedded install: random, made once, kept outside the code.

    Production sets OSTAP_PII_KEY on the workers (or the Airflow Variable ostap_pii_key).
    """
    import secrets

    path = home / "pii_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow(*args: str, env: dict | None = None, check: bool = True, capture: bool = False, timeout=None):
    """Run the `airflow` CLI of this virtualenv with the project's environment."""
    cmd = [str(Path(sys.executable).parent / "airflow"), *args]
    return subprocess.run(cmd, env=env or airflow_env(), check=check, text=True,
                          capture_output=capture, timeout=timeout)


def airflow_background(*args: str, env: dict, stdout) -> subprocess.Popen:
    """Start the `airflow` CLI of this virtualenv in the background, its output (both streams) to `stdout`."""
    return subprocess.Popen([str(Path(sys.executable).parent / "airflow"), *args], env=env, stdout=stdout,
                            stderr=subprocess.STDOUT, text=True)


def migrate(env: dict | None = None) -> None:
    airflow("db", "migrate", env=env, capture=True)


@contextlib.contextmanager
def _background(name: str, args: list[str], env: dict, ready=None, timeout: float = 180):
    """Run `airflow <args>` in the background for the duration of the block, logging to
    `$AIRFLOW_HOME/logs/<name>.log`; `ready()` (if given) must turn true before the block runs."""
    log_path = Path(env["AIRFLOW_HOME"]) / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while ready is not None and not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Airflow {name} did not start; see {log_path}")
                time.sleep(1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def api_server(env: dict, timeout: float = 180):
    """Run an Airflow api-server for the duration of the block and point `env` at it.

    Airflow 3 tasks report to the Execution API, so `airflow dags test --use-executor`
    (the LocalExecutor, running independent tasks in parallel) and the scheduler need one.
    """
    port = free_port()
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
    health = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    args = ["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # only tasks call it
    with _background("api-server", args, env, ready=lambda: _answers(health), timeout=timeout):
        yield port


@contextlib.contextmanager
def scheduler(env: dict):
    """Run the Airflow scheduler (LocalExecutor) for the duration of the block.

    Needs an api-server (see `api_server`) and DAGs serialized into the metadata database
    (`airflow dags reserialize`, or a running dag-processor).
    """
    with _background("scheduler", ["scheduler"], env) as proc:
        yield proc


def admin_password(env: dict) -> str:
    """The password of the simple auth manager's user `admin`, from the passwords file Airflow reads
    (`[core] simple_auth_manager_passwords_file`); made random here if no run of Airflow made it yet."""
    import secrets

    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords = json.loads(path.read_text().strip() or "{}") if path.exists() else {}
    if "admin" not in passwords:
        passwords["admin"] = secrets.token_urlsafe(12)
        path.touch(mode=0o600)
        path.chmod(0o600)  # before the password goes in
        path.write_text(json.dumps(passwords) + "\n")
    return passwords["admin"]


def standalone() -> int:
    """Start the embedded Airflow (api-server, scheduler, dag-processor, triggerer) in the foreground."""
    env = airflow_env()
    home = Path(env["AIRFLOW_HOME"])
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"  # user admin, role admin
    password = admin_password(env)
    migrate(env)
    serving_redis(env)
    host, port = env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]
    # The embedded setup's default is the warm server; OSTAP_SPARK_TASKS=spark-submit keeps a driver per task.
    with spark_connect(env, os.environ.get("OSTAP_SPARK_TASKS") or "connect") as url:
        print(f"Airflow UI: http://{'localhost' if host in ('127.0.0.1', '0.0.0.0', '::') else host}:{port} "
              f"(listening on {host})  login: admin / {password}\n"
              f"DAGs from {DAGS}, warehouse {env['OSTAP_WAREHOUSE']}, AIRFLOW_HOME {home}, "
              f"serving Redis {env['OSTAP_REDIS_URL']}, Spark tasks on {url or 'spark-submit'}. Ctrl-C stops it.",
              flush=True)
        return airflow("standalone", env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(standalone())
