"""A Spark standalone cluster on this machine, started from the pyspark installation itself
(`spark-class` Master and Worker), for the scale-out test and for trying the cluster path:

    .venv/bin/python -m jobs.local.cluster --workers 2      # prints the master URL, Ctrl-C stops it
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from jobs.local.net import free_port


def _spark_class() -> str:
    import pyspark

    return os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-class")


@dataclass
class LocalCluster:
    master_url: str
    webui: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    workdir: str = ""

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.webui}/json/", timeout=2) as resp:
                return int(json.load(resp).get("aliveworkers", 0))
        except OSError:
            return 0

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_local_cluster(workers: int = 2, cores: int = 1, memory: str = "1g", timeout: float = 90) -> LocalCluster:
    port, web = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="ostap-spark-cluster-")
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               SPARK_WORKER_DIR=workdir, SPARK_NO_DAEMONIZE="1")
    log = open(os.path.join(workdir, "cluster.log"), "ab")  # noqa: SIM115 - lives as long as the processes
    cluster = LocalCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web}", workdir=workdir)
    cluster.processes.append(subprocess.Popen(
        [_spark_class(), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(web)], env=env, stdout=log, stderr=subprocess.STDOUT))
    for _ in range(workers):
        cluster.processes.append(subprocess.Popen(
            [_spark_class(), "org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host", "127.0.0.1",
             "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port())],
            env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    while cluster.alive_workers() < workers:
        if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.processes):
            cluster.stop()
            raise RuntimeError(f"the local Spark cluster did not start; see {workdir}/cluster.log")
        time.sleep(1)
    return cluster


def main() -> int:
    parser = argparse.ArgumentParser(description="Start a Spark standalone master and workers on 127.0.0.1.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--memory", default="2g")
    args = parser.parse_args()
    cluster = start_local_cluster(args.workers, args.cores, args.memory)
    print(f"Spark master {cluster.master_url} (UI {cluster.webui}) with {args.workers} workers; Ctrl-C stops it",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
