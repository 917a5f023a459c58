"""The stream driver of the structured-concurrency adapters (`wscore_trio`, `wscore_anyio`).

trio and anyio have the same shape — cancel scopes with deadlines, task groups with `start`, one-shot
events, byte streams — so the primitives of `WebSocketAPI` (the connection API and pump, shared with
`wscore_asyncio`) are written once here, against an `IOBackend` (backend.py) of a dozen primitives
that each adapter supplies in a few lines. Pure Python: this module imports neither library.

How a connection runs (in the task group of `running()`: the connection's own, or a server's; each of
its tasks shielded in its own scope, so that only the connection ends it, and none lets an error out
into that group), over a byte stream ("pull"):

- the reader reads the stream, feeds the core and queues the events; it stops reading while
  `max_queue` messages wait (back-pressure) and keeps reading otherwise, so pings are answered and
  the close handshake completes while the application is busy;
- `send_*()` writes its frame from the calling task, without waiting, when no other write is in
  progress and the stream has a nonblocking write (`IOBackend.try_writer`: a plain socket): no task
  switch per message. What the socket did not take goes to the writer, so a frame is never cut short;
- the writer task writes everything else (replies to pings, the close frame, frames queued while
  another write was in progress, every frame on streams without `try_writer`, such as TLS), whole
  frames in order;
- the timer sleeps until the core's `next_deadline()` and calls `handle_timer(now)` (heartbeat, pong,
  close deadlines).

The reader is the task `running()` starts; the writer and the timer start the first time there is
something to write or a deadline to keep, so an idle connection without a heartbeat has one task
(a trio task, its scope and frames cost about 2 KiB: memory per connection).

Over an asyncio transport ("push", `IOBackend.push_source`: anyio on its asyncio backend) there is no
reader and no writer task: the transport's callbacks feed the core and its bytes go to
`transport.write()`, as in `wscore_asyncio`.

Leaving the connection's `async with` closes it (1000; 1001 when cancelled; 1011 when a server handler
failed) within the close timeout, shielded from the cancellation, then cancels those tasks.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar

from wscore import (
    Connection,
    ConnectionClosed,
    Request,
    State,
    WSTimeoutError,
)

from .api import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_BYTES,
)
from .backend import EventLike, IOBackend, PushSource, PushTransport, ScopeLike, TimerHandle
from .connection import HIGH_WATER, WebSocketAPI, connection_closed, write_timed_out
from .server import ProcessRequest, handler_close, logger

__all__ = [
    "HIGH_WATER",
    "ProcessRequest",
    "StreamWebSocket",
]


_RECEIVE_SIZE = 64 * 1024
# Pushed: frames up to this size sent while received messages wait unread are joined into one write
# (see `_push_out`); past ~16 KiB a frame's copy costs about what a send() saves.
_COALESCE_FRAME = 16 * 1024
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED


# Task names, given rather than derived: trio and anyio would format one string per task from the
# function's qualified name (memory per connection).
_BACKGROUND_TASK = "wscore connection"
_WRITER_TASK = "wscore writer"
_TIMER_TASK = "wscore timer"

_W = TypeVar("_W", bound="StreamWebSocket")


class StreamWebSocket(WebSocketAPI):
    """A WebSocket connection over a byte stream, with aiohttp's WebSocket API (`WebSocketAPI`).

    Made by an adapter's `connect()` or `serve()`; usable inside their `async with` / handler.
    """

    io: IOBackend
    """The adapter's primitives (a class attribute of each adapter's subclass; `io=` overrides it for
    one connection)."""

    __slots__ = (
        "_bg_scope",
        "_clock",
        "_closer_event",
        "_done",
        "_drain_waiter",
        "_finished",
        "_flush_scheduled",
        "_group",
        "_io",
        "_lost",
        "_lost_event",
        "_msg_waiter",
        "_out",
        "_pending",
        "_source",
        "_space_waiter",
        "_stream",
        "_timer_guard",
        "_timer_scope",
        "_transport",
        "_transport_closed",
        "_try_write",
        "_write_paused",
        "_write_waiter",
        "_writer_scope",
        "_writer_started",
        "_writing",
        "_wrote_direct",
        "request",
    )

    def __init__(
        self,
        stream: Any,
        conn: Connection,
        *,
        receive_timeout: float | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        write_timeout: float | None = 10.0,
        max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES,
        autoclose: bool = False,
        io: IOBackend | None = None,
    ) -> None:
        io = self._io = type(self).io if io is None else io
        self._init_api(
            conn,
            max_queue,
            receive_timeout,
            write_timeout,
            max_queue_bytes=max_queue_bytes,
            autoclose=autoclose,
        )
        events = conn.events()  # what came with the handshake
        if events:
            self._queue = deque(events)
        self._stream = stream
        self._msg_waiter: EventLike | None = None
        self._drain_waiter: EventLike | None = None
        # The transport is closed and the background tasks ended; the event is made by the first wait.
        self._finished = False
        self._done: EventLike | None = None
        self._clock = io.clock()
        self._timer_scope: ScopeLike | None = None
        self._timer_guard: ScopeLike | None = None
        self._bg_scope: ScopeLike | None = None
        # The task group of `running()` while the connection runs: the writer and the timer are started
        # in it when first needed (an idle connection has neither: memory per connection).
        self._group: Any = None
        self._transport_closed = False
        # Pulled streams: bytes for the writer, and who is writing.
        self._out: list[bytes] = []
        self._pending = 0  # bytes in _out plus those of the write in progress
        self._writing = False  # the writer task is in a write to the stream
        self._try_write = io.try_writer(stream)
        self._space_waiter: EventLike | None = None
        self._write_waiter: EventLike | None = None
        self._writer_scope: ScopeLike | None = None
        self._writer_started = False
        # A send wrote from its task and no task switch has been seen since: the next sends go to the
        # writer (pulled) or a flush called soon (pushed), which write them all at once when the
        # sender lets the event loop run: one system call per burst, not per message.
        self._wrote_direct = False
        self._flush_scheduled = False
        # Pushed streams (an asyncio transport).
        self._source = io.push_source(stream)
        self._transport: PushTransport | None = None
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

    def _extra_info(self, name: str) -> Any:
        # "stream": the trio Stream / anyio ByteStream itself.
        return self._stream if name == "stream" else self._io.extra_info(self._stream, name)

    # -- the primitives of WebSocketAPI ----------------------------------------------------------

    def _now(self) -> float:
        return self._clock()

    def _gone(self) -> bool:
        return self._transport_closed or self._finished

    def _behind(self) -> bool:
        return self._write_paused or self.write_buffer_size() > HIGH_WATER

    def _wake_receiver(self) -> None:
        if self._msg_waiter is not None:
            self._msg_waiter.set()

    def _wait_message(self, timeout: float | None) -> Awaitable[object]:
        self._wrote_direct = False
        waiter = self._msg_waiter = self._io.waiter()
        if timeout is None:
            # No cancel scope of our own: the caller's scopes cancel the wait, losing nothing.
            return waiter.wait()
        return self._wait_timed(waiter, timeout)

    async def _wait_timed(self, waiter: EventLike, timeout: float) -> None:
        io = self._io
        with io.cancel_scope(deadline=io.current_time() + timeout) as scope:
            await waiter.wait()
        if scope.cancelled_caught and not self._queue:
            raise WSTimeoutError(f"no message within {timeout} s")

    async def _wait_done(self) -> None:
        done = self._done
        if done is None:
            done = self._done = self._io.event()
            if self._finished:
                done.set()
        await done.wait()

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None:  # pushed
            if self._lost:
                return
            if self._out:  # after the sends still waiting for their flush
                self._out.append(data)
                self._pending += len(data)
                self._flush_out()
            else:
                transport.write(data)
            return
        self._out.append(data)
        self._pending += len(data)
        if not self._writing and self._write_waiter is not None:
            self._write_waiter.set()
        elif not self._writer_started:
            self._start_writer()

    def _sent(self, size: int) -> bool:
        """Pushed: into the transport (see `_push_out`). Pulled: the first send since the last task
        switch writes from the calling task when the stream can (`IOBackend.try_writer`), without
        waiting; the rest of its frame, and later sends, go to the writer task."""
        if self._transport is not None:
            self._push_out()
            return self._write_paused
        data = self._conn.data_to_send()
        if not data:
            return self._pending > HIGH_WATER
        try_write = self._try_write
        if (
            try_write is not None
            and not self._wrote_direct
            and not self._writing
            and not self._out
            and not self._transport_closed
        ):
            self._wrote_direct = True
            try:
                sent = try_write(data)
            except self._io.stream_errors as exc:
                self._stream_failed(exc)
                raise ConnectionClosed(1006, f"connection lost: {exc!r}") from exc
            if sent == len(data):
                return False
            data = data[sent:]
        self._write(data)
        return self._pending > HIGH_WATER

    async def _drain(self) -> None:
        """Wait until the writer (or the transport) is below the high-water mark; what was still
        waiting when the transport died is lost, which `ConnectionClosed` says. A peer that reads
        nothing for `write_timeout` seconds is dropped."""
        io = self._io
        timeout = self._write_timeout
        with io.cancel_scope(deadline=math.inf if timeout is None else io.current_time() + timeout) as scope:
            while (self._write_paused or self._pending > HIGH_WATER) and not self._gone():
                # One event shared by every waiting sender.
                waiter = self._drain_waiter
                if waiter is None:
                    waiter = self._drain_waiter = io.event()
                await waiter.wait()
        conn = self._conn
        if scope.cancelled_caught and timeout is not None and not self._gone():
            write_timed_out(conn, timeout)
            self._pump()  # the ERROR event; the writer (or closer) drops the stream
        if (self._gone() or conn.abort_transport) and (self._lost or conn.abort_transport or conn.exception):
            raise connection_closed(conn)

    def _reading(self, on: bool) -> None:
        transport = self._transport
        if transport is not None and not self._lost:  # pushed
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()
        elif on and self._space_waiter is not None:  # pulled: the reader waits for this
            self._space_waiter.set()

    def _arm_timer(self) -> None:
        if self._source is not None:
            # Pushed: armed from the transport's callbacks too, where anyio can make no task or
            # cancel scope when the loop was not started by `anyio.run()` (sniffio finds no library
            # outside a task): a loop timer, which also costs an idle connection no task.
            if self._group is not None:
                self._arm_loop_timer()
            return
        scope = self._timer_scope
        if scope is not None:
            deadline = self._deadline()
            if deadline is not None and deadline < scope.deadline:
                scope.deadline = deadline
        elif self._timer_guard is None and self._group is not None and self._deadline() is not None:
            self._start_timer()

    def _call_at(self, when: float, fn: Callable[[], object]) -> TimerHandle:
        return self._io.call_at(when, fn)

    def _close_transport(self) -> None:
        """The core is done with the connection: the writer (pulled) or the closer (pushed) flushes
        what is left, bounded by the close timeout, and closes the stream."""
        if self._closer_event is not None:
            self._flush_out()
            self._closer_event.set()
            return
        if not self._writer_started:
            self._start_writer()
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
            scope.deadline = self._io.current_time() + (conn.config.close_timeout or 10.0)

    def _abort(self) -> None:
        if self._bg_scope is not None:
            self._bg_scope.cancel()

    # -- writing -------------------------------------------------------------------------------

    def _push_out(self) -> None:
        """Pushed: a small frame sent while received messages still wait unread (the application
        works through a batch: an echo or request/response loop under pipelining) is held, and leaves
        with the batch's last answer in one write, as `wscore_asyncio` does. Otherwise the first send
        since the event loop last ran goes to the transport at once (with what was held); the next
        ones are joined and written by one flush called soon."""
        data = self._conn.data_to_send()
        transport = self._transport
        if not data or self._lost or transport is None:
            return
        out = self._out
        if self._queue and len(data) <= _COALESCE_FRAME and self._pending + len(data) <= HIGH_WATER:
            out.append(data)
            self._pending += len(data)
            if not self._flush_scheduled:  # at the latest on the loop's next iteration
                self._flush_scheduled = True
                self._io.call_soon(self._flush_out)
            return
        if not self._wrote_direct:
            self._wrote_direct = True
            if out:
                out.append(data)
                data = b"".join(out)
                out.clear()
                self._pending = 0
            transport.write(data)
            return
        out.append(data)
        self._pending += len(data)
        if self._pending > HIGH_WATER:
            self._flush_out()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._io.call_soon(self._flush_out)

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

    def _stream_failed(self, exc: BaseException) -> None:
        conn = self._conn
        self._out.clear()
        self._pending = 0
        if conn.state is not State.CLOSED and conn.exception is None:
            conn.exception = ConnectionClosed(1006, f"connection lost: {exc!r}")
        conn.receive_eof()
        self._pump()

    # -- pushed: the transport's callbacks (see PushSource) ------------------------------------

    def _push_data(self, data: bytes | memoryview) -> None:
        conn = self._conn
        try:
            conn.receive_data(data, self._clock())
        except Exception:
            self._read_failed()
            return
        if conn.state is not _OPEN or self._closing:
            self._pump()
            return
        # Open, the common case: while open, incoming data only moves deadlines later, so the timer
        # needs no update and nothing closes.
        events = conn.pending_events
        if events:
            self._deliver(events)
            events.clear()
        if conn.pending_output:
            self._write(conn.data_to_send())
            if self._behind():
                self._check_backlog()

    def _push_eof(self) -> None:
        self._conn.receive_eof()
        self._pump()

    def _push_lost(self, exc: BaseException | None) -> None:
        self._lost = self._transport_closed = True
        self._write_paused = False
        conn = self._conn
        if exc is not None:
            self._stream_failed(exc)
        elif not conn.close_transport:
            conn.receive_eof()
            self._pump()
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
        self._drained()

    # -- the background tasks ------------------------------------------------------------------

    async def _background(self, *, task_status: Any) -> None:
        """The connection's one task while it is idle: the reader (pulled) or the closer (pushed),
        shielded so that only the connection ends it. The writer and the timer are separate tasks,
        started when first needed (`_start_writer`, `_start_timer`), each shielded in its own scope."""
        io = self._io
        try:
            with io.cancel_scope(shield=True) as self._bg_scope:
                conn = self._conn
                # A connection made without `now` (the embedding path) learns the clock here.
                conn.handle_timer(io.current_time())
                source = self._source
                if source is not None:
                    self._attach(source)
                    self._pump()
                    task_status.started()
                    del task_status  # it holds the start's nursery: memory per connection
                    await self._closer()
                    return
                self._pump()
                if self._out or conn.close_transport:
                    self._start_writer()
                task_status.started()
                del task_status
                # The reader, here rather than in a coroutine of its own: one frame less held by each
                # idle connection (memory per connection).
                stream = self._stream
                receive = io.receiver(stream) or partial(io.receive, stream)
                clock = self._clock
                while not conn.close_transport:
                    # Back-pressure: see WebSocketAPI._deliver and _check_backlog.
                    while self._read_paused or self._write_stalled:
                        waiter = self._space_waiter = io.waiter()
                        await waiter.wait()
                        self._space_waiter = None
                    try:
                        data = await receive()
                    except io.stream_errors as exc:
                        if not self._transport_closed:
                            self._stream_failed(exc)
                        break
                    if data:
                        conn.receive_data(data, clock())
                    else:
                        conn.receive_eof()
                    self._pump()
                    if not data:
                        break
                if not self._writer_started:
                    self._start_writer()
                # The writer closes the stream, then cancels this scope.
                await io.sleep_forever()
        except Exception:
            # Never into the task group it runs in, which may be a server's (`running(group=)`).
            self._read_failed()
        finally:
            self._group = None  # no task starts from now on
            for scope in (self._writer_scope, self._timer_guard, self._timer_handle):
                if scope is not None:
                    scope.cancel()
            self._timer_handle = None
            with io.cancel_scope(shield=True):
                await self._aclose_stream()
            conn = self._conn
            if conn.state is not State.CLOSED:
                conn.receive_eof()
            self._pump()
            self._finished = True
            for event in (self._done, self._msg_waiter, self._drain_waiter):
                if event is not None:
                    event.set()

    def _start_writer(self) -> None:
        group = self._group
        if group is not None:
            self._writer_started = True
            group.start_soon(self._writer, name=_WRITER_TASK)

    def _start_timer(self) -> None:
        group = self._group
        if group is not None:
            self._timer_guard = self._io.cancel_scope(shield=True)
            group.start_soon(self._timer, name=_TIMER_TASK)

    def _attach(self, source: PushSource) -> None:
        io = self._io
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
        if len(self._queue) >= self._max_queue and not self._closing and not self._read_paused:
            self._pause_reading()

    async def _aclose_stream(self) -> None:
        if self._transport is not None:
            self._transport_closed = True
            if not self._lost:
                self._transport.abort()
                assert self._lost_event is not None
                await self._lost_event.wait()
        elif not self._transport_closed:
            self._transport_closed = True
            await self._io.aclose(self._stream)

    async def _closer(self) -> None:
        """Pushed: once the core is done, close the transport gracefully (its buffer flushed) within
        the close timeout, abort it after; then end the background tasks."""
        io = self._io
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

    async def _writer(self) -> None:
        io = self._io
        conn = self._conn
        # Shielded: the writer runs in `running()`'s task group, and only the connection ends it.
        with io.cancel_scope(shield=True) as scope:
            self._writer_scope = scope
            if conn.close_transport:
                self._close_transport()
            try:
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
                        self._stream_failed(exc)
                        break
                    finally:
                        self._writing = False
                    self._pending -= len(data)
                    if self._pending <= HIGH_WATER:
                        if self._drain_waiter is not None:
                            self._drain_waiter.set()
                            self._drain_waiter = None
                        if self._write_stalled:
                            self._drained()
            except Exception:  # a bug: as in _background
                logger.exception("a WebSocket connection's writer failed")
        self._writer_scope = None
        if scope.cancelled_caught:
            # Cut short by the close bound: the peer does not read; the stream is dropped.
            self._out.clear()
            self._pending = 0
        with io.cancel_scope(shield=True):  # out of the writer's scope: running()'s may be cancelled
            await self._aclose_stream()
        # The connection is over: end the reader and timer (the stream is closed).
        assert self._bg_scope is not None
        self._bg_scope.cancel()

    async def _timer(self) -> None:
        io = self._io
        guard = self._timer_guard
        assert guard is not None
        with guard:  # shielded: only the connection ends the timer
            try:
                while True:
                    deadline = self._deadline()
                    with io.cancel_scope(deadline=math.inf if deadline is None else deadline) as scope:
                        self._timer_scope = scope
                        await io.sleep_forever()
                    self._timer_scope = None
                    now = io.current_time()
                    deadline = self._deadline()
                    if deadline is not None and now >= deadline:
                        self._timer_due(now)
            except Exception:  # a bug: as in _background, and the connection ends
                logger.exception("a WebSocket connection's timer failed")
                if self._bg_scope is not None:
                    self._bg_scope.cancel()

    # -- lifetime ------------------------------------------------------------------------------

    def running(self: _W, *, server: bool = False, group: Any = None) -> _Running[_W]:
        """Run the background tasks for the body; on exit close the connection (1000; 1001 when the
        body is cancelled; 1011 when a server handler raised) and end them. The body's exception is
        re-raised as it is, not wrapped in an exception group.

        `group`: a task group that outlives the body (the server's) to run the background tasks in,
        instead of a task group of the connection's own (a task group and its cancel scope less per
        connection: memory); leaving then waits for the background to be done."""
        return _Running(self, server, group)

    async def _shutdown(self, error: BaseException | None, server: bool) -> None:
        io = self._io
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


class _Running(Generic[_W]):
    """`StreamWebSocket.running()`: `async with` the connection's task group around the body. A class
    rather than an `asynccontextmanager`: no async generator and frame held for as long as the
    connection lives (memory per connection)."""

    __slots__ = ("_group", "_group_cm", "_server", "_ws")

    def __init__(self, ws: _W, server: bool, group: Any) -> None:
        self._ws = ws
        self._server = server
        self._group = group
        self._group_cm: AbstractAsyncContextManager[Any] | None = None

    async def __aenter__(self) -> _W:
        ws = self._ws
        group = self._group
        cm = None
        if group is None:
            cm = self._group_cm = ws._io.task_group()
            group = await cm.__aenter__()
        ws._group = group
        try:
            # `start`: the task begins in this task's cancel scope (a server's handler is shielded)
            # and enters its own shield before it reports started, so a cancelled group cannot
            # cancel it first.
            await group.start(ws._background, name=_BACKGROUND_TASK)
        except BaseException as exc:
            # As `async with` would: the task group sees the error, then it is raised.
            if cm is not None:
                await cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return ws

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        ws = self._ws
        cm = self._group_cm
        try:
            await ws._shutdown(exc, self._server)
        except BaseException as error:
            if cm is not None:
                await cm.__aexit__(type(error), error, error.__traceback__)
            raise
        if cm is None:
            # The background runs in the caller's group: the connection is over once it is done.
            with ws._io.cancel_scope(shield=True):
                await ws._wait_done()
        else:
            await cm.__aexit__(None, None, None)
        # The body's exception (if any) is re-raised by `async with` as it is: returning False.
        return False
