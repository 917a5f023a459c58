"""wscore for anyio: `connect()` and `serve()` with aiohttp's WebSocket API, on anyio's asyncio and trio
backends.

    async with wscore_anyio.connect("ws://127.0.0.1:8000/") as ws:
        await ws.send_str("hello")
        print(await ws.receive_str())

    server = await task_group.start(wscore_anyio.serve, handler, "127.0.0.1", 8000)

Each connection owns a task group (reader, writer, heartbeat timer) for as long as its `async with` or
handler runs; timeouts are `anyio.move_on_after`/`anyio.fail_after` around any call (the `timeout=`
arguments exist for parity with `wscore_asyncio`). The connection logic is `wscore.driver`'s, shared with
`wscore_trio`; this module supplies anyio's primitives, TCP/TLS and the listeners.
"""

from __future__ import annotations

import math
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSListener, TLSStream

from wscore import (
    Connection,
    ConnectionClosed,
    DeflateOptions,
    HandshakeError,
    InvalidStateError,
    MessageTooBig,
    ProtocolError,
    Request,
    WSCloseCode,
    WSError,
    WSMessage,
    WSMessageTypeError,
    WSMsgType,
    WSTimeoutError,
)
from wscore.adapter import DEFAULT_MAX_QUEUE, WSURL, WSTimeout
from wscore.driver import (
    IOBackend,
    ProcessRequest,
    ScopeLike,
    StreamServer,
    StreamWebSocket,
    connect_stream,
    echo_handler,
)
from wscore.driver import broadcast as _broadcast
from wscore.driver import wrap_stream as _wrap_stream
from wscore.handshake import HeadersLike, SubprotocolSelector

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "ConnectionClosed",
    "DeflateOptions",
    "HandshakeError",
    "InvalidStateError",
    "MessageTooBig",
    "ProtocolError",
    "Request",
    "WSCloseCode",
    "WSError",
    "WSMessage",
    "WSMessageTypeError",
    "WSMsgType",
    "WSServer",
    "WSTimeout",
    "WSTimeoutError",
    "WebSocket",
    "broadcast",
    "connect",
    "echo_handler",
    "serve",
    "wrap_stream",
]

_EXTRA = {
    "peername": SocketAttribute.remote_address,
    "sockname": SocketAttribute.local_address,
    "socket": SocketAttribute.raw_socket,
    "ssl_object": TLSAttribute.ssl_object,
    "peercert": TLSAttribute.peer_certificate,
}


class _AnyioIO(IOBackend):
    stream_errors = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)

    def event(self) -> anyio.Event:
        return anyio.Event()

    def cancel_scope(self, *, deadline: float = math.inf, shield: bool = False) -> ScopeLike:
        return anyio.CancelScope(deadline=deadline, shield=shield)

    def current_time(self) -> float:
        return anyio.current_time()

    def task_group(self) -> AbstractAsyncContextManager[anyio.abc.TaskGroup]:
        return anyio.create_task_group()

    def is_cancelled(self, exc: BaseException) -> bool:
        return isinstance(exc, anyio.get_cancelled_exc_class())

    async def sleep_forever(self) -> None:
        await anyio.sleep_forever()

    async def receive(self, stream: anyio.abc.ByteStream) -> bytes:
        try:
            return await stream.receive(65536)
        except anyio.EndOfStream:
            return b""

    async def send(self, stream: anyio.abc.ByteStream, data: bytes) -> None:
        await stream.send(data)

    async def aclose(self, stream: anyio.abc.ByteStream) -> None:
        await anyio.aclose_forcefully(stream)

    def extra_info(self, stream: Any, name: str) -> Any:
        attribute = _EXTRA.get(name)
        return None if attribute is None else stream.extra(attribute, None)


class WebSocket(StreamWebSocket):
    """A WebSocket connection on anyio (see `wscore.driver.StreamWebSocket` for the methods)."""

    io = _AnyioIO()


