"""The core's fuzz target: any bytes in, only the documented outcomes out.

`run(data)` reads `data` as a small program: a 3-byte preamble picks the target (a server fed the
client's bytes from the very start, a client fed the server's response, or an OPEN connection in either
role), its configuration and how the bytes are cut into reads; the rest is what the peer sends, raw or
as frame records (see `encode_records`) so that a fuzzer gets past the header checks. After every read
it checks the documented contract (connection.py, server.py, client.py and errors.py):

- Once OPEN, `receive_data` never raises: a violation is an ERROR event carrying a `ProtocolError`
  with close code 1002, 1007 or 1009 (`conn.exception`, `conn.close_code`), then CLOSED; our last
  frame written is a close frame with that code, and `close_transport` is set.
- During the handshake the only exception is `HandshakeError`, after which the state is CLOSED and
  `close_transport` set; a server has written a 4xx/5xx response with the error's status, a client
  nothing more. Bytes after that are discarded.
- Events are only of the kinds the configuration allows, nothing follows CLOSED, the state never
  goes back, messages respect `max_message_size`, the receive buffer holds at most one frame under
  the limit, and we write only pongs and at most one close frame, masked exactly when we are a client.
- `receive_eof` ends in CLOSED (1006 if the connection was up) and `handle_timer` never raises; a
  client's EOF during the handshake is its `HandshakeError`. Sending afterwards is `ConnectionClosed`.

tests/stress/test_fuzz.py (hypothesis) and tests/fuzz/fuzz_core.py (atheris) both call `run`; a
broken rule raises `ContractViolation`.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.core.helpers import (
    KEY,
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    UPGRADE_HEADERS,
    parse_frames,
    request_bytes,
    response_bytes,
)
from wscore import (
    ClientConnection,
    Connection,
    ConnectionClosed,
    DeflateOptions,
    HandshakeError,
    PerMessageDeflate,
    ProtocolError,
    ServerConnection,
    State,
    WSConfig,
    WSMsgType,
)

__all__ = [
    "LIES",
    "LIMITS",
    "TARGETS",
    "ContractViolation",
    "Outcome",
    "encode_records",
    "preamble",
    "run",
    "seeds",
]

TARGETS = (
    "server-raw",  # a ServerConnection fed arbitrary bytes from the start (request, then frames)
    "client-raw",  # a ClientConnection, its request sent, fed an arbitrary response and frames
    "open-raw",  # an OPEN Connection fed arbitrary frame bytes
    "open-frames",  # an OPEN Connection fed frame records
    "server-frames",  # a valid request (its extension offer from the input), then frame records
    "client-frames",  # a valid 101 (its extension response from the input), then frame records
    "server-mutated",  # a valid request with bytes overwritten, then raw bytes
    "client-mutated",  # a valid 101 with bytes overwritten, then raw bytes
)
LIMITS = (None, 16, 1000, 70_000)
"""`max_message_size` choices: none, smaller than a control frame, small, above the 16-bit length."""
LIES = (126, 65_536, 1 << 31, (1 << 62) + 5, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 70_001)
"""Payload lengths a record may announce without sending them (2**63 and up break RFC 6455 §5.2)."""
PROTOCOL_CODES = (1002, 1007, 1009)
_ORDER = {State.CONNECTING: 0, State.OPEN: 1, State.CLOSING: 2, State.CLOSED: 3}
_SUBPROTOCOLS = ("chat", "superchat")
_MAX_HEADER = 14  # 2 bytes, a 64-bit length and a masking key


class ContractViolation(AssertionError):
    """The core broke a documented rule for the input given."""


def check(condition: object, message: str) -> None:
    """Raise `ContractViolation(message)` unless `condition` holds (kept under `python -O` too)."""
    if not condition:
        raise ContractViolation(message)


@dataclass
class Outcome:
    """What one input did, for statistics and for tests that aim at a particular path."""

    target: str
    state: State = State.CONNECTING
    """The state before the final EOF."""
    opened: bool = False
    close_code: int | None = None
    """`close_code` before the final EOF."""
    error_code: int | None = None
    """The code of the ERROR event, if the peer broke a rule after the handshake."""
    handshake_status: int | None = None
    """The status of the `HandshakeError`, if the handshake failed (None inside it: not HTTP)."""
    handshake_failed: bool = False
    messages: int = 0
    pongs: int = 0
    events: list[WSMsgType] = field(default_factory=list)


# -- the input format ---------------------------------------------------------------------------


def preamble(
    target: int,
    *,
    client: bool = False,
    deflate: bool = False,
    fragments: bool = False,
    autoping: bool = True,
    autoclose: bool = True,
    limit: int = 2,
    cuts: int = 0,
    peer_no_context_takeover: bool = False,
    our_no_context_takeover: bool = False,
    peer_window_bits: int = 15,
) -> bytes:
    """The 3 bytes that start an input: the target (an index of TARGETS), switches, the limit (an
    index of LIMITS), `cuts` (0: one read; else the seed of the read sizes, up to 63) and deflate's
    parameters for the OPEN targets."""
    b0 = target | client << 3 | deflate << 4 | fragments << 5 | (not autoping) << 6 | (not autoclose) << 7
    b1 = limit | cuts << 2
    b2 = peer_no_context_takeover | our_no_context_takeover << 1 | (peer_window_bits - 8) << 2
    return bytes((b0, b1, b2))


def encode_records(records: bytes, *, client: bool, window_bits: int = 15) -> bytes:
    """Turn frame records into the frames a peer of a `client` (or server) connection sends.

    A record is `h, f, n` and `n` payload bytes: `h` is the first header byte as is (FIN, RSV1-3,
    opcode); `f` says bits 0-1: the length form (shortest, 16-bit, 64-bit, or announce `LIES[bits
    4-6]` and send the payload as it is), bit 2: the mask bit wrong for the role, bit 3: the payload
    deflated (one compressor for the stream, the 4-byte tail dropped on FIN), bit 7: the payload made
    valid UTF-8 (each byte as that code point). `n == 255` means a long payload: the next two bytes
    `c, b` give `b` repeated `c * 300` times. Compression uses a window of `window_bits` (zlib's
    smallest is 9).
    """
    out = bytearray()
    comp = zlib.compressobj(6, zlib.DEFLATED, -max(9, window_bits))
    i, n = 0, len(records)
    while i + 3 <= n:
        h, f, size = records[i], records[i + 1], records[i + 2]
        i += 3
        if size == 255 and i + 2 <= n:
            payload = bytes((records[i + 1],)) * (records[i] * 300)
            i += 2
        else:
            payload = bytes(records[i : i + size])
            i += size
        if f & 0x80:
            payload = payload.decode("latin-1").encode("utf-8")
        if f & 0x08:
            payload = comp.compress(payload) + comp.flush(zlib.Z_SYNC_FLUSH)
            if h & 0x80:
                payload = payload[:-4]
        masked = (not client) != bool(f & 0x04)
        form = f & 0x03
        length = LIES[(f >> 4) & 7] if form == 3 else len(payload)
        mbit = 0x80 if masked else 0
        if form == 0 and length < 126:
            out += bytes((h, mbit | length))
        elif form in (0, 1) and length < 65536:
            out += bytes((h, mbit | 126)) + struct.pack("!H", length)
        else:
            out += bytes((h, mbit | 127)) + struct.pack("!Q", length)
        if masked:
            out += KEY
            payload = _xor(payload, KEY)
        out += payload
    return bytes(out)


def _xor(data: bytes, key: bytes) -> bytes:
    # As two big integers: fast for the long payloads, and independent of wscore.frames.
    n = len(data)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def _reads(data: bytes, seed: int) -> list[bytes]:
    """`data` cut into reads: one read for seed 0, else sizes from 1 byte to 1 KiB drawn from `seed`."""
    if seed == 0 or not data:
        return [data]
    rng = random.Random(seed)
    reads = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 1 << rng.randint(0, 10))
        reads.append(data[pos : pos + size])
        pos += size
    return reads


def _header_value(raw: bytes) -> str:
    # A header value from the input: any byte but CR, LF and NUL (which would end or break the line).
    return raw.decode("latin-1").translate({13: " ", 10: " ", 0: " "}).strip()


def _mutated(head: bytes, edits: bytes) -> bytes:
    """`head` with bytes overwritten: `edits` is a count (mod 16) then (position, value) pairs."""
    if not edits:
        return head
    out = bytearray(head)
    count = edits[0] % 16
    for k in range(count):
        if 2 + 2 * k >= len(edits):
            break
        out[edits[1 + 2 * k] * len(out) // 256] = edits[2 + 2 * k]
    return bytes(out)


def _request(extensions: str | None) -> bytes:
    headers = [*UPGRADE_HEADERS, ("Sec-WebSocket-Protocol", "chat, superchat")]
    if extensions is not None:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    return request_bytes(headers)


def _response(extensions: str | None) -> bytes:
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", SAMPLE_ACCEPT)]
    if extensions is not None:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    return response_bytes(headers)


# -- the contract -----------------------------------------------------------------------------------


class _Watch:
    """Follows one connection through the reads and checks the contract after each."""

    def __init__(self, conn: Connection, outcome: Outcome) -> None:
        self.conn = conn
        self.outcome = outcome
        self.config = conn.config
        self.limit = conn.config.max_message_size
        self.order = _ORDER[conn.state]
        self.ended = False
        self.wire = bytearray()  # frames we wrote after the handshake
        self.fragment_total = 0
        self.close_events: list[int] = []

    def after_read(self, *, eof: bool = False) -> None:
        conn = self.conn
        check(_ORDER[conn.state] >= self.order, f"state went back to {conn.state}")
        self.order = _ORDER[conn.state]
        if not eof and conn.state is not State.CONNECTING and not self.outcome.handshake_failed:
            self.outcome.opened = True  # the handshake succeeded (the connection may be closed since)
        self._take_output()
        for event in conn.events():
            self._event(event.type, event.data, event.extra)
        if self.limit is not None and conn.state in (State.OPEN, State.CLOSING):
            held = len(conn._buf)  # one partial frame at most: what the limit allows plus a header
            check(held <= max(self.limit, 125) + _MAX_HEADER, f"{held} bytes buffered over the limit")

    def _take_output(self) -> None:
        out = self.conn.data_to_send()
        if out.startswith(b"HTTP/1.1 101 "):
            _head, sep, out = out.partition(b"\r\n\r\n")
            check(sep, "an incomplete 101 response")
        self.wire += out

    def _event(self, kind: WSMsgType, data: object, extra: object) -> None:
        conn = self.conn
        check(not self.ended, f"{kind.name} event after CLOSED")
        self.outcome.events.append(kind)
        if kind in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            check(kind is not WSMsgType.CONTINUATION or self.config.fragments, "CONTINUATION event")
            check(isinstance(data, str if kind is WSMsgType.TEXT else (str, bytes)), f"{kind.name} data")
            assert isinstance(data, (str, bytes))
            size = len(data.encode() if isinstance(data, str) else data)
            if self.config.fragments:
                check(isinstance(extra, bool), "a fragment event without its FIN flag")
                self.fragment_total += size
                size = self.fragment_total
                if extra:
                    self.fragment_total = 0
                    self.outcome.messages += 1
            else:
                check(extra is None, "a whole message with an `extra`")
                check(kind is not WSMsgType.BINARY or isinstance(data, bytes), "BINARY data is not bytes")
                self.outcome.messages += 1
            check(self.limit is None or size <= self.limit, f"a message of {size} bytes passed the limit")
        elif kind in (WSMsgType.PING, WSMsgType.PONG):
            check(not self.config.autoping, f"{kind.name} event with autoping")
            check(isinstance(data, bytes) and len(data) <= 125, f"{kind.name} payload")
        elif kind is WSMsgType.CLOSE:
            check(isinstance(data, int) and isinstance(extra, str), "CLOSE event's code and reason")
            assert isinstance(data, int)
            check(data == 1005 or 1000 <= data <= 4999, f"CLOSE event with code {data}")
            self.close_events.append(data)
        elif kind is WSMsgType.ERROR:
            check(isinstance(data, ProtocolError), f"ERROR event carrying {data!r}")
            assert isinstance(data, ProtocolError)
            check(data.code in PROTOCOL_CODES, f"protocol error with close code {data.code}")
            check(conn.exception is data, "exception is not the ERROR event's")
            check(conn.close_code == data.code, f"close_code {conn.close_code} for a {data.code} error")
            check(conn.closed and conn.close_transport, "a failed connection not CLOSED")
            self.outcome.error_code = data.code
        elif kind is WSMsgType.CLOSED:
            check(conn.closed, "CLOSED event in another state")
            check(conn.close_code is not None, "CLOSED without a close code")
            self.ended = True
        else:
            raise ContractViolation(f"unexpected event {kind!r}")

    def check_wire(self) -> None:
        """What we wrote after the handshake: pongs, then at most one close frame, which carries the
        code of our failure or echoes the peer's close."""
        frames = parse_frames(bytes(self.wire))
        closes = [f for f in frames if f.opcode == 0x8]
        check(len(closes) <= 1, "more than one close frame")
        check(not closes or frames[-1].opcode == 0x8, "a frame after our close frame")
        for frame in frames:
            check(frame.opcode in (0x8, 0xA), f"we wrote a frame with opcode {frame.opcode:#x}")
            check(frame.masked == self.conn.client, "a frame masked for the wrong role")
            check(frame.fin and not frame.rsv1, "a fragmented or compressed control frame")
            check(len(frame.payload) <= 125, "a control frame over 125 bytes")
        self.outcome.pongs = len(frames) - len(closes)
        code = None
        if closes and closes[0].payload:
            code = int.from_bytes(closes[0].payload[:2], "big")
        if self.outcome.error_code is not None:
            check(code == self.outcome.error_code, f"close frame with {code} for a {self.outcome.error_code}")
        elif self.close_events and self.config.autoclose:
            peer = self.close_events[0]
            check(code == (None if peer == 1005 else peer), f"close {peer} echoed as {code}")
        else:
            check(not closes, "a close frame nobody asked for")


