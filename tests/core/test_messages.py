"""RFC 6455 §5.4 fragmentation, §5.6 data frames, §8.1 UTF-8 handling, and the size limits."""

from __future__ import annotations

import tracemalloc

import pytest

from wscore import (
    Connection,
    ConnectionClosed,
    InvalidStateError,
    MessageTooBig,
    State,
    WSConfig,
    WSMsgType,
)

from .helpers import KEY, error_of, open_connection, parse_frames, peer_frame, raw_frame

ROLES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])


class TestFragmentation:
    """§5.4: "A fragmented message consists of a single frame with the FIN bit clear and an opcode
    other than 0, followed by zero or more frames with the FIN bit clear and the opcode set to 0, and
    terminated by a single frame with the FIN bit set and an opcode of 0."""

    @ROLES
    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_reassembly(self, client: bool, opcode: int) -> None:
        conn = open_connection(client)
        parts = [b"ab", b"", b"cd", b"e"]
        data = peer_frame(conn, opcode, parts[0], fin=False)
        data += peer_frame(conn, 0x0, parts[1], fin=False)
        data += peer_frame(conn, 0x0, parts[2], fin=False)
        data += peer_frame(conn, 0x0, parts[3])
        conn.receive_data(data)
        expected = "abcde" if opcode == 1 else b"abcde"
        assert [(e.type, e.data) for e in conn.events()] == [(WSMsgType(opcode), expected)]

    @ROLES
    def test_control_frames_may_be_injected_in_the_middle(self, client: bool) -> None:
        """"Control frames MAY be injected in the middle of a fragmented message.""" ""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x1, b"Hel", fin=False) + peer_frame(conn, 0x9, b"p1"))
        assert conn.events() == []
        (pong,) = parse_frames(conn.data_to_send())
        assert (pong.opcode, pong.payload) == (0xA, b"p1")
        conn.receive_data(peer_frame(conn, 0xA, b"unsolicited") + peer_frame(conn, 0x0, b"lo"))
        assert [(e.type, e.data) for e in conn.events()] == [(WSMsgType.TEXT, "Hello")]

    @ROLES
    def test_control_frames_interleaved_are_delivered_in_order_without_autoping(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(autoping=False))
        data = peer_frame(conn, 0x2, b"a", fin=False) + peer_frame(conn, 0x9, b"x")
        data += peer_frame(conn, 0x0, b"b", fin=False) + peer_frame(conn, 0xA, b"y")
        data += peer_frame(conn, 0x0, b"c")
        conn.receive_data(data)
        assert [(e.type, e.data) for e in conn.events()] == [
            (WSMsgType.PING, b"x"),
            (WSMsgType.PONG, b"y"),
            (WSMsgType.BINARY, b"abc"),
        ]
        assert conn.data_to_send() == b""  # no automatic pong

    @ROLES
    def test_a_continuation_without_a_message_fails_with_1002(self, client: bool) -> None:
        """ "a continuation frame ... MUST be preceded by a frame with the FIN bit clear"."""
        for fin in (True, False):
            conn = open_connection(client)
            conn.receive_data(peer_frame(conn, 0x0, b"stray", fin=fin))
            assert error_of(conn) == 1002
            assert "continuation frame without a message" in str(conn.exception)

    @ROLES
    @pytest.mark.parametrize(("first", "second"), [(0x1, 0x1), (0x1, 0x2), (0x2, 0x1), (0x2, 0x2)])
    def test_a_new_data_frame_inside_a_message_fails_with_1002(
        self, client: bool, first: int, second: int
    ) -> None:
        """ "The fragments of one message MUST NOT be interleaved between the fragments of another
        message unless an extension has been negotiated"."""
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, first, b"a", fin=False) + peer_frame(conn, second, b"b"))
        assert error_of(conn) == 1002
        assert "new data frame inside a fragmented message" in str(conn.exception)

    @ROLES
    @pytest.mark.parametrize("stray", ["continuation", "new message"])
    def test_out_of_order_frames_fail_on_their_header(self, client: bool, stray: str) -> None:
        """The order violation is known from the header alone: fail then, without buffering the
        payload (wsproto does the same; the differential tests compare truncated streams)."""
        conn = open_connection(client)
        if stray == "new message":
            conn.receive_data(peer_frame(conn, 0x2, b"a", fin=False))
        frame = peer_frame(conn, 0x0 if stray == "continuation" else 0x2, b"x" * 1000)
        conn.receive_data(frame[:8])
        assert error_of(conn) == 1002

    @ROLES
    def test_after_a_message_ends_a_continuation_is_stray_again(self, client: bool) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x2, b"a", fin=False) + peer_frame(conn, 0x0, b"b"))
        assert [e.data for e in conn.events()] == [b"ab"]
        conn.receive_data(peer_frame(conn, 0x0, b"c"))
        assert error_of(conn) == 1002


