"""The connection object: an `asyncio.BufferedProtocol` that drives a wscore core, with aiohttp's
WebSocket API.

One object per connection is both the transport's protocol (bytes in, via `buffer_updated` or
`data_received`) and what the application calls (`receive`, `send_str`, `close`, ...). A received
message is appended to a deque; `receive()` pops it without awaiting when one is ready, so a small
message costs a method call, not a task switch. One `loop.call_at` timer per connection follows
`core.next_deadline()`.

The per-message path (a read in, a message out) uses the core's public driver fast path
(`state`, `pending_events`, `pending_output`; see `wscore.Connection`): one call into the core per
read instead of four.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from _wscore_kit.api import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, read_buffer
from _wscore_kit.connection import WebSocketAPI, write_timed_out
from wscore import (
    Connection,
    ConnectionClosed,
    HandshakeError,
    Request,
    ServerConnection,
    State,
    WSMsgType,
    WSTimeoutError,
)

__all__ = ["WebSocket", "wrap_transport"]

_OPEN: Final = State.OPEN
_CLOSING: Final = State.CLOSING
_CONNECTING: Final = State.CONNECTING
_STOP_ITERATION: Final = frozenset((WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED))
# How long a closing transport may take to flush before it is aborted, when no close timeout is set.
_DEFAULT_FLUSH_TIMEOUT: Final = 10.0
# While received messages wait in the queue, or after a send that wrote at once while the task has
# not waited since, sends of up to _COALESCE_FRAME bytes are coalesced into one write, up to
# _COALESCE_MAX bytes held back (asyncio's default write high-water mark); see WebSocket._coalesce.
# Joining copies: past ~16 KiB a frame's copy costs about what a send() saves.
_COALESCE_FRAME: Final = 16 * 1024
_COALESCE_MAX: Final = 64 * 1024


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(WSTimeoutError(f"no message within {timeout} s"))


class WebSocket(WebSocketAPI, asyncio.BufferedProtocol):
    """A WebSocket connection (client or server) with aiohttp's `ClientWebSocketResponse` API.

    Get one from `connect()`, as the argument of a `serve()` handler, or from `wrap_transport()`.
    """

    __slots__ = (
        "_abort_handle",
        "_clock",
        "_drain_waiters",
        "_flush_handle",
        "_handshaking",
        "_held",
        "_loop",
        "_lost",
        "_on_request",
        "_opened",
        "_plain_future",
        "_read_view",
        "_registry",
        "_transport",
        "_transport_closing",
        "_waiter",
        "_write_paused",
        "_wrote_direct",
        "request",
    )

    def __init__(
        self,
        conn: Connection,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        receive_timeout: float | None = None,
        write_timeout: float | None = 10.0,
        max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES,
        autoclose: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._init_api(
            conn,
            max_queue,
            receive_timeout,
            write_timeout,
            max_queue_bytes=max_queue_bytes,
            autoclose=autoclose,
        )
        self._loop = loop = loop or asyncio.get_running_loop()
        # asyncio's own loops read time.monotonic() and create an asyncio.Future through Python methods;
        # calling those directly saves a frame per read and per wait. Other loops (uvloop) keep theirs.
        asyncio_loop = type(loop).time is asyncio.BaseEventLoop.time
        self._clock: Callable[[], float] = time.monotonic if asyncio_loop else loop.time
        self._plain_future = type(loop).create_future is asyncio.BaseEventLoop.create_future
        self._transport: asyncio.Transport | None = None
        self._read_view: memoryview | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # Coalesced sends (see _coalesce): the pending write and the bytes held back for it.
        self._flush_handle: asyncio.Handle | None = None
        self._held = 0
        # A send wrote at once and the application has not waited for a message since (see _sent).
        self._wrote_direct = False
        self._abort_handle: asyncio.TimerHandle | None = None
        self._transport_closing = False
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._handshaking = conn.state is _CONNECTING
        # Resolved when the client's handshake ends (result or HandshakeError).
        self._opened: asyncio.Future[None] | None = (
            self._loop.create_future() if self._handshaking and conn.client else None
        )
        # Server side: called once when the upgrade request has arrived.
        self._on_request: Callable[[WebSocket], None] | None = None
        # A server's set of live connections. Joined in connection_made: with TLS, a connection whose
        # TLS handshake fails never reaches this protocol at all.
        self._registry: set[WebSocket] | None = None
        self.request: Request | None = None
        """Server side: the upgrade request (path, headers) the connection was opened with."""

    # -- asyncio.BufferedProtocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        # Here, not in __init__: this runs on the loop's thread, whose buffer the transport will fill.
        self._read_view = read_buffer()
        if self._registry is not None:
            self._registry.add(self)
        self._pump()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view  # type: ignore[return-value]  # set in connection_made

    def buffer_updated(self, nbytes: int) -> None:
        data = self._read_view[:nbytes]  # type: ignore[index]
        if self._handshaking:
            self._handshake_data(data)
            return
        conn = self._conn
        try:
            conn.receive_data(data, self._clock())
        except Exception:
            self._read_failed()
            return
        if conn.pending_output:  # a pong, or a close frame: rare
            self._transport.write(conn.data_to_send())  # type: ignore[union-attr]
            if self._write_paused:
                self._check_backlog()
        events = conn.pending_events
        if events:
            self._deliver(events)
            events.clear()
        if conn.state is not _OPEN:
            self._pump()

    def data_received(self, data: bytes) -> None:
        """Bytes from a transport that does not use `get_buffer` (or given to `wrap_transport`)."""
        read_view = self._read_view
        self._read_view = memoryview(data)
        try:
            self.buffer_updated(len(data))
        finally:
            self._read_view = read_view

    def eof_received(self) -> None:
        self._eof()
        # Returning None lets the transport close itself; the core has what it needs.

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport_closing = True
        self._write_paused = False
        for handle in (self._timer_handle, self._abort_handle, self._flush_handle):
            if handle is not None:
                handle.cancel()
        self._timer_handle = self._abort_handle = self._flush_handle = None
        if not self._conn.close_transport or self._handshaking:
            self._eof()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(
                self._conn.exception or HandshakeError("connection closed during the opening handshake")
            )
        if not self._lost.done():
            self._lost.set_result(None)
        if self._registry is not None:
            self._registry.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()
        self._drained()

    # -- driving the core --------------------------------------------------------------------------

    def _eof(self) -> None:
        conn = self._conn
        try:
            conn.receive_eof()
        except HandshakeError as exc:
            if self._opened is not None and not self._opened.done():
                self._opened.set_exception(exc)
        self._pump()

    def _accepted(self) -> None:
        """Server side: the core accepted the upgrade; write the 101, then deliver any frames that
        came right behind the request, and read again."""
        self._handshaking = False
        self._resume_reading()
        self._pump()

    def _handshake_data(self, data: bytes | memoryview) -> None:
        conn = self._conn
        try:
            conn.receive_data(data, self._loop.time())
        except HandshakeError as exc:
            if self._opened is not None and not self._opened.done():
                self._opened.set_exception(exc)
            self._pump()
            return
        if conn.client:
            if conn.state is not _CONNECTING:
                # Open, or already failed by a bad frame that came with the 101: either way the
                # handshake succeeded and the application reads what happened from receive().
                self._handshaking = False
                assert self._opened is not None
                if not self._opened.done():
                    self._opened.set_result(None)
            self._pump()
        elif isinstance(conn, ServerConnection) and conn.request is not None and self.request is None:
            # Until the application accepts, bytes after the request would pile up in the core.
            self.request = conn.request
            self._pause_reading()
            if self._on_request is not None:
                self._on_request(self)

    # -- the primitives of WebSocketAPI ------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time()

    def _gone(self) -> bool:
        return self._lost.done()

    def _behind(self) -> bool:
        return self._write_paused

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport_closing:
            self._transport.write(data)

    def _sent(self, size: int) -> bool:
        """Write (or hold, see `_coalesce`) the frame a send just queued in the core; True when the
        caller must then wait for the transport to drain."""
        if (self._queue or self._wrote_direct) and not self._write_paused and self._coalesce(size):
            return False
        # The first send since the task last waited goes out at once (one in flight: no added
        # latency); the ones after it in the same burst leave together (many in flight: one system
        # call per burst, not per message), as the kit's drivers do (StreamWebSocket._push_out).
        self._wrote_direct = True
        self._held = 0
        out = self._conn.pending_output
        if len(out) == 1 and not self._transport_closing:
            self._transport.write(out.pop())  # type: ignore[union-attr]
        else:
            self._write_out()
        return self._write_paused

    def _wake_receiver(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wait_message(self, timeout: float | None) -> Awaitable[object]:
        self._wrote_direct = False
        loop = self._loop
        if self._plain_future:
            waiter = self._waiter = asyncio.Future(loop=loop)
        else:
            waiter = self._waiter = loop.create_future()
        if timeout is None:
            return waiter  # the future itself: no coroutine frame per idle connection
        return self._wait_timed(waiter, timeout)

    async def _wait_timed(self, waiter: asyncio.Future[None], timeout: float) -> None:
        # 0 does not wait: a message already queued, else WSTimeoutError (as on trio/anyio).
        handle = self._loop.call_later(timeout, _expire, waiter, timeout)
        try:
            await waiter
        finally:
            handle.cancel()

    async def _wait_done(self) -> None:
        await asyncio.shield(self._lost)

    def _close_cancelled(self) -> None:
        self._abort()  # asyncio's idiom: a cancelled close() drops the connection

    def _reading(self, on: bool) -> None:
        transport = self._transport
        if transport is not None and not self._transport_closing:
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()

    _arm_timer = WebSocketAPI._arm_loop_timer

    def _call_at(self, when: float, fn: Callable[[], object]) -> asyncio.TimerHandle:
        return self._loop.call_at(when, fn)

    def _close_transport(self) -> None:
        transport = self._transport
        if transport is None or self._transport_closing:
            return
        if self._conn.abort_transport:
            # Dropped (e.g. no close frame in time): what is still buffered will never be read.
            self._abort()
            return
        self._transport_closing = True
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        transport.close()
        if not self._lost.done():
            # A peer that does not read could keep the buffered bytes from ever flushing.
            delay = self._conn.config.close_timeout or _DEFAULT_FLUSH_TIMEOUT
            self._abort_handle = self._loop.call_later(delay, transport.abort)

    def _abort(self) -> None:
        """Drop the TCP connection now, without a close handshake."""
        transport = self._transport
        if transport is not None and not self._lost.done():
            self._transport_closing = True
            transport.abort()

    async def _drain(self) -> None:
        if self._lost.done():
            raise ConnectionClosed(self._conn.close_code, self._conn.close_reason)
        fut = self._loop.create_future()
        self._drain_waiters.append(fut)
        timeout = self._write_timeout
        handle = None if timeout is None else self._loop.call_later(timeout, self._write_timed_out, timeout)
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
        if self._lost.done():
            raise ConnectionClosed(self._conn.close_code, self._conn.close_reason)

    def _write_timed_out(self, timeout: float) -> None:
        if not self._lost.done():
            write_timed_out(self._conn, timeout)
            self._pump()  # the ERROR event, then the transport is aborted: the drain ends

    def _write_out(self) -> None:
        out = self._conn.data_to_send()
        if out and not self._transport_closing:
            self._transport.write(out)  # type: ignore[union-attr]

    # -- sending -----------------------------------------------------------------------------------

    def _coalesce(self, size: int) -> bool:
        """Whether a send just queued in the core may wait for the next write, with the ones before it.

        Called while received messages are still queued: the application is working through a batch
        (an echo or request/response loop under pipelining), so its answers leave together, flushed by
        the first send after the queue runs empty or, at the latest, on the loop's next iteration. Also
        called for a burst of sends (a client keeping many in flight, a producer), after its first.
        Small frames only, and at most _COALESCE_MAX bytes held back, so write flow control still
        applies to anything big.
        """
        held = self._held + size
        if held > _COALESCE_MAX or size > _COALESCE_FRAME:
            self._held = 0
            return False
        self._held = held
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_handle = None
        self._held = 0
        self._wrote_direct = False
        self._write_out()

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- state -------------------------------------------------------------------------------------

    @property
    def transport(self) -> asyncio.Transport | None:
        """The asyncio transport, once connected."""
        return self._transport

    def _extra_info(self, name: str) -> Any:
        transport = self._transport
        return None if transport is None else transport.get_extra_info(name)

    def write_buffer_size(self) -> int:
        """Bytes sent by the application but not yet by the transport (those held to leave with the
        next send included)."""
        if self._transport is None or self._transport_closing:
            return 0
        return self._transport.get_write_buffer_size() + self._held


def wrap_transport(
    transport: asyncio.Transport,
    conn: Connection,
    *,
    initial_data: bytes = b"",
    max_queue: int = DEFAULT_MAX_QUEUE,
    receive_timeout: float | None = None,
    write_timeout: float | None = 10.0,
) -> WebSocket:
    """Run `conn` over a transport that is already connected (the embedding path).

    `conn` is a core connection in the OPEN state: `wscore.Connection(client=False, ...)` after another
    framework did the upgrade, or a `ServerConnection` on which `receive_request()` and `accept()` were
    called (the framework writes the 101 with the headers `accept()` returned; anything the core still
    has in `data_to_send()` is written first). `initial_data` holds bytes the framework read past the
    request. The transport's protocol becomes the returned `WebSocket`.
    """
    if conn.state is _CONNECTING:
        raise ValueError("the connection's handshake is not done: accept() it first")
    loop = asyncio.get_running_loop()
    ws = WebSocket(
        conn, max_queue=max_queue, receive_timeout=receive_timeout, write_timeout=write_timeout, loop=loop
    )
    if isinstance(conn, ServerConnection):
        ws.request = conn.request
    transport.set_protocol(ws)
    ws.connection_made(transport)
    if initial_data:
        ws.data_received(initial_data)
    return ws