def _config(b0: int, b1: int) -> WSConfig:
    return WSConfig(
        compress=DeflateOptions() if b0 & 0x10 else None,
        fragments=bool(b0 & 0x20),
        autoping=not b0 & 0x40,
        autoclose=not b0 & 0x80,
        max_message_size=LIMITS[b1 & 3],
    )


def run(data: bytes) -> Outcome:
    """Feed the input `data` describes to its target and check the contract (see the module's
    docstring); returns what happened. Raises `ContractViolation` if a rule is broken."""
    data = bytes(data)
    if len(data) < 3:
        data += bytes(3 - len(data))
    b0, b1, b2 = data[0], data[1], data[2]
    rest = data[3:]
    name = TARGETS[b0 & 7]
    outcome = Outcome(name)
    config = _config(b0, b1)
    conn: Connection
    if name.startswith("server"):
        conn = ServerConnection(subprotocols=_SUBPROTOCOLS, config=config, now=0.0)
        if name == "server-raw":
            stream = rest
        elif name == "server-mutated":
            count = 1 + 2 * (rest[0] % 16) if rest else 0
            stream = _mutated(_request("permessage-deflate"), rest[:count]) + rest[count:]
        else:
            offer, frames = _split_header_value(rest, default="permessage-deflate; client_max_window_bits")
            stream = _request(offer) + encode_records(frames, client=False)
    elif name.startswith("client"):
        conn = ClientConnection(
            "server.example.com", "/chat", subprotocols=_SUBPROTOCOLS, config=config, key=SAMPLE_KEY, now=0.0
        )
        conn.data_to_send()  # the request, on its way
        if name == "client-raw":
            stream = rest
        elif name == "client-mutated":
            count = 1 + 2 * (rest[0] % 16) if rest else 0
            ext = "permessage-deflate" if config.compress else None
            stream = _mutated(_response(ext), rest[:count]) + rest[count:]
        else:
            default = "permessage-deflate" if config.compress else None
            accepted, frames = _split_header_value(rest, default=default)
            stream = _response(accepted) + encode_records(frames, client=True)
    else:
        client = bool(b0 & 0x08)
        deflate = None
        if config.compress is not None:
            deflate = PerMessageDeflate(
                remote_no_context_takeover=bool(b2 & 1),
                local_no_context_takeover=bool(b2 & 2),
                remote_max_window_bits=8 + ((b2 >> 2) & 7),
            )
        conn = Connection(client, config, deflate=deflate, now=0.0)
        if name == "open-raw":
            stream = rest
        else:
            stream = encode_records(rest, client=client, window_bits=8 + ((b2 >> 2) & 7))
    _feed(conn, _reads(stream, b1 >> 2), outcome)
    return outcome


