"""The primitives an adapter supplies to the kit's stream driver (`driver.StreamWebSocket`): an
`IOBackend` of a dozen methods over its I/O library, and the duck-typed shapes the driver uses of that
library's events, cancel scopes and (pushed streams) asyncio transports. Imports no I/O library.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .driver import StreamWebSocket

__all__ = [
    "EventLike",
    "IOBackend",
    "PushSource",
    "PushTransport",
    "RecvSome",
    "ScopeLike",
    "TimerHandle",
    "TryWrite",
]


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

    def call_at(self, when: float, fn: Callable[[], object]) -> TimerHandle:
        """Call `fn()` at `current_time()` `when` (needed with `push_source`: a pushed connection's
        timer is armed from the transport's callbacks, where anyio can make no task or scope)."""
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

    def try_writer(self, stream: Any) -> TryWrite | None:
        """For a stream with a nonblocking write (a plain socket): `try_write`, which lets `send_*()`
        write from the calling task. None: every write goes through the writer task."""
        return None

    def push_source(self, stream: Any) -> PushSource | None:
        """For a stream that can deliver its bytes by callback (an asyncio transport): the connection
        is then driven from the callbacks, without reader and writer tasks. None: pulled."""
        return None


RecvSome = Callable[[], Awaitable[bytes]]
"""`await recv_some()`: the next bytes of the stream, b"" at its end."""

TryWrite = Callable[[Any], int]
"""`try_write(data)`: write what the socket takes of `data` (bytes or a memoryview) now, without
waiting; how many bytes went out (0 when it is full). Raises one of `IOBackend.stream_errors` when the
stream is broken or closed."""


class TimerHandle(Protocol):
    """What `IOBackend.call_at` returns (an asyncio.TimerHandle)."""

    def cancel(self) -> None: ...


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
