"""RFC 6455 §4.2: the server's side of the opening handshake (and RFC 7692 §5 negotiation)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence

import pytest

from wscore import (
    DeflateOptions,
    HandshakeError,
    InvalidStateError,
    Request,
    ServerConnection,
    State,
    WSConfig,
    WSMsgType,
    WSTimeoutError,
    accept_token,
)
from wscore.handshake import build_response

from .helpers import (
    KEY,
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    UPGRADE_HEADERS,
    FakeClock,
    raw_frame,
    read_response,
    request_bytes,
    with_headers,
)


def received(data: bytes, config: WSConfig | None = None, **kwargs: object) -> ServerConnection:
    """A server that has read `data`."""
    server = ServerConnection(config=config, **kwargs)  # type: ignore[arg-type]
    server.receive_data(data, now=0.0)
    return server


class TestReadingTheClientsHandshake:
    """§4.2.1: "If the server, while reading the handshake, finds that the client did not send a
    handshake that matches the description below ..., the server MUST stop processing the client's
    handshake and return an HTTP response with an appropriate error code (such as 400 Bad Request)."
    """

    def test_a_valid_request_is_parsed(self) -> None:
        server = received(request_bytes(with_headers({"Origin": "http://example.com"}), target="/chat?x=1"))
        request = server.request
        assert request is not None
        assert (request.method, request.target, request.path, request.http_version) == (
            "GET",
            "/chat?x=1",
            "/chat",
            "1.1",
        )
        assert request.header("ORIGIN") == "http://example.com"
        assert request.is_websocket
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""  # nothing is answered before the application decides

    def test_a_request_fed_byte_by_byte_is_parsed(self) -> None:
        server = ServerConnection()
        data = request_bytes()
        for i in range(len(data)):
            assert server.request is None
            server.receive_data(data[i : i + 1])
        assert server.request is not None

    @pytest.mark.parametrize(
        ("data", "status", "rule"),
        [
            (request_bytes(method="POST"), 400, "method POST instead of GET"),
            (request_bytes(version="1.0"), 400, "HTTP/1.0 instead of HTTP/1.1"),
            (request_bytes(with_headers({"Upgrade": None})), 400, "Upgrade: websocket"),
            (request_bytes(with_headers({"Upgrade": "h2c"})), 400, "Upgrade: websocket"),
            (request_bytes(with_headers({"Connection": None})), 400, "Connection: Upgrade"),
            (request_bytes(with_headers({"Connection": "keep-alive"})), 400, "Connection: Upgrade"),
            (request_bytes(with_headers({"Sec-WebSocket-Key": None})), 400, "missing Sec-WebSocket-Key"),
            (request_bytes(with_headers({"Sec-WebSocket-Key": "AQIDBAUGBwgJCgsMDQ4P"})), 400, "16 bytes"),
            (request_bytes(with_headers({"Sec-WebSocket-Key": "not base64!!"})), 400, "16 bytes"),
            (request_bytes(with_headers({"Sec-WebSocket-Key": "AQIDBAUGBwgJCgsMDQ4PEBE="})), 400, "16 bytes"),
            (request_bytes(with_headers({"Sec-WebSocket-Version": "8"})), 426, "is not 13"),
            (request_bytes(with_headers({"Sec-WebSocket-Version": None})), 426, "is not 13"),
            (request_bytes(with_headers({"Sec-WebSocket-Version": "13, 8"})), 426, "is not 13"),
            # RFC 6455 §4.1 (a GET with no body) and RFC 9112 §3.2, §6.3.
            (request_bytes(with_headers({"Content-Length": "5"})), 400, "no body: Content-Length"),
            (
                request_bytes(with_headers({"Transfer-Encoding": "chunked"})),
                400,
                "no body: Transfer-Encoding",
            ),
            (
                request_bytes(with_headers({"Content-Length": "5", "Transfer-Encoding": "chunked"})),
                400,
                "Content-Length and Transfer-Encoding together",
            ),
            (request_bytes(with_headers({"Host": "bad host/../x"})), 400, "invalid Host header value"),
            (request_bytes(target="*"), 400, "neither a path nor an absolute URI"),
            (request_bytes(target="chat"), 400, "neither a path nor an absolute URI"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_an_invalid_upgrade_is_answered_with_the_rule(self, data: bytes, status: int, rule: str) -> None:
        """The check runs when the application accepts, so it may still answer plain HTTP first."""
        server = received(data)
        assert server.request is not None
        with pytest.raises(HandshakeError) as info:
            server.accept()
        assert info.value.status == status
        assert rule in info.value.reason
        assert server.exception is info.value
        response = read_response(server.data_to_send())
        assert response.status == status
        assert rule in response.body.decode()
        assert response.headers["connection"] == "close"
        if status == 426:
            # §4.2.2: "... a |Sec-WebSocket-Version| header field indicating the version(s) the
            # server is capable of understanding."
            assert response.headers["sec-websocket-version"] == "13"
        assert server.state is State.CLOSED
        assert server.close_transport

    @pytest.mark.parametrize(
        "data",
        [
            request_bytes(with_headers({"Content-Length": "0"})),  # what some devices send
            request_bytes(with_headers({"Host": "[::1]:8080"})),
            request_bytes(target="http://example.com/chat"),  # RFC 9112 §3.2.2: MUST be accepted
        ],
        ids=["content-length-0", "ipv6-host", "absolute-form"],
    )
    def test_these_unusual_requests_are_valid_upgrades(self, data: bytes) -> None:
        server = received(data)
        server.accept()
        assert server.state is State.OPEN

    def test_two_host_headers_are_a_400_on_either_path(self) -> None:
        """RFC 9112 §3.2: h11 refuses them while parsing; an embedder's parsed request is checked by
        accept()."""
        server = ServerConnection()
        with pytest.raises(HandshakeError) as info:
            server.receive_data(request_bytes([*UPGRADE_HEADERS, ("Host", "other.example")]))
        assert info.value.status == 400
        embedded = ServerConnection()
        embedded.receive_request(Request.build("GET", "/chat", [*UPGRADE_HEADERS, ("Host", "other.example")]))
        with pytest.raises(HandshakeError, match="more than one Host"):
            embedded.accept()

    @pytest.mark.parametrize("version", ["2.0", "1.2", "3.0"])
    def test_another_http_version_on_an_http1_connection_is_a_400(self, version: str) -> None:
        server = ServerConnection()
        with pytest.raises(HandshakeError) as info:
            server.receive_data(request_bytes(version=version))
        assert info.value.status == 400
        assert f"HTTP/{version} on an HTTP/1 connection" in info.value.reason
        assert read_response(server.data_to_send()).status == 400

    def test_a_request_without_host_is_a_400(self) -> None:
        """h11 itself refuses an HTTP/1.1 request without Host (RFC 7230 §5.4)."""
        server = ServerConnection()
        with pytest.raises(HandshakeError) as info:
            server.receive_data(request_bytes(with_headers({"Host": None})))
        assert info.value.status == 400
        assert "Host" in info.value.reason
        assert read_response(server.data_to_send()).status == 400

    @pytest.mark.parametrize(
        "headers",
        [
            with_headers({"Upgrade": "WebSocket"}),
            with_headers({"Connection": "keep-alive, upgrade"}),
            with_headers({"Connection": "UPGRADE"}),
            [(k.lower(), v) for k, v in UPGRADE_HEADERS],
            [(k.upper(), v) for k, v in UPGRADE_HEADERS],
        ],
    )
    def test_tokens_and_names_are_case_insensitive(self, headers: list[tuple[str, str]]) -> None:
        """§4.2.1: Upgrade "|websocket|" and Connection "|Upgrade| token, treated as an ASCII
        case-insensitive value"."""
        server = received(request_bytes(headers))
        server.accept()
        assert server.state is State.OPEN
        assert read_response(server.data_to_send()).status == 101

    @pytest.mark.parametrize(
        ("data", "status"),
        [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /chat HTTP/1.1\r\nHost x\r\n\r\n", 400),
            (b"GET /chat HTTP/1.1\r\n" + b"X: " + b"a" * 20000, 431),  # incomplete and too big
            (b"GET /" + b"a" * 20000, 431),  # request line alone too big
        ],
    )
    def test_malformed_http_is_refused_by_the_core(self, data: bytes, status: int) -> None:
        server = ServerConnection()
        with pytest.raises(HandshakeError) as info:
            server.receive_data(data)
        assert info.value.status == status
        assert read_response(server.data_to_send()).status == status
        assert server.state is State.CLOSED
        assert server.close_transport

    @pytest.mark.parametrize(
        "data",
        [
            request_bytes(with_headers({"X-Long": "a" * 20000})),
            request_bytes(target="/" + "a" * 20000),
        ],
        ids=["long header", "long request line"],
    )
    def test_a_complete_but_oversized_request_is_a_431(self, data: bytes) -> None:
        """max_handshake_size holds even when the whole request arrives in one read (h11 checks its
        limit only while an event is incomplete)."""
        server = ServerConnection()
        with pytest.raises(HandshakeError) as info:
            server.receive_data(data)
        assert info.value.status == 431
        assert read_response(server.data_to_send()).status == 431
        assert server.request is None

    def test_too_many_header_fields_is_a_431(self) -> None:
        config = WSConfig(max_headers=10)
        ok = with_headers({f"X-{i}": "1" for i in range(5)})
        assert received(request_bytes(ok), config).request is not None
        many = with_headers({f"X-{i}": "1" for i in range(6)})
        server = ServerConnection(config=config)
        with pytest.raises(HandshakeError) as info:
            server.receive_data(request_bytes(many))
        assert info.value.status == 431
        assert "more than 10 header fields" in info.value.reason
        assert read_response(server.data_to_send()).status == 431

    def test_a_large_head_in_one_read_is_refused_before_it_is_parsed(self) -> None:
        """h11 turns each byte of short header lines into ~40 bytes of objects: a 240 KB head that
        arrives in one read is refused once 16 KiB of it are seen, not parsed whole first."""
        data = request_bytes(with_headers({f"X{i}": "y" for i in range(30000)}))
        server = ServerConnection()
        tracemalloc.start()
        try:
            with pytest.raises(HandshakeError) as info:
                server.receive_data(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert info.value.status == 431
        assert peak < 1024 * 1024, peak

    def test_eof_before_the_request_is_complete(self) -> None:
        server = received(request_bytes()[:20])
        server.receive_eof()
        assert server.state is State.CLOSED
        assert server.close_transport
        assert isinstance(server.exception, HandshakeError)
        assert server.request is None

    def test_eof_after_the_request_before_the_answer(self) -> None:
        """The client gave up while the application was deciding: accept() is then too late."""
        server = received(request_bytes())
        server.receive_eof()
        assert server.closed and server.close_transport
        assert isinstance(server.exception, HandshakeError)
        assert "before the upgrade was answered" in str(server.exception)
        with pytest.raises(InvalidStateError):
            server.accept()

    def test_frames_in_the_same_read_as_the_request_are_kept(self) -> None:
        """A client may send its first frames without waiting for the 101 (RFC 6455 §4.1 allows
        sending "once the client's opening handshake has been sent"... after the 101; many do it
        eagerly): they must not be lost."""
        frame = raw_frame(0x1, b"Hello", mask=KEY)
        server = received(request_bytes() + frame + frame[:3])
        server.receive_data(frame[3:])
        server.accept()
        assert [(e.type, e.data) for e in server.events()] == [(WSMsgType.TEXT, "Hello")] * 2

    def test_frames_after_the_request_wait_for_accept(self) -> None:
        server = received(request_bytes())
        server.receive_data(raw_frame(0x2, b"early", mask=KEY))
        assert server.events() == []
        server.accept()
        assert [(e.type, e.data) for e in server.events()] == [(WSMsgType.BINARY, b"early")]

    def test_open_timeout(self) -> None:
        """The opening handshake is bounded by open_timeout (design: the opening-handshake deadline)."""
        clock = FakeClock()
        server = ServerConnection(config=WSConfig(open_timeout=5), now=clock.now)
        server.receive_data(request_bytes()[:10], now=clock.advance(1))
        assert server.next_deadline() == clock.now + 4
        server.handle_timer(clock.advance(3.9))
        assert server.state is State.CONNECTING
        server.handle_timer(clock.advance(0.1))
        assert server.closed
        assert server.close_transport
        assert isinstance(server.exception, WSTimeoutError)
        assert "opening handshake" in str(server.exception)


class TestSendingTheServersHandshake:
    """§4.2.2: "If the server chooses to accept the incoming connection, it MUST reply with a valid
    HTTP response": 101, Upgrade, Connection, Sec-WebSocket-Accept."""

    def test_the_accept_token_of_the_rfc_example(self) -> None:
        """§1.3: key "dGhlIHNhbXBsZSBub25jZQ==" -> "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="."""
        assert accept_token(SAMPLE_KEY) == SAMPLE_ACCEPT

    def test_accept_writes_a_101(self) -> None:
        server = received(request_bytes())
        headers = server.accept(extra_headers=[(b"X-Server", b"wscore")])
        response = read_response(server.data_to_send())
        assert response.status == 101
        assert response.headers["upgrade"] == "websocket"
        assert response.headers["connection"] == "Upgrade"
        assert response.headers["sec-websocket-accept"] == SAMPLE_ACCEPT
        assert response.headers["x-server"] == "wscore"
        assert "sec-websocket-protocol" not in response.headers
        assert "sec-websocket-extensions" not in response.headers
        assert ("X-Server", "wscore") in headers
        assert server.state is State.OPEN
        assert server.response_status == 101
        assert not server.close_transport

    def test_accept_twice_or_too_early_is_an_invalid_state(self) -> None:
        with pytest.raises(InvalidStateError):
            ServerConnection().accept()
        server = received(request_bytes())
        server.accept()
        with pytest.raises(InvalidStateError):
            server.accept()
        with pytest.raises(InvalidStateError):
            server.respond(403)

    def test_the_embedding_path_takes_a_parsed_request(self) -> None:
        """A framework that parsed HTTP itself hands over a `Request` (no h11 parsing here)."""
        request = Request.build(b"GET", b"/chat", [(b"host", b"x"), *UPGRADE_HEADERS[1:]])
        server = ServerConnection()
        server.receive_request(request, now=1.0)
        server.accept(now=1.0)
        # The framework writes its own response; the core only queues what it must.
        assert server.data_to_send() == b""
        assert server.state is State.OPEN
        with pytest.raises(InvalidStateError):
            server.receive_request(request)


def subprotocol_request(offered: str | None) -> bytes:
    return request_bytes(with_headers({"Sec-WebSocket-Protocol": offered}))


class TestSubprotocols:
    """§4.2.2 /subprotocol/: "Either a single value representing the subprotocol the server is ready
    to use or null. The value chosen MUST be derived from the client's handshake"."""

    @pytest.mark.parametrize(
        ("offered", "supported", "chosen"),
        [
            ("chat, superchat", ["superchat", "chat"], "superchat"),  # the server's order decides
            ("chat, superchat", ["chat", "superchat"], "chat"),
            ("chat", ["superchat"], None),
            (None, ["chat"], None),
            ("chat", [], None),
        ],
    )
    def test_an_ordered_list(self, offered: str | None, supported: list[str], chosen: str | None) -> None:
        server = received(subprotocol_request(offered), subprotocols=supported)
        server.accept()
        assert server.subprotocol == chosen
        assert read_response(server.data_to_send()).headers.get("sec-websocket-protocol") == chosen

    def test_a_callback(self) -> None:
        seen: list[Sequence[str]] = []

        def select(offered: Sequence[str]) -> str | None:
            seen.append(offered)
            return offered[-1]

        server = received(subprotocol_request("a, b,c"), select_subprotocol=select)
        server.accept()
        assert seen == [["a", "b", "c"]]
        assert server.subprotocol == "c"

    def test_the_application_may_choose_explicitly(self) -> None:
        server = received(subprotocol_request("a, b"), subprotocols=["a"])
        server.accept(subprotocol=None)
        assert server.subprotocol is None
        server = received(subprotocol_request("a, b"))
        server.accept(subprotocol="b")
        assert server.subprotocol == "b"

    def test_a_non_string_choice_is_a_type_error(self) -> None:
        server = received(subprotocol_request("a"))
        with pytest.raises(TypeError):
            server.accept(subprotocol=1)


def deflate_request(offer: str | None) -> bytes:
    return request_bytes(with_headers({"Sec-WebSocket-Extensions": offer}))


class TestExtensionNegotiation:
    """RFC 7692 §5: "the server ... MUST choose at most one acceptable offer"; offers with unknown or
    invalid parameters are declined, not fatal."""

    @pytest.mark.parametrize(
        ("offer", "options", "response"),
        [
            ("permessage-deflate", DeflateOptions(), "permessage-deflate"),
            (
                "permessage-deflate; client_max_window_bits",
                DeflateOptions(),
                "permessage-deflate",
            ),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                DeflateOptions(),
                "permessage-deflate; server_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
                DeflateOptions(),
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                "permessage-deflate; client_max_window_bits",
                DeflateOptions(client_max_window_bits=9, server_max_window_bits=12),
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9",
            ),
            (  # we would like to limit the client's window, but it did not say it can: §7.1.2.2
                "permessage-deflate",
                DeflateOptions(client_max_window_bits=9),
                "permessage-deflate",
            ),
            (
                'permessage-deflate; client_max_window_bits="12"',
                DeflateOptions(),
                "permessage-deflate; client_max_window_bits=12",
            ),
            (
                "permessage-deflate; unknown=1, permessage-deflate; server_max_window_bits=9",
                DeflateOptions(),
                "permessage-deflate; server_max_window_bits=9",
            ),
            (
                "x-webkit-deflate-frame, permessage-deflate",
                DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            (
                r'permessage-deflate; client_max_window_bits="1\1"',  # a quoted-pair (RFC 7230 §3.2.6)
                DeflateOptions(),
                "permessage-deflate; client_max_window_bits=11",
            ),
            (  # empty list elements and optional whitespace are tolerated
                ", ,permessage-deflate ;server_max_window_bits = 12 ,",
                DeflateOptions(),
                "permessage-deflate; server_max_window_bits=12",
            ),
            ("permessage-deflate; server_max_window_bits=16", DeflateOptions(), None),
            ("permessage-deflate; server_max_window_bits=08", DeflateOptions(), None),
            ("permessage-deflate; server_max_window_bits", DeflateOptions(), None),
            ("permessage-deflate; client_max_window_bits=7", DeflateOptions(), None),
            ("permessage-deflate; server_no_context_takeover=1", DeflateOptions(), None),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                DeflateOptions(),
                None,
            ),
            ("permessage-deflate; ;", DeflateOptions(), None),
            ('permessage-deflate; client_max_window_bits="1', DeflateOptions(), None),
            ("x-webkit-deflate-frame", DeflateOptions(), None),
            (None, DeflateOptions(), None),
            ("permessage-deflate", None, None),
        ],
    )
    def test_offers(self, offer: str | None, options: DeflateOptions | None, response: str | None) -> None:
        server = received(deflate_request(offer), WSConfig(compress=options))
        server.accept()
        assert read_response(server.data_to_send()).headers.get("sec-websocket-extensions") == response
        assert (server.deflate is not None) == (response is not None)

    def test_the_agreement_matches_the_response(self) -> None:
        offer = (
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits; "
            "client_no_context_takeover"
        )
        options = DeflateOptions(client_max_window_bits=11, level=1, min_size=20)
        server = received(deflate_request(offer), WSConfig(compress=options))
        server.accept()
        deflate = server.deflate
        assert deflate is not None
        assert deflate.local_max_window_bits == 10
        assert deflate.remote_max_window_bits == 11
        assert deflate.level == 1
        assert deflate.should_compress(20) and not deflate.should_compress(19)
        assert "server_max_window_bits=10" in repr(deflate)


