"""The broadcast hub on every adapter: in-process and on a real redis-server.

Every wait is on an event (a message arriving, the hub reconnecting) with a deadline, never a sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.adapters.conftest import Adapter
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

DEADLINE = 15.0


@pytest.fixture(params=["memory", "redis"])
def hub_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend: None (in-process) or the URL of a fresh redis-server."""
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def _payloads(n: int, tag: str) -> list[str | bytes]:
    """Text and binary alternately, so that the type is checked to survive the trip too."""
    return [f"{tag}-{i}" if i % 2 == 0 else f"{tag}-{i}".encode() for i in range(n)]


async def _take(sub: Any, n: int) -> list[str | bytes]:
    with anyio.fail_after(DEADLINE):
        return [(await sub.get()).data for _ in range(n)]


async def test_publish_reaches_every_subscriber_in_order(adapter: Adapter, hub_url: str | None) -> None:
    async with (
        adapter.module.Hub(hub_url) as hub,
        hub.subscribe("news") as first,
        hub.subscribe("news") as second,
        hub.subscribe("other") as other,
    ):
        sent = _payloads(100, "m")
        for data in sent:
            await hub.publish("news", data)
        await hub.publish("other", "elsewhere")
        assert await _take(first, 100) == sent
        assert await _take(second, 100) == sent
        assert (await _take(other, 1)) == ["elsewhere"]
        assert first.get_nowait() is None and first.dropped == 0


async def test_a_subscription_that_is_not_read_drops_and_counts(
    adapter: Adapter, hub_url: str | None
) -> None:
    async with adapter.module.Hub(hub_url) as hub, hub.subscribe("c", max_queue=3) as slow:
        async with hub.subscribe("c") as fast:
            for i in range(10):
                await hub.publish("c", str(i))
            assert await _take(fast, 10) == [str(i) for i in range(10)]  # not held back by `slow`
        assert await _take(slow, 3) == ["0", "1", "2"]
        assert slow.dropped == 7


async def test_two_hubs_across_redis_keep_each_publishers_order(
    adapter: Adapter, redis_server: RedisServer
) -> None:
    Hub = adapter.module.Hub
    async with Hub(redis_server.url) as a, Hub(redis_server.url) as b, Hub(redis_server.url) as c:  # noqa: SIM117
        async with c.subscribe("room") as sub:
            from_a, from_b = _payloads(200, "a"), _payloads(200, "b")

            async def publish(hub: Any, items: list[str | bytes]) -> None:
                for data in items:
                    await hub.publish("room", data)

            async with anyio.create_task_group() as tg:  # the two publishers interleave
                tg.start_soon(publish, a, from_a)
                tg.start_soon(publish, b, from_b)
            got = await _take(sub, 400)
    assert sorted(map(str, got)) == sorted(map(str, from_a + from_b))
    assert [d for d in got if d in from_a] == from_a
    assert [d for d in got if d in from_b] == from_b


async def test_a_redis_restart_is_survived(adapter: Adapter, redis_server: RedisServer) -> None:
    Hub = adapter.module.Hub
    async with Hub(redis_server.url) as publisher, Hub(redis_server.url) as listener:
        events = {name: anyio.Event() for name in ("down", "up", "publisher down", "publisher up")}
        listener.on_disconnect.append(events["down"].set)
        listener.on_reconnect.append(events["up"].set)
        publisher.on_disconnect.append(events["publisher down"].set)
        publisher.on_reconnect.append(events["publisher up"].set)
        async with listener.subscribe("c") as sub:
            await publisher.publish("c", "before")
            assert await _take(sub, 1) == ["before"]

            redis_server.stop()
            with anyio.fail_after(DEADLINE):
                await events["down"].wait()
                await events["publisher down"].wait()
            assert not listener.connected and not publisher.connected
            with pytest.raises(adapter.module.HubUnavailable):
                await publisher.publish("c", "while down")  # said, not silently lost
            redis_server.start()  # same port, empty: no subscriptions survive in Redis itself

            with anyio.fail_after(DEADLINE):
                await events["up"].wait()  # the listener subscribed again, with backoff
                await events["publisher up"].wait()
            assert listener.connected
            await publisher.publish("c", "after")
            assert await _take(sub, 1) == ["after"]
            assert sub.get_nowait() is None  # "while down" was refused, not delivered late


async def test_an_unreachable_redis_is_a_clear_error(adapter: Adapter, redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.stop()
    with pytest.raises(adapter.module.HubUnavailable, match="cannot subscribe"):
        async with adapter.module.Hub(url):
            pass


@asynccontextmanager
async def _room_server(adapter: Adapter, joined: Callable[[Any], None]) -> AsyncIterator[str]:
    async def handler(ws: Any) -> None:
        joined(ws)
        async for _ in ws:
            pass

    async with adapter.run_server(handler) as url:
        yield url


async def test_a_room_skips_a_slow_client_and_keeps_forwarding(adapter: Adapter, hub_url: str | None) -> None:
    members: set[Any] = set()
    both = anyio.Event()

    def joined(ws: Any) -> None:
        members.add(ws)
        if len(members) == 2:
            both.set()

    # The hub inside the server: the asyncio matrix entry checks that no task started while the
    # server ran is left, and the hub's Redis connections end with the hub.
    async with _room_server(adapter, joined) as url:  # noqa: SIM117
        async with adapter.module.Hub(hub_url) as hub, hub.room("lobby", members) as room:
            # max_queue=1: the stalled client stops reading from its socket after one message.
            async with adapter.connect(url, max_queue=1) as stalled, adapter.connect(url) as reader:
                with anyio.fail_after(DEADLINE):
                    await both.wait()
                big = "x" * 60_000
                n = 0
                with anyio.fail_after(DEADLINE * 2):
                    while room.skipped == 0:  # until the stalled client's writer is over HIGH_WATER
                        n += 1
                        await hub.publish("lobby", f"{n}:{big}")
                        assert await reader.receive_str() == f"{n}:{big}"  # the reader gets every one
                    for m in range(n + 1, n + 6):  # and the room still forwards after skipping
                        await hub.publish("lobby", f"{m}:{big}")
                        assert await reader.receive_str() == f"{m}:{big}"
                assert room.delivered == n + 5
                assert room.skipped >= 1
                assert stalled is not None
                await stalled.close()  # cleanly, so the server has nothing left open
