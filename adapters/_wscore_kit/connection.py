"""The connection API (aiohttp's WebSocket methods) and the pump, written once for every adapter.

`WebSocketAPI` holds the semantics: what `receive()` returns in each state, what a send checks and
when it waits, what `close()` does to a waiting receiver, when reading pauses and resumes, what
`broadcast` may skip. An adapter's connection class subclasses it and supplies the primitives of its
I/O library (the methods marked "primitive" below):

- `_write(data)`: hand bytes to the transport or the writer task;
- `_sent(size) -> bool`: write what a send just queued in the core (a driver may hold small frames
  to join them); True when the caller must then `await _drain()`;
- `_drain()`: wait until the written bytes are below the high-water mark; `ConnectionClosed` if the
  transport died meanwhile;
- `_wait_message(timeout)`: wait until a message is queued or the connection is done
  (`WSTimeoutError` after `timeout`; 0 does not wait);
- `_wake_receiver()`, `_reading(on)` (pause or resume reading), `_arm_timer()`,
  `_close_transport()`, `_abort()`, `_wait_done()`, `_gone()`, `_now()`.

The pump (`_pump`) runs after every call into the core: it writes what the core produced, delivers
the events (`_deliver`), closes the transport when the core is done, and re-arms the one timer at
`next_deadline()`. The back-pressure rule is `_deliver`'s and `receive()`'s: reading pauses when
`max_queue` messages or `max_queue_bytes` of data wait unread and resumes when a quarter of each (or
none) is left, so a busy application does not flap the socket once per message.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from wscore import (
    CLOSED_MESSAGE,
    CLOSING_MESSAGE,
    Connection,
    ConnectionClosed,
    State,
    WSCloseCode,
    WSError,
    WSMessage,
    WSMsgType,
    WSTimeoutError,
    encode_frame,
)

from . import streaming
from .api import (
    DEFAULT_MAX_QUEUE_BYTES,
    close_args,
    compress_flag,
    control_payload,
    decode_json,
    expect_bytes,
    expect_str,
    text_or_bytes,
)
from .server import logger

if TYPE_CHECKING:
    from .backend import TimerHandle

__all__ = [
    "HIGH_WATER",
    "WebSocketAPI",
    "broadcast",
    "connection_closed",
    "echo_handler",
    "write_timed_out",
]

HIGH_WATER: Final = 64 * 1024
"""Bytes written but not yet sent above which a send waits (back-pressure) and `broadcast` skips."""

_OPEN: Final = State.OPEN
_CLOSING: Final = State.CLOSING
_CLOSED: Final = State.CLOSED
_CONNECTING: Final = State.CONNECTING
_CLOSE_MSG: Final = WSMsgType.CLOSE
_TEXT_MSG: Final = WSMsgType.TEXT
_KNOWN_CODES: Final = {int(code): code for code in WSCloseCode}
_STOP_ITERATION: Final = frozenset((WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED))
# The queue of a connection no message has come to yet: shared, and a tuple, so that a change
# made to it by mistake fails (AttributeError) instead of reaching another connection.
NO_MESSAGES: Final = cast("deque[WSMessage]", ())

_W = TypeVar("_W", bound="WebSocketAPI")


class WebSocketAPI:
    """A WebSocket connection (client or server) with aiohttp's `ClientWebSocketResponse` API."""

    # Slots here and in every connection class: an idle server connection is a few KiB in all.
    __slots__ = (
        "__weakref__",
        "_autoclose",
        "_closing",
        "_conn",
        "_decode_text",
        "_low_water",
        "_max_queue",
        "_max_queue_bytes",
        "_queue",
        "_queued_bytes",
        "_read_paused",
        "_receive_timeout",
        "_receiving",
        "_reply_deadline",
        "_stall_deadline",
        "_timer_at",
        "_timer_handle",
        "_write_stalled",
        "_write_timeout",
    )

    _conn: Connection
    _queue: deque[WSMessage]
    _max_queue: int
    _max_queue_bytes: int
    _queued_bytes: int
    _low_water: int
    _receive_timeout: float | None
    _write_timeout: float | None
    _closing: bool
    _receiving: bool
    _read_paused: bool
    _write_stalled: bool
    _stall_deadline: float | None
    _autoclose: bool
    _reply_deadline: float | None
    _decode_text: bool
    _timer_handle: TimerHandle | None
    _timer_at: float

    def _init_api(
        self,
        conn: Connection,
        max_queue: int,
        receive_timeout: float | None,
        write_timeout: float | None,
        *,
        max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES,
        autoclose: bool = False,
    ) -> None:
        """`autoclose`: answer the peer's close frame when the application reads the CLOSE message
        (aiohttp's rule: it may still reply to what came before); the core must then be configured
        without its own `autoclose`, which answers on arrival."""
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if max_queue_bytes is not None and max_queue_bytes < 1:
            raise ValueError("max_queue_bytes must be at least 1 (None: no byte bound)")
        self._conn = conn
        # The deque is made by the first message: a connection that is only sent to (a subscriber)
        # never holds one (760 B: memory per connection). Code that waits for a message re-reads
        # `_queue` after the wait.
        self._queue = NO_MESSAGES
        self._max_queue = max_queue
        self._max_queue_bytes = sys.maxsize if max_queue_bytes is None else max_queue_bytes
        # Data delivered since the queue was last empty: at least what waits unread (see _deliver).
        self._queued_bytes = 0
        self._low_water = max_queue // 4
        self._receive_timeout = receive_timeout
        self._write_timeout = write_timeout
        self._closing = False  # after our close(): messages still arriving are dropped
        self._receiving = False
        self._read_paused = False  # max_queue messages wait unread (see _deliver)
        self._write_stalled = False  # what we wrote by ourselves is behind (see _check_backlog)
        self._stall_deadline: float | None = None
        self._autoclose = autoclose
        self._reply_deadline: float | None = None  # see _deliver
        self._decode_text = True  # False (connect(decode_text=False)): TEXT data as UTF-8 bytes
        # A loop timer's handle and when it fires (see _arm_loop_timer).
        self._timer_handle: TimerHandle | None = None
        self._timer_at = 0.0

    # -- primitives (each adapter's) -------------------------------------------------------------

    def _write(self, data: bytes) -> None:  # pragma: no cover - every adapter overrides it
        """Primitive: hand `data` to the transport (or the writer task)."""
        raise NotImplementedError

    def _sent(self, size: int) -> bool:  # pragma: no cover
        """Primitive: write what a send of `size` bytes queued in the core; True: `await _drain()`."""
        raise NotImplementedError

    async def _drain(self) -> None:  # pragma: no cover
        """Primitive: wait for back-pressure to clear; `ConnectionClosed` if the transport died, or
        after `_write_timeout` seconds (then the connection is dropped: `write_timed_out`)."""
        raise NotImplementedError

    def _wait_message(self, timeout: float | None) -> Awaitable[object]:  # pragma: no cover
        """Primitive: an awaitable that ends when a message may be queued or the connection may be
        done (`receive()` checks again); `WSTimeoutError` after `timeout` seconds (0: do not wait).
        A future rather than a coroutine where it can be: an idle connection waits in it, and a
        coroutine's frame would cost every idle connection its size."""
        raise NotImplementedError

    async def _wait_done(self) -> None:  # pragma: no cover
        """Primitive: until the transport is closed and the connection's background work ended."""
        raise NotImplementedError

    def _wake_receiver(self) -> None:  # pragma: no cover
        """Primitive: wake the task in `_wait_message`, if any."""
        raise NotImplementedError

    def _reading(self, on: bool) -> None:  # pragma: no cover
        """Primitive: stop (False) or resume (True) reading from the transport."""
        raise NotImplementedError

    def _arm_timer(self) -> None:  # pragma: no cover
        """Primitive: make the one timer fire at `self._conn.next_deadline()`."""
        raise NotImplementedError

    def _close_transport(self) -> None:  # pragma: no cover
        """Primitive: the core is done (`close_transport`): flush within the close timeout, then
        close (at once when `abort_transport`)."""
        raise NotImplementedError

    def _abort(self) -> None:  # pragma: no cover
        """Primitive: drop the TCP connection now."""
        raise NotImplementedError

    def _gone(self) -> bool:  # pragma: no cover
        """Primitive: whether the transport is closed or lost (nothing can be written)."""
        raise NotImplementedError

    def _now(self) -> float:  # pragma: no cover
        """Primitive: the event loop's clock, the `now` of the core's timers."""
        raise NotImplementedError

    def write_buffer_size(self) -> int:  # pragma: no cover
        """Bytes written but not yet sent."""
        raise NotImplementedError

    def _behind(self) -> bool:  # pragma: no cover
        """Primitive: whether writing is behind (over `HIGH_WATER`): `broadcast` skips this one."""
        raise NotImplementedError

    # -- the pump --------------------------------------------------------------------------------

    def _pump(self) -> None:
        """After a call into the core: write its bytes, deliver its events, close or re-arm."""
        conn = self._conn
        data = conn.data_to_send()
        if data:
            self._write(data)
            if self._behind():
                self._check_backlog()
        events = conn.pending_events
        if events:
            self._deliver(events)
            events.clear()
        if conn.close_transport:
            self._close_transport()
        else:
            self._arm_timer()

    def _deliver(self, events: list[WSMessage]) -> None:
        """Queue the core's events for `receive()`; reading pauses at `max_queue` unread."""
        if self._closing:
            return  # the application is closing: like aiohttp's close(), drop what still arrives
        queue = self._queue
        # The byte count is kept here only, not in receive(): it restarts when the queue is empty and
        # otherwise over-counts what was taken since, which at worst pauses reading a little early;
        # the pause is lifted on an exact count (`_unread_bytes`).
        if queue is NO_MESSAGES:
            queue = self._queue = deque()
        size = 0 if not queue else self._queued_bytes
        queue.extend(events)
        self._wake_receiver()
        for msg in events:
            data = msg.data
            if data.__class__ is bytes or data.__class__ is str:
                size += len(data)
            elif msg.type is _CLOSE_MSG and self._autoclose:
                # The peer's close waits for the application to read it (receive() answers it), but
                # not forever: one that never reads still answers well within the peer's own close
                # timeout (RFC 6455 §5.5.1: "as soon as practical").
                close_timeout = self._conn.config.close_timeout
                if close_timeout:
                    self._reply_deadline = self._now() + close_timeout / 2
        self._queued_bytes = size
        if (len(queue) >= self._max_queue or size >= self._max_queue_bytes) and not self._read_paused:
            self._pause_reading()

    def _read_failed(self) -> None:
        """An error raised while reading: a bug (the core answers whatever a peer sends), so it is
        logged and the connection dropped (1006), and nothing else: not the server, not the event
        loop's error handler."""
        logger.exception("a WebSocket connection's reader failed")
        self._abort()

    def _unread_bytes(self) -> int:
        """The exact size of what waits unread (binary bytes, text characters)."""
        size = 0
        for msg in self._queue:
            data = msg.data
            if data.__class__ is bytes or data.__class__ is str:
                size += len(data)
        self._queued_bytes = size
        return size

    def _pause_reading(self) -> None:
        self._read_paused = True
        self._reading(False)

    def _resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            if not self._write_stalled:
                self._reading(True)

    def _check_backlog(self) -> None:
        """After writing what the core answered by itself (pongs, a close reply): if that put the
        writer behind, stop reading until it drains (`_drained`).

        A peer that floods pings (RFC 6455 §5.5.2 obliges a pong to each) and reads nothing would
        otherwise make the pongs pile up without bound: no send of the application waits, so the
        write timeout would never start. It starts here instead (`write_timed_out` when it ends).
        """
        if self._write_stalled or not self._behind():
            return
        self._write_stalled = True
        self._reading(False)
        timeout = self._write_timeout
        if timeout is not None:
            self._stall_deadline = self._now() + timeout
            self._arm_timer()

    def _drained(self) -> None:
        """Adapter hook: the writer went back below `HIGH_WATER`; reading resumes if it stopped for it."""
        if self._write_stalled and not self._behind():
            self._write_stalled = False
            self._stall_deadline = None
            if not self._read_paused:
                self._reading(True)

    def _deadline(self) -> float | None:
        """When the one timer must fire: the core's next deadline, or the kit's own (the write stall's,
        the close reply's) if earlier."""
        deadline = self._conn.next_deadline()
        stall = self._stall_deadline
        reply = self._reply_deadline
        if stall is None and reply is None:
            return deadline
        for extra in (stall, reply):
            if extra is not None and (deadline is None or extra < deadline):
                deadline = extra
        return deadline

    def _call_at(self, when: float, fn: Callable[[], object]) -> TimerHandle:  # pragma: no cover
        """Primitive of the loop timer (an asyncio transport's connection): the loop's `call_at`."""
        raise NotImplementedError

    def _arm_loop_timer(self) -> None:
        """`_arm_timer` as a loop timer (`_call_at`), for connections on an asyncio transport: armed
        from the transport's callbacks as well as from tasks, and no task per connection."""
        deadline = self._deadline()
        handle = self._timer_handle
        if deadline is None:
            if handle is not None:
                handle.cancel()
                self._timer_handle = None
            return
        if handle is not None:
            if self._timer_at <= deadline:
                return  # it fires first, then re-reads the deadline
            handle.cancel()
        self._timer_at = deadline
        self._timer_handle = self._call_at(deadline, self._on_loop_timer)

    def _on_loop_timer(self) -> None:
        now = self._now()
        if now < self._timer_at:
            # call_at fired a clock tick early (uvloop's clock counts milliseconds). Wait for the
            # deadline instead of passing the core a time that has not come: a ping stamped in the
            # future would not count a pong read in the same tick as the peer's answer.
            self._timer_handle = self._call_at(self._timer_at, self._on_loop_timer)
            return
        self._timer_handle = None
        self._timer_due(now)

    def _timer_due(self, now: float) -> None:
        """The adapter's timer fired at `now` (not before `_deadline()`): run the core's timers."""
        conn = self._conn
        reply = self._reply_deadline
        if reply is not None and now >= reply:
            self._answer_close()
        stall = self._stall_deadline
        if stall is not None and now >= stall and self._write_timeout is not None:
            self._stall_deadline = None
            write_timed_out(conn, self._write_timeout)
        elif self._read_paused and conn.state is _OPEN:
            # We stopped reading (the application is behind): the pong may be waiting unread in the
            # socket, so this silence is ours, not the peer's. Count it as activity for the heartbeat.
            # Not so when reading stopped because the peer does not read us (`_write_stalled`): the
            # heartbeat is there to catch that peer.
            conn.receive_data(b"", now)
        conn.handle_timer(now)
        self._pump()

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Coroutine[Any, Any, WSMessage]:
        """The next message. TEXT/BINARY (and PING/PONG with autoping off) as they arrive; then CLOSE
        (the peer's code in `data`, reason in `extra`) or ERROR (the exception); then CLOSED forever.

        `timeout` (default: the connection's receive timeout; 0: do not wait) raises `WSTimeoutError`
        and leaves the connection open. Only one task may receive at a time (`RuntimeError`).
        Cancelling the call loses no message.
        """
        # The coroutine itself, not one awaiting it: a frame less per message and per idle connection.
        return self._receive(timeout, False)

    def __anext__(self) -> Coroutine[Any, Any, WSMessage]:
        return self._receive(None, True)

    async def _receive(self, timeout: float | None, stop: bool) -> WSMessage:
        """`receive()`; for `async for` (`stop`), StopAsyncIteration instead of CLOSE/CLOSING/CLOSED."""
        if self._receiving:
            raise RuntimeError("Concurrent call to receive() is not allowed")
        queue = self._queue
        if not queue:
            conn = self._conn
            if conn.state is not _OPEN or self._closing:
                if conn.state is _CLOSED or self._gone():
                    return _closed(stop)
                if conn.state is _CLOSING and not conn.close_sent and not self._closing:
                    # The peer's close (autoclose off) was delivered: ours is to send, as in aiohttp.
                    await self.close()
                    return _closed(stop)
            if timeout is None:
                timeout = self._receive_timeout
            self._receiving = True
            try:
                while not queue and not self._gone():
                    await self._wait_message(timeout)
                    queue = self._queue
            finally:
                self._receiving = False
            if not queue:
                return _closed(stop)  # done while waiting
        msg = queue.popleft()
        if (
            self._read_paused
            and len(queue) <= self._low_water
            and self._unread_bytes() <= self._max_queue_bytes // 4
        ):
            self._resume_reading()
        if msg.extra.__class__ is bool:  # a fragment: only in fragment mode (fragments=True)
            msg = await streaming.assemble(self, msg, timeout)
        elif msg.type is _CLOSE_MSG and self._autoclose:
            self._answer_close()
        if not self._decode_text and msg.type is _TEXT_MSG and msg.data.__class__ is str:
            # aiohttp's decode_text=False; the core has checked the UTF-8 already (RFC 6455 §8.1).
            return WSMessage(_TEXT_MSG, msg.data.encode("utf-8"), msg.extra)
        if stop and msg.type in _STOP_ITERATION:
            raise StopAsyncIteration
        return msg

    def _answer_close(self) -> None:
        """Answer the peer's close frame with its own code (RFC 6455 §5.5.1), unless already done."""
        self._reply_deadline = None
        conn = self._conn
        if conn.state is _CLOSING and not conn.close_sent and not self._gone():
            code = conn.close_code
            conn.close(None if code == 1005 else code, "", self._now())
            self._pump()

    async def receive_str(self, *, timeout: float | None = None) -> str:
        """The next message, which must be TEXT (else `WSMessageTypeError`); its UTF-8 bytes with
        `connect(decode_text=False)`, as in aiohttp."""
        return expect_str(await self.receive(timeout))

    async def receive_bytes(self, *, timeout: float | None = None) -> bytes:
        """The next message, which must be BINARY (else `WSMessageTypeError`)."""
        return expect_bytes(await self.receive(timeout))

    async def receive_json(
        self, *, loads: Callable[[str], Any] = json.loads, timeout: float | None = None
    ) -> Any:
        """The next TEXT message decoded with `loads`."""
        return decode_json(await self.receive(timeout), loads)

    def __aiter__(self: _W) -> _W:
        return self

    def receive_stream(self, timeout: float | None = None) -> streaming.ReceiveStream:
        """`async for chunk in ws.receive_stream()`: the next TEXT (str chunks) or BINARY (bytes)
        message piece by piece, as its frames arrive (with `fragments=True`; else whole, in one chunk).
        See `streaming.ReceiveStream`."""
        return streaming.ReceiveStream(self, timeout)

    # -- sending ---------------------------------------------------------------------------------

    async def send_stream(self, chunks: streaming.Chunks, compress: bool | int | None = None) -> None:
        """Send one message from an iterable or async iterable of chunks, all str (TEXT) or all
        bytes-like (BINARY): one frame per chunk as it comes, waiting for back-pressure between chunks,
        so memory holds about one chunk. No chunks: no message. If the chunks raise (or the call is
        cancelled) mid-message, the connection closes with 1011 and the error propagates."""
        await streaming.send_stream(self, chunks, compress)

    async def send_str(self, data: str, compress: bool | int | None = None) -> None:
        """Send a text message; `compress` overrides whether this one is compressed (None: the
        default). `TypeError` if `data` is not a str, `ConnectionClosed` once closed."""
        if type(data) is not str:
            text_or_bytes(data, "str")
        if compress is None:
            self._conn.send_text(data)
        else:
            self._conn.send_text(data, compress=compress_flag(compress))
        if self._sent(len(data)):
            await self._drain()

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
        if self._sent(len(data)):
            await self._drain()

    async def send_json(
        self, data: Any, compress: bool | int | None = None, *, dumps: Callable[[Any], str] = json.dumps
    ) -> None:
        """Send `dumps(data)` as a text message."""
        await self.send_str(dumps(data), compress)

    async def send_json_bytes(
        self, data: Any, compress: bool | int | None = None, *, dumps: Callable[[Any], bytes]
    ) -> None:
        """Send `dumps(data)`, an encoder that returns bytes (orjson), as a binary message (aiohttp's
        `send_json_bytes`)."""
        await self.send_bytes(dumps(data), compress)

    async def send_frame(
        self, message: bytes | bytearray | memoryview, opcode: int, compress: bool | int | None = None
    ) -> None:
        """Send one frame with `opcode` (TEXT, BINARY, CONTINUATION, PING, PONG or CLOSE)."""
        text_or_bytes(message, "bytes")
        payload = bytes(message)
        conn = self._conn
        flag = compress_flag(compress)
        if opcode == WSMsgType.CLOSE:
            if not payload:
                await self.close(code=None)
            else:
                await self.close(code=int.from_bytes(payload[:2], "big"), message=payload[2:])
            return
        if flag and opcode == WSMsgType.BINARY:
            conn.send_bytes(payload, compress=True)
        elif flag and opcode == WSMsgType.TEXT:
            conn.send_text(payload.decode("utf-8"), compress=True)
        else:
            conn.send_frame(payload, int(opcode))
        if self._sent(len(payload)):
            await self._drain()

    async def ping(self, message: bytes | str = b"") -> None:
        """Send a ping (at most 125 bytes, else `ValueError`)."""
        self._conn.ping(control_payload(message), self._now())
        self._pump()  # the ping, and the pong deadline it armed
        if self._behind():
            await self._drain()

    async def pong(self, message: bytes | str = b"") -> None:
        """Send a pong: an unsolicited one, or the answer to a ping with autoping off."""
        self._conn.pong(control_payload(message))
        self._pump()
        if self._behind():
            await self._drain()

    def send_prepared(self, frame: bytes) -> bool:
        """Queue a frame encoded once for many connections (server side, see `broadcast`) without
        waiting. False, queueing nothing, when this connection is closed or behind by more than
        `HIGH_WATER` bytes (a slow client), so one slow client cannot stall a broadcast."""
        conn = self._conn
        if self._behind() or conn.state is not _OPEN or conn.close_sent or self._gone():
            return False
        conn.send_prepared(frame)
        self._write(conn.data_to_send())
        return True

    def send_message_nowait(self, message: str | bytes | bytearray | memoryview) -> bool:
        """Queue a whole message without waiting (`broadcast` to client connections); False, queueing
        nothing, when closed or behind by more than `HIGH_WATER` bytes."""
        conn = self._conn
        if self._behind() or conn.state is not _OPEN or conn.close_sent or self._gone():
            return False
        if isinstance(message, str):
            conn.send_text(message)
        else:
            conn.send_bytes(message)
        self._write(conn.data_to_send())
        return True

    # -- closing ---------------------------------------------------------------------------------

    async def close(self, *, code: int | None = 1000, message: bytes | str = b"") -> bool:
        """Close: send a close frame, wait for the peer's (within the close timeout) and for TCP to
        close. Returns True if this call closed the connection, False if it was already closing.

        A task waiting in `receive()` gets a CLOSING message; messages that arrive after this call
        are dropped (as aiohttp does).
        """
        code, reason = close_args(code, message)
        started = self._start_close(code, reason)
        try:
            await self._wait_done()
        except BaseException:
            self._close_cancelled()
            raise
        return started

    def _close_cancelled(self) -> None:
        """A `close()` was cancelled while waiting. asyncio's idiom drops the connection; trio's and
        anyio's leave the close to the connection's scope, which bounds it."""

    def _start_close(self, code: int | None, reason: str) -> bool:
        """The non-waiting part of `close()`: send the close frame and stop delivering messages."""
        conn = self._conn
        if conn.state is _CONNECTING:
            # Not yet accepted (server) or not yet opened: there is no close handshake to do.
            self._abort()
            return False
        if not self._closing:
            self._closing = True
            queue = self._queue
            if queue is not NO_MESSAGES:
                queue.clear()
            if self._receiving:
                if queue is NO_MESSAGES:
                    queue = self._queue = deque()
                queue.append(CLOSING_MESSAGE)
                self._wake_receiver()
            self._resume_reading()  # the peer's close frame must get through
        started = False
        if not self._gone() and conn.state is not _CLOSED and not conn.close_sent:
            started = conn.close(code, reason, self._now())
        self._pump()
        return started

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed (without starting a close)."""
        await self._wait_done()

    # -- state -----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or the connection is closed (or dropped): nothing more
        can be sent."""
        conn = self._conn
        return conn.state is _CLOSED or conn.close_sent or self._gone()

    @property
    def close_code(self) -> int | None:
        """The peer's close code, ours if we failed the connection, 1006 if it dropped, else None: a
        `WSCloseCode` member when the code has one (aiohttp's code compares it with `is`)."""
        code = self._conn.close_code
        return _KNOWN_CODES.get(code, code) if code is not None else None

    @property
    def compress(self) -> int:
        """The negotiated permessage-deflate window bits of the server's messages (aiohttp's
        `compress`), 0 when compression is off."""
        deflate = self._conn.deflate
        if deflate is None:
            return 0
        return deflate.remote_max_window_bits if self._conn.client else deflate.local_max_window_bits

    @property
    def client_notakeover(self) -> bool:
        """Whether the client resets its compression context after each message (permessage-deflate's
        client_no_context_takeover as agreed; aiohttp's property); False without compression."""
        deflate = self._conn.deflate
        if deflate is None:
            return False
        return deflate.local_no_context_takeover if self._conn.client else deflate.remote_no_context_takeover

    @property
    def close_reason(self) -> str:
        """The reason that came with `close_code`."""
        return self._conn.close_reason

    @property
    def protocol(self) -> str | None:
        """The negotiated subprotocol, or None."""
        return self._conn.subprotocol

    @property
    def core(self) -> Connection:
        """The sans-I/O connection this object drives."""
        return self._conn

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Transport details ("peername", "sockname", "socket", "ssl_object", "peercert", ...), or
        `default`: for an unknown name, and for every name once the transport is closed (as aiohttp,
        whose connection lets go of its transport)."""
        if self._gone():
            return default
        try:
            value = self._extra_info(name)
        except OSError:  # the socket died under us (trio's getpeername() on a reset socket)
            return default
        return default if value is None else value

    def _extra_info(self, name: str) -> Any:  # pragma: no cover
        """Primitive: the transport's detail `name`, or None."""
        raise NotImplementedError

    def exception(self) -> BaseException | None:
        """Why the connection failed or dropped (protocol error, timeout, EOF), else None."""
        return self._conn.exception

    def __repr__(self) -> str:
        role = "client" if self._conn.client else "server"
        return f"<{type(self).__name__} {role} {self._conn.state.name}>"


def write_timed_out(conn: Connection, timeout: float) -> None:
    """Drop `conn`: a send waited `timeout` seconds for a peer that does not read."""
    conn.abort(WSTimeoutError(f"the peer read nothing for {timeout} s (write_timeout)"))


def connection_closed(conn: Connection) -> ConnectionClosed:
    """The error for a send whose bytes were lost with the transport."""
    return ConnectionClosed(conn.close_code or 1006, conn.close_reason or "connection lost")


def _closed(stop: bool) -> WSMessage:
    """CLOSED for `receive()`, the end of `async for`."""
    if stop:
        raise StopAsyncIteration
    return CLOSED_MESSAGE


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


async def echo_handler(ws: WebSocketAPI) -> None:
    """Send every text and binary message back (the echo servers' and Autobahn runs' handler)."""
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
