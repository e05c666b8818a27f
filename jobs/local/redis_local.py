"""A private redis-server on loopback for the tests, the benchmark and the embedded demo.

Debian's `redis-server` is started as a child process bound to 127.0.0.1 on a free port, with
its own folder (log, pid, a `server.json` with port and pid, and the RDB snapshot
`dump.rdb`). A clean stop saves the snapshot and a start in the same folder loads it, so the
service answers again right after a restart without a reload; after a crash the served lists
are simply reloaded from the warehouse by `ostap serve load` (they are a cache of the marts).

    with running(tmp / "redis") as server:      # tests: stopped on exit
        server.url                              # redis://127.0.0.1:PORT/0
    url = ensure_running(".redis")              # demo: reuse the server of that folder or start one
    stop(".redis")

Readiness is checked with a raw RESP `PING` over a socket, so this module needs no Redis client.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from jobs.core import settings
from jobs.core.errors import OstapError
from jobs.local.net import LocalService, alive, forget_state, free_port, read_state, wait_ready, write_state

HELP = "start (or --stop) a private redis-server for local serving and print its URL (development)"

HOST = "127.0.0.1"
INSTALL_HINT = "apt-get install redis-server (or point OSTAP_REDIS_URL at a running Redis)"


class LocalRedis(LocalService):
    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
         if os.access(p, os.X_OK)), None)
    if not found:
        raise OstapError(f"redis-server is not installed: {INSTALL_HINT}")
    return found


def ping(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _log_tail(folder: Path, lines: int = 5) -> str:
    log = folder / "redis.log"
    if not log.exists():
        return ""
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


def start(folder: str | Path, port: int | None = None, timeout: float = 15.0,
          detach: bool = False) -> LocalRedis:
    """Start redis-server on 127.0.0.1 (a free port unless given) and wait until PING answers.

    detach=True starts it in its own session so that it outlives the calling process (the demo);
    otherwise it is still a separate session, so a Ctrl-C of the parent does not kill it before
    `stop` shuts it down cleanly.
    """
    binary = redis_server_binary()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [binary, "--bind", HOST, "--port", str(port), "--dir", str(folder),
            "--save", "3600 1", "--dbfilename", "dump.rdb", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
            "--logfile", str(folder / "redis.log"), "--pidfile", str(folder / "redis.pid")]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    failure = wait_ready(process, lambda: ping(port), timeout)
    if failure == "exited":
        raise OstapError(f"redis-server exited with code {process.returncode} on port {port}: "
                         f"{_log_tail(folder) or 'no log'}")
    if failure == "timeout":
        process.kill()
        process.wait()
        raise OstapError(f"redis-server did not answer PING on {HOST}:{port} within {timeout:.0f} s: "
                         f"{_log_tail(folder) or 'no log'}")
    write_state(folder, port, process.pid)
    return LocalRedis(folder=folder, port=port, pid=process.pid, process=None if detach else process)


def stop(server: LocalRedis | str | Path, timeout: float = 10.0) -> bool:
    """Shut a server down (SHUTDOWN, which saves dump.rdb, then SIGTERM/SIGKILL by pid).
    True if one was running."""
    if isinstance(server, LocalRedis):
        folder, port, pid, process = server.folder, server.port, server.pid, server.process
    else:
        folder = Path(server).resolve()
        state = read_state(folder)
        if not state:
            return False
        port, pid, process = int(state["port"]), int(state["pid"]), None
    was_running = ping(port)
    with contextlib.suppress(OSError):
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"SHUTDOWN SAVE\r\n")
            sock.recv(64)  # the server closes the connection as it exits
    if process is not None:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    else:
        _wait_gone(pid, port, timeout)
    forget_state(folder)
    return was_running


def _wait_gone(pid: int, port: int, timeout: float) -> None:
    """Wait for a server we did not start in this process; only that pid is ever signalled."""
    deadline = time.monotonic() + timeout
    sent_term = False
    while time.monotonic() < deadline:
        if not alive(pid) or not ping(port):
            return
        if not sent_term and time.monotonic() > deadline - timeout / 2:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            sent_term = True
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running(folder: str | Path, port: int | None = None):
    """A redis-server for the duration of a `with` block (tests, benchmarks)."""
    server = start(folder, port=port)
    try:
        yield server
    finally:
        stop(server)


def url_of(folder: str | Path) -> str | None:
    """URL of the server recorded in `folder` (None when none was started there)."""
    state = read_state(Path(folder))
    return f"redis://{HOST}:{int(state['port'])}/0" if state else None


def ensure_running(folder: str | Path) -> str:
    """URL of the server recorded in `folder` if it still answers PING, else of a newly started,
    detached one (it keeps running after this process exits; `stop(folder)` ends it)."""
    folder = Path(folder).resolve()
    state = read_state(folder)
    if state and ping(int(state["port"])):
        return LocalRedis(folder=folder, port=int(state["port"]), pid=int(state["pid"])).url
    return start(folder, detach=True).url


def add_arguments(parser) -> None:
    parser.add_argument("--dir", default=settings.REDIS_DIR.get(),
                        help="folder of the local server (default $OSTAP_REDIS_DIR or .redis)")
    parser.add_argument("--stop", action="store_true", help="stop the local server of --dir")


def run(args, ctx) -> int:
    if args.stop:
        print("stopped" if stop(args.dir) else f"no local redis-server running for {args.dir}")
        return 0
    print(ensure_running(args.dir))
    return 0
