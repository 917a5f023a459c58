"""wscore_trio and wscore_anyio (on both backends) against the peers, on 127.0.0.1, in both directions:
our client with `websockets`, `aiohttp` and `trio-websocket` servers, their clients with our server.
Text, binary and 1 MiB messages, compression on and off, pings, close codes both ways.

The peers run on an event loop of their own kind (asyncio for websockets and aiohttp, trio for
trio-websocket) in a thread of their own, so that any peer meets any of our adapters and backends.
Every server echoes, and answers the text "close:<code>" by closing with that code.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import aiohttp
import anyio
import pytest
import trio
import trio_websocket
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection as WsServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from wscore import WSMsgType

pytestmark = pytest.mark.anyio

MIB = bytes(range(256)) * 4096
TEXT_MIB = "ü" * (512 * 1024)  # 1 MiB of UTF-8
LIMIT = 4 * 1024 * 1024

OURS = [
    pytest.param("wscore_trio", "trio", id="trio"),
    pytest.param("wscore_anyio", "asyncio", id="anyio-asyncio"),
    pytest.param("wscore_anyio", "trio", id="anyio-trio"),
]

Stop = Callable[[], Awaitable[None]]


# -- a peer's event loop in a thread --------------------------------------------------------------


class PeerLoop:
    """An asyncio or trio event loop running in a thread; `call(fn, *args)` runs the coroutine
    function there and awaits its result from our loop without blocking it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.nursery: trio.Nursery | None = None

    def _run(self) -> None:
        if self.kind == "asyncio":
            loop = self._loop = asyncio.new_event_loop()
            loop.call_soon(self._ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        else:
            trio.run(self._trio_main)

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self._ready.set()
            await trio.sleep_forever()

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run `fn(*args)` on the peer's loop; its result (or exception) here."""
        if self._loop is not None:
            future = asyncio.run_coroutine_threadsafe(_as_coroutine(fn(*args)), self._loop)
            return await anyio.to_thread.run_sync(future.result)
        return await anyio.to_thread.run_sync(
            partial(trio.from_thread.run, fn, *args, trio_token=self._token)
        )

    def _stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        else:
            assert self.nursery is not None
            trio.from_thread.run_sync(self.nursery.cancel_scope.cancel, trio_token=self._token)
        self._thread.join()

    @classmethod
    @asynccontextmanager
    async def running(cls, kind: str) -> AsyncIterator[PeerLoop]:
        peer = cls(kind)
        peer._thread.start()
        await anyio.to_thread.run_sync(peer._ready.wait)
        try:
            yield peer
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(peer._stop)


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


# -- peer servers (run on the peer's loop) --------------------------------------------------------


async def websockets_server(compress: bool, codes: list[int]) -> tuple[str, Stop]:
    async def handler(ws: WsServerConnection) -> None:
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close:"):
                    await ws.close(int(msg[6:]), "requested")
                    return
                await ws.send(msg)
        finally:
            if ws.close_code is not None:
                codes.append(ws.close_code)

    server = await ws_serve(
        handler, "127.0.0.1", 0, compression="deflate" if compress else None, max_size=LIMIT
    )
    port = next(iter(server.sockets)).getsockname()[1]

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return f"ws://127.0.0.1:{port}/", stop


async def aiohttp_server(compress: bool, codes: list[int]) -> tuple[str, Stop]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compress, max_msg_size=LIMIT)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data[6:]), message=b"requested")
                    break
                await ws.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        if ws.close_code is not None:
            codes.append(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"ws://127.0.0.1:{runner.addresses[0][1]}/", runner.cleanup


def trio_websocket_server(nursery: trio.Nursery) -> Callable[[bool, list[int]], Awaitable[tuple[str, Stop]]]:
    async def start(compress: bool, codes: list[int]) -> tuple[str, Stop]:
        async def handler(request: trio_websocket.WebSocketRequest) -> None:
            ws = await request.accept()
            try:
                while True:
                    msg = await ws.get_message()
                    if isinstance(msg, str) and msg.startswith("close:"):
                        await ws.aclose(int(msg[6:]), "requested")
                        return
                    await ws.send_message(msg)
            except trio_websocket.ConnectionClosed:
                pass
            finally:
                if ws.closed is not None:
                    codes.append(ws.closed.code)

        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[Any]) -> None:
            with scope:
                await trio_websocket.serve_websocket(
                    handler, "127.0.0.1", 0, ssl_context=None, max_message_size=LIMIT, task_status=task_status
                )

        server = await nursery.start(run)

        async def stop() -> None:
            scope.cancel()

        return f"ws://127.0.0.1:{server.port}/", stop

    return start


@asynccontextmanager
async def peer_server(peer: str, compress: bool, codes: list[int]) -> AsyncIterator[str]:
    async with PeerLoop.running("trio" if peer == "trio-websocket" else "asyncio") as loop:
        if peer == "websockets":
            start: Callable[[bool, list[int]], Awaitable[tuple[str, Stop]]] = websockets_server
        elif peer == "aiohttp":
            start = aiohttp_server
        else:
            assert loop.nursery is not None
            start = trio_websocket_server(loop.nursery)
        url, stop = await loop.call(start, compress, codes)
        try:
            yield url
        finally:
            with anyio.CancelScope(shield=True):
                await loop.call(stop)


PEERS = [
    pytest.param("websockets", False, id="websockets-plain"),
    pytest.param("websockets", True, id="websockets-deflate"),
    pytest.param("aiohttp", False, id="aiohttp-plain"),
    pytest.param("aiohttp", True, id="aiohttp-deflate"),
    pytest.param("trio-websocket", False, id="trio_websocket"),
]


