"""Test helpers for the sans-I/O core: an in-memory client/server pair on a fake clock, and a frame
encoder/decoder written independently of `wscore.frames`, so the tests do not trust the code they test.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Sequence
from typing import NamedTuple

from wscore import (
    ClientConnection,
    Connection,
    PerMessageDeflate,
    ServerConnection,
    WSConfig,
    WSMessage,
    WSMsgType,
)

__all__ = [
    "ConnectionPair",
    "FakeClock",
    "Frame",
    "close_payload",
    "data_events",
    "error_of",
    "open_connection",
    "parse_frames",
    "peer_frame",
    "raw_frame",
    "split_at",
]

KEY = b"\x37\xfa\x21\x3d"
"""The masking key of RFC 6455 §5.7's examples, used wherever a test needs a fixed one."""


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        self.now += seconds
        return self.now


def _xor(data: bytes, key: bytes) -> bytes:
    # Byte by byte on purpose: an oracle slower and simpler than the code under test.
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def raw_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
    length: int | None = None,
    length_form: int | None = None,
) -> bytes:
    """Encode one frame by the letter of RFC 6455 §5.2.

    `mask` is the 4-byte key (None: unmasked). `length` overrides the declared payload length (to
    declare more than is sent); `length_form` forces the 7-, 16- or 64-bit length encoding.
    """
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    n = len(payload) if length is None else length
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    mbit = 0x80 if mask is not None else 0
    if form == 7:
        header = bytes((b0, mbit | n))
    elif form == 16:
        header = bytes((b0, mbit | 126)) + struct.pack("!H", n)
    else:
        header = bytes((b0, mbit | 127)) + struct.pack("!Q", n)
    if mask is None:
        return header + payload
    return header + mask + _xor(payload, mask)


def peer_frame(conn: Connection, opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A frame as `conn`'s peer sends it: masked when `conn` is a server (RFC 6455 §5.3)."""
    mask = None if conn.client else KEY
    return raw_frame(opcode, payload, mask=mask, **kwargs)  # type: ignore[arg-type]


class Frame(NamedTuple):
    """One decoded frame."""

    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes
    masked: bool


def parse_frames(data: bytes) -> list[Frame]:
    """Decode every frame in `data` (unmasking masked ones); fails the test on trailing bytes."""
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame"
        pos += n
        frames.append(
            Frame(
                bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, _xor(payload, key) if masked else payload, masked
            )
        )
    return frames


def close_payload(frame: Frame) -> tuple[int | None, bytes]:
    """The code and raw reason of a decoded close frame."""
    assert frame.opcode == 0x8
    if not frame.payload:
        return None, b""
    return int.from_bytes(frame.payload[:2], "big"), frame.payload[2:]


def data_events(events: Sequence[WSMessage]) -> list[WSMessage]:
    """Only the TEXT/BINARY/CONTINUATION events."""
    kinds = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)
    return [e for e in events if e.type in kinds]


def error_of(conn: Connection) -> int | None:
    """The close code of the ERROR event `conn` produced (None if there was none); drains events."""
    codes = [e.data.code for e in conn.events() if e.type is WSMsgType.ERROR and hasattr(e.data, "code")]
    return codes[0] if codes else None


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """`data` cut at the given offsets (sorted, clipped), as a transport might deliver it."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a] or [data]


def open_connection(
    client: bool,
    config: WSConfig | None = None,
    *,
    deflate: PerMessageDeflate | None = None,
    now: float | None = 0.0,
) -> Connection:
    """A `Connection` that starts OPEN, as after someone else's handshake."""
    return Connection(client, config, deflate=deflate, now=now)


