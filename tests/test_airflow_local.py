"""The embedded Airflow (`make airflow`, jobs/local/airflow_local.py) is not open to the network unless
OSTAP_AIRFLOW_HOST says so, and its login is the one the README gives. Airflow is not started here:
its own argument parser tells where `airflow api-server` (as `airflow standalone` runs it) would listen."""

from __future__ import annotations

import contextlib
import json
import stat
import subprocess
import sys
from pathlib import Path

from jobs.local import airflow_local

# The defaults of `airflow api-server --host/--port`, which Airflow takes from its configuration.
API_SERVER_BINDS = ("from airflow.cli.cli_config import ARG_API_SERVER_HOSTNAME as H, ARG_API_SERVER_PORT as P; "
                    "print(H.kwargs['default'], P.kwargs['default'])")


def _api_server_binds(env: dict) -> str:
    return subprocess.run([sys.executable, "-c", API_SERVER_BINDS], env=env, capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_the_api_server_listens_on_loopback_unless_the_setting_opens_it(tmp_path, monkeypatch):
    monkeypatch.delenv("OSTAP_AIRFLOW_HOST", raising=False)
    monkeypatch.delenv("OSTAP_AIRFLOW_PORT", raising=False)
    env = airflow_local.airflow_env(tmp_path / "home")
    assert _api_server_binds(env) == "127.0.0.1 8080"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8080/execution/"

    monkeypatch.setenv("OSTAP_AIRFLOW_HOST", "0.0.0.0")
    monkeypatch.setenv("OSTAP_AIRFLOW_PORT", "8181")
    env = airflow_local.airflow_env(tmp_path / "home")
    assert _api_server_binds(env) == "0.0.0.0 8181"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8181/execution/"  # tasks: loopback


def test_the_api_server_of_the_demo_and_tests_stays_on_loopback_when_the_ui_is_opened(tmp_path, monkeypatch):
    started = []

    @contextlib.contextmanager
    def background(name, args, env, ready=None, timeout=180):
        started.append(args)
        yield None

    monkeypatch.setattr(airflow_local, "_background", background)
    monkeypatch.setenv("OSTAP_AIRFLOW_HOST", "0.0.0.0")
    env = airflow_local.airflow_env(tmp_path / "home")
    with airflow_local.api_server(env) as port:
        pass
    assert started == [["api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]]


def test_the_login_is_admin_with_the_password_in_the_passwords_file_airflow_reads(tmp_path):
    env = airflow_local.airflow_env(tmp_path / "home")
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert path == tmp_path / "home" / "simple_auth_manager_passwords.json"
    password = airflow_local.admin_password(env)
    assert len(password) >= 16 and password != "admin"
    assert json.loads(path.read_text()) == {"admin": password}  # the format Airflow reads and writes
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert airflow_local.admin_password(env) == password  # made once
    path.write_text('{"admin": "m7Kp2sQwXz4bN8cD"}\n')  # made by Airflow's API server of `ostap demo`
    assert airflow_local.admin_password(env) == "m7Kp2sQwXz4bN8cD"


def test_the_demo_runs_the_snapshots_first_then_their_readers_at_once_and_the_forecast_on_the_first():
    from jobs.local import pipeline

    assert pipeline.plan(["2024-05-31", "2024-06-01"]) == [
        [("ods_snapshot_daily", "2024-05-31")],
        [("scoring_targets_daily", "2024-05-31"), ("recommendations_daily", "2024-05-31")],
        [("ods_snapshot_daily", "2024-06-01")],
        [("scoring_targets_daily", "2024-06-01"), ("recommendations_daily", "2024-06-01")],
        [("sales_forecast_monthly", "2024-06-01")],
    ]
