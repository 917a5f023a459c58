"""wscore for anyio: `connect()` and `serve()` with aiohttp's WebSocket API, on anyio's asyncio and trio
backends.

    async with wscore_anyio.connect("ws://127.0.0.1:8000/") as ws:
        await ws.send_str("hello")
        print(await ws.receive_str())

    server = await task_group.start(wscore_anyio.serve, handler, "127.0.0.1", 8000)

Each connection has its tasks (reader, writer, heartbeat timer) for as long as its `async with` or handler
runs, a client's in a task group of its own, a server connection's in the server's; timeouts are
`anyio.move_on_after`/`anyio.fail_after` around any call (the `timeout=` arguments exist for parity with
`wscore_asyncio`). The connection logic is the shared kit's (`_wscore_kit`), as for every adapter; this
module holds anyio's TCP/TLS, listeners and primitives.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSStream

from _wscore_kit import public as _public
from _wscore_kit.api import WSURL, client_ssl_context
from _wscore_kit.driver import StreamWebSocket
from _wscore_kit.options import ClientOptions, ServerKwargs, ServerOptions, with_options
from _wscore_kit.proxy import (
    Proxy,
    asyncio_create_connection,
    http_connect,
    proxy_ssl_context,
    select_proxy,
    socks_connect,
)
from _wscore_kit.public import *  # noqa: F403  (the names every adapter re-exports)
from _wscore_kit.server import logger
from _wscore_kit.stream_client import stream_client
from _wscore_kit.stream_server import StreamServer, accept_forever, listen_options
from _wscore_kit.tls_accept import TLSAcceptor, supported

from ._asyncio_stream import _AsyncioStream, _nodelay
from ._backend import _GENERIC_IO, _AsyncioBackendIO, _current_io, _on_asyncio
from ._hub import Hub

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["WSServer", "WebSocket", "connect", "serve", "wrap_stream"]
__all__ += _public.__all__
__all__ += ["Hub"]


class WebSocket(StreamWebSocket):
    """A WebSocket connection on anyio (see `_wscore_kit.driver.StreamWebSocket` for the methods)."""

    __slots__ = ()

    io = _GENERIC_IO


async def _open_stream(options: ClientOptions, url: WSURL) -> anyio.abc.ByteStream:
    ssl, server_hostname, sock = options.ssl, options.server_hostname, options.sock
    context = client_ssl_context(ssl) if url.secure else None
    hostname = server_hostname or url.host
    proxy = None if sock is not None else select_proxy(options.proxy, url)
    if _on_asyncio():
        loop = asyncio.get_running_loop()
        stream = _AsyncioStream()
        tls: dict[str, Any] = {} if context is None else {"ssl": context, "server_hostname": hostname}
        if sock is not None:
            await loop.create_connection(lambda: stream, sock=sock, **tls)
        elif proxy is not None:
            proxy_ssl = proxy_ssl_context(proxy, ssl)
            await asyncio_create_connection(loop, lambda: stream, proxy, url, proxy_ssl=proxy_ssl, **tls)
        else:
            await loop.create_connection(lambda: stream, url.host, url.port, happy_eyeballs_delay=0.25, **tls)
        return stream
    if sock is not None:
        _nodelay(sock)
        tcp: anyio.abc.ByteStream = await anyio.abc.SocketStream.from_socket(sock)
    elif proxy is not None:
        tcp = await _tunnel(proxy, url, ssl)
    else:
        tcp = await anyio.connect_tcp(url.host, url.port)
    if context is None:
        return tcp
    try:
        return await TLSStream.wrap(tcp, hostname=hostname, ssl_context=context, standard_compatible=False)
    except BaseException:
        await anyio.aclose_forcefully(tcp)
        raise


async def _tunnel(proxy: Proxy, url: WSURL, ssl: ssl_module.SSLContext | bool | None) -> anyio.abc.ByteStream:
    """A stream to `url`'s host through `proxy` (the kit's CONNECT exchange, in TLS for an https://
    proxy, or python-socks)."""
    if proxy.is_socks:
        stream: anyio.abc.SocketStream = await socks_connect("anyio", proxy, url.host, url.port)
        return stream
    tcp: anyio.abc.ByteStream = await anyio.connect_tcp(proxy.host, proxy.port)
    try:
        context = proxy_ssl_context(proxy, ssl)
        if context is not None:
            tcp = await TLSStream.wrap(
                tcp, hostname=proxy.host, ssl_context=context, standard_compatible=False
            )

        async def receive() -> bytes:
            try:
                return await tcp.receive()
            except anyio.EndOfStream:
                return b""

        await http_connect(proxy, url.host, url.port, tcp.send, receive)
    except BaseException:
        await anyio.aclose_forcefully(tcp)
        raise
    return tcp


connect, wrap_stream = stream_client(WebSocket, _open_stream, _current_io)


class WSServer(StreamServer):
    """What `serve()` hands to `task_status.started()`: the listening sockets, the bound port, the open
    `connections` (for `broadcast`). Cancel `cancel_scope` (or the task group) to stop the server."""

    cancel_scope: anyio.CancelScope


@with_options(ServerOptions)
async def serve(
    handler: Callable[[WebSocket], Awaitable[Any]],
    host: str | None = None,
    port: int | None = None,
    *,
    task_status: anyio.abc.TaskStatus[WSServer] = anyio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerKwargs],
) -> None:
    """Serve WebSocket connections until cancelled: `await task_group.start(serve, handler, host, port)`
    returns a `WSServer`. `handler(ws)` runs in the server's task group; when it returns the connection
    is closed with 1000 (1011 if it raised; the error is logged).

    Cancelling the server closes every connection with 1001 (see `ServerOptions` for the options).
    """
    opts = listen_options(host, port, options)
    sock, ssl, backlog = opts.sock, opts.ssl, opts.backlog
    io = _current_io()
    server = WSServer(WebSocket, handler, opts, io)
    if sock is not None:
        sock.listen(backlog)
    if isinstance(io, _AsyncioBackendIO):
        await _serve_asyncio(
            server,
            host=host,
            port=port,
            sock=sock,
            ssl=ssl,
            backlog=backlog,
            reuse_port=opts.reuse_port,
            task_status=task_status,
        )
        return
    listeners: list[anyio.abc.SocketListener]
    if sock is not None:
        listeners = [await anyio.abc.SocketListener.from_socket(sock)]
    else:
        multi = await anyio.create_tcp_listener(
            local_host=host, local_port=port or 0, backlog=backlog, reuse_port=opts.reuse_port
        )
        listeners = [cast(anyio.abc.SocketListener, item) for item in multi.listeners]
    server._sockets = [item.extra(SocketAttribute.raw_socket) for item in listeners]
    handle = server.handle if ssl is None else partial(_tls_then_handle, server, ssl, opts.open_timeout)
    try:
        async with anyio.create_task_group() as tg:
            server.cancel_scope = tg.cancel_scope
            server._group = tg
            tg.start_soon(server.shutdown_on_cancel)
            for listener in listeners:
                tg.start_soon(accept_forever, io, listener, handle, tg)
            task_status.started(server)
    finally:  # each accept loop closes its listener as it ends; these close any loop that never began
        with anyio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()


async def _tls_then_handle(
    server: WSServer, ssl: ssl_module.SSLContext, timeout: float | None, stream: anyio.abc.ByteStream
) -> None:
    """The TLS handshake in the connection's own task, bounded by the open timeout (a client that
    opens TCP and sends nothing holds no slot for longer), then the WebSocket."""
    try:
        with anyio.fail_after(timeout or math.inf):
            tls = await TLSStream.wrap(stream, server_side=True, ssl_context=ssl, standard_compatible=False)
    except BaseException as exc:
        # A failed or timed-out handshake is that client's problem only; a cancelled one (the server
        # stops) closes the socket too, now, rather than when the stream is collected.
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)
        if not isinstance(exc, Exception):
            raise
        logger.debug("TLS handshake failed: %r", exc)
        return
    await server.handle(tls)


async def _serve_asyncio(
    server: WSServer,
    *,
    host: str | None,
    port: int | None,
    sock: socket.socket | None,
    ssl: ssl_module.SSLContext | None,
    backlog: int,
    reuse_port: bool,
    task_status: anyio.abc.TaskStatus[WSServer],
) -> None:
    """`serve()` on the asyncio backend: asyncio's server, each connection an `_AsyncioStream`
    whose handler runs in the server's task group."""
    loop = asyncio.get_running_loop()
    # Accepted in a protocol callback, where anyio (outside anyio.run) cannot tell which event loop
    # runs: a task of the group starts the handlers.
    accepted: deque[_AsyncioStream] = deque()
    wakeup = asyncio.Event()

    def on_connect(stream: _AsyncioStream) -> None:
        accepted.append(stream)
        wakeup.set()

    def make_stream() -> _AsyncioStream:
        return _AsyncioStream(on_connect)

    # TLS through the kit's acceptor, not create_server(ssl=): a stopping server closes the
    # connections still in their handshake. The open timeout bounds that handshake.
    timeout = server.options.open_timeout
    tls = None if ssl is None or not supported(loop) else TLSAcceptor(make_stream, ssl, timeout)
    native: dict[str, Any] = {}
    if ssl is not None and tls is None:  # uvloop: asyncio's TLS server (the timeout bounds it too)
        native = {"ssl": ssl, "ssl_handshake_timeout": timeout or None}
    async with anyio.create_task_group() as tg:
        where: dict[str, Any] = {"sock": sock} if sock is not None else {"host": host, "port": port or 0}
        listening = await loop.create_server(
            make_stream if tls is None else tls.accept,
            backlog=backlog,
            reuse_port=reuse_port or None,
            **where,
            **native,
        )
        try:
            server._sockets = list(listening.sockets)
            server.cancel_scope = tg.cancel_scope
            server._group = tg
            tg.start_soon(server.shutdown_on_cancel)
            task_status.started(server)
            while True:
                await wakeup.wait()
                wakeup.clear()
                while accepted:
                    tg.start_soon(server.handle, accepted.popleft())
        finally:
            listening.close()
            if tls is not None:
                with anyio.CancelScope(shield=True):
                    await tls.close()
            for stream in accepted:  # arrived as the server stopped: never handled
                stream.transport.abort()
