"""wscore_asyncio against the peers, on 127.0.0.1: our client with `websockets` and `aiohttp` servers,
their clients with our server. Text, binary, fragmented and 1 MiB messages, compression on and off,
pings, close codes in both directions.

Every peer server echoes, and answers the text "close:<code>" by closing with that code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection as WsServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

import wscore_asyncio
from wscore import WSMsgType

pytestmark = pytest.mark.anyio

MIB = bytes(range(256)) * 4096
TEXT_MIB = "ü" * (512 * 1024)  # 1 MiB of UTF-8
LIMIT = 4 * 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    """The peers are asyncio libraries."""
    return "asyncio"


# -- peer servers ---------------------------------------------------------------------------------

ServerFactory = Callable[[bool, list[int]], AbstractAsyncContextManager[str]]


@asynccontextmanager
async def websockets_server(compress: bool, close_codes: list[int]) -> AsyncIterator[str]:
    async def handler(ws: WsServerConnection) -> None:
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("close:"):
                    await ws.close(int(msg[6:]), "requested")
                    return
                await ws.send(msg)
        finally:
            if ws.close_code is not None:
                close_codes.append(ws.close_code)

    compression = "deflate" if compress else None
    async with ws_serve(handler, "127.0.0.1", 0, compression=compression, max_size=LIMIT) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def aiohttp_server(compress: bool, close_codes: list[int]) -> AsyncIterator[str]:
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
            close_codes.append(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


PEER_SERVERS: dict[str, ServerFactory] = {"websockets": websockets_server, "aiohttp": aiohttp_server}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("peer", list(PEER_SERVERS))
async def test_our_client_with_peer_server(peer: str, compress: bool) -> None:
    close_codes: list[int] = []
    async with PEER_SERVERS[peer](compress, close_codes) as url:
        async with wscore_asyncio.connect(url, compress=compress, autoping=False) as ws:
            assert (ws.core.deflate is not None) == compress
            await ws.send_str("hello")
            assert await ws.receive_str() == "hello"
            await ws.send_bytes(b"\x00\x01\x02")
            assert await ws.receive_bytes() == b"\x00\x01\x02"
            await ws.send_bytes(MIB)
            assert await ws.receive_bytes() == MIB
            await ws.send_str(TEXT_MIB)
            assert await ws.receive_str() == TEXT_MIB
            # A fragmented message, through the core's fragment API.
            ws.core.send_text("frag", fin=False)
            ws.core.send_text("ment", fin=False)
            ws.core.send_text("ed")
            ws._write_out()
            assert await ws.receive_str() == "fragmented"
            await ws.ping(b"are you there")
            msg = await ws.receive()
            assert (msg.type, msg.data) == (WSMsgType.PONG, b"are you there")
            await ws.send_str("close:4001")
            msg = await ws.receive()
            assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4001, "requested")
        assert ws.close_code == 4001
        async with wscore_asyncio.connect(url, compress=compress) as ws:
            await ws.send_str("x")
            assert await ws.receive_str() == "x"
            assert await ws.close(code=4002, message="from wscore") is True
            # The answer's code: websockets echoes ours, aiohttp answers 1000 (both allowed, §5.5.1).
            assert ws.close_code == (4002 if peer == "websockets" else 1000)
    assert close_codes == [4001, 4002]


# -- peer clients ---------------------------------------------------------------------------------


async def command_echo(ws: wscore_asyncio.WebSocket) -> None:
    """Our echo handler with the "close:<code>" command, recording the close code it ends with."""
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and msg.data.startswith("close:"):
            await ws.close(code=int(msg.data[6:]), message="requested")
        elif msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    CLOSE_CODES.append(ws.close_code)


CLOSE_CODES: list[int | None] = []


@asynccontextmanager
async def our_server(compress: bool) -> AsyncIterator[str]:
    CLOSE_CODES.clear()
    async with wscore_asyncio.serve(
        command_echo, "127.0.0.1", 0, compress=compress, max_msg_size=LIMIT
    ) as server:
        yield f"ws://127.0.0.1:{server.port}/"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
async def test_websockets_client_with_our_server(compress: bool) -> None:
    compression = "deflate" if compress else None
    async with our_server(compress) as url:
        async with ws_connect(url, compression=compression, max_size=LIMIT) as ws:
            assert bool(ws.response and ws.response.headers.get("Sec-WebSocket-Extensions")) == compress
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            await ws.send(MIB)
            assert await ws.recv() == MIB
            await ws.send(TEXT_MIB)
            assert await ws.recv() == TEXT_MIB
            await ws.send(["frag", "ment", "ed"])  # one message in three frames
            assert await ws.recv() == "fragmented"
            await ws.send([b"a", b"b"])
            assert await ws.recv() == b"ab"
            pong = await ws.ping(b"ping?")
            await pong
            await ws.send("close:4003")
            with pytest.raises(WsConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4003
            assert ws.close_reason == "requested"
        async with ws_connect(url, compression=compression) as ws:
            await ws.send("y")
            assert await ws.recv() == "y"
            await ws.close(4004, "from websockets")
    assert CLOSE_CODES == [4003, 4004]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
async def test_aiohttp_client_with_our_server(compress: bool) -> None:
    async with our_server(compress) as url, aiohttp.ClientSession() as session:
        ws_kw: dict[str, Any] = {"compress": 15 if compress else 0, "max_msg_size": LIMIT, "autoping": False}
        async with session.ws_connect(url, **ws_kw) as ws:
            assert (ws.compress != 0) == compress
            await ws.send_str("hello")
            assert await ws.receive_str() == "hello"
            await ws.send_bytes(b"\x00\x01")
            assert await ws.receive_bytes() == b"\x00\x01"
            await ws.send_bytes(MIB)
            assert await ws.receive_bytes() == MIB
            await ws.send_str(TEXT_MIB)
            assert await ws.receive_str() == TEXT_MIB
            await ws.ping(b"ping?")
            msg = await ws.receive()
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"ping?")
            await ws.send_str("close:4005")
            msg = await ws.receive()
            assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 4005, "requested")
        async with session.ws_connect(url, compress=15 if compress else 0) as ws:
            await ws.send_str("z")
            assert await ws.receive_str() == "z"
            await ws.close(code=4006, message=b"from aiohttp")
    # Our close (4005) was answered by aiohttp with 1000; then aiohttp's own close code.
    assert CLOSE_CODES == [1000, 4006]
