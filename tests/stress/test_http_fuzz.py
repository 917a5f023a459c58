"""Arbitrary bytes thrown at the HTTP phase of every adapter's server (issue #13): the server survives
every example, and every answer is one of three things: a well-formed HTTP response (parsed by h11,
`Connection: close`, a status the server documents for a refused upgrade: 400, 426, 431, or 501
for an unknown transfer coding), a 101
followed by well-formed WebSocket frames, or the connection closed without a word.

Each adapter's server runs in a thread of its own (an anyio blocking portal on the adapter's backend),
for the whole module; the examples are plain blocking sockets on 127.0.0.1. Hypothesis runs
derandomized with a fixed example count, so every run tries the same inputs: arbitrary binary, and
truncations, byte mutations and splices of a valid upgrade request, and requests assembled from good
and bad header lines. After the examples, the same server still echoes a normal client, and nothing
was logged at ERROR.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import h11
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wscore import accept_token
from wscore.frames import is_valid_close_code

from ..adapters.conftest import ADAPTERS, Adapter
from .conftest import record_figure
from .hostile_cases import KEY, close_code, request

EXAMPLES = 200
"""Examples per adapter (each a connection); the same ones on every run."""
OPEN_TIMEOUT = 0.25
# How long a read may wait: the server answers or closes within its open timeout, or the upgrade
# succeeded and we end it ourselves; anything longer is a hang.
READ_TIMEOUT = 3.0
# The statuses the server answers a refused upgrade with (the core: README, "Errors"), and 501 for a
# transfer coding it does not implement (h11's answer, as RFC 9112 §6.1 says a server SHOULD).
REFUSALS = {400, 426, 431, 501}
VALID = request()


@dataclass
class FuzzServer:
    """One adapter's server, running in a portal thread, and what it logged at ERROR meanwhile."""

    adapter: Adapter
    portal: BlockingPortal
    port: int
    url: str
    errors: list[logging.LogRecord] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    """How many examples ended each way ("HTTP 400", "101", "closed", ...), for the figures."""


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture(scope="module", params=list(ADAPTERS))
def fuzz_server(request: pytest.FixtureRequest) -> Iterator[FuzzServer]:
    """The adapter's echo server (open timeout 0.25 s) in a background thread, for the module."""
    adapter = ADAPTERS[request.param]
    backend, options = (adapter.backend, {}) if isinstance(adapter.backend, str) else adapter.backend
    # Without asyncio's debug mode, as tests/stress's anyio_backend (its bookkeeping costs time).
    options = {k: v for k, v in options.items() if k != "debug"}
    errors: list[logging.LogRecord] = []
    handler = _Collect(errors)
    logging.getLogger().addHandler(handler)
    try:
        with (
            start_blocking_portal(backend, options) as portal,
            portal.wrap_async_context_manager(
                adapter.run_server(adapter.module.echo_handler, open_timeout=OPEN_TIMEOUT)
            ) as url,
        ):
            yield FuzzServer(adapter, portal, int(url.rsplit(":", 1)[1]), url, errors)
    finally:
        logging.getLogger().removeHandler(handler)


# -- what the fuzzing client sends --------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """The valid request with a few bytes overwritten, inserted or deleted."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["set", "insert", "delete"]))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 58, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        if how == "set":
            data[pos] = byte
        elif how == "insert":
            data.insert(pos, byte)
        else:
            del data[pos]
    return bytes(data)


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    """A prefix of the valid request, arbitrary bytes, then a suffix of it."""
    i = draw(st.integers(0, len(VALID)))
    j = draw(st.integers(i, len(VALID)))
    return VALID[:i] + draw(st.binary(max_size=64)) + VALID[j:]


