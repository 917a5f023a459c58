"""wscore on both ends: wscore_asyncio's client against uvicorn running WSCoreProtocol."""

from __future__ import annotations

import asyncio

import wscore_asyncio
from wscore import WSMsgType

from .test_uvicorn import Recorder, make_app, serving


def test_wscore_client_against_wscore_uvicorn() -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec)) as (url, server):
            async with wscore_asyncio.connect(url + "/echo", protocols=["chat"], compress=15) as ws:
                assert ws.protocol == "chat"
                assert ws.core.deflate is not None
                await ws.send_str("héllo")
                assert await ws.receive_str() == "héllo"
                await ws.send_bytes(b"\x00" * 100_000)
                assert await ws.receive_bytes() == b"\x00" * 100_000
                await ws.send_str("close:4003:bye")
                msg = await ws.receive()
                assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4003, "bye")
            async with wscore_asyncio.connect(url + "/hold") as ws:
                server.should_exit = True
                msg = await ws.receive()
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1012)
            await rec.disconnected.wait()
            assert rec.disconnects == [(1012, "")]

    asyncio.run(asyncio.wait_for(main(), 60))
