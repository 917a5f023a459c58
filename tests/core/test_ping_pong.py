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

    @ROLES
    def test_a_ping_flood_queues_a_bounded_number_of_pongs(self, client: bool) -> None:
        """§5.5.3: "If an endpoint receives a Ping frame and has not yet sent Pong frame(s) in response
        to previous Ping frame(s), the endpoint MAY elect to send a Pong frame for only the most
        recently processed Ping frame." 10,000 pings nobody drains queue 64 pongs, the last one answering
        the last ping; once the output is taken, pings are answered one for one again."""
        conn = open_connection(client)
        conn.receive_data(b"".join(peer_frame(conn, 0x9, str(i).encode()) for i in range(10_000)))
        conn.receive_data(b"".join(peer_frame(conn, 0x9, b"more") for _ in range(1000)))
        pongs = parse_frames(conn.data_to_send())
        assert [p.payload for p in pongs] == [str(i).encode() for i in range(63)] + [b"more"]
        assert {p.opcode for p in pongs} == {0xA}
        conn.receive_data(b"".join(peer_frame(conn, 0x9, str(i).encode()) for i in range(3)))
        assert [p.payload for p in parse_frames(conn.data_to_send())] == [b"0", b"1", b"2"]

    def test_data_sent_between_pings_is_never_reordered_or_dropped(self) -> None:
        conn = open_connection(client=False)
        flood = b"".join(peer_frame(conn, 0x9, b"p") for _ in range(100))
        conn.receive_data(flood)
        conn.send_bytes(b"data")
        conn.receive_data(flood)
        frames = parse_frames(conn.data_to_send())
        assert [f.opcode for f in frames] == [0xA] * 64 + [0x2] + [0xA] * 64
        assert frames[64].payload == b"data"

    def test_a_round_trip_through_a_pair(self) -> None:
        pair = ConnectionPair(client_config=WSConfig(autoping=False), server_config=WSConfig(autoping=True))
        pair.client.ping(b"are you there")
        assert pair.to_server() == []
        assert [(e.type, e.data) for e in pair.to_client()] == [(WSMsgType.PONG, b"are you there")]
