"""Hostile opening handshakes at the socket level, on every adapter (issue #7): a request dribbled a
byte at a time, a request that never ends, a server that never answers or answers a byte at a time,
and request or response heads that are far too large.

Our servers drop a connection whose handshake is not done within `open_timeout` (README, options:
"server: the connection is dropped") and answer an oversized request head with 431 (the core's
`max_handshake_size`, 16 KiB, and `max_headers`, 128); our clients raise `WSTimeoutError` after
`open_timeout` and `HandshakeError` for a response they cannot accept. Times come from the event loop's
clock and memory from tracemalloc (it sees the server and the hostile peer: both run in this
process), printed in the stress figures table at the end of the run.
"""

from __future__ import annotations

import base64
import os
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import anyio.abc
import h11
import pytest

from wscore import HandshakeError, ServerConnection, WSConfig, WSTimeoutError, accept_token

from ..adapters.conftest import Adapter
from .conftest import record_figure

pytestmark = pytest.mark.anyio

OPEN_TIMEOUT = 0.5
# A deadline that passed has to wait for the event loop to get round to it, and a server starts its
# clock when it has accepted the connection, a wake-up after our connect returned: a few ms when the
# machine is idle, tens of ms on a shared 2-core machine while other suites run.
SCHEDULING_ALLOWANCE = 0.1
# A lower bound may be missed by a clock tick: asyncio runs a timer that is due within its clock's
# resolution, and the core's deadlines are sums of floats.
CLOCK_SLACK = 0.001
# The hostile client's pace: "a byte a second" in the issue, sped up so that the whole request would
# take seconds while the open timeout is half a second.
PACE = 0.05
# What a refused oversized head may cost in memory (traced peak, both ends of the connection): a few
# socket reads (asyncio reads up to 256 KiB at a time, anyio and trio 64 KiB) and the parser's
# buffer, which h11 caps at `max_handshake_size` while the head is incomplete (but see KNOWN GAP
# below). Nothing may grow with what the peer sends.
MEMORY_BOUND = 1024 * 1024


def figure(name: str, adapter: Adapter, value: float, bound: float, unit: str = "s") -> None:
    """Keep one measurement for the end-of-run table (tests/stress/conftest.py)."""
    record_figure(name, adapter.name, f"{value:.3f} {unit} (bound {bound:.3f} {unit})")


