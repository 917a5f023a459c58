"""The shared driver of the structured-concurrency adapters (`wscore_trio`, `wscore_anyio`).

trio and anyio have the same shape — cancel scopes with deadlines, task groups with `start`, one-shot
events, byte streams — so the whole connection logic is written once here, against an `IOBackend` of a
dozen primitives that each adapter supplies in a few lines. Pure Python: this module imports neither
library.

How a connection runs (one task group it owns, shielded so that only the connection ends it), over a
byte stream ("pull"):

- the reader reads the stream, feeds the core and queues the events; it stops reading while
  `max_queue` messages wait (back-pressure) and keeps reading otherwise, so pings are answered and
  the close handshake completes while the application is busy;
- `send_*()` writes its frame from the calling task when no other write is in progress and the stream
  reports how much each write took (`IOBackend.sender`: a plain socket): no task switch per message.
  Cancelled part-way, it hands the rest of the frame to the writer, so a frame is never cut short;
- the writer task writes everything else (replies to pings, the close frame, frames queued while
  another write was in progress, every frame on streams without `sender`, such as TLS), whole
  frames in order;
- the timer sleeps until the core's `next_deadline()` and calls `handle_timer(now)` (heartbeat, pong,
  close deadlines).

Over an asyncio transport ("push", `IOBackend.push_source`: anyio on its asyncio backend) there is no
reader and no writer task: the transport's callbacks feed the core and its bytes go to
`transport.write()`, as in `wscore_asyncio`.

Leaving the connection's `async with` closes it (1000; 1001 when cancelled; 1011 when a server handler
failed) within the close timeout, shielded from the cancellation, then cancels those tasks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from types import TracebackType
from typing import Any, Protocol, TypeVar

from wscore import (
    CLOSED_MESSAGE,
    CLOSING_MESSAGE,
    ClientConnection,
    Connection,
    ConnectionClosed,
    HandshakeError,
    Request,
    ServerConnection,
    State,
    WSError,
    WSMessage,
    WSMsgType,
    WSTimeoutError,
)
from wscore.frames import encode_frame
from wscore.handshake import HeadersLike

from .api import (
    DEFAULT_MAX_QUEUE,
    WSURL,
    WebSocketBase,
    close_args,
    compress_flag,
    control_payload,
    echo_handler,
    parse_url,
    text_or_bytes,
)
from .options import ClientOptions, ServerOptions
from .server import ProcessRequest, answer_request, handler_close, logger

__all__ = [
    "HIGH_WATER",
    "IOBackend",
    "ProcessRequest",
    "PushSource",
    "PushTransport",
    "RecvSome",
    "SendSome",
    "StreamWebSocket",
    "broadcast",
    "check_listen_args",
    "connect_stream",
    "echo_handler",
    "StreamServer",
    "wrap_stream",
]


HIGH_WATER = 64 * 1024
"""Bytes queued for writing above which `send_*()` waits for the writer (back-pressure)."""

_RECEIVE_SIZE = 64 * 1024
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED


class EventLike(Protocol):
    """A one-shot event (trio.Event, anyio.Event)."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[object]: ...


class ScopeLike(Protocol):
    """A cancel scope (trio.CancelScope, anyio.CancelScope)."""

    @property
    def deadline(self) -> float: ...
    @deadline.setter
    def deadline(self, value: float) -> None: ...
    @property
    def cancelled_caught(self) -> bool: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool | None: ...


