"""wscore_asyncio: WebSockets on asyncio (and uvloop) with aiohttp's WebSocket API, driven by wscore.

    async with wscore_asyncio.connect("ws://127.0.0.1:8765/") as ws:
        await ws.send_str("hello")
        msg = await ws.receive()

Everything an application needs is exported here: `connect`, `serve`, the `WebSocket` connection,
`broadcast`, the embedding helpers, and the core's message and error types.
"""

from __future__ import annotations

from _wscore_kit import public as _public
from _wscore_kit.public import *  # noqa: F403  (the names every adapter re-exports)

from ._client import client_ssl_context, connect
from ._connection import WebSocket, wrap_transport
from ._hub import Hub
from ._server import Server, accept_socket, echo, serve

__all__ = [
    "Server",
    "WebSocket",
    "accept_socket",
    "client_ssl_context",
    "connect",
    "echo",
    "serve",
    "wrap_transport",
]
__all__ += _public.__all__
__all__ += ["Hub"]
