"""RFC 6455 §4.1: the client's side of the opening handshake (and RFC 7692 §5/§7.1 for the response)."""

from __future__ import annotations

import base64

import h11
import pytest

from wscore import (
    ClientConnection,
    DeflateOptions,
    HandshakeError,
    InvalidStateError,
    ServerConnection,
    State,
    WSConfig,
    WSMsgType,
    WSTimeoutError,
)

from .helpers import SAMPLE_ACCEPT, SAMPLE_KEY, FakeClock, raw_frame, request_bytes, response_bytes

OK_101 = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", SAMPLE_ACCEPT)]


def client(**kwargs: object) -> ClientConnection:
    """A client whose key is RFC 6455's sample, with its request already taken."""
    conn = ClientConnection("server.example.com", "/chat", key=SAMPLE_KEY, now=0.0, **kwargs)  # type: ignore[arg-type]
    conn.data_to_send()
    return conn


def parsed_request(conn: ClientConnection) -> h11.Request:
    """The client's upgrade request as h11's server side reads it."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(conn.data_to_send())
    event = server.next_event()
    assert isinstance(event, h11.Request)
    assert isinstance(server.next_event(), h11.EndOfMessage)
    return event


def header(request: h11.Request, name: str) -> str | None:
    values = [v.decode() for k, v in request.headers if k == name.lower().encode()]
    return ", ".join(values) if values else None


class TestTheClientsRequest:
    """§4.1: "The handshake MUST be a valid HTTP request as specified by [RFC2616]. The method of the
    request MUST be GET, and the HTTP version MUST be at least 1.1." and the fields of items 4-12."""

    def test_the_request_has_every_required_field(self) -> None:
        conn = ClientConnection("server.example.com:8080", "/chat?room=1")
        assert conn.state is State.CONNECTING
        request = parsed_request(conn)
        assert (request.method, request.target, request.http_version) == (b"GET", b"/chat?room=1", b"1.1")
        assert header(request, "Host") == "server.example.com:8080"
        assert header(request, "Upgrade") == "websocket"
        assert header(request, "Connection") == "Upgrade"
        assert header(request, "Sec-WebSocket-Version") == "13"
        assert header(request, "Origin") is None
        assert header(request, "Sec-WebSocket-Protocol") is None
        assert header(request, "Sec-WebSocket-Extensions") is None

    def test_the_key_is_16_fresh_random_bytes(self) -> None:
        """§4.1 item 7: "a nonce consisting of a randomly selected 16-byte value that has been
        base64-encoded ... MUST be selected randomly for each connection"."""
        keys = {header(parsed_request(ClientConnection("h")), "Sec-WebSocket-Key") for _ in range(20)}
        assert len(keys) == 20
        for key in keys:
            assert key is not None
            assert len(base64.b64decode(key, validate=True)) == 16

    def test_origin_subprotocols_extensions_and_extra_headers(self) -> None:
        conn = ClientConnection(
            "h",
            origin="http://example.com",
            subprotocols=["chat", "superchat"],
            extra_headers=[("X-Token", "abc"), (b"X-Bytes", b"def")],
            config=WSConfig(
                compress=DeflateOptions(server_max_window_bits=10, client_no_context_takeover=True)
            ),
        )
        request = parsed_request(conn)
        assert header(request, "Origin") == "http://example.com"
        assert header(request, "Sec-WebSocket-Protocol") == "chat, superchat"
        assert header(request, "Sec-WebSocket-Extensions") == (
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; "
            "client_max_window_bits"
        )
        assert header(request, "X-Token") == "abc"
        assert header(request, "X-Bytes") == "def"
        assert ("X-Token", "abc") in conn.request_headers

    @pytest.mark.parametrize(
        ("options", "offer"),
        [
            (DeflateOptions(), "permessage-deflate; client_max_window_bits"),
            (
                DeflateOptions(server_no_context_takeover=True, client_max_window_bits=12),
                "permessage-deflate; server_no_context_takeover; client_max_window_bits=12",
            ),
        ],
    )
    def test_the_deflate_offer(self, options: DeflateOptions, offer: str) -> None:
        """RFC 7692 §7.1: the offer names the parameters we want; client_max_window_bits without a
        value says we accept a limit on our window (§7.1.2.2)."""
        request = parsed_request(ClientConnection("h", config=WSConfig(compress=options)))
        assert header(request, "Sec-WebSocket-Extensions") == offer

    @pytest.mark.parametrize(
        ("host", "target", "headers"),
        [
            ("h", "/", [("Bad Name", "x")]),
            ("h", "/", [("X-Evil", "a\r\nCookie: stolen")]),  # no request splitting either
            ("h\r\nX: y", "/", []),
            ("h", "/a b", []),
        ],
    )
    def test_invalid_request_parts_are_a_value_error(
        self, host: str, target: str, headers: list[tuple[str, str]]
    ) -> None:
        with pytest.raises(ValueError, match="invalid request"):
            ClientConnection(host, target, extra_headers=headers)

    @pytest.mark.parametrize("protocol", ["", "two words", "chat,superchat", "ч", "a\r\nX: y", 'q"uote'])
    def test_a_subprotocol_that_is_not_a_token_is_a_value_error(self, protocol: str) -> None:
        """RFC 6455 §4.1: each Sec-WebSocket-Protocol element is a token (RFC 9110 §5.6.2); a
        comma would even change how many subprotocols the server sees."""
        with pytest.raises(ValueError, match="is not an HTTP token"):
            ClientConnection("h", subprotocols=["chat", protocol])

    def test_subprotocols_given_as_one_string_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="not a str"):
            ClientConnection("h", subprotocols="chat")

    def test_nothing_may_be_sent_before_the_handshake(self) -> None:
        conn = client()
        with pytest.raises(InvalidStateError):
            conn.send_text("early")
        with pytest.raises(InvalidStateError):
            conn.ping()
        with pytest.raises(InvalidStateError):
            conn.close()