class ConnectionPair:
    """A client and a server wired together in memory, on one fake clock.

    Bytes move only when the test says so (`to_server`, `to_client`, `exchange`), so a test can look
    at or tamper with what is on the wire in between.
    """

    def __init__(
        self,
        *,
        client_config: WSConfig | None = None,
        server_config: WSConfig | None = None,
        subprotocols: Sequence[str] = (),
        server_subprotocols: Sequence[str] = (),
        clock: FakeClock | None = None,
        handshake: bool = True,
    ) -> None:
        self.clock = clock or FakeClock()
        self.client = ClientConnection(
            "example.com",
            "/chat",
            subprotocols=subprotocols,
            config=client_config,
            now=self.clock.now,
        )
        self.server = ServerConnection(
            subprotocols=server_subprotocols, config=server_config, now=self.clock.now
        )
        if handshake:
            self.handshake()

    def handshake(self) -> None:
        """Carry the upgrade request to the server, accept it, and carry the 101 back."""
        self.server.receive_data(self.client.data_to_send(), now=self.clock.now)
        assert self.server.request is not None
        self.server.accept(now=self.clock.now)
        self.client.receive_data(self.server.data_to_send(), now=self.clock.now)
        assert self.client.state is self.server.state

    def to_server(self) -> list[WSMessage]:
        """Deliver the client's pending bytes to the server; the server's new events."""
        data = self.client.data_to_send()
        if data:
            self.server.receive_data(data, now=self.clock.now)
        return self.server.events()

    def to_client(self) -> list[WSMessage]:
        """Deliver the server's pending bytes to the client; the client's new events."""
        data = self.server.data_to_send()
        if data:
            self.client.receive_data(data, now=self.clock.now)
        return self.client.events()

    def exchange(self) -> tuple[list[WSMessage], list[WSMessage]]:
        """Move bytes both ways until neither side has any to send; (client events, server events)."""
        client_events: list[WSMessage] = []
        server_events: list[WSMessage] = []
        for _ in range(100):
            moved = False
            data = self.client.data_to_send()
            if data:
                moved = True
                self.server.receive_data(data, now=self.clock.now)
            data = self.server.data_to_send()
            if data:
                moved = True
                self.client.receive_data(data, now=self.clock.now)
            client_events += self.client.events()
            server_events += self.server.events()
            if not moved:
                return client_events, server_events
        raise AssertionError("the pair never went quiet")

    def tick(self, seconds: float) -> float:
        """Advance the clock and run both sides' timers."""
        now = self.clock.advance(seconds)
        self.client.handle_timer(now)
        self.server.handle_timer(now)
        return now


def random_key() -> bytes:
    """A fresh masking key."""
    return os.urandom(4)


SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
"""The Sec-WebSocket-Key of RFC 6455 §1.3; its accept token is `SAMPLE_ACCEPT`."""
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

UPGRADE_HEADERS: list[tuple[str, str]] = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", SAMPLE_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request_bytes(
    headers: Sequence[tuple[str, str]] = UPGRADE_HEADERS,
    *,
    method: str = "GET",
    target: str = "/chat",
    version: str = "1.1",
) -> bytes:
    """A raw HTTP request, written by hand so that it may break any rule."""
    lines = [f"{method} {target} HTTP/{version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def with_headers(
    changes: dict[str, str | None], base: Sequence[tuple[str, str]] = UPGRADE_HEADERS
) -> list[tuple[str, str]]:
    """`base` with headers replaced (or removed, for None) and new ones appended."""
    result = []
    for name, value in base:
        if name in changes:
            new = changes[name]
            if new is not None:
                result.append((name, new))
        else:
            result.append((name, value))
    present = {k for k, _ in base}
    result += [(k, v) for k, v in changes.items() if k not in present and v is not None]
    return result


class Response(NamedTuple):
    """An HTTP response as read back from a server's bytes."""

    status: int
    headers: dict[str, str]
    body: bytes
    rest: bytes


def read_response(data: bytes) -> Response:
    """Parse a server's response (status, lower-cased headers, body, bytes after it)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete response: {data!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1", lines[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    n = int(headers.get("content-length", "0"))
    return Response(int(status), headers, rest[:n], rest[n:])


def response_bytes(
    headers: Sequence[tuple[str, str]],
    status: int = 101,
    reason: str = "Switching Protocols",
    body: bytes = b"",
) -> bytes:
    """A raw HTTP response, written by hand so that it may break any rule."""
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
