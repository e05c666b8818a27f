"""Shared fixtures: one local SparkSession per test session (UTC, few shuffle partitions)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("OSTAP_SPARK_LOG_LEVEL", "ERROR")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.spark import get_spark

    os.environ["OSTAP_WAREHOUSE"] = str(tmp_path_factory.mktemp("session_warehouse"))
    session = get_spark(
        "ostap-tests",
        master="local[2]",
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
        },
    )
    yield session
    session.stop()


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """A fresh, empty warehouse root for one test (OSTAP_WAREHOUSE points at it)."""
    root = tmp_path / "warehouse"
    root.mkdir()
    monkeypatch.setenv("OSTAP_WAREHOUSE", str(root))
    return root
