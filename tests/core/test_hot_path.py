"""The parser's and sender's fast paths give the same results as the general ones.

`Connection._parse` has shortcuts chosen by size and by where the bytes sit (a `bytes` read, or the
connection's own `bytearray` buffer when a frame spans reads): a whole large text message is decoded
straight from the buffer, a large payload is copied out of the buffer through a view. A server's small
messages get a cached header. Each shortcut is checked here at and around its thresholds, whole and
split across reads, with bad input too.
"""

from __future__ import annotations

import pytest

from wscore import Connection, WSConfig, WSMsgType

from .helpers import KEY, error_of, raw_frame

# Around the 125/126 header switch and the 4096-byte switch of the buffer shortcuts.
SIZES = [0, 1, 125, 126, 4095, 4096, 4097, 65535, 65536, 70000]


def utf8_text(n: int) -> str:
    """A string whose UTF-8 encoding is exactly `n` bytes, mixing 1- to 4-byte characters."""
    chars: list[str] = []
    size = 0
    for ch in "aé€😀" * (n // 10 + 1):
        width = len(ch.encode())
        if size + width > n:
            break
        chars.append(ch)
        size += width
    chars.append("x" * (n - size))
    return "".join(chars)


def chunks(data: bytes, size: int | None) -> list[bytes]:
    return [data] if size is None else [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("chunk", [None, 1000, 4096], ids=["whole", "split-1000", "split-4096"])
def test_text_and_binary_messages_of_every_size(client: bool, chunk: int | None) -> None:
    key = None if client else KEY
    texts = [utf8_text(n) for n in SIZES]
    blobs = [bytes(range(256)) * (n // 256) + bytes(n % 256) for n in SIZES]
    stream = b"".join(
        raw_frame(1, t.encode(), mask=key) + raw_frame(2, b, mask=key)
        for t, b in zip(texts, blobs, strict=True)
    )
    conn = Connection(client=client)
    for piece in chunks(stream, chunk):
        conn.receive_data(piece)
    events = conn.events()
    expected = [
        m for t, b in zip(texts, blobs, strict=True) for m in ((WSMsgType.TEXT, t), (WSMsgType.BINARY, b))
    ]
    assert [(e.type, e.data) for e in events] == expected
    assert all(type(e.data) is (str if e.type is WSMsgType.TEXT else bytes) for e in events)


@pytest.mark.parametrize("chunk", [None, 1000])
@pytest.mark.parametrize("n", [4096, 70000])
def test_large_invalid_text_fails_with_1007(chunk: int | None, n: int) -> None:
    """The decode-from-the-buffer shortcut still fails bad UTF-8 (§8.1), and leaves no view on the
    buffer behind (the failure clears the buffer, which a live export would forbid)."""
    bad = b"a" * (n - 2) + b"\xc3\x28"
    conn = Connection(client=True)
    for piece in chunks(raw_frame(1, b"ok") + raw_frame(1, bad) + raw_frame(1, b"late"), chunk):
        conn.receive_data(piece)
    assert conn.events()[0] == (WSMsgType.TEXT, "ok", None)
    assert conn.close_code == 1007
    assert conn.closed


def test_large_text_in_fragment_mode_is_not_shortcut() -> None:
    """With `fragments=True` every data frame is delivered as a fragment, big text included."""
    text = utf8_text(5000)
    conn = Connection(client=True, config=WSConfig(fragments=True))
    conn.receive_data(raw_frame(1, text.encode()))
    assert [(e.type, e.data, e.extra) for e in conn.events()] == [(WSMsgType.TEXT, text, True)]


def test_large_text_after_a_fragmented_message_is_a_new_message() -> None:
    text = utf8_text(5000)
    frames = raw_frame(1, b"ab", fin=False) + raw_frame(0, b"cd") + raw_frame(1, text.encode())
    conn = Connection(client=True)
    conn.receive_data(frames)
    assert [(e.type, e.data) for e in conn.events()] == [(WSMsgType.TEXT, "abcd"), (WSMsgType.TEXT, text)]


def test_large_text_inside_a_fragmented_message_fails_with_1002() -> None:
    conn = Connection(client=True)
    conn.receive_data(raw_frame(1, b"ab", fin=False) + raw_frame(1, b"x" * 5000))
    assert error_of(conn) == 1002


def test_large_compressed_text_is_not_shortcut_without_deflate() -> None:
    """RSV1 set on a big text frame with no extension negotiated is a protocol error, not text."""
    conn = Connection(client=True)
    conn.receive_data(raw_frame(1, b"x" * 5000, rsv1=True))
    assert error_of(conn) == 1002


@pytest.mark.parametrize("n", [0, 1, 124, 125, 126, 127, 65535, 65536])
def test_server_sends_exact_frames(n: int) -> None:
    """A server's text and binary frames, byte for byte (the cached small headers included)."""
    conn = Connection(client=False)
    text = "é" * (n // 2) + "x" * (n % 2)
    conn.send_text(text)
    assert conn.data_to_send() == raw_frame(1, text.encode())
    blob = bytes(n)
    conn.send_bytes(bytearray(blob))
    conn.send_bytes(memoryview(blob))
    assert conn.data_to_send() == raw_frame(2, blob) * 2


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536])
def test_client_frames_read_back(n: int) -> None:
    """A client's masked frames (fresh key each) read back to the same messages on a server."""
    client, server = Connection(client=True), Connection(client=False)
    client.send_text("t" * n)
    client.send_bytes(b"b" * n)
    wire = client.data_to_send()
    assert wire[1] & 0x80  # masked
    server.receive_data(wire)
    assert [(e.type, e.data) for e in server.events()] == [
        (WSMsgType.TEXT, "t" * n),
        (WSMsgType.BINARY, b"b" * n),
    ]


@pytest.mark.parametrize("text", [True, False], ids=["text", "binary"])
def test_a_callers_bytearray_is_never_modified(text: bool) -> None:
    """Large masked text is unmasked in place only in the connection's own buffer, never in the
    caller's bytearray, whether it holds a whole frame or leaves part of the next one buffered."""
    payload = utf8_text(10000).encode() if text else bytes(10000)
    message = payload.decode() if text else payload
    frame = raw_frame(1 if text else 2, payload, mask=KEY)
    data = bytearray(frame + frame[:50])
    conn = Connection(client=False)
    conn.receive_data(data)
    assert data == frame + frame[:50]
    assert [e.data for e in conn.events()] == [message]
    rest = bytearray(frame[50:])
    conn.receive_data(rest)  # completes the buffered frame: the in-place path, on our buffer
    assert rest == frame[50:]
    assert [e.data for e in conn.events()] == [message]


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_fail_fast_when_ascii_follows_a_cut_character(client: bool) -> None:
    """The partial-frame UTF-8 probe skips decoding ASCII reads, but not when a multi-byte character
    is pending: "\\xc3" then ASCII fails with 1007 at once, before the frame is complete (§8.1)."""
    payload = b"a" * 5000 + b"\xc3" + b"a" * 5000
    frame = raw_frame(1, payload, mask=None if client else KEY)
    head = len(frame) - len(payload)
    conn = Connection(client=client)
    conn.receive_data(frame[: head + 5001])  # ends right after the lead byte
    assert conn.events() == []
    conn.receive_data(frame[head + 5001 : head + 5100])  # ASCII only
    assert error_of(conn) == 1007


@pytest.mark.parametrize("client", [True, False], ids=["client", "server"])
def test_ascii_reads_of_a_large_text_frame_then_a_bad_byte(client: bool) -> None:
    payload = b"a" * 9000 + b"\xff" + b"a" * 1000
    frame = raw_frame(1, payload, mask=None if client else KEY)
    conn = Connection(client=client)
    for piece in chunks(frame[:8000], 1000):
        conn.receive_data(piece)
        assert conn.events() == []
    conn.receive_data(frame[8000:9100])
    assert error_of(conn) == 1007
