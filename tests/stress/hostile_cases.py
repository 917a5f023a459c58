"""The hostile-client corpus (issue #13): what a raw-socket client sends to a server, and the answer
the documentation promises for it. One record per case; `test_hostile_corpus.py` runs the whole table
against every adapter's server.

Where the answers are documented:

- the opening handshake (README, "Errors"; `wscore/server.py`, `wscore/handshake.check_request`):
  malformed HTTP is answered 400 by the core (h11's hint: 431 for a head over `max_handshake_size`),
  a request that is not a valid upgrade 400, a wrong `Sec-WebSocket-Version` 426 with
  `Sec-WebSocket-Version: 13`, a head over 16 KiB or 128 fields 431, a body 400 (RFC 9112 §6.3);
  HEAD gets the headers and no body (RFC 9110 §9.3.2); the absolute-form target is accepted
  (RFC 9112 §3.2.2);
- the kit's server path (`adapters/_wscore_kit/server.py`): an Origin outside `origins=` is 403, an
  upgrade beyond `max_connections=` 503 with `Retry-After: 1`, a failing `process_request` 500 for that
  request only, logged once;
- the options table (README, "Options"): a handshake (TLS included) not done within `open_timeout` is
  dropped without an answer; a send blocked for `write_timeout` and a peer silent for
  `heartbeat + pong_timeout` are dropped (1006, `WSTimeoutError`);
- after the handshake (README, "Errors"; `wscore/connection.py`): every framing violation is _Fail the
  WebSocket Connection_ (RFC 6455 §7.1.7): a close frame with 1002, 1007 for invalid UTF-8, 1009 for a
  message over `max_msg_size`, then the server closes TCP.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
from dataclasses import dataclass

# A valid Sec-WebSocket-Key (RFC 6455 §4.1: 16 random bytes in base64), and the accept token for it.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# One masking key for every frame the hostile client sends (RFC 6455 §5.3: the client masks).
MASK = b"\x37\xfa\x21\x3d"

# The options of the servers the corpus runs against (timeouts short, so that slow cases stay short).
OPEN_TIMEOUT = 0.5
WRITE_TIMEOUT = 0.3
HEARTBEAT = 0.3
MAX_MSG_SIZE = 64 * 1024
MAX_CONNECTIONS = 6
GOOD_ORIGIN = "https://good.example"


# -- what the hostile client sends ----------------------------------------------------------------

UPGRADE_HEADERS = (
    ("Host", "127.0.0.1"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
)


def request(
    *,
    method: str = "GET",
    target: str = "/",
    version: str = "HTTP/1.1",
    drop: tuple[str, ...] = (),
    replace: tuple[tuple[str, str], ...] = (),
    add: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    end: bool = True,
) -> bytes:
    """An upgrade request (RFC 6455 §4.1) with one thing changed: the request line, headers dropped
    (by name), replaced (by name) or added, a body after the head, or no blank line (`end=False`)."""
    replaced = dict((name.lower(), value) for name, value in replace)
    headers = [
        (name, replaced.get(name.lower(), value))
        for name, value in UPGRADE_HEADERS
        if name.lower() not in {d.lower() for d in drop}
    ]
    lines = [f"{method} {target} {version}", *(f"{n}: {v}" for n, v in (*headers, *add))]
    head = "\r\n".join(lines) + "\r\n"
    return (head + "\r\n" if end else head).encode("latin-1") + body


def frame(
    b0: int,
    payload: bytes = b"",
    *,
    form: int | None = None,
    length: int | None = None,
    masked: bool = True,
) -> bytes:
    """A frame with first byte `b0` (FIN, RSV bits, opcode), built by hand so that it may break any rule
    of RFC 6455 §5.2: the payload length in the `form` chosen (7, 16 or 64 bits; by default the minimal
    one), a declared `length` other than the payload's, no mask."""
    n = len(payload) if length is None else length
    if form is None:
        form = 7 if n < 126 else 16 if n < 65536 else 64
    mask_bit = 0x80 if masked else 0
    if form == 7:
        head = bytes((b0, mask_bit | n))
    elif form == 16:
        head = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mask_bit | 127, n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))


