"""`receive_data`'s fast paths and the inlined small-frame senders give what the general code gives.

A read that starts with whole, unfragmented, uncompressed data frames of up to 4095 bytes is parsed by
a short loop in `receive_data`; the first frame it does not take (a control frame, a fragment, a
partial or bigger frame, a bad header) goes to `_parse`. A frame that spans reads is completed with
only the bytes it still needs (the rest of the read is parsed as it is), and one of 64 KiB or more is
gathered in parts. Reads may be `bytes` or a `memoryview` of a buffer the caller reuses (what
`wscore_asyncio` passes), and are never kept. The oracles: the same stream fed one byte at a time
(no whole frame in any read: only `_parse` reads frames, through the buffer) or all in one read (no
frame spans reads).
"""

from __future__ import annotations

from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wscore import Connection, State, WSConfig, WSMsgType
from wscore.frames import unmask_from, unmask_from_py

from .helpers import KEY, error_of, parse_frames, raw_frame, split_at

Outcome = tuple[list[tuple[object, object, object]], int | None, list[tuple[int, bytes]]]


def outcome(conn: Connection) -> Outcome:
    """Everything observable after feeding: the events, the close code and the frames to send
    (opcode and unmasked payload: a client masks with a fresh key each time)."""
    events = [(e.type, e.data, e.extra) for e in conn.events()]
    codes = [e[1].code for e in events if e[0] is WSMsgType.ERROR]
    sent = [(f.opcode, f.payload) for f in parse_frames(conn.data_to_send())]
    return [e for e in events if e[0] is not WSMsgType.ERROR], codes[0] if codes else None, sent


def feed_general(stream: bytes, client: bool, config: WSConfig | None = None) -> Outcome:
    """The oracle: byte by byte (as bytearrays), so that only `_parse` reads a frame."""
    conn = Connection(client=client, config=config)
    for i in range(len(stream)):
        conn.receive_data(bytearray(stream[i : i + 1]))
    return outcome(conn)


def feed_views(
    pieces: list[bytes], client: bool, config: WSConfig | None = None, size: int = 1 << 16
) -> Outcome:
    """As wscore_asyncio does: each read in the same reused buffer, passed as a view, and scribbled
    over right after the call, so anything the connection kept a reference to would change."""
    buffer = bytearray(max([size, *map(len, pieces)]))
    view = memoryview(buffer)
    conn = Connection(client=client, config=config)
    for piece in pieces:
        buffer[: len(piece)] = piece
        conn.receive_data(view[: len(piece)])
        buffer[: len(piece)] = b"\xaa" * len(piece)
    return outcome(conn)


def feed_bytes(pieces: list[bytes], client: bool, config: WSConfig | None = None) -> Outcome:
    conn = Connection(client=client, config=config)
    for piece in pieces:
        conn.receive_data(piece)
    return outcome(conn)


def frame_for(client: bool, opcode: int, payload: bytes, **kwargs: object) -> bytes:
    """A frame as the peer of a client (unmasked) or of a server (masked) sends it."""
    return raw_frame(opcode, payload, mask=None if client else KEY, **kwargs)  # type: ignore[arg-type]


