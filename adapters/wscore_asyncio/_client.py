"""`connect()`: the client side (aiohttp's `ws_connect` arguments)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from _wscore_kit.api import client_ssl_context
from _wscore_kit.client import client_connection, prepare_client
from _wscore_kit.options import ClientKwargs, ClientOptions, with_options
from _wscore_kit.proxy import asyncio_create_connection, proxy_ssl_context, select_proxy
from _wscore_kit.reconnect import ClosingSession, Reconnecting
from _wscore_kit.redirect import follow_redirects
from wscore import WSTimeoutError

from ._connection import WebSocket
from ._opener import Opener

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["connect", "client_ssl_context"]


async def _open(url: str, options: ClientOptions) -> WebSocket:
    open_timeout = options.open_timeout
    loop = asyncio.get_running_loop()
    parsed, conn = client_connection(url, options, loop.time())
    ws = WebSocket(conn, loop=loop, **options.connection_args)
    ws._decode_text = options.decode_text
    context = client_ssl_context(options.ssl) if parsed.secure else None
    kwargs: dict[str, Any] = {"ssl": context}
    if context is not None:
        server_hostname = options.server_hostname
        kwargs["server_hostname"] = server_hostname if server_hostname is not None else parsed.host
    proxy = None if options.sock is not None else select_proxy(options.proxy, parsed)
    if options.sock is not None:
        kwargs["sock"] = options.sock
        connecting = loop.create_connection(lambda: ws, **kwargs)
    elif proxy is not None:
        proxy_ssl = proxy_ssl_context(proxy, options.ssl)
        connecting = asyncio_create_connection(loop, lambda: ws, proxy, parsed, proxy_ssl=proxy_ssl, **kwargs)
    else:
        connecting = loop.create_connection(lambda: ws, parsed.host, parsed.port, **kwargs)
    try:
        # The core bounds the handshake; TCP (and TLS) connect needs its own bound.
        await asyncio.wait_for(connecting, open_timeout)
    except asyncio.TimeoutError:
        raise WSTimeoutError(f"TCP/TLS connect not finished within {open_timeout} s") from None
    assert ws._opened is not None
    try:
        await ws._opened
    except BaseException:
        ws._abort()
        await ws._wait_done()
        raise
    return ws


class connect(Opener[WebSocket]):
    """Open a client connection to a ws:// or wss:// URL.

    `await connect(url)` returns a `WebSocket`; `async with connect(url) as ws:` also closes it on exit.
    A refused upgrade raises `HandshakeError` (with `status`, `headers`, `body`); the handshake and TCP
    connect are bounded by `open_timeout` (`WSTimeoutError`). Redirects are followed (`max_redirects`);
    `async for ws in connect(url):` gives a fresh connection after each drop (`max_attempts`,
    `reconnect_delays`; see `_wscore_kit.reconnect`).

    - `protocols`: subprotocols to offer; `headers`: extra request headers; `origin`: the Origin header.
    - `timeout=WSTimeout(receive=, close=)`: the default bound of each `receive()`, and of the close.
    - `heartbeat`: ping after that many idle seconds; no pong within `pong_timeout` (default half of
      it) drops the connection. `autoping`, `autoclose`: as in aiohttp.
    - `compress`: offer permessage-deflate (True/15, a window size 9-14, or `DeflateOptions`).
    - `max_msg_size`: largest message accepted (0: no limit); `max_queue`: received messages held
      before reading from the socket pauses.
    - `ssl`: an `SSLContext`, True (default verification) or False (none); `sock`: an already
      connected socket to use instead of connecting.
    - aiohttp's `receive_timeout`, a number as `timeout`, `auth`, `params`, `method`,
      `client_notakeover`, `decode_text`: see `ClientOptions`.
    """

    @with_options(ClientOptions)
    def __init__(self, url: str, **options: Unpack[ClientKwargs]) -> None:
        self._url, self._options = prepare_client(url, ClientOptions.of(options))

    async def _open(self) -> WebSocket:
        return await follow_redirects(_open, self._url, self._options)

    def __aiter__(self) -> Reconnecting[WebSocket]:
        """`async for ws in connect(url)`: a fresh connection after each drop (`_wscore_kit.reconnect`)."""

        async def open_session() -> ClosingSession[WebSocket]:
            return ClosingSession(await self._open())

        return Reconnecting(open_session, asyncio.sleep, self._options)