def _split_header_value(rest: bytes, *, default: str | None) -> tuple[str | None, bytes]:
    """The input's first byte is a length `L`: 0 keeps `default`, else the next `L` bytes are the value."""
    if not rest or rest[0] == 0:
        return default, rest[1:]
    size = rest[0]
    return _header_value(rest[1 : 1 + size]), rest[1 + size :]


def _feed(conn: Connection, reads: Sequence[bytes], outcome: Outcome) -> None:
    watch = _Watch(conn, outcome)
    now = 0.0
    for chunk in reads:
        now += 0.01
        before = conn.state
        try:
            conn.receive_data(chunk, now=now)
        except HandshakeError as exc:
            check(before is State.CONNECTING, f"HandshakeError in state {before}")
            _handshake_failed(conn, exc, outcome)
            # From now on the input is discarded; a few more reads must say so without a sound.
            watch.order = _ORDER[State.CLOSED]
            watch.ended = True
            conn.events()
            continue
        if isinstance(conn, ServerConnection) and conn.state is State.CONNECTING and conn.request is not None:
            try:
                conn.accept(now=now)
            except HandshakeError as exc:
                _handshake_failed(conn, exc, outcome)
                watch.ended = True
                continue
        watch.after_read()
    outcome.state = conn.state
    outcome.close_code = conn.close_code
    was_up = conn.state in (State.OPEN, State.CLOSING)
    try:
        conn.receive_eof()
    except HandshakeError as exc:
        check(isinstance(conn, ClientConnection), "a server's EOF raised HandshakeError")
        check(not outcome.handshake_failed and not was_up, "a client's EOF raised after the handshake")
        _handshake_failed(conn, exc, outcome)
        watch.ended = True
    check(conn.closed and conn.close_transport, "EOF did not close the connection")
    if was_up:
        check(conn.close_code == 1006, f"EOF while up gave close code {conn.close_code}")
    watch.after_read(eof=True)
    check(watch.ended or outcome.state is State.CONNECTING, "no CLOSED event")
    conn.handle_timer(now + 1000.0)
    watch.after_read(eof=True)
    if outcome.opened:
        watch.check_wire()
    try:
        conn.send_bytes(b"late")
    except ConnectionClosed:
        pass
    else:
        raise ContractViolation("send_bytes on a closed connection did not raise ConnectionClosed")