class TestReadingTheServersResponse:
    """§4.1: "If the server's response does not conform to the requirements for the server's
    handshake as defined in this section and in Section 4.2.2, the client MUST _Fail the WebSocket
    Connection_."  Every refusal raises `HandshakeError(status, headers, body, reason)`."""

    def test_a_valid_101_opens_the_connection(self) -> None:
        conn = client()
        conn.receive_data(response_bytes([*OK_101, ("X-Extra", "1")]))
        assert conn.state is State.OPEN
        assert conn.subprotocol is None
        assert conn.deflate is None
        assert ("x-extra", "1") in conn.response_headers
        assert conn.events() == []

    def test_a_response_in_single_bytes(self) -> None:
        conn = client()
        data = response_bytes(OK_101)
        for i in range(len(data)):
            assert conn.state is State.CONNECTING
            conn.receive_data(data[i : i + 1])
        assert conn.state is State.OPEN

    def test_an_interim_1xx_is_skipped(self) -> None:
        conn = client()
        conn.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n" + response_bytes(OK_101))
        assert conn.state is State.OPEN

    def test_frames_in_the_same_read_as_the_101_are_not_lost(self) -> None:
        conn = client()
        frames = raw_frame(0x1, b"Hello") + raw_frame(0x2, b"\x00\x01")
        conn.receive_data(response_bytes(OK_101) + frames + raw_frame(0x1, b"later")[:3])
        assert [(e.type, e.data) for e in conn.events()] == [
            (WSMsgType.TEXT, "Hello"),
            (WSMsgType.BINARY, b"\x00\x01"),
        ]
        conn.receive_data(raw_frame(0x1, b"later")[3:])
        assert [(e.type, e.data) for e in conn.events()] == [(WSMsgType.TEXT, "later")]

    @pytest.mark.parametrize(
        ("extra", "reason"),
        [
            ([("X-Long", "a" * 20000)], "response head over 16384 bytes"),
            ([(f"X-{i}", "1") for i in range(200)], "more than 128 header fields"),
        ],
        ids=["one long header", "many headers"],
    )
    def test_a_complete_but_oversized_101_is_refused(self, extra: list[tuple[str, str]], reason: str) -> None:
        """The response head has the same limits as the server's request head, even when it arrives
        whole in one read (h11 bounds only an incomplete head)."""
        conn = client()
        with pytest.raises(HandshakeError) as info:
            conn.receive_data(response_bytes([*OK_101, *extra]))
        assert reason in info.value.reason
        assert conn.state is not State.OPEN

    def test_frames_behind_a_101_in_a_large_read_are_kept(self) -> None:
        """The head is parsed in slices of the size limit; what follows it is still read as frames."""
        conn = client()
        conn.receive_data(response_bytes(OK_101) + raw_frame(0x2, b"x" * 40000))
        assert [(e.type, len(e.data)) for e in conn.events()] == [(WSMsgType.BINARY, 40000)]

    @pytest.mark.parametrize(
        "headers",
        [
            [("Upgrade", "WebSocket"), ("Connection", "upgrade"), ("Sec-WebSocket-Accept", SAMPLE_ACCEPT)],
            [("UPGRADE", "WEBSOCKET"), ("CONNECTION", "UPGRADE"), ("SEC-WEBSOCKET-ACCEPT", SAMPLE_ACCEPT)],
            [
                ("Upgrade", "websocket"),
                ("Connection", "keep-alive, Upgrade"),
                ("Sec-WebSocket-Accept", SAMPLE_ACCEPT),
            ],
        ],
    )
    def test_tokens_are_case_insensitive(self, headers: list[tuple[str, str]]) -> None:
        """§4.1 items 2-3: "an |Upgrade| header field whose value is not an ASCII case-insensitive
        match for the value "websocket"" ... "|Connection| ... "Upgrade"" (case-insensitive)."""
        conn = client()
        conn.receive_data(response_bytes(headers))
        assert conn.state is State.OPEN

    @pytest.mark.parametrize(
        ("headers", "rule"),
        [
            ([("Connection", "Upgrade"), ("Sec-WebSocket-Accept", SAMPLE_ACCEPT)], "Upgrade: websocket"),
            ([("Upgrade", "h2c"), *OK_101[1:]], "Upgrade: websocket"),
            ([("Upgrade", "websocket, h2c"), *OK_101[1:]], "Upgrade: websocket"),
            ([OK_101[0], OK_101[2]], "Connection: Upgrade"),
            ([OK_101[0], ("Connection", "close"), OK_101[2]], "Connection: Upgrade"),
            (OK_101[:2], "Sec-WebSocket-Accept None"),
            ([*OK_101[:2], ("Sec-WebSocket-Accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")], "does not match"),
            ([*OK_101, ("Sec-WebSocket-Accept", SAMPLE_ACCEPT)], "does not match"),  # two values
            ([*OK_101, ("Sec-WebSocket-Protocol", "chat")], "not offered"),
            ([*OK_101, ("Sec-WebSocket-Extensions", "permessage-deflate")], "not offered"),
            ([*OK_101, ("Sec-WebSocket-Extensions", "x-custom")], "not offered"),
        ],
    )
    def test_an_invalid_101_fails(self, headers: list[tuple[str, str]], rule: str) -> None:
        conn = client()
        with pytest.raises(HandshakeError) as info:
            conn.receive_data(response_bytes(headers))
        assert rule in info.value.reason
        assert info.value.status == 101
        assert info.value.headers == [(k.lower(), v) for k, v in headers]
        assert "RFC" in info.value.reason
        assert conn.exception is info.value
        assert conn.state is State.CLOSED
        assert conn.close_transport

    @pytest.mark.parametrize(
        ("offered", "chosen"),
        [(["chat", "superchat"], "superchat"), (["chat"], "chat"), (["chat"], None)],
    )
    def test_the_chosen_subprotocol_was_offered(self, offered: list[str], chosen: str | None) -> None:
        """§4.1 item 6: "If the response includes a |Sec-WebSocket-Protocol| header field and this
        header field indicates the use of a subprotocol that was not present in the client's
        handshake ..., the client MUST _Fail the WebSocket Connection_."""
        conn = client(subprotocols=offered)
        extra = [] if chosen is None else [("Sec-WebSocket-Protocol", chosen)]
        conn.receive_data(response_bytes(OK_101 + extra))
        assert conn.subprotocol == chosen

    def test_two_subprotocols_fail(self) -> None:
        conn = client(subprotocols=["a", "b"])
        with pytest.raises(HandshakeError, match="not offered"):
            conn.receive_data(response_bytes([*OK_101, ("Sec-WebSocket-Protocol", "a, b")]))

    @pytest.mark.parametrize(
        ("status", "headers", "body", "extra"),
        [
            (403, [("X-Denied-By", "x"), ("Content-Length", "9"), ("set-COOKIE", "a")], b"forbidden", b""),
            (404, [("Content-Length", "3")], b"abc", b"trailing"),
            (400, [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n0\r\n\r\n", b""),
            (200, [("Content-Length", "0")], b"", b""),
            (302, [("Location", "/elsewhere"), ("Content-Length", "0")], b"", b""),
        ],
    )
    def test_a_refusal_carries_status_headers_and_body(
        self, status: int, headers: list[tuple[str, str]], body: bytes, extra: bytes
    ) -> None:
        conn = client()
        with pytest.raises(HandshakeError) as info:
            conn.receive_data(response_bytes(headers, status, "Nope", body) + extra)
        exc = info.value
        assert exc.status == status
        assert exc.headers == headers  # the server's case and order, as aiohttp keeps them
        assert exc.body == (b"abc" if b"chunked" in str(headers).encode() else body)
        assert str(exc) == f"server refused the WebSocket upgrade (HTTP {status})"
        assert conn.state is State.CLOSED
        assert conn.close_transport
        conn.receive_data(b"ignored")  # after the refusal, bytes are dropped, not parsed
        assert conn.events() == []

    def test_a_body_read_until_eof(self) -> None:
        """Without Content-Length, the body ends with the connection (RFC 7230 §3.3.3 item 7)."""
        conn = client()
        conn.receive_data(b"HTTP/1.1 503 Busy\r\n\r\ntry ")
        conn.receive_data(b"later")
        with pytest.raises(HandshakeError) as info:
            conn.receive_eof()
        assert (info.value.status, info.value.body) == (503, b"try later")

    def test_eof_in_the_middle_of_a_refusal_body(self) -> None:
        """The status and the part of the body that arrived still reach the application."""
        conn = client()
        conn.receive_data(response_bytes([("Content-Length", "100")], 502, "Bad Gateway", b"upstream "))
        with pytest.raises(HandshakeError) as info:
            conn.receive_eof()
        assert (info.value.status, info.value.body) == (502, b"upstream ")
        assert conn.close_transport

    def test_the_refusal_body_is_bounded(self) -> None:
        conn = client()
        body = b"x" * 100_000
        with pytest.raises(HandshakeError) as info:
            conn.receive_data(response_bytes([("Content-Length", str(len(body)))], 500, "Err", body))
        assert info.value.body == body[: 64 * 1024]

    def test_an_empty_read_is_not_eof(self) -> None:
        """h11 takes `receive_data(b"")` for EOF; an empty read from a driver must not be."""
        conn = client()
        conn.receive_data(b"")
        conn.receive_data(response_bytes(OK_101))
        assert conn.state is State.OPEN
        server = ServerConnection()
        server.receive_data(b"")
        server.receive_data(request_bytes())
        assert server.request is not None

    @pytest.mark.parametrize(
        "data",
        [None, b"HTTP/1.1 101 Switching", response_bytes(OK_101)[:-2]],
    )
    def test_eof_before_the_response_is_complete(self, data: bytes | None) -> None:
        conn = client()
        if data is not None:
            conn.receive_data(data)
        with pytest.raises(HandshakeError, match="closed before the handshake response"):
            conn.receive_eof()
        assert conn.state is State.CLOSED
        assert conn.close_transport

    @pytest.mark.parametrize("data", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n"])
    def test_garbage_is_an_invalid_http_response(self, data: bytes) -> None:
        conn = client()
        with pytest.raises(HandshakeError, match="invalid HTTP response") as info:
            conn.receive_data(data)
        assert info.value.status is None

    def test_open_timeout(self) -> None:
        clock = FakeClock()
        conn = ClientConnection("h", config=WSConfig(open_timeout=3), now=clock.now)
        assert conn.next_deadline() == clock.now + 3
        conn.handle_timer(clock.advance(2.5))
        assert conn.state is State.CONNECTING
        conn.handle_timer(clock.advance(0.5))
        assert conn.closed
        assert conn.close_transport
        assert isinstance(conn.exception, WSTimeoutError)
        assert "opening handshake not finished within 3 s" in str(conn.exception)

    def test_no_open_timeout(self) -> None:
        conn = ClientConnection("h", config=WSConfig(open_timeout=None), now=0.0)
        assert conn.next_deadline() is None
        conn.handle_timer(1e9)
        assert conn.state is State.CONNECTING


def deflate_101(params: str) -> bytes:
    return response_bytes([*OK_101, ("Sec-WebSocket-Extensions", params)])


class TestDeflateResponse:
    """RFC 7692 §7.1: the client checks that the server's accepted parameters fit its offer."""

    @pytest.mark.parametrize(
        ("options", "response", "expected"),
        [
            (DeflateOptions(), "permessage-deflate", (15, 15, False, False)),
            (DeflateOptions(), "permessage-deflate; client_max_window_bits=10", (10, 15, False, False)),
            (DeflateOptions(), "permessage-deflate; server_max_window_bits=9", (15, 9, False, False)),
            (DeflateOptions(), "permessage-deflate; server_no_context_takeover", (15, 15, False, True)),
            (DeflateOptions(), "permessage-deflate; client_no_context_takeover", (15, 15, True, False)),
            (DeflateOptions(client_no_context_takeover=True), "permessage-deflate", (15, 15, True, False)),
            (
                DeflateOptions(server_max_window_bits=12, client_max_window_bits=11),
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=13",
                (11, 12, False, False),
            ),
            (
                DeflateOptions(server_no_context_takeover=True),
                "permessage-deflate; server_no_context_takeover",
                (15, 15, False, True),
            ),
            (DeflateOptions(), "permessage-deflate; client_max_window_bits=8", (8, 15, False, False)),
        ],
    )
    def test_accepted_parameters(
        self,
        options: DeflateOptions,
        response: str,
        expected: tuple[int, int, bool, bool],
    ) -> None:
        conn = client(config=WSConfig(compress=options))
        conn.receive_data(deflate_101(response))
        deflate = conn.deflate
        assert deflate is not None
        assert (
            deflate.local_max_window_bits,
            deflate.remote_max_window_bits,
            deflate.local_no_context_takeover,
            deflate.remote_no_context_takeover,
        ) == expected

    @pytest.mark.parametrize(
        ("options", "response", "rule"),
        [
            (DeflateOptions(), "permessage-deflate; server_max_window_bits=16", "from 8 to 15"),
            (DeflateOptions(), "permessage-deflate; server_max_window_bits=7", "from 8 to 15"),
            (DeflateOptions(), "permessage-deflate; client_max_window_bits", "from 8 to 15"),
            (DeflateOptions(), "permessage-deflate; client_max_window_bits=x", "from 8 to 15"),
            (DeflateOptions(), "permessage-deflate; unknown_param", "unknown permessage-deflate parameter"),
            (DeflateOptions(), "permessage-deflate; server_no_context_takeover=1", "takes no value"),
            (
                DeflateOptions(),
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                "duplicate",
            ),
            (
                DeflateOptions(server_max_window_bits=10),
                "permessage-deflate; server_max_window_bits=12",
                "larger than the 10 offered",
            ),
            (
                DeflateOptions(server_no_context_takeover=True),
                "permessage-deflate",
                "offered but not accepted",
            ),
            (DeflateOptions(), "permessage-deflate, permessage-deflate", "twice"),
            (DeflateOptions(), "permessage-deflate; =", "malformed"),
            (DeflateOptions(), 'permessage-deflate; server_max_window_bits="10', "malformed"),
            (DeflateOptions(), 'permessage-deflate; server_max_window_bits="1 0"', "malformed"),
            (DeflateOptions(), "permessage-deflate x", "malformed"),
            (DeflateOptions(), "permessage-deflate, x-other", "not offered"),
        ],
    )
    def test_invalid_responses_fail(self, options: DeflateOptions, response: str, rule: str) -> None:
        conn = client(config=WSConfig(compress=options))
        with pytest.raises(HandshakeError) as info:
            conn.receive_data(deflate_101(response))
        assert rule in info.value.reason
        assert info.value.status == 101
        assert conn.state is State.CLOSED

    def test_a_quoted_value_is_a_token(self) -> None:
        """RFC 6455 §9.1: a quoted-string value must also be a valid token once unquoted."""
        conn = client(config=WSConfig(compress=DeflateOptions()))
        conn.receive_data(deflate_101('permessage-deflate; client_max_window_bits="10"'))
        assert conn.deflate is not None
        assert conn.deflate.local_max_window_bits == 10
