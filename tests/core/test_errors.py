"""wscore/errors.py: one hierarchy, and messages that name the rule that broke."""

from __future__ import annotations

import pytest

from _wscore_kit.api import (
    WSTimeout,
    check_http_response,
    close_args,
    compress_flag,
    compress_options,
    control_payload,
    decode_json,
    expect_bytes,
    expect_str,
    header_pairs,
    make_config,
    parse_url,
    text_or_bytes,
)
from wscore import (
    ConnectionClosed,
    DeflateOptions,
    HandshakeError,
    InvalidStateError,
    MessageTooBig,
    PerMessageDeflate,
    ProtocolError,
    ServerConnection,
    WSConfig,
    WSError,
    WSMessage,
    WSMessageTypeError,
    WSMsgType,
    WSTimeoutError,
)

from .helpers import open_connection, peer_frame, request_bytes, with_headers


class TestHierarchy:
    """Every error is a `WSError`; the ones with a standard meaning are also the standard class, so
    `except TimeoutError` / `except TypeError` / `except RuntimeError` work as users expect."""

    @pytest.mark.parametrize(
        ("cls", "bases"),
        [
            (HandshakeError, (WSError,)),
            (ProtocolError, (WSError,)),
            (MessageTooBig, (ProtocolError, WSError)),
            (ConnectionClosed, (WSError,)),
            (InvalidStateError, (WSError, RuntimeError)),
            (WSMessageTypeError, (WSError, TypeError)),
            (WSTimeoutError, (WSError, TimeoutError)),
        ],
    )
    def test_bases(self, cls: type[Exception], bases: tuple[type[Exception], ...]) -> None:
        assert all(issubclass(cls, base) for base in bases)

    def test_handshake_error_carries_the_response(self) -> None:
        exc = HandshakeError("refused", status=403, headers=[("x", "y")], body=b"no")
        assert (exc.reason, exc.status, exc.headers, exc.body) == ("refused", 403, [("x", "y")], b"no")
        assert str(exc) == "refused (HTTP 403)"
        assert str(HandshakeError("no status")) == "no status"

    def test_protocol_error_codes(self) -> None:
        assert ProtocolError("x").code == 1002
        assert ProtocolError("x", 1007).code == 1007
        assert MessageTooBig("x").code == 1009

    def test_connection_closed_messages(self) -> None:
        assert str(ConnectionClosed(1000)) == "connection closed: code 1000"
        assert str(ConnectionClosed(1001, "bye")) == "connection closed: code 1001, reason 'bye'"
        assert str(ConnectionClosed(None)) == "connection closed"
        assert ConnectionClosed(1006, "dropped").reason == "dropped"


def violation(data_for: str) -> tuple[int, str]:
    """Feed one violation to a server connection; its close code and exception text."""
    conn = open_connection(client=False, config=WSConfig(max_message_size=10), deflate=None)
    frames = {
        "reserved opcode": peer_frame(conn, 0x3),
        "rsv": peer_frame(conn, 0x1, rsv2=True),
        "unmasked": b"\x81\x00",
        "long control": peer_frame(conn, 0x9, b"x" * 126),
        "fragmented control": peer_frame(conn, 0x9, fin=False),
        "top bit": peer_frame(conn, 0x2, length=1 << 63, length_form=64),
        "stray continuation": peer_frame(conn, 0x0, b"x"),
        "interleaved": peer_frame(conn, 0x1, b"a", fin=False) + peer_frame(conn, 0x1, b"b"),
        "utf8": peer_frame(conn, 0x1, b"\xff"),
        "too big": peer_frame(conn, 0x2, b"x" * 11),
        "close code": peer_frame(conn, 0x8, b"\x03\xed"),
        "close 1 byte": peer_frame(conn, 0x8, b"\x03"),
        "close reason": peer_frame(conn, 0x8, b"\x03\xe8\xff"),
    }
    conn.receive_data(frames[data_for])
    assert isinstance(conn.exception, ProtocolError)
    (error,) = [e for e in conn.events() if e.type is WSMsgType.ERROR]
    assert error.data is conn.exception
    return conn.exception.code, str(conn.exception)


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("reserved opcode", 1002, "reserved opcode 0x3 (RFC 6455 §5.2)"),
        ("rsv", 1002, "without a negotiated extension (RFC 6455 §5.2)"),
        ("unmasked", 1002, "unmasked frame from a client (RFC 6455 §5.1)"),
        ("long control", 1002, "over 125 bytes (RFC 6455 §5.5) or not minimally encoded (§5.2)"),
        ("fragmented control", 1002, "fragmented control frame (RFC 6455 §5.5)"),
        ("top bit", 1002, "most significant bit set (RFC 6455 §5.2)"),
        ("stray continuation", 1002, "without a message to continue (RFC 6455 §5.4)"),
        ("interleaved", 1002, "inside a fragmented message (RFC 6455 §5.4)"),
        ("utf8", 1007, "not valid UTF-8 (RFC 6455 §8.1)"),
        ("too big", 1009, "frame of 11 bytes is over the limit of 10"),
        ("close code", 1002, "invalid close code 1005 (RFC 6455 §7.4)"),
        ("close 1 byte", 1002, "(RFC 6455 §5.5.1)"),
        ("close reason", 1007, "not valid UTF-8 (RFC 6455 §5.5.1)"),
    ],
)
def test_each_violation_names_its_rule_and_code(case: str, code: int, words: str) -> None:
    """One error path: every violation becomes an ERROR event carrying a `ProtocolError` whose code
    is the close code sent and whose message names the rule."""
    got_code, text = violation(case)
    assert got_code == code
    assert words in text


