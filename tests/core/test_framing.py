"""RFC 6455 §5: base framing, masking, control frames and the §5.7 examples as byte vectors."""

from __future__ import annotations

import pytest

import wscore.frames
from wscore import Connection, State, WSConfig, WSMsgType, encode_frame
from wscore.extensions import PerMessageDeflate
from wscore.frames import mask

from .helpers import KEY, _xor, error_of, open_connection, parse_frames, peer_frame, raw_frame

ROLES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])


class _FixedKeys:
    """Masking keys that are always RFC 6455 §5.7's, so a client's frames are reproducible."""

    def next(self) -> bytes:
        return KEY


@pytest.fixture
def fixed_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wscore.frames, "mask_keys", _FixedKeys())


def feed(conn: Connection, data: bytes) -> list[tuple[WSMsgType, object]]:
    conn.receive_data(data)
    return [(e.type, e.data) for e in conn.events()]


class TestExamples:
    """§5.7 Examples, byte for byte, in both directions (received, and produced by `send_*`)."""

    HELLO_UNMASKED = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    HELLO_MASKED = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    HEL_LO = (bytes([0x01, 0x03, 0x48, 0x65, 0x6C]), bytes([0x80, 0x02, 0x6C, 0x6F]))
    PING_UNMASKED = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    PONG_MASKED = bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])

    def test_a_single_frame_unmasked_text_message(self) -> None:
        """ "0x81 0x05 0x48 0x65 0x6c 0x6c 0x6f (contains "Hello")" — server to client."""
        assert feed(open_connection(client=True), self.HELLO_UNMASKED) == [(WSMsgType.TEXT, "Hello")]
        server = open_connection(client=False)
        server.send_text("Hello")
        assert server.data_to_send() == self.HELLO_UNMASKED

    @pytest.mark.usefixtures("fixed_mask")
    def test_a_single_frame_masked_text_message(self) -> None:
        """ "0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 (contains "Hello")" — client to
        server."""
        assert feed(open_connection(client=False), self.HELLO_MASKED) == [(WSMsgType.TEXT, "Hello")]
        client = open_connection(client=True)
        client.send_text("Hello")
        assert client.data_to_send() == self.HELLO_MASKED

    def test_a_fragmented_unmasked_text_message(self) -> None:
        """ "0x01 0x03 0x48 0x65 0x6c (contains "Hel")", "0x80 0x02 0x6c 0x6f (contains "lo")"."""
        client = open_connection(client=True)
        assert feed(client, self.HEL_LO[0]) == []
        assert feed(client, self.HEL_LO[1]) == [(WSMsgType.TEXT, "Hello")]
        server = open_connection(client=False)
        server.send_text("Hel", fin=False)
        assert server.data_to_send() == self.HEL_LO[0]
        server.send_text("lo")
        assert server.data_to_send() == self.HEL_LO[1]

    @pytest.mark.usefixtures("fixed_mask")
    def test_unmasked_ping_and_masked_pong(self) -> None:
        """ "Unmasked Ping request and masked Ping response": 0x89 0x05 ... and 0x8a 0x85 0x37 0xfa ...
        — the pong a client's autoping sends is exactly the RFC's."""
        client = open_connection(client=True)
        assert feed(client, self.PING_UNMASKED) == []
        assert client.data_to_send() == self.PONG_MASKED
        server = open_connection(client=False, config=WSConfig(autoping=False))
        assert feed(server, self.PONG_MASKED) == [(WSMsgType.PONG, b"Hello")]
        server.ping(b"Hello")
        assert server.data_to_send() == self.PING_UNMASKED

    def test_256_bytes_binary_message(self) -> None:
        """ "256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100 [256 bytes of binary
        data]"."""
        data = bytes(range(256))
        assert feed(open_connection(client=True), b"\x82\x7e\x01\x00" + data) == [(WSMsgType.BINARY, data)]
        server = open_connection(client=False)
        server.send_bytes(data)
        assert server.data_to_send() == b"\x82\x7e\x01\x00" + data

    def test_64_kib_binary_message(self) -> None:
        """ "64KiB binary message in a single unmasked frame: 0x82 0x7F 0x0000000000010000 [65536 bytes
        of binary data]"."""
        data = bytes(range(256)) * 256
        header = b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
        assert feed(open_connection(client=True), header + data) == [(WSMsgType.BINARY, data)]
        server = open_connection(client=False)
        server.send_bytes(data)
        assert server.data_to_send() == header + data