def _handshake_failed(conn: Connection, exc: HandshakeError, outcome: Outcome) -> None:
    outcome.handshake_failed = True
    outcome.handshake_status = exc.status
    check(conn.exception is exc, "exception is not the HandshakeError raised")
    check(conn.closed and conn.close_transport, "a failed handshake left the connection open")
    out = conn.data_to_send()
    if isinstance(conn, ServerConnection):
        check(exc.status is not None and 400 <= exc.status < 600, f"refused with status {exc.status}")
        check(out.startswith(f"HTTP/1.1 {exc.status} ".encode()), f"the refusal written is {out[:40]!r}")
    else:
        check(out == b"", "a client wrote after its handshake failed")
    check(conn.events() == [], "events from a failed handshake")


def seeds() -> list[bytes]:
    """A starting corpus that reaches every target's deep paths: valid handshakes, whole and fragmented
    messages, compressed ones, pings, closes and a few classic violations."""
    hello = bytes((0x81, 0x80, 5)) + b"hello"
    ping = bytes((0x89, 0, 3)) + b"abc"
    close = bytes((0x88, 0, 2)) + b"\x03\xe8"
    frag = bytes((0x01, 0x80, 3)) + b"he\xc3" + bytes((0x80, 0x80, 2)) + b"\xa9!"
    zipped = bytes((0xC1, 0x88, 6)) + b"zipped"
    big = bytes((0x82, 0, 255, 240, 0x61))  # 72,000 bytes: over the 70,000 limit
    lie = bytes((0x82, 0x03 | 0x30, 0))  # announces 2**62 + 5
    msb = bytes((0x82, 0x03 | 0x50, 0))  # announces 2**63
    bad_utf8 = bytes((0x81, 0, 2)) + b"\xff\xfe"
    bad_rsv = bytes((0xA2, 0, 1)) + b"x"
    records = [hello + ping + frag + close, zipped + hello, big, lie, msb, bad_utf8, bad_rsv, ping * 20]
    out = []
    for i, rec in enumerate(records):
        for target in (3, 4, 5):
            head = preamble(target, client=bool(i & 1), deflate=i == 1, cuts=i * 7 % 64)
            out.append(head + (rec if target == 3 else b"\0" + rec))
    request = _request("permessage-deflate")
    response = _response("permessage-deflate")
    out += [
        preamble(0, deflate=True) + request + encode_records(hello + close, client=False),
        preamble(0, cuts=5) + request + b"garbage",
        preamble(1, deflate=True) + response + encode_records(zipped + hello, client=True),
        preamble(1) + b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!",
        preamble(2) + encode_records(hello + close, client=False),
        preamble(2, client=True) + encode_records(ping + bad_utf8, client=True),
        preamble(6, deflate=True) + bytes((1, 3, 0x20)),
        preamble(7, deflate=True) + bytes((1, 200, 0x20)),
        preamble(3, fragments=True, autoping=False, autoclose=False, limit=3) + frag + ping + close + hello,
    ]
    return out
