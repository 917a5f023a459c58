"""`sock=` on every adapter: a client over a socket that is already connected, a server on a socket
that is already bound and listening (with and without TLS), and asyncio's errors for a server given
both host/port and a socket, or neither."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest

import wscore_asyncio

from .conftest import Adapter, Handler

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serve_on(adapter: Adapter, handler: Handler, sock: socket.socket, **kw: Any) -> AsyncIterator[Any]:
    """The adapter's server on `sock`, stopped on exit: `async with` for wscore_asyncio, a task group
    and `task_status` for the structured adapters."""
    module = adapter.module
    if module is wscore_asyncio:
        async with wscore_asyncio.serve(handler, sock=sock, **kw) as server:
            yield server
        return
    async with anyio.create_task_group() as tg:
        server = await tg.start(partial(module.serve, handler, sock=sock, **kw))
        try:
            yield server
        finally:
            server.cancel_scope.cancel()


@pytest.fixture(params=[False, True], ids=["ws", "wss"])
def tls(request: pytest.FixtureRequest, tls_server: ssl.SSLContext, tls_client: ssl.SSLContext) -> Any:
    """None (plain TCP), or the (server, client) TLS contexts."""
    return (tls_server, tls_client) if request.param else None


async def test_client_over_a_connected_socket(adapter: Adapter, tls: Any) -> None:
    server_kw = {} if tls is None else {"ssl": tls[0]}
    client_kw = {} if tls is None else {"ssl": tls[1]}
    async with adapter.run_server(adapter.module.echo_handler, **server_kw) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            ours = sock.getsockname()
            async with adapter.connect(f"{url}/", sock=sock, **client_kw) as ws:
                # The connection runs over this very socket: the same local address.
                assert tuple(ws.get_extra_info("sockname")[:2]) == ours[:2]
                await ws.send_str("over my socket")
                assert await ws.receive_str() == "over my socket"
                if tls is not None:
                    assert ws.get_extra_info("ssl_object") is not None
            assert ws.close_code == 1000


async def test_server_on_a_listening_socket(adapter: Adapter, tls: Any) -> None:
    server_kw = {} if tls is None else {"ssl": tls[0]}
    client_kw = {} if tls is None else {"ssl": tls[1]}
    scheme = "ws" if tls is None else "wss"
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
        async with serve_on(adapter, adapter.module.echo_handler, sock, **server_kw) as server:
            assert server.port == port
            for text in ("one", "two"):  # two connections accepted from the one socket
                async with adapter.connect(f"{scheme}://127.0.0.1:{port}/", **client_kw) as ws:
                    await ws.send_str(text)
                    assert await ws.receive_str() == text
                assert ws.close_code == 1000


async def test_host_port_and_sock_together_are_refused(adapter: Adapter) -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        with pytest.raises(ValueError, match="host/port and sock can not be specified at the same time"):
            await adapter.module.serve(adapter.module.echo_handler, "127.0.0.1", 0, sock=sock)
        assert sock.fileno() >= 0  # refused before anything took the socket over


async def test_neither_host_port_nor_sock_is_refused(adapter: Adapter) -> None:
    with pytest.raises(ValueError, match="Neither host/port nor sock were specified"):
        await adapter.module.serve(adapter.module.echo_handler)