class TestBaseFramingProtocol:
    """§5.2 Base Framing Protocol."""

    @ROLES
    @pytest.mark.parametrize(
        ("opcode", "payload", "event"),
        [
            (0x1, "héllo".encode(), (WSMsgType.TEXT, "héllo")),
            (0x2, b"\x00\xff", (WSMsgType.BINARY, b"\x00\xff")),
            (0x1, b"", (WSMsgType.TEXT, "")),
            (0x2, b"", (WSMsgType.BINARY, b"")),
            (0x9, b"ping", (WSMsgType.PING, b"ping")),
            (0xA, b"pong", (WSMsgType.PONG, b"pong")),
        ],
    )
    def test_every_opcode(
        self, client: bool, opcode: int, payload: bytes, event: tuple[object, object]
    ) -> None:
        """ "%x0 denotes a continuation frame, %x1 a text frame, %x2 a binary frame, %x8 a connection
        close, %x9 a ping, %xA a pong" (continuation and close: see test_messages / test_close)."""
        conn = open_connection(client, WSConfig(autoping=False))
        assert feed(conn, peer_frame(conn, opcode, payload)) == [event]

    @ROLES
    @pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes_fail_with_1002(self, client: bool, opcode: int) -> None:
        """ "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket
        Connection_." (%x3-7 and %xB-F are reserved)."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, opcode, b"x"))
        assert error_of(conn) == 1002
        assert "reserved opcode" in str(conn.exception)
        assert conn.state is State.CLOSED
        assert conn.close_transport

    @ROLES
    @pytest.mark.parametrize(
        "rsv",
        [{"rsv1": True}, {"rsv2": True}, {"rsv3": True}, {"rsv1": True, "rsv2": True, "rsv3": True}],
    )
    def test_rsv_bits_without_an_extension_fail_with_1002(self, client: bool, rsv: dict[str, bool]) -> None:
        """ "RSV1, RSV2, RSV3: MUST be 0 unless an extension is negotiated that defines meanings for
        non-zero values. If a nonzero value is received and none of the negotiated extensions defines
        the meaning of such a nonzero value, the receiving endpoint MUST _Fail the WebSocket
        Connection_."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x1, b"hi", **rsv))
        assert error_of(conn) == 1002
        assert "RSV bits" in str(conn.exception)

    @ROLES
    @pytest.mark.parametrize(
        ("opcode", "rsv"),
        [(0x1, {"rsv2": True}), (0x2, {"rsv3": True}), (0x9, {"rsv1": True}), (0x8, {"rsv1": True})],
    )
    def test_rsv_bits_deflate_does_not_define_fail(
        self, client: bool, opcode: int, rsv: dict[str, bool]
    ) -> None:
        """permessage-deflate defines RSV1 on data frames only (RFC 7692 §6)."""
        conn = open_connection(client, deflate=PerMessageDeflate())
        conn.receive_data(peer_frame(conn, opcode, b"", **rsv))
        assert error_of(conn) == 1002

    @ROLES
    @pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
    def test_7_16_and_64_bit_lengths(self, client: bool, n: int) -> None:
        """ "Payload length: 7 bits, 7+16 bits, or 7+64 bits" — 0-125 in 7 bits, 126 then 16 bits,
        127 then 64 bits; and "the minimal number of bytes MUST be used" when sending."""
        data = bytes(i % 251 for i in range(n))
        conn = open_connection(client)
        assert feed(conn, peer_frame(conn, 0x2, data)) == [(WSMsgType.BINARY, data)]
        conn.send_bytes(data)
        out = conn.data_to_send()
        expected_len_byte = n if n < 126 else 126 if n < 65536 else 127
        assert out[1] & 0x7F == expected_len_byte
        (frame,) = parse_frames(out)
        assert frame.payload == data
        assert frame.masked == client

    @ROLES
    @pytest.mark.parametrize("form", [16, 64])
    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_non_minimal_lengths_fail_with_1002(self, client: bool, form: int, opcode: int) -> None:
        """ "In all cases, the minimal number of bytes MUST be used to encode the length": a data
        frame of 3 bytes announced in the 16- or 64-bit form fails with 1002, naming that rule (as
        wsproto does)."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, opcode, b"abc", length_form=form))
        assert error_of(conn) == 1002
        assert f"in the {form}-bit form: the minimal number of bytes MUST be used" in str(conn.exception)

    @ROLES
    def test_a_16_bit_length_over_65535_needs_the_64_bit_form(self, client: bool) -> None:
        conn = open_connection(client)
        data = b"x" * 70000
        assert feed(conn, peer_frame(conn, 0x2, data, length_form=64)) == [(WSMsgType.BINARY, data)]
        conn.receive_data(peer_frame(conn, 0x2, b"y" * 1000, length_form=64))
        assert error_of(conn) == 1002  # 1000 fits 16 bits

    @ROLES
    @pytest.mark.parametrize("form", [16, 64])
    def test_a_control_frame_with_an_extended_length_names_both_rules(self, client: bool, form: int) -> None:
        """A ping announcing a 16- or 64-bit length is invalid from its first two bytes: its payload
        is over 125 bytes (§5.5) or it is not minimally encoded (§5.2). The reason says both."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x9, b"ping", length_form=form)[:2])
        assert error_of(conn) == 1002
        reason = str(conn.exception)
        assert "over 125 bytes (RFC 6455 §5.5)" in reason and "not minimally encoded (§5.2)" in reason

    @ROLES
    def test_64_bit_length_with_the_top_bit_set_fails_with_1002(self, client: bool) -> None:
        """ "the most significant bit MUST be 0" (64-bit length)."""
        conn = open_connection(client, WSConfig(max_message_size=None))
        conn.receive_data(peer_frame(conn, 0x2, b"", length=1 << 63, length_form=64))
        assert error_of(conn) == 1002
        assert "most significant bit" in str(conn.exception)

    @ROLES
    @pytest.mark.parametrize(
        ("b0", "length_field"),
        [
            (0x89, 126),  # a ping announcing a 16-bit length: over 125 bytes
            (0x8A, 127),  # a pong announcing a 64-bit length
            (0x09, 0),  # a fragmented ping
            (0x83, 126),  # a reserved opcode
            (0xA2, 127),  # RSV2 without an extension
            (0x80, 126),  # a continuation without a message
        ],
    )
    def test_what_the_first_two_bytes_decide_fails_at_once(
        self, client: bool, b0: int, length_field: int
    ) -> None:
        """A violation visible in the first two bytes fails before the extended length and masking
        key arrive (wsproto does the same; found by the differential tests on truncated streams)."""
        conn = open_connection(client)
        conn.receive_data(bytes([b0, length_field | (0 if client else 0x80)]))
        assert error_of(conn) == 1002

    @ROLES
    def test_a_header_arriving_byte_by_byte(self, client: bool) -> None:
        conn = open_connection(client)
        data = peer_frame(conn, 0x2, b"x" * 70000) + peer_frame(conn, 0x1, b"y" * 300)
        events = []
        for i in range(0, 40):
            conn.receive_data(data[i : i + 1])
            events += conn.events()
        conn.receive_data(data[40:])
        events += conn.events()
        assert [(e.type, len(e.data)) for e in events] == [(WSMsgType.BINARY, 70000), (WSMsgType.TEXT, 300)]

    @ROLES
    def test_many_frames_in_one_read(self, client: bool) -> None:
        conn = open_connection(client)
        data = b"".join(peer_frame(conn, 0x1, str(i).encode()) for i in range(100))
        assert feed(conn, data) == [(WSMsgType.TEXT, str(i)) for i in range(100)]


