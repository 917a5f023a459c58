"""A real `redis-server` (Debian's package) on a free port of 127.0.0.1, started and stopped by the tests.

Never skipped: without the binary the fixture fails and says how to install it (.ci/run installs it;
scripts/test prints the same hint). `stop()` and `start()` again on the same port simulate a Redis
restart mid-test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

REDIS_SERVER = (
    os.environ.get("WSCORE_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
)
INSTALL_HINT = "redis-server is missing: install it with `apt-get install -y redis-server`"
START_DEADLINE = 10.0


class RedisServer:
    """One redis-server process: no persistence, loopback only."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None, "already running"
        assert Path(REDIS_SERVER).exists(), INSTALL_HINT
        # --save '' --appendonly no: nothing on disk, so a restart starts empty (as after a crash).
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE
        while True:  # ready when the port accepts (polling the port is the readiness check)
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"redis-server exited at start (port {self.port} taken?)")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    where = f"redis-server not listening on {self.port} after {START_DEADLINE} s"
                    raise RuntimeError(where) from exc
                time.sleep(0.02)  # sleep-ok: polling the port for readiness

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server for one test (stopped after it, even if the test restarted it)."""
    for _ in range(5):  # another process may take the free port between the check and the bind
        server = RedisServer(free_port())
        try:
            server.start()
        except RuntimeError:
            continue
        break
    else:
        raise RuntimeError("could not start redis-server on a free port")
    try:
        yield server
    finally:
        server.stop()