# Around the 125/126 header switch and the fast path's 4095/4096 limit.
SIZES = [0, 1, 125, 126, 127, 4095, 4096, 4097, 70000]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("size", SIZES)
def test_one_message_per_read(client: bool, size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    text = ("é" * size)[: size // 2]
    stream = frame_for(client, 2, payload) + frame_for(client, 1, text.encode())
    expected = [(WSMsgType.BINARY, payload, None), (WSMsgType.TEXT, text, None)]
    for pieces in ([stream], [frame_for(client, 2, payload), frame_for(client, 1, text.encode())]):
        for got in (feed_bytes(pieces, client), feed_views(pieces, client)):
            assert got == (expected, None, [])
            assert type(got[0][0][1]) is bytes


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_a_batch_with_a_ping_and_a_partial_frame_at_the_end(client: bool) -> None:
    """The fast path stops at the ping (answered in place, in order) and at the cut frame, which
    is buffered and completed by the next read."""
    frames = [
        frame_for(client, 2, b"a" * 10),
        frame_for(client, 1, b"b" * 300),
        frame_for(client, 9, b"ping"),
        frame_for(client, 2, b"c" * 20),
        frame_for(client, 2, b"d" * 3000),
    ]
    stream = b"".join(frames)
    cut = len(stream) - 1000
    expected = feed_general(stream, client)
    assert [e[1] for e in expected[0]] == [b"a" * 10, "b" * 300, b"c" * 20, b"d" * 3000]
    assert expected[2] == [(0xA, b"ping")]
    assert feed_bytes([stream[:cut], stream[cut:]], client) == expected
    assert feed_views([stream[:cut], stream[cut:]], client) == expected


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_a_reused_buffer_never_leaks_into_a_message(client: bool) -> None:
    """Every cut of a stream of small and large frames, through one reused buffer smaller than
    the large message: what spans reads is copied before the buffer is overwritten."""
    stream = b"".join(
        [frame_for(client, 2, b"x" * 100), frame_for(client, 1, b"y" * 9000), frame_for(client, 2, b"z")]
    )
    expected = feed_general(stream, client)
    for step in (1, 7, 100, 4096):
        pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
        assert feed_views(pieces, client, size=step) == expected


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: raw_frame(2, b"unmasked"), 1002),  # to a server
        (lambda: raw_frame(0x3, b"x", mask=KEY), 1002),  # reserved opcode
        (lambda: raw_frame(2, b"x", mask=KEY, rsv1=True), 1002),  # no extension negotiated
        (lambda: raw_frame(1, b"ok\xff", mask=KEY), 1007),
        (lambda: raw_frame(1, b"a" * 200 + b"\xc3", mask=KEY), 1007),  # 16-bit length, cut character
        (lambda: raw_frame(0, b"x", mask=KEY), 1002),  # continuation without a message
    ],
)
def test_a_bad_frame_after_good_ones_fails_the_connection(make: object, code: int) -> None:
    stream = raw_frame(2, b"first", mask=KEY) + make() + raw_frame(2, b"never", mask=KEY)  # type: ignore[operator]
    for pieces in ([stream], [bytes(stream)]):
        events, got, _ = feed_views(pieces, client=False)
        assert got == code
        assert events[0] == (WSMsgType.BINARY, b"first", None)
        assert (WSMsgType.BINARY, b"never", None) not in events
    assert feed_bytes([stream], client=False)[:2] == feed_general(stream, client=False)[:2]


def test_a_masked_frame_fails_a_client() -> None:
    conn = Connection(client=True)
    conn.receive_data(raw_frame(2, b"ok") + raw_frame(2, b"masked", mask=KEY))
    assert conn.events()[0] == (WSMsgType.BINARY, b"ok", None)
    conn.receive_data(b"")
    assert conn.close_code == 1002


@pytest.mark.parametrize("limit", [0, 10, 200])
def test_limits_hold_for_small_frames(limit: int) -> None:
    """max_message_size under the fast path's size: the frame at the limit passes, one more byte
    fails with 1009."""
    config = WSConfig(max_message_size=limit)
    ok = raw_frame(2, b"a" * limit, mask=KEY)
    over = raw_frame(2, b"a" * (limit + 1), mask=KEY)
    events, code, _ = feed_bytes([ok + over], client=False, config=config)
    assert events[0] == (WSMsgType.BINARY, b"a" * limit, None)
    assert code == 1009
    assert feed_views([ok + over], client=False, config=config)[:2] == (events, code)


def test_fragment_mode_delivers_whole_frames_as_final_fragments() -> None:
    config = WSConfig(fragments=True)
    stream = raw_frame(2, b"whole", mask=KEY) + raw_frame(1, b"text", mask=KEY)
    expected = [(WSMsgType.BINARY, b"whole", True), (WSMsgType.TEXT, "text", True)]
    assert feed_bytes([stream], client=False, config=config) == (expected, None, [])
    assert feed_views([stream], client=False, config=config) == (expected, None, [])


