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


def test_compose_runs_the_spark_tasks_on_a_connect_server_beside_the_master():
    import json

    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    connect = services["spark-connect"]
    command = connect["command"]
    assert command[:3] == ["ostap", "connect", "--foreground"]
    assert command[command.index("--master") + 1] == "spark://spark-master:7077"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # The workers' executors call the driver back by its host name.
    assert f"spark.driver.host={connect['hostname']}" in command
    scheduler_env = services["scheduler"]["environment"]
    url = json.loads(scheduler_env["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"])
    assert (url["host"], url["port"]) == (f"sc://{connect['hostname']}", int(command[command.index("--port") + 1]))
    assert scheduler_env["OSTAP_SPARK_TASKS"].startswith("${OSTAP_SPARK_TASKS:-connect}")
