"""The hub's Redis pub/sub backend, on coredis (imported here, when a hub with a URL is entered).

One connection listens: it subscribes to every channel with a local listener, plus a control channel
of its own so that the subscription is never empty. When it drops (a Redis restart, a network
fault) the listener reconnects with exponential backoff and subscribes again; `publish` goes through
the client's pool and raises `HubUnavailable` while Redis is down. A lock keeps this hub's publishes
in call order (each waits for Redis's reply before the next is sent).

anyio and coredis are imported inside the methods: the kit loads no I/O library at module level
(tests/test_layers.py imports every kit module), and both come with the `redis` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .hub import HubMessage, HubUnavailable, control_channel, decode_payload, encode_payload

if TYPE_CHECKING:
    import coredis

log = logging.getLogger("wscore.hub")

_SUBSCRIBE_TIMEOUT = 5.0


class RedisBackend:
    def __init__(
        self,
        url: str,
        deliver: Callable[[HubMessage], None],
        reconnected: Callable[[], None],
        disconnected: Callable[[], None],
        delays: tuple[float, float],
    ) -> None:
        self._url = url
        self._deliver = deliver
        self._reconnected = reconnected
        self._disconnected = disconnected
        self._min_delay, self._max_delay = delays
        self._control = control_channel()
        self._channels: set[str] = set()
        import anyio
        import coredis
        from coredis.retry import NoRetryPolicy

        self._pubsub: Any = None
        self._lock = anyio.Lock()
        self._stack = AsyncExitStack()
        self._client: coredis.Redis[bytes] = coredis.Redis.from_url(url, retry_policy=NoRetryPolicy())
        self.connected = False

    async def start(self, channels: list[str]) -> None:
        import anyio
        from coredis.exceptions import RedisError

        self._channels.update(channels)
        if not await self._reachable():
            raise HubUnavailable(f"cannot subscribe at {self._url}: nothing accepts connections there")
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._client)
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)  # on stop: end the listener first
            try:
                await tg.start(self._listen)
            except RedisError as exc:
                raise HubUnavailable(f"cannot subscribe at {self._url}: {exc}") from None
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        await self._stack.aclose()

    async def publish(self, channel: str, data: str | bytes) -> None:
        from coredis.exceptions import RedisError

        payload = encode_payload(data)
        if not self.connected:  # fail fast while the listener is reconnecting
            raise HubUnavailable(f"cannot publish to {self._url}: not connected (reconnecting)")
        async with self._lock:
            try:
                await self._client.publish(channel, payload)
            except (RedisError, OSError) as exc:
                raise HubUnavailable(f"cannot publish to {self._url}: {exc}") from None

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        if self._pubsub is not None:
            await self._call(self._pubsub.subscribe, channel)

    async def unsubscribe(self, channel: str) -> None:
        import anyio

        self._channels.discard(channel)
        if self._pubsub is not None:
            with anyio.CancelScope(shield=True):
                await self._call(self._pubsub.unsubscribe, channel)

    async def _call(self, method: Callable[[str], Any], channel: str) -> None:
        # A failure here is a connection going down: the listener subscribes again on reconnecting.
        import anyio
        from coredis.exceptions import RedisError

        with anyio.move_on_after(_SUBSCRIBE_TIMEOUT):
            try:
                await method(channel)
            except (RedisError, OSError) as exc:
                log.debug("hub: (un)subscribe %r deferred: %s", channel, exc)

    async def _listen(self, *, task_status: Any) -> None:
        from coredis.retry import NoRetryPolicy

        started = down = False
        while True:
            if started:
                await self._wait_reachable()
            channels = [self._control, *self._channels]
            try:
                async with self._client.pubsub(
                    channels=channels, retry_policy=NoRetryPolicy(), ignore_subscribe_messages=True
                ) as pubsub:
                    self._pubsub = pubsub
                    missed = self._channels.difference(channels)  # added while this one was opening
                    if missed:
                        await pubsub.subscribe(*missed)
                    self.connected = True
                    if not started:
                        started = True
                        task_status.started()
                    elif down:
                        log.warning("hub: reconnected to %s, subscribed again", self._url)
                        down = False
                        self._reconnected()
                    async for message in pubsub:
                        data = message["data"]
                        if message["type"] != "message" or not isinstance(data, bytes):
                            continue
                        channel = message["channel"]
                        name = channel.decode("utf-8") if isinstance(channel, bytes) else str(channel)
                        msg = decode_payload(name, data)
                        if msg is not None:
                            self._deliver(msg)
                error: BaseException = ConnectionError("the subscription ended")
            except Exception as exc:  # coredis raises groups of ConnectionError out of its task group
                if not started:
                    raise _first_redis_error(exc) from None
                error = _first_redis_error(exc)
            finally:
                self._pubsub = None
                self.connected = False
            if not down:
                log.warning("hub: lost %s (%s); reconnecting", self._url, error)
                down = True
                self._disconnected()

    async def _wait_reachable(self) -> None:
        """Back off until Redis accepts a TCP connection again. coredis leaks a connection's memory
        streams when its connect fails (ResourceWarnings at collection), so the listener only hands
        coredis an address that just answered."""
        import anyio

        delay = self._min_delay
        while True:
            await anyio.sleep(delay)
            delay = min(delay * 2, self._max_delay)
            if await self._reachable():
                return

    async def _reachable(self) -> bool:
        import anyio

        where = urlsplit(self._url)
        if where.scheme == "unix":
            return True
        try:
            stream = await anyio.connect_tcp(where.hostname or "127.0.0.1", where.port or 6379)
        except OSError:
            return False
        await stream.aclose()
        return True


def _first_redis_error(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (coredis nests them), for a one-line message."""
    while inner := getattr(exc, "exceptions", None):
        exc = inner[0]
    return exc
