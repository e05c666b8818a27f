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


def plan(dates: list[str]) -> list[tuple[str, str]]:
    """(dag_id, ds) runs in the order they must happen."""
    runs = []
    for ds in dates:
        runs.append((SNAPSHOT_DAG, ds))
        runs.extend((dag_id, ds) for dag_id in DAILY_DOWNSTREAM)
        if dt.date.fromisoformat(ds).day == 1:
            runs.append(("sales_forecast_monthly", ds))
    return runs


def run_dag(dag_id: str, ds: str, env: dict, poll_s: float = 2.0) -> float:
    """Run one DAG run through `airflow dags test`, printing each task as it finishes (and, for a
    failed one, its log and the lines that explain it) so that a long run is never silent."""
    home = Path(env["AIRFLOW_HOME"])
    log = home / "logs" / f"dags_test_{dag_id}_{ds}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    seen: set[tuple] = set()
    failures: list[str] = []
    run_state, over_since = None, None
    with open(log, "w") as out:
        proc = airflow_local.airflow_background("dags", "test", dag_id, ds, "--use-executor", env=env, stdout=out)
        while True:
            done = proc.poll() is not None
            failures += _report_tasks(home, dag_id, ds, since, seen)
            if done:
                break
            run_state = airflow_local.finished_run_state(home, dag_id, ds, since)
            over_since = over_since or (time.monotonic() if run_state else None)
            if over_since and time.monotonic() - over_since > SHUTDOWN_GRACE_S:
                # Airflow's LocalExecutor can wait forever at shutdown on a worker that never gets its
                # stop message (apache/airflow#45329); the run itself is over and recorded.
                print(f"  {dag_id} {ds}: the run is over ({run_state}) but `airflow dags test` has not exited "
                      f"after {SHUTDOWN_GRACE_S:.0f} s; stopping it", flush=True)
                _stop_process_tree(proc.pid)
                proc.wait()
                break
            time.sleep(poll_s)
    seconds = time.monotonic() - started
    # `airflow dags test` exits non-zero when the run failed; a stopped one by the recorded state.
    failed = run_state != "success" if over_since else proc.returncode != 0
    status = "failed" if failed else "success"
    print(f"  {dag_id:<24} {ds}  {status:<8} {seconds:6.1f} s   (log: {log})", flush=True)
    if failed:
        where = f"; task logs: {', '.join(failures)}" if failures else ""
        raise RuntimeError(f"DAG {dag_id} failed for {ds}; see {log}{where}")
    return seconds


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


def run_plan(runs: list[tuple[str, str]], env: dict, spark_tasks: str = "connect"
             ) -> tuple[list[tuple[str, str, float]], float]:
    """Run (dag_id, ds) runs in order through the embedded Airflow of `env` (migrated, its serving
    Redis set): [(dag_id, ds, seconds)] and the wall time, the Spark engine's start included."""
    timings: list[tuple[str, str, float]] = []
    started = time.monotonic()
    with airflow_local.spark_connect(env, spark_tasks) as url, airflow_local.api_server(env):
        print(f"running the DAGs through Airflow: {len(runs)} DAG runs (AIRFLOW_HOME={env['AIRFLOW_HOME']}, "
              f"Spark tasks on {url or 'spark-submit'}, serving Redis {env.get('OSTAP_REDIS_URL')})", flush=True)
        for dag_id, ds in runs:
            timings.append((dag_id, ds, run_dag(dag_id, ds, env)))
    return timings, time.monotonic() - started


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
    timings, total = run_plan(plan(dates), env, spark_tasks)
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
