"""RFC 7692: permessage-deflate — the §7.2.3 examples, parameters, limits and RSV1 placement."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

import wscore.frames
from wscore import (
    Connection,
    DeflateOptions,
    MessageTooBig,
    PerMessageDeflate,
    ProtocolError,
    State,
    WSConfig,
    WSMsgType,
)

from .helpers import KEY, ConnectionPair, error_of, open_connection, parse_frames, peer_frame

ROLES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])


def deflated(data: bytes, wbits: int = 15) -> bytes:
    """Compress like RFC 7692 §7.2.1: raw deflate, sync flush, tail removed."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def pair_with(
    client: DeflateOptions | None, server: DeflateOptions | None, **config: object
) -> ConnectionPair:
    return ConnectionPair(
        client_config=WSConfig(compress=client, **config),  # type: ignore[arg-type]
        server_config=WSConfig(compress=server, **config),  # type: ignore[arg-type]
    )


class _FixedKeys:
    def next(self) -> bytes:
        return KEY


class TestExamples:
    """§7.2.3 Examples."""

    HELLO = bytes([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    HELLO_AGAIN = bytes([0xC1, 0x05, 0xF2, 0x00, 0x11, 0x00, 0x00])
    HELLO_STORED = bytes([0xC1, 0x0B, 0x00, 0x05, 0x00, 0xFA, 0xFF, 0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x00])
    HELLO_BFINAL = bytes([0xC1, 0x08, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])

    def test_a_message_compressed_using_1_compressed_deflate_block(self) -> None:
        """§7.2.3.1: "Hello" as 0xc1 0x07 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00 — received and sent."""
        client = open_connection(client=True, deflate=PerMessageDeflate())
        client.receive_data(self.HELLO)
        assert [(e.type, e.data) for e in client.events()] == [(WSMsgType.TEXT, "Hello")]
        server = open_connection(client=False, deflate=PerMessageDeflate())
        server.send_text("Hello")
        assert server.data_to_send() == self.HELLO

    def test_the_unmasked_fragments_of_1_compressed_message(self) -> None:
        """§7.2.3.1: "0x41 0x03 0xf2 0x48 0xcd" then "0x80 0x04 0xc9 0xc9 0x07 0x00"."""
        client = open_connection(client=True, deflate=PerMessageDeflate())
        client.receive_data(bytes([0x41, 0x03, 0xF2, 0x48, 0xCD]))
        client.receive_data(bytes([0x80, 0x04, 0xC9, 0xC9, 0x07, 0x00]))
        assert [(e.type, e.data) for e in client.events()] == [(WSMsgType.TEXT, "Hello")]

    def test_sharing_the_lz77_sliding_window(self) -> None:
        """§7.2.3.2: with context takeover the second "Hello" is 0xc1 0x05 0xf2 0x00 0x11 0x00 0x00."""
        client = open_connection(client=True, deflate=PerMessageDeflate())
        client.receive_data(self.HELLO + self.HELLO_AGAIN)
        assert [e.data for e in client.events()] == ["Hello", "Hello"]
        server = open_connection(client=False, deflate=PerMessageDeflate())
        server.send_text("Hello")
        server.send_text("Hello")
        assert server.data_to_send() == self.HELLO + self.HELLO_AGAIN

    def test_a_deflate_block_with_no_compression(self) -> None:
        """§7.2.3.3: 0xc1 0x0b 0x00 0x05 0x00 0xfa 0xff 0x48 0x65 0x6c 0x6c 0x6f 0x00 (level 0)."""
        client = open_connection(client=True, deflate=PerMessageDeflate())
        client.receive_data(self.HELLO_STORED)
        assert [e.data for e in client.events()] == ["Hello"]
        server = open_connection(client=False, deflate=PerMessageDeflate(level=0))
        server.send_text("Hello")
        assert server.data_to_send() == self.HELLO_STORED

    def test_a_deflate_block_with_bfinal_set(self) -> None:
        """§7.2.3.4: 0xc1 0x08 0xf3 0x48 0xcd 0xc9 0xc9 0x07 0x00 0x00 — and the messages after it
        still decode (the ended deflate stream is not reused)."""
        client = open_connection(client=True, deflate=PerMessageDeflate())
        client.receive_data(self.HELLO_BFINAL + self.HELLO_BFINAL + self.HELLO + self.HELLO_AGAIN)
        assert [e.data for e in client.events()] == ["Hello"] * 4
        assert client.state is State.OPEN

    def test_two_deflate_blocks_in_one_message(self) -> None:
        """§7.2.3.5: 0xc1 0x0d 0xf2 0x48 0x05 0x00 0x00 0x00 0xff 0xff 0xca 0xc9 0xc9 0x07 0x00."""
        client = open_connection(client=True, deflate=PerMessageDeflate())
        client.receive_data(bytes.fromhex("c10df24805000000ffffcac9c90700"))
        assert [e.data for e in client.events()] == ["Hello"]

    def test_a_masked_compressed_message(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(wscore.frames, "mask_keys", _FixedKeys())
        client = open_connection(client=True, deflate=PerMessageDeflate())
        client.send_text("Hello")
        out = client.data_to_send()
        assert out[:2] == b"\xc1\x87" and out[2:6] == KEY
        server = open_connection(client=False, deflate=PerMessageDeflate())
        server.receive_data(out)
        assert [e.data for e in server.events()] == ["Hello"]


def round_trip(pair: ConnectionPair, messages: list[str | bytes]) -> None:
    """Send every message both ways and check that each arrives intact."""
    for sender, to_peer in ((pair.client, pair.to_server), (pair.server, pair.to_client)):
        for message in messages:
            if isinstance(message, str):
                sender.send_text(message)
            else:
                sender.send_bytes(message)
        assert [e.data for e in to_peer()] == messages


MESSAGES: list[str | bytes] = [
    "Hello",
    "Hello",
    b"\x00" * 10_000,
    "lorem ipsum dolor sit amet " * 100,
    b"",
    "",
    bytes(range(256)) * 40,
]


class TestNegotiatedParameters:
    """§7.1: server_no_context_takeover, client_no_context_takeover, server_max_window_bits,
    client_max_window_bits — every combination must round-trip, and must actually take effect."""

    @pytest.mark.parametrize(
        "options",
        [
            DeflateOptions(),
            DeflateOptions(server_no_context_takeover=True),
            DeflateOptions(client_no_context_takeover=True),
            DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
            *[DeflateOptions(server_max_window_bits=b) for b in range(8, 16)],
            *[DeflateOptions(client_max_window_bits=b) for b in range(8, 16)],
            DeflateOptions(server_max_window_bits=8, client_max_window_bits=8),
            DeflateOptions(level=1, mem_level=1),
            DeflateOptions(level=9, mem_level=9),
            DeflateOptions(min_size=100),
        ],
        ids=repr,
    )
    def test_round_trip(self, options: DeflateOptions) -> None:
        pair = pair_with(options, options)
        assert pair.client.deflate is not None and pair.server.deflate is not None
        round_trip(pair, MESSAGES)

    @pytest.mark.parametrize("side", ["server", "client"])
    def test_no_context_takeover_resets_the_compressor(self, side: str) -> None:
        """§7.1.1: with *_no_context_takeover that side compresses each message on its own."""
        options = DeflateOptions(**{f"{side}_no_context_takeover": True})
        pair = pair_with(options, DeflateOptions())
        sender, other = (pair.server, pair.client) if side == "server" else (pair.client, pair.server)
        sizes = {}
        for conn in (sender, other):
            conn.send_text("Hello, world. " * 10)
            conn.send_text("Hello, world. " * 10)
            frames = parse_frames(conn.data_to_send())
            sizes[conn is sender] = [len(f.payload) for f in frames]
        assert sizes[True][0] == sizes[True][1]  # the second message could not refer to the first
        assert sizes[False][1] < sizes[False][0]  # the other side keeps its context

    @pytest.mark.parametrize("bits", range(9, 16))
    def test_the_window_limit_is_applied_to_our_compressor(self, bits: int) -> None:
        """§7.1.2.1: server_max_window_bits limits the server's LZ77 window; a peer inflating with a
        window of exactly that size must be able to read every message."""
        pair = pair_with(DeflateOptions(server_max_window_bits=bits), DeflateOptions())
        assert pair.server.deflate is not None
        assert pair.server.deflate.local_max_window_bits == bits
        inflater = zlib.decompressobj(-bits)
        payload = bytes(range(256)) * 200 + b"x" * 5000 + bytes(range(256)) * 200
        for _ in range(2):
            pair.server.send_bytes(payload)
            (frame,) = parse_frames(pair.server.data_to_send())
            assert frame.rsv1
            assert inflater.decompress(frame.payload + b"\x00\x00\xff\xff") == payload

    @pytest.mark.parametrize("side", ["server", "client"])
    def test_a_window_of_8_bits_sends_uncompressed(self, side: str) -> None:
        """zlib cannot deflate with a 256-byte window, so the side limited to 8 bits sends its
        messages uncompressed (RFC 7692 §6.1 allows any message to go uncompressed); the other side
        still compresses, and both read everything."""
        options = DeflateOptions(**{f"{side}_max_window_bits": 8})  # type: ignore[arg-type]
        pair = pair_with(options, DeflateOptions())
        limited, other = (pair.server, pair.client) if side == "server" else (pair.client, pair.server)
        assert limited.deflate is not None and not limited.deflate.compresses
        limited.send_text("a" * 1000)
        other.send_text("a" * 1000)
        limited_frames = parse_frames(limited.data_to_send())
        other_frames = parse_frames(other.data_to_send())
        assert [f.rsv1 for f in limited_frames] == [False]
        assert [f.rsv1 for f in other_frames] == [True]
        limited.send_text("b" * 1000, compress=True)  # even when asked to: it cannot
        assert [f.rsv1 for f in parse_frames(limited.data_to_send())] == [False]

    def test_a_peer_window_of_8_bits_is_inflated(self) -> None:
        """A peer whose zlib can produce 8-bit windows (or uses 9 as zlib does) is read with 9."""
        conn = open_connection(client=True, deflate=PerMessageDeflate(remote_max_window_bits=8))
        conn.receive_data(peer_frame(conn, 0x1, deflated(b"abc" * 100, 9), rsv1=True))
        assert [e.data for e in conn.events()] == ["abc" * 100]


class TestCompressionPolicy:
    """Compression level, min_size and the per-message `compress` argument."""

    def test_min_size(self) -> None:
        pair = pair_with(DeflateOptions(min_size=10), DeflateOptions(min_size=10))
        pair.client.send_text("short")
        pair.client.send_text("long enough")
        assert [f.rsv1 for f in parse_frames(pair.client.data_to_send())] == [False, True]

    def test_per_message_compress_argument(self) -> None:
        pair = pair_with(DeflateOptions(min_size=10), DeflateOptions())
        pair.client.send_bytes(b"x" * 100, compress=False)
        pair.client.send_bytes(b"x", compress=True)
        pair.client.send_bytes(b"x" * 100)
        frames = parse_frames(pair.client.data_to_send())
        assert [f.rsv1 for f in frames] == [False, True, True]

    def test_level_changes_the_output(self) -> None:
        text = "".join(chr(97 + (i * i) % 26) for i in range(5000))
        sizes = []
        for level in (0, 1, 9):
            conn = open_connection(client=False, deflate=PerMessageDeflate(level=level))
            conn.send_text(text)
            sizes.append(len(conn.data_to_send()))
        assert sizes[0] > len(text) > sizes[1] >= sizes[2]

    def test_control_frames_are_never_compressed(self) -> None:
        conn = open_connection(client=False, deflate=PerMessageDeflate())
        conn.ping(b"x" * 100)
        conn.close(1000, "y" * 100)
        assert [(f.opcode, f.rsv1) for f in parse_frames(conn.data_to_send())] == [(0x9, False), (0x8, False)]


class TestRsv1:
    """§6: "the "Per-Message Compressed" bit ... is set on the first frame of a message only"."""

    @ROLES
    def test_only_the_first_frame_of_a_sent_message_has_rsv1(self, client: bool) -> None:
        conn = open_connection(client, deflate=PerMessageDeflate())
        conn.send_text("part one, ", fin=False)
        conn.send_text("part two, ", fin=False)
        conn.send_text("the end")
        frames = parse_frames(conn.data_to_send())
        assert [(f.opcode, f.rsv1, f.fin) for f in frames] == [
            (1, True, False),
            (0, False, False),
            (0, False, True),
        ]
        inflater = zlib.decompressobj(-15)
        text = b"".join(inflater.decompress(f.payload) for f in frames) + inflater.decompress(
            b"\x00\x00\xff\xff"
        )
        assert text == b"part one, part two, the end"

    @ROLES
    def test_an_uncompressed_fragmented_message_keeps_rsv1_clear(self, client: bool) -> None:
        conn = open_connection(client, deflate=PerMessageDeflate())
        conn.send_bytes(b"a", fin=False, compress=False)
        conn.send_bytes(b"b")
        assert [f.rsv1 for f in parse_frames(conn.data_to_send())] == [False, False]

    @ROLES
    def test_rsv1_on_a_continuation_fails_with_1002(self, client: bool) -> None:
        conn = open_connection(client, deflate=PerMessageDeflate())
        data = deflated(b"Hello")
        conn.receive_data(peer_frame(conn, 0x1, data[:2], fin=False, rsv1=True))
        conn.receive_data(peer_frame(conn, 0x0, data[2:], rsv1=True))
        assert error_of(conn) == 1002

    @ROLES
    def test_a_received_fragmented_compressed_message(self, client: bool) -> None:
        conn = open_connection(client, deflate=PerMessageDeflate())
        data = deflated("Grüße ".encode() * 50)
        parts = [data[i : i + 7] for i in range(0, len(data), 7)]
        stream = b"".join(
            peer_frame(conn, 0x1 if i == 0 else 0x0, part, fin=i == len(parts) - 1, rsv1=i == 0)
            for i, part in enumerate(parts)
        )
        conn.receive_data(stream)
        assert [e.data for e in conn.events()] == ["Grüße " * 50]

    @ROLES
    @pytest.mark.parametrize("opcode", [0x1, 0x2])
    def test_fragments_that_inflate_over_many_steps(self, client: bool, opcode: int) -> None:
        """Fragments whose output spans several 16 KiB inflation steps are kept step by step (a
        2- or 3-byte character cut between steps and between fragments included), under a limit."""
        conn = open_connection(client, WSConfig(max_message_size=1_000_000), deflate=PerMessageDeflate())
        text = "".join(f"{i}:Grüße €𝄞 " for i in range(20_000))
        raw = text.encode()
        data = deflated(raw)
        cut = len(data) // 3
        parts = [data[:cut], data[cut : 2 * cut], data[2 * cut :]]
        conn.receive_data(
            b"".join(
                peer_frame(conn, opcode if i == 0 else 0x0, part, fin=i == 2, rsv1=i == 0)
                for i, part in enumerate(parts)
            )
        )
        (event,) = conn.events()
        assert event.data == (text if opcode == 0x1 else raw)

    @ROLES
    def test_fragments_over_the_limit_fail_with_1009(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(max_message_size=100_000), deflate=PerMessageDeflate())
        data = deflated(b"x" * 300_000)
        half = len(data) // 2
        conn.receive_data(
            peer_frame(conn, 0x2, data[:half], fin=False, rsv1=True) + peer_frame(conn, 0x0, data[half:])
        )
        assert error_of(conn) == 1009

    @ROLES
    def test_compressed_fragments_in_fragment_mode(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(fragments=True), deflate=PerMessageDeflate())
        data = deflated(b"x" * 1000)
        conn.receive_data(
            peer_frame(conn, 0x2, data[:3], fin=False, rsv1=True) + peer_frame(conn, 0x0, data[3:])
        )
        events = conn.events()
        assert [e.type for e in events] == [WSMsgType.BINARY, WSMsgType.CONTINUATION]
        assert b"".join(e.data for e in events) == b"x" * 1000
        assert [e.extra for e in events] == [False, True]

    @ROLES
    def test_fragment_mode_inflates_a_frame_step_by_step(self, client: bool) -> None:
        """Fragment mode delivers a compressed frame as its inflation steps (at most 16 KiB each), so
        a reader streaming it never holds the inflated frame; the frame's inflated size is bounded by
        `max_frame_size`, and text is decoded across steps."""
        conn = open_connection(
            client, WSConfig(fragments=True, max_frame_size=1 << 20), deflate=PerMessageDeflate()
        )
        text = "é" * 300_000  # 600 000 bytes: characters cut between steps
        conn.receive_data(peer_frame(conn, 0x1, deflated(text.encode()), rsv1=True))
        events = conn.events()
        assert len(events) > 30
        assert max(len(e.data) for e in events) <= 16 * 1024
        assert [e.type for e in events] == [WSMsgType.TEXT] + [WSMsgType.CONTINUATION] * (len(events) - 1)
        assert [e.extra for e in events] == [False] * (len(events) - 1) + [True]
        assert "".join(e.data for e in events) == text
        bomb = deflated(b"\0" * (1 << 20 + 1))
        conn.receive_data(peer_frame(conn, 0x2, bomb, rsv1=True))
        assert error_of(conn) == 1009

    @ROLES
    def test_invalid_deflate_data_fails_with_1002(self, client: bool) -> None:
        conn = open_connection(client, deflate=PerMessageDeflate())
        conn.receive_data(peer_frame(conn, 0x2, b"\xff\xff\xff\xff", rsv1=True))
        assert error_of(conn) == 1002
        assert "invalid deflate data" in str(conn.exception)

    @ROLES
    def test_compressed_invalid_utf8_fails_with_1007(self, client: bool) -> None:
        conn = open_connection(client, deflate=PerMessageDeflate())
        conn.receive_data(peer_frame(conn, 0x1, deflated(b"ok \xff"), rsv1=True))
        assert error_of(conn) == 1007


class TestDecompressionBombs:
    """A small compressed frame must not inflate past max_message_size (1009), and memory stays
    bounded while we find out."""

    @ROLES
    def test_a_bomb_is_stopped_at_the_limit(self, client: bool) -> None:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        chunk = b"\x00" * (1 << 20)
        bomb = b"".join(comp.compress(chunk) for _ in range(64)) + comp.flush(zlib.Z_SYNC_FLUSH)[:-4]
        assert len(bomb) < 100_000  # 64 MiB of zeros in well under 100 KB
        conn = open_connection(client, WSConfig(max_message_size=1 << 20), deflate=PerMessageDeflate())
        frame = peer_frame(conn, 0x2, bomb, rsv1=True)
        tracemalloc.start()
        try:
            conn.receive_data(frame)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert error_of(conn) == 1009
        assert isinstance(conn.exception, MessageTooBig)
        assert "inflates to more than" in str(conn.exception)
        assert peak < 8 << 20  # the 1 MiB limit plus a frame's worth, not 64 MiB

    @ROLES
    def test_a_bomb_costs_the_limit_plus_a_step(self, client: bool) -> None:
        """Inflation runs in steps of 16 KiB in and out, so 66 KB that would inflate to 64 MiB fail
        having held the 1 MiB limit plus under 192 KiB (zlib's state, a step, the frame) — one call
        for the whole limit held twice the limit, as zlib builds its output in blocks then joins them."""
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = comp.compress(b"\x00" * (1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)  # 1 MiB of zeros
        bomb = block * 64  # full flushes make each block stand alone, so they repeat exactly
        assert len(bomb) < 70_000
        assert len(zlib.decompressobj(-15).decompress(block * 2)) == 2 << 20
        conn = open_connection(client, WSConfig(max_message_size=1 << 20), deflate=PerMessageDeflate())
        frame = peer_frame(conn, 0x2, bomb, rsv1=True)
        tracemalloc.start()
        try:
            conn.receive_data(frame)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert error_of(conn) == 1009
        assert peak < (1 << 20) + (192 << 10), peak

    @ROLES
    @pytest.mark.parametrize("size", [16_383, 16_384, 16_385, 200_000])
    def test_messages_around_a_step_inflate_whole(self, client: bool, size: int) -> None:
        """Output that ends exactly on, just before or after a 16 KiB step, or spans several, comes out
        whole, with the limit at the message's size."""
        data = bytes(i * 7 % 251 for i in range(size))
        conn = open_connection(client, WSConfig(max_message_size=size), deflate=PerMessageDeflate())
        conn.receive_data(peer_frame(conn, 0x2, deflated(data), rsv1=True))
        assert [e.data for e in conn.events()] == [data]

    @ROLES
    def test_the_limit_counts_across_fragments(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(max_message_size=1000), deflate=PerMessageDeflate())
        data = deflated(b"a" * 1500)
        conn.receive_data(peer_frame(conn, 0x2, data[:5], fin=False, rsv1=True))
        conn.receive_data(peer_frame(conn, 0x0, data[5:]))
        assert error_of(conn) == 1009

    @ROLES
    def test_exactly_the_limit_inflates(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(max_message_size=1000), deflate=PerMessageDeflate())
        conn.receive_data(peer_frame(conn, 0x2, deflated(b"a" * 1000), rsv1=True))
        assert [len(e.data) for e in conn.events()] == [1000]

    def test_a_compressed_frame_over_the_limit_on_the_wire_fails_on_its_header(self) -> None:
        conn = open_connection(
            client=True, config=WSConfig(max_message_size=100), deflate=PerMessageDeflate()
        )
        conn.receive_data(peer_frame(conn, 0x2, b"", rsv1=True, length=101))
        assert error_of(conn) == 1009

    def test_without_a_limit_everything_inflates(self) -> None:
        conn = Connection(True, WSConfig(max_message_size=None), deflate=PerMessageDeflate())
        conn.receive_data(peer_frame(conn, 0x2, deflated(b"z" * 3_000_000), rsv1=True))
        assert [len(e.data) for e in conn.events()] == [3_000_000]


class TestPerMessageDeflateObject:
    """The agreement object on its own (embedders drive it directly)."""

    def test_reset_decompressor_forgets_the_context(self) -> None:
        sender = PerMessageDeflate()
        receiver = PerMessageDeflate()
        first, second = sender.compress(b"Hello"), sender.compress(b"Hello")
        assert receiver.decompress(first, True, None) == b"Hello"
        receiver.reset_decompressor()
        with pytest.raises(ProtocolError, match="invalid deflate data"):
            receiver.decompress(second, True, None)  # refers to the forgotten "Hello"

    def test_response_params_per_role(self) -> None:
        agreement = PerMessageDeflate(
            local_no_context_takeover=True, remote_max_window_bits=10, local_max_window_bits=12
        )
        assert agreement.response_params(server=True) == [
            ("server_no_context_takeover", None),
            ("server_max_window_bits", "12"),
            ("client_max_window_bits", "10"),
        ]
        assert agreement.response_params(server=False) == [
            ("client_no_context_takeover", None),
            ("server_max_window_bits", "10"),
            ("client_max_window_bits", "12"),
        ]