class TestClientToServerMasking:
    """§5.1: "a client MUST mask all frames that it sends to the server ... The server MUST close the
    connection upon receiving a frame that is not masked ... A server MUST NOT mask any frames that
    it sends to the client. A client MUST close a connection if it detects a masked frame." (1002)."""

    def test_server_fails_an_unmasked_frame(self) -> None:
        conn = open_connection(client=False)
        conn.receive_data(raw_frame(0x1, b"hi"))
        assert error_of(conn) == 1002
        assert "unmasked frame from a client" in str(conn.exception)

    def test_client_fails_a_masked_frame(self) -> None:
        conn = open_connection(client=True)
        conn.receive_data(raw_frame(0x1, b"hi", mask=KEY))
        assert error_of(conn) == 1002
        assert "masked frame from a server" in str(conn.exception)

    @ROLES
    def test_masking_on_send_follows_the_role(self, client: bool) -> None:
        """§5.3: "The masking key is a 32-bit value chosen at random by the client ... The
        unpredictability of the masking key is essential"."""
        conn = open_connection(client)
        conn.send_text("a" * 10)
        conn.send_bytes(b"b" * 200)
        conn.ping(b"p")
        conn.pong(b"q")
        conn.close(1000, "bye")
        out = conn.data_to_send()
        frames = parse_frames(out)
        assert [f.masked for f in frames] == [client] * 5
        assert [f.payload for f in frames] == [b"a" * 10, b"b" * 200, b"p", b"q", b"\x03\xe8bye"]
        if client:
            keys = set()
            pos = 0
            for f in frames:
                hlen = 2 if len(f.payload) < 126 else 4
                keys.add(out[pos + hlen : pos + hlen + 4])
                pos += hlen + 4 + len(f.payload)
            assert len(keys) == 5  # a fresh key per frame

    @pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 100, 1001])
    def test_mask_is_an_involution(self, n: int) -> None:
        """§5.3: "octet i of the transformed data is the XOR of octet i of the original data with octet
        at index i modulo 4 of the masking key" — checked against a byte-by-byte oracle."""
        data = bytes((i * 7 + 3) % 256 for i in range(n))
        key = b"\x01\x80\xfe\x7f"
        assert mask(data, key) == _xor(data, key)
        assert mask(bytearray(data), bytearray(key)) == _xor(data, key)
        assert mask(memoryview(data), key) == _xor(data, key)
        assert mask(mask(data, key), key) == data


