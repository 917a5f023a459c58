"""wscore for trio: `connect()` and `serve()` with aiohttp's WebSocket API, in trio's idiom.

    async with wscore_trio.connect("ws://127.0.0.1:8000/") as ws:
        await ws.send_str("hello")
        print(await ws.receive_str())

    server = await nursery.start(wscore_trio.serve, handler, "127.0.0.1", 8000)

Each connection has its tasks (reader, writer, heartbeat timer) for as long as its `async with` or handler
runs, a client's in a nursery of its own, a server connection's in the server's; timeouts are
`trio.move_on_after`/`trio.fail_after` around any call (the `timeout=` arguments exist for parity with
`wscore_asyncio`). The connection logic is the shared kit's (`_wscore_kit`), as for every adapter; this
module holds trio's TCP/TLS, listeners and primitives.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from _wscore_kit import public as _public
from _wscore_kit.api import WSURL, client_ssl_context
from _wscore_kit.driver import StreamWebSocket
from _wscore_kit.options import ClientOptions, ServerKwargs, ServerOptions, with_options
from _wscore_kit.proxy import Proxy, http_connect, proxy_ssl_context, select_proxy, socks_connect
from _wscore_kit.public import *  # noqa: F403  (the names every adapter re-exports)
from _wscore_kit.stream_client import stream_client
from _wscore_kit.stream_server import StreamServer, accept_forever, listen_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ._backend import _TrioIO
from ._hub import Hub

__all__ = ["WSServer", "WebSocket", "connect", "serve", "wrap_stream"]
__all__ += _public.__all__
__all__ += ["Hub"]


class WebSocket(StreamWebSocket):
    """A WebSocket connection on trio (see `_wscore_kit.driver.StreamWebSocket` for the methods)."""

    __slots__ = ()

    io = _TrioIO()


async def _open_stream(options: ClientOptions, url: WSURL) -> trio.abc.Stream:
    ssl, server_hostname, sock = options.ssl, options.server_hostname, options.sock
    proxy = None if sock is not None else select_proxy(options.proxy, url)
    stream: trio.abc.Stream
    if sock is not None:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    elif proxy is not None:
        stream = await _tunnel(proxy, url, ssl)
    else:
        stream = await trio.open_tcp_stream(url.host, url.port)
    if not url.secure:
        return stream
    context = client_ssl_context(ssl)
    tls = trio.SSLStream(stream, context, server_hostname=server_hostname or url.host, https_compatible=True)
    try:
        await tls.do_handshake()  # now, so that a certificate error is reported as itself
    except BaseException as exc:
        await trio.aclose_forcefully(tls)
        if isinstance(exc, trio.BrokenResourceError) and isinstance(exc.__cause__, ssl_module.SSLError):
            raise exc.__cause__ from None
        raise
    return tls


async def _tunnel(proxy: Proxy, url: WSURL, ssl: ssl_module.SSLContext | bool | None) -> trio.abc.Stream:
    """A stream to `url`'s host through `proxy` (the kit's CONNECT exchange, in TLS for an https://
    proxy, or python-socks)."""
    if proxy.is_socks:
        return trio.SocketStream(await socks_connect("trio", proxy, url.host, url.port))
    stream: trio.abc.Stream = await trio.open_tcp_stream(proxy.host, proxy.port)
    try:
        context = proxy_ssl_context(proxy, ssl)
        if context is not None:
            stream = trio.SSLStream(stream, context, server_hostname=proxy.host, https_compatible=True)
            try:
                await stream.do_handshake()  # now, so that a certificate error is reported as itself
            except trio.BrokenResourceError as exc:
                if isinstance(exc.__cause__, ssl_module.SSLError):
                    raise exc.__cause__ from None
                raise
        await http_connect(proxy, url.host, url.port, stream.send_all, stream.receive_some)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


connect, wrap_stream = stream_client(WebSocket, _open_stream)


class WSServer(StreamServer):
    """What `serve()` hands to `task_status.started()`: the listeners, the bound port, the open
    `connections` (for `broadcast`). Cancel `cancel_scope` (or the nursery) to stop the server."""

    listeners: list[trio.abc.Listener[Any]]
    cancel_scope: trio.CancelScope

    @property
    def sockets(self) -> list[Any]:
        """The listening sockets."""
        result = []
        for listener in self.listeners:
            inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
            if isinstance(inner, trio.SocketListener):
                result.append(inner.socket)
        return result


async def _tcp_listeners(
    host: str | None, port: int, backlog: int, reuse_port: bool
) -> list[trio.abc.Listener[Any]]:
    """trio's `open_tcp_listeners`, or with SO_REUSEPORT (several processes accept on one port) the
    same binding done here, since trio's has no such option."""
    if not reuse_port:
        return list(await trio.open_tcp_listeners(port, host=host, backlog=backlog))
    if not hasattr(trio.socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port is not supported on this platform (no SO_REUSEPORT)")
    infos = await trio.socket.getaddrinfo(
        host, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    listeners: list[trio.abc.Listener[Any]] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = trio.socket.socket(family, kind, proto)
            try:
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
                if family == trio.socket.AF_INET6:
                    sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen(backlog)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return listeners


@with_options(ServerOptions)
async def serve(
    handler: Callable[[WebSocket], Awaitable[Any]],
    host: str | None = None,
    port: int | None = None,
    *,
    task_status: trio.TaskStatus[WSServer] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerKwargs],
) -> None:
    """Serve WebSocket connections until cancelled: `await nursery.start(serve, handler, host, port)`
    returns a `WSServer`. `handler(ws)` runs in the server's nursery; when it returns the connection is
    closed with 1000 (1011 if it raised; the error is logged).

    Cancelling the server closes every connection with 1001 (see `ServerOptions` for the options).
    """
    opts = listen_options(host, port, options)
    sock, ssl, backlog = opts.sock, opts.ssl, opts.backlog
    server = WSServer(WebSocket, handler, opts)
    listeners: list[trio.abc.Listener[Any]]
    if sock is not None:
        sock.listen(backlog)
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    else:
        listeners = await _tcp_listeners(host, port or 0, backlog, opts.reuse_port)
    if ssl is not None:
        listeners = [trio.SSLListener(listener, ssl, https_compatible=True) for listener in listeners]
    server.listeners = listeners
    async with trio.open_nursery() as nursery:
        server.cancel_scope = nursery.cancel_scope
        server._group = nursery
        nursery.start_soon(server.shutdown_on_cancel)
        for listener in listeners:  # each closed when its loop ends
            nursery.start_soon(accept_forever, server._io, listener, server.handle, nursery)
        task_status.started(server)