class TestSendingFragments:
    """Sending a message in fragments: `send_text/send_bytes(..., fin=False)` then the last part."""

    @ROLES
    def test_text_and_binary_fragments(self, client: bool) -> None:
        conn = open_connection(client)
        conn.send_text("a", fin=False)
        conn.ping(b"between")
        conn.send_text("b", fin=False)
        conn.send_text("c")
        conn.send_bytes(b"x", fin=False)
        conn.send_bytes(b"y")
        frames = parse_frames(conn.data_to_send())
        assert [(f.opcode, f.fin, f.payload) for f in frames] == [
            (0x1, False, b"a"),
            (0x9, True, b"between"),
            (0x0, False, b"b"),
            (0x0, True, b"c"),
            (0x2, False, b"x"),
            (0x0, True, b"y"),
        ]

    def test_the_other_type_cannot_interrupt_a_fragmented_message(self) -> None:
        conn = open_connection(client=False)
        conn.send_text("a", fin=False)
        with pytest.raises(InvalidStateError, match="other type"):
            conn.send_bytes(b"b")
        with pytest.raises(InvalidStateError, match="fragmented message"):
            conn.send_prepared(raw_frame(0x1, b"x"))

    @ROLES
    def test_a_streamed_message_is_continued_only_by_send_fragment(self, client: bool) -> None:
        """`send_fragment` (a driver's streamed send): a `send_text`/`send_bytes` of the application
        meanwhile raises instead of becoming the message's next or last frame; pings go between."""
        conn = open_connection(client)
        conn.send_fragment("a", False)
        with pytest.raises(InvalidStateError, match="streamed message"):
            conn.send_text("not part of it")
        with pytest.raises(InvalidStateError, match="streamed message"):
            conn.send_bytes(b"nor this", fin=False)
        conn.ping(b"between")
        conn.send_fragment("b", False)
        conn.send_fragment("", True)
        conn.send_text("after")
        conn.send_bytes(b"x", fin=False)
        with pytest.raises(InvalidStateError, match="fragmented message"):
            conn.send_fragment(b"y", True)
        frames = parse_frames(conn.data_to_send())
        assert [(f.opcode, f.fin, f.payload) for f in frames] == [
            (0x1, False, b"a"),
            (0x9, True, b"between"),
            (0x0, False, b"b"),
            (0x0, True, b""),
            (0x1, True, b"after"),
            (0x2, False, b"x"),
        ]

    def test_a_client_cannot_send_prepared_frames(self) -> None:
        with pytest.raises(InvalidStateError, match="mask"):
            open_connection(client=True).send_prepared(raw_frame(0x1, b"x"))

    def test_close_ends_a_fragmented_message_being_sent(self) -> None:
        """After our close nothing else is sent (§5.5.1), so the unfinished message is abandoned."""
        conn = open_connection(client=False)
        conn.send_text("a", fin=False)
        conn.close()
        with pytest.raises(ConnectionClosed):
            conn.send_text("b")


def utf8_cases() -> list[tuple[str, list[bytes], bool]]:
    """(name, fragments, valid): Autobahn 6.x-style sequences, split across fragments."""
    smile = "😀".encode()
    return [
        ("ascii", [b"hello"], True),
        ("empty", [b""], True),
        ("2-byte split", ["é".encode()[:1], "é".encode()[1:]], True),
        ("4-byte split 1+3", [smile[:1], smile[1:]], True),
        ("4-byte split per byte", [smile[i : i + 1] for i in range(4)], True),
        ("max code point", ["\U0010ffff".encode()], True),
        ("overlong /", [b"\xc0\xaf"], False),
        ("surrogate", [b"\xed\xa0\x80"], False),
        ("over U+10FFFF", [b"\xf4\x90\x80\x80"], False),
        ("lone continuation", [b"a\x80"], False),
        ("0xff", [b"\xff"], False),
        ("truncated at the end", [b"ok", smile[:3]], False),
        ("invalid in a later fragment", [b"ok", b"ok", b"\xfe"], False),
        ("split surrogate", [b"\xed", b"\xa0\x80"], False),
    ]


