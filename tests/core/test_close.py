"""RFC 6455 §5.5.1 (Close), §7 (closing the connection) and §7.4 (status codes)."""

from __future__ import annotations

import pytest

from wscore import (
    ConnectionClosed,
    State,
    WSConfig,
    WSMsgType,
    WSTimeoutError,
)

from .helpers import ConnectionPair, close_payload, error_of, open_connection, parse_frames, peer_frame

ROLES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def close_frame_payload(code: int | None, reason: bytes = b"") -> bytes:
    return b"" if code is None else code.to_bytes(2, "big") + reason


class TestStatusCodes:
    """§7.4: 1000-1003 and 1007-1011 are defined; 1012-1014 are IANA-registered (we accept them on
    purpose; wsproto does not); 3000-4999 are for libraries/applications. 1004, 1005, 1006 and 1015
    "MUST NOT be set as a status code in a Close control frame by an endpoint", the rest of 0-2999 is
    reserved: receiving one is a protocol error (1002)."""

    @ROLES
    @pytest.mark.parametrize("code", VALID_CODES)
    def test_valid_codes_are_reported_and_echoed(self, client: bool, code: int) -> None:
        """§5.5.1: "the endpoint MUST send a Close frame in response ... typically echoing the status
        code it received"."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x8, close_frame_payload(code, "é".encode())))
        assert [(e.type, e.data, e.extra) for e in conn.events()] == [
            (WSMsgType.CLOSE, code, "é"),
            (WSMsgType.CLOSED, None, None),
        ]
        (echo,) = parse_frames(conn.data_to_send())
        assert close_payload(echo) == (code, b"")
        assert (conn.close_code, conn.close_reason) == (code, "é")
        assert conn.state is State.CLOSED
        assert conn.exception is None

    @ROLES
    @pytest.mark.parametrize("code", INVALID_CODES)
    def test_invalid_codes_fail_with_1002(self, client: bool, code: int) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x8, close_frame_payload(code)))
        assert error_of(conn) == 1002
        assert f"invalid close code {code}" in str(conn.exception)
        (reply,) = parse_frames(conn.data_to_send())
        assert close_payload(reply)[0] == 1002

    @ROLES
    def test_a_one_byte_payload_fails_with_1002(self, client: bool) -> None:
        """§5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned
        integer"."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x8, b"\x03"))
        assert error_of(conn) == 1002
        assert "1 byte" in str(conn.exception)

    @ROLES
    @pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80"])
    def test_a_non_utf8_reason_fails_with_1007(self, client: bool, reason: bytes) -> None:
        """§5.5.1: "the data ... is not guaranteed to be human readable" but it is UTF-8-encoded
        data; §8.1 makes invalid UTF-8 a 1007."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x8, close_frame_payload(1000, reason)))
        assert error_of(conn) == 1007

    @ROLES
    def test_an_empty_close_is_1005_and_answered_empty(self, client: bool) -> None:
        """§7.1.5: "If this Close control frame contains no status code, _The WebSocket Connection
        Close Code_ is considered to be 1005." — our echo carries no code either."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x8, b""))
        assert next((e.type, e.data) for e in conn.events()) == (WSMsgType.CLOSE, 1005)
        (echo,) = parse_frames(conn.data_to_send())
        assert echo.payload == b""
        assert conn.close_code == 1005

    @pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
    def test_we_refuse_to_send_an_invalid_code(self, code: int) -> None:
        conn = open_connection(client=True)
        with pytest.raises(ValueError, match=f"close code {code} may not be sent"):
            conn.close(code)
        assert conn.state is State.OPEN
        assert conn.data_to_send() == b""

    def test_we_refuse_an_over_long_reason_or_a_reason_without_a_code(self) -> None:
        conn = open_connection(client=True)
        conn.close(1000, "x" * 123)  # 2 + 123 = 125 bytes: the most that fits
        with pytest.raises(ValueError, match="123 bytes"):
            open_connection(client=True).close(1000, "x" * 124)
        with pytest.raises(ValueError, match="needs a close code"):
            open_connection(client=True).close(None, "why")

    def test_close_without_a_code(self) -> None:
        conn = open_connection(client=False)
        assert conn.close(None)
        (frame,) = parse_frames(conn.data_to_send())
        assert frame.payload == b""