def client_hello() -> bytes:
    """A real TLS ClientHello (the first flight of a client handshake, from the ssl module), for a
    client that starts TLS and then says nothing more."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):  # it has written its ClientHello, awaits the answer
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", "a TLS handshake record"
    return hello


def close_frame(payload: bytes) -> bytes:
    """A masked close frame with exactly `payload` (code and reason, or anything else)."""
    return frame(0x88, payload)


def close_code(code: int, reason: bytes = b"") -> bytes:
    return close_frame(struct.pack("!H", code) + reason)


# -- the answer the documentation promises --------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the bad connection must get.

    - `status`: an HTTP response with this status code (one response, parsed by h11), then the close;
      with `body=False` it has no body (the answer to HEAD); `header`: a header it must carry;
    - `close`: the upgrade is accepted (101), then the `echoed` texts, a close frame with this code and
      the TCP close;
    - `gone`: nothing can be answered (the client reset the connection): the server goes on, silent;
    - `dropped`: the connection is closed without an answer (a TLS alert at most) within `within`
      seconds of connecting (plus the scheduling allowance);
    - `aborted`: the upgrade is accepted, then the connection is dropped without a close frame, and
      the handler's connection ends with 1006 and a `WSTimeoutError`;
    - `logged`: a log line (at ERROR, with a traceback) that belongs to the documented answer.
    """

    status: int | None = None
    body: bool = True
    header: tuple[str, str] | None = None
    close: int | None = None
    echoed: tuple[str, ...] = ()
    gone: bool = False
    dropped: bool = False
    aborted: bool = False
    within: float | None = None
    logged: str | None = None
    or_reset: bool = False
    """The client may instead see a reset (it was still sending when the server gave up on it)."""

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}" + ("" if self.body else ", no body")
        if self.close is not None:
            return f"101, then close {self.close}"
        if self.aborted:
            return "101, then dropped (1006)"
        if self.gone:
            return "nothing (the client is gone), nothing logged"
        return f"dropped within {self.within} s"


def http(status: int, **kw: object) -> Answer:
    return Answer(status=status, **kw)  # type: ignore[arg-type]


def ws_close(code: int) -> Answer:
    return Answer(close=code)


@dataclass(frozen=True)
class Case:
    """One hostile client: `kind` says when it misbehaves.

    - "http": `send` is the whole conversation, in chunks `pace` seconds apart (a slowloris client
      dribbles), or `endless` header lines after `send` until the server gives up; with `reset=True`
      the client resets the connection right after sending;
    - "ws": a valid upgrade first (from the raw socket), then `send`;
    - "tls": `send` to the server's TLS port, raw (`send` may be a ClientHello); with `tls=True` the
      TLS handshake is completed first and `send` goes through it;
    - "flood": `MAX_CONNECTIONS` upgraded connections held open, then the request `send`;
    - "ping_flood": a valid upgrade, then `send` (pings) again and again, never reading;
    - "never_reads", "silent": a valid upgrade, then the behaviour (see `test_hostile_corpus.py`).
    """

    name: str
    input_class: str
    kind: str
    send: tuple[bytes, ...]
    answer: Answer
    pace: float = 0.0
    endless: bool = False
    reset: bool = False
    tls: bool = False
    server: str = "main"
    rfc: str = ""
    """Where the rule (and the answer) is written: an RFC section or the option that documents it."""


REFUSED = http(400)
VERSION = http(426, header=("sec-websocket-version", "13"))
TOO_LARGE = http(431)
PROTOCOL = ws_close(1002)

# A valid request, 169 bytes: dribbled a byte every 20 ms it would take 3.4 s.
_VALID = request()

