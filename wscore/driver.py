"""The shared driver of the structured-concurrency adapters (`wscore_trio`, `wscore_anyio`).

trio and anyio have the same shape — cancel scopes with deadlines, task groups with `start`, one-shot
events, byte streams — so the whole connection logic is written once here, against an `IOBackend` of a
dozen primitives that each adapter supplies in a few lines. Pure Python: this module imports neither
library.

How a connection runs (one task group it owns, shielded so that only the connection ends it):

- the reader reads the stream, feeds the core and queues the events; it stops reading while
  `max_queue` messages wait (back-pressure) and keeps reading otherwise, so pings are answered and
  the close handshake completes while the application is busy;
- the writer is the only task that writes: whole frames, in order, so a cancelled `send_*()` never
  leaves half a frame on the wire (the frame it queued is still sent whole);
- the timer sleeps until the core's `next_deadline()` and calls `handle_timer(now)` (heartbeat, pong,
  close deadlines).

Leaving the connection's `async with` closes it (1000; 1001 when cancelled; 1011 when a server handler
failed) within the close timeout, shielded from the cancellation, then cancels those tasks.
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._types import CLOSED_MESSAGE, CLOSING_MESSAGE, State, WSMessage, WSMsgType
from .adapter import (
    DEFAULT_MAX_QUEUE,
    WSURL,
    WebSocketBase,
    WSTimeout,
    check_http_response,
    close_args,
    compress_flag,
    control_payload,
    echo_handler,
    make_config,
    parse_url,
    text_or_bytes,
)
from .client import ClientConnection
from .connection import Connection
from .errors import ConnectionClosed, HandshakeError, WSError, WSTimeoutError
from .extensions import DeflateOptions
from .frames import encode_frame
from .handshake import HeadersLike, Request, SubprotocolSelector
from .server import ServerConnection

if TYPE_CHECKING:
    import logging

__all__ = [
    "HIGH_WATER",
    "IOBackend",
    "ProcessRequest",
    "StreamWebSocket",
    "broadcast",
    "connect_stream",
    "echo_handler",
    "StreamServer",
    "wrap_stream",
]


def _logger() -> logging.Logger:
    # logging imports threading; importing it only when a failure is logged keeps every module of
    # the wscore package free of I/O and thread modules (the sans-I/O guard checks them all).
    import logging

    return logging.getLogger("wscore")


HIGH_WATER = 64 * 1024
"""Bytes queued for writing above which `send_*()` waits for the writer (back-pressure)."""

_RECEIVE_SIZE = 64 * 1024

ProcessRequest = Callable[[Request], Any]
"""`process_request(request)` -> None (upgrade) or `(status, headers, body)` (answer with plain HTTP);
may be sync or async."""


class EventLike(Protocol):
    """A one-shot event (trio.Event, anyio.Event)."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> None: ...


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

    def task_group(self) -> AbstractAsyncContextManager[Any]:
        """A new nursery / task group (with `start_soon` and `start`)."""
        raise NotImplementedError

    def is_cancelled(self, exc: BaseException) -> bool:
        """Whether `exc` is the library's cancellation exception."""
        raise NotImplementedError

    async def sleep_forever(self) -> None:
        """Sleep until cancelled."""
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


_W = TypeVar("_W", bound="StreamWebSocket")