class TestRequestValues:
    """`Request` as the embedding path builds it, and `build_response` for refusals."""

    def test_build_from_bytes_or_str(self) -> None:
        from_bytes = Request.build(b"GET", b"/a?b=c", [(b"Host", b"x")], "1.1")
        from_str = Request.build("GET", "/a?b=c", [("Host", "x")])
        assert from_bytes == from_str
        assert from_str.path == "/a"
        assert from_str.header("host") == "x"
        assert from_str.header("missing") is None
        assert not from_str.is_websocket

    def test_receive_request_without_now(self) -> None:
        server = ServerConnection(config=WSConfig(heartbeat=5), now=1.0)
        server.receive_request(Request.build("GET", "/", UPGRADE_HEADERS))
        server.accept()
        assert server.state is State.OPEN
        assert server.next_deadline() == 6.0

    def test_http2_requests_need_no_host(self) -> None:
        """RFC 8441: over HTTP/2 the authority replaces Host; only HTTP/1.1 requires the header."""
        headers = [(k, v) for k, v in UPGRADE_HEADERS if k != "Host"]
        server = ServerConnection()
        server.receive_request(Request.build("GET", "/", headers, "2"))
        server.accept()
        assert server.state is State.OPEN
        server = ServerConnection()
        server.receive_request(Request.build("GET", "/", headers, "1.1"))
        with pytest.raises(HandshakeError, match="missing Host header"):
            server.accept()

    def test_build_response_keeps_given_headers(self) -> None:
        status, headers, body = build_response(
            404, [("Content-Type", "text/html"), ("Content-Length", "2"), ("Connection", "keep-alive")], b"no"
        )
        assert (status, body) == (404, b"no")
        assert headers == [
            ("Content-Type", "text/html"),
            ("Content-Length", "2"),
            ("Connection", "keep-alive"),
        ]
        assert build_response(204)[1] == [("Content-Length", "0"), ("Connection", "close")]


