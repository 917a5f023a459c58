"""Streaming large messages (issue #14), written once for every adapter: read one fragment by fragment
(`ReceiveStream`), send one from an iterable or async iterable of chunks (`send_stream`).

Receiving builds on the core's fragment mode (the `fragments=True` option): the core then delivers
each frame as it arrives (a compressed one as its inflation steps of at most 16 KiB) and bounds each
frame by `max_frame_size` (default: `max_msg_size`), never the whole message. `receive_stream()` yields
those pieces; `receive()` on such a connection still returns whole messages, joined here (`assemble`)
and bounded by `max_msg_size` (1009 past it). Unread pieces wait in the connection's queue like
messages do, so reading pauses at `max_queue` pieces or `max_queue_bytes`: memory stays bounded by
about `max_queue` frames whatever the message's size.

Sending needs no mode: each chunk goes out at once as one frame (the first TEXT or BINARY, then
CONTINUATION; compressed when the connection compresses), an empty final frame ends the message, and
every chunk waits for back-pressure (`_drain`) before the next one is taken. The frames go through the
core's `send_fragment`, so a `send_str`/`send_bytes` of another task meanwhile raises
`InvalidStateError` instead of becoming part of the message.

Nothing here is on the normal path: `receive()` calls `assemble` only for a fragment (an event whose
`extra` is a bool, which only fragment mode produces).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Final

from wscore import CLOSED_MESSAGE, Connection, ConnectionClosed, MessageTooBig, State, WSMessage, WSMsgType

from .api import compress_flag

if TYPE_CHECKING:
    from .connection import WebSocketAPI

__all__ = ["Chunks", "ReceiveStream", "assemble", "send_stream"]

Chunk = str | bytes | bytearray | memoryview
Chunks = Iterable[Chunk] | AsyncIterable[Chunk]
"""What `send_stream` takes: the chunks of one message, all str (TEXT) or all bytes-like (BINARY)."""

_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_CONTINUATION: Final = WSMsgType.CONTINUATION
_CONTROL: Final = frozenset((WSMsgType.PING, WSMsgType.PONG))
_CLOSE: Final = WSMsgType.CLOSE
_CLOSED: Final = WSMsgType.CLOSED


async def _next_event(ws: WebSocketAPI, timeout: float | None) -> WSMessage:
    """The next queued event (a fragment, a control message, CLOSE/ERROR...), waiting for it as
    `receive()` does and resuming reading by its rule; CLOSED once nothing more can come."""
    queue = ws._queue
    while not queue and not ws._gone():
        await ws._wait_message(timeout)
        queue = ws._queue  # made by the first message (NO_MESSAGES)
    if not queue:
        return CLOSED_MESSAGE
    msg = queue.popleft()
    if ws._read_paused and len(queue) <= ws._low_water and ws._unread_bytes() <= ws._max_queue_bytes // 4:
        ws._resume_reading()
    return msg


def _interrupted(ws: WebSocketAPI, msg: WSMessage) -> ConnectionClosed:
    """The error for a message cut short by `msg` (CLOSE, CLOSING, ERROR or CLOSED). `msg` goes back
    to the queue, so that `receive()` still returns it (and answers a close)."""
    if msg.type is not _CLOSED:
        ws._queue.appendleft(msg)
    conn = ws._conn
    code = conn.close_code or 1006
    error = ConnectionClosed(code, conn.close_reason or "connection closed during a streamed message")
    if isinstance(msg.data, BaseException):
        error.__cause__ = msg.data
    return error


class ReceiveStream:
    """`async for chunk in ws.receive_stream()`: the pieces of the next TEXT (str chunks) or BINARY
    (bytes chunks) message, in order, as the core delivers them. On a connection without
    `fragments=True` the message comes whole, as one chunk.

    `ConnectionClosed` if the connection closes or drops before the message ends (or before it
    starts); invalid UTF-8 mid-message fails the connection with 1007 and raises it the same way.
    `timeout` bounds the wait for each piece (`WSTimeoutError`; nothing is lost). With autoping off,
    pings and pongs that arrive mid-message are returned by `receive()` after it. A stream left before
    its end leaves the rest of its message to be skipped by the next `receive()` or stream.
    """

    __slots__ = ("_done", "_held", "_started", "_timeout", "_ws", "type")

    def __init__(self, ws: WebSocketAPI, timeout: float | None) -> None:
        self._ws = ws
        self._timeout = timeout
        self._started = False
        self._done = False
        self._held: list[WSMessage] = []
        self.type: WSMsgType | None = None
        """TEXT or BINARY once the first chunk is read."""

    def __aiter__(self) -> ReceiveStream:
        return self

    async def __anext__(self) -> str | bytes:
        if self._done:
            raise StopAsyncIteration
        ws = self._ws
        if ws._receiving:
            raise RuntimeError("Concurrent call to receive() is not allowed")
        if ws._conn.state is not State.OPEN and not ws._queue:
            raise _interrupted(ws, CLOSED_MESSAGE)
        timeout = ws._receive_timeout if self._timeout is None else self._timeout
        ws._receiving = True
        try:
            while True:
                msg = await _next_event(ws, timeout)
                kind = msg.type
                if kind is _CONTINUATION:
                    if self._started:
                        break
                    continue  # the rest of a message whose stream was left: skip it
                if kind is _TEXT or kind is _BINARY:
                    if self._started:  # cannot happen: the core checks §5.4's order
                        raise AssertionError("a new message inside a streamed one")
                    self._started = True
                    self.type = kind
                    break
                if kind in _CONTROL:
                    self._held.append(msg)
                    continue
                self._end()
                raise _interrupted(ws, msg)
        finally:
            ws._receiving = False
        if msg.extra is not False:  # True: the last piece; None: a whole message (no fragment mode)
            self._end()
        data: str | bytes = msg.data
        return data

    def _end(self) -> None:
        self._done = True
        if self._held:
            self._ws._queue.extendleft(reversed(self._held))
            self._held = []


async def assemble(ws: WebSocketAPI, msg: WSMessage, timeout: float | None) -> WSMessage:
    """`receive()` in fragment mode: the whole message that fragment `msg` starts, joined, bounded by
    `max_msg_size` (past it the connection closes with 1009 and an ERROR message is returned).
    Cancelled or timed out, the part joined so far goes back to the queue: nothing is lost."""
    if msg.type is _CONTINUATION:
        # The rest of a message whose stream was left: skip it, then receive the next message.
        while msg.extra is False:
            msg = await _next_event(ws, timeout)
            if msg.type is not _CONTINUATION:
                ws._queue.appendleft(msg)
                break
        return await ws.receive(timeout)
    if msg.extra is not False:
        return WSMessage(msg.type, msg.data, None)
    if timeout is None:
        timeout = ws._receive_timeout
    limit = ws._conn.config.max_message_size
    kind = msg.type
    parts: list[str] | list[bytes] = [msg.data]
    size = len(msg.data)
    ws._receiving = True
    try:
        while True:
            piece = await _next_event(ws, timeout)
            if piece.type is not _CONTINUATION:
                # A ping or pong (autoping off) comes out now; the message waits. The end of the
                # connection drops the message (as the core does with a partial one).
                if piece.type in _CONTROL:
                    ws._queue.appendleft(WSMessage(kind, _join(parts), False))
                    parts = []
                    return piece
                ws._queue.appendleft(piece)
                parts = []
                break
            size += len(piece.data)
            if limit is not None and size > limit:
                parts = []
                error = MessageTooBig(f"message of over {limit} bytes (max_msg_size)")
                ws._start_close(1009, error.reason)
                conn = ws._conn  # as the core reports a limit it enforces (`_fail`)
                conn.exception, conn.close_code, conn.close_reason = error, 1009, error.reason
                return WSMessage(WSMsgType.ERROR, error, None)
            parts.append(piece.data)
            if piece.extra:
                joined = _join(parts)
                parts = []
                return WSMessage(kind, joined, None)
    finally:
        ws._receiving = False
        if parts:
            # Interrupted (timeout, cancellation): keep what was joined for the next call.
            ws._queue.appendleft(WSMessage(kind, _join(parts), False))
    return await ws.receive(timeout)


def _join(parts: list[str] | list[bytes]) -> str | bytes:
    first = parts[0]
    if isinstance(first, str):
        return "".join(parts)  # type: ignore[arg-type]  # all str: one message's
    return b"".join(parts)  # type: ignore[arg-type]


def _queue_chunk(conn: Connection, chunk: Chunk, text: bool | None, flag: bool | None) -> bool:
    """Queue `chunk` as the next frame of the message (`text`: its kind so far, None before the first)."""
    is_text = isinstance(chunk, str)
    if not is_text and not isinstance(chunk, (bytes, bytearray, memoryview)):
        raise TypeError(f"chunks must be str or bytes-like, not {type(chunk).__name__}")
    if text is not None and is_text is not text:
        raise TypeError("a message's chunks must all be str or all bytes-like")
    conn.send_fragment(chunk, False, compress=flag)
    return is_text


async def send_stream(ws: WebSocketAPI, chunks: Chunks, compress: bool | int | None = None) -> None:
    """Send one message made of `chunks` (see `WebSocketAPI.send_stream`)."""
    if isinstance(chunks, (str, bytes, bytearray, memoryview)):
        raise TypeError("send_stream() takes an iterable of chunks; send_str()/send_bytes() take one")
    conn = ws._conn
    flag = None if compress is None else compress_flag(compress)
    text: bool | None = None
    try:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                text = _queue_chunk(conn, chunk, text, flag)
                if ws._sent(len(chunk)):
                    await ws._drain()
        else:
            for chunk in chunks:
                text = _queue_chunk(conn, chunk, text, flag)
                if ws._sent(len(chunk)):
                    await ws._drain()
    except BaseException:
        if text is not None and not ws.closed:
            # The message is cut: nothing else can be sent on this connection (RFC 6455 §5.4), so it
            # ends, as websockets does, with 1011.
            ws._start_close(1011, "message stream interrupted")
        raise
    if text is None:
        return  # no chunks: no message
    conn.send_fragment("" if text else b"", True)
    if ws._sent(0):
        await ws._drain()