HEADER_LINES = [
    "Host: 127.0.0.1",
    "Host: bad host",
    "Upgrade: websocket",
    "Upgrade: WebSocket, h2c",
    "Connection: Upgrade",
    "Connection: keep-alive, Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Key: short",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Version: 8",
    "Sec-WebSocket-Protocol: chat, superchat",
    "Sec-WebSocket-Protocol: bad protocol",
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7",
    "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; bogus",
    "Content-Length: 0",
    "Content-Length: 3",
    "Transfer-Encoding: chunked",
    "Origin: https://example.com",
    "Expect: 100-continue",
    " folded continuation",
    "No-Colon-Here",
    ": empty name",
    "X-Long: " + "x" * 4000,
]
REQUEST_LINES = [
    "GET / HTTP/1.1",
    "GET /chat?x=1 HTTP/1.1",
    "GET http://127.0.0.1/ HTTP/1.1",
    "HEAD / HTTP/1.1",
    "POST / HTTP/1.1",
    "CONNECT 127.0.0.1:80 HTTP/1.1",
    "GET * HTTP/1.1",
    "GET / HTTP/1.0",
    "GET / HTTP/2.0",
    "GET / HTTP/1.1 extra",
    "GET  /  HTTP/1.1",
    "PRI * HTTP/2.0",
]


@st.composite
def assembled(draw: st.DrawFn) -> bytes:
    """A request line and header lines drawn from good and bad ones, CRLF or bare LF, maybe a body
    and frames after it."""
    lines = [draw(st.sampled_from(REQUEST_LINES))]
    lines += draw(st.lists(st.sampled_from(HEADER_LINES), max_size=10))
    eol = draw(st.sampled_from(["\r\n", "\r\n", "\n"]))
    tail = draw(st.sampled_from([b"", b"", b"abc", b"0\r\n\r\n", close_code(1000), b"\x81\x85"]))
    return (eol.join(lines) + eol + eol).encode("latin-1") + tail


payloads = st.one_of(
    st.binary(max_size=512),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
    mutated(),
    spliced(),
    assembled(),
)
# Mostly the client ends its side after sending (the server sees EOF at once); sometimes it keeps it
# open, so that an incomplete request is ended by the server's open timeout.
half_closes = st.sampled_from([True, True, True, False])


# -- what the server may answer -----------------------------------------------------------------