class StreamWebSocket(WebSocketBase):
    """A WebSocket connection over a byte stream, with aiohttp's WebSocket API.

    Made by an adapter's `connect()` or `serve()`; usable inside their `async with` / handler.
    """

    io: IOBackend
    """The adapter's primitives (a class attribute of each adapter's subclass)."""

    def __init__(
        self,
        stream: Any,
        conn: Connection,
        *,
        receive_timeout: float | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self._stream = stream
        self._conn = conn
        self._receive_timeout = receive_timeout
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._max_queue = max_queue
        self._queue: deque[WSMessage] = deque(conn.events())
        self._discard = False  # after our close(): data messages are dropped, reading never pauses
        self._receiving = False
        self._out: list[bytes] = []
        self._pending = 0  # bytes in _out plus the chunk being written
        io = self.io
        self._msg_waiter: EventLike | None = None
        self._space_waiter: EventLike | None = None
        self._write_waiter: EventLike | None = None
        self._drain_waiter: EventLike | None = None
        self._done = io.event()  # the transport is closed and the background tasks ended
        self._timer_scope: ScopeLike | None = None
        self._send_scope: ScopeLike | None = None  # the writer's current write
        self._bg_scope: ScopeLike | None = None
        self._transport_closed = False
        self.request: Request | None = getattr(conn, "request", None)
        """Server side: the upgrade request (path, headers) the connection was opened with."""
        data = conn.data_to_send()
        if data:
            self._out.append(data)
            self._pending = len(data)

    # -- state ---------------------------------------------------------------------------------

    def write_buffer_size(self) -> int:
        """Bytes handed to the writer but not yet written."""
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
        if conn.state is State.CLOSED or self._done.is_set():
            # The core's CLOSED event went to the queue when it happened: nothing more can come.
            return CLOSED_MESSAGE
        if self._discard:
            await self._done.wait()
            return CLOSED_MESSAGE
        if conn.state is State.CLOSING and not conn.close_sent:
            # The peer's close (autoclose off) was delivered: the answer is ours to send, as aiohttp does.
            await self.close()
            return CLOSED_MESSAGE
        if timeout is None:
            timeout = self._receive_timeout
        io = self.io
        self._receiving = True
        try:
            with io.cancel_scope(
                deadline=io.current_time() + timeout if timeout is not None else math.inf
            ) as scope:
                while not queue:
                    if self._done.is_set():
                        return CLOSED_MESSAGE
                    waiter = self._msg_waiter = io.event()
                    await waiter.wait()
            if scope.cancelled_caught and not queue:
                raise WSTimeoutError(f"no message within {timeout} s")
        finally:
            self._receiving = False
            self._msg_waiter = None
        return self._pop()

    def _pop(self) -> WSMessage:
        msg = self._queue.popleft()
        if self._space_waiter is not None and len(self._queue) < self._max_queue:
            self._space_waiter.set()
        return msg

    # -- sending -------------------------------------------------------------------------------

    async def send_str(self, data: str, compress: bool | int | None = None) -> None:
        """Send a text message; `compress` overrides whether this one is compressed (None: the default).
        `TypeError` if `data` is not a str, `ConnectionClosed` once closed. Cancelling the call after
        the frame is queued still sends it whole."""
        text_or_bytes(data, "str")
        self._conn.send_text(data, compress=compress_flag(compress))
        await self._flush()

    async def send_bytes(
        self, data: bytes | bytearray | memoryview, compress: bool | int | None = None
    ) -> None:
        """Send a binary message; `compress` as in `send_str`."""
        text_or_bytes(data, "bytes")
        self._conn.send_bytes(data, compress=compress_flag(compress))
        await self._flush()

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
        await self._flush()

    def send_prepared(self, frame: bytes) -> bool:
        """Queue a frame encoded once for many connections (server side, see `broadcast`) without waiting.

        Returns False, queueing nothing, when this connection is closed or its writer is behind by more
        than `HIGH_WATER` bytes (a slow client), so one slow client cannot stall a broadcast.
        """
        conn = self._conn
        if self._pending > HIGH_WATER or conn.state is not State.OPEN or conn.close_sent:
            return False
        conn.send_prepared(frame)
        self._after_io()
        return True

    def send_message_nowait(self, message: str | bytes | bytearray | memoryview) -> bool:
        """Queue a whole message without waiting (used by `broadcast` for client connections); False,
        queueing nothing, when closed or behind by more than `HIGH_WATER` bytes."""
        conn = self._conn
        if self._pending > HIGH_WATER or conn.state is not State.OPEN or conn.close_sent:
            return False
        if isinstance(message, str):
            conn.send_text(message)
        else:
            conn.send_bytes(message)
        self._after_io()
        return True

    async def ping(self, message: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes, else `ValueError`)."""
        self._conn.ping(control_payload(message), self.io.current_time())
        await self._flush()

    async def pong(self, message: bytes | str = b"") -> None:
        """Send a pong: an unsolicited one, or the answer to a ping with autoping off."""
        self._conn.pong(control_payload(message))
        await self._flush()

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
            if self._space_waiter is not None:
                self._space_waiter.set()  # the peer's close frame must get through
        if not self._transport_closed and conn.state is not State.CLOSED and not conn.close_sent:
            started = conn.close(code, reason, self.io.current_time())
        self._after_io()
        return started

    async def _flush(self) -> None:
        """Hand what the core queued to the writer; wait while the writer is behind (back-pressure)."""
        self._after_io()
        while self._pending > HIGH_WATER and not self._transport_closed:
            # One event shared by every waiting sender; the writer sets it when below the mark.
            waiter = self._drain_waiter
            if waiter is None:
                waiter = self._drain_waiter = self.io.event()
            await waiter.wait()

    # -- the background tasks ------------------------------------------------------------------

    def _after_io(self) -> None:
        """Move the core's events to the queue and its bytes to the writer; re-arm the timer."""
        conn = self._conn
        events = conn.events()
        if events and not self._discard:
            self._queue.extend(events)
            if self._msg_waiter is not None:
                self._msg_waiter.set()
        data = conn.data_to_send()
        if data:
            self._out.append(data)
            self._pending += len(data)
        if (data or conn.close_transport) and self._write_waiter is not None:
            self._write_waiter.set()
        if conn.close_transport and self._send_scope is not None:
            self._bound_flush()
        scope = self._timer_scope
        if scope is not None:
            deadline = conn.next_deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline

    async def _background(self, *, task_status: Any) -> None:
        io = self.io
        try:
            with io.cancel_scope(shield=True) as self._bg_scope:
                async with io.task_group() as group:
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
            if self._msg_waiter is not None:
                self._msg_waiter.set()
            if self._drain_waiter is not None:
                self._drain_waiter.set()

    async def _close_transport(self) -> None:
        if not self._transport_closed:
            self._transport_closed = True
            await self.io.aclose(self._stream)

    def _stream_failed(self, exc: BaseException) -> None:
        conn = self._conn
        if conn.state is not State.CLOSED and conn.exception is None:
            conn.exception = ConnectionClosed(1006, f"connection lost: {exc!r}")
        conn.receive_eof()
        self._after_io()

    async def _reader(self) -> None:
        io = self.io
        conn = self._conn
        stream = self._stream
        self._after_io()
        while not conn.close_transport:
            while len(self._queue) >= self._max_queue and not self._discard:
                waiter = self._space_waiter = io.event()
                await waiter.wait()
                self._space_waiter = None
            try:
                data = await io.receive(stream)
            except io.stream_errors as exc:
                if not self._transport_closed:
                    self._stream_failed(exc)
                return
            if data:
                conn.receive_data(data, io.current_time())
            else:
                conn.receive_eof()
            self._after_io()
            if not data:
                return

    async def _writer(self) -> None:
        io = self.io
        conn = self._conn
        while True:
            out = self._out
            if not out:
                if conn.close_transport:
                    break
                waiter = self._write_waiter = io.event()
                await waiter.wait()
                self._write_waiter = None
                continue
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            try:
                with io.cancel_scope() as scope:
                    self._send_scope = scope
                    self._bound_flush()
                    await io.send(self._stream, data)
            except io.stream_errors as exc:
                self._out.clear()
                self._pending = 0
                self._stream_failed(exc)
                break
            finally:
                self._send_scope = None
            if scope.cancelled_caught:
                # Cut short by _bound_flush: the peer does not read; the stream is dropped.
                self._out.clear()
                self._pending = 0
                break
            self._pending -= len(data)
            if self._pending <= HIGH_WATER and self._drain_waiter is not None:
                self._drain_waiter.set()
                self._drain_waiter = None
        await self._close_transport()
        # The connection is over: end the reader and timer (the stream is closed).
        assert self._bg_scope is not None
        self._bg_scope.cancel()

    def _bound_flush(self) -> None:
        """Once the transport must close, a peer that does not read gets the close timeout to take
        what is still being written (none after a timeout already ended the connection)."""
        scope = self._send_scope
        conn = self._conn
        if scope is None or not conn.close_transport or scope.deadline != math.inf:
            return
        if isinstance(conn.exception, WSTimeoutError):
            scope.cancel()
        else:
            scope.deadline = self.io.current_time() + (conn.config.close_timeout or 10.0)

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
                if self._space_waiter is not None and conn.state is State.OPEN:
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
        if error is None or isinstance(error, ConnectionClosed):
            code, reason = 1000, ""
        elif cancelled:
            code, reason = 1001, "going away"
        elif server:
            code, reason = 1011, "internal error"
        else:
            code, reason = 1000, ""
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
    open_stream: Callable[[WSURL], Awaitable[Any]],
    url: str,
    *,
    protocols: Sequence[str] = (),
    headers: HeadersLike | Mapping[str, str] | None = None,
    origin: str | None = None,
    timeout: WSTimeout | None = None,
    heartbeat: float | None = None,
    pong_timeout: float | None = None,
    autoping: bool = True,
    autoclose: bool = True,
    compress: bool | int | DeflateOptions | None = 0,
    max_msg_size: int | None = 4 * 1024 * 1024,
    max_frame_size: int | None = None,
    open_timeout: float | None = 10.0,
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> AsyncIterator[Any]:
    """The body of every adapter's `connect()`: `open_stream(parsed_url)` (TCP, TLS) and the opening
    handshake within `open_timeout` (`WSTimeoutError`), then the connection for the `async with` body."""
    parsed = parse_url(url)
    config = make_config(
        heartbeat=heartbeat,
        pong_timeout=pong_timeout,
        autoping=autoping,
        autoclose=autoclose,
        timeout=timeout,
        open_timeout=open_timeout,
        compress=compress,
        max_msg_size=max_msg_size,
        max_frame_size=max_frame_size,
    )
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    io = ws_class.io
    conn = ClientConnection(
        parsed.host_header,
        parsed.target,
        subprotocols=protocols,
        origin=origin,
        extra_headers=headers or (),
        config=config,
    )
    stream: Any = None
    try:
        with io.cancel_scope(
            deadline=io.current_time() + open_timeout if open_timeout else math.inf
        ) as scope:
            stream = await open_stream(parsed)
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
    ws = ws_class(stream, conn, receive_timeout=receive_timeout_of(timeout), max_queue=max_queue)
    async with ws.running() as running:
        yield running


def wrap_stream(
    ws_class: type[_W],
    stream: Any,
    conn: Connection,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    receive_timeout: float | None = None,
) -> AbstractAsyncContextManager[_W]:
    """Run `conn` (a core connection past its handshake) over an already connected `stream`: the
    embedding path. A `ServerConnection` just accepted still holds its 101 response, written first."""
    if conn.state is State.CONNECTING:
        raise ValueError("the connection's handshake is not done: accept() it first")
    ws = ws_class(stream, conn, max_queue=max_queue, receive_timeout=receive_timeout)
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
        *,
        protocols: Sequence[str] = (),
        select_subprotocol: SubprotocolSelector | None = None,
        process_request: ProcessRequest | None = None,
        extra_headers: HeadersLike = (),
        timeout: WSTimeout | None = None,
        heartbeat: float | None = None,
        pong_timeout: float | None = None,
        autoping: bool = True,
        autoclose: bool = True,
        compress: bool | int | DeflateOptions | None = True,
        max_msg_size: int | None = 4 * 1024 * 1024,
        max_frame_size: int | None = None,
        open_timeout: float | None = 10.0,
        max_queue: int = DEFAULT_MAX_QUEUE,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if isinstance(protocols, str):
            raise TypeError("protocols must be a sequence of str, not a str")
        self._ws_class = ws_class
        self._io = ws_class.io
        self._handler = handler
        self._config = make_config(
            heartbeat=heartbeat,
            pong_timeout=pong_timeout,
            autoping=autoping,
            autoclose=autoclose,
            timeout=timeout,
            open_timeout=open_timeout,
            compress=compress,
            max_msg_size=max_msg_size,
            max_frame_size=max_frame_size,
        )
        self._protocols = list(protocols)
        self._select_subprotocol = select_subprotocol
        self._process_request = process_request
        self._extra_headers = extra_headers
        self._max_queue = max_queue
        self._receive_timeout = receive_timeout_of(timeout)
        self.shutdown_timeout = shutdown_timeout
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
            finally:
                del self._tasks[scope]
                if not self._tasks and self._idle is not None:
                    self._idle.set()

    async def _serve(self, stream: Any, scope: ScopeLike) -> None:
        io = self._io
        config = self._config
        conn = ServerConnection(
            subprotocols=self._protocols,
            select_subprotocol=self._select_subprotocol,
            config=config,
            now=io.current_time(),
        )
        try:
            opened = await _server_handshake(io, stream, conn, self._process_request, self._extra_headers)
        except (HandshakeError, WSTimeoutError) as exc:
            _logger().debug("opening handshake failed: %s", exc)
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
        ws = self._ws_class(stream, conn, receive_timeout=self._receive_timeout, max_queue=self._max_queue)
        self._tasks[scope] = ws
        try:
            async with ws.running(server=True):
                await self._handler(ws)
        except ConnectionClosed:
            pass  # the peer went away while the handler was sending: not the handler's fault
        except Exception:
            _logger().exception("connection handler failed; closed with 1011")

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
        if process_request is not None:
            try:
                response = process_request(conn.request)
                if inspect.isawaitable(response):
                    response = await response
            except Exception:
                _logger().exception("process_request failed; answering 500")
                response = (500, [], b"Internal Server Error")
            if conn.state is not State.CONNECTING:
                return False  # the open timeout passed meanwhile
            if response is not None:
                conn.respond(*check_http_response(response))
                return False
        conn.accept(extra_headers=extra_headers, now=io.current_time())
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


def _deadline(io: IOBackend, timeout: float | None) -> float:
    return io.current_time() + timeout if timeout else math.inf


def receive_timeout_of(timeout: WSTimeout | None) -> float | None:
    """The default `receive()` bound from `timeout=WSTimeout(...)`."""
    return None if timeout is None else timeout.receive