class IOBackend:
    """The primitives an adapter supplies: everything library-specific the driver needs."""

    stream_errors: tuple[type[BaseException], ...] = (OSError,)
    """Exceptions of a stream's `send`/`receive` that mean the connection broke or was closed."""

    def event(self) -> EventLike:
        """A new one-shot event."""
        raise NotImplementedError

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> ScopeLike:
        """A new cancel scope."""
        raise NotImplementedError

    def current_time(self) -> float:
        """The event loop's clock, the `now` passed to the core."""
        raise NotImplementedError

    def clock(self) -> Callable[[], float]:
        """`current_time` as a function of the running event loop, for a connection to keep."""
        return self.current_time

    def task_group(self) -> AbstractAsyncContextManager[Any]:
        """A new nursery / task group (with `start_soon` and `start`)."""
        raise NotImplementedError

    def is_cancelled(self, exc: BaseException) -> bool:
        """Whether `exc` is the library's cancellation exception."""
        raise NotImplementedError

    async def sleep_forever(self) -> None:
        """Sleep until cancelled."""
        raise NotImplementedError

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Call `fn()` once the running task lets the event loop run (needed with `push_source`)."""
        raise NotImplementedError

    async def receive(self, stream: Any) -> bytes | bytearray:
        """Read some bytes; b"" at end of stream."""
        raise NotImplementedError

    async def send(self, stream: Any, data: bytes) -> None:
        """Write all of `data`."""
        raise NotImplementedError

    async def aclose(self, stream: Any) -> None:
        """Close the stream at once (no graceful TLS shutdown: the WebSocket close handshake is done)."""
        raise NotImplementedError

    def extra_info(self, stream: Any, name: str) -> Any:
        """`get_extra_info(name)`: "peername", "sockname", "ssl_object", ...; None if unknown."""
        return None

    def waiter(self) -> EventLike:
        """A one-shot event that at most one task waits on (may be cheaper than `event()`)."""
        return self.event()

    def receiver(self, stream: Any) -> RecvSome | None:
        """For the reader: a cheaper `receive(stream)` for this stream (a plain socket), or None."""
        return None

    def sender(self, stream: Any) -> SendSome | None:
        """For a stream whose writes report progress (a plain socket): `send_some`, which lets
        `send_*()` write from the calling task. None: every write goes through the writer task."""
        return None

    def push_source(self, stream: Any) -> PushSource | None:
        """For a stream that can deliver its bytes by callback (an asyncio transport): the connection
        is then driven from the callbacks, without reader and writer tasks. None: pulled."""
        return None


RecvSome = Callable[[], Awaitable[bytes]]
"""`await recv_some()`: the next bytes of the stream, b"" at its end."""

SendSome = Callable[[Any], Awaitable[int]]
"""`await send_some(data)`: write some of `data` (bytes or a memoryview) and return how many bytes went
out, waiting only while the socket is full; a call that is cancelled has written nothing. It need not
be a checkpoint."""


class PushTransport(Protocol):
    """What the driver uses of an asyncio transport (duck-typed: this module imports no asyncio)."""

    def write(self, data: bytes) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class PushSource(Protocol):
    """A stream that can hand its bytes to a connection as they arrive."""

    @property
    def transport(self) -> PushTransport:
        """The transport to write to, pause and close."""
        ...

    def attach(self, ws: StreamWebSocket) -> None:
        """From now on pass everything to `ws`: `ws._push_data(data)`, `ws._push_eof()`,
        `ws._push_lost(exc)`, `ws._push_pause_writing()`, `ws._push_resume_writing()`, starting
        (synchronously, inside this call) with what arrived before and was not read."""
        ...


_W = TypeVar("_W", bound="StreamWebSocket")


class StreamWebSocket(WebSocketBase):
    """A WebSocket connection over a byte stream, with aiohttp's WebSocket API.

    Made by an adapter's `connect()` or `serve()`; usable inside their `async with` / handler.
    """

    io: IOBackend
    """The adapter's primitives (a class attribute of each adapter's subclass; `io=` overrides it for
    one connection)."""

    def __init__(
        self,
        stream: Any,
        conn: Connection,
        *,
        receive_timeout: float | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        io: IOBackend | None = None,
    ) -> None:
        if io is not None:
            self.io = io
        io = self.io
        self._stream = stream
        self._conn = conn
        self._receive_timeout = receive_timeout
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._max_queue = max_queue
        self._queue: deque[WSMessage] = deque(conn.events())
        self._discard = False  # after our close(): data messages are dropped, reading never pauses
        self._receiving = False
        self._msg_waiter: EventLike | None = None
        self._drain_waiter: EventLike | None = None
        self._done = io.event()  # the transport is closed and the background tasks ended
        self._clock = io.clock()
        self._timer_scope: ScopeLike | None = None
        self._bg_scope: ScopeLike | None = None
        self._transport_closed = False
        # Pulled streams: bytes for the writer, and who is writing.
        self._out: list[bytes] = []
        self._pending = 0  # bytes in _out plus those of the write in progress
        self._writing = False  # a task (the writer, or a sender) is in a write to the stream
        self._sender = io.sender(stream)
        self._space_waiter: EventLike | None = None
        self._write_waiter: EventLike | None = None
        self._writer_scope: ScopeLike | None = None
        # A send wrote from its task and no task switch has been seen since: the next sends go to the
        # writer (pulled) or a flush called soon (pushed), which write them all at once when the
        # sender lets the event loop run: one system call per burst, not per message.
        self._wrote_direct = False
        self._flush_scheduled = False
        # Pushed streams (an asyncio transport).
        self._source = io.push_source(stream)
        self._transport: PushTransport | None = None
        self._read_paused = False
        self._write_paused = False
        self._lost = False
        self._lost_event: EventLike | None = None
        self._closer_event: EventLike | None = None
        self.request: Request | None = getattr(conn, "request", None)
        """Server side: the upgrade request (path, headers) the connection was opened with."""
        data = conn.data_to_send()
        if data:
            self._out.append(data)
            self._pending = len(data)

    # -- state ---------------------------------------------------------------------------------

    def write_buffer_size(self) -> int:
        """Bytes handed over for writing but not yet written."""
        transport = self._transport
        if transport is not None:
            return 0 if self._lost else transport.get_write_buffer_size() + self._pending
        return self._pending

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed (without starting a close)."""
        await self._done.wait()

    def __repr__(self) -> str:
        role = "client" if self._conn.client else "server"
        return f"<{type(self).__name__} {role} {self._conn.state.name}>"

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or the connection is closed (or dropped): nothing more
        can be sent."""
        conn = self._conn
        return conn.state is State.CLOSED or conn.close_sent or self._transport_closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport details: "peername", "sockname", "ssl_object", "stream"."""
        if name == "stream":
            return self._stream
        value = self.io.extra_info(self._stream, name)
        return default if value is None else value

    # -- receiving -----------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """The next message. With autoping, pings and pongs are answered and hidden. After the close,
        CLOSE (or ERROR) then CLOSED; CLOSED forever after. `timeout` (default: the `receive` of
        `timeout=WSTimeout(...)`) raises `WSTimeoutError`; cancelling the call loses no message."""
        if self._receiving:
            raise RuntimeError("Concurrent call to receive() is not allowed")
        queue = self._queue
        if queue:
            return self._pop()
        conn = self._conn
        if conn.state is not _OPEN or self._discard:
            if conn.state is _CLOSED or self._done.is_set():
                # The core's CLOSED event went to the queue when it happened: nothing more can come.
                return CLOSED_MESSAGE
            if self._discard:
                await self._done.wait()
                return CLOSED_MESSAGE
            if conn.state is _CLOSING and not conn.close_sent:
                # The peer's close (autoclose off) was delivered: the answer is ours to send, as
                # aiohttp does.
                await self.close()
                return CLOSED_MESSAGE
        if timeout is None:
            timeout = self._receive_timeout
        io = self.io
        self._receiving = True
        self._wrote_direct = False
        try:
            if timeout is None:
                # No cancel scope of our own: the caller's scopes cancel the wait, losing nothing.
                while not queue:
                    if self._done.is_set():
                        return CLOSED_MESSAGE
                    waiter = self._msg_waiter = io.waiter()
                    await waiter.wait()
            else:
                with io.cancel_scope(deadline=io.current_time() + timeout) as scope:
                    while not queue:
                        if self._done.is_set():
                            return CLOSED_MESSAGE
                        waiter = self._msg_waiter = io.waiter()
                        await waiter.wait()
                if scope.cancelled_caught and not queue:
                    raise WSTimeoutError(f"no message within {timeout} s")
        finally:
            self._receiving = False
            self._msg_waiter = None
        return self._pop()

    def _pop(self) -> WSMessage:
        queue = self._queue
        msg = queue.popleft()
        if self._space_waiter is not None and len(queue) < self._max_queue:
            self._space_waiter.set()
        elif self._read_paused and len(queue) <= self._max_queue // 4:
            # Pushed: reading resumes once the queue is down to a quarter, not per message.
            self._resume_reading()
        return msg

    # -- sending -------------------------------------------------------------------------------

    async def send_str(self, data: str, compress: bool | int | None = None) -> None:
        """Send a text message; `compress` overrides whether this one is compressed (None: the default).
        `TypeError` if `data` is not a str, `ConnectionClosed` once closed. Cancelling the call never
        cuts the frame short: what was not yet written is still sent, whole."""
        if type(data) is not str:
            text_or_bytes(data, "str")
        if compress is None:
            self._conn.send_text(data)
        else:
            self._conn.send_text(data, compress=compress_flag(compress))
        await self._send()

    async def send_bytes(
        self, data: bytes | bytearray | memoryview, compress: bool | int | None = None
    ) -> None:
        """Send a binary message; `compress` as in `send_str`."""
        if type(data) is not bytes:
            text_or_bytes(data, "bytes")
        if compress is None:
            self._conn.send_bytes(data)
        else:
            self._conn.send_bytes(data, compress=compress_flag(compress))
        await self._send()

    async def send_frame(
        self, message: bytes | bytearray | memoryview, opcode: int, compress: bool | int | None = None
    ) -> None:
        """Send one frame with `opcode` (TEXT, BINARY, CONTINUATION, PING, PONG or CLOSE)."""
        text_or_bytes(message, "bytes")
        payload = bytes(message)
        conn = self._conn
        flag = compress_flag(compress)
        if flag and opcode == WSMsgType.BINARY:
            conn.send_bytes(payload, compress=True)
        elif flag and opcode == WSMsgType.TEXT:
            conn.send_text(payload.decode("utf-8"), compress=True)
        elif opcode == WSMsgType.CLOSE:
            if not payload:
                await self.close(code=None)
            else:
                await self.close(code=int.from_bytes(payload[:2], "big"), message=payload[2:])
            return
        else:
            conn.send_frame(payload, int(opcode))
        await self._send()

    def send_prepared(self, frame: bytes) -> bool:
        """Queue a frame encoded once for many connections (server side, see `broadcast`) without waiting.

        Returns False, queueing nothing, when this connection is closed or its writer is behind by more
        than `HIGH_WATER` bytes (a slow client), so one slow client cannot stall a broadcast.
        """
        conn = self._conn
        if self._behind() or conn.state is not State.OPEN or conn.close_sent:
            return False
        conn.send_prepared(frame)
        self._after_io()
        return True

    def send_message_nowait(self, message: str | bytes | bytearray | memoryview) -> bool:
        """Queue a whole message without waiting (used by `broadcast` for client connections); False,
        queueing nothing, when closed or behind by more than `HIGH_WATER` bytes."""
        conn = self._conn
        if self._behind() or conn.state is not State.OPEN or conn.close_sent:
            return False
        if isinstance(message, str):
            conn.send_text(message)
        else:
            conn.send_bytes(message)
        self._after_io()
        return True

    def _behind(self) -> bool:
        return self._write_paused or self.write_buffer_size() > HIGH_WATER

    async def ping(self, message: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes, else `ValueError`)."""
        self._conn.ping(control_payload(message), self.io.current_time())
        self._rearm_timer()
        await self._send()

    async def pong(self, message: bytes | str = b"") -> None:
        """Send a pong: an unsolicited one, or the answer to a ping with autoping off."""
        self._conn.pong(control_payload(message))
        await self._send()

    async def close(self, *, code: int | None = 1000, message: bytes | str = b"") -> bool:
        """Close: send a close frame, wait for the peer's (within the close timeout) and for TCP to
        close. Returns True if this call closed the connection, False if it was already closing.

        A task waiting in `receive()` gets a CLOSING message; messages that arrive after this call are
        dropped (as aiohttp does). Cancelling close() leaves the close to the connection's `async with`.
        """
        code, reason = close_args(code, message)
        started = self._start_close(code, reason)
        await self._done.wait()
        return started

    def _start_close(self, code: int | None, reason: str) -> bool:
        """The non-waiting part of `close()`: send the close frame and stop delivering messages."""
        conn = self._conn
        started = False
        if not self._discard:
            self._discard = True
            self._queue.clear()
            if self._msg_waiter is not None:
                self._queue.append(CLOSING_MESSAGE)
                self._msg_waiter.set()
            # The peer's close frame must get through.
            if self._space_waiter is not None:
                self._space_waiter.set()
            self._resume_reading()
        if not self._transport_closed and conn.state is not State.CLOSED and not conn.close_sent:
            started = conn.close(code, reason, self.io.current_time())
        self._after_io()
        return started

    async def _send(self) -> None:
        """Write what a send queued in the core. Pushed: into the transport. Pulled: from this task
        when the stream is free and reports progress, else through the writer. Then wait while more
        than `HIGH_WATER` bytes are behind (back-pressure)."""
        if self._transport is not None:
            self._push_out()
            if self._write_paused:
                await self._wait_drain()
                if self._transport_closed:
                    # What was waiting in the transport's buffer is lost with it: say so, as the
                    # pulled path and wscore_asyncio do.
                    conn = self._conn
                    raise ConnectionClosed(conn.close_code or 1006, conn.close_reason or "connection lost")
            return
        if (
            self._sender is not None
            and not self._wrote_direct
            and not self._writing
            and not self._out
            and not self._transport_closed
        ):
            data = self._conn.data_to_send()
            if data:
                self._wrote_direct = True
                await self._write_now(self._sender, data)
            return
        self._after_io()
        if self._pending > HIGH_WATER:
            await self._wait_drain()

    def _push_out(self) -> None:
        """Pushed: the first send since the event loop last ran goes to the transport at once; the
        next ones are joined and written by one flush called soon."""
        data = self._conn.data_to_send()
        transport = self._transport
        if not data or self._lost or transport is None:
            return
        if not self._wrote_direct and not self._out:
            self._wrote_direct = True
            transport.write(data)
            return
        self._out.append(data)
        self._pending += len(data)
        if self._pending > HIGH_WATER:
            self._flush_out()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.io.call_soon(self._flush_out)

    async def _write_now(self, sender: SendSome, data: bytes) -> None:
        """Write `data` from the calling task. Cancelled between two partial writes, the rest goes to
        the writer task (the frame still goes out whole); a broken stream raises `ConnectionClosed`."""
        self._writing = True
        size = len(data)
        self._pending += size
        sent = 0
        try:
            sent = await sender(data)
            self._pending -= sent
            if sent < size:
                view = memoryview(data)
                while sent < size:
                    n = await sender(view[sent:])
                    sent += n
                    self._pending -= n
        except self.io.stream_errors as exc:
            self._out.clear()
            self._pending = 0
            self._stream_failed(exc)
            raise ConnectionClosed(1006, f"connection lost: {exc!r}") from exc
        except BaseException:
            if sent < size:
                self._out.insert(0, data[sent:])  # still counted in _pending
            raise
        finally:
            self._writing = False
            if (self._out or self._conn.close_transport) and self._write_waiter is not None:
                self._write_waiter.set()
            if self._drain_waiter is not None and self._pending <= HIGH_WATER:
                self._drain_waiter.set()
                self._drain_waiter = None

    async def _wait_drain(self) -> None:
        """Wait until the writer (or the transport) is below the high-water mark, or closed."""
        while (self._write_paused or self._pending > HIGH_WATER) and not self._transport_closed:
            # One event shared by every waiting sender.
            waiter = self._drain_waiter
            if waiter is None:
                waiter = self._drain_waiter = self.io.event()
            await waiter.wait()

    # -- between the core and the stream -------------------------------------------------------

    def _after_io(self) -> None:
        """Move the core's events to the queue and its bytes to the stream; re-arm the timer."""
        conn = self._conn
        events = conn.events()
        if events and not self._discard:
            queue = self._queue
            queue.extend(events)
            if self._msg_waiter is not None:
                self._msg_waiter.set()
            if self._transport is not None and len(queue) >= self._max_queue and not self._read_paused:
                self._read_paused = True
                self._transport.pause_reading()
        data = conn.data_to_send()
        transport = self._transport
        if transport is not None:
            if data and not self._lost:
                if self._out:  # after the sends still waiting for their flush
                    self._out.append(data)
                    self._pending += len(data)
                    self._flush_out()
                else:
                    transport.write(data)
        elif data:
            self._out.append(data)
            self._pending += len(data)
            if not self._writing and self._write_waiter is not None:
                self._write_waiter.set()
        if conn.close_transport:
            self._transport_must_close()
        scope = self._timer_scope
        if scope is not None:
            deadline = conn.next_deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline

    def _rearm_timer(self) -> None:
        scope = self._timer_scope
        if scope is not None:
            deadline = self._conn.next_deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline

    def _flush_out(self) -> None:
        """Pushed: write the sends held back since the last task switch, in one write."""
        self._flush_scheduled = False
        self._wrote_direct = False
        out = self._out
        if out and self._transport is not None:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._pending = 0
            if not self._lost:
                self._transport.write(data)

    def _transport_must_close(self) -> None:
        """The core is done with the connection: the writer (pulled) or the closer (pushed) flushes
        what is left, bounded by the close timeout, and closes the stream."""
        if self._closer_event is not None:
            self._flush_out()
            self._closer_event.set()
            return
        if self._write_waiter is not None and not self._writing:
            self._write_waiter.set()
        # A peer that does not read gets the close timeout to take what is still being written (none
        # when the core dropped the connection: abort_transport).
        scope = self._writer_scope
        if scope is None or scope.deadline != math.inf:
            return
        conn = self._conn
        if conn.abort_transport:
            scope.cancel()
        else:
            scope.deadline = self.io.current_time() + (conn.config.close_timeout or 10.0)

    def _reading_paused(self) -> bool:
        return self._space_waiter is not None or self._read_paused

    def _resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            if self._transport is not None and not self._lost:
                self._transport.resume_reading()

    def _stream_failed(self, exc: BaseException) -> None:
        conn = self._conn
        if conn.state is not State.CLOSED and conn.exception is None:
            conn.exception = ConnectionClosed(1006, f"connection lost: {exc!r}")
        conn.receive_eof()
        self._after_io()

    # -- pushed: the transport's callbacks (see PushSource) ------------------------------------

    def _push_data(self, data: bytes) -> None:
        conn = self._conn
        conn.receive_data(data, self._clock())
        if conn.state is not _OPEN or self._discard:
            self._after_io()
            return
        # Open, the common case: while open, incoming data only moves deadlines later, so the timer
        # needs no update and nothing closes.
        events = conn.events()
        if events:
            queue = self._queue
            queue.extend(events)
            if self._msg_waiter is not None:
                self._msg_waiter.set()
            if len(queue) >= self._max_queue and not self._read_paused and self._transport is not None:
                self._read_paused = True
                self._transport.pause_reading()
        data = conn.data_to_send()
        if data and self._transport is not None and not self._lost:
            if self._out:  # after the sends still waiting for their flush
                self._out.append(data)
                self._pending += len(data)
                self._flush_out()
            else:
                self._transport.write(data)
        elif data:
            self._out.append(data)
            self._pending += len(data)

    def _push_eof(self) -> None:
        self._conn.receive_eof()
        self._after_io()

    def _push_lost(self, exc: BaseException | None) -> None:
        self._lost = self._transport_closed = True
        self._write_paused = False
        conn = self._conn
        if exc is not None:
            self._stream_failed(exc)
        elif not conn.close_transport:
            conn.receive_eof()
            self._after_io()
        for event in (self._lost_event, self._closer_event, self._drain_waiter, self._msg_waiter):
            if event is not None:
                event.set()

    def _push_pause_writing(self) -> None:
        self._write_paused = True

    def _push_resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None:
            self._drain_waiter.set()
            self._drain_waiter = None

    # -- the background tasks ------------------------------------------------------------------

    async def _background(self, *, task_status: Any) -> None:
        io = self.io
        try:
            with io.cancel_scope(shield=True) as self._bg_scope:
                async with io.task_group() as group:
                    if self._source is not None:
                        self._attach(self._source)
                        group.start_soon(self._closer)
                    else:
                        group.start_soon(self._reader)
                        group.start_soon(self._writer)
                    group.start_soon(self._timer)
                    task_status.started()
        finally:
            with io.cancel_scope(shield=True):
                await self._close_transport()
            conn = self._conn
            if conn.state is not State.CLOSED:
                conn.receive_eof()
            self._after_io()
            self._done.set()
            for event in (self._msg_waiter, self._drain_waiter):
                if event is not None:
                    event.set()

    def _attach(self, source: PushSource) -> None:
        io = self.io
        self._lost_event = io.event()
        self._closer_event = io.event()
        transport = source.transport
        source.attach(self)
        self._transport = transport
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._pending = 0
            if not self._lost:
                transport.write(data)
        if self._conn.close_transport:
            self._closer_event.set()
        if len(self._queue) >= self._max_queue and not self._discard and not self._read_paused:
            self._read_paused = True
            transport.pause_reading()

    async def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport_closed = True
            if not self._lost:
                self._transport.abort()
                assert self._lost_event is not None
                await self._lost_event.wait()
        elif not self._transport_closed:
            self._transport_closed = True
            await self.io.aclose(self._stream)

    async def _closer(self) -> None:
        """Pushed: once the core is done, close the transport gracefully (its buffer flushed) within
        the close timeout, abort it after; then end the background tasks."""
        io = self.io
        conn = self._conn
        assert self._closer_event is not None and self._lost_event is not None
        await self._closer_event.wait()
        if not self._lost and self._transport is not None:
            self._transport_closed = True
            self._transport.close()
            if not conn.abort_transport:
                with io.cancel_scope(deadline=io.current_time() + (conn.config.close_timeout or 10.0)):
                    await self._lost_event.wait()
        assert self._bg_scope is not None
        self._bg_scope.cancel()

    async def _reader(self) -> None:
        io = self.io
        conn = self._conn
        stream = self._stream
        receive = io.receiver(stream) or partial(io.receive, stream)
        clock = self._clock
        self._after_io()
        while not conn.close_transport:
            while len(self._queue) >= self._max_queue and not self._discard:
                waiter = self._space_waiter = io.waiter()
                await waiter.wait()
                self._space_waiter = None
            try:
                data = await receive()
            except io.stream_errors as exc:
                if not self._transport_closed:
                    self._stream_failed(exc)
                return
            if data:
                conn.receive_data(data, clock())
            else:
                conn.receive_eof()
            self._after_io()
            if not data:
                return

    async def _writer(self) -> None:
        io = self.io
        conn = self._conn
        with io.cancel_scope() as scope:
            self._writer_scope = scope
            if conn.close_transport:
                self._transport_must_close()
            while True:
                out = self._out
                if self._writing or not out:
                    if conn.close_transport and not self._writing:
                        break
                    waiter = self._write_waiter = io.waiter()
                    await waiter.wait()
                    self._write_waiter = None
                    continue
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                self._writing = True
                self._wrote_direct = False
                try:
                    await io.send(self._stream, data)
                except io.stream_errors as exc:
                    self._out.clear()
                    self._pending = 0
                    self._stream_failed(exc)
                    break
                finally:
                    self._writing = False
                self._pending -= len(data)
                if self._pending <= HIGH_WATER and self._drain_waiter is not None:
                    self._drain_waiter.set()
                    self._drain_waiter = None
        self._writer_scope = None
        if scope.cancelled_caught:
            # Cut short by the close bound: the peer does not read; the stream is dropped.
            self._out.clear()
            self._pending = 0
        await self._close_transport()
        # The connection is over: end the reader and timer (the stream is closed).
        assert self._bg_scope is not None
        self._bg_scope.cancel()

    async def _timer(self) -> None:
        io = self.io
        conn = self._conn
        # A connection made without `now` (the embedding path) learns the clock here.
        conn.handle_timer(io.current_time())
        self._after_io()
        while True:
            deadline = conn.next_deadline()
            with io.cancel_scope(deadline=math.inf if deadline is None else deadline) as scope:
                self._timer_scope = scope
                await io.sleep_forever()
            self._timer_scope = None
            now = io.current_time()
            deadline = conn.next_deadline()
            if deadline is not None and now >= deadline:
                if self._reading_paused() and conn.state is State.OPEN:
                    # We stopped reading (the application is behind): the pong may be waiting unread
                    # in the stream, so this silence is ours, not the peer's.
                    conn.receive_data(b"", now)
                conn.handle_timer(now)
                self._after_io()

    # -- lifetime ------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self: _W, *, server: bool = False) -> AsyncIterator[_W]:
        """Run the background tasks for the body; on exit close the connection (1000; 1001 when the
        body is cancelled; 1011 when a server handler raised) and end them. The body's exception is
        re-raised as it is, not wrapped in an exception group."""
        io = self.io
        error: BaseException | None = None
        async with io.task_group() as group:
            await group.start(self._background)
            try:
                yield self
            except BaseException as exc:
                error = exc
            await self._shutdown(error, server)
        if error is not None:
            raise error

    async def _shutdown(self, error: BaseException | None, server: bool) -> None:
        io = self.io
        cancelled = error is not None and io.is_cancelled(error)
        if cancelled:
            code, reason = 1001, "going away"
        elif server:
            code, reason = handler_close(error, self.closed)
        else:
            code, reason = 1000, ""  # the body's error is the application's own, re-raised
        close_timeout = self._conn.config.close_timeout
        # Bounded even without a close timeout when cancelled: cancellation must end promptly.
        limit = close_timeout if close_timeout is not None else (10.0 if cancelled else None)
        with io.cancel_scope(shield=True):
            try:
                with io.cancel_scope(deadline=io.current_time() + limit if limit else math.inf):
                    await self.close(code=code, message=reason)
            finally:
                assert self._bg_scope is not None
                self._bg_scope.cancel()


