"""Streaming large messages (issue #14), on every adapter: `receive_stream()` reads a message piece by
piece (`fragments=True`), `send_stream(chunks)` sends one from an (async) iterable of chunks, and memory
stays bounded by about a chunk however large the message.

The memory tests run client and server in this process under tracemalloc: the peak covers the sender
and the receiver together (and the event loop), so it is an upper bound for either side. 64 MiB runs on
every adapter; 1 GiB runs on asyncio and trio only (`test_one_gibibyte`: each takes 10-30 s).
"""

from __future__ import annotations

import base64
import hashlib
import random
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from wscore import ConnectionClosed, InvalidStateError, WSMsgType, WSTimeoutError

from .conftest import Adapter

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024
MiB = 1024 * 1024


HEX = bytes.maketrans(bytes(range(256)), b"0123456789abcdef" * 16)


def binary_chunks(total: int, size: int = CHUNK) -> Iterator[bytes]:
    """`total` bytes in chunks of `size`: random hex digits, the same each time (deflate halves them:
    data that inflates a thousandfold is the caveat the README states, not what this measures)."""
    rng = random.Random(14)
    for i in range(0, total, size):
        yield rng.randbytes(min(size, total - i)).translate(HEX)


def text_chunks(total: int, size: int = CHUNK) -> Iterator[str]:
    """Text of `total` characters (mostly 2-byte UTF-8), in chunks of `size` characters."""
    for i in range(0, total, size):
        yield (f"{i:016d}" + "é" * size)[: min(size, total - i)]


def crc_of(chunks: Any) -> int:
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk.encode() if isinstance(chunk, str) else chunk, crc)
    return crc


async def sink(ws: Any) -> None:
    """Read one streamed message and answer with what was read: its CRC-32, size, pieces, biggest piece."""
    stream = ws.receive_stream()
    crc = size = pieces = biggest = 0
    async for chunk in stream:
        crc = zlib.crc32(chunk.encode() if isinstance(chunk, str) else chunk, crc)
        size += len(chunk)
        pieces += 1
        biggest = max(biggest, len(chunk))
    kind = stream.type.name if stream.type is not None else None
    await ws.send_json({"crc": crc, "size": size, "pieces": pieces, "biggest": biggest, "type": kind})
    await ws.receive()  # until the client closes


async def stream_echo(ws: Any) -> None:
    """Send each message back as it is read, piece by piece, never holding it whole."""
    try:
        while True:
            await ws.send_stream(ws.receive_stream())
    except ConnectionClosed:
        pass


async def send_and_measure(adapter: Adapter, total: int, compress: bool) -> tuple[dict[str, Any], int]:
    """Stream `total` bytes from a client to a `sink` server; its report and the peak traced memory."""
    options = {"fragments": True, "compress": compress}
    async with adapter.run_server(sink, **options) as url, adapter.connect(url, **options) as ws:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            await ws.send_stream(binary_chunks(total))
            report = await ws.receive_json(timeout=60)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return report, peak


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
async def test_64_mib_in_bounded_memory(adapter: Adapter, compress: bool) -> None:
    total = 64 * MiB
    report, peak = await send_and_measure(adapter, total, compress)
    assert report == {
        "crc": crc_of(binary_chunks(total)),
        "size": total,
        "pieces": report["pieces"],
        "biggest": report["biggest"],
        "type": "BINARY",
    }
    assert report["pieces"] >= total // CHUNK  # delivered piece by piece, not joined
    assert report["biggest"] <= CHUNK
    assert peak < 4 * MiB, f"peak traced memory {peak / MiB:.1f} MiB for a {total // MiB} MiB message"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("adapter", ["asyncio", "trio"], indirect=True)
