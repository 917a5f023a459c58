"""Client behaviour on every adapter: connect errors and timeouts, heartbeat, close handshake rules."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from wscore import WSCloseCode, WSMsgType, WSTimeoutError

from ..conftest import free_port
from .conftest import Adapter

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def silent_tcp_server() -> AsyncIterator[str]:
    """A TCP server that accepts and then never says anything (for open timeouts)."""

    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                while True:
                    await stream.receive()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold)
            yield f"ws://127.0.0.1:{port}/"
            tg.cancel_scope.cancel()


async def test_invalid_url_raises_value_error(adapter: Adapter) -> None:
    with pytest.raises(ValueError):
        async with adapter.connect("http://127.0.0.1:1/"):
            pass


async def test_connection_refused_raises_os_error(adapter: Adapter) -> None:
    with pytest.raises(OSError):
        async with adapter.connect(f"ws://127.0.0.1:{free_port()}/"):
            pass


async def test_open_timeout(adapter: Adapter) -> None:
    async with silent_tcp_server() as url:
        with anyio.fail_after(10):
            with pytest.raises(TimeoutError) as info:
                async with adapter.connect(url, open_timeout=0.2):
                    pass
        assert isinstance(info.value, WSTimeoutError)


async def test_peer_close_with_code_and_reason(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        await ws.close(code=4001, message="bye now")

    async with adapter.run_server(handler) as url, adapter.connect(url) as ws:
        msg = await ws.receive()
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4001, "bye now")
        assert ws.close_code == 4001
        assert (await ws.receive()).type is WSMsgType.CLOSED
        assert ws.closed
        assert await ws.close() is False


async def test_autoclose_off_lets_the_application_answer(adapter: Adapter) -> None:
    server_result: list[Any] = []

    async def handler(ws: Any) -> None:
        server_result.append(await ws.close(code=4002))
        server_result.append(ws.close_code)

    async with adapter.run_server(handler) as url, adapter.connect(url, autoclose=False) as ws:
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 4002)
        assert not ws.closed  # our close frame is not sent yet
        await ws.send_str("a last message is still allowed")
        assert await ws.close(code=1000) is True
        assert ws.closed
    assert server_result == [True, 1000]  # the server learns the code of our answer


async def test_autoclose_off_next_receive_answers(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        await ws.close(code=4003)

    async with adapter.run_server(handler) as url, adapter.connect(url, autoclose=False) as ws:
        assert (await ws.receive()).type is WSMsgType.CLOSE
        assert (await ws.receive()).type is WSMsgType.CLOSED
        assert ws.closed


async def test_close_timeout_when_peer_never_answers(adapter: Adapter) -> None:
    release = anyio.Event()

    async def handler(ws: Any) -> None:
        msg = await ws.receive()  # the CLOSE; autoclose is off, and we do not answer it
        assert msg.type is WSMsgType.CLOSE
        await release.wait()

    timeout = adapter.module.WSTimeout(receive=None, close=0.2)
    async with adapter.run_server(handler, autoclose=False, shutdown_timeout=1) as url:
        async with adapter.connect(url, timeout=timeout) as ws:
            with anyio.fail_after(10):
                assert await ws.close() is True
            assert ws.close_code == WSCloseCode.ABNORMAL_CLOSURE
            assert isinstance(ws.exception(), TimeoutError)
        release.set()


async def test_heartbeat_keeps_a_live_connection(adapter: Adapter) -> None:
    async with (
        adapter.run_server(adapter.module.echo_handler) as url,
        adapter.connect(url, heartbeat=0.05, pong_timeout=2) as ws,
    ):
        # Several heartbeat periods of silence from the application: the pongs keep it open.
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.3)
        assert not ws.closed
        await ws.send_str("alive")
        assert await ws.receive_str() == "alive"


async def test_heartbeat_drops_a_silent_peer(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        # autoping is off: pings arrive as messages and nobody answers them.
        async for _msg in ws:
            pass

    server = adapter.run_server(handler, autoping=False)
    async with server as url, adapter.connect(url, heartbeat=0.1, pong_timeout=0.1) as ws:
        with anyio.fail_after(10):
            msg = await ws.receive()
        assert msg.type in (WSMsgType.ERROR, WSMsgType.CLOSED)
        assert ws.close_code == WSCloseCode.ABNORMAL_CLOSURE
        assert isinstance(ws.exception(), TimeoutError)


async def test_server_heartbeat(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        async for _msg in ws:
            pass

    server = adapter.run_server(handler, heartbeat=0.1, pong_timeout=0.5)
    async with server as url, adapter.connect(url, autoping=False) as ws:
        msg = await ws.receive()
        assert msg.type is WSMsgType.PING  # the server's heartbeat, shown since autoping is off
        await ws.pong(msg.data)
        # Then the server hears nothing more and gives up within the bound.
        with anyio.fail_after(10):
            while (msg := await ws.receive()).type is WSMsgType.PING:
                pass
        assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR)


async def test_get_extra_info(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        peer = ws.get_extra_info("peername")
        assert peer[0] == "127.0.0.1"
        assert ws.get_extra_info("no such thing", "dflt") == "dflt"
        assert ws.protocol is None
        assert ws.close_code is None
        assert ws.exception() is None
        assert ws.get_extra_info("socket") is not None
        await ws.close()
        # As aiohttp: once closed, the transport is gone and so are its details (not a dead socket,
        # not an OSError).
        for name in ("peername", "sockname", "socket"):
            assert ws.get_extra_info(name) is None
            assert ws.get_extra_info(name, "gone") == "gone"
