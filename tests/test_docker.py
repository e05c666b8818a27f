"""The deployment files parse and wire the services the README promises (no Docker engine here)."""

from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def test_compose_has_every_service_on_a_shared_warehouse():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "api-server", "scheduler", "dag-processor", "triggerer", "spark-master",
            "spark-worker-1", "spark-worker-2"} <= set(services)
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", "spark-worker-1", "spark-worker-2"):
        assert "warehouse:/warehouse" in services[name]["volumes"], name
    scheduler_env = services["scheduler"]["environment"]
    assert scheduler_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert "spark://spark-master" in scheduler_env["AIRFLOW_CONN_SPARK_DEFAULT"]
    assert "warehouse" in compose["volumes"]
    # Serving: Redis, the API on it, and the DAG's load step pointed at the same Redis.
    assert {"redis", "serve"} <= set(services)
    assert scheduler_env["OSTAP_REDIS_URL"] == "redis://redis:6379/0"
    assert services["serve"]["command"][:2] == ["ostap", "serve"]
    assert services["serve"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_dockerfile_installs_java_and_the_pinned_set():
    text = (DOCKER / "Dockerfile").read_text()
    assert "openjdk-17" in text
    assert "-c constraints.txt" in text