def upgrade_request(port: int, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A valid WebSocket upgrade request (RFC 6455 §4.1), with `headers` appended."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


async def read_until_closed(stream: anyio.abc.ByteStream) -> tuple[bytes, str]:
    """Everything the other side sends until it closes, and how it closed: "eof" or "reset" (a TLS
    stream's unclean end is a broken resource: "reset" too)."""
    data = bytearray()
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return bytes(data), "eof"
    except (anyio.BrokenResourceError, ConnectionError):
        return bytes(data), "reset"


def parse_response(data: bytes) -> tuple[h11.Response, bytes]:
    """Parse an HTTP/1.1 response with h11 (an independent parser): the head and the body."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    head = conn.next_event()
    assert isinstance(head, h11.Response), head
    body = bytearray()
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage), event
    return head, bytes(body)


# -- our server: slow and unfinished requests ---------------------------------------------------


@pytest.mark.parametrize("client_does", ["a_byte_at_a_time", "half_then_silence"])
async def test_server_drops_a_handshake_that_outlasts_open_timeout(
    adapter: Adapter, client_does: str
) -> None:
    """A client that sends a valid upgrade request a byte every 50 ms (it would take seconds), or
    half of it and then nothing while keeping the socket open, is dropped once `open_timeout`
    (0.5 s) has passed since it connected, without an answer; meanwhile a well-behaved client
    connects and is served (the slow one blocks nothing)."""
    async with adapter.run_server(adapter.module.echo_handler, open_timeout=OPEN_TIMEOUT) as url:
        request = upgrade_request(port_of(url))
        to_send = request if client_does == "a_byte_at_a_time" else request[: len(request) // 2]
        sent = 0
        # The server starts its clock when it accepts: after `connecting`, perhaps before `connected`.
        connecting = anyio.current_time()
        async with await anyio.connect_tcp("127.0.0.1", port_of(url)) as stream:
            connected = anyio.current_time()

            async def dribble() -> None:
                nonlocal sent
                try:
                    if client_does == "half_then_silence":
                        await stream.send(to_send)
                        sent = len(to_send)
                        return
                    for byte in to_send:
                        await stream.send(bytes([byte]))
                        sent += 1
                        await anyio.sleep(PACE)  # sleep-ok: the hostile pace is the behaviour under test
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                    pass  # the server has dropped us

            with anyio.fail_after(5):
                async with anyio.create_task_group() as group:
                    group.start_soon(dribble)
                    async with adapter.connect(url) as ws:
                        await ws.send_str("served meanwhile")
                        assert await ws.receive_str() == "served meanwhile"
                    answer, how = await read_until_closed(stream)
                    closed = anyio.current_time()
                    group.cancel_scope.cancel()
        elapsed = closed - connected
        bound = OPEN_TIMEOUT + SCHEDULING_ALLOWANCE
        figure(f"server_open_timeout[{client_does}]", adapter, elapsed, bound)
        record_figure(f"server_open_timeout[{client_does}]", adapter.name, f"closed by {how}, {sent} B sent")
        assert closed - connecting >= OPEN_TIMEOUT - CLOCK_SLACK, "dropped before the open timeout"
        assert elapsed <= bound
        assert answer == b"", "a handshake cut off by the open timeout gets no answer"
        assert sent < len(request)


# -- our client: a server that does not answer, or answers slowly ----------------------------------


def header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers)


@asynccontextmanager
async def raw_server(behaviour: str, response_headers: Sequence[tuple[str, str]] = ()) -> AsyncIterator[Any]:
    """A TCP server on 127.0.0.1 that reads one upgrade request, then:

    - "silent": answers nothing, keeping the connection open;
    - "slow": sends a correct 101 a byte every `PACE` seconds;
    - "headers": sends a 101 (with a correct Sec-WebSocket-Accept) carrying `response_headers`;
    - "endless": sends a 101 status line and its headers, then header lines without end.

    Its bytes are prepared up front, so that tracemalloc sees our client's allocations, not its.
    Yields a namespace: `url`, and `ended` (set once our client closed the connection).
    """
    listeners = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = cast(anyio.abc.SocketListener, listeners.listeners[0])  # one address: one listener
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    extra = header_block(response_headers)
    endless_block = header_block([(f"X-Endless-{i}", "v" * 40) for i in range(300)])

    class Info:
        url = f"ws://127.0.0.1:{port}/"
        ended = anyio.Event()

    async def serve_one() -> None:
        async with await listener.accept() as stream:
            core = ServerConnection(config=WSConfig(open_timeout=None))
            while core.request is None:
                core.receive_data(await stream.receive())
            key = core.request.header("sec-websocket-key") or ""
            head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            head += b"Sec-WebSocket-Accept: %s\r\n" % accept_token(key).encode()
            try:
                if behaviour == "slow":
                    for byte in head + b"\r\n":
                        await stream.send(bytes([byte]))
                        await anyio.sleep(PACE)  # sleep-ok: the hostile pace is the behaviour under test
                elif behaviour == "headers":
                    await stream.send(head + extra + b"\r\n")
                elif behaviour == "endless":
                    await stream.send(head)
                    while True:
                        await stream.send(endless_block)
                await read_until_closed(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                pass
            Info.ended.set()

    async with listeners, anyio.create_task_group() as group:
        group.start_soon(serve_one)
        yield Info
        with anyio.fail_after(5):
            await Info.ended.wait()
        group.cancel_scope.cancel()


@pytest.mark.parametrize("server_does", ["silent", "slow"])
async def test_client_gives_up_after_open_timeout(adapter: Adapter, server_does: str) -> None:
    """`connect()` to a server that accepts TCP and never answers the upgrade, or answers it a byte
    every 50 ms, raises `WSTimeoutError` once `open_timeout` (0.5 s) has passed, and closes the
    socket (the server sees the connection end)."""
    async with raw_server(server_does) as server:
        started = anyio.current_time()
        with anyio.fail_after(5), pytest.raises(WSTimeoutError):
            async with adapter.connect(server.url, open_timeout=OPEN_TIMEOUT):
                pass
        elapsed = anyio.current_time() - started
        with anyio.fail_after(5):
            await server.ended.wait()
    bound = OPEN_TIMEOUT + SCHEDULING_ALLOWANCE
    figure(f"client_open_timeout[{server_does}]", adapter, elapsed, bound)
    assert OPEN_TIMEOUT - CLOCK_SLACK <= elapsed <= bound


# -- oversized heads --------------------------------------------------------------------------------

HEADER_CASES = {
    "one_100KiB_header": [("X-Big", "b" * 100 * 1024)],
    "5000_small_headers": [(f"X-Small-{i}", "v" * 8) for i in range(5000)],
    # Under the 16 KiB size limit but over the count limit: the count is checked on its own.
    "1000_tiny_headers": [("X", "y")] * 1000,
}


@asynccontextmanager
async def traced() -> AsyncIterator[list[int]]:
    """Trace allocations during the body; yields a list that receives the peak growth in bytes."""
    result: list[int] = []
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        yield result
        result.append(tracemalloc.get_traced_memory()[1] - baseline)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", list(HEADER_CASES))
async def test_server_refuses_an_oversized_request_head_with_431(adapter: Adapter, case: str) -> None:
    """An upgrade request with one 100 KiB header, 5,000 small ones or 1,000 tiny ones (6 KB: the
    128-field limit on its own) is answered with an HTTP 431 response (parsed by h11: the status,
    Connection: close, a body that says why), not a silent close, and the connection is then
    closed; the traced memory peak meanwhile stays under `MEMORY_BOUND`."""

    async def handler(ws: Any) -> None:
        raise AssertionError("an oversized request must not reach the handler")

    async with adapter.run_server(handler) as url:
        request = upgrade_request(port_of(url), HEADER_CASES[case])
        async with await anyio.connect_tcp("127.0.0.1", port_of(url)) as stream:
            with anyio.fail_after(5):
                async with traced() as peak:
                    await stream.send(request)
                    answer, how = await read_until_closed(stream)
    figure(f"request_head_431_peak[{case}]", adapter, peak[0] / 1024, MEMORY_BOUND / 1024, "KiB")
    assert answer, f"the connection was closed ({how}) without an HTTP answer"
    response, body = parse_response(answer)
    assert response.status_code == 431, (response, body)
    assert (b"connection", b"close") in [(k.lower(), v.lower()) for k, v in response.headers]
    assert body, "the refusal says why"
    assert peak[0] < MEMORY_BOUND


async def test_server_cuts_off_an_endless_request_head(adapter: Adapter) -> None:
    """A client that sends header lines without end (up to 64 MiB) is cut off: the server stops
    reading and closes the connection after a bounded amount (the 16 KiB limit plus what the kernel
    buffers), with a 431 when the client is still able to read it (a client still sending may get
    a reset instead), and the traced memory peak stays under `MEMORY_BOUND` however much the client
    tries to send; the server goes on serving."""
    async with adapter.run_server(adapter.module.echo_handler) as url:
        head = upgrade_request(port_of(url))[:-2]  # no blank line: the head never ends
        line_block = b"".join(b"X-Endless-%d: %s\r\n" % (i, b"v" * 40) for i in range(1000))
        sent = 0
        async with await anyio.connect_tcp("127.0.0.1", port_of(url)) as stream:
            with anyio.fail_after(10):
                async with traced() as peak:
                    try:
                        await stream.send(head)
                        while sent < 64 * 1024 * 1024:
                            await stream.send(line_block)
                            sent += len(line_block)
                    except (anyio.BrokenResourceError, ConnectionError):
                        pass
                    answer, how = await read_until_closed(stream)
        with anyio.fail_after(5):
            async with adapter.connect(url) as ws:
                await ws.send_str("next")
                assert await ws.receive_str() == "next"
    figure("request_head_endless_peak", adapter, peak[0] / 1024, MEMORY_BOUND / 1024, "KiB")
    figure("request_head_endless_sent", adapter, sent / 1024, 4 * 1024, "KiB")
    record_figure("request_head_endless", adapter.name, f"closed by {how}, answer {answer[:12]!r}")
    assert sent < 4 * 1024 * 1024, "the server kept reading an endless request head"
    if answer:
        assert parse_response(answer)[0].status_code == 431
    assert peak[0] < MEMORY_BOUND


@pytest.mark.parametrize("case", ["one_100KiB_header", "5000_small_headers", "endless"])
async def test_client_refuses_an_oversized_response_head(adapter: Adapter, case: str) -> None:
    """A server answering the upgrade with a 101 that carries one 100 KiB header, 5,000 headers,
    or header lines without end makes `connect()` raise `HandshakeError` (the head is over the
    16 KiB `max_handshake_size`) when the head is seen, not at the open timeout, with the traced
    memory peak under `MEMORY_BOUND`."""
    behaviour, headers = ("endless", []) if case == "endless" else ("headers", HEADER_CASES[case])
    # Short, in case the head is accepted: the raw server never answers our close frame.
    timeout = adapter.module.WSTimeout(receive=None, close=0.2)
    refused: HandshakeError | None = None
    async with raw_server(behaviour, headers) as server:
        started = anyio.current_time()
        with anyio.fail_after(5):
            async with traced() as peak:
                try:
                    async with adapter.connect(server.url, open_timeout=5 * OPEN_TIMEOUT, timeout=timeout):
                        pass
                except HandshakeError as exc:
                    refused = exc
        elapsed = anyio.current_time() - started
    figure(f"response_head_peak[{case}]", adapter, peak[0] / 1024, MEMORY_BOUND / 1024, "KiB")
    assert refused is not None, "connect() accepted a 101 whose head is over max_handshake_size"
    figure(f"response_head_refused_after[{case}]", adapter, elapsed, OPEN_TIMEOUT)
    assert elapsed < OPEN_TIMEOUT, "the oversized head must be refused when seen, not at the open timeout"
    assert refused.reason
    assert peak[0] < MEMORY_BOUND
