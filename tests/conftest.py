"""Shared fixtures: one local SparkSession per test session (UTC, few shuffle partitions), its SQL
settings put back after every test, and the property tests' example counts per tier."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("OSTAP_SPARK_LOG_LEVEL", "ERROR")

# `make test` runs few examples, the same ones every time; `make test-e2e` passes
# --hypothesis-profile=thorough and explores more, from a fresh seed each run.
_PROPERTY_SETTINGS = dict(deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fast", max_examples=5, derandomize=True, **_PROPERTY_SETTINGS)
settings.register_profile("thorough", max_examples=40, **_PROPERTY_SETTINGS)
settings.load_profile("fast")

SPARK_TEST_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "2g",
}

# The shared session and its SQL settings as the fixture made them.
_SESSION: dict = {}


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.core.spark import get_spark

    os.environ["OSTAP_WAREHOUSE"] = str(tmp_path_factory.mktemp("session_warehouse"))
    session = get_spark("ostap-tests", master="local[2]", conf=SPARK_TEST_CONF)
    _SESSION.update(session=session, settings=session.conf.getAll)
    yield session
    _SESSION.clear()
    session.stop()


@pytest.fixture(autouse=True)
def _session_settings_put_back():
    """A CLI command run in-process gets the shared session through getOrCreate, which applies
    the command's settings (16 shuffle partitions, its --conf) to it: without this, a test's
    result could depend on which test ran before it."""
    yield
    if _SESSION:
        put_back_settings(_SESSION["session"], _SESSION["settings"])


def put_back_settings(session, baseline: dict[str, str]) -> list[str]:
    """Set every SQL setting that differs from `baseline` back (unset the ones it lacked); the
    keys that were changed."""
    changed = []
    for key, value in session.conf.getAll.items():
        if baseline.get(key) != value:
            changed.append(key)
            if key in baseline:
                session.conf.set(key, baseline[key])
            else:
                session.conf.unset(key)
    for key in baseline.keys() - session.conf.getAll.keys():
        changed.append(key)
        session.conf.set(key, baseline[key])
    return sorted(changed)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """A fresh, empty warehouse root for one test (OSTAP_WAREHOUSE points at it)."""
    root = tmp_path / "warehouse"
    root.mkdir()
    monkeypatch.setenv("OSTAP_WAREHOUSE", str(root))
    return root