async def test_one_gibibyte(adapter: Adapter) -> None:
    """The issue's figure: 1 GiB through one connection with a peak of a few MiB (asyncio and trio)."""
    total = 1024 * MiB
    report, peak = await send_and_measure(adapter, total, compress=False)
    assert (report["size"], report["crc"]) == (total, crc_of(binary_chunks(total)))
    assert report["biggest"] <= CHUNK
    assert peak < 4 * MiB, f"peak traced memory {peak / MiB:.1f} MiB for 1 GiB"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_stream_both_ways(adapter: Adapter, compress: bool, kind: str) -> None:
    """Client streams to a server that streams it back as it reads: both directions, chunk by chunk,
    from a sync and from an async iterable, compressed or not; the text arrives as str pieces."""
    total = 3 * MiB + 12345
    chunks = list(text_chunks(total)) if kind == "text" else list(binary_chunks(total))
    options = {"fragments": True, "compress": compress}

    async def async_chunks() -> AsyncIterator[Any]:
        for chunk in chunks:
            yield chunk

    async with adapter.run_server(stream_echo, **options) as url, adapter.connect(url, **options) as ws:
        assert (ws.core.deflate is not None) is compress
        for source in (chunks, async_chunks()):
            received: list[Any] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(ws.send_stream, source)
                stream = ws.receive_stream()
                received.extend([piece async for piece in stream])
            assert stream.type is (WSMsgType.TEXT if kind == "text" else WSMsgType.BINARY)
            assert all(isinstance(p, str if kind == "text" else bytes) for p in received)
            assert len(received) > 3
            assert crc_of(received) == crc_of(chunks)
        # The connection goes on with ordinary messages, and receive() joins a streamed one.
        await ws.send_str("after")
        assert await ws.receive_str() == "after"
        await ws.send_stream([b"a", b"b", b"c"])
        assert await ws.receive_bytes() == b"abc"


async def test_receive_joins_fragments_up_to_max_msg_size(adapter: Adapter) -> None:
    """With fragments=True, receive() still returns whole messages, bounded by max_msg_size (1009),
    while receive_stream() reads past it."""
    big = [b"x" * 60_000] * 3
    options = {"fragments": True, "max_msg_size": 100_000}
    async with adapter.run_server(stream_echo, fragments=True) as url, adapter.connect(url, **options) as ws:
        await ws.send_stream(big)
        assert b"".join([p async for p in ws.receive_stream()]) == b"".join(big)
        await ws.send_stream(["a", "b"])
        msg = await ws.receive()
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.TEXT, "ab", None)
        await ws.send_stream(big)
        msg = await ws.receive()
        assert msg.type is WSMsgType.ERROR
        assert ws.close_code == 1009


async def test_receive_stream_without_fragment_mode_yields_the_whole_message(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.send_stream(["a", "b", "c"])  # a streamed send needs no mode
        assert [p async for p in ws.receive_stream()] == ["abc"]


async def test_send_stream_argument_errors(adapter: Adapter) -> None:
    async with adapter.run_server(stream_echo, fragments=True) as url, adapter.connect(url) as ws:
        bad: Any = b"one message"
        with pytest.raises(TypeError):
            await ws.send_stream(bad)
        await ws.send_stream([])  # no chunks: no message
        await ws.send_str("still open")
        assert await ws.receive_str() == "still open"
        mixed: Any = ["text", b"bytes"]
        with pytest.raises(TypeError):
            await ws.send_stream(mixed)
        # The message was cut after its first frame: the connection closes with 1011.
        msg = await ws.receive()
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        assert ws.close_code == 1011
        with pytest.raises(ConnectionClosed):
            await ws.send_stream([b"x"])


async def test_other_sends_cannot_join_a_streamed_message(adapter: Adapter) -> None:
    """While a stream waits for its next chunk, a send_str/send_bytes of another task raises
    InvalidStateError instead of becoming part of the message; pings still go out."""
    halfway = anyio.Event()
    resume = anyio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one"
        halfway.set()
        await resume.wait()
        yield b"two"

    async with adapter.run_server(stream_echo, fragments=True) as url, adapter.connect(url) as ws:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ws.send_stream, chunks())
            await halfway.wait()
            with pytest.raises(InvalidStateError, match="streamed message"):
                await ws.send_str("not part of it")
            with pytest.raises(InvalidStateError, match="streamed message"):
                await ws.send_bytes(b"nor this")
            await ws.ping(b"fine")
            resume.set()
        assert await ws.receive_bytes() == b"onetwo"
        await ws.send_str("after")
        assert await ws.receive_str() == "after"


