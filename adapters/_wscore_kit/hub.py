"""The broadcast hub: publish on a channel in one process, receive in every process that listens.

    async with Hub() as hub:                                # in-process (the default)
    async with Hub("redis://127.0.0.1:6379") as hub:        # Redis pub/sub, through coredis
        await hub.publish("news", "hello")
        async with hub.subscribe("news") as sub:            # a queue of HubMessage
            async for msg in sub: ...
        async with hub.room("lobby", server.connections):   # each message -> broadcast() locally
            ...

Written once for every adapter. The only primitive an adapter supplies is `new_event` (a one-shot
event: `asyncio.Event`, `trio.Event`, `anyio.Event`), so that a `Subscription` can wait; the kit
imports no I/O library at module level. The Redis backend imports `anyio` and `coredis` when a hub
with a URL is entered (coredis is anyio-native: one backend serves asyncio, trio and anyio).

Delivery is synchronous and never waits on a consumer: a listener's callback runs as the message
arrives; a `Subscription` queues at most `max_queue` messages and counts the ones it drops; a room
hands each message to `broadcast()`, which encodes the frame once and skips a slow client. So one
slow consumer never stalls the others or the subscription.

Order: messages from one hub arrive in the order it published them (its publishes are serialised,
and Redis delivers in order per connection).

Redis restarts: the listener reconnects with exponential backoff (`reconnect_delay`, from 50 ms up to
2 s) and subscribes again to every channel with local listeners. Redis pub/sub is at-most-once, so
what is published while a process is disconnected is lost *for that process* (no replay), and
`publish()` raises `HubUnavailable` while Redis is down (the caller decides: drop, retry, tell the
user). `hub.connected` says whether the listener is currently subscribed; `on_disconnect` callbacks
run when it loses Redis, `on_reconnect` callbacks after it has subscribed again (for an application
to republish its state: the chat republishes its member list).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar
from uuid import uuid4

from .connection import WebSocketAPI, broadcast

__all__ = ["Hub", "HubMessage", "HubUnavailable", "Room", "Subscription"]

log = logging.getLogger("wscore.hub")
_H = TypeVar("_H", bound="Hub")

DEFAULT_HUB_QUEUE = 1024
"""Messages a `Subscription` keeps unread before it drops (and counts) the newest."""


class _Event(Protocol):
    def set(self) -> None: ...
    async def wait(self) -> Any: ...


class HubUnavailable(ConnectionError):
    """The hub's backend (Redis) cannot be reached: nothing was published."""


@dataclass(frozen=True, slots=True)
class HubMessage:
    """One message received from a channel: `data` has the type it was published with."""

    channel: str
    data: str | bytes


Listener = Callable[[HubMessage], object]


class Subscription:
    """The messages of one channel, in order: `async for msg in sub`. Never blocks the hub: past
    `max_queue` unread messages the newest are dropped and counted in `dropped`."""

    def __init__(self, channel: str, max_queue: int, new_event: Callable[[], _Event]) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.channel = channel
        self.dropped = 0
        self._queue: list[HubMessage] = []
        self._head = 0
        self._max_queue = max_queue
        self._new_event = new_event
        self._waiter: _Event | None = None
        self._closed = False

    def _put(self, msg: HubMessage) -> None:
        if len(self._queue) - self._head >= self._max_queue:
            self.dropped += 1
            return
        self._queue.append(msg)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def _close(self) -> None:
        self._closed = True
        self._wake()

    def get_nowait(self) -> HubMessage | None:
        """The next queued message, or None."""
        if self._head == len(self._queue):
            return None
        msg = self._queue[self._head]
        self._head += 1
        if self._head == len(self._queue):
            self._queue.clear()
            self._head = 0
        return msg

    async def get(self) -> HubMessage:
        """The next message (waits for it); `StopAsyncIteration` once the subscription has ended."""
        while (msg := self.get_nowait()) is None:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = waiter = self._new_event()
            await waiter.wait()
        return msg

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> HubMessage:
        return await self.get()


class Room:
    """A channel forwarded to local connections: each message is `broadcast()` to `connections`
    (encoded once per process; a connection whose writer is behind is skipped and counted)."""

    def __init__(self, channel: str, connections: Iterable[WebSocketAPI]) -> None:
        self.channel = channel
        self.connections = connections
        self.delivered = 0
        self.skipped = 0

    def _forward(self, msg: HubMessage) -> None:
        skipped = broadcast(self.connections, msg.data)
        self.delivered += 1
        self.skipped += len(skipped)


