"""trio's fast primitives for the shared driver, public for the other adapters that run on trio
(`wscore_anyio` on its trio backend): nonblocking-socket reads and writes with os.read/os.write, and a
one-waiter event on trio's low-level parking."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable
from typing import Any

import trio

from _wscore_kit.backend import RecvSome, TryWrite

__all__ = ["RAW_SOCKETS", "Waiter", "socket_receiver", "socket_try_writer"]

_RECEIVE_SIZE = 65536


RAW_SOCKETS = sys.platform != "win32"
"""Whether plain sockets are read and written with os.read/os.write (not on Windows: they do not
work on sockets there)."""


_wait_readable = trio.lowlevel.wait_readable


def socket_try_writer(sock: Any, closed: type[Exception] = trio.ClosedResourceError) -> TryWrite:
    """`try_write` on a nonblocking socket: os.write, one system call and no scheduler pass per message
    (a trio socket's send() is a checkpoint); 0 when the socket is full. Also used by wscore_anyio on
    the trio backend, with its `closed` exception."""
    return _SocketIO(sock, closed).try_write


def socket_receiver(sock: Any, closed: type[Exception] = trio.ClosedResourceError) -> RecvSome:
    """The reader's `recv_some` on a nonblocking socket: wait until readable, then os.read. After a
    short read the socket is most likely empty, so it waits first instead of failing a read."""
    return _SocketIO(sock, closed).recv_some


class _SocketIO:
    """`socket_try_writer`'s and `socket_receiver`'s state: a small object with methods rather than
    closures and their cells (kept for as long as the connection lives: memory per connection)."""

    __slots__ = ("_closed", "_full", "_sock")

    def __init__(self, sock: Any, closed: type[Exception]) -> None:
        self._sock = sock
        self._closed = closed
        self._full = False

    def try_write(self, data: bytes | memoryview) -> int:
        fd = self._sock.fileno()
        if fd < 0:
            raise self._closed("the socket was closed")
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0

    async def recv_some(self) -> bytes:
        sock = self._sock
        try:
            if not self._full:
                await _wait_readable(sock)
            while True:
                fd = sock.fileno()
                if fd < 0:
                    raise self._closed("the socket was closed")
                try:
                    data = os.read(fd, _RECEIVE_SIZE)
                except BlockingIOError:
                    await _wait_readable(sock)
                    continue
                self._full = len(data) == _RECEIVE_SIZE
                return data
        except trio.ClosedResourceError as exc:
            if self._closed is trio.ClosedResourceError:
                raise
            raise self._closed(str(exc)) from None


class Waiter:
    """A one-shot event for one waiting task, on trio's low-level parking (no ParkingLot)."""

    __slots__ = ("_flag", "_task")

    def __init__(self) -> None:
        self._flag = False
        self._task: trio.lowlevel.Task | None = None

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            task = self._task
            if task is not None:
                self._task = None
                trio.lowlevel.reschedule(task)

    def is_set(self) -> bool:
        return self._flag

    def wait(self) -> Awaitable[object]:
        """Wait until set (a checkpoint if it is already). Call it only to await it at once: the
        waiting task is the caller. trio's coroutine itself, not one of ours around it: a frame less
        per wait and per idle connection (memory)."""
        if self._flag:
            return trio.lowlevel.checkpoint()
        if self._task is not None:
            raise RuntimeError("another task is already waiting")
        self._task = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        # A method, not a closure per wait: an idle connection's receive() waits here (memory).
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED
