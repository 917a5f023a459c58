"""wscore for anyio: `connect()` and `serve()` with aiohttp's WebSocket API, on anyio's asyncio and trio
backends.

    async with wscore_anyio.connect("ws://127.0.0.1:8000/") as ws:
        await ws.send_str("hello")
        print(await ws.receive_str())

    server = await task_group.start(wscore_anyio.serve, handler, "127.0.0.1", 8000)

Each connection owns a task group (reader, writer, heartbeat timer) for as long as its `async with` or
handler runs; timeouts are `anyio.move_on_after`/`anyio.fail_after` around any call (the `timeout=`
arguments exist for parity with `wscore_asyncio`). The connection logic is `_wscore_kit.driver`'s, shared with
`wscore_trio`; this module supplies anyio's primitives, TCP/TLS and the listeners.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSListener, TLSStream

from _wscore_kit import public as _public
from _wscore_kit.api import DEFAULT_MAX_QUEUE, WSURL
from _wscore_kit.driver import (
    HIGH_WATER,
    EventLike,
    IOBackend,
    PushSource,
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

__all__ = [
    "WSServer",
    "WebSocket",
    "connect",
    "serve",
    "wrap_stream",
]
__all__ += _public.__all__

_EXTRA = {
    "peername": SocketAttribute.remote_address,
    "sockname": SocketAttribute.local_address,
    "socket": SocketAttribute.raw_socket,
    "ssl_object": TLSAttribute.ssl_object,
    "peercert": TLSAttribute.peer_certificate,
}

# Bytes an _AsyncioStream holds unread (before a connection is attached) before it pauses reading.
_BUFFER_LIMIT = 256 * 1024


class _AnyioIO(IOBackend):
    """anyio's primitives: any anyio byte stream, on either backend."""

    stream_errors = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)

    def event(self) -> EventLike:
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