def exchange(port: int, data: bytes, half_close: bool) -> tuple[bytes, str]:
    """Send `data`, maybe end our side, and read until the server closes: its answer and how it
    closed ("eof" or "reset"). After a 101 we end our side: the server then closes (1006)."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server has already closed on us; read what it said
        answer = b""
        ended = half_close
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return answer, "reset"
            except TimeoutError:
                raise AssertionError(
                    f"no answer and no close within {READ_TIMEOUT} s: {answer[:80]!r}"
                ) from None
            if not chunk:
                return answer, "eof"
            answer += chunk
            if not ended and answer.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in answer:
                ended = True
                with contextlib.suppress(OSError):  # the server may have closed already
                    sock.shutdown(socket.SHUT_WR)


def check_frames(data: bytes) -> None:
    """`data` is whole, well-formed frames from a server (RFC 6455 §5.2): unmasked, a known opcode,
    control frames whole and at most 125 bytes, minimal lengths, a valid close code."""
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, f"a truncated frame header: {data[pos:]!r}"
        b0, b1 = data[pos], data[pos + 1]
        opcode = b0 & 0x0F
        assert opcode in (0, 1, 2, 8, 9, 10), f"opcode {opcode:#x}"
        assert not b1 & 0x80, "a masked frame from the server (RFC 6455 §5.1)"
        assert not b0 & 0x30, "RSV2/RSV3 set"
        length, pos = b1 & 0x7F, pos + 2
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
            assert length >= 126, "a non-minimal 16-bit length"
        elif length == 127:
            length, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
            assert length >= 65536, "a non-minimal 64-bit length"
        if opcode & 0x8:
            assert b0 & 0x80 and length <= 125, "a control frame fragmented or over 125 bytes"
        payload = data[pos : pos + length]
        assert len(payload) == length, "a truncated frame"
        if opcode == 8 and payload:
            assert len(payload) >= 2 and is_valid_close_code(int.from_bytes(payload[:2], "big")), payload
        pos += length


def classify(data: bytes, answer: bytes) -> str:
    """Check that `answer` is a well-formed HTTP refusal, a 101 and frames, or nothing; say which."""
    if not answer:
        return "closed"
    if answer.startswith(b"HTTP/1.1 101 "):
        head, _, frames = answer.partition(b"\r\n\r\n")
        conn = h11.Connection(h11.CLIENT)
        upgrade = [("Host", "x"), ("Connection", "Upgrade"), ("Upgrade", "websocket")]
        conn.send(h11.Request(method="GET", target="/", headers=upgrade))
        conn.receive_data(head + b"\r\n\r\n")
        response = conn.next_event()
        assert isinstance(response, h11.InformationalResponse) and response.status_code == 101, response
        headers = {k.lower(): v for k, v in response.headers}
        assert headers[b"sec-websocket-accept"] == accept_token(KEY).encode(), "an accept for another key"
        check_frames(frames)
        return "101"
    # The request may have been a HEAD (no body in the answer) or anything else.
    outcomes = [parse_refusal(answer, m) for m in (("HEAD", "GET") if data.startswith(b"HEAD") else ("GET",))]
    statuses = [o for o in outcomes if isinstance(o, int)]
    assert statuses, f"not a well-formed HTTP response ({outcomes[-1]!r}): {answer[:120]!r}"
    return f"HTTP {statuses[0]}"


def parse_refusal(answer: bytes, method: str) -> int | Exception:
    """The status of `answer` parsed by h11 as the response to `method`, when it is one well-formed
    refusal and then the close; else what is wrong with it."""
    try:
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        conn.receive_data(answer)
        conn.receive_data(b"")
        response = conn.next_event()
        assert isinstance(response, h11.Response), response
        assert response.status_code in REFUSALS, response.status_code
        assert (b"connection", b"close") in [(k.lower(), v.lower()) for k, v in response.headers]
        while isinstance(event := conn.next_event(), h11.Data):
            pass
        assert isinstance(event, h11.EndOfMessage), event
        assert isinstance(conn.next_event(), h11.ConnectionClosed), "more than one response"
    except (AssertionError, h11.ProtocolError) as exc:
        return exc
    return int(response.status_code)


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=payloads, half_close=half_closes)
def test_arbitrary_bytes_in_the_http_phase(fuzz_server: FuzzServer, data: bytes, half_close: bool) -> None:
    """Whatever bytes a client sends before the upgrade, the server answers with a well-formed HTTP
    refusal (400/426/431/501), a 101 and well-formed frames, or closes the connection; it neither hangs
    (an answer or a close within the read timeout) nor dies (the next example connects)."""
    answer, _how = exchange(fuzz_server.port, data, half_close)
    kind = classify(data, answer)
    fuzz_server.answers[kind] = fuzz_server.answers.get(kind, 0) + 1


def test_after_the_fuzzing_the_server_still_echoes(fuzz_server: FuzzServer) -> None:
    """The server that took every example above still upgrades and echoes a normal client, and
    nothing was logged at ERROR (no traceback escaped) while it took them."""
    adapter = fuzz_server.adapter

    async def echo() -> str:
        async with adapter.connect(fuzz_server.url) as ws:
            await ws.send_str("still there")
            text: str = await ws.receive_str()
            return text

    started = time.monotonic()
    assert fuzz_server.portal.call(echo) == "still there"
    assert time.monotonic() - started < READ_TIMEOUT
    assert not fuzz_server.errors, [logging.Formatter().format(r) for r in fuzz_server.errors]
    examples = sum(fuzz_server.answers.values())
    answers = ", ".join(f"{k} ×{n}" for k, n in sorted(fuzz_server.answers.items()))
    record_figure("http fuzz: examples survived", adapter.name, f"{examples}/{examples} ({answers})")
    assert examples >= EXAMPLES, "the fuzzing test ran first, on this server"
