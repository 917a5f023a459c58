"""Differential tests against wsproto, the independent oracle: the same byte streams, valid and invalid,
fed to both in the same pieces give the same messages and the same close code.

Deliberate differences, each pinned by a test in `TestDeliberateDifferences` (and kept out of the
random streams so that everything else must agree):

- Close code 1014 (Bad Gateway, IANA-registered) is accepted; wsproto's table stops at 1013 and fails
  it with 1002.
- Invalid deflate data fails with 1002 (a framing-level violation, as websockets does); wsproto
  reports 1007.
- A message ending with a BFINAL deflate block (RFC 7692 §7.2.3.4) ends the deflate stream; we start
  a new one for the next message, wsproto fails the next message.
- Limits: wsproto has no max message size and inflates without bound; both runs here use no limit.

UTF-8 is validated as it arrives by both (we also inside a frame that has only partly arrived; wsproto
hands out partial frames, so it fails as early): the random streams check that they agree. On a stream
cut short we may fail earlier than wsproto, never later (what a frame's first two bytes decide fails at
once); the truncated-stream test allows exactly that.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto import WSConnection
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.events import Request as WsprotoRequest
from wsproto.extensions import Extension
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

from wscore import (
    ClientConnection,
    Connection,
    DeflateOptions,
    PerMessageDeflate,
    ServerConnection,
    State,
    WSConfig,
    WSMsgType,
)

from .helpers import KEY, raw_frame, split_at

DIFFERENTIAL = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Outcome = list[tuple[str, object]]


def ours(chunks: Iterable[bytes], client: bool, deflate: bool = False) -> Outcome:
    """What wscore makes of the stream: messages, pings, pongs, then the close code (received or
    sent because of a violation)."""
    conn = Connection(
        client,
        WSConfig(autoping=False, max_message_size=None),
        deflate=PerMessageDeflate() if deflate else None,
    )
    out: Outcome = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events():
            if event.type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
                out.append((event.type.name, event.data))
            elif event.type is WSMsgType.CLOSE:
                return [*out, ("CLOSE", event.data)]
            elif event.type is WSMsgType.ERROR:
                return [*out, ("CLOSE", event.data.code)]
    return out


def theirs(chunks: Iterable[bytes], client: bool, deflate: bool = False) -> Outcome:
    """What wsproto makes of the same stream, in the same terms."""
    extensions: list[Extension] = []
    if deflate:
        extension = WsprotoDeflate()
        if client:
            extension.finalize("permessage-deflate")
        else:
            extension.accept("permessage-deflate")
        extensions.append(extension)
    conn = WsprotoConnection(ConnectionType.CLIENT if client else ConnectionType.SERVER, extensions)
    out: Outcome = []
    parts: list[str | bytes] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events():
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    out.append(("TEXT", "".join(str(p) for p in parts)))
                    parts = []
            elif isinstance(event, BytesMessage):
                parts.append(bytes(event.data))
                if event.message_finished:
                    out.append(("BINARY", b"".join(bytes(p) for p in parts)))  # type: ignore[arg-type]
                    parts = []
            elif isinstance(event, Ping):
                out.append(("PING", bytes(event.payload)))
            elif isinstance(event, Pong):
                out.append(("PONG", bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                return [*out, ("CLOSE", int(event.code))]
    return out


# -- random streams --------------------------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 4000, 4999]
ANY_CODES = [*VALID_CODES, 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]

text_payloads = st.text(max_size=40).map(str.encode)
binary_payloads = st.binary(max_size=40) | st.binary(min_size=126, max_size=300)


@st.composite
def valid_streams(draw: st.DrawFn, client: bool) -> bytes:
    """Well-formed frames: messages (some fragmented) with control frames in between, maybe a close."""
    key = None if client else KEY
    frames = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
        if kind in ("ping", "pong"):
            frames.append(raw_frame(0x9 if kind == "ping" else 0xA, draw(st.binary(max_size=125)), mask=key))
            continue
        data = draw(text_payloads if kind == "text" else binary_payloads)
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        for i, piece in enumerate(pieces):
            opcode = (0x1 if kind == "text" else 0x2) if i == 0 else 0x0
            frames.append(raw_frame(opcode, piece, fin=i == len(pieces) - 1, mask=key))
            if draw(st.integers(0, 4)) == 0:
                frames.append(raw_frame(0x9, b"in between", mask=key))
    if draw(st.booleans()):
        code = draw(st.sampled_from([None, *VALID_CODES]))
        reason = draw(st.text(max_size=20)).encode() if code is not None else b""
        frames.append(raw_frame(0x8, b"" if code is None else code.to_bytes(2, "big") + reason, mask=key))
    return b"".join(frames)


@st.composite
def frame_soup(draw: st.DrawFn, client: bool) -> bytes:
    """Frames with random opcodes, FIN and RSV bits, wrong masking, oversized control payloads,
    invalid UTF-8 and bad close payloads: mostly invalid streams."""
    frames = []
    for _ in range(draw(st.integers(1, 6))):
        opcode = draw(st.sampled_from([0x0, 0x1, 0x1, 0x2, 0x2, 0x8, 0x9, 0xA, 0x3, 0x7, 0xB, 0xF]))
        if opcode == 0x8:
            shape = draw(st.sampled_from(["empty", "one byte", "code", "code"]))
            code = draw(st.sampled_from(ANY_CODES))
            reason = draw(st.sampled_from([b"", b"bye", b"\xff", "é".encode(), b"\xce"]))
            payload = {"empty": b"", "one byte": b"\x03", "code": code.to_bytes(2, "big") + reason}[shape]
        else:
            payload = draw(
                st.one_of(
                    text_payloads,
                    st.binary(max_size=20),
                    st.binary(min_size=126, max_size=130),
                    st.sampled_from([b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]),
                )
            )
        masked = (not client) != (draw(st.integers(0, 9)) == 0)  # now and then the wrong way
        frames.append(
            raw_frame(
                opcode,
                payload,
                fin=draw(st.integers(0, 3)) != 0,
                rsv1=draw(st.integers(0, 15)) == 0,
                rsv2=draw(st.integers(0, 30)) == 0,
                rsv3=draw(st.integers(0, 30)) == 0,
                mask=KEY if masked else None,
            )
        )
    return b"".join(frames)


def assert_same(stream: bytes, client: bool, cuts: Sequence[int], deflate: bool = False) -> Outcome:
    chunks = split_at(stream, cuts)
    expected = theirs(chunks, client, deflate)
    assert ours(chunks, client, deflate) == expected
    return expected


class TestAgreesWithWsproto:
    """Random streams in both roles, fed in random pieces."""

    @DIFFERENTIAL
    @given(data=st.data(), client=st.booleans())
    def test_valid_streams(self, data: st.DataObject, client: bool) -> None:
        stream = data.draw(valid_streams(client), label="stream")
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6), label="cuts")
        outcome = assert_same(stream, client, cuts)
        assert all(kind != "CLOSE" or code in VALID_CODES or code == 1005 for kind, code in outcome)

    @DIFFERENTIAL
    @given(data=st.data(), client=st.booleans())
    def test_invalid_streams(self, data: st.DataObject, client: bool) -> None:
        stream = data.draw(frame_soup(client), label="stream")
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6), label="cuts")
        assert_same(stream, client, cuts)

    @DIFFERENTIAL
    @given(data=st.data(), client=st.booleans())
    def test_truncated_streams(self, data: st.DataObject, client: bool) -> None:
        """Streams cut short anywhere: whatever arrived is judged the same — except that we may fail
        earlier than wsproto (never later): a violation visible in a frame's first two bytes fails
        at once, while wsproto may wait for the rest of the header. Then wsproto, given the whole
        stream, reaches the same verdict."""
        stream = data.draw(frame_soup(client) | valid_streams(client), label="stream")
        end = data.draw(st.integers(0, len(stream)), label="end")
        chunks = split_at(stream[:end], [end // 2])
        mine, expected = ours(chunks, client), theirs(chunks, client)
        if mine != expected:
            assert mine[-1][0] == "CLOSE"
            assert mine[:-1] == expected
            assert theirs([stream], client)[: len(mine)] == mine

    @DIFFERENTIAL
    @given(
        messages=st.lists(st.text(max_size=200) | st.binary(max_size=200), min_size=1, max_size=5),
        fragment=st.lists(st.booleans(), min_size=5, max_size=5),
        client=st.booleans(),
        data=st.data(),
    )
    def test_compressed_streams(
        self, messages: list[str | bytes], fragment: list[bool], client: bool, data: st.DataObject
    ) -> None:
        """permessage-deflate with context takeover: RFC 7692 §7.2.1 compression, some messages split
        over two frames (RSV1 on the first only)."""
        key = None if client else KEY
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        frames = []
        for message, split in zip(messages, fragment, strict=False):
            raw = message.encode() if isinstance(message, str) else message
            body = (compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            opcode = 0x1 if isinstance(message, str) else 0x2
            if split and len(body) > 1:
                half = len(body) // 2
                frames.append(raw_frame(opcode, body[:half], fin=False, rsv1=True, mask=key))
                frames.append(raw_frame(0x0, body[half:], mask=key))
            else:
                frames.append(raw_frame(opcode, body, rsv1=True, mask=key))
        stream = b"".join(frames)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=4), label="cuts")
        outcome = assert_same(stream, client, cuts, deflate=True)
        assert [value for _, value in outcome] == messages


class TestDeliberateDifferences:
    """Where we differ from wsproto on purpose; each case says why (see the module docstring)."""

    @pytest.mark.parametrize("client", [True, False])
    def test_close_code_1014_is_accepted(self, client: bool) -> None:
        stream = raw_frame(0x8, (1014).to_bytes(2, "big"), mask=None if client else KEY)
        assert ours([stream], client) == [("CLOSE", 1014)]
        assert theirs([stream], client) == [("CLOSE", 1002)]

    @pytest.mark.parametrize("client", [True, False])
    def test_invalid_deflate_data_is_1002(self, client: bool) -> None:
        stream = raw_frame(0x2, b"\xff\xff\xff", rsv1=True, mask=None if client else KEY)
        assert ours([stream], client, deflate=True) == [("CLOSE", 1002)]
        assert theirs([stream], client, deflate=True) == [("CLOSE", 1007)]

    def test_messages_after_a_bfinal_block_still_decode(self) -> None:
        hello_bfinal = bytes.fromhex("c108f348cdc9c9070000")
        assert ours([hello_bfinal * 2], True, deflate=True) == [("TEXT", "Hello"), ("TEXT", "Hello")]
        assert theirs([hello_bfinal * 2], True, deflate=True) == [("TEXT", "Hello"), ("CLOSE", 1007)]


wsproto_deflates = st.builds(
    WsprotoDeflate,
    client_no_context_takeover=st.booleans(),
    client_max_window_bits=st.none() | st.integers(9, 15),
    server_no_context_takeover=st.booleans(),
    server_max_window_bits=st.none() | st.integers(9, 15),
)
our_deflates = st.none() | st.builds(
    DeflateOptions,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.none() | st.integers(9, 15),
    client_max_window_bits=st.none() | st.integers(9, 15),
)
interop_messages = st.lists(st.text(max_size=300) | st.binary(max_size=300), min_size=1, max_size=4)


def wsproto_messages(conn: WSConnection) -> list[str | bytes]:
    """Whole messages received by a wsproto connection (CloseConnection events are answered)."""
    out: list[str | bytes] = []
    parts: list[str | bytes] = []
    for event in conn.events():
        if isinstance(event, (TextMessage, BytesMessage)):
            parts.append(event.data if isinstance(event, TextMessage) else bytes(event.data))
            if event.message_finished:
                first = parts[0]
                joined = (
                    "".join(str(p) for p in parts)
                    if isinstance(first, str)
                    else b"".join(p for p in parts if isinstance(p, bytes))
                )
                out.append(joined)
                parts = []
    return out


class TestInteropWithWsproto:
    """Our client with wsproto's server and wsproto's client with our server: the handshake (with
    permessage-deflate negotiated from random parameters on both sides) and messages both ways."""

    @DIFFERENTIAL
    @given(ours_offer=our_deflates, messages=interop_messages)
    def test_our_client_and_their_server(
        self, ours_offer: DeflateOptions | None, messages: list[str | bytes]
    ) -> None:
        client = ClientConnection(
            "example.com", "/chat", subprotocols=["chat"], config=WSConfig(compress=ours_offer)
        )
        server = WSConnection(ConnectionType.SERVER)
        server.receive_data(client.data_to_send())
        (request,) = server.events()
        assert isinstance(request, WsprotoRequest)
        assert request.subprotocols == ["chat"]
        client.receive_data(server.send(AcceptConnection(subprotocol="chat", extensions=[WsprotoDeflate()])))
        assert client.state is State.OPEN
        assert client.subprotocol == "chat"
        assert (client.deflate is not None) == (ours_offer is not None)
        for message in messages:
            client.send_text(message) if isinstance(message, str) else client.send_bytes(message)
            server.receive_data(client.data_to_send())
            kind = TextMessage if isinstance(message, str) else BytesMessage
            client.receive_data(server.send(kind(data=message)))  # type: ignore[arg-type]
        assert wsproto_messages(server) == messages
        assert [e.data for e in client.events()] == messages

    @DIFFERENTIAL
    @given(theirs_offer=wsproto_deflates, ours_accept=our_deflates, messages=interop_messages)
    def test_their_client_and_our_server(
        self, theirs_offer: WsprotoDeflate, ours_accept: DeflateOptions | None, messages: list[str | bytes]
    ) -> None:
        client = WSConnection(ConnectionType.CLIENT)
        server = ServerConnection(subprotocols=["chat"], config=WSConfig(compress=ours_accept))
        server.receive_data(
            client.send(WsprotoRequest(host="example.com", target="/", extensions=[theirs_offer]))
        )
        server.accept()
        client.receive_data(server.data_to_send())
        (accepted,) = client.events()
        assert isinstance(accepted, AcceptConnection)
        assert bool(accepted.extensions) == (server.deflate is not None)
        for message in messages:
            kind = TextMessage if isinstance(message, str) else BytesMessage
            server.receive_data(client.send(kind(data=message)))  # type: ignore[arg-type]
            server.send_text(message) if isinstance(message, str) else server.send_bytes(message)
            client.receive_data(server.data_to_send())
        assert [e.data for e in server.events()] == messages
        assert wsproto_messages(client) == messages
        # The closing handshake, initiated by wsproto.
        server.receive_data(client.send(CloseConnection(code=1000, reason="done")))
        assert next((e.type, e.data, e.extra) for e in server.events()) == (WSMsgType.CLOSE, 1000, "done")
        client.receive_data(server.data_to_send())
        (answer,) = client.events()
        assert isinstance(answer, CloseConnection)
        assert answer.code == 1000
        assert server.close_transport