def test_handshake_errors_name_the_rule() -> None:
    server = ServerConnection()
    server.receive_data(request_bytes(with_headers({"Sec-WebSocket-Version": "12"})))
    with pytest.raises(HandshakeError, match=r"Sec-WebSocket-Version '12' is not 13 \(RFC 6455 §4.2.2\)"):
        server.accept()


def test_deflate_errors_name_the_rule() -> None:
    conn = open_connection(client=True, deflate=PerMessageDeflate())
    conn.receive_data(peer_frame(conn, 0x1, b"\xff\xff", rsv1=True))
    assert "(RFC 7692 §7.2.2)" in str(conn.exception)


class TestConfigValidation:
    """WSConfig and DeflateOptions refuse values that make no sense, saying which."""

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"heartbeat": 0}, "heartbeat must be positive"),
            ({"pong_timeout": -1}, "pong_timeout must be positive"),
            ({"close_timeout": 0}, "close_timeout"),
            ({"open_timeout": -5}, "open_timeout"),
            ({"max_message_size": -1}, "max_message_size must be non-negative"),
            ({"max_frame_size": -1}, "max_frame_size"),
            ({"max_handshake_size": 100}, "at least 1024"),
            ({"max_headers": 2}, "at least 8"),
        ],
    )
    def test_ws_config(self, kwargs: dict[str, float], words: str) -> None:
        with pytest.raises(ValueError, match=words):
            WSConfig(**kwargs)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"server_max_window_bits": 7}, "between 8 and 15"),
            ({"client_max_window_bits": 16}, "between 8 and 15"),
            ({"level": 10}, "level"),
            ({"mem_level": 0}, "mem_level"),
        ],
    )
    def test_deflate_options(self, kwargs: dict[str, int], words: str) -> None:
        with pytest.raises(ValueError, match=words):
            DeflateOptions(**kwargs)  # type: ignore[arg-type]

    def test_pong_timeout_defaults_to_half_the_heartbeat(self) -> None:
        assert WSConfig(heartbeat=10).effective_pong_timeout == 5
        assert WSConfig(heartbeat=10, pong_timeout=1).effective_pong_timeout == 1
        assert WSConfig().effective_pong_timeout is None


