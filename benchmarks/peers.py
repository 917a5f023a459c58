"""The servers and clients the benchmarks run: wscore's adapters and their peers, over real sockets.

A server is an async context manager that listens on 127.0.0.1 (a free port) and yields its ws:// URL;
its handler echoes every message. A client is an async context manager given that URL, yielding
(send, receive) for binary messages. Compression is off everywhere; size limits are `MAX_SIZE`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import trio

MAX_SIZE = 4 * 1024 * 1024

Send = Callable[[bytes], Awaitable[None]]
Recv = Callable[[], Awaitable[bytes]]
# A client: an async context manager, given the server's URL, yielding (send, receive).
Client = Callable[[str], AbstractAsyncContextManager[tuple[Send, Recv]]]
# A server: an async context manager that listens on 127.0.0.1 and yields its ws:// URL.
Server = Callable[[], AbstractAsyncContextManager[str]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- servers -----------------------------------------------------------------------------------------


@asynccontextmanager
async def wscore_asyncio_server() -> AsyncIterator[str]:
    import wscore_asyncio

    async with wscore_asyncio.serve(
        wscore_asyncio.echo_handler, "127.0.0.1", 0, compress=False, max_msg_size=MAX_SIZE
    ) as server:
        yield f"ws://127.0.0.1:{server.port}/"


@asynccontextmanager
async def websockets_server() -> AsyncIterator[str]:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=MAX_SIZE) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def aiohttp_server() -> AsyncIterator[str]:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def picows_server() -> AsyncIterator[str]:
    import picows

    class Echo(picows.WSListener):  # type: ignore[misc,unused-ignore]  # Any when picows (bench extra) is absent
        # No back-pressure, like the simplest picows echo server (the default methods log a warning).
        def pause_writing(self) -> None:
            pass

        def resume_writing(self) -> None:
            pass

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type is picows.WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (picows.WSMsgType.BINARY, picows.WSMsgType.TEXT):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

    server = await picows.ws_create_server(lambda _: Echo(), "127.0.0.1", 0, max_frame_size=MAX_SIZE)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def wscore_trio_server() -> AsyncIterator[str]:
    import wscore_trio

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: wscore_trio.serve(
                wscore_trio.echo_handler,
                "127.0.0.1",
                0,
                compress=False,
                max_msg_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        try:
            yield f"ws://127.0.0.1:{server.port}/"
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def wscore_anyio_server() -> AsyncIterator[str]:
    import wscore_anyio

    async with anyio.create_task_group() as tg:
        server = await tg.start(
            lambda task_status: wscore_anyio.serve(
                wscore_anyio.echo_handler,
                "127.0.0.1",
                0,
                compress=False,
                max_msg_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        try:
            yield f"ws://127.0.0.1:{server.port}/"
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def trio_websocket_server() -> AsyncIterator[str]:
    import trio_websocket

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                handler, "127.0.0.1", 0, None, max_message_size=MAX_SIZE, task_status=task_status
            )
        )
        try:
            yield f"ws://127.0.0.1:{server.port}/"
        finally:
            nursery.cancel_scope.cancel()


def uvicorn_server(ws: Any) -> Server:
    """A Starlette echo endpoint under uvicorn with the given `ws` protocol (a class or a name)."""

    @asynccontextmanager
    async def run() -> AsyncIterator[str]:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import WebSocketRoute
        from starlette.websockets import WebSocket, WebSocketDisconnect

        async def echo(websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                while True:
                    await websocket.send_bytes(await websocket.receive_bytes())
            except WebSocketDisconnect:
                pass

        app = Starlette(routes=[WebSocketRoute("/", echo)])
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and accepted sockets inherit proto 0 from socket.socket(); Nagle would stall pipelining.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, ws=ws, lifespan="off", log_level="warning", ws_max_size=MAX_SIZE)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)  # uvicorn exposes no started event
            yield f"ws://127.0.0.1:{port}/"
        finally:
            server.should_exit = True
            await task
            sock.close()

    return run


# -- clients -----------------------------------------------------------------------------------------


@asynccontextmanager
async def wscore_asyncio_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import wscore_asyncio

    async with wscore_asyncio.connect(url, max_msg_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data: bytes = (await ws.receive()).data
            return data

        yield ws.send_bytes, recv


@asynccontextmanager
async def websockets_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            return await ws.recv(decode=False)

        yield ws.send, recv


@asynccontextmanager
async def aiohttp_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data: bytes = (await ws.receive()).data
            return data

        yield ws.send_bytes, recv


@asynccontextmanager
async def picows_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import picows

    # picows calls back per frame; a queue turns that into the awaitable receive the others have.
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(picows.WSListener):  # type: ignore[misc,unused-ignore]  # as above
        def pause_writing(self) -> None:
            pass

        def resume_writing(self) -> None:
            pass

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type is picows.WSMsgType.BINARY:
                queue.put_nowait(frame.get_payload_as_bytes())

    transport, _ = await picows.ws_connect(Client, url, max_frame_size=MAX_SIZE)
    binary = picows.WSMsgType.BINARY

    async def send(data: bytes) -> None:
        transport.send(binary, data)

    try:
        yield send, queue.get
    finally:
        transport.send_close(picows.WSCloseCode.OK)
        await transport.wait_disconnected()


@asynccontextmanager
async def stream_client(module: Any, url: str) -> AsyncIterator[tuple[Send, Recv]]:
    """wscore_trio's or wscore_anyio's client (the same driver)."""
    async with module.connect(url, max_msg_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data: bytes = (await ws.receive()).data
            return data

        yield ws.send_bytes, recv


def wscore_trio_client(url: str) -> AbstractAsyncContextManager[tuple[Send, Recv]]:
    import wscore_trio

    return stream_client(wscore_trio, url)


def wscore_anyio_client(url: str) -> AbstractAsyncContextManager[tuple[Send, Recv]]:
    import wscore_anyio

    return stream_client(wscore_anyio, url)


@asynccontextmanager
async def trio_websocket_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import trio_websocket

    async with trio_websocket.open_websocket_url(url, max_message_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data = await ws.get_message()
            assert isinstance(data, bytes)
            return data

        yield ws.send_message, recv