def test_a_message_being_fragmented_goes_to_the_general_parser() -> None:
    """After a first fragment, a whole-looking frame is a protocol error (§5.4), not a message."""
    stream = raw_frame(1, b"ab", fin=False, mask=KEY) + raw_frame(2, b"x", mask=KEY)
    assert feed_views([stream[:8], stream[8:]], client=False)[1] == 1002


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_non_minimal_16_bit_length(client: bool) -> None:
    """A 5-byte payload announced in the 16-bit form leaves the fast path and fails as the general
    parser fails it (1002, RFC 6455 §5.2), after the good frame before it."""
    stream = frame_for(client, 2, b"ok") + frame_for(client, 2, b"hello", length_form=16)
    assert feed_bytes([stream], client) == feed_general(stream, client)
    events, code, _ = feed_bytes([stream], client)
    assert events[0] == (WSMsgType.BINARY, b"ok", None)
    assert code == 1002


def test_after_a_close_frame_nothing_is_parsed() -> None:
    stream = raw_frame(2, b"a", mask=KEY) + raw_frame(8, b"\x03\xe8", mask=KEY) + raw_frame(2, b"b", mask=KEY)
    events, code, _ = feed_views([stream], client=False)
    assert [e[0] for e in events] == [WSMsgType.BINARY, WSMsgType.CLOSE, WSMsgType.CLOSED]
    assert code is None