class Hub:
    """A publish/subscribe hub; `url=None` is in-process, `redis://...` is Redis pub/sub.

    Enter it (`async with hub:`) before use, in the task that will also leave it: the Redis backend
    runs its listener in a task group there. `new_event` is the adapter's one primitive (see the
    module docstring); each adapter exports a `Hub` subclass that sets it.
    """

    new_event: ClassVar[Callable[[], _Event]]

    def __init__(
        self,
        url: str | None = None,
        *,
        max_queue: int = DEFAULT_HUB_QUEUE,
        reconnect_delay: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"hub URL must be redis://, rediss:// or unix://, not {url!r}")
        self.url = url
        self.max_queue = max_queue
        self.reconnect_delay = reconnect_delay
        self.on_reconnect: list[Callable[[], object]] = []
        self.on_disconnect: list[Callable[[], object]] = []
        self._listeners: dict[str, list[Listener]] = {}
        self._backend: Any = None

    @property
    def connected(self) -> bool:
        """True while messages of other processes can arrive (always, in-process)."""
        return self._backend is not None and bool(self._backend.connected)

    async def __aenter__(self: _H) -> _H:
        if self._backend is not None:
            raise RuntimeError("this hub is already running")
        if self.url is None:
            self._backend = _LocalBackend(self._deliver)
        else:
            from ._hub_redis import RedisBackend

            backend = RedisBackend(
                self.url, self._deliver, self._reconnected, self._disconnected, self.reconnect_delay
            )
            await backend.start(list(self._listeners))
            self._backend = backend
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.stop()

    def _running(self) -> Any:
        if self._backend is None:
            raise RuntimeError("enter the hub first: `async with hub:`")
        return self._backend

    async def publish(self, channel: str, data: str | bytes | bytearray | memoryview) -> None:
        """Send `data` to every listener of `channel`, in every process (this one included).
        `HubUnavailable` if the backend cannot be reached."""
        if not isinstance(channel, str):
            raise TypeError(f"channel must be str, not {type(channel).__name__}")
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, (str, bytes)):
            raise TypeError(f"data must be str or bytes-like, not {type(data).__name__}")
        await self._running().publish(channel, data)

    @asynccontextmanager
    async def listen(self, channel: str, callback: Listener) -> AsyncIterator[None]:
        """Call `callback(msg)` for each message on `channel` while inside (after the backend has
        confirmed the subscription, when it is reachable). The callback must not block: it runs in
        the hub's delivery path; an exception from it is logged and the others still run."""
        backend = self._running()
        callbacks = self._listeners.setdefault(channel, [])
        callbacks.append(callback)
        try:
            if len(callbacks) == 1:
                await backend.subscribe(channel)
            yield
        finally:
            callbacks.remove(callback)
            if not callbacks:
                del self._listeners[channel]
                if self._backend is backend:
                    await backend.unsubscribe(channel)

    @asynccontextmanager
    async def subscribe(self, channel: str, *, max_queue: int | None = None) -> AsyncIterator[Subscription]:
        """A `Subscription` to `channel` while inside (see `Subscription`)."""
        sub = Subscription(channel, max_queue or self.max_queue, type(self).new_event)
        try:
            async with self.listen(channel, sub._put):
                yield sub
        finally:
            sub._close()

    @asynccontextmanager
    async def room(
        self, channel: str, connections: Iterable[WebSocketAPI] | None = None
    ) -> AsyncIterator[Room]:
        """Forward `channel` to local connections while inside: `connections` (a live collection,
        e.g. `server.connections` or a set the handler adds to; a new set by default)."""
        room = Room(channel, set() if connections is None else connections)
        async with self.listen(channel, room._forward):
            yield room

    def _deliver(self, msg: HubMessage) -> None:
        for callback in tuple(self._listeners.get(msg.channel, ())):
            try:
                callback(msg)
            except Exception:  # noqa: PERF203  (one listener's bug must not starve the others)
                log.exception("hub listener of %r failed", msg.channel)

    def _reconnected(self) -> None:
        _call_each(self.on_reconnect, "on_reconnect")

    def _disconnected(self) -> None:
        _call_each(self.on_disconnect, "on_disconnect")


def _call_each(callbacks: list[Callable[[], object]], what: str) -> None:
    for callback in tuple(callbacks):
        try:
            callback()
        except Exception:  # noqa: PERF203
            log.exception("hub %s callback failed", what)


class _LocalBackend:
    """In-process: a publish is delivered before `publish()` returns."""

    connected = True

    def __init__(self, deliver: Callable[[HubMessage], None]) -> None:
        self._deliver = deliver

    async def publish(self, channel: str, data: str | bytes) -> None:
        self._deliver(HubMessage(channel, data))

    async def subscribe(self, channel: str) -> None:
        pass

    async def unsubscribe(self, channel: str) -> None:
        pass

    async def stop(self) -> None:
        pass


def encode_payload(data: str | bytes) -> bytes:
    """A message as one Redis value: a type byte (t: text, b: binary), then the bytes."""
    return b"t" + data.encode("utf-8") if isinstance(data, str) else b"b" + data


def decode_payload(channel: str, payload: bytes) -> HubMessage | None:
    """The inverse of `encode_payload`; None for a value no hub published."""
    kind, body = payload[:1], payload[1:]
    if kind == b"t":
        try:
            return HubMessage(channel, body.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    if kind == b"b":
        return HubMessage(channel, body)
    return None


def control_channel() -> str:
    """A channel only this hub listens to: keeps its Redis subscription non-empty."""
    return f"wscore-hub:{uuid4().hex}"
