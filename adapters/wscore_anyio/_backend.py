"""anyio's primitives for the kit's stream driver, on either backend; on asyncio, connections run
on asyncio's own transports (`_AsyncioStream`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from _wscore_kit.backend import (
    EventLike,
    IOBackend,
    PushSource,
    RecvSome,
    ScopeLike,
    TimerHandle,
    TryWrite,
)

from ._asyncio_stream import _AsyncioStream

_EXTRA = {
    "peername": SocketAttribute.remote_address,
    "sockname": SocketAttribute.local_address,
    "socket": SocketAttribute.raw_socket,
    "ssl_object": TLSAttribute.ssl_object,
    "peercert": TLSAttribute.peer_certificate,
}


class _AnyioIO(IOBackend):
    """anyio's primitives: any anyio byte stream, on either backend."""

    stream_errors = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)

    def event(self) -> EventLike:
        return anyio.Event()

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> ScopeLike:
        return anyio.CancelScope(deadline=deadline, shield=shield)

    def current_time(self) -> float:
        return anyio.current_time()

    def task_group(self) -> AbstractAsyncContextManager[anyio.abc.TaskGroup]:
        return anyio.create_task_group()

    def is_cancelled(self, exc: BaseException) -> bool:
        return isinstance(exc, anyio.get_cancelled_exc_class())

    async def sleep_forever(self) -> None:
        await anyio.sleep_forever()

    async def receive(self, stream: anyio.abc.ByteStream) -> bytes:
        try:
            return await stream.receive(65536)
        except anyio.EndOfStream:
            return b""

    async def send(self, stream: anyio.abc.ByteStream, data: bytes) -> None:
        await stream.send(data)

    async def aclose(self, stream: anyio.abc.ByteStream) -> None:
        await anyio.aclose_forcefully(stream)

    def extra_info(self, stream: Any, name: str) -> Any:
        attribute = _EXTRA.get(name)
        return None if attribute is None else stream.extra(attribute, None)


class _FutureWaiter:
    """A one-shot event for one waiting task: a bare asyncio future (anyio's cancel scopes cancel
    the task awaiting it like any other await)."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        future = self._future
        return future.done() and not future.cancelled()

    def wait(self) -> asyncio.Future[None]:
        return self._future


class _AsyncioBackendIO(_AnyioIO):
    """On anyio's asyncio backend: connections made by this module run on asyncio's transports
    (`_AsyncioStream`), driven from the transport's callbacks; asyncio's own events and clock.

    One per `connect()` or `serve()` call, bound to the running loop: on Python 3.11
    `asyncio.get_running_loop()` makes a getpid() system call, once per message if every wait asked.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # asyncio's own loops read time.monotonic() and create an asyncio.Future through Python
        # methods; calling those directly saves a frame per read and per wait (as wscore_asyncio).
        # Other loops (uvloop) keep theirs.
        plain = type(loop).time is asyncio.BaseEventLoop.time
        self._time: Callable[[], float] = time.monotonic if plain else loop.time
        plain = type(loop).create_future is asyncio.BaseEventLoop.create_future
        self._future: Callable[[], asyncio.Future[None]] = (
            partial(asyncio.Future, loop=loop) if plain else loop.create_future
        )

    def event(self) -> EventLike:
        # What anyio.Event wraps on this backend; anyio's cancel scopes cancel its wait() alike.
        return asyncio.Event()

    def waiter(self) -> EventLike:
        return _FutureWaiter(self._future())

    def current_time(self) -> float:
        return self._time()

    def clock(self) -> Callable[[], float]:
        return self._time

    async def sleep_forever(self) -> None:
        # A future nobody resolves, not anyio.sleep_forever(): that is asyncio.sleep(inf), whose
        # timer handle at infinity stays in the loop's heap and makes every iteration of the loop
        # compute a select timeout and check the heap (about 5 calls an iteration). Cancel scopes
        # cancel this wait like any other.
        await self._future()

    def push_source(self, stream: Any) -> PushSource | None:
        return stream if isinstance(stream, _AsyncioStream) else None

    def call_soon(self, fn: Callable[[], object]) -> None:
        self._loop.call_soon(fn)

    def call_at(self, when: float, fn: Callable[[], object]) -> TimerHandle:
        return self._loop.call_at(when, fn)


class _TrioBackendIO(_AnyioIO):
    """On anyio's trio backend: wscore_trio's fast paths for a plain socket stream (read and written
    with os.read/os.write from the socket anyio wraps) and its one-waiter event."""

    def waiter(self) -> EventLike:
        from wscore_trio.lowlevel import Waiter  # running on trio, so installed

        return Waiter()

    def clock(self) -> Callable[[], float]:
        import trio

        return trio.current_time

    def receiver(self, stream: Any) -> RecvSome | None:
        from wscore_trio.lowlevel import RAW_SOCKETS, socket_receiver

        if not isinstance(stream, anyio.abc.SocketStream) or not RAW_SOCKETS:
            return None
        return socket_receiver(stream.extra(SocketAttribute.raw_socket), anyio.ClosedResourceError)

    def try_writer(self, stream: Any) -> TryWrite | None:
        from wscore_trio.lowlevel import RAW_SOCKETS, socket_try_writer

        if not isinstance(stream, anyio.abc.SocketStream) or not RAW_SOCKETS:
            return None
        return socket_try_writer(stream.extra(SocketAttribute.raw_socket), anyio.ClosedResourceError)


_GENERIC_IO = _AnyioIO()
_TRIO_IO = _TrioBackendIO()


def _on_asyncio() -> bool:
    try:
        import sniffio
    except ImportError:  # trio requires sniffio: without it, this is asyncio
        return True
    return bool(sniffio.current_async_library() == "asyncio")


def _current_io() -> _AnyioIO:
    return _AsyncioBackendIO(asyncio.get_running_loop()) if _on_asyncio() else _TRIO_IO