@asynccontextmanager
async def connect_stream(
    ws_class: type[StreamWebSocket],
    open_stream: Callable[[ClientOptions, WSURL], Awaitable[Any]],
    url: str,
    options: ClientOptions,
    io: IOBackend | None = None,
) -> AsyncIterator[Any]:
    """The body of every adapter's `connect()`: `open_stream(options, parsed_url)` (TCP, TLS) and the opening
    handshake within `open_timeout` (`WSTimeoutError`), then the connection for the `async with` body.
    `io` overrides `ws_class.io` (an adapter's primitives for the running event loop)."""
    parsed = parse_url(url)
    open_timeout = options.open_timeout
    headers = options.headers
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    if io is None:
        io = ws_class.io
    conn = ClientConnection(
        parsed.host_header,
        parsed.target,
        subprotocols=options.protocols,
        origin=options.origin,
        extra_headers=headers or (),
        config=options.config,
    )
    stream: Any = None
    try:
        with io.cancel_scope(
            deadline=io.current_time() + open_timeout if open_timeout else math.inf
        ) as scope:
            stream = await open_stream(options, parsed)
            await io.send(stream, conn.data_to_send())
            while conn.state is State.CONNECTING:
                data = await io.receive(stream)
                if data:
                    conn.receive_data(data, io.current_time())
                else:
                    conn.receive_eof()
    except io.stream_errors as exc:
        if stream is not None:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
        if isinstance(exc, OSError) and stream is None:
            raise  # could not connect at all: the OS's error says why
        raise HandshakeError(f"connection lost during the opening handshake: {exc!r}") from exc
    except BaseException:
        if stream is not None:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
        raise
    if scope.cancelled_caught:
        if stream is not None:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
        raise WSTimeoutError(f"opening handshake not finished within {open_timeout} s")
    ws = ws_class(stream, conn, receive_timeout=options.receive_timeout, max_queue=options.max_queue, io=io)
    async with ws.running() as running:
        yield running