class _FutureWaiter:
    """A one-shot event for one waiting task: a bare asyncio future (anyio's cancel scopes cancel
    the task awaiting it like any other await)."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        future = self._future
        return future.done() and not future.cancelled()

    def wait(self) -> asyncio.Future[None]:
        return self._future


class _AsyncioBackendIO(_AnyioIO):
    """On anyio's asyncio backend: connections made by this module run on asyncio's transports
    (`_AsyncioStream`), driven from the transport's callbacks; asyncio's own events and clock."""

    def event(self) -> EventLike:
        # What anyio.Event wraps on this backend; anyio's cancel scopes cancel its wait() alike.
        return asyncio.Event()

    def waiter(self) -> EventLike:
        return _FutureWaiter()

    def current_time(self) -> float:
        return asyncio.get_running_loop().time()

    def clock(self) -> Callable[[], float]:
        return asyncio.get_running_loop().time

    def push_source(self, stream: Any) -> PushSource | None:
        return stream if isinstance(stream, _AsyncioStream) else None

    def call_soon(self, fn: Callable[[], object]) -> None:
        asyncio.get_running_loop().call_soon(fn)


class _TrioBackendIO(_AnyioIO):
    """On anyio's trio backend: wscore_trio's fast paths for a plain socket stream (read and written
    with os.read/os.write from the socket anyio wraps) and its one-waiter event."""

    def waiter(self) -> EventLike:
        from wscore_trio.lowlevel import Waiter  # running on trio, so installed

        return Waiter()

    def clock(self) -> Callable[[], float]:
        import trio

        return trio.current_time

    def receiver(self, stream: Any) -> RecvSome | None:
        from wscore_trio.lowlevel import RAW_SOCKETS, socket_receiver

        if not isinstance(stream, anyio.abc.SocketStream) or not RAW_SOCKETS:
            return None
        return socket_receiver(stream.extra(SocketAttribute.raw_socket), anyio.ClosedResourceError)

    def try_writer(self, stream: Any) -> TryWrite | None:
        from wscore_trio.lowlevel import RAW_SOCKETS, socket_try_writer

        if not isinstance(stream, anyio.abc.SocketStream) or not RAW_SOCKETS:
            return None
        return socket_try_writer(stream.extra(SocketAttribute.raw_socket), anyio.ClosedResourceError)


_GENERIC_IO = _AnyioIO()
_ASYNCIO_IO = _AsyncioBackendIO()
_TRIO_IO = _TrioBackendIO()


def _nodelay(sock: Any) -> None:
    # asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP; socket.socket() and
    # socket.create_server() make proto-0 sockets, and Nagle would hold small frames back.
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _on_asyncio() -> bool:
    try:
        import sniffio
    except ImportError:  # trio requires sniffio: without it, this is asyncio
        return True
    return bool(sniffio.current_async_library() == "asyncio")


def _current_io() -> _AnyioIO:
    return _ASYNCIO_IO if _on_asyncio() else _TRIO_IO


class _AsyncioStream(anyio.abc.ByteStream, asyncio.Protocol):
    """A TCP (or TLS) connection on asyncio's transport and protocol, as an anyio byte stream.

    It is its own asyncio protocol. Until a connection is attached (`attach`, the driver's push mode)
    received bytes wait in a buffer for `receive()` (the opening handshake reads them so); after, each
    chunk goes straight to the connection's core, as in `wscore_asyncio`: no reader task, no
    pause/resume of reading per read.
    """

    def __init__(self, on_connect: Callable[[_AsyncioStream], None] | None = None) -> None:
        self._on_connect = on_connect
        self._transport: asyncio.Transport | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._read_paused = False
        self._eof = False
        self._lost = False
        self._exc: BaseException | None = None
        self._closed = False  # closed by us (aclose)
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._sink: StreamWebSocket | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=HIGH_WATER)
        _nodelay(transport.get_extra_info("socket"))
        if self._on_connect is not None:
            self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink._push_data(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > _BUFFER_LIMIT and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        if self._sink is not None:
            self._sink._push_eof()
        else:
            self._eof = True
            self._wake()
        # None: the transport closes itself; the core has what it needs.

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._exc = exc
        self._write_paused = False
        if self._sink is not None:
            self._sink._push_lost(exc)
        self._wake()
        for fut in (self._drain, self._lost_waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._sink is not None:
            self._sink._push_pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._sink is not None:
            self._sink._push_resume_writing()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- PushSource (_wscore_kit.driver) ----------------------------------------------------------------

    @property
    def transport(self) -> asyncio.Transport:
        """The asyncio transport."""
        assert self._transport is not None
        return self._transport

    def attach(self, ws: StreamWebSocket) -> None:
        """Hand every received byte to `ws` from now on, starting with the unread ones."""
        self._sink = ws
        # The transport looks data_received up per call: one frame less per read.
        self.data_received = ws._push_data  # type: ignore[method-assign]
        if self._read_paused:
            self._read_paused = False
            if not self._lost:
                self.transport.resume_reading()
        while self._buffer:
            ws._push_data(self._buffer.popleft())
        self._buffered = 0
        if self._write_paused:
            ws._push_pause_writing()
        if self._eof:
            ws._push_eof()
        if self._lost:
            ws._push_lost(self._exc)

    # -- anyio.abc.ByteStream ----------------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        buffer = self._buffer
        while not buffer:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._lost and self._exc is not None and not self._eof:
                raise anyio.BrokenResourceError from self._exc
            if self._eof or self._lost:
                raise anyio.EndOfStream
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunk = buffer.popleft()
        if len(chunk) > max_bytes:
            buffer.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._buffered -= len(chunk)
        if self._read_paused and self._buffered <= _BUFFER_LIMIT // 4 and not self._lost:
            self._read_paused = False
            self.transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._lost:
            raise anyio.BrokenResourceError from self._exc
        self.transport.write(item)
        while self._write_paused and not self._lost:
            drain = self._drain = asyncio.get_running_loop().create_future()
            await drain

    async def send_eof(self) -> None:
        if not self._lost:
            self.transport.write_eof()

    async def aclose(self) -> None:
        self._closed = True
        if self._lost or self._transport is None:
            return
        self._transport.close()
        try:
            if not self._lost:
                waiter = self._lost_waiter = asyncio.get_running_loop().create_future()
                await waiter
        except BaseException:
            self._transport.abort()  # cancelled (anyio.aclose_forcefully): drop it now
            raise

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        transport = self._transport
        if transport is None:
            return {}
        info = transport.get_extra_info
        attributes: dict[Any, Callable[[], Any]] = {
            SocketAttribute.raw_socket: lambda: info("socket"),
            SocketAttribute.local_address: lambda: info("sockname"),
            SocketAttribute.remote_address: lambda: info("peername"),
            SocketAttribute.local_port: lambda: info("sockname")[1],
        }
        ssl_object = info("ssl_object")
        if ssl_object is not None:
            attributes[TLSAttribute.ssl_object] = lambda: ssl_object
            attributes[TLSAttribute.peer_certificate] = ssl_object.getpeercert
        return attributes


class WebSocket(StreamWebSocket):
    """A WebSocket connection on anyio (see `_wscore_kit.driver.StreamWebSocket` for the methods)."""

    io = _GENERIC_IO


def _client_context(ssl: ssl_module.SSLContext | bool | None) -> ssl_module.SSLContext:
    if ssl is False:
        context = ssl_module.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
        return context
    if isinstance(ssl, ssl_module.SSLContext):
        return ssl
    return ssl_module.create_default_context()


async def _open_stream(options: ClientOptions, url: WSURL) -> anyio.abc.ByteStream:
    ssl, server_hostname, sock = options.ssl, options.server_hostname, options.sock
    context = _client_context(ssl) if url.secure else None
    hostname = server_hostname or url.host
    if _on_asyncio():
        loop = asyncio.get_running_loop()
        stream = _AsyncioStream()
        tls: dict[str, Any] = {} if context is None else {"ssl": context, "server_hostname": hostname}
        if sock is not None:
            await loop.create_connection(lambda: stream, sock=sock, **tls)
        else:
            await loop.create_connection(lambda: stream, url.host, url.port, happy_eyeballs_delay=0.25, **tls)
        return stream
    if sock is not None:
        _nodelay(sock)
        tcp: anyio.abc.ByteStream = await anyio.abc.SocketStream.from_socket(sock)
    else:
        tcp = await anyio.connect_tcp(url.host, url.port)
    if context is None:
        return tcp
    try:
        return await TLSStream.wrap(tcp, hostname=hostname, ssl_context=context, standard_compatible=False)
    except BaseException:
        await anyio.aclose_forcefully(tcp)
        raise


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
        _current_io(),
    )


class WSServer(StreamServer):
    """What `serve()` hands to `task_status.started()`: the listening sockets, the bound port, the open
    `connections` (for `broadcast`). Cancel `cancel_scope` (or the task group) to stop the server."""

    cancel_scope: anyio.CancelScope
    sockets: list[Any]
    """The listening sockets."""

    @property
    def port(self) -> int:
        """The bound TCP port (the one the OS chose when `port=0`)."""
        port: int = self.sockets[0].getsockname()[1]
        return port


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
    io = _current_io()
    server = WSServer(WebSocket, handler, opts, io)
    if sock is not None:
        sock.listen(backlog)
    if io is _ASYNCIO_IO:
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
    listener: anyio.abc.Listener[Any]
    if sock is not None:
        listener = await anyio.abc.SocketListener.from_socket(sock)
        server.sockets = [sock]
    else:
        multi = await anyio.create_tcp_listener(
            local_host=host, local_port=port or 0, backlog=backlog, reuse_port=opts.reuse_port
        )
        server.sockets = [item.extra(SocketAttribute.raw_socket) for item in multi.listeners]
        listener = multi
    if ssl is not None:
        listener = TLSListener(listener, ssl, standard_compatible=False)
    async with listener, anyio.create_task_group() as tg:
        server.cancel_scope = tg.cancel_scope
        tg.start_soon(server.shutdown_on_cancel)
        tg.start_soon(listener.serve, server.handle, tg)
        task_status.started(server)


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

    async with anyio.create_task_group() as tg:
        where: dict[str, Any] = {"sock": sock} if sock is not None else {"host": host, "port": port or 0}
        listening = await loop.create_server(
            lambda: _AsyncioStream(on_connect),
            ssl=ssl,
            backlog=backlog,
            reuse_port=reuse_port or None,
            **where,
        )
        try:
            server.sockets = list(listening.sockets)
            server.cancel_scope = tg.cancel_scope
            tg.start_soon(server.shutdown_on_cancel)
            task_status.started(server)
            while True:
                await wakeup.wait()
                wakeup.clear()
                while accepted:
                    tg.start_soon(server.handle, accepted.popleft())
        finally:
            listening.close()
            for stream in accepted:  # arrived as the server stopped: never handled
                stream.transport.abort()


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
    return _wrap_stream(
        WebSocket, stream, conn, max_queue=max_queue, receive_timeout=receive_timeout, io=_current_io()
    )
