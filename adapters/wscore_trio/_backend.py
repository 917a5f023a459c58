"""trio's primitives for the kit's stream driver (`IOBackend`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from _wscore_kit.backend import EventLike, IOBackend, RecvSome, ScopeLike, TryWrite

from .lowlevel import RAW_SOCKETS, Waiter, socket_receiver, socket_try_writer


class _TrioIO(IOBackend):
    stream_errors = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

    def event(self) -> trio.Event:
        return trio.Event()

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> ScopeLike:
        return trio.CancelScope(deadline=deadline, shield=shield)

    def current_time(self) -> float:
        return trio.current_time()

    def clock(self) -> Callable[[], float]:
        return trio.current_time

    def task_group(self) -> AbstractAsyncContextManager[trio.Nursery]:
        return trio.open_nursery()

    def is_cancelled(self, exc: BaseException) -> bool:
        return isinstance(exc, trio.Cancelled)

    async def sleep_forever(self) -> None:
        await trio.sleep_forever()

    async def receive(self, stream: trio.abc.Stream) -> bytes | bytearray:
        return await stream.receive_some(65536)

    async def send(self, stream: trio.abc.Stream, data: bytes) -> None:
        await stream.send_all(data)

    async def aclose(self, stream: trio.abc.Stream) -> None:
        await trio.aclose_forcefully(stream)

    def waiter(self) -> EventLike:
        return Waiter()

    def receiver(self, stream: trio.abc.Stream) -> RecvSome | None:
        return (
            socket_receiver(stream.socket) if isinstance(stream, trio.SocketStream) and RAW_SOCKETS else None
        )

    def try_writer(self, stream: trio.abc.Stream) -> TryWrite | None:
        if isinstance(stream, trio.SocketStream) and RAW_SOCKETS:
            return socket_try_writer(stream.socket)
        return None

    def extra_info(self, stream: Any, name: str) -> Any:
        if isinstance(stream, trio.SSLStream):
            if name == "ssl_object":
                return stream._ssl_object  # trio has no public handle on the peer certificate
            if name == "peercert":
                return stream.getpeercert()
        while isinstance(stream, trio.SSLStream):  # nested: wss:// through an https:// proxy
            stream = stream.transport_stream
        sock = getattr(stream, "socket", None)
        if sock is None:
            return None
        if name == "peername":
            return sock.getpeername()
        if name == "sockname":
            return sock.getsockname()
        if name == "socket":
            return sock
        return None