class TestUtf8:
    """§8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte stream
    is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket Connection_" (1007,
    §7.4.1)."""

    @ROLES
    @pytest.mark.parametrize(("name", "fragments", "valid"), utf8_cases(), ids=[c[0] for c in utf8_cases()])
    @pytest.mark.parametrize("fragment_mode", [False, True], ids=["messages", "fragments"])
    def test_text_is_validated_across_fragments(
        self, client: bool, name: str, fragments: list[bytes], valid: bool, fragment_mode: bool
    ) -> None:
        conn = open_connection(client, WSConfig(fragments=fragment_mode))
        data = b"".join(
            peer_frame(conn, 0x1 if i == 0 else 0x0, part, fin=i == len(fragments) - 1)
            for i, part in enumerate(fragments)
        )
        conn.receive_data(data)
        events = conn.events()
        if valid:
            text = "".join(e.data for e in events if e.type in (WSMsgType.TEXT, WSMsgType.CONTINUATION))
            assert text == b"".join(fragments).decode()
            assert conn.state is State.OPEN
        else:
            assert [e.type for e in events][-2:] == [WSMsgType.ERROR, WSMsgType.CLOSED]
            assert conn.close_code == 1007
            assert "not valid UTF-8" in str(conn.exception)

    @ROLES
    @pytest.mark.parametrize(
        ("prefix", "bad"),
        [
            (b"", b"\xff"),
            (b"abc", b"\xc0"),
            (b"\xce", b"\x41"),
            (b"12345678", b"\xf5"),
            (b"\xce\xba", b"\xf4\x90"),  # Autobahn 6.4.1: over U+10FFFF, known at its 2nd byte
            # CPython's codec rejects a surrogate only at its 3rd byte: that is as fast as we fail.
            (b"abcde", b"\xed\xa0\x80"),
        ],
    )
    def test_fail_fast_inside_a_partly_arrived_frame(self, client: bool, prefix: bytes, bad: bytes) -> None:
        """Autobahn 6.4: the invalid byte must be noticed as soon as it arrives, even though the frame
        (declared 1000 bytes long) is far from complete — the masked case checks the key offset."""
        conn = open_connection(client)
        frame = peer_frame(conn, 0x1, prefix + bad + b"x" * (1000 - len(prefix) - len(bad)))
        header = 4 + (4 if not client else 0)
        cut = header + len(prefix)
        for i in range(cut):
            conn.receive_data(frame[i : i + 1])
        assert conn.state is State.OPEN
        conn.receive_data(frame[cut : cut + len(bad)])
        assert error_of(conn) == 1007

    @ROLES
    def test_fail_fast_in_a_continuation_frame(self, client: bool) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x1, b"ok\xce", fin=False))
        assert conn.state is State.OPEN
        frame = peer_frame(conn, 0x0, b"\xa9" + b"y" * 200 + b"\x80" + b"z" * 100)
        header = 4 + (4 if not client else 0)
        conn.receive_data(frame[: header + 201])  # é completed, then 200 valid bytes
        assert conn.state is State.OPEN
        conn.receive_data(frame[header + 201 : header + 202])
        assert error_of(conn) == 1007

    @ROLES
    def test_a_partial_frame_checked_twice_does_not_fail_twice(self, client: bool) -> None:
        """The partial check keeps its position: valid text arriving in many pieces is accepted."""
        conn = open_connection(client)
        text = "ünïcödé " * 50
        frame = peer_frame(conn, 0x1, text.encode())
        for i in range(0, len(frame), 7):
            conn.receive_data(frame[i : i + 7])
        assert [(e.type, e.data) for e in conn.events()] == [(WSMsgType.TEXT, text)]

    def test_binary_is_not_validated(self) -> None:
        conn = open_connection(client=True)
        conn.receive_data(raw_frame(0x2, b"\xff\xfe", length=10))
        assert conn.state is State.OPEN


