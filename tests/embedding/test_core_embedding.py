"""The core's embedding surface: a request parsed elsewhere, a connection started OPEN, the handshake
helpers on their own, and timers the host drives.

wsproto plays the client (an independent implementation) where a real peer is needed, and h11 plays
the framework's HTTP stack, so nothing here goes through the core's own HTTP parsing.
"""

from __future__ import annotations

import h11
import pytest
import wsproto
import wsproto.events as wpe
from wsproto.extensions import PerMessageDeflate as WPDeflate

from wscore import (
    Connection,
    DeflateOptions,
    HandshakeError,
    Request,
    ServerConnection,
    State,
    WSConfig,
    WSMessage,
    WSMsgType,
)
from wscore.handshake import (
    accept_response_headers,
    accept_token,
    build_response,
    check_request,
    deflate_from_header,
    negotiate_deflate,
    parse_extensions,
    select_subprotocol,
    serialize_extensions,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def upgrade_headers(**extra: str) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"host", b"example.com"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY.encode()),
        (b"sec-websocket-version", b"13"),
    ]
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    return headers


def framework_parse(data: bytes) -> tuple[Request, bytes]:
    """What a framework does: parse the request with its own HTTP stack; return it and trailing bytes."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    assert conn.next_event() is h11.PAUSED  # an Upgrade request pauses h11
    request = Request.build(event.method, event.target, event.headers, event.http_version)
    return request, conn.trailing_data[0]


def write_101(headers: list[tuple[str, str]]) -> bytes:
    """What a framework does with accept()'s headers: write the response itself."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    conn.next_event()
    return conn.send(h11.InformationalResponse(status_code=101, headers=headers))


class TestRequestParsedElsewhere:
    def test_accept_returns_headers_and_writes_no_http(self) -> None:
        server = ServerConnection()
        server.receive_request(Request.build(b"GET", b"/chat?x=1", upgrade_headers(), b"1.1"))
        headers = server.accept(extra_headers=[(b"server", b"frame/1.0"), ("date", "today")])
        assert server.data_to_send() == b""
        assert server.state is State.OPEN
        assert headers == [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("server", "frame/1.0"),
            ("date", "today"),
        ]
        assert server.response_status == 101

    def test_core_parsing_path_still_writes_the_101(self) -> None:
        # The contrast: fed raw bytes, the core parses with h11 and writes the response itself.
        server = ServerConnection()
        lines = [b"GET / HTTP/1.1"] + [k + b": " + v for k, v in upgrade_headers()]
        server.receive_data(b"\r\n".join(lines) + b"\r\n\r\n")
        server.accept()
        assert server.data_to_send().startswith(b"HTTP/1.1 101 ")

    def test_full_session_with_wsproto_client(self) -> None:
        client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        offer = client.send(
            wpe.Request(
                host="example.com", target="/chat", subprotocols=["v2", "v1"], extensions=[WPDeflate()]
            )
        )
        # A client that does not wait for the 101: its first frame arrives with the request.
        early = Connection(client=True)
        early.send_text("early")
        first_frame = early.data_to_send()
        request, trailing = framework_parse(offer + first_frame)
        assert request.path == "/chat"
        assert request.subprotocols == ["v2", "v1"]

        server = ServerConnection(subprotocols=["v1"], config=WSConfig(compress=DeflateOptions()))
        server.receive_request(request)
        headers = server.accept()
        assert ("Sec-WebSocket-Protocol", "v1") in headers
        assert any(k == "Sec-WebSocket-Extensions" and v.startswith("permessage-deflate") for k, v in headers)
        assert server.data_to_send() == b""

        client.receive_data(write_101(headers))
        accepted = list(client.events())
        assert isinstance(accepted[0], wpe.AcceptConnection)
        assert accepted[0].subprotocol == "v1"
        assert any(isinstance(e, WPDeflate) for e in accepted[0].extensions)

        server.receive_data(trailing)
        assert server.events() == [WSMessage(WSMsgType.TEXT, "early", None)]
        server.send_text("hello " * 100)  # long enough to be compressed
        client.receive_data(server.data_to_send())
        (msg,) = client.events()
        assert isinstance(msg, wpe.TextMessage) and msg.data == "hello " * 100

        client_bytes = client.send(wpe.CloseConnection(code=1001, reason="bye"))
        server.receive_data(client_bytes)
        assert server.events()[0] == WSMessage(WSMsgType.CLOSE, 1001, "bye")
        assert server.closed and server.close_transport
        client.receive_data(server.data_to_send())
        assert isinstance(next(iter(client.events())), wpe.CloseConnection)

    @pytest.mark.parametrize(
        ("headers", "status"),
        [
            ([(b"host", b"x")], 400),
            ([*upgrade_headers()[:4], (b"sec-websocket-version", b"8")], 426),
            (
                [*upgrade_headers()[:3], (b"sec-websocket-key", b"short"), (b"sec-websocket-version", b"13")],
                400,
            ),
        ],
    )
    def test_invalid_request_is_refused_without_bytes(
        self, headers: list[tuple[bytes, bytes]], status: int
    ) -> None:
        server = ServerConnection()
        server.receive_request(Request.build("GET", "/", headers))
        with pytest.raises(HandshakeError) as info:
            server.accept()
        assert info.value.status == status
        assert server.data_to_send() == b""
        assert server.state is State.CLOSED
        # The framework writes the refusal from the error.
        got_status, got_headers, body = build_response(
            info.value.status, info.value.headers, info.value.reason.encode()
        )
        assert got_status == status
        assert ("Connection", "close") in got_headers
        assert body == info.value.reason.encode()
        if status == 426:
            assert ("Sec-WebSocket-Version", "13") in got_headers

    def test_respond_writes_nothing_when_embedded(self) -> None:
        server = ServerConnection()
        server.receive_request(Request.build("GET", "/", upgrade_headers()))
        server.respond(403, [("x-why", "no")], b"forbidden")
        assert server.data_to_send() == b""
        assert server.closed and server.response_status == 403

    def test_request_only_once(self) -> None:
        server = ServerConnection()
        server.receive_request(Request.build("GET", "/", upgrade_headers()))
        with pytest.raises(RuntimeError):
            server.receive_request(Request.build("GET", "/", upgrade_headers()))


