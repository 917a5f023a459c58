"""wscore for trio: `connect()` and `serve()` with aiohttp's WebSocket API, in trio's idiom.

    async with wscore_trio.connect("ws://127.0.0.1:8000/") as ws:
        await ws.send_str("hello")
        print(await ws.receive_str())

    server = await nursery.start(wscore_trio.serve, handler, "127.0.0.1", 8000)

Each connection owns a nursery (reader, writer, heartbeat timer) for as long as its `async with` or
handler runs; timeouts are `trio.move_on_after`/`trio.fail_after` around any call (the `timeout=`
arguments exist for parity with `wscore_asyncio`). The connection logic is `_wscore_kit.driver`'s, shared with
`wscore_anyio`; this module supplies trio's primitives, TCP/TLS and the listeners.
"""

from __future__ import annotations

import math
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import trio

from _wscore_kit import public as _public
from _wscore_kit.api import DEFAULT_MAX_QUEUE, WSURL
from _wscore_kit.driver import (
    EventLike,
    IOBackend,
    RecvSome,
    ScopeLike,
    StreamServer,
    StreamWebSocket,
    TryWrite,
    check_listen_args,
    connect_stream,
)
from _wscore_kit.driver import wrap_stream as _wrap_stream
from _wscore_kit.options import ClientKwargs, ClientOptions, ServerKwargs, ServerOptions, with_options
from _wscore_kit.public import *  # noqa: F403  (the names every adapter re-exports)
from wscore import Connection

if TYPE_CHECKING:
    from typing_extensions import Unpack

from .lowlevel import RAW_SOCKETS, Waiter, socket_receiver, socket_try_writer

__all__ = [
    "WSServer",
    "WebSocket",
    "connect",
    "serve",
    "wrap_stream",
]
__all__ += _public.__all__


class _TrioIO(IOBackend):
    stream_errors = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

    def event(self) -> trio.Event:
        return trio.Event()

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> ScopeLike:
        return trio.CancelScope(deadline=deadline, shield=shield)

    def current_time(self) -> float:
        return trio.current_time()

    def clock(self) -> Callable[[], float]:
        return trio.current_time

    def task_group(self) -> AbstractAsyncContextManager[trio.Nursery]:
        return trio.open_nursery()

    def is_cancelled(self, exc: BaseException) -> bool:
        return isinstance(exc, trio.Cancelled)

    async def sleep_forever(self) -> None:
        await trio.sleep_forever()

    async def receive(self, stream: trio.abc.Stream) -> bytes | bytearray:
        return await stream.receive_some(65536)

    async def send(self, stream: trio.abc.Stream, data: bytes) -> None:
        await stream.send_all(data)

    async def aclose(self, stream: trio.abc.Stream) -> None:
        await trio.aclose_forcefully(stream)

    def waiter(self) -> EventLike:
        return Waiter()

    def receiver(self, stream: trio.abc.Stream) -> RecvSome | None:
        return (
            socket_receiver(stream.socket) if isinstance(stream, trio.SocketStream) and RAW_SOCKETS else None
        )

    def try_writer(self, stream: trio.abc.Stream) -> TryWrite | None:
        if isinstance(stream, trio.SocketStream) and RAW_SOCKETS:
            return socket_try_writer(stream.socket)
        return None

    def extra_info(self, stream: Any, name: str) -> Any:
        if isinstance(stream, trio.SSLStream):
            if name == "ssl_object":
                return stream._ssl_object  # trio has no public handle on the peer certificate
            if name == "peercert":
                return stream.getpeercert()
            stream = stream.transport_stream
        sock = getattr(stream, "socket", None)
        if sock is None:
            return None
        if name == "peername":
            return sock.getpeername()
        if name == "sockname":
            return sock.getsockname()
        if name == "socket":
            return sock
        return None


class WebSocket(StreamWebSocket):
    """A WebSocket connection on trio (see `_wscore_kit.driver.StreamWebSocket` for the methods)."""

    io = _TrioIO()


async def _open_stream(options: ClientOptions, url: WSURL) -> trio.abc.Stream:
    ssl, server_hostname, sock = options.ssl, options.server_hostname, options.sock
    if sock is not None:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    else:
        stream = await trio.open_tcp_stream(url.host, url.port)
    if not url.secure:
        return stream
    if ssl is False:
        context = ssl_module.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    elif isinstance(ssl, ssl_module.SSLContext):
        context = ssl
    else:
        context = ssl_module.create_default_context()
    tls = trio.SSLStream(stream, context, server_hostname=server_hostname or url.host, https_compatible=True)
    try:
        await tls.do_handshake()  # now, so that a certificate error is reported as itself
    except BaseException as exc:
        await trio.aclose_forcefully(tls)
        if isinstance(exc, trio.BrokenResourceError) and isinstance(exc.__cause__, ssl_module.SSLError):
            raise exc.__cause__ from None
        raise
    return tls


@with_options(ClientOptions)
def connect(url: str, **options: Unpack[ClientKwargs]) -> AbstractAsyncContextManager[WebSocket]:
    """Open a client connection to a ws:// or wss:// URL, as an async context manager.

    Options are `wscore_asyncio.connect`'s: `ssl` is an `SSLContext` (or False: no verification),
    `server_hostname` the name the certificate must match (default: the URL's host), `sock` an
    already connected socket to use instead of connecting (the URL still gives the Host header and
    TLS name). A refused upgrade raises `HandshakeError`; `open_timeout` bounds TCP, TLS and handshake
    (`WSTimeoutError`). Leaving the block closes the connection (1001 if cancelled).
    """
    return connect_stream(
        WebSocket,
        _open_stream,
        url,
        ClientOptions.of(options),
    )


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

    @property
    def port(self) -> int:
        """The bound TCP port (the one the OS chose when `port=0`)."""
        port: int = self.sockets[0].getsockname()[1]
        return port


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

    Cancelling the server closes every connection with 1001: a handler's `receive()` gets CLOSING,
    and handlers still running after `shutdown_timeout` are cancelled.

    - `process_request(request)`: return None to upgrade, or `(status, headers, body)` to answer with
      plain HTTP (a page, a health check, a 403). May be sync or async.
    - `protocols`: the subprotocols we speak, in our order of preference; or `select_subprotocol(offered)`.
    - `compress`: accept permessage-deflate when offered (default True).
    - `ssl`: an `SSLContext` for wss://; `sock`: a bound (listening) socket to use instead of
      host/port. The other options are `connect()`'s.
    """
    opts = ServerOptions.of(options)
    sock, ssl, backlog = opts.sock, opts.ssl, opts.backlog
    check_listen_args(host, port, sock)
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
        nursery.start_soon(server.shutdown_on_cancel)
        await nursery.start(trio.serve_listeners, server.handle, listeners)
        task_status.started(server)


def wrap_stream(
    stream: trio.abc.Stream,
    conn: Connection,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    receive_timeout: float | None = None,
) -> AbstractAsyncContextManager[WebSocket]:
    """Run a core connection whose handshake is done (`wscore.Connection(client=..., ...)` after
    another framework's upgrade, or an accepted `ServerConnection`) over an already connected
    stream, as an async context manager (the embedding path)."""
    return _wrap_stream(WebSocket, stream, conn, max_queue=max_queue, receive_timeout=receive_timeout)