class TestLimits:
    """max_message_size and max_frame_size: close 1009 (§7.4.1 "a message that is too big for it to
    process"), checked on the frame header, before the payload is buffered."""

    @ROLES
    def test_a_frame_over_the_limit_fails_on_its_header(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(max_message_size=1000))
        header = peer_frame(conn, 0x2, b"", length=1001, length_form=16)
        conn.receive_data(header)  # only the header: no payload was buffered
        assert error_of(conn) == 1009
        assert isinstance(conn.exception, MessageTooBig)
        assert conn.close_code == 1009
        (close,) = parse_frames(conn.data_to_send())
        assert close.payload[:2] == (1009).to_bytes(2, "big")

    @ROLES
    def test_a_huge_declared_length_fails_at_once(self, client: bool) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x2, b"", length=2**62, length_form=64))
        assert error_of(conn) == 1009

    @ROLES
    def test_exactly_the_limit_is_fine(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(max_message_size=1000))
        conn.receive_data(peer_frame(conn, 0x2, b"a" * 600, fin=False) + peer_frame(conn, 0x0, b"b" * 400))
        assert [len(e.data) for e in conn.events()] == [1000]

    @ROLES
    def test_fragments_add_up(self, client: bool) -> None:
        """The limit is on the message: fragments that each fit but together do not fail when the
        header of the one that crosses the limit arrives."""
        conn = open_connection(client, WSConfig(max_message_size=1000))
        conn.receive_data(peer_frame(conn, 0x1, b"a" * 600, fin=False))
        conn.receive_data(peer_frame(conn, 0x0, b"", length=401))
        assert error_of(conn) == 1009

    @ROLES
    def test_fragment_mode_bounds_each_frame_not_the_message(self, client: bool) -> None:
        """In fragment mode nothing holds the message: frames that add up past `max_message_size`
        are delivered (the reader bounds what it joins), and each frame is bounded by
        `max_frame_size`, which defaults to `max_message_size`."""
        conn = open_connection(client, WSConfig(max_message_size=1000, fragments=True))
        conn.receive_data(peer_frame(conn, 0x1, b"a" * 600, fin=False))
        conn.receive_data(peer_frame(conn, 0x0, b"b" * 600, fin=False))
        conn.receive_data(peer_frame(conn, 0x0, b"c" * 1000))
        assert [(e.type, len(e.data), e.extra) for e in conn.events()] == [
            (WSMsgType.TEXT, 600, False),
            (WSMsgType.CONTINUATION, 600, False),
            (WSMsgType.CONTINUATION, 1000, True),
        ]
        conn.receive_data(peer_frame(conn, 0x2, b"", length=1001))
        assert error_of(conn) == 1009

    @ROLES
    def test_max_frame_size(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(max_frame_size=100, max_message_size=None))
        conn.receive_data(peer_frame(conn, 0x2, b"a" * 100, fin=False) + peer_frame(conn, 0x0, b"b" * 100))
        assert [len(e.data) for e in conn.events()] == [200]
        conn.receive_data(peer_frame(conn, 0x2, b"", length=101))
        assert error_of(conn) == 1009
        assert "over the limit of 100" in str(conn.exception)

    def test_no_limit(self) -> None:
        conn = open_connection(client=True, config=WSConfig(max_message_size=None))
        conn.receive_data(raw_frame(0x2, b"x" * 5_000_000))
        assert [len(e.data) for e in conn.events()] == [5_000_000]

    def test_a_new_message_does_not_inherit_the_previous_size(self) -> None:
        conn = open_connection(client=True, config=WSConfig(max_message_size=100))
        for _ in range(5):
            conn.receive_data(raw_frame(0x2, b"a" * 60, fin=False) + raw_frame(0x0, b"b" * 40))
        assert [len(e.data) for e in conn.events()] == [100] * 5


class TestFragmentsCostTheirSize:
    """A message's fragments are held at about their payload's size, however small they are: a peer
    cannot make max_message_size cost tens of times as much with 1-byte fragments, nor grow memory
    without end with empty ones (which never reach the limit)."""

    @staticmethod
    def held(conn: Connection, frames: bytes, reads: int) -> int:
        """Peak bytes allocated while `conn` receives `frames` `reads` times."""
        tracemalloc.start()
        try:
            for _ in range(reads):
                conn.receive_data(frames)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    @ROLES
    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_empty_fragments_hold_nothing(self, client: bool, opcode: int) -> None:
        conn = open_connection(client, WSConfig(max_message_size=1000))
        conn.receive_data(peer_frame(conn, opcode, b"a", fin=False))
        empty = peer_frame(conn, 0x0, b"", fin=False) * 10_000
        peak = self.held(conn, empty, 20)  # 200,000 fragments
        assert conn.state is State.OPEN
        assert peak < 2 * len(empty)  # the read and its leftover, not 8 bytes a fragment
        conn.receive_data(peer_frame(conn, 0x0, b"b"))
        assert [e.data for e in conn.events()] == ["ab" if opcode == 0x1 else b"ab"]

    @ROLES
    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_one_byte_fragments_cost_about_their_size(self, client: bool, opcode: int) -> None:
        conn = open_connection(client, WSConfig(max_message_size=20_000))
        conn.receive_data(peer_frame(conn, opcode, b"a", fin=False))
        tiny = b"".join(peer_frame(conn, 0x0, bytes((0x61 + i % 26,)), fin=False) for i in range(1000))
        peak = self.held(conn, tiny, 19)  # 19,001 bytes in 1-byte fragments
        assert conn.state is State.OPEN
        assert peak < 2 * len(tiny) + 2 * 19_001  # before: about 60 bytes a fragment, 1.1 MB
        conn.receive_data(peer_frame(conn, 0x0, b"!"))
        (message,) = conn.events()
        expected = "a" + "".join(chr(0x61 + i % 26) for i in range(1000)) * 19 + "!"
        assert message.data == (expected if opcode == 0x1 else expected.encode())

    @ROLES
    def test_the_limit_still_counts_every_byte(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(max_message_size=1000))
        conn.receive_data(peer_frame(conn, 0x2, b"a", fin=False))
        conn.receive_data(peer_frame(conn, 0x0, b"b", fin=False) * 999)
        assert conn.state is State.OPEN
        conn.receive_data(peer_frame(conn, 0x0, b"c", fin=False))
        assert error_of(conn) == 1009