class TestStartedOpen:
    def test_deflate_from_header_for_each_role(self) -> None:
        value = "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
        server = deflate_from_header(value, client=False)
        client = deflate_from_header(value, client=True)
        assert server is not None and client is not None
        assert (server.local_no_context_takeover, server.remote_no_context_takeover) == (True, False)
        assert (client.local_no_context_takeover, client.remote_no_context_takeover) == (False, True)
        assert (server.local_max_window_bits, server.remote_max_window_bits) == (15, 10)
        assert (client.local_max_window_bits, client.remote_max_window_bits) == (10, 15)
        assert deflate_from_header(None, client=True) is None
        assert deflate_from_header("x-other; a=1", client=True) is None

    @pytest.mark.parametrize(
        "value",
        [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; bogus",
            "permessage-deflate, permessage-deflate",
            "permessage-deflate; =",
        ],
    )
    def test_deflate_from_header_rejects_bad_values(self, value: str) -> None:
        with pytest.raises(ValueError):
            deflate_from_header(value, client=False)

    def test_pair_started_open_exchanges_compressed_messages(self) -> None:
        value = "permessage-deflate; client_max_window_bits=9"
        options = DeflateOptions(min_size=1)
        agreed = deflate_from_header(value, client=False)
        server = Connection(client=False, deflate=agreed, subprotocol="chat")
        client = Connection(client=True, deflate=deflate_from_header(value, client=True, options=options))
        assert server.state is State.OPEN and server.subprotocol == "chat"
        for text in ("a" * 1000, "b" * 10, "a" * 1000):
            client.send_text(text)
            wire = client.data_to_send()
            assert wire[0] & 0x40  # RSV1: compressed
            assert len(wire) < len(text) or len(text) < 20
            server.receive_data(wire)
            assert server.events() == [WSMessage(WSMsgType.TEXT, text, None)]
            server.send_bytes(text.encode())
            client.receive_data(server.data_to_send())
            assert client.events() == [WSMessage(WSMsgType.BINARY, text.encode(), None)]

    def test_without_deflate_a_compressed_frame_is_a_protocol_error(self) -> None:
        server = Connection(client=False)
        client = Connection(client=True, deflate=deflate_from_header("permessage-deflate", client=True))
        client.send_text("x" * 100)
        server.receive_data(client.data_to_send())
        events = server.events()
        assert events[0].type is WSMsgType.ERROR
        assert server.close_code == 1002


