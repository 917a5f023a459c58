"""`async for ws in connect(url)` (issue #14, "Reconnection"), on every adapter: a fresh connection
after each drop (a server stopped and started again on the same port, 1011/1012/1013, refused
connections, 5xx answers) with the backoff lowered to milliseconds through `reconnect_delays`; a 4xx
raises at once; `max_attempts` exhausted raises the last error; break, return and a normal closure
end the loop. Synchronisation is by events only: the waits are the library's own backoff delays."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import anyio
import anyio.abc
import pytest

import wscore_asyncio
from _wscore_kit.reconnect import (
    BACKOFF_FACTOR,
    BACKOFF_INITIAL_DELAY,
    BACKOFF_MAX_DELAY,
    BACKOFF_MIN_DELAY,
    backoff,
)
from wscore import HandshakeError, Request, WSTimeoutError

from ..conftest import free_port
from .conftest import Adapter

pytestmark = pytest.mark.anyio

FAST = partial(backoff, initial_delay=0.01, min_delay=0.01, max_delay=0.05)
Handler = Callable[[Any], Awaitable[None]]


class Server:
    """An adapter's server that the test stops and starts again on the same port."""

    def __init__(self, adapter: Adapter, handler: Handler, tg: anyio.abc.TaskGroup, **options: Any) -> None:
        self.module = adapter.module
        self.handler = handler
        self.tg = tg
        self.options = options
        self.port = 0
        self._server: Any = None
        self._stopped = anyio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        """Listen on `port` (the first time: a port the OS picks, kept for the restarts)."""
        if self.module is wscore_asyncio:
            self._server = await wscore_asyncio.serve(self.handler, "127.0.0.1", self.port, **self.options)
        else:
            self._stopped = anyio.Event()
            self._server = await self.tg.start(self._run)
        self.port = self._server.port

    async def _run(self, *, task_status: anyio.abc.TaskStatus[Any]) -> None:
        try:
            async with anyio.create_task_group() as inner:
                serve = partial(self.module.serve, self.handler, "127.0.0.1", self.port, **self.options)
                task_status.started(await inner.start(serve))
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Stop listening and close every connection (1001)."""
        if self.module is wscore_asyncio:
            await self._server.close()
        else:
            self._server.cancel_scope.cancel()
            await self._stopped.wait()


async def _hello(ws: Any) -> None:
    await ws.send_str("hello")
    async for _ in ws:
        pass


# -- the delays ------------------------------------------------------------------------------------


def test_backoff_takes_websockets_values() -> None:
    assert (BACKOFF_INITIAL_DELAY, BACKOFF_MIN_DELAY, BACKOFF_MAX_DELAY, BACKOFF_FACTOR) == (
        5.0,
        3.1,
        90.0,
        1.618,
    )


def test_backoff_is_jittered_then_exponential_then_capped() -> None:
    delays = list(itertools.islice(backoff(initial_delay=1.0, min_delay=0.1, max_delay=1.0, factor=2.0), 8))
    assert 0 <= delays[0] < 1.0
    assert delays[1:] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    firsts = {next(backoff()) for _ in range(20)}
    assert len(firsts) > 1  # random: a restarted server's clients do not all come back at once
    assert all(0 <= d < 5.0 for d in firsts)


# -- reconnecting ----------------------------------------------------------------------------------


async def test_a_server_restarted_on_the_same_port_gives_a_second_connection(adapter: Adapter) -> None:
    """The server stops (its connections get 1001) and listens again on the same port: the loop's
    next iteration is a connection to the new server."""
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        server = Server(adapter, _hello, tg)
        await server.start()
        port = server.port
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(server.url, reconnect_delays=FAST):
                assert await ws.receive_str() == "hello"
                seen.append(ws.get_extra_info("sockname")[1])
                if len(seen) == 2:
                    break
                stopped = anyio.Event()

                async def stop(stopped: anyio.Event = stopped) -> None:
                    await server.stop()  # waits for our answer to its close
                    stopped.set()

                tg.start_soon(stop)
                msg = await ws.receive()
                assert msg.data == 1001  # CLOSE: the server going away
                await stopped.wait()
                await server.start()  # same port
                assert server.port == port
        await server.stop()
    assert len(seen) == 2 and seen[0] != seen[1]  # two TCP connections


@pytest.mark.parametrize("code", [1011, 1012, 1013])
async def test_a_drop_with_a_retry_code_reconnects(adapter: Adapter, code: int) -> None:
    count = 0

    async def handler(ws: Any) -> None:
        nonlocal count
        count += 1
        await ws.send_str(str(count))
        if count == 1:
            await ws.close(code=code)
        else:
            async for _ in ws:
                pass

    received: list[str] = []
    async with adapter.run_server(handler) as url:
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(url, reconnect_delays=FAST):
                received.append(await ws.receive_str())
                if len(received) == 2:
                    break
                assert (await ws.receive()).data == code
    assert received == ["1", "2"]


async def _cut(ws: Any) -> None:
    """Drop the server's side of `ws` without a close frame."""
    stream = ws.get_extra_info("stream")  # trio, anyio
    transport = getattr(ws, "transport", None) or getattr(stream, "transport", None)  # asyncio
    if transport is not None:
        transport.abort()
    else:
        await anyio.aclose_forcefully(stream)


