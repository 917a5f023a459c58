"""`serve()`: the server side, one handler call per connection; `accept_socket()` for one socket."""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from _wscore_kit.connection import echo_handler
from _wscore_kit.options import ACCEPT_OPTIONS, AcceptKwargs, ServerKwargs, ServerOptions, with_options
from _wscore_kit.server import ConnectionLimit, answer_request, handler_close, logger
from _wscore_kit.tls_accept import TLSAcceptor, supported
from wscore import ServerConnection

from ._connection import WebSocket
from ._opener import Opener

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Server", "accept_socket", "echo", "echo_handler", "serve"]


Handler = Callable[[WebSocket], Awaitable[Any]]


async def _handshake(ws: WebSocket, options: ServerOptions, full: Callable[[], bool] | None = None) -> bool:
    """Answer the upgrade request that `ws` has received (the kit's `answer_request`) and write the
    answer. True once the connection is OPEN."""
    conn = ws.core
    assert isinstance(conn, ServerConnection)
    loop = asyncio.get_running_loop()
    if not await answer_request(conn, options, loop.time, full):
        ws._pump()  # the plain answer, refusal or 500, then the transport closes
        return False
    ws._accepted()
    return True


class Server:
    """A running WebSocket server (from `serve()`). `close()` closes every connection with 1001 and
    waits for the handlers (at most `shutdown_timeout`, then cancels them)."""

    def __init__(self, handler: Handler, options: ServerOptions) -> None:
        self._handler = handler
        self.options = options
        self._config = options.config
        self._limit = ConnectionLimit(options.max_connections)
        self._server: asyncio.Server | None = None
        self._tls: TLSAcceptor | None = None  # with ssl=: holds the connections in their TLS handshake
        self._connections: set[WebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def _make_protocol(self) -> WebSocket:
        options = self.options
        conn = ServerConnection(
            subprotocols=options.protocols,
            select_subprotocol=options.select_subprotocol,
            config=self._config,
            now=self._loop.time(),
        )
        ws = WebSocket(conn, loop=self._loop, **options.connection_args)
        ws._on_request = self._on_request
        ws._registry = self._connections
        return ws

    def _full(self) -> bool:
        return self._limit.full(len(self._tasks))  # each connection served has its task

    def _on_request(self, ws: WebSocket) -> None:
        if self._closing is not None:
            ws._abort()
            return
        task = self._loop.create_task(self._run(ws))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, ws: WebSocket) -> None:
        try:
            if not await _handshake(ws, self.options, self._full):
                await ws._wait_done()
                return
            error: Exception | None = None
            try:
                await self._handler(ws)
            except Exception as exc:
                error = exc
            code, reason = handler_close(error, ws.closed)
            await ws.close(code=code, message=reason)
        except asyncio.CancelledError:
            ws._abort()
            raise
        except Exception:
            logger.exception("error while closing a connection")
            ws._abort()

    @property
    def connections(self) -> set[WebSocket]:
        """The open (or opening) connections, e.g. for `broadcast()`."""
        return {ws for ws in self._connections if not ws._handshaking}

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The port of the first listening socket (handy with `port=0`)."""
        port: int = self.sockets[0].getsockname()[1]
        return port

    async def serve_forever(self) -> None:
        """Serve until cancelled, then shut down (as `close()`)."""
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.close())

    def close(self, code: int = 1001, reason: str = "") -> asyncio.Task[None]:
        """Stop accepting, close every connection with `code` (1001: going away) and wait for the
        handlers. Returns a task to await; calling it again returns the same task."""
        if self._closing is None:
            self._closing = self._loop.create_task(self._close(code, reason))
        return self._closing

    async def wait_closed(self) -> None:
        """Wait until `close()` has finished."""
        if self._closing is not None:
            await asyncio.shield(self._closing)

    async def _close(self, code: int, reason: str) -> None:
        if self._server is not None:
            self._server.close()
        if self._tls is not None:
            await self._tls.close()  # connections in their TLS handshake: aborted, not left to time out
        closes = []
        for ws in list(self._connections):
            if ws._handshaking:
                ws._abort()
            else:
                closes.append(self._loop.create_task(ws.close(code=code, message=reason)))
        tasks = set(self._tasks) | set(closes)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.options.shutdown_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for task in closes:
            if not task.cancelled() and task.exception() is not None:
                logger.error("closing a connection failed", exc_info=task.exception())
        for ws in list(self._connections):
            ws._abort()
        lost = [ws._lost for ws in list(self._connections)]
        if lost:
            await asyncio.wait(lost)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class serve(Opener[Server]):
    """Start a WebSocket server on `host`:`port`, calling `await handler(ws)` for each connection.

    The connection is closed (1000) when the handler returns, with 1011 if it raises; the server keeps
    serving. `async with serve(...) as server:` shuts it down on exit; `await serve(...)` returns the
    running `Server`.

    - `process_request(request)`: return None to upgrade, or `(status, headers, body)` to answer with
      plain HTTP (a page, a health check, a 403). May be sync or async.
    - `protocols`: the subprotocols we speak, in our order of preference; or `select_subprotocol(offered)`.
    - `compress`: accept permessage-deflate when offered (default True).
    - `ssl`: an `SSLContext` for wss://; `sock`: a listening socket to use instead of host/port.
    - `shutdown_timeout`: how long `close()` waits for handlers before cancelling them.
    - The other options are `connect()`'s.
    """

    @with_options(ServerOptions)
    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        **options: Unpack[ServerKwargs],
    ) -> None:
        self._handler = handler
        self._options = opts = ServerOptions.of(options)
        self._listen_args: dict[str, Any] = {
            "host": host,
            "port": port,
            "sock": opts.sock,
            "backlog": opts.backlog,
            "reuse_port": opts.reuse_port or None,
        }

    async def _open(self) -> Server:
        server = Server(self._handler, self._options)
        loop = asyncio.get_running_loop()
        opts = self._options
        factory: Callable[[], asyncio.BaseProtocol] = server._make_protocol
        listen_args = dict(self._listen_args)
        if opts.ssl is not None and supported(loop):
            # TLS through the kit's acceptor, not create_server(ssl=): a stopping server closes the
            # connections still in their handshake. The open timeout bounds that handshake.
            server._tls = TLSAcceptor(server._make_protocol, opts.ssl, opts.open_timeout)
            factory = server._tls.accept
        elif opts.ssl is not None:
            listen_args["ssl"] = opts.ssl
            if opts.open_timeout:  # it bounds the TLS handshake too (asyncio's default: 60 s)
                listen_args["ssl_handshake_timeout"] = opts.open_timeout
        server._server = await loop.create_server(factory, **listen_args)
        return server


@with_options(ServerOptions, only=ACCEPT_OPTIONS)
async def accept_socket(sock: socket.socket, **options: Unpack[AcceptKwargs]) -> WebSocket | None:
    """Do the server's handshake on a socket someone else accepted; the open `WebSocket`, or None
    when the request was answered with plain HTTP or refused (the socket is then closed). The options
    are `serve()`'s."""
    opts = ServerOptions.of(options, only=ACCEPT_OPTIONS)
    loop = asyncio.get_running_loop()
    conn = ServerConnection(
        subprotocols=opts.protocols,
        select_subprotocol=opts.select_subprotocol,
        config=opts.config,
        now=loop.time(),
    )
    ws = WebSocket(conn, loop=loop, **opts.connection_args)
    requested: asyncio.Future[None] = loop.create_future()

    def on_request(_: WebSocket) -> None:
        if not requested.done():
            requested.set_result(None)

    ws._on_request = on_request
    ws._lost.add_done_callback(lambda _: on_request(ws))
    try:
        await loop.connect_accepted_socket(lambda: ws, sock, ssl=opts.ssl)
        await requested
        if ws.request is not None and await _handshake(ws, opts):
            return ws
    except BaseException:
        ws._abort()
        await ws._wait_done()
        raise
    await ws._wait_done()
    return None


async def echo(
    host: str = "127.0.0.1",
    port: int = 9001,
    *,
    ssl: ssl_module.SSLContext | None = None,
    compress: bool = True,
    max_msg_size: int | None = 64 * 1024 * 1024,
    started: Callable[[Server], None] | None = None,
) -> None:
    """Run an echo server until cancelled (for `wscore echo`, Autobahn and benchmarks).

    Compression is accepted when offered and messages up to `max_msg_size` (Autobahn's 9.x cases send
    16 MiB) are echoed. `started(server)` is called once it listens.
    """
    async with serve(
        echo_handler, host, port, ssl=ssl, compress=compress, max_msg_size=max_msg_size
    ) as server:
        if started is not None:
            started(server)
        await asyncio.Event().wait()