def stream_of(client: bool, frames: list[tuple[int, int]], bad_at: int | None = None) -> bytes:
    """Frames as (opcode, size); opcode -1 is a text message in two fragments. Text is ASCII and
    multi-byte characters, with an invalid byte at `bad_at` of the last text payload if given."""
    parts = []
    for opcode, size in frames:
        payload = bytes((i * 7) % 128 for i in range(size))
        if opcode in (1, -1):
            payload = ("aé€😀" * (size // 10 + 1)).encode()[:size]
            payload = payload.decode("utf-8", "ignore").encode().ljust(size, b"x")
        if bad_at is not None and opcode in (1, -1) and size:
            payload = payload[: bad_at % size] + b"\xff" + payload[bad_at % size + 1 :]
        if opcode == -1:
            parts.append(frame_for(client, 1, payload[: size // 2], fin=False))
            parts.append(frame_for(client, 0, payload[size // 2 :]))
        else:
            parts.append(frame_for(client, opcode, payload))
    return b"".join(parts)


SMALL_FRAMES = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([1, 2]), st.sampled_from([0, 1, 5, 125, 126, 300, 4095, 4096, 5000])),
        st.tuples(st.just(9), st.integers(0, 125)),  # ping
        st.tuples(st.just(-1), st.integers(1, 300)),  # a message in two fragments
    ),
    max_size=12,
)
BIG_FRAMES = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([1, 2]), st.sampled_from([10, 4095, 65535, 65536, 70000, 200_000])),
        st.tuples(st.just(9), st.integers(0, 125)),
        st.tuples(st.just(-1), st.sampled_from([300, 140_000])),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(client=st.booleans(), frames=SMALL_FRAMES, cuts=st.lists(st.integers(0, 30000), max_size=6))
def test_every_stream_and_every_cut_reads_as_the_general_parser_reads_it(
    client: bool, frames: list[tuple[int, int]], cuts: list[int]
) -> None:
    stream = stream_of(client, frames)
    expected = feed_general(stream, client)
    pieces = split_at(stream, cuts)
    assert feed_bytes(pieces, client) == expected
    assert feed_views(pieces, client) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    client=st.booleans(),
    frames=BIG_FRAMES,
    cuts=st.lists(st.integers(0, 600_000), max_size=8),
    bad_at=st.none() | st.integers(0, 200_000),
)
def test_big_frames_across_reads_read_as_one_read_reads_them(
    client: bool, frames: list[tuple[int, int]], cuts: list[int], bad_at: int | None
) -> None:
    """Big frames (and bad UTF-8 in them) cut anywhere, as bytes and through a reused 64 KiB buffer,
    give the events of the whole stream read at once."""
    stream = stream_of(client, frames, bad_at)
    expected = feed_bytes([stream], client)
    pieces = split_at(stream, cuts)
    assert feed_bytes(pieces, client) == expected
    assert feed_views(pieces, client) == expected
    pieces = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    assert feed_views(pieces, client) == expected


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_bad_text_in_a_big_frame_fails_before_the_frame_is_complete(client: bool) -> None:
    """RFC 6455 §8.1 fail-fast: the invalid byte in the first read of a 1 MB text frame ends the
    connection with 1007 then, not when the last byte arrives."""
    frame = frame_for(client, 1, b"a" * 1000 + b"\xff" + b"a" * 1_000_000)
    conn = Connection(client=client)
    conn.receive_data(frame[:2000])
    assert error_of(conn) == 1007


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_a_callers_bytearray_can_be_resized_after_a_failure(client: bool) -> None:
    """No view of the read outlives receive_data, not even through the failure's traceback."""
    frame = frame_for(client, 1, b"a" * 100_000 + b"\xc3\x28" + b"a" * 100_000)
    conn = Connection(client=client)
    conn.receive_data(bytearray(frame[:50_000]))
    data = bytearray(frame[50_000:150_000])
    conn.receive_data(data)
    assert conn.close_code == 1007
    data.extend(b"more")  # a live export would make this a BufferError
    assert [e.type for e in conn.events()][-2:] == [WSMsgType.ERROR, WSMsgType.CLOSED]


# -- sending ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("n", [0, 1, 125, 126, 4095, 65535, 65536])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_sent_messages_read_back(client: bool, n: int, kind: type) -> None:
    """Both roles, each header form, from bytes, bytearray and memoryview."""
    sender, receiver = Connection(client=client), Connection(client=not client)
    blob = bytes(i % 256 for i in range(n))
    sender.send_bytes(kind(blob))
    sender.send_text("é" * (n // 2))
    wire = sender.data_to_send()
    assert bool(wire[1] & 0x80) is client
    receiver.receive_data(wire)
    assert [(e.type, e.data) for e in receiver.events()] == [
        (WSMsgType.BINARY, blob),
        (WSMsgType.TEXT, "é" * (n // 2)),
    ]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_a_view_of_wide_items_sends_all_its_bytes(client: bool) -> None:
    """len() of a memoryview counts items: the frame's length must be the byte count."""
    data = array("i", range(40))
    sender, receiver = Connection(client=client), Connection(client=not client)
    sender.send_bytes(memoryview(data))
    receiver.receive_data(sender.data_to_send())
    assert [e.data for e in receiver.events()] == [data.tobytes()]


def test_a_bytearray_changed_after_send_does_not_change_the_frame() -> None:
    data = bytearray(b"before")
    conn = Connection(client=False)
    conn.send_bytes(data)
    data[:] = b"after!"
    assert conn.data_to_send() == raw_frame(2, b"before")


@pytest.mark.parametrize("n", [0, 1, 125, 126, 1000, 5000])
def test_pure_python_unmask_reads_a_view(n: int) -> None:
    """The fallback unmasks from a memoryview buffer too (the key sliced from it is made bytes)."""
    frame = raw_frame(2, bytes(i % 256 for i in range(n)), mask=KEY)
    start = len(frame) - n
    view = memoryview(bytearray(frame))
    assert unmask_from_py(view, start, len(frame)) == unmask_from(frame, start, len(frame))
    assert unmask_from_py(view, start, len(frame)) == bytes(i % 256 for i in range(n))


def test_error_of_helper_sees_the_fast_path_failure() -> None:
    conn = Connection(client=False)
    conn.receive_data(memoryview(raw_frame(1, b"\xff", mask=KEY)))
    assert error_of(conn) == 1007


def test_the_driver_fast_path_contract() -> None:
    """What a driver may read without a call (see `Connection`): `state`, `pending_events` (emptied in
    place by the driver) and `pending_output`; `events()`/`data_to_send()` see the same queues."""
    conn = Connection(client=False)
    conn.receive_data(frame_for(False, 0x2, b"abc") + frame_for(False, 0x9, b"p"))
    assert conn.state is State.OPEN
    assert [(m.type, m.data) for m in conn.pending_events] == [(WSMsgType.BINARY, b"abc")]
    assert parse_frames(b"".join(conn.pending_output))[0].payload == b"p"  # the pong
    taken = conn.pending_events
    taken.clear()  # what a driver does once it has delivered them
    assert conn.events() == []
    assert conn.data_to_send() != b""
    assert conn.pending_output == []
    conn.receive_data(frame_for(False, 0x8, b"\x03\xe8"))
    assert conn.state is State.CLOSED  # type: ignore[comparison-overlap]  # mypy narrowed it above
    assert [m.type for m in conn.pending_events] == [WSMsgType.CLOSE, WSMsgType.CLOSED]
