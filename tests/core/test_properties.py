"""Property tests: whatever the messages, the role, the compression and the way the transport cuts the
bytes, what one side sends is what the other receives.

Hypothesis runs derandomized (a fixed seed per test) with bounded example counts, so the suite is
reproducible and fast; raise `max_examples` locally to search harder.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wscore import Connection, DeflateOptions, State, WSConfig, WSMessage, WSMsgType

from .helpers import ConnectionPair, open_connection, peer_frame, split_at

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Message = str | bytes

messages = st.lists(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300),
        st.text(alphabet="ab€😀", max_size=3000),  # compressible, multi-byte, some over 125/65535
        # Long runs: the 16- and 64-bit length forms, and highly compressible data.
        st.tuples(st.integers(0, 255), st.integers(126, 70_000)).map(lambda t: bytes([t[0]]) * t[1]),
    ),
    min_size=1,
    max_size=6,
)

deflate_options = st.one_of(
    st.none(),
    st.builds(
        DeflateOptions,
        server_no_context_takeover=st.booleans(),
        client_no_context_takeover=st.booleans(),
        server_max_window_bits=st.none() | st.integers(8, 15),
        client_max_window_bits=st.none() | st.integers(8, 15),
        level=st.integers(0, 9),
        min_size=st.sampled_from([0, 0, 50]),
    ),
)


def send(conn: Connection, message: Message, fragments: int) -> None:
    """Send `message` from `conn`, in `fragments` frames (each fragment "sent ... with a fragment
    boundary" per RFC 6455 §5.4)."""
    if fragments <= 1 or len(message) < fragments:
        if isinstance(message, str):
            conn.send_text(message)
        else:
            conn.send_bytes(message)
        return
    step = len(message) // fragments
    for i in range(fragments):
        part = message[i * step : (i + 1) * step if i < fragments - 1 else len(message)]
        if isinstance(part, str):
            conn.send_text(part, fin=i == fragments - 1)
        else:
            conn.send_bytes(part, fin=i == fragments - 1)


def join_fragments(events: list[WSMessage]) -> list[WSMessage]:
    """Whole messages from fragment-mode events: TEXT/BINARY, CONTINUATION..., `extra` True last."""
    joined: list[WSMessage] = []
    parts: list[WSMessage] = []
    for event in events:
        assert event.type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)
        assert (event.type is WSMsgType.CONTINUATION) == bool(parts)
        parts.append(event)
        if event.extra:
            empty: str | bytes = "" if parts[0].type is WSMsgType.TEXT else b""
            joined.append(WSMessage(parts[0].type, empty.join(p.data for p in parts), None))
            parts = []
    assert not parts
    return joined


@PROPERTY
@given(
    messages=messages,
    roles=st.tuples(st.booleans(), st.booleans()),
    options=deflate_options,
    shape=st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=6, max_size=6),
    data=st.data(),
)
def test_messages_survive_any_byte_split(
    messages: list[Message],
    roles: tuple[bool, bool],
    options: DeflateOptions | None,
    shape: list[tuple[int, bool]],
    data: st.DataObject,
) -> None:
    """Random messages, either role, with or without permessage-deflate, sent whole or fragmented
    with pings in between, and delivered in random byte splits, come out identical and in order —
    as whole messages, or (fragments=True) as fragments that join up to them."""
    from_client, fragment_mode = roles
    pair = ConnectionPair(
        client_config=WSConfig(compress=options, max_message_size=None, fragments=fragment_mode),
        server_config=WSConfig(compress=options, max_message_size=None, fragments=fragment_mode),
    )
    assert (pair.client.deflate is None) == (options is None)
    sender, receiver = (pair.client, pair.server) if from_client else (pair.server, pair.client)
    for message, (n, ping) in zip(messages, shape, strict=False):
        send(sender, message, n)
        if ping:
            sender.ping(b"p")
    wire = sender.data_to_send()
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12), label="cuts")
    events = []
    for chunk in split_at(wire, cuts):
        receiver.receive_data(chunk)
        events += receiver.events()
    if fragment_mode:
        events = join_fragments(events)
    assert [(e.type, e.data) for e in events] == [
        (WSMsgType.TEXT if isinstance(m, str) else WSMsgType.BINARY, m) for m in messages
    ]
    assert receiver.state is State.OPEN
    # Each ping was answered with a pong, which the sender hides (autoping).
    sender.receive_data(receiver.data_to_send())
    assert sender.events() == []
    assert sender.state is State.OPEN


@PROPERTY
@given(
    text=st.text(max_size=200),
    bad=st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\xc1", b"\x80", b"\xf5", b"\xf8"]),
    tail=st.binary(max_size=50),
    client=st.booleans(),
)
def test_invalid_utf8_fails_as_soon_as_the_byte_arrives(
    text: str, bad: bytes, tail: bytes, client: bool
) -> None:
    """Whatever valid text comes first, a byte that can never appear in UTF-8 fails the connection
    with 1007 the moment it arrives, before the rest of the frame (§8.1, Autobahn 6.4)."""
    conn = open_connection(client, WSConfig(max_message_size=None))
    prefix = text.encode()
    frame = peer_frame(conn, 0x1, prefix + bad + tail)
    header = len(frame) - len(prefix) - len(bad) - len(tail)
    conn.receive_data(frame[: header + len(prefix)])
    assert conn.state is State.OPEN
    conn.receive_data(frame[header + len(prefix) : header + len(prefix) + 1])
    assert conn.close_code == 1007
    assert conn.closed


@PROPERTY
@given(data=st.binary(max_size=400), client=st.booleans(), cuts=st.lists(st.integers(0, 400), max_size=10))
def test_garbage_never_raises_and_split_does_not_matter(data: bytes, client: bool, cuts: list[int]) -> None:
    """Arbitrary bytes never raise out of `receive_data`; and feeding them whole or in pieces gives
    the same events and the same close code (the parser has no split-dependent state)."""
    whole = open_connection(client, WSConfig(autoping=False))
    whole.receive_data(data)
    pieces = open_connection(client, WSConfig(autoping=False))
    for chunk in split_at(data, cuts):
        pieces.receive_data(chunk)
    assert [(e.type, e.data if e.type is not WSMsgType.ERROR else e.data.code) for e in whole.events()] == [
        (e.type, e.data if e.type is not WSMsgType.ERROR else e.data.code) for e in pieces.events()
    ]
    assert whole.close_code == pieces.close_code
    assert whole.state is pieces.state


@pytest.mark.parametrize("client", [True, False])
def test_a_long_stream_of_small_frames(client: bool) -> None:
    """Many frames, fed with a prime-sized read: the buffer is compacted correctly every time."""
    conn = open_connection(client)
    wire = b"".join(peer_frame(conn, 0x1 + i % 2, str(i).encode() * (i % 50)) for i in range(2000))
    events = []
    for i in range(0, len(wire), 997):
        conn.receive_data(wire[i : i + 997])
        events += conn.events()
    assert len(events) == 2000
    assert events[1999].data == b"1999" * 49