class TestPlainHttpResponses:
    """A server may answer plain HTTP instead of upgrading: a page, a health check, a refusal with
    its own status, headers and body (§4.2.2: "the server ... MAY ... return an appropriate error")."""

    def test_reject_with_status_headers_and_body(self) -> None:
        server = received(request_bytes())
        server.respond(403, [("X-Why", "no")], b"forbidden")
        response = read_response(server.data_to_send())
        assert response.status == 403
        assert response.headers["x-why"] == "no"
        assert response.body == b"forbidden"
        assert response.headers["content-length"] == "9"
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["connection"] == "close"
        assert server.state is State.CLOSED
        assert server.close_transport
        assert server.response_status == 403

    def test_a_page_for_a_plain_get(self) -> None:
        server = received(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert server.request is not None
        assert not server.request.is_websocket
        server.respond(200, {"Content-Type": "application/json"}.items(), b"{}")
        response = read_response(server.data_to_send())
        assert (response.status, response.body, response.headers["content-type"]) == (
            200,
            b"{}",
            "application/json",
        )

    def test_respond_checks_its_arguments_and_state(self) -> None:
        with pytest.raises(InvalidStateError):
            ServerConnection().respond(404)
        server = received(request_bytes())
        with pytest.raises(ValueError, match="not a final HTTP status"):
            server.respond(101)
        server.respond(404)
        assert read_response(server.data_to_send()).status == 404
        with pytest.raises(InvalidStateError):
            server.respond(404)

    @pytest.mark.parametrize(
        "header",
        [("X-Evil", "a\r\nSet-Cookie: evil=1"), ("X-Evil", "a\nb"), ("Bad Name", "x"), ("X-Nul", "a\x00b")],
    )
    def test_invalid_response_headers_are_refused_not_written(self, header: tuple[str, str]) -> None:
        """An application's header with CR/LF must never reach the wire (HTTP response splitting):
        `respond()` and `accept()` raise ValueError and write nothing."""
        server = received(request_bytes())
        with pytest.raises(ValueError, match="invalid"):
            server.respond(200, [header], b"hi")
        assert server.data_to_send() == b""
        server.respond(500, [("X-Ok", "1")], b"sorry")  # a valid answer can still be given
        response = read_response(server.data_to_send())
        assert (response.status, response.body, response.headers["x-ok"]) == (500, b"sorry", "1")
        assert "set-cookie" not in response.headers
        server = received(request_bytes())
        with pytest.raises(ValueError, match="invalid"):
            server.accept(extra_headers=[header])
        assert server.data_to_send() == b""
        assert server.state is State.CONNECTING

    def test_the_raw_fallback_refuses_them_too(self) -> None:
        """Responses h11 cannot write (its state after a request it could not parse) are written by
        hand: the same rule holds there."""
        from wscore.server import _raw_response

        assert _raw_response(400, [("X", "1")], b"no") == b"HTTP/1.1 400 \r\nX: 1\r\n\r\nno"
        for name, value in [("X", "a\r\nb"), ("", "x"), ("A:B", "x"), ("X", "\x00")]:
            with pytest.raises(ValueError, match="invalid header field"):
                _raw_response(400, [(name, value)], b"")

    def test_data_after_a_plain_response_is_ignored(self) -> None:
        server = received(request_bytes())
        server.respond(404)
        server.data_to_send()
        server.receive_data(b"more")
        assert server.data_to_send() == b""
        assert server.events() == []
