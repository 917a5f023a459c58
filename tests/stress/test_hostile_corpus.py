"""The hostile-client corpus (issue #13), run against every adapter's server: each record of
`hostile_cases.CASES` is a raw-socket client that misbehaves in one way, and the answer the
documentation promises for it (its module docstring says where each is documented).

One test per adapter runs the whole table against the same three servers (plain, TLS, with a
heartbeat), case after case. After each case the bad connection must have got its documented answer,
the same server must still upgrade and echo a well-behaved client, and nothing may have been logged at
ERROR (no traceback escapes) unless the answer includes that log line. The number of cases each
adapter survived goes to the stress figures table.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import h11
import pytest
from anyio.streams.tls import TLSStream

from wscore import (
    ClientConnection,
    ConnectionClosed,
    HandshakeError,
    Request,
    State,
    WSConfig,
    WSMsgType,
    WSTimeoutError,
)

from ..adapters.conftest import Adapter
from .conftest import record_figure
from .hostile_cases import (
    CASES,
    GOOD_ORIGIN,
    HEARTBEAT,
    MAX_CONNECTIONS,
    MAX_MSG_SIZE,
    OPEN_TIMEOUT,
    WRITE_TIMEOUT,
    Answer,
    Case,
    close_code,
    frame,
)
from .test_faults import RawPeer, small_buffers
from .test_hostile_handshake import read_until_closed

pytestmark = pytest.mark.anyio

# A deadline that passed waits for the event loop to get round to it, and a server starts its clock
# when it has accepted, a wake-up after our connect returned: tens of ms on a busy 2-core machine.
SCHEDULING_ALLOWANCE = 0.15
# No case may take longer than this (the slowest waits out the open timeout or the write timeout).
CASE_BOUND = 10.0
# The raw peer's core parses what the server sends and answers nothing on its own.
PEER_CONFIG = WSConfig(
    autoping=False, autoclose=False, max_message_size=None, open_timeout=None, close_timeout=None
)
# Header lines for the client whose request head never ends.
ENDLESS_BLOCK = b"".join(b"X-Endless-%d: %s\r\n" % (i, b"v" * 40) for i in range(1000))
FLOOD_CHUNK = b"f" * 65536


@dataclass
class Outcomes:
    """What the servers' handlers saw, by request path: the close code and the exception when each
    connection ended (set once the handler has finished with it)."""

    ended: dict[str, tuple[int | None, BaseException | None]] = field(default_factory=dict)
    events: dict[str, anyio.Event] = field(default_factory=dict)

    def event(self, path: str) -> anyio.Event:
        return self.events.setdefault(path, anyio.Event())

    async def wait(self, path: str) -> tuple[int | None, BaseException | None]:
        await self.event(path).wait()
        return self.ended[path]


def make_handler(outcomes: Outcomes) -> Callable[[Any], Any]:
    """Echo; on the text "flood", send 64 KiB binary messages until the connection is lost (the
    server streaming to a client that never reads). Records how each connection ended."""

    async def handler(ws: Any) -> None:
        path = ws.core.request.path
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and msg.data == "flood":
                    while True:
                        await ws.send_bytes(FLOOD_CHUNK)
                elif msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        except ConnectionClosed:
            pass  # the peer went (or was dropped): recorded below
        finally:
            outcomes.ended[path] = (ws.close_code, ws.exception())
            outcomes.event(path).set()

    return handler


def process_request(request: Request) -> None:
    """The server's `process_request`: /boom fails (the documented answer is a 500, logged once)."""
    if request.path == "/boom":
        raise RuntimeError("process_request failure (expected by the hostile corpus)")


def server_options(tls_server: ssl.SSLContext, adapter: Adapter) -> dict[str, dict[str, Any]]:
    """The three servers' options; the limits are small so that the cases that hit them stay short."""
    main: dict[str, Any] = {
        "open_timeout": OPEN_TIMEOUT,
        "write_timeout": WRITE_TIMEOUT,
        "max_msg_size": MAX_MSG_SIZE,
        "max_connections": MAX_CONNECTIONS,
        "origins": [None, GOOD_ORIGIN],
        "process_request": process_request,
        "timeout": adapter.module.WSTimeout(receive=None, close=1.0),
    }
    return {"main": main, "tls": {**main, "ssl": tls_server}, "heartbeat": {**main, "heartbeat": HEARTBEAT}}


# -- the raw client ---------------------------------------------------------------------------------


