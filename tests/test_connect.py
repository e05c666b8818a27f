"""Spark Connect (`--remote`, jobs/local/connect_server.py): a real server started from the pyspark
install on loopback; the jobs run unchanged on it and publish what a classic session publishes."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from jobs import cli
from jobs.core import tables
from jobs.local import connect_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DS, DAY_BEFORE = "2024-06-01", "2024-05-31"
# The snapshots the targets read (a full day, then the next incrementally from its state), then the
# targets: a representative chain of the daily pipeline.
SNAPSHOTTED = ("clients", "applications", "contracts")
COMMANDS = [["snapshot", "--entity", entity, "--ds", DAY_BEFORE, "--full"] for entity in SNAPSHOTTED]
COMMANDS += [["snapshot", "--entity", entity, "--ds", DS, "--incremental"] for entity in SNAPSHOTTED]
COMMANDS.append(["targets", "--ds", DS])
COMPARED = ["ods.clients", "ods.applications", "ods.contracts", "state.clients", "marts.scoring_targets",
            "marts.target_recovery"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from jobs.generator.generate import generate_demo

    root = tmp_path_factory.mktemp("connect_sources")
    generate_demo(str(root), "2024-05-22", 11, 11, "small")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with connect_server.running(tmp_path_factory.mktemp("connect"), master="local[2]") as running:
        yield running


def _warehouse(sources, path):
    (path / "raw").mkdir(parents=True)
    for entity in tables.ENTITIES:
        os.symlink(sources / "raw" / entity, path / "raw" / entity)
    return path


def _published(root, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(tables.table(name).partition_path(DS, str(root)))
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_the_jobs_on_a_connect_session_publish_what_a_classic_session_publishes(sources, server, tmp_path, spark,
                                                                             monkeypatch):
    monkeypatch.setenv("OSTAP_PII_KEY", "connect-test-key")
    remote, classic = _warehouse(sources, tmp_path / "remote"), _warehouse(sources, tmp_path / "classic")
    env = {**os.environ, "PYTHONPATH": str(connect_server.REPO)}
    for command in COMMANDS:
        done = subprocess.run([sys.executable, "-m", "jobs", *command, "--warehouse", str(remote),
                               "--remote", server.url], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert cli.main([*command, "--warehouse", str(classic)]) == 0  # the tests' classic session
    for name in COMPARED:
        pd.testing.assert_frame_equal(_published(remote, name), _published(classic, name), obj=name)
        assert len(_published(remote, name)) > 0, name


def test_the_server_answers_from_its_own_warm_driver_and_stops(server, tmp_path):
    """The server is the pyspark install's own spark-connect jar on loopback, and a session on it
    runs a query; a second server of a folder is stopped by the folder alone (as `ostap connect --stop`)."""
    assert server.url.startswith("sc://127.0.0.1:")
    probe = (f"from pyspark.sql import SparkSession; s = SparkSession.builder.remote({server.url!r}).getOrCreate(); "
             "print(s.range(5).count(), s.conf.get('spark.sql.session.timeZone')); s.stop()")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["5", "UTC"], done.stderr[-2000:]
    # The warm-up every start runs (a failure there is only a warning) works on it, and cleans up.
    assert connect_server.warm_up(server.url, tmp_path) is not None
    assert not (tmp_path / "warm_up").exists()
    folder = tmp_path / "second"
    url = connect_server.ensure_running(folder, master="local[1]")
    assert url != server.url and connect_server.ensure_running(folder) == url  # reused while it runs
    assert connect_server.stop(folder) is True
    assert connect_server.stop(folder) is False


def test_a_client_killed_mid_write_leaves_the_partition_whole_and_the_server_usable(sources, server, tmp_path):
    """Session isolation on one server: a task's client killed (SIGKILL) while the server writes its
    partition leaves the previous partition whole to readers, the next task on the same server
    succeeds and publishes it whole, and sessions do not see each other's temp views or settings."""
    import signal
    import time

    import pyarrow.parquet as pq

    root = _warehouse(sources, tmp_path / "wh")
    env = {**os.environ, "PYTHONPATH": str(connect_server.REPO), "OSTAP_SPARK_LOG_LEVEL": "ERROR"}
    command = [sys.executable, "-m", "jobs", "snapshot", "--entity", "page_views", "--ds", DS, "--full",
               "--warehouse", str(root), "--remote", server.url]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    table_dir = root / "ods" / "page_views"
    published = table_dir / f"ds={DS}"
    before = pq.read_table(published).to_pandas().sort_values("view_id").reset_index(drop=True)

    rerun = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 300
    while not any(p.name.startswith("_staging_") for p in table_dir.iterdir()):
        assert rerun.poll() is None, "the rerun ended before the server started writing"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(rerun.pid, signal.SIGKILL)  # the task's client only: the server and its driver go on
    rerun.wait()
    assert pq.read_table(published).to_pandas().sort_values("view_id").reset_index(drop=True).equals(before)

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    after = pq.read_table(published).to_pandas().sort_values("view_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(after, before)
    # The killed run's lock was taken over and its staging folder cleared by the next publish.
    assert [p.name for p in table_dir.iterdir() if p.name.startswith("_")] == []

    # Two sessions at once on the server: each sees only its own temp views and settings.
    probe = ("import sys, time; from pyspark.sql import SparkSession; "
             "s = SparkSession.builder.remote(sys.argv[1]).getOrCreate(); "
             "s.range(3).createOrReplaceTempView('mine'); s.conf.set('spark.sql.shuffle.partitions', sys.argv[2]); "
             "time.sleep(3); "
             "print(sorted(t.name for t in s.catalog.listTables() if t.isTemporary), "
             "s.conf.get('spark.sql.shuffle.partitions'), s.table('mine').count()); s.stop()")
    other = ("import sys; from pyspark.sql import SparkSession; "
             "s = SparkSession.builder.remote(sys.argv[1]).getOrCreate(); "
             "print(sorted(t.name for t in s.catalog.listTables() if t.isTemporary), "
             "s.conf.get('spark.sql.shuffle.partitions')); s.stop()")
    owner = subprocess.Popen([sys.executable, "-c", probe, server.url, "7"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    stranger = subprocess.run([sys.executable, "-c", other, server.url], capture_output=True, text=True, timeout=120)
    assert owner.wait(timeout=120) == 0
    assert owner.stdout.read().split() == ["['mine']", "7", "3"]
    assert stranger.returncode == 0, stranger.stderr[-2000:]
    assert stranger.stdout.split()[0] == "[]" and stranger.stdout.split()[-1] != "7"


def test_the_compose_files_server_command_runs_a_server_in_the_foreground(tmp_path):
    """docker/compose.yaml's spark-connect service (`ostap connect --foreground`), here on loopback
    and local[1] instead of the cluster: the command becomes the server, which answers a session
    and stops on SIGTERM as a container's process does."""
    from pathlib import Path

    import yaml

    from jobs.local.net import free_port

    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker" / "compose.yaml").read_text())
    command = list(compose["services"]["spark-connect"]["command"])
    port = free_port()
    for option, value in (("--host", "127.0.0.1"), ("--port", str(port)), ("--master", "local[1]")):
        command[command.index(option) + 1] = value
    command = [option for option in command if not option.startswith("spark.driver.host")]
    command.remove("--conf")
    env = dict(os.environ, OSTAP_WAREHOUSE=str(tmp_path / "warehouse"))
    server = subprocess.Popen([sys.executable, "-m", "jobs", *command[1:]], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        assert connect_server.wait_ready(server, lambda: connect_server.answers(port), 180, pause=0.5) is None
        probe = (f"from pyspark.sql import SparkSession; s = SparkSession.builder.remote('sc://127.0.0.1:{port}')"
                 ".getOrCreate(); print(s.range(7).count(), s.conf.get('spark.sql.session.timeZone')); s.stop()")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert done.stdout.split() == ["7", "UTC"], done.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert not connect_server.answers(port)
