"""Loopback networking helpers shared by the embedded services (Airflow, Spark standalone, Redis,
Spark Connect), and the bookkeeping of a service started in a folder of its own."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "server.json"


@dataclass
class LocalService:
    """A server started on loopback with its folder (log, `server.json` with port and pid)."""

    folder: Path
    port: int
    pid: int
    process: subprocess.Popen | None = None  # None when reused from an earlier process


def write_state(folder: Path, port: int, pid: int) -> None:
    (folder / STATE_FILE).write_text(json.dumps({"port": port, "pid": pid}))


def read_state(folder: Path) -> dict | None:
    """{"port", "pid"} of the server recorded in `folder`; None when none is."""
    try:
        return json.loads((Path(folder) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def forget_state(folder: Path) -> None:
    with contextlib.suppress(OSError):
        (folder / STATE_FILE).unlink()


def wait_ready(process: subprocess.Popen, ready, timeout: float, pause: float = 0.05) -> str | None:
    """Poll `ready()` until it is true (None), the server's process exits ("exited") or `timeout`
    seconds pass ("timeout")."""
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            return "exited"
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(pause)
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def free_port() -> int:
    """A free TCP port below the kernel's ephemeral range (32768+), where outgoing connections
    of Spark and py4j would otherwise take the port between our check and the server's bind."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port found in 20000-32000")