def wrap_stream(
    ws_class: type[_W],
    stream: Any,
    conn: Connection,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    receive_timeout: float | None = None,
    io: IOBackend | None = None,
) -> AbstractAsyncContextManager[_W]:
    """Run `conn` (a core connection past its handshake) over an already connected `stream`: the
    embedding path. A `ServerConnection` just accepted still holds its 101 response, written first."""
    if conn.state is State.CONNECTING:
        raise ValueError("the connection's handshake is not done: accept() it first")
    ws = ws_class(stream, conn, max_queue=max_queue, receive_timeout=receive_timeout, io=io)
    return ws.running(server=not conn.client)


class StreamServer:
    """The accepting side shared by the adapters' `serve()`: `handle(stream)` serves one accepted
    stream; `shutdown()` (run by `serve()` when it is cancelled) closes every connection with 1001.

    Handlers run shielded, each in its own cancel scope, so that a shutdown is graceful: the handlers'
    `receive()` gets CLOSING and they may finish within `shutdown_timeout`; the ones still running
    then are cancelled.
    """

    def __init__(
        self,
        ws_class: type[StreamWebSocket],
        handler: Callable[[Any], Awaitable[Any]],
        options: ServerOptions,
        io: IOBackend | None = None,
    ) -> None:
        self._ws_class = ws_class
        self._io = ws_class.io if io is None else io
        self._handler = handler
        self.options = options
        self._config = options.config
        self._receive_timeout = options.receive_timeout
        self.shutdown_timeout = options.shutdown_timeout
        self._tasks: dict[ScopeLike, StreamWebSocket | None] = {}
        self._idle: EventLike | None = None
        self._closing = False

    @property
    def connections(self) -> set[Any]:
        """The open connections (handshake done), e.g. for `broadcast()`."""
        return {ws for ws in self._tasks.values() if ws is not None}

    async def handle(self, stream: Any) -> None:
        """Serve one accepted stream: the opening handshake (or `process_request`'s plain answer), then
        `handler(ws)`, then the close (1000; 1011 if the handler raised, which is logged). Never raises
        for a bad client."""
        io = self._io
        if self._closing:
            await io.aclose(stream)
            return
        with io.cancel_scope(shield=True) as scope:
            self._tasks[scope] = None
            try:
                await self._serve(stream, scope)
            except Exception:
                # Nothing one connection does may end the server's accept loop.
                logger.exception("serving a connection failed")
                with io.cancel_scope(shield=True):
                    await io.aclose(stream)
            finally:
                del self._tasks[scope]
                if not self._tasks and self._idle is not None:
                    self._idle.set()

    async def _serve(self, stream: Any, scope: ScopeLike) -> None:
        io = self._io
        config = self._config
        options = self.options
        conn = ServerConnection(
            subprotocols=options.protocols,
            select_subprotocol=options.select_subprotocol,
            config=config,
            now=io.current_time(),
        )
        try:
            opened = await _server_handshake(io, stream, conn, options.process_request, options.extra_headers)
        except (HandshakeError, WSTimeoutError) as exc:
            logger.debug("opening handshake failed: %s", exc)
            opened = False
        except BaseException:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
            raise
        if not opened or self._closing:
            # The core's answer (a refusal, process_request's response) goes out before the close.
            try:
                data = conn.data_to_send()
                if data and not self._closing:
                    with io.cancel_scope(deadline=_deadline(io, config.close_timeout or 10.0)):
                        await io.send(stream, data)
            except io.stream_errors:
                pass
            finally:
                with io.cancel_scope(shield=True):
                    await io.aclose(stream)
            return
        ws = self._ws_class(
            stream, conn, receive_timeout=self._receive_timeout, max_queue=options.max_queue, io=io
        )
        self._tasks[scope] = ws
        try:
            async with ws.running(server=True):
                await self._handler(ws)
        except Exception:
            pass  # logged by the close policy (handler_close), once

    async def shutdown_on_cancel(self) -> None:
        """A task for the server's task group: when the server is cancelled, `shutdown()` (shielded)
        while the shielded handlers still run."""
        io = self._io
        try:
            await io.sleep_forever()
        finally:
            with io.cancel_scope(shield=True):
                await self.shutdown()

    async def shutdown(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every connection with `code`, wait up to `shutdown_timeout` for the handlers, then
        cancel the ones left (their connections are closed within the close timeout)."""
        io = self._io
        self._closing = True
        for scope, ws in list(self._tasks.items()):
            if ws is None:
                scope.cancel()  # still in the opening handshake: nothing to close gracefully
            else:
                ws._start_close(code, reason)
        if self._tasks:
            self._idle = io.event()
            with io.cancel_scope(deadline=_deadline(io, self.shutdown_timeout)):
                await self._idle.wait()
        for scope in list(self._tasks):
            scope.cancel()
        if self._tasks:
            self._idle = io.event()
            await self._idle.wait()


async def _server_handshake(
    io: IOBackend,
    stream: Any,
    conn: ServerConnection,
    process_request: ProcessRequest | None,
    extra_headers: HeadersLike,
) -> bool:
    timeout = conn.config.open_timeout
    with io.cancel_scope(deadline=io.current_time() + timeout if timeout else math.inf) as scope:
        while conn.request is None:
            try:
                data = await io.receive(stream)
            except io.stream_errors:
                return False
            if not data:
                conn.receive_eof()
                return False
            conn.receive_data(data, io.current_time())
        if not await answer_request(conn, process_request, extra_headers, io.current_time):
            return False
        try:
            await io.send(stream, conn.data_to_send())
        except io.stream_errors:
            return False
    if scope.cancelled_caught:
        raise WSTimeoutError(f"opening handshake not finished within {timeout} s")
    return True


def broadcast(
    connections: Iterable[_W], message: str | bytes | bytearray | memoryview, *, limit: int | None = None
) -> list[_W]:
    """Send `message` to every open connection without waiting; return the ones skipped.

    The frame is encoded once and queued as is to each server-side connection (uncompressed, which
    permessage-deflate allows per message). A connection is skipped when it is not open, is in the
    middle of a fragmented send, or its writer is behind by more than `HIGH_WATER` (or `limit`) bytes,
    so one slow client never stalls the others.
    """
    if isinstance(message, str):
        frame = encode_frame(1, message.encode("utf-8"))
    elif isinstance(message, (bytes, bytearray, memoryview)):
        frame = encode_frame(2, bytes(message))
    else:
        raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
    skipped: list[_W] = []
    for ws in connections:
        if limit is not None and ws.write_buffer_size() > limit:
            skipped.append(ws)
            continue
        try:
            # A client masks each frame with its own key: no shared encoding is possible.
            sent = ws.send_message_nowait(message) if ws.core.client else ws.send_prepared(frame)
        except WSError:  # a fragmented send in progress, or already closed
            sent = False
        if not sent:
            skipped.append(ws)
    return skipped


def check_listen_args(host: Any, port: Any, sock: Any) -> None:
    """`serve()`'s address: host/port or an already bound socket, not both, not neither; the
    `ValueError`s asyncio's `create_server` raises."""
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
    elif sock is None:
        raise ValueError("Neither host/port nor sock were specified")


def _deadline(io: IOBackend, timeout: float | None) -> float:
    return io.current_time() + timeout if timeout else math.inf