async def test_an_abnormal_drop_1006_reconnects(adapter: Adapter) -> None:
    """The server's connection is cut without a close frame (its transport aborted)."""
    count = 0

    async def handler(ws: Any) -> None:
        nonlocal count
        count += 1
        await ws.send_str(str(count))
        if count == 1:
            await _cut(ws)
        async for _ in ws:
            pass

    codes: list[int | None] = []
    async with adapter.run_server(handler) as url:
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(url, reconnect_delays=FAST):
                if await ws.receive_str() == "2":
                    break
                await ws.receive()
                codes.append(ws.close_code)
    assert codes == [1006]


@pytest.mark.parametrize("code", [1000, 1008, 4000])
async def test_a_deliberate_close_ends_the_loop(adapter: Adapter, code: int) -> None:
    count = 0

    async def handler(ws: Any) -> None:
        nonlocal count
        count += 1
        await ws.close(code=code)

    iterations = 0
    async with adapter.run_server(handler) as url:
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(url, reconnect_delays=FAST):
                iterations += 1
                await ws.receive()
                assert ws.close_code == code
    assert (iterations, count) == (1, 1)


async def test_a_refused_server_is_retried_until_it_listens(adapter: Adapter) -> None:
    """Nothing listens on the port at first: the attempts are refused and retried; the server starts
    after the first failure (the delays function is called then) and the loop gets its connection."""
    failed = anyio.Event()

    def delays() -> Iterator[float]:
        failed.set()
        yield from FAST()

    async with anyio.create_task_group() as tg:
        server = Server(adapter, _hello, tg)
        server.port = free_port()

        async def start_later() -> None:
            await failed.wait()
            await server.start()

        tg.start_soon(start_later)
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(server.url, reconnect_delays=delays):
                assert await ws.receive_str() == "hello"
                break
        assert failed.is_set()
        await server.stop()


