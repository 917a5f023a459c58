"""Writing to a connection the peer has reset (issue #13, item 5), on every adapter.

A server sending to a peer that reads nothing and then resets must not keep writing into the dead
transport: asyncio logs `socket.send() raised exception.` for every write after the fifth into a lost
transport, and the application's sends must raise `ConnectionClosed` instead.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import pytest

from wscore import ClientConnection, ConnectionClosed, State

from .conftest import Adapter

pytestmark = pytest.mark.anyio

CHUNK = b"x" * 16384
SENDS_AFTER_RESET = 20


async def send_after_reset(ws: Any) -> int:
    """1 if the send raised `ConnectionClosed`, 0 if it returned."""
    try:
        await ws.send_bytes(CHUNK)
    except ConnectionClosed:
        return 1
    return 0


async def test_sends_to_a_reset_peer_raise_and_write_nothing(
    adapter: Adapter, caplog: pytest.LogCaptureFixture
) -> None:
    """The server streams until its writer is behind (the peer reads nothing), the peer resets, and
    every send after that raises `ConnectionClosed`; the event loop logs no write into a lost transport."""
    caplog.set_level(logging.WARNING)
    behind = anyio.Event()
    ended = anyio.Event()
    raised: list[int] = []

    async def handler(ws: Any) -> None:
        try:
            while True:
                await ws.send_bytes(CHUNK)
                if ws.write_buffer_size() > 0:  # the kernel's buffers are full: we are behind
                    behind.set()
        except ConnectionClosed:
            raised.append(0)
        raised.extend([await send_after_reset(ws) for _ in range(SENDS_AFTER_RESET)])
        ended.set()

    with anyio.fail_after(20):
        async with adapter.run_server(handler, write_timeout=None) as url:
            port = urlsplit(url).port
            assert port is not None
            stream = await anyio.connect_tcp("127.0.0.1", port)
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            core = ClientConnection(f"127.0.0.1:{port}", "/")
            await stream.send(core.data_to_send())
            while core.state is State.CONNECTING:
                core.receive_data(await stream.receive(1024))
            await behind.wait()
            # SO_LINGER 0: close() sends an RST, what a crashed or killed peer looks like.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
            await ended.wait()
    assert raised == [0] + [1] * SENDS_AFTER_RESET
    logged = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert not logged, logged
