"""RFC 6455 §5.5.2 (Ping) and §5.5.3 (Pong), with the autoping policy."""

from __future__ import annotations

import pytest

from wscore import WSConfig, WSMsgType

from .helpers import ConnectionPair, open_connection, parse_frames, peer_frame

ROLES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])


class TestPing:
    """§5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in response, unless
    it already received a Close frame." §5.5.3: "A Pong frame sent in response to a Ping frame must
    have identical "Application data" as found in the message body of the Ping frame being replied
    to."""

    @ROLES
    @pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125))])
    def test_autoping_answers_with_the_same_payload_and_hides_the_ping(
        self, client: bool, payload: bytes
    ) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x9, payload))
        assert conn.events() == []
        (pong,) = parse_frames(conn.data_to_send())
        assert (pong.opcode, pong.payload, pong.masked) == (0xA, payload, client)

    @ROLES
    def test_autoping_hides_pongs(self, client: bool) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0xA, b"unsolicited"))
        assert conn.events() == []
        assert conn.data_to_send() == b""

    @ROLES
    def test_without_autoping_pings_and_pongs_are_delivered(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(autoping=False))
        conn.receive_data(peer_frame(conn, 0x9, b"ping") + peer_frame(conn, 0xA, b"pong"))
        assert [(e.type, e.data) for e in conn.events()] == [
            (WSMsgType.PING, b"ping"),
            (WSMsgType.PONG, b"pong"),
        ]
        assert conn.data_to_send() == b""
        conn.pong(b"ping")  # the application answers
        (pong,) = parse_frames(conn.data_to_send())
        assert (pong.opcode, pong.payload) == (0xA, b"ping")

    def test_many_pings_many_pongs_in_order(self) -> None:
        conn = open_connection(client=False)
        conn.receive_data(b"".join(peer_frame(conn, 0x9, str(i).encode()) for i in range(10)))
        assert [f.payload for f in parse_frames(conn.data_to_send())] == [str(i).encode() for i in range(10)]

    def test_a_round_trip_through_a_pair(self) -> None:
        pair = ConnectionPair(client_config=WSConfig(autoping=False), server_config=WSConfig(autoping=True))
        pair.client.ping(b"are you there")
        assert pair.to_server() == []
        assert [(e.type, e.data) for e in pair.to_client()] == [(WSMsgType.PONG, b"are you there")]