class TestFragmentMode:
    """config fragments=True: each data frame is delivered as it arrives — TEXT/BINARY for the first,
    CONTINUATION after, `extra` True on the frame that ends the message."""

    @ROLES
    def test_binary_fragments(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(fragments=True))
        conn.receive_data(peer_frame(conn, 0x2, b"a", fin=False) + peer_frame(conn, 0x0, b"b", fin=False))
        conn.receive_data(peer_frame(conn, 0x0, b"c") + peer_frame(conn, 0x2, b"whole"))
        assert [(e.type, e.data, e.extra) for e in conn.events()] == [
            (WSMsgType.BINARY, b"a", False),
            (WSMsgType.CONTINUATION, b"b", False),
            (WSMsgType.CONTINUATION, b"c", True),
            (WSMsgType.BINARY, b"whole", True),
        ]

    @ROLES
    def test_text_fragments_are_decoded_incrementally(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(fragments=True))
        e_acute = "é".encode()
        conn.receive_data(peer_frame(conn, 0x1, b"caf" + e_acute[:1], fin=False))
        conn.receive_data(peer_frame(conn, 0x0, e_acute[1:]))
        assert [(e.type, e.data, e.extra) for e in conn.events()] == [
            (WSMsgType.TEXT, "caf", False),
            (WSMsgType.CONTINUATION, "é", True),
        ]


class TestDataAfterErrors:
    """After a failure (§7.1.7) the connection reads nothing more and sends nothing more."""

    @ROLES
    def test_nothing_after_a_failure(self, client: bool) -> None:
        conn = open_connection(client)
        conn.receive_data(peer_frame(conn, 0x3, b"") + peer_frame(conn, 0x1, b"lost"))
        assert error_of(conn) == 1002
        conn.data_to_send()
        conn.receive_data(peer_frame(conn, 0x1, b"also lost"))
        assert conn.events() == []
        assert conn.data_to_send() == b""
        with pytest.raises(ConnectionClosed) as info:
            conn.send_text("x")
        assert info.value.code == 1002
        assert conn.close_transport

    @ROLES
    def test_a_failed_connection_keeps_nothing_of_what_it_read(self, client: bool) -> None:
        """`exception` carries no traceback: the parser's frames in it would keep the failing read and
        the message so far alive for as long as the application keeps the connection."""
        conn = open_connection(client, WSConfig(max_message_size=None))
        tracemalloc.start()
        try:
            read = peer_frame(conn, 0x2, b"x" * 1_000_000, fin=False) + peer_frame(conn, 0x3, b"")
            conn.receive_data(read)
            del read
            kept = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert error_of(conn) == 1002
        assert conn.exception is not None
        assert conn.exception.__traceback__ is None
        assert kept < 100_000  # before: the 1 MB read and the payload, 2 MB

    def test_a_failure_reason_is_cut_to_fit_a_close_frame(self) -> None:
        conn = open_connection(client=False)
        conn.receive_data(raw_frame(0x1, b"x"))  # unmasked: 1002 with a long reason
        (close,) = parse_frames(conn.data_to_send())
        assert len(close.payload) <= 125
        close.payload[2:].decode()

    def test_client_frames_with_the_fixed_key_decode(self) -> None:
        conn = open_connection(client=False)
        conn.receive_data(raw_frame(0x1, b"Hello", mask=KEY))
        assert [e.data for e in conn.events()] == ["Hello"]
