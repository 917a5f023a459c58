"""Runs examples/embed_blocking.py as a user would (a subprocess on a free port) and talks to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import free_port

from .test_core_embedding import KEY

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "embed_blocking.py"
HEARTBEAT = 0.3


@pytest.fixture
def server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    # The example imports wscore as an installed package would be; make the checkout importable.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    with subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", str(port), "--heartbeat", str(HEARTBEAT)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"listening on ws://127.0.0.1:{port}/"
            yield f"ws://127.0.0.1:{port}", proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_echo_with_subprotocol_and_compression(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    with connect(url + "/", subprotocols=["echo"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "echo"
        assert ws.response is not None
        assert ws.response.headers["server"] == "embed-blocking/1.0"
        assert "date" in ws.response.headers
        assert ws.response.headers["sec-websocket-extensions"].startswith("permessage-deflate")
        messages: list[str | bytes] = ["hello", "ü" * 10_000, b"\x00\xff" * 40_000]
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=5) == message
        ws.close(4321, "done")
        assert ws.close_code == 4321  # the server echoed our code


def test_other_paths_are_refused_by_the_host(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    with pytest.raises(InvalidStatus) as info:
        connect(url + "/elsewhere")
    assert info.value.response.status_code == 404


def test_invalid_upgrade_is_refused_with_the_cores_status(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 7\r\n\r\n"
        )
        response = b""
        while chunk := sock.recv(4096):
            response += chunk
    assert response.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13" in response


def test_heartbeat_drops_a_silent_peer(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        opened = time.monotonic()
        assert sock.recv(2) == b"\x89\x00"  # the core's heartbeat ping, never answered here
        pinged = time.monotonic()
        assert sock.recv(1) == b""  # then the host closes the socket when the core says so
        dropped = time.monotonic()
    assert pinged - opened >= HEARTBEAT * 0.9
    assert HEARTBEAT / 2 * 0.9 <= dropped - pinged < HEARTBEAT + 2.0


def test_answering_peer_survives_heartbeats(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    with connect(url + "/") as ws:
        # websockets answers the server's pings in its background thread; wait several heartbeats.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=HEARTBEAT * 5)
        ws.send("alive")
        assert ws.recv(timeout=5) == "alive"


def test_shutdown_closes_connections_with_1001(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = server
    with connect(url + "/") as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        proc.send_signal(signal.SIGINT)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert proc.wait(15) == 0
    assert proc.stdout is not None and proc.stdout.read().strip() == "stopped"