class TestControlFrames:
    """§5.5: "All control frames MUST have a payload length of 125 bytes or less and MUST NOT be
    fragmented."""

    @ROLES
    @pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
    def test_over_125_bytes_fails_with_1002(self, client: bool, opcode: int) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, opcode, b"x" * 126))
        assert error_of(conn) == 1002
        assert "over 125 bytes" in str(conn.exception)

    @ROLES
    @pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
    def test_fragmented_fails_with_1002(self, client: bool, opcode: int) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, opcode, b"", fin=False))
        assert error_of(conn) == 1002
        assert "fragmented control frame" in str(conn.exception)

    @ROLES
    def test_125_bytes_is_fine(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(autoping=False))
        assert feed(conn, peer_frame(conn, 0x9, b"x" * 125)) == [(WSMsgType.PING, b"x" * 125)]

    def test_sending_over_125_bytes_is_a_value_error(self) -> None:
        conn = open_connection(client=True)
        for call in (conn.ping, conn.pong):
            with pytest.raises(ValueError, match="125 bytes"):
                call(b"x" * 126)
        assert conn.data_to_send() == b""

    def test_send_frame_sends_raw_frames(self) -> None:
        conn = open_connection(client=False)
        conn.send_frame(b"abc", 0x2, fin=False)
        conn.send_frame(b"def", 0x0)
        conn.send_frame(b"p", 0x9)
        conn.send_frame(b"q", 0xA)
        conn.send_frame(b"\x03\xe8ok", 0x8)
        assert [(f.opcode, f.fin, f.payload) for f in parse_frames(conn.data_to_send())] == [
            (0x2, False, b"abc"),
            (0x0, True, b"def"),
            (0x9, True, b"p"),
            (0xA, True, b"q"),
            (0x8, True, b"\x03\xe8ok"),
        ]
        assert conn.close_sent

    @pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
    def test_send_frame_refuses_reserved_opcodes(self, opcode: int) -> None:
        with pytest.raises(ValueError, match="reserved"):
            open_connection(client=False).send_frame(b"", opcode)

    def test_send_frame_close_without_payload(self) -> None:
        conn = open_connection(client=False)
        conn.send_frame(b"", 0x8)
        (frame,) = parse_frames(conn.data_to_send())
        assert (frame.opcode, frame.payload) == (0x8, b"")


class TestEncodeFrame:
    """`encode_frame` is public (broadcast encodes once): it must agree with the §5.2 layout."""

    @pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
    @pytest.mark.parametrize("masked", [False, True])
    def test_layout(self, n: int, masked: bool) -> None:
        payload = b"z" * n
        out = encode_frame(0x2, payload, fin=False, rsv1=True, masked=masked)
        (frame,) = parse_frames(out)
        assert frame == (False, True, 0x2, payload, masked)

    def test_prepared_frames_are_queued_as_they_are(self) -> None:
        server = open_connection(client=False)
        frame = encode_frame(0x1, b"to all")
        server.send_prepared(frame)
        assert server.data_to_send() == frame