async def upgrade_raw(port: int, path: str) -> RawPeer:
    """A raw TCP client that completes a valid upgrade to `path` (small kernel buffers): from here on
    it sends only what a case tells it to."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    small_buffers(stream.extra(anyio.abc.SocketAttribute.raw_socket))
    core = ClientConnection(f"127.0.0.1:{port}", path, config=PEER_CONFIG)
    await stream.send(core.data_to_send())
    while core.state is State.CONNECTING:
        core.receive_data(await stream.receive())
    assert core.state is State.OPEN, core.exception
    return RawPeer(stream, core)


async def send_quietly(stream: anyio.abc.ByteSendStream, data: bytes) -> bool:
    """Send; False when the server has closed the connection meanwhile (the answer is read after)."""
    try:
        await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        return False
    return True


def parse_http(answer: bytes, method: str) -> tuple[h11.Response | h11.InformationalResponse, bytes, bytes]:
    """Parse the server's answer with h11 (an independent parser) as the response to `method`: the
    head, the body, and what follows a 101 (frames). Exactly one response, then the close."""
    conn = h11.Connection(h11.CLIENT)
    upgrade = [("Host", "x"), ("Connection", "Upgrade"), ("Upgrade", "websocket")]
    conn.send(h11.Request(method=method, target="/", headers=upgrade))
    conn.send(h11.EndOfMessage())
    conn.receive_data(answer)
    head = conn.next_event()
    if isinstance(head, h11.InformationalResponse):
        assert head.status_code == 101, head
        return head, b"", conn.trailing_data[0]
    conn.receive_data(b"")
    assert isinstance(head, h11.Response), f"not an HTTP response: {answer[:80]!r}"
    body = bytearray()
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage), event
    assert isinstance(conn.next_event(), h11.ConnectionClosed), "more than one response"
    return head, bytes(body), b""


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """`data` as whole frames from the server, `(opcode, payload)`: FIN set and unmasked (RFC 6455
    §5.1), lengths in the 7- or 16-bit form (nothing larger is expected here)."""
    frames = []
    while data:
        assert len(data) >= 2 and data[0] & 0xF0 == 0x80 and data[1] < 127, f"not a frame: {data[:40]!r}"
        n, start = data[1], 2
        if n == 126:
            n, start = int.from_bytes(data[2:4], "big"), 4
        assert len(data) >= start + n, "a truncated frame"
        frames.append((data[0] & 0x0F, data[start : start + n]))
        data = data[start + n :]
    return frames


def check_http_answer(case: Case, answer: bytes, how: str) -> None:
    expected = case.answer
    if expected.or_reset and not answer and how == "reset":
        return
    assert answer, f"closed ({how}) without an answer"
    method = "HEAD" if case.send[0].startswith(b"HEAD ") else "GET"
    head, body, after = parse_http(answer, method)
    if expected.close is not None:
        assert head.status_code == 101, (head, body)
        frames = server_frames(after)
        assert frames and frames[-1][0] == 0x8, frames  # the close comes last
        assert int.from_bytes(frames[-1][1][:2], "big") == expected.close, frames
        assert [p.decode() for _, p in frames[:-1]] == list(expected.echoed), frames
        return
    assert head.status_code == expected.status, (head, body)
    headers = [(k.decode().lower(), v.decode()) for k, v in head.headers]
    assert ("connection", "close") in [(k, v.lower()) for k, v in headers], headers
    if expected.header is not None:
        assert expected.header in headers, headers
    if expected.body:
        assert body, "a refusal says why"
    else:
        assert body == b"", "the answer to HEAD has no body (RFC 9110 §9.3.2)"


def check_dropped(case: Case, answer: bytes, elapsed: float) -> None:
    if case.kind == "tls":
        # A TLS server may have answered in TLS (its ServerHello to a ClientHello, an alert that says
        # why, RFC 8446 §6) before it closes; nothing else.
        check_tls_records(answer)
    else:
        assert answer == b"", f"a dropped handshake gets no answer, got {answer[:80]!r}"
    assert expected_within(case.answer) is not None
    bound = expected_within(case.answer) + SCHEDULING_ALLOWANCE
    assert elapsed <= bound, f"dropped after {elapsed:.3f} s, over {bound:.3f} s"


def check_tls_records(data: bytes) -> None:
    """`data` is whole TLS records (RFC 8446 §5.1: a content type, a 3.x version, a length), or nothing."""
    pos = 0
    while pos < len(data):
        head = data[pos : pos + 5]
        assert len(head) == 5 and head[0] in (0x14, 0x15, 0x16, 0x17) and head[1] == 3, f"not TLS: {head!r}"
        pos += 5 + int.from_bytes(head[3:5], "big")
    assert pos == len(data), "a truncated TLS record"


def expected_within(answer: Answer) -> float:
    assert answer.within is not None
    return answer.within


# -- the cases, by kind -----------------------------------------------------------------------------


async def run_raw(case: Case, port: int, tls_client: ssl.SSLContext) -> None:
    """ "http" and "tls" cases: send on a fresh connection (paced, or endless), read until closed."""
    connected = anyio.current_time()
    async with await anyio.connect_tcp("127.0.0.1", port) as tcp:
        stream: anyio.abc.ByteStream = tcp
        if case.tls:
            stream = await TLSStream.wrap(
                tcp, hostname="127.0.0.1", ssl_context=tls_client, standard_compatible=False
            )

        async def send_all() -> None:
            for i, chunk in enumerate(case.send):
                if i and case.pace:
                    await anyio.sleep(case.pace)  # sleep-ok: the hostile pace is the behaviour under test
                if not await send_quietly(stream, chunk):
                    return
            sent = 0
            while case.endless and sent < 64 * 1024 * 1024:
                if not await send_quietly(stream, ENDLESS_BLOCK):
                    return
                sent += len(ENDLESS_BLOCK)

        if case.reset:
            # Sent, then gone with a reset (SO_LINGER 0): the server's answer meets a dead socket.
            await send_all()
            tcp.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            await tcp.aclose()
            return
        async with anyio.create_task_group() as group:
            group.start_soon(send_all)
            answer, how = await read_until_closed(stream)
            elapsed = anyio.current_time() - connected
            group.cancel_scope.cancel()
    if case.answer.dropped:
        check_dropped(case, answer, elapsed)
    else:
        check_http_answer(case, answer, how)


async def run_ws(case: Case, port: int) -> None:
    """ "ws" cases: upgrade, send the case's frames, read the server's close frame and its TCP close."""
    peer = await upgrade_raw(port, f"/{case.name}")
    async with peer.stream:
        for chunk in case.send:
            if not await send_quietly(peer.stream, chunk):
                break
        await peer.read_to_end()
    closes = [m.data for m in peer.messages if m.type is WSMsgType.CLOSE]
    assert peer.ended is not None
    assert closes == [case.answer.close], f"close frames {closes}, TCP {peer.ended}"


async def run_flood(case: Case, port: int) -> None:
    """`MAX_CONNECTIONS` upgraded connections held open, then one more upgrade request."""
    held = [await upgrade_raw(port, f"/held-{i}") for i in range(MAX_CONNECTIONS)]
    try:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(case.send[0])
            answer, how = await read_until_closed(stream)
        check_http_answer(case, answer, how)
    finally:
        for peer in held:  # a clean close each: the server lets go of them
            await send_quietly(peer.stream, close_code(1000))
            await peer.read_to_end()
            await peer.aclose()


async def run_never_reads(case: Case, port: int, outcomes: Outcomes) -> None:
    """Ask the server to stream ("flood"), then never read: its send blocks once the buffers are full,
    and after `write_timeout` it drops the connection."""
    path = f"/{case.name}"
    peer = await upgrade_raw(port, path)
    async with peer.stream:
        await peer.send(frame(0x81, b"flood"))
        code, exc = await outcomes.wait(path)
    assert code == 1006, code
    assert isinstance(exc, WSTimeoutError) and "write_timeout" in str(exc), repr(exc)


async def run_ping_flood(case: Case, port: int, outcomes: Outcomes) -> None:
    """Send pings without end and never read. Each ping obliges a pong (RFC 6455 §5.5.2): once the
    pongs put the server's writer behind, it stops reading (so our sends block and its memory stays
    bounded), and after `write_timeout` it drops the connection. Without that the server would read
    and answer for as long as we send, its unsent pongs growing without bound."""
    path = f"/{case.name}"
    peer = await upgrade_raw(port, path)
    done = outcomes.event(path)
    async with peer.stream:
        while not done.is_set() and await send_quietly(peer.stream, case.send[0]):
            pass
        code, exc = await outcomes.wait(path)
    assert code == 1006, code
    assert isinstance(exc, WSTimeoutError) and "write_timeout" in str(exc), repr(exc)


async def run_silent(case: Case, port: int, outcomes: Outcomes) -> None:
    """Upgrade, then send nothing and answer no ping: dropped within heartbeat + pong_timeout of the
    last byte the server received (the end of our request)."""
    path = f"/{case.name}"
    peer = await upgrade_raw(port, path)
    upgraded = anyio.current_time()
    async with peer.stream:
        await peer.read_to_end()
    elapsed = anyio.current_time() - upgraded
    code, exc = await outcomes.wait(path)
    kinds = [m.type for m in peer.messages]
    assert WSMsgType.PING in kinds, kinds  # the heartbeat asked first
    assert WSMsgType.CLOSE not in kinds, "a dead peer is dropped, not closed (1006)"
    assert code == 1006 and isinstance(exc, WSTimeoutError), (code, exc)
    bound = expected_within(case.answer) + SCHEDULING_ALLOWANCE
    assert elapsed <= bound, f"dropped after {elapsed:.3f} s, over {bound:.3f} s"


# -- the runner -------------------------------------------------------------------------------------


@asynccontextmanager
async def servers(
    adapter: Adapter, tls_server: ssl.SSLContext, outcomes: Outcomes
) -> AsyncIterator[dict[str, str]]:
    """The three servers of the corpus, by name: their URLs."""
    async with AsyncExitStack() as stack:
        urls = {}
        for name, options in server_options(tls_server, adapter).items():
            urls[name] = await stack.enter_async_context(
                adapter.run_server(make_handler(outcomes), **options)
            )
        yield urls


async def still_echoes(adapter: Adapter, url: str, tls_client: ssl.SSLContext, case: Case) -> None:
    """A well-behaved client is upgraded and echoed by the same server. After the connection flood the
    server lets go of the held connections a moment after their close: a 503 meanwhile is retried."""
    while not await echo_once(adapter, url, tls_client, f"after {case.name}", retry_503=case.kind == "flood"):
        pass


async def echo_once(
    adapter: Adapter, url: str, tls_client: ssl.SSLContext, text: str, *, retry_503: bool
) -> bool:
    """One echo round-trip; False when refused with 503 and `retry_503` (the caller tries again)."""
    kw: dict[str, Any] = {"ssl": tls_client} if url.startswith("wss:") else {}
    try:
        async with adapter.connect(url, **kw) as ws:
            await ws.send_str(text)
            assert await ws.receive_str() == text
    except HandshakeError as exc:
        if retry_503 and exc.status == 503:
            return False
        raise
    return True


def errors_logged(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno >= logging.ERROR]


async def test_the_hostile_corpus_gets_its_documented_answers(
    adapter: Adapter, tls_server: ssl.SSLContext, tls_client: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """Every case of the hostile-client corpus (`hostile_cases.CASES`, over 80: bad request lines,
    bodies, targets, versions, keys, hosts, oversized and endless heads, slowloris, TLS garbage and TLS
    never finished, a connection flood, framing violations after the upgrade, invalid UTF-8 and close
    codes, oversize messages, a peer that never reads, a silent peer) gets its documented answer; after
    each, the same server upgrades and echoes a normal client, and nothing was logged at ERROR except a
    log line the answer documents."""
    outcomes = Outcomes()
    failures: dict[str, str] = {}
    caplog.set_level(logging.WARNING)
    started = anyio.current_time()
    async with servers(adapter, tls_server, outcomes) as urls:
        for case in CASES:
            url = urls[case.server]
            port = int(url.rsplit(":", 1)[1])
            caplog.clear()
            try:
                with anyio.fail_after(CASE_BOUND):
                    if case.kind in ("http", "tls"):
                        await run_raw(case, port, tls_client)
                    elif case.kind == "ws":
                        await run_ws(case, port)
                    elif case.kind == "flood":
                        await run_flood(case, port)
                    elif case.kind == "ping_flood":
                        await run_ping_flood(case, port, outcomes)
                    elif case.kind == "never_reads":
                        await run_never_reads(case, port, outcomes)
                    else:
                        assert case.kind == "silent", case.kind
                        await run_silent(case, port, outcomes)
                    await still_echoes(adapter, url, tls_client, case)
                errors = errors_logged(caplog.records)
                if case.answer.logged is None:
                    assert not errors, [r.getMessage() for r in errors]
                else:
                    # The documented log line, once, with its traceback; nothing else.
                    assert len(errors) == 1 and case.answer.logged in errors[0].getMessage(), errors
                    assert errors[0].exc_info is not None
            except Exception as exc:  # every case is tried; the failures are reported together
                failures[case.name] = f"expected {case.answer.describe()} ({case.rfc}): {exc!r}"[:400]
    elapsed = anyio.current_time() - started
    survived = len(CASES) - len(failures)
    record_figure(
        "hostile corpus: cases survived", adapter.name, f"{survived}/{len(CASES)} in {elapsed:.1f} s"
    )
    assert not failures, "\n".join(f"{name}: {why}" for name, why in failures.items())
