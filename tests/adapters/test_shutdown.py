"""Stopping a server, one test body on every adapter: connections still in their TLS handshake are
closed at once, not left to the open timeout (issue #13, item 4)."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import pytest

from .conftest import Adapter

pytestmark = pytest.mark.anyio

# A TLS record header (handshake, TLS 1.0 record version, 200 bytes) and the first bytes of a
# ClientHello (RFC 8446 §5.1, §4.1.2): the server's TLS layer waits for the rest.
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03"


async def _echo(ws: Any) -> None:
    async for msg in ws:
        await ws.send_str(msg.data)


async def _closed_by_server(stream: anyio.abc.ByteStream) -> None:
    """Read until the server closes (EOF) or resets the connection; whatever it sends is discarded
    (a TLS alert, say)."""
    try:
        while await stream.receive():
            pass
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        pass


async def test_stopping_closes_connections_in_their_tls_handshake(
    adapter: Adapter, tls_server: ssl.SSLContext, tls_client: ssl.SSLContext, request: pytest.FixtureRequest
) -> None:
    """Two clients open TCP to a wss:// server, one sending nothing, one half a ClientHello; the server
    stops. Both sockets see EOF or a reset within seconds, though the open timeout is 30 s."""
    if adapter.name == "asyncio-uvloop":
        # Known, not fixed: uvloop keeps create_server(ssl=...) (see _wscore_kit/tls_accept.py), whose
        # handshaking connections the server cannot reach. strict: this fails loudly once it passes.
        request.applymarker(pytest.mark.xfail(strict=True, reason="uvloop: TLS handshakes not closable"))
    # Leaving run_server included: a server that waits for the handshakes to time out fails here too.
    with anyio.fail_after(8):  # the open timeout is 30 s
        async with adapter.run_server(_echo, ssl=tls_server, open_timeout=30) as url:
            port = urlsplit(url).port
            assert port is not None
            silent = await anyio.connect_tcp("127.0.0.1", port)
            partial = await anyio.connect_tcp("127.0.0.1", port)
            await partial.send(PARTIAL_CLIENT_HELLO)
            # A full client connected after them: the server has accepted the two (accepts are in
            # order), so they are in its TLS handshake when it stops, not waiting in the backlog.
            async with adapter.connect(url, ssl=tls_client) as ws:
                await ws.send_str("after them")
                assert (await ws.receive()).data == "after them"
        async with silent, partial, anyio.create_task_group() as tg:
            tg.start_soon(_closed_by_server, silent)
            tg.start_soon(_closed_by_server, partial)