class TestClosingHandshake:
    """§7.1.2 Start the WebSocket Closing Handshake, §5.5.1 and §7.1.1 (who closes TCP)."""

    def test_client_initiated(self) -> None:
        pair = ConnectionPair()
        assert pair.client.close(1000, "bye")
        assert pair.client.state is State.CLOSING
        assert not pair.client.close(1001)  # a second close sends nothing
        client_events, server_events = pair.exchange()
        assert [(e.type, e.data, e.extra) for e in server_events] == [
            (WSMsgType.CLOSE, 1000, "bye"),
            (WSMsgType.CLOSED, None, None),
        ]
        assert [(e.type, e.data) for e in client_events] == [
            (WSMsgType.CLOSE, 1000),
            (WSMsgType.CLOSED, None),
        ]
        assert pair.server.closed and pair.client.closed
        # §7.1.1: "the server ... SHOULD close the underlying TCP connection first"; the client waits.
        assert pair.server.close_transport
        assert not pair.client.close_transport
        pair.client.receive_eof()
        assert pair.client.close_transport
        assert pair.client.close_code == 1000  # a clean close stays clean after the EOF
        assert pair.client.events() == []

    def test_server_initiated(self) -> None:
        pair = ConnectionPair()
        assert pair.server.close(4000, "done")
        assert not pair.server.close_transport  # waits for the client's answer
        client_events, server_events = pair.exchange()
        assert next((e.type, e.data, e.extra) for e in client_events) == (WSMsgType.CLOSE, 4000, "done")
        assert next((e.type, e.data) for e in server_events) == (WSMsgType.CLOSE, 4000)
        assert pair.server.close_transport
        assert not pair.client.close_transport

    def test_simultaneous_close(self) -> None:
        """§7.1.3: both sides sent a close frame; each one's close is the other's answer."""
        pair = ConnectionPair()
        pair.client.close(1000, "c")
        pair.server.close(1001, "s")
        client_events, server_events = pair.exchange()
        assert pair.client.closed and pair.server.closed
        assert (pair.client.close_code, pair.server.close_code) == (1001, 1000)
        assert [e.type for e in client_events] == [WSMsgType.CLOSE, WSMsgType.CLOSED]
        assert [e.type for e in server_events] == [WSMsgType.CLOSE, WSMsgType.CLOSED]

    @ROLES
    def test_without_autoclose_the_application_answers(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(autoclose=False))
        conn.receive_data(peer_frame(conn, 0x8, close_frame_payload(1001, b"away")))
        assert [(e.type, e.data) for e in conn.events()] == [(WSMsgType.CLOSE, 1001)]
        assert conn.state is State.CLOSING
        assert conn.data_to_send() == b""
        conn.send_text("last words")  # allowed until we send our close
        conn.receive_data(peer_frame(conn, 0x1, b"ignored"))  # §5.5.1: nothing after their close
        assert conn.events() == []
        assert conn.close(1000)
        frames = parse_frames(conn.data_to_send())
        assert [(f.opcode, f.payload[:2]) for f in frames] == [(0x1, b"la"), (0x8, b"\x03\xe8")]
        assert conn.closed
        assert [e.type for e in conn.events()] == [WSMsgType.CLOSED]
        assert conn.close_code == 1001  # the peer's code

    @ROLES
    def test_nothing_is_sent_after_our_close(self, client: bool) -> None:
        """§5.5.1: "After sending a Close frame, the endpoint MUST NOT send any further data frames."""
        conn = open_connection(client)
        conn.close(1000)
        conn.data_to_send()
        with pytest.raises(ConnectionClosed):
            conn.send_text("x")
        with pytest.raises(ConnectionClosed):
            conn.send_bytes(b"x")
        with pytest.raises(ConnectionClosed):
            conn.ping()
        with pytest.raises(ConnectionClosed):
            conn.pong()
        with pytest.raises(ConnectionClosed):
            conn.send_frame(b"x", 0x2)
        with pytest.raises(ConnectionClosed):
            conn.send_prepared(b"\x81\x00") if not client else conn.send_text("")
        # A ping that arrives while we wait for the close answer gets no pong.
        conn.receive_data(peer_frame(conn, 0x9, b"late ping"))
        assert conn.data_to_send() == b""
        # Data frames that arrive meanwhile are still delivered (the peer has not seen our close).
        conn.receive_data(peer_frame(conn, 0x1, b"in flight"))
        assert [(e.type, e.data) for e in conn.events()] == [(WSMsgType.TEXT, "in flight")]

    @ROLES
    def test_data_after_the_peers_close_is_discarded(self, client: bool) -> None:
        conn = open_connection(client)
        data = peer_frame(conn, 0x8, close_frame_payload(1000)) + peer_frame(conn, 0x1, b"after")
        conn.receive_data(data)
        conn.receive_data(peer_frame(conn, 0x1, b"later still") + b"\xff\xff garbage")
        assert [e.type for e in conn.events()] == [WSMsgType.CLOSE, WSMsgType.CLOSED]
        assert conn.exception is None

    def test_a_fragmented_message_is_dropped_by_a_close(self) -> None:
        conn = open_connection(client=True)
        conn.receive_data(peer_frame(conn, 0x1, b"half", fin=False) + peer_frame(conn, 0x8, b"\x03\xe8"))
        assert [e.type for e in conn.events()] == [WSMsgType.CLOSE, WSMsgType.CLOSED]

    def test_the_close_frame_can_be_sent_raw(self) -> None:
        conn = open_connection(client=True)
        conn.send_frame((3001).to_bytes(2, "big") + b"raw", 0x8)
        (frame,) = parse_frames(conn.data_to_send())
        assert close_payload(frame) == (3001, b"raw")
        assert conn.state is State.CLOSING

    @pytest.mark.parametrize(
        "payload", [(1005).to_bytes(2, "big"), b"\x03", b"\x03\xe8\xff", b"\x03\xe8" + b"x" * 124]
    )
    def test_a_raw_close_frame_with_a_bad_payload_is_a_value_error(self, payload: bytes) -> None:
        """A bad argument is the caller's error (ValueError), not the peer's (ProtocolError)."""
        conn = open_connection(client=True)
        with pytest.raises(ValueError) as info:
            conn.send_frame(payload, 0x8)
        assert "RFC 6455" in str(info.value)
        assert conn.state is State.OPEN
        assert conn.data_to_send() == b""