class TestHelpers:
    def test_accept_token_and_headers(self) -> None:
        assert accept_token(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert accept_response_headers(KEY, subprotocol="chat", extensions="permessage-deflate") == [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("Sec-WebSocket-Protocol", "chat"),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ]

    def test_check_request_returns_the_key(self) -> None:
        assert check_request(Request.build("GET", "/", upgrade_headers())) == KEY
        with pytest.raises(HandshakeError):
            check_request(Request.build("POST", "/", upgrade_headers()))

    def test_select_subprotocol_follows_server_preference(self) -> None:
        assert select_subprotocol(["a", "b", "c"], ["c", "b"]) == "c"
        assert select_subprotocol(["a"], ["b"]) is None

    def test_extension_parsing_round_trip(self) -> None:
        value = 'permessage-deflate; client_max_window_bits="10", x-foo'
        parsed = parse_extensions(value)
        assert parsed == [("permessage-deflate", [("client_max_window_bits", "10")]), ("x-foo", [])]
        assert serialize_extensions(parsed) == "permessage-deflate; client_max_window_bits=10, x-foo"

    def test_negotiate_deflate(self) -> None:
        options = DeflateOptions(server_max_window_bits=12)
        result = negotiate_deflate("x-foo, permessage-deflate; client_max_window_bits", options)
        assert result is not None
        agreement, response = result
        assert response == "permessage-deflate; server_max_window_bits=12"
        assert agreement.local_max_window_bits == 12
        # The response value describes the same agreement to the peer.
        client = deflate_from_header(response, client=True)
        assert client is not None and client.remote_max_window_bits == 12
        assert negotiate_deflate("permessage-deflate", None) is None
        assert negotiate_deflate(None, options) is None
        assert negotiate_deflate("permessage-deflate; ;", options) is None  # malformed: declined
        assert negotiate_deflate("permessage-deflate; bogus", options) is None

    def test_build_response(self) -> None:
        status, headers, body = build_response(503, [(b"retry-after", b"5")], b"busy")
        assert status == 503
        assert headers == [
            ("retry-after", "5"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", "4"),
            ("Connection", "close"),
        ]
        assert body == b"busy"


class TestHostDrivenTimers:
    """The host passes `now` and calls handle_timer() at next_deadline(); the core does the rest."""

    def test_heartbeat_ping_then_drop_a_silent_peer(self) -> None:
        conn = Connection(client=False, config=WSConfig(heartbeat=10.0, pong_timeout=4.0), now=100.0)
        assert conn.next_deadline() == 110.0
        conn.receive_data(b"", now=105.0)  # any activity moves the ping later
        assert conn.next_deadline() == 115.0
        conn.handle_timer(115.0)
        assert conn.data_to_send() == b"\x89\x00"  # the heartbeat ping
        assert conn.next_deadline() == 119.0
        conn.handle_timer(119.0)
        assert conn.closed and conn.close_transport and conn.close_code == 1006
        assert [e.type for e in conn.events()] == [WSMsgType.ERROR, WSMsgType.CLOSED]

    def test_a_pong_keeps_the_connection(self) -> None:
        server = Connection(client=False, config=WSConfig(heartbeat=10.0), now=0.0)
        client = Connection(client=True)
        server.handle_timer(10.0)
        client.receive_data(server.data_to_send())
        server.receive_data(client.data_to_send(), now=11.0)  # the pong
        assert server.next_deadline() == 21.0  # the next ping: a heartbeat after the pong
        server.handle_timer(21.0)
        assert server.state is State.OPEN
        assert server.next_deadline() == 26.0  # that ping's pong deadline

    def test_close_timeout(self) -> None:
        conn = Connection(client=False, config=WSConfig(close_timeout=3.0), now=0.0)
        conn.close(1000, "done", now=50.0)
        assert conn.next_deadline() == 53.0
        conn.handle_timer(53.0)
        assert conn.closed and conn.close_transport and conn.close_code == 1006
