"""The peer's close, as aiohttp handles it (issue #13, item 11), on every adapter.

With `autoclose` (the default) the close frame is answered when the application reads the CLOSE
message, not when it arrives: until then `closed` is False and the application may still answer the
messages that came before it (RFC 6455 §5.5.1 lets an endpoint finish what it is sending before it
answers). An application that never reads gets its answer sent anyway, after half the close timeout,
so that the peer, waiting the same close timeout, is not left to drop the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import pytest

from wscore import ClientConnection, State, WSMessage, WSMsgType

from .conftest import Adapter

pytestmark = pytest.mark.anyio

CLOSE_TIMEOUT = 0.4
# The event loop gets round to a due timer a little late, more so on a busy 2-core machine.
SCHEDULING_ALLOWANCE = 0.15


async def _raw_client(url: str) -> tuple[anyio.abc.SocketStream, ClientConnection]:
    """A client made of the core and a socket: it sends exactly what a test tells it to, when."""
    port = urlsplit(url).port
    assert port is not None
    stream = await anyio.connect_tcp("127.0.0.1", port)
    core = ClientConnection(f"127.0.0.1:{port}", "/")
    await stream.send(core.data_to_send())
    while core.state is State.CONNECTING:
        core.receive_data(await stream.receive())
    return stream, core


async def _read_until_eof(stream: anyio.abc.SocketStream, core: ClientConnection) -> list[WSMessage]:
    events: list[WSMessage] = []
    while True:
        try:
            data = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return events
        core.receive_data(data)
        events += [e for e in core.events() if e.type is not WSMsgType.CLOSED]
        await stream.send(core.data_to_send())


async def _until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition()` holds (bounded by the test's fail_after)."""
    while not condition():
        await anyio.sleep(0)  # sleep-ok: a checkpoint (yields once), not a timed wait


async def test_the_application_sees_close_last_and_may_still_reply(adapter: Adapter) -> None:
    """A message and the close frame arrive in one write: the handler reads the message, its reply
    is sent (the connection is not closed yet), then it reads CLOSE and only then is it closed."""
    seen: list[Any] = []

    async def handler(ws: Any) -> None:
        msg = await ws.receive()
        await _until(lambda: ws.core.state is not State.OPEN)  # the close frame has arrived too
        seen.append(ws.closed)
        await ws.send_str("re: " + msg.data)
        close = await ws.receive()
        seen.extend([(close.type, close.data, close.extra), ws.closed])

    with anyio.fail_after(10):
        async with adapter.run_server(handler) as url:
            stream, core = await _raw_client(url)
            async with stream:
                core.send_text("a")
                core.close(4001, "bye")
                await stream.send(core.data_to_send())
                events = await _read_until_eof(stream, core)
    assert seen == [False, (WSMsgType.CLOSE, 4001, "bye"), True]
    assert [(e.type, e.data) for e in events] == [(WSMsgType.TEXT, "re: a"), (WSMsgType.CLOSE, 4001)]
    assert core.state is State.CLOSED and core.exception is None


async def test_a_close_the_application_does_not_read_is_answered_after_half_the_close_timeout(
    adapter: Adapter,
) -> None:
    """The handler reads nothing: the peer still gets its close answered (with its own code) after
    half the close timeout, not before; the CLOSE message then still waits for the handler."""
    release = anyio.Event()
    handled = anyio.Event()
    seen: list[Any] = []

    async def handler(ws: Any) -> None:
        await release.wait()
        close = await ws.receive()
        seen.extend([close.type, close.data, ws.closed])
        handled.set()

    timeout = adapter.module.WSTimeout(receive=None, close=CLOSE_TIMEOUT)
    with anyio.fail_after(10):
        async with adapter.run_server(handler, timeout=timeout) as url:
            stream, core = await _raw_client(url)
            async with stream:
                core.close(4002)
                await stream.send(core.data_to_send())
                sent = anyio.current_time()
                events = await _read_until_eof(stream, core)
                elapsed = anyio.current_time() - sent
            release.set()
            await handled.wait()  # before the server stops (which would close with 1001)
    assert [(e.type, e.data) for e in events] == [(WSMsgType.CLOSE, 4002)]
    assert CLOSE_TIMEOUT / 2 - 0.01 <= elapsed <= CLOSE_TIMEOUT / 2 + SCHEDULING_ALLOWANCE, elapsed
    assert seen == [WSMsgType.CLOSE, 4002, True]
