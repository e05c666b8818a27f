"""Running the whole daily pipeline for given dates through the real Airflow DAGs.

Each DAG run goes through `airflow dags test <dag> <date> --use-executor` (the LocalExecutor of
the embedded Airflow, so independent tasks run in parallel), in dependency order: the
snapshots of a date, then the DAGs that read them; the monthly forecast on the 1st of a month.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from pathlib import Path

from jobs.core import config
from jobs.core.errors import OstapError
from jobs.local import airflow_local
from jobs.warehouse import catalog, report

SNAPSHOT_DAG = "ods_snapshot_daily"
DAILY_DOWNSTREAM = ["scoring_targets_daily", "recommendations_daily"]
SHUTDOWN_GRACE_S = 30.0


def plan(dates: list[str]) -> list[list[tuple[str, str]]]:
    """The (dag_id, ds) runs in stages, in the order the stages must happen; the runs of a stage
    read the same inputs and run at once, as the scheduler would run them."""
    stages = []
    for ds in dates:
        stages.append([(SNAPSHOT_DAG, ds)])
        stages.append([(dag_id, ds) for dag_id in DAILY_DOWNSTREAM])
        if dt.date.fromisoformat(ds).day == 1:
            stages.append([("sales_forecast_monthly", ds)])
    return stages


def run_dag(dag_id: str, ds: str, env: dict, poll_s: float = 2.0) -> float:
    """Run one DAG run through `airflow dags test`, printing each task as it finishes (and, for a
    failed one, its log and the lines that explain it) so that a long run is never silent."""
    return run_dags([(dag_id, ds)], env, poll_s)[0]


def run_dags(runs: list[tuple[str, str]], env: dict, poll_s: float = 2.0) -> list[float]:
    """Run DAG runs at once, each through `airflow dags test` (as the scheduler runs DAGs that wait
    on the same inputs): the seconds of each. Raises, once all have ended, if one failed."""
    active = []
    for dag_id, ds in runs:
        if active:
            # Each `dags test` writes its DAG and run to the SQLite metadata database as it starts.
            active[-1].wait_started(timeout=30)
        active.append(_DagTest(dag_id, ds, env))
    pending = list(active)
    while pending:
        pending = [run for run in pending if not run.poll()]
        if pending:
            time.sleep(poll_s)
    failures = [run.failure for run in active if run.failure]
    if failures:
        raise RuntimeError("; ".join(failures))
    return [run.seconds for run in active]


class _DagTest:
    """One `airflow dags test <dag> <ds> --use-executor` in the background, polled by `run_dags`."""

    def __init__(self, dag_id: str, ds: str, env: dict):
        self.dag_id, self.ds = dag_id, ds
        self.home = Path(env["AIRFLOW_HOME"])
        self.log = self.home / "logs" / f"dags_test_{dag_id}_{ds}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.since = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
        self.seen: set[tuple] = set()
        self.failed_logs: list[str] = []
        self.run_state, self.over_since = None, None
        self.seconds, self.failure = 0.0, None
        with open(self.log, "w") as out:
            self.proc = airflow_local.airflow_background("dags", "test", dag_id, ds, "--use-executor", env=env,
                                                         stdout=out)

    def wait_started(self, timeout: float) -> None:
        """Until this run is in the metadata database (or `timeout` seconds, or its process ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None and not airflow_local.query_metadata(
                self.home, "select 1 from dag_run where dag_id = ? and substr(logical_date, 1, 10) = ? "
                           "and run_id >= ?", (self.dag_id, self.ds, "manual__" + self.since.replace(" ", "T"))):
            time.sleep(0.5)

    def poll(self) -> bool:
        """Print the tasks finished since the last look; True once the run has ended."""
        done = self.proc.poll() is not None
        self.failed_logs += _report_tasks(self.home, self.dag_id, self.ds, self.since, self.seen)
        if not done:
            self.run_state = airflow_local.finished_run_state(self.home, self.dag_id, self.ds, self.since)
            self.over_since = self.over_since or (time.monotonic() if self.run_state else None)
            if not (self.over_since and time.monotonic() - self.over_since > SHUTDOWN_GRACE_S):
                return False
            # Airflow's LocalExecutor can wait forever at shutdown on a worker that never gets its
            # stop message (apache/airflow#45329); the run itself is over and recorded.
            print(f"  {self.dag_id} {self.ds}: the run is over ({self.run_state}) but `airflow dags test` has not "
                  f"exited after {SHUTDOWN_GRACE_S:.0f} s; stopping it", flush=True)
            _stop_process_tree(self.proc.pid)
            self.proc.wait()
        self.seconds = time.monotonic() - self.started
        # `airflow dags test` exits non-zero when the run failed; a stopped one by the recorded state.
        failed = self.run_state != "success" if self.over_since else self.proc.returncode != 0
        status = "failed" if failed else "success"
        print(f"  {self.dag_id:<24} {self.ds}  {status:<8} {self.seconds:6.1f} s   (log: {self.log})", flush=True)
        if failed:
            where = f"; task logs: {', '.join(self.failed_logs)}" if self.failed_logs else ""
            self.failure = f"DAG {self.dag_id} failed for {self.ds}; see {self.log}{where}"
        return True


def _stop_process_tree(pid: int) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def _report_tasks(home: Path, dag_id: str, ds: str, since: str, seen: set[tuple]) -> list[str]:
    """Print the tasks of the run that finished since the last look; the log paths of failed ones."""
    failed_logs = []
    for task in airflow_local.finished_tasks(home, dag_id, ds):
        key = (task["task_id"], task["map_index"], task["try_number"], task["state"])
        # Runs of this date from an earlier demo (--keep) finished before this one started.
        if key in seen or task["end_date"] < since:
            continue
        seen.add(key)
        print(f"    {dag_id:<24} {task['task_id']:<28} {task['state']:<16} {task['seconds']:6.1f} s", flush=True)
        if task["state"] in ("failed", "up_for_retry"):
            path = airflow_local.task_log_path(home, dag_id, task)
            failed_logs.append(str(path))
            print(f"      log: {path}", flush=True)
            for line in explaining_lines(path):
                print(f"      | {line}", flush=True)
    return failed_logs


# What marks a log line as part of the explanation of a failure.
_ERROR_WORDS = re.compile(r"error|exception|traceback|failed|refused|killed|not found", re.IGNORECASE)


def explaining_lines(path: Path, limit: int = 8) -> list[str]:
    """The last lines of a task log that say why it failed: its error lines (Airflow 3 writes
    JSON lines; a spark-submit task's own output arrives as their events), else its last lines."""
    try:
        raw = path.read_text(errors="replace").splitlines()
    except OSError:
        return [f"(no log at {path})"]
    lines = []
    for line in raw:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            text = str(record.get("event", ""))
            level = str(record.get("level", "")).lower()
            if record.get("error_detail"):
                detail = record["error_detail"][-1] if isinstance(record["error_detail"], list) else {}
                text += f" {detail.get('exc_type', '')}: {detail.get('exc_value', '')}".rstrip(": ")
        else:
            text, level = line, ""
        if text.strip():
            lines.append((level, text.strip()))
    errors = [text for level, text in lines if level in ("error", "critical") or _ERROR_WORDS.search(text)]
    chosen = errors or [text for _, text in lines]
    return [text[:300] for text in chosen[-limit:]]


def check_snapshot_chain(first_ds: str, env: dict) -> None:
    """Fail at once when the run of ods_snapshot_daily just before `first_ds` did not succeed.

    Its snapshot tasks depend on their previous run (depends_on_past), and `airflow dags test`
    does not fail such a task: it waits for it forever ("No tasks to run. unrunnable tasks").
    """
    earlier = [r for r in airflow_local.dag_runs(env["AIRFLOW_HOME"], SNAPSHOT_DAG)
               if r["logical_date"][:10] < first_ds]
    if earlier and earlier[-1]["state"] != "success":
        last = earlier[-1]
        ds = last["logical_date"][:10]
        raise OstapError(
            f"{SNAPSHOT_DAG} {first_ds} would wait forever: each snapshot task waits for its own task of the "
            f"run before (depends_on_past), and that run, {ds} ({last['run_id']}), is {last['state']} in "
            f"{env['AIRFLOW_HOME']}. Run it to success (airflow dags test {SNAPSHOT_DAG} {ds}), mark it "
            "success in the UI, or give this run its own OSTAP_AIRFLOW_HOME.")


def run_plan(stages: list[list[tuple[str, str]]], env: dict, spark_tasks: str = "connect"
             ) -> tuple[list[tuple[str, str, float]], float, dict[str, float]]:
    """Run stages of (dag_id, ds) runs in order, the runs of a stage at once, through the embedded
    Airflow of `env` (migrated, its serving Redis set): [(dag_id, ds, seconds)], the wall time (the
    Spark engine's start included) and the wall time of each date's stages."""
    timings: list[tuple[str, str, float]] = []
    walls: dict[str, float] = {}
    started = time.monotonic()
    with airflow_local.spark_connect(env, spark_tasks) as url, airflow_local.api_server(env):
        print(f"running the DAGs through Airflow: {sum(map(len, stages))} DAG runs "
              f"(AIRFLOW_HOME={env['AIRFLOW_HOME']}, Spark tasks on {url or 'spark-submit'}, serving Redis "
              f"{env.get('OSTAP_REDIS_URL')})", flush=True)
        for stage in stages:
            stage_started = time.monotonic()
            timings += [(dag_id, ds, seconds) for (dag_id, ds), seconds in zip(stage, run_dags(stage, env),
                                                                                strict=True)]
            ds = stage[0][1]
            walls[ds] = walls.get(ds, 0.0) + time.monotonic() - stage_started
    return timings, time.monotonic() - started, walls


def run_dates(dates: list[str], root: str | None = None, spark_tasks: str = "connect") -> int:
    """Run the DAGs for `dates` through the embedded Airflow on warehouse `root` (default: the settings'),
    their Spark tasks on a warm Spark Connect server (started and stopped here) or, with
    `spark_tasks="spark-submit"`, each through spark-submit with a driver of its own."""
    root = config.warehouse_root(root)
    env = airflow_local.airflow_env(warehouse=root)
    # A failed task fails the demo at once instead of waiting for retries.
    env["OSTAP_TASK_RETRIES"] = "0"
    airflow_local.migrate(env)
    check_snapshot_chain(min(dates), env)
    redis_url = airflow_local.serving_redis(env)
    timings, total, walls = run_plan(plan(dates), env, spark_tasks)
    print()
    print("published tables (rows per date):")
    counts = [r for r in catalog.partition_counts(root) if r[1] in dates]
    print(catalog.format_table(["table", "ds", "rows"], counts))
    print()
    verdicts = report.dq_verdicts(root, dates)
    print("data quality:")
    print(catalog.format_table(["ds", "table", "checks", "failed critical", "failed warning"], verdicts)
          if verdicts else "  no validation results recorded")
    print()
    for ds in dates:
        path = report.write_run_report(root, ds, timings=[t for t in timings if t[1] == ds])
        print(f"run report for {ds}: {path}")
    for ds in dates:
        print(f"{ds}: the DAG runs of the date took {walls[ds]:.1f} s")
    print(f"pipeline wall time: {total:.1f} s for {len(timings)} DAG runs "
          f"(warehouse {root})")
    print(serving_summary(redis_url, airflow_local.redis_dir(env)))
    return 0


def serving_summary(redis_url: str, redis_dir) -> str:
    from jobs.serving import serving

    current = serving.status(redis_url)["current"]
    return (f"serving: version {current} loaded into {redis_url} (left running); answer it with\n"
            f"  .venv/bin/ostap serve --redis {redis_url}    then  curl localhost:8090/recommendations/<client_id>\n"
            f"  stop Redis with: .venv/bin/ostap redis --dir {redis_dir} --stop")