# One case a line or two, as a table reads (the formatter would give each field a line of its own).
# fmt: off
CASES: list[Case] = [
    # -- the request line -------------------------------------------------------------------------
    Case("head", "HEAD / OPTIONS / POST", "http", (request(method="HEAD"),), http(400, body=False),
         rfc="RFC 6455 §4.2.1 (GET); RFC 9110 §9.3.2 (HEAD: no body)"),
    Case("options", "HEAD / OPTIONS / POST", "http", (request(method="OPTIONS"),), REFUSED,
         rfc="RFC 6455 §4.2.1"),
    Case("options_asterisk", "HEAD / OPTIONS / POST", "http", (request(method="OPTIONS", target="*"),),
         REFUSED, rfc="RFC 6455 §4.2.1"),
    Case("post_with_body", "HEAD / OPTIONS / POST", "http",
         (request(method="POST", add=(("Content-Length", "5"),), body=b"hello"),), REFUSED,
         rfc="RFC 6455 §4.2.1"),
    Case("get_with_body", "request body", "http",
         (request(add=(("Content-Length", "5"),), body=b"hello"),), REFUSED, rfc="RFC 6455 §4.1"),
    Case("chunked", "request body", "http",
         (request(add=(("Transfer-Encoding", "chunked"),), body=b"5\r\nhello\r\n0\r\n\r\n"),), REFUSED,
         rfc="RFC 6455 §4.1"),
    Case("chunked_and_length", "request body", "http",
         (request(add=(("Transfer-Encoding", "chunked"), ("Content-Length", "5")), body=b"0\r\n\r\n"),),
         REFUSED, rfc="RFC 9112 §6.3"),
    Case("unknown_transfer_coding", "request body", "http",
         (request(add=(("Transfer-Encoding", "gzip"),)),), http(501),
         rfc="RFC 9112 §6.1: a transfer coding the server does not understand is a 501"),
    Case("absolute_form", "request target", "http",
         (request(target="http://127.0.0.1/chat") + close_code(1000),), ws_close(1000),
         rfc="RFC 9112 §3.2.2: a server MUST accept the absolute-form"),
    Case("frames_before_101", "early frames", "http",
         (request() + frame(0x81, b"early") + close_code(1000),), Answer(close=1000, echoed=("early",)),
         rfc="frames sent with the request are kept for after the 101; the close is answered when the"
             " handler reads it, so the echo of the message before it goes first (RFC 6455 §5.5.1)"),
    Case("bad_frame_before_101", "early frames", "http", (request() + frame(0x83, b"x"),), ws_close(1002),
         rfc="RFC 6455 §5.2, checked once the 101 is out"),
    Case("reset_after_request", "resets", "http", (request(),), Answer(gone=True), reset=True,
         rfc="a lost connection is the client's, not an error"),
    Case("reset_after_bad_request", "resets", "http", (request(method="POST"),), Answer(gone=True),
         reset=True, rfc="a lost connection is the client's, not an error"),
    Case("asterisk_target", "request target", "http", (request(target="*"),), REFUSED, rfc="RFC 9112 §3.2"),
    Case("relative_target", "request target", "http", (request(target="chat"),), REFUSED,
         rfc="RFC 9112 §3.2"),
    Case("http_1_0", "bad versions", "http", (request(version="HTTP/1.0"),), REFUSED, rfc="RFC 6455 §4.1"),
    Case("http_2_0", "bad versions", "http", (request(version="HTTP/2.0"),), REFUSED, rfc="RFC 6455 §4.1"),
    Case("http_garbage_version", "bad versions", "http", (request(version="HTTP/x.y"),), REFUSED,
         rfc="RFC 9112 §2.3"),
    Case("ws_version_8", "bad versions", "http", (request(replace=(("Sec-WebSocket-Version", "8"),)),),
         VERSION, rfc="RFC 6455 §4.2.2"),
    Case("ws_version_missing", "bad versions", "http", (request(drop=("Sec-WebSocket-Version",)),),
         VERSION, rfc="RFC 6455 §4.2.2"),
    Case("ws_versions_two", "bad versions", "http", (request(add=(("Sec-WebSocket-Version", "13"),)),),
         VERSION, rfc="RFC 6455 §4.2.2 (one version: '13, 13' is not 13)"),
    # -- the headers --------------------------------------------------------------------------------
    Case("two_keys", "keys and hosts", "http", (request(add=(("Sec-WebSocket-Key", KEY),)),), REFUSED,
         rfc="RFC 6455 §4.2.1"),
    Case("key_missing", "keys and hosts", "http", (request(drop=("Sec-WebSocket-Key",)),), REFUSED,
         rfc="RFC 6455 §4.2.1"),
    Case("key_short", "keys and hosts", "http",
         (request(replace=(("Sec-WebSocket-Key", "c2hvcnQ="),)),), REFUSED, rfc="RFC 6455 §4.2.1"),
    Case("key_not_base64", "keys and hosts", "http",
         (request(replace=(("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!=="),)),), REFUSED,
         rfc="RFC 6455 §4.2.1"),
    Case("host_missing", "keys and hosts", "http", (request(drop=("Host",)),), REFUSED,
         rfc="RFC 9112 §3.2"),
    Case("two_hosts", "keys and hosts", "http", (request(add=(("Host", "other.example"),)),), REFUSED,
         rfc="RFC 9112 §3.2"),
    Case("bad_host", "keys and hosts", "http", (request(replace=(("Host", "bad host/../x"),)),), REFUSED,
         rfc="RFC 9112 §3.2"),
    Case("upgrade_missing", "upgrade headers", "http", (request(drop=("Upgrade",)),), REFUSED,
         rfc="RFC 6455 §4.2.1"),
    Case("upgrade_h2c", "upgrade headers", "http", (request(replace=(("Upgrade", "h2c"),)),), REFUSED,
         rfc="RFC 6455 §4.2.1"),
    Case("connection_keep_alive", "upgrade headers", "http",
         (request(replace=(("Connection", "keep-alive"),)),), REFUSED, rfc="RFC 6455 §4.2.1"),
    Case("nul_in_header", "malformed HTTP", "http", (request(add=(("X-Nul", "a\0b"),)),), REFUSED,
         rfc="RFC 9110 §5.5"),
    Case("space_before_colon", "malformed HTTP", "http", (request(add=(("X-Bad ", "v"),)),), REFUSED,
         rfc="RFC 9112 §5.1"),
    Case("binary_garbage", "malformed HTTP", "http", (bytes(range(256)) + b"\r\n\r\n",), REFUSED,
         rfc="RFC 9112 §3"),
    Case("bad_origin", "origin", "http", (request(add=(("Origin", "https://evil.example"),)),), http(403),
         rfc="RFC 6455 §10.2 (origins=)"),
    Case("process_request_raises", "failing callback", "http", (request(target="/boom"),),
         http(500, logged="answering GET /boom failed"), rfc="kit: a failing callback is a 500, logged once"),
    # -- oversized and endless heads ----------------------------------------------------------------
    Case("one_32KiB_header", "oversized and endless headers", "http",
         (request(add=(("X-Big", "b" * 32 * 1024),)),), TOO_LARGE, rfc="RFC 6585 §5 (max_handshake_size)"),
    Case("200_headers", "oversized and endless headers", "http",
         (request(add=tuple((f"X-{i}", "v") for i in range(200))),), TOO_LARGE,
         rfc="RFC 6585 §5 (max_headers)"),
    Case("32KiB_target", "oversized and endless headers", "http", (request(target="/" + "t" * 32 * 1024),),
         TOO_LARGE, rfc="RFC 6585 §5 (max_handshake_size)"),
    Case("endless_headers", "oversized and endless headers", "http", (request(end=False),),
         http(431, or_reset=True), endless=True, rfc="RFC 6585 §5 (max_handshake_size)"),
    # -- slow and silent ------------------------------------------------------------------------------
    Case("slowloris", "slowloris", "http", tuple(bytes([b]) for b in _VALID),
         Answer(dropped=True, within=OPEN_TIMEOUT),
         pace=0.02, rfc="open_timeout"),
    Case("half_then_silence", "slowloris", "http", (_VALID[: len(_VALID) // 2],),
         Answer(dropped=True, within=OPEN_TIMEOUT), rfc="open_timeout"),
    Case("connect_then_silence", "slowloris", "http", (), Answer(dropped=True, within=OPEN_TIMEOUT),
         rfc="open_timeout"),
    Case("connection_flood", "connection flood", "flood", (_VALID,),
         http(503, header=("retry-after", "1")), rfc="max_connections="),
    # -- TLS ------------------------------------------------------------------------------------------
    Case("tls_garbage", "TLS garbage and TLS never finished", "tls", (_VALID,),
         Answer(dropped=True, within=OPEN_TIMEOUT), server="tls", rfc="RFC 8446 §5 (not a TLS record)"),
    Case("tls_random_bytes", "TLS garbage and TLS never finished", "tls",
         (bytes([0x16, 0x03, 0x01, 0x00, 0x20]) + bytes(range(32)),),
         Answer(dropped=True, within=OPEN_TIMEOUT), server="tls", rfc="RFC 8446 §4.1.2 (a bad ClientHello)"),
    Case("tls_connect_then_silence", "TLS garbage and TLS never finished", "tls", (),
         Answer(dropped=True, within=OPEN_TIMEOUT), server="tls", rfc="open_timeout bounds TLS too"),
    Case("tls_hello_then_reset", "TLS garbage and TLS never finished", "tls", (client_hello(),),
         Answer(gone=True), reset=True, server="tls", rfc="a lost connection is the client's"),
    Case("tls_hello_then_silence", "TLS garbage and TLS never finished", "tls", (client_hello(),),
         Answer(dropped=True, within=OPEN_TIMEOUT), server="tls", rfc="open_timeout bounds TLS too"),
    Case("tls_then_bad_version", "TLS garbage and TLS never finished", "tls",
         (request(replace=(("Sec-WebSocket-Version", "8"),)),), VERSION, tls=True, server="tls",
         rfc="RFC 6455 §4.2.2, over TLS"),
    # -- after the handshake: framing (RFC 6455 §5) ---------------------------------------------------
    Case("unmasked_frame", "masking", "ws", (frame(0x81, b"hi", masked=False),), PROTOCOL,
         rfc="RFC 6455 §5.1: a client MUST mask"),
    *(
        Case(f"reserved_opcode_{op:#x}", "reserved opcodes", "ws", (frame(0x80 | op, b"x"),), PROTOCOL,
             rfc="RFC 6455 §5.2")
        for op in (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
    ),
    *(
        Case(f"rsv{n}_without_extension", "RSV bits", "ws", (frame(0x81 | bit, b"x"),), PROTOCOL,
             rfc="RFC 6455 §5.2: MUST be 0 unless an extension is negotiated")
        for n, bit in ((1, 0x40), (2, 0x20), (3, 0x10))
    ),
    Case("non_minimal_16bit", "non-minimal lengths", "ws", (frame(0x82, b"x" * 5, form=16),), PROTOCOL,
         rfc="RFC 6455 §5.2: the minimal number of bytes MUST be used"),
    Case("non_minimal_64bit", "non-minimal lengths", "ws", (frame(0x82, b"x" * 200, form=64),), PROTOCOL,
         rfc="RFC 6455 §5.2"),
    Case("non_minimal_control", "non-minimal lengths", "ws", (frame(0x89, b"x", form=16),), PROTOCOL,
         rfc="RFC 6455 §5.2, §5.5"),
    Case("length_top_bit", "non-minimal lengths", "ws", (frame(0x82, form=64, length=(1 << 63) + 5),),
         PROTOCOL, rfc="RFC 6455 §5.2: the most significant bit MUST be 0"),
    Case("fragmented_ping", "control frames", "ws", (frame(0x09, b"x"),), PROTOCOL, rfc="RFC 6455 §5.5"),
    Case("ping_over_125", "control frames", "ws", (frame(0x89, b"p" * 126),), PROTOCOL, rfc="RFC 6455 §5.5"),
    Case("close_over_125", "control frames", "ws", (close_frame(b"\x03\xe8" + b"r" * 124),), PROTOCOL,
         rfc="RFC 6455 §5.5"),
    Case("continuation_without_start", "fragmentation", "ws", (frame(0x80, b"x"),), PROTOCOL,
         rfc="RFC 6455 §5.4"),
    Case("new_message_inside_fragmented", "fragmentation", "ws", (frame(0x01, b"a"), frame(0x81, b"b")),
         PROTOCOL, rfc="RFC 6455 §5.4"),
    Case("invalid_utf8_text", "invalid UTF-8", "ws", (frame(0x81, b"\xff\xfe"),), ws_close(1007),
         rfc="RFC 6455 §8.1"),
    Case("invalid_utf8_across_fragments", "invalid UTF-8", "ws",
         (frame(0x01, b"caf\xc3"), frame(0x80, b"\x28")), ws_close(1007), rfc="RFC 6455 §8.1"),
    Case("surrogate_in_text", "invalid UTF-8", "ws", (frame(0x81, b"\xed\xa0\x80"),), ws_close(1007),
         rfc="RFC 6455 §8.1 (RFC 3629 §3: no surrogates)"),
    Case("invalid_utf8_close_reason", "invalid UTF-8", "ws", (close_code(1000, b"\xff"),), ws_close(1007),
         rfc="RFC 6455 §5.5.1"),
    *(
        Case(f"close_code_{code}", "invalid close codes", "ws", (close_code(code),), PROTOCOL,
             rfc="RFC 6455 §7.4")
        for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000)
    ),
    Case("close_payload_1_byte", "invalid close codes", "ws", (close_frame(b"\x03"),), PROTOCOL,
         rfc="RFC 6455 §5.5.1"),
    Case("oversize_message", "oversize messages", "ws", (frame(0x82, b"o" * (MAX_MSG_SIZE + 1)),),
         ws_close(1009), rfc="RFC 6455 §7.4.1 (max_msg_size)"),
    Case("oversize_announced", "oversize messages", "ws", (frame(0x82, form=64, length=1 << 40),),
         ws_close(1009), rfc="RFC 6455 §7.4.1: refused on the header, nothing buffered"),
    Case("oversize_fragmented", "oversize messages", "ws",
         (frame(0x02, b"o" * (MAX_MSG_SIZE // 2)), frame(0x00, b"o" * (MAX_MSG_SIZE // 2)),
          frame(0x80, b"o")),
         ws_close(1009), rfc="RFC 6455 §7.4.1 (max_msg_size, the whole message)"),
    # -- after the handshake: peers that stop ---------------------------------------------------------
    Case("never_reads", "a peer that never reads", "never_reads", (),
         Answer(aborted=True, within=WRITE_TIMEOUT), rfc="write_timeout"),
    Case("ping_flood", "a peer that never reads", "ping_flood", (frame(0x89, b"p" * 125) * 512,),
         Answer(aborted=True, within=WRITE_TIMEOUT),
         rfc="RFC 6455 §5.5.2 (a pong per ping): reading stops while pongs are behind; write_timeout"),
    Case("silent_peer", "a silent peer", "silent", (), Answer(aborted=True, within=1.5 * HEARTBEAT),
         server="heartbeat", rfc="heartbeat + pong_timeout"),
]
# fmt: on