async def test_5xx_answers_are_retried(adapter: Adapter) -> None:
    requests: list[Request] = []

    def process_request(request: Request) -> tuple[int, list[tuple[str, str]], bytes] | None:
        requests.append(request)
        return (503, [], b"busy") if len(requests) <= 2 else None

    codes: list[int | None] = []
    ended = anyio.Event()

    async def handler(ws: Any) -> None:
        await _hello(ws)
        codes.append(ws.close_code)
        ended.set()

    async with adapter.run_server(handler, process_request=process_request) as url:
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(url, reconnect_delays=FAST):
                assert await ws.receive_str() == "hello"
                break
            await ended.wait()
    assert len(requests) == 3
    assert codes == [1000]  # closed by the released iterator, failed attempts notwithstanding


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_a_4xx_raises_instead_of_retrying(adapter: Adapter, status: int) -> None:
    requests: list[Request] = []

    def process_request(request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        requests.append(request)
        return status, [], b"no"

    async with adapter.run_server(_hello, process_request=process_request) as url:
        with anyio.fail_after(20), pytest.raises(HandshakeError) as info:
            async for _ in adapter.module.connect(url, reconnect_delays=FAST):
                raise AssertionError("a refused upgrade gave a connection")
    assert info.value.status == status
    assert len(requests) == 1


async def test_max_attempts_exhausted_raises_the_last_error(adapter: Adapter) -> None:
    requests: list[Request] = []

    def process_request(request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        requests.append(request)
        return 503, [], b"busy"

    async with adapter.run_server(_hello, process_request=process_request) as url:
        with anyio.fail_after(20), pytest.raises(HandshakeError) as info:
            async for _ in adapter.module.connect(url, reconnect_delays=FAST, max_attempts=3):
                raise AssertionError("a refused upgrade gave a connection")
    assert info.value.status == 503
    assert len(requests) == 3


async def test_max_attempts_against_a_port_nobody_listens_on(adapter: Adapter) -> None:
    calls = 0

    def delays() -> Iterator[float]:
        nonlocal calls
        calls += 1
        yield from FAST()

    with anyio.fail_after(20), pytest.raises(OSError):
        async for _ in adapter.module.connect(
            f"ws://127.0.0.1:{free_port()}/", reconnect_delays=delays, max_attempts=2
        ):
            raise AssertionError("connected to nothing")
    assert calls == 1  # one backoff sequence for the two attempts


async def test_break_ends_the_loop_and_closes_the_connection(adapter: Adapter) -> None:
    count = 0
    ended = anyio.Event()
    codes: list[int | None] = []

    async def handler(ws: Any) -> None:
        nonlocal count
        count += 1
        await ws.send_str("hello")
        async for _ in ws:
            pass
        codes.append(ws.close_code)
        ended.set()

    async with adapter.run_server(handler) as url:
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(url, reconnect_delays=FAST):
                assert await ws.receive_str() == "hello"
                break
            await ended.wait()  # the iterator, released, closed its connection (1000)
    assert (count, codes) == (1, [1000])


async def test_return_from_the_body_ends_the_loop(adapter: Adapter) -> None:
    count = 0

    async def handler(ws: Any) -> None:
        nonlocal count
        count += 1
        await _hello(ws)

    async def first_message(url: str) -> str:
        async for ws in adapter.module.connect(url, reconnect_delays=FAST):
            text: str = await ws.receive_str()
            return text
        raise AssertionError("the loop ended without a connection")

    async with adapter.run_server(handler) as url:
        with anyio.fail_after(20):
            assert await first_message(url) == "hello"
            assert await first_message(url) == "hello"
    assert count == 2


async def test_continue_on_an_open_connection_opens_the_next_one(adapter: Adapter) -> None:
    count = 0

    async def handler(ws: Any) -> None:
        nonlocal count
        count += 1
        await ws.send_str(str(count))
        async for _ in ws:
            pass

    received: list[str] = []
    async with adapter.run_server(handler) as url:
        with anyio.fail_after(20):
            async for ws in adapter.module.connect(url, reconnect_delays=FAST):
                received.append(await ws.receive_str())
                if len(received) == 3:
                    break
    assert received == ["1", "2", "3"]


async def test_a_server_that_never_answers_is_retried_then_the_timeout_raised(adapter: Adapter) -> None:
    """TCP accepted, no answer to the upgrade: each attempt ends at `open_timeout` (retried, like a
    refused connection); after `max_attempts` the `WSTimeoutError` is raised."""
    accepted = 0

    async def hold(stream: anyio.abc.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                while await stream.receive():
                    pass

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold)
            with anyio.fail_after(20), pytest.raises(WSTimeoutError):
                async for _ in adapter.module.connect(
                    f"ws://127.0.0.1:{port}/", open_timeout=0.1, reconnect_delays=FAST, max_attempts=2
                ):
                    raise AssertionError("no upgrade was answered")
            tg.cancel_scope.cancel()
    assert accepted == 2


async def test_aclose_ends_the_loop_and_closes_its_connection(adapter: Adapter) -> None:
    ended = anyio.Event()
    codes: list[int | None] = []

    async def handler(ws: Any) -> None:
        await _hello(ws)
        codes.append(ws.close_code)
        ended.set()

    async with adapter.run_server(handler) as url:
        with anyio.fail_after(20):
            loop = aiter(adapter.module.connect(url, reconnect_delays=FAST))
            ws = await anext(loop)
            assert await ws.receive_str() == "hello"
            await loop.aclose()
            assert ws.closed and ws.close_code == 1000
            with pytest.raises(StopAsyncIteration):
                await anext(loop)
            await ended.wait()
    assert codes == [1000]