class TestAdapterHelpers:
    """wscore/adapter.py: what every adapter shares (URL parsing, options, typed receives)."""

    @pytest.mark.parametrize(
        ("url", "parts", "host_header"),
        [
            ("ws://example.com", (False, "example.com", 80, "/"), "example.com"),
            ("wss://example.com/a/b?c=d", (True, "example.com", 443, "/a/b?c=d"), "example.com"),
            ("ws://example.com:8080/x", (False, "example.com", 8080, "/x"), "example.com:8080"),
            ("wss://example.com:443/", (True, "example.com", 443, "/"), "example.com"),
            ("ws://[::1]:9000/", (False, "::1", 9000, "/"), "[::1]:9000"),
            ("ws://127.0.0.1?q", (False, "127.0.0.1", 80, "/?q"), "127.0.0.1"),
        ],
    )
    def test_parse_url(self, url: str, parts: tuple[bool, str, int, str], host_header: str) -> None:
        parsed = parse_url(url)
        assert (parsed.secure, parsed.host, parsed.port, parsed.target) == parts
        assert parsed.host_header == host_header

    @pytest.mark.parametrize(
        ("url", "words"),
        [
            ("http://example.com", "scheme must be ws or wss"),
            ("ws://example.com/#frag", "fragment"),
            ("ws:///path", "no host"),
            ("ws://example.com:99999/", "invalid port"),
        ],
    )
    def test_parse_url_errors(self, url: str, words: str) -> None:
        with pytest.raises(ValueError, match=words):
            parse_url(url)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, None),
            (False, None),
            (0, None),
            (True, DeflateOptions()),
            (15, DeflateOptions()),
            (10, DeflateOptions(server_max_window_bits=10)),
            (DeflateOptions(level=1), DeflateOptions(level=1)),
        ],
    )
    def test_compress_options(self, value: bool | int | DeflateOptions | None, expected: object) -> None:
        assert compress_options(value) == expected

    @pytest.mark.parametrize("value", [7, 16, -1])
    def test_compress_options_errors(self, value: int) -> None:
        with pytest.raises(ValueError, match="compress must be"):
            compress_options(value)

    def test_make_config(self) -> None:
        config = make_config(
            heartbeat=0, timeout=WSTimeout(receive=1, close=0), max_msg_size=0, compress=True, fragments=True
        )
        assert config.heartbeat is None
        assert config.close_timeout is None
        assert config.max_message_size is None  # aiohttp: 0 means no limit
        assert config.compress == DeflateOptions()
        assert config.fragments
        default = make_config()
        assert (default.close_timeout, default.max_message_size, default.compress) == (10.0, 4 << 20, None)

    def test_text_or_bytes(self) -> None:
        text_or_bytes("x", "str")
        for ok in (b"x", bytearray(b"x"), memoryview(b"x")):
            text_or_bytes(ok, "bytes")
        with pytest.raises(TypeError, match="must be str, not bytes"):
            text_or_bytes(b"x", "str")
        with pytest.raises(TypeError, match="must be bytes-like, not str"):
            text_or_bytes("x", "bytes")

    def test_typed_receives(self) -> None:
        text = WSMessage(WSMsgType.TEXT, '{"a": 1}', None)
        binary = WSMessage(WSMsgType.BINARY, b"\x00", None)
        assert expect_str(text) == '{"a": 1}'
        assert expect_bytes(binary) == b"\x00"
        assert decode_json(text) == {"a": 1}
        assert text.json() == {"a": 1}
        # aiohttp 3.14's wording, to the letter (code that matches on it keeps working).
        with pytest.raises(WSMessageTypeError) as not_text:
            expect_str(binary)
        assert str(not_text.value) == "Received message 2:b'\\x00' is not WSMsgType.TEXT"
        with pytest.raises(WSMessageTypeError) as not_binary:
            expect_bytes(text)
        assert str(not_binary.value) == """Received message 1:'{"a": 1}' is not WSMsgType.BINARY"""
        with pytest.raises(WSMessageTypeError):
            decode_json(binary)

    @pytest.mark.parametrize(
        ("value", "expected"), [(None, None), (False, False), (0, False), (True, True), (15, True), (9, True)]
    )
    def test_compress_flag(self, value: bool | int | None, expected: bool | None) -> None:
        assert compress_flag(value) is expected

    def test_compress_flag_type(self) -> None:
        with pytest.raises(TypeError, match="compress must be"):
            compress_flag("yes")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("data", "expected"),
        [(b"x", b"x"), ("é", "é".encode()), (bytearray(b"y"), b"y"), (memoryview(b"z"), b"z")],
    )
    def test_control_payload(self, data: object, expected: bytes) -> None:
        assert control_payload(data) == expected

    def test_control_payload_errors(self) -> None:
        with pytest.raises(TypeError, match="must be bytes or str, not int"):
            control_payload(5)
        with pytest.raises(ValueError, match="over 125 bytes"):
            control_payload("x" * 126)

    @pytest.mark.parametrize(
        ("code", "message", "expected"),
        [
            (1000, b"", (1000, "")),
            (4000, "bye", (4000, "bye")),
            (None, b"", (None, "")),
            (1001, "é".encode(), (1001, "é")),
        ],
    )
    def test_close_args(self, code: object, message: object, expected: tuple[int | None, str]) -> None:
        assert close_args(code, message) == expected

    @pytest.mark.parametrize(
        ("code", "message", "error", "words"),
        [
            ("1000", b"", TypeError, "close code must be an int"),
            (True, b"", TypeError, "close code must be an int"),
            (1000, 5, TypeError, "close message must be bytes or str"),
            (1000, b"\xff", ValueError, "valid UTF-8"),
            (1005, b"", ValueError, "may not be sent"),
            (1000, "x" * 124, ValueError, "123 bytes"),
            (None, "why", ValueError, "needs a close code"),
        ],
    )
    def test_close_args_errors(
        self, code: object, message: object, error: type[Exception], words: str
    ) -> None:
        with pytest.raises(error, match=words):
            close_args(code, message)

    def test_header_pairs(self) -> None:
        assert header_pairs(None) == []
        assert header_pairs({"A": "1"}) == [("A", "1")]
        assert header_pairs([("B", "2")]) == [("B", "2")]

    def test_check_http_response(self) -> None:
        assert check_http_response((200, {"A": "1"}, "ok")) == (200, [("A", "1")], b"ok")
        assert check_http_response((404, [], bytearray(b"no"))) == (404, [], b"no")
        cases: list[tuple[object, str]] = [
            ((200, []), "must return None or"),
            ("200", "must return None or"),
            (("200", [], b""), "status must be an int"),
            ((200, [], 5), "body must be bytes or str"),
        ]
        for bad, words in cases:
            with pytest.raises(TypeError, match=words):
                check_http_response(bad)
