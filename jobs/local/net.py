"""Loopback networking helpers shared by the embedded services (Airflow, Spark standalone, Redis)."""

from __future__ import annotations

import random
import socket


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