# -- a raw peer: exactly the frames a test needs, then a drop ---------------------------------------


def frame(opcode: int, payload: bytes, fin: bool) -> bytes:
    assert len(payload) < 126
    return bytes(((0x80 if fin else 0) | opcode, len(payload))) + payload


@asynccontextmanager
async def raw_server(frames: bytes, *, drop: bool, then: bytes = b"") -> AsyncIterator[str]:
    """A server that upgrades, sends `frames`, then drops TCP (`drop`) or reads until the client
    closes, sending `then` when the client's first bytes arrive."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            await stream.send(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + frames
            )
            if not drop:
                try:
                    await stream.receive()
                    if then:
                        await stream.send(then)
                        await stream.receive()  # the client's close frame: drop TCP at once
                        return
                    while await stream.receive():
                        pass
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield f"ws://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def test_invalid_utf8_mid_stream_closes_1007(adapter: Adapter) -> None:
    frames = frame(1, b"hello ", False) + frame(0, b"w\xc3", False) + frame(0, b"\x28rest", True)
    async with raw_server(frames, drop=False) as url, adapter.connect(url, fragments=True) as ws:
        received: list[str] = []
        with pytest.raises(ConnectionClosed) as caught:
            async for piece in ws.receive_stream():
                received.append(piece)  # noqa: PERF401  # what came before the error is kept
        assert "".join(received) == "hello w"  # "w\xc3" holds back the cut character
        assert caught.value.code == 1007
        assert ws.close_code == 1007


async def test_a_drop_mid_stream_raises_connection_closed(adapter: Adapter) -> None:
    frames = frame(2, b"part 1", False) + frame(0, b"part 2", False)
    async with raw_server(frames, drop=True) as url, adapter.connect(url, fragments=True) as ws:
        received: list[bytes] = []
        with pytest.raises(ConnectionClosed) as caught:
            async for piece in ws.receive_stream():
                received.append(piece)  # noqa: PERF401  # what came before the error is kept
        assert received == [b"part 1", b"part 2"]
        assert caught.value.code == 1006
        assert ws.close_code == 1006
        assert (await ws.receive()).type in (WSMsgType.ERROR, WSMsgType.CLOSED)


async def test_a_drop_mid_receive_returns_the_error_not_a_partial_message(adapter: Adapter) -> None:
    frames = frame(2, b"part 1", False)
    async with raw_server(frames, drop=True) as url, adapter.connect(url, fragments=True) as ws:
        msg = await ws.receive()
        assert msg.type in (WSMsgType.ERROR, WSMsgType.CLOSED)
        assert ws.close_code == 1006


async def test_a_timed_out_receive_loses_no_fragment(adapter: Adapter) -> None:
    """receive() joining fragments times out mid-message: what it joined goes back to the queue, and
    the next receive() returns the whole message."""
    first = frame(2, b"part 1, ", False)
    rest = frame(0, b"part 2, ", False) + frame(0, b"part 3", True)
    async with raw_server(first, drop=False, then=rest) as url, adapter.connect(url, fragments=True) as ws:
        with pytest.raises(WSTimeoutError):
            await ws.receive(timeout=0.05)  # the first frame is joined, the rest is not sent yet
        await ws.ping()  # the raw server sends the rest when this arrives
        msg = await ws.receive(timeout=10)
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.BINARY, b"part 1, part 2, part 3", None)
