"""Benchmark of `ostap serve`: latency of GET /recommendations under an open-loop load on loopback.

    .venv/bin/python bench/serve.py [--clients 50000] [--k 10] [--rate 200] [--duration 30]
                                    [--unknown-share 0.1] [--reference-duration 10]

Starts a private redis-server (jobs.local.redis_local) and loads a synthetic version into it through
the same code path as `ostap serve load` (jobs.serving.serving.load_frames): --clients tenants x k
premises for both models (arms by jobs.core.abtest), leads for --premises premises, and the
cold-start list. Then starts the service as `ostap serve` in a subprocess and sends requests
on a fixed schedule (open loop: request i is due at start + i/rate whatever the earlier ones
did), a --unknown-share of them for clients without a list (cold starts). Latency is measured
from the scheduled time to the end of the response, so a stalled server is charged for the
requests queued behind it (no coordinated omission). Clients keep HTTP/1.1 connections open,
as a CRM backend would.

The same run measures two references at the same rate on the same machine, because the
machine is shared and its noise is part of every figure: GET /health (the HTTP stack plus one
Redis GET, no list) and a bare Redis GET from this process (the store's floor).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from jobs.core import abtest
from jobs.local import net, redis_local
from jobs.serving import serving  # noqa: E402

DS = "2026-04-30"


def synthetic_frames(n_clients: int, k: int, n_premises: int, leads_k: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    users = np.arange(1, n_clients + 1, dtype=np.int64)
    arms = np.array([abtest.experiment().arm(u) for u in users])
    frames = []
    for model in serving.MODELS:
        items = rng.integers(1, n_premises + 1, size=(n_clients, k), dtype=np.int64)
        scores = np.sort(rng.random((n_clients, k)), axis=1)[:, ::-1]
        frames.append(pd.DataFrame({
            "user_id": np.repeat(users, k), "item_id": items.ravel(),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n_clients), "score": scores.ravel(),
            "model": model, "arm": np.repeat(arms, k)}))
    premises = np.arange(1, n_premises + 1, dtype=np.int64)
    leads = pd.DataFrame({
        "item_id": np.repeat(premises, leads_k),
        "rank": np.tile(np.arange(1, leads_k + 1, dtype=np.int32), n_premises),
        "user_id": rng.integers(1, n_clients + 1, size=n_premises * leads_k, dtype=np.int64),
        "score": rng.random(n_premises * leads_k)})
    return pd.concat(frames, ignore_index=True), leads


def open_loop(send, paths: list, rate: float, duration: float, workers: int) -> dict:
    """Issue send(path) at `rate` per second for `duration` s; latency from the scheduled time."""
    n = int(rate * duration)
    latencies = np.full(n, np.nan)
    errors = [0]
    lock = threading.Lock()

    def one(i: int, due: float) -> None:
        try:
            ok = send(paths[i % len(paths)])
        except Exception:  # noqa: BLE001 - any failure counts as an error
            ok = False
        latencies[i] = time.perf_counter() - due
        if not ok:
            with lock:
                errors[0] += 1

    pool = ThreadPoolExecutor(max_workers=workers)
    start = time.perf_counter() + 0.05
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pool.submit(one, i, due)
    pool.shutdown(wait=True)
    elapsed = time.perf_counter() - start
    ms = latencies[~np.isnan(latencies)] * 1000.0
    return {"requests": n, "errors": errors[0], "rate": n / elapsed,
            "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


def http_sender(port: int):
    local = threading.local()

    def send(path: str) -> bool:
        for attempt in (1, 2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                return response.status == 200 and body[:1] == b"{"
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise
        return False

    return send


def wait_healthy(port: int, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"ostap serve exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("ostap serve did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--premises", type=int, default=20_000)
    parser.add_argument("--leads-k", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the main phase")
    parser.add_argument("--reference-duration", type=float, default=10.0, help="seconds of each reference phase")
    parser.add_argument("--unknown-share", type=float, default=0.1, help="share of requests for unknown clients")
    parser.add_argument("--workers", type=int, default=32, help="client threads (connections)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ostap-bench-serve-") as tmp, \
            redis_local.running(Path(tmp) / "redis") as redis_server:
        recs, leads = synthetic_frames(args.clients, args.k, args.premises, args.leads_k)
        started = time.perf_counter()
        version = serving.load_frames(recs, leads, DS, redis_server.url)
        load_s = time.perf_counter() - started
        memory = serving.connect(redis_server.url).info("memory")["used_memory_human"]

        port = net.free_port()
        answers = Path(tmp) / "answers.jsonl"
        server = subprocess.Popen(
            [sys.executable, "-m", "jobs", "serve", "--port", str(port), "--redis", redis_server.url,
             "--log", str(answers)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_healthy(port, server)
            n = int(args.rate * args.duration)
            paths = [f"/recommendations/{args.clients + 1 + rng.randrange(10 * args.clients)}?k={args.k}"
                     if rng.random() < args.unknown_share else
                     f"/recommendations/{rng.randint(1, args.clients)}?k={args.k}" for _ in range(n)]
            send = http_sender(port)
            open_loop(send, paths[:200], 100.0, 1.0, args.workers)  # warm-up: connections, script cache
            load_before = os.getloadavg()[0]
            main_phase = open_loop(send, paths, args.rate, args.duration, args.workers)
            health = open_loop(send, ["/health"], args.rate, args.reference_duration, args.workers)
        finally:
            server.terminate()
            server.wait(timeout=10)
        store = serving.connect(redis_server.url)
        current_key = f"{serving.PREFIX}current"
        bare = open_loop(lambda _p: store.get(current_key) == version, ["-"], args.rate,
                         args.reference_duration, args.workers)
        logged = sum(1 for _ in answers.open())
        load_after = os.getloadavg()[0]

    rows = [(f"GET /recommendations ({1 - args.unknown_share:.0%} known, {args.unknown_share:.0%} cold start)",
             main_phase, args.duration),
            ("reference: GET /health (HTTP + one Redis GET)", health, args.reference_duration),
            ("reference: bare Redis GET from the client", bare, args.reference_duration)]
    print(f"\nostap serve benchmark: {args.clients:,} clients x {args.k} premises x {len(serving.MODELS)} models, "
          f"{args.premises:,} premises with {args.leads_k} leads; loaded in {load_s:.1f} s, Redis {memory}; "
          f"open loop {args.rate:.0f} req/s on loopback, {os.cpu_count()} cores, load average "
          f"{load_before:.1f} -> {load_after:.1f}; answer log lines {logged:,}")
    print("\n| phase | s | requests | achieved req/s | p50 ms | p95 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r, seconds in rows:
        print(f"| {name} | {seconds:.0f} | {r['requests']:,} | {r['rate']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | "
              f"{r['p99']:.1f} | {r['max']:.1f} | {r['errors']} |")
    verdict = "met" if main_phase["p99"] < 50 and main_phase["errors"] == 0 else "NOT met"
    print(f"\ntarget p99 < 50 ms with no errors: {verdict} (p99 {main_phase['p99']:.1f} ms)")
    print(json.dumps({"main": main_phase, "health": health, "redis_get": bare, "load_s": load_s}))
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