class TestAbnormalClosure:
    """§7.1.5: "If _The WebSocket Connection is Closed_ and no Close control frame was received by
    the endpoint ..., _The WebSocket Connection Close Code_ is considered to be 1006."""

    @ROLES
    @pytest.mark.parametrize("state", ["open", "closing", "mid-frame"])
    def test_eof_without_a_close_frame_is_1006(self, client: bool, state: str) -> None:
        conn = open_connection(client)
        if state == "closing":
            conn.close(1000)
        elif state == "mid-frame":
            conn.receive_data(peer_frame(conn, 0x2, b"x" * 100)[:50])
        conn.receive_eof()
        events = conn.events()
        assert [e.type for e in events] == [WSMsgType.CLOSED]
        assert conn.close_code == 1006
        assert isinstance(conn.exception, ConnectionClosed)
        assert conn.exception.code == 1006
        assert "without a close frame" in str(conn.exception)
        assert "without a close frame" in conn.close_reason  # as after a close or pong timeout
        assert conn.close_transport
        assert conn.closed

    def test_eof_twice_is_harmless(self) -> None:
        conn = open_connection(client=True)
        conn.receive_eof()
        conn.receive_eof()
        assert [e.type for e in conn.events()] == [WSMsgType.CLOSED]

    @ROLES
    def test_the_close_timeout(self, client: bool) -> None:
        """§7.1.1 / design: the close handshake is bounded by close_timeout; then 1006."""
        conn = open_connection(client, WSConfig(close_timeout=2.0), now=10.0)
        conn.close(1000, now=11.0)
        assert conn.next_deadline() == 13.0
        conn.handle_timer(12.9)
        assert conn.state is State.CLOSING
        conn.handle_timer(13.0)
        assert conn.closed
        assert conn.close_code == 1006
        assert isinstance(conn.exception, WSTimeoutError)
        assert "no close frame within 2.0 s" in str(conn.exception)
        assert conn.close_transport
        assert [e.type for e in conn.events()] == [WSMsgType.ERROR, WSMsgType.CLOSED]

    def test_the_client_waits_for_eof_within_the_close_timeout(self) -> None:
        """§7.1.1: the client "SHOULD wait for the server to close the connection"; if it does not
        within the close timeout, the client closes TCP itself."""
        pair = ConnectionPair(client_config=WSConfig(close_timeout=4.0))
        pair.server.close(1000)
        pair.exchange()
        assert pair.client.closed and not pair.client.close_transport
        deadline = pair.client.next_deadline()
        assert deadline == pair.clock.now + 4.0
        pair.client.handle_timer(deadline - 0.1)
        assert not pair.client.close_transport
        pair.client.handle_timer(deadline)
        assert pair.client.close_transport
        assert pair.client.close_code == 1000  # still a clean close
        assert pair.client.next_deadline() is None

    def test_without_a_close_timeout_there_is_no_deadline(self) -> None:
        conn = open_connection(client=True, config=WSConfig(close_timeout=None))
        conn.close()
        assert conn.next_deadline() is None