async def _open_stream(
    ssl: ssl_module.SSLContext | bool | None, server_hostname: str | None, url: WSURL
) -> anyio.abc.ByteStream:
    stream = await anyio.connect_tcp(url.host, url.port)
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
    try:
        return await TLSStream.wrap(
            stream, hostname=server_hostname or url.host, ssl_context=context, standard_compatible=False
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


def connect(
    url: str,
    *,
    protocols: Sequence[str] = (),
    headers: HeadersLike | Mapping[str, str] | None = None,
    origin: str | None = None,
    timeout: WSTimeout | None = None,
    heartbeat: float | None = None,
    pong_timeout: float | None = None,
    autoping: bool = True,
    autoclose: bool = True,
    compress: bool | int | DeflateOptions | None = 0,
    max_msg_size: int | None = 4 * 1024 * 1024,
    max_frame_size: int | None = None,
    open_timeout: float | None = 10.0,
    max_queue: int = DEFAULT_MAX_QUEUE,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
) -> AbstractAsyncContextManager[WebSocket]:
    """Open a client connection to a ws:// or wss:// URL, as an async context manager.

    Options are `wscore_asyncio.connect`'s: `ssl` is an `SSLContext` (or False: no verification),
    `server_hostname` the name the certificate must match (default: the URL's host).
    A refused upgrade raises `HandshakeError`; `open_timeout` bounds TCP, TLS and handshake
    (`WSTimeoutError`). Leaving the block closes the connection (1001 if cancelled).
    """
    return connect_stream(
        WebSocket,
        partial(_open_stream, ssl, server_hostname),
        url,
        protocols=protocols,
        headers=headers,
        origin=origin,
        timeout=timeout,
        heartbeat=heartbeat,
        pong_timeout=pong_timeout,
        autoping=autoping,
        autoclose=autoclose,
        compress=compress,
        max_msg_size=max_msg_size,
        max_frame_size=max_frame_size,
        open_timeout=open_timeout,
        max_queue=max_queue,
    )


class WSServer(StreamServer):
    """What `serve()` hands to `task_status.started()`: the listener, the bound port, the open
    `connections` (for `broadcast`). Cancel `cancel_scope` (or the task group) to stop the server."""

    listener: anyio.abc.Listener[Any]
    cancel_scope: anyio.CancelScope
    _port: int

    @property
    def port(self) -> int:
        """The bound TCP port (the one the OS chose when `port=0`)."""
        return self._port


async def serve(
    handler: Callable[[WebSocket], Awaitable[Any]],
    host: str | None,
    port: int,
    *,
    protocols: Sequence[str] = (),
    select_subprotocol: SubprotocolSelector | None = None,
    process_request: ProcessRequest | None = None,
    extra_headers: HeadersLike = (),
    timeout: WSTimeout | None = None,
    heartbeat: float | None = None,
    pong_timeout: float | None = None,
    autoping: bool = True,
    autoclose: bool = True,
    compress: bool | int | DeflateOptions | None = True,
    max_msg_size: int | None = 4 * 1024 * 1024,
    max_frame_size: int | None = None,
    open_timeout: float | None = 10.0,
    max_queue: int = DEFAULT_MAX_QUEUE,
    shutdown_timeout: float = 10.0,
    ssl: ssl_module.SSLContext | None = None,
    backlog: int = 100,
    task_status: anyio.abc.TaskStatus[WSServer] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket connections until cancelled: `await task_group.start(serve, handler, host, port)`
    returns a `WSServer`. `handler(ws)` runs in the server's task group; when it returns the connection
    is closed with 1000 (1011 if it raised; the error is logged).

    Cancelling the server closes every connection with 1001: a handler's `receive()` gets CLOSING,
    and handlers still running after `shutdown_timeout` are cancelled.

    - `process_request(request)`: return None to upgrade, or `(status, headers, body)` to answer with
      plain HTTP (a page, a health check, a 403). May be sync or async.
    - `protocols`: the subprotocols we speak, in our order of preference; or `select_subprotocol(offered)`.
    - `compress`: accept permessage-deflate when offered (default True).
    - `ssl`: an `SSLContext` for wss://. The other options are `connect()`'s.
    """
    server = WSServer(
        WebSocket,
        handler,
        protocols=protocols,
        select_subprotocol=select_subprotocol,
        process_request=process_request,
        extra_headers=extra_headers,
        timeout=timeout,
        heartbeat=heartbeat,
        pong_timeout=pong_timeout,
        autoping=autoping,
        autoclose=autoclose,
        compress=compress,
        max_msg_size=max_msg_size,
        max_frame_size=max_frame_size,
        open_timeout=open_timeout,
        max_queue=max_queue,
        shutdown_timeout=shutdown_timeout,
    )
    tcp = await anyio.create_tcp_listener(local_host=host, local_port=port, backlog=backlog)
    server._port = tcp.extra(SocketAttribute.local_port)
    server.listener = tcp if ssl is None else TLSListener(tcp, ssl, standard_compatible=False)
    async with server.listener, anyio.create_task_group() as tg:
        server.cancel_scope = tg.cancel_scope
        tg.start_soon(server.shutdown_on_cancel)
        tg.start_soon(server.listener.serve, server.handle, tg)
        task_status.started(server)


def broadcast(
    connections: Iterable[WebSocket],
    message: str | bytes | bytearray | memoryview,
    *,
    limit: int | None = None,
) -> list[WebSocket]:
    """Send `message` to every open connection without waiting, the frame encoded once; returns the
    connections skipped (closed, or behind by more than `limit`/`wscore.driver.HIGH_WATER` bytes)."""
    return _broadcast(connections, message, limit=limit)


def wrap_stream(
    stream: anyio.abc.ByteStream,
    conn: Connection,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    receive_timeout: float | None = None,
) -> AbstractAsyncContextManager[WebSocket]:
    """Run a core connection whose handshake is done (`wscore.Connection(client=..., ...)` after
    another framework's upgrade, or an accepted `ServerConnection`) over an already connected
    stream, as an async context manager (the embedding path)."""
    return _wrap_stream(WebSocket, stream, conn, max_queue=max_queue, receive_timeout=receive_timeout)