@pytest.mark.parametrize(("peer", "compress"), PEERS)
@pytest.mark.parametrize(("module", "anyio_backend"), OURS)
async def test_our_client_with_peer_server(
    module: str, anyio_backend: str, peer: str, compress: bool
) -> None:
    mod: Any = importlib.import_module(module)
    codes: list[int] = []
    with anyio.fail_after(30):
        async with peer_server(peer, compress, codes) as url:
            async with mod.connect(url, compress=compress, autoping=False, max_msg_size=LIMIT) as ws:
                assert (ws.core.deflate is not None) == compress
                await ws.send_str("hello")
                assert await ws.receive_str() == "hello"
                await ws.send_bytes(b"\x00\x01\x02")
                assert await ws.receive_bytes() == b"\x00\x01\x02"
                await ws.send_bytes(MIB)
                assert await ws.receive_bytes() == MIB
                await ws.send_str(TEXT_MIB)
                assert await ws.receive_str() == TEXT_MIB
                await ws.ping(b"are you there")
                msg = await ws.receive()
                assert (msg.type, msg.data) == (WSMsgType.PONG, b"are you there")
                await ws.send_str("close:4001")
                msg = await ws.receive()
                assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4001, "requested")
                assert (await ws.receive()).type is WSMsgType.CLOSED
            assert ws.close_code == 4001
            # And a close that we start.
            async with mod.connect(url, compress=compress) as ws:
                await ws.send_str("bye")
                assert await ws.receive_str() == "bye"
                assert await ws.close(code=4002, message="ours") is True
            assert ws.closed  # (aiohttp answers any close with 1000; the others echo 4002)
    assert sorted(codes) == [4001, 4002]


# -- peer clients (run on the peer's loop) against our server --------------------------------------


async def websockets_client(url: str, compress: bool) -> list[object]:
    seen: list[object] = []
    compression = "deflate" if compress else None
    async with ws_connect(url, compression=compression, max_size=LIMIT) as ws:
        seen.append(ws.protocol.extensions != [])
        for message in ("hello", b"\x00\x01", MIB, TEXT_MIB):
            await ws.send(message)
            seen.append(await ws.recv() == message)
        await (await ws.ping(b"x"))
        await ws.send("close:4003")
        try:
            await ws.recv()
        except WsConnectionClosed as exc:
            assert exc.rcvd is not None
            seen.append(exc.rcvd.code)
    async with ws_connect(url, compression=compression) as ws:
        await ws.send("then")
        seen.append(await ws.recv())
        await ws.close(4004, "theirs")
    return seen


async def aiohttp_client(url: str, compress: bool) -> list[object]:
    seen: list[object] = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, compress=15 if compress else 0, max_msg_size=LIMIT) as ws:
            seen.append(ws.compress != 0)
            for message in ("hello", b"\x00\x01", MIB, TEXT_MIB):
                if isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_bytes(message)
                seen.append((await ws.receive()).data == message)
            await ws.send_str("close:4003")
            msg = await ws.receive()
            seen.append(msg.data if msg.type is aiohttp.WSMsgType.CLOSE else msg)
        async with session.ws_connect(url, compress=15 if compress else 0) as ws:
            await ws.send_str("then")
            seen.append((await ws.receive()).data)
            await ws.close(code=4004, message=b"theirs")
    return seen


async def trio_websocket_client(url: str, compress: bool) -> list[object]:
    seen: list[object] = [False]
    async with trio_websocket.open_websocket_url(url, max_message_size=LIMIT) as ws:
        for message in ("hello", b"\x00\x01", MIB, TEXT_MIB):
            await ws.send_message(message)
            seen.append(await ws.get_message() == message)
        await ws.ping(b"x")
        await ws.send_message("close:4003")
        try:
            await ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            seen.append(exc.reason.code if exc.reason is not None else None)
        # trio-websocket leaves its socket open when the server closes first (against its own
        # server too); close it here so the leak is not reported as ours.
        await ws._stream.aclose()
    async with trio_websocket.open_websocket_url(url) as ws:
        await ws.send_message("then")
        seen.append(await ws.get_message())
        await ws.aclose(4004, "theirs")
    return seen


PEER_CLIENTS: dict[str, Callable[[str, bool], Coroutine[Any, Any, list[object]]]] = {
    "websockets": websockets_client,
    "aiohttp": aiohttp_client,
    "trio-websocket": trio_websocket_client,
}


@pytest.mark.parametrize(("peer", "compress"), PEERS)
@pytest.mark.parametrize(("module", "anyio_backend"), OURS)
async def test_peer_client_with_our_server(
    module: str, anyio_backend: str, peer: str, compress: bool
) -> None:
    mod: Any = importlib.import_module(module)
    codes: list[int | None] = []

    async def handler(ws: Any) -> None:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT and msg.data.startswith("close:"):
                await ws.close(code=int(msg.data[6:]), message="requested")
            elif msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        codes.append(ws.close_code)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            server = await tg.start(
                partial(mod.serve, handler, "127.0.0.1", 0, compress=compress, max_msg_size=LIMIT)
            )
            async with PeerLoop.running("trio" if peer == "trio-websocket" else "asyncio") as loop:
                seen = await loop.call(PEER_CLIENTS[peer], f"ws://127.0.0.1:{server.port}/", compress)
            tg.cancel_scope.cancel()
    assert seen == [compress, True, True, True, True, 4003, "then"]
    # Our close_code is the code of the peer's answer: aiohttp answers any close with 1000.
    server_started = 1000 if peer == "aiohttp" else 4003
    assert sorted(c for c in codes if c is not None) == sorted([server_started, 4004])
