"""`serve()`: the server side, one handler call per connection; `accept_socket()` for one socket."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any

from _wscore_kit.api import DEFAULT_MAX_QUEUE, WSTimeout, check_http_response, echo_handler, make_config
from wscore import (
    ConnectionClosed,
    DeflateOptions,
    HandshakeError,
    Request,
    ServerConnection,
    State,
    WSConfig,
)

from ._connection import WebSocket

__all__ = ["Server", "accept_socket", "echo", "echo_handler", "serve"]

logger = logging.getLogger("wscore_asyncio")

Handler = Callable[[WebSocket], Awaitable[Any]]
ProcessRequest = Callable[[Request], Any]
"""`process_request(request)` -> None (upgrade) or `(status, headers, body)`; may be sync or async."""
SelectSubprotocol = Callable[[Sequence[str]], "str | None"]


async def _handshake(ws: WebSocket, process_request: ProcessRequest | None) -> bool:
    """Answer the upgrade request that `ws` has received: a plain response from `process_request`, a
    refusal (400/426) for an invalid upgrade, or the 101. True once the connection is OPEN."""
    conn = ws.core
    assert isinstance(conn, ServerConnection) and conn.request is not None
    loop = asyncio.get_running_loop()
    try:
        response = None
        if process_request is not None:
            response = process_request(conn.request)
            if inspect.isawaitable(response):
                response = await response
        if conn.state is not State.CONNECTING:
            return False  # the client went away (or the open timeout passed) meanwhile
        if response is not None:
            conn.respond(*check_http_response(response))
            ws._sync()
            return False
        conn.accept(now=loop.time())
    except HandshakeError:
        ws._sync()  # the core wrote the 400/426 and wants the transport closed
        return False
    except Exception:
        logger.exception("process_request or accept failed; answering 500")
        if conn.state is State.CONNECTING:
            conn.respond(500, [], b"Internal Server Error")
        ws._sync()
        return False
    ws._handshaking = False
    ws._resume_reading()
    ws._sync()  # the 101, then any frames that came right behind the request
    return True


class Server:
    """A running WebSocket server (from `serve()`). `close()` closes every connection with 1001 and
    waits for the handlers (at most `shutdown_timeout`, then cancels them)."""

    def __init__(
        self,
        handler: Handler,
        *,
        config: WSConfig,
        protocols: Sequence[str],
        select_subprotocol: SelectSubprotocol | None,
        process_request: ProcessRequest | None,
        max_queue: int,
        receive_timeout: float | None,
        shutdown_timeout: float,
    ) -> None:
        self._handler = handler
        self._config = config
        self._protocols = list(protocols)
        self._select_subprotocol = select_subprotocol
        self._process_request = process_request
        self._max_queue = max_queue
        self._receive_timeout = receive_timeout
        self._shutdown_timeout = shutdown_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[WebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def _make_protocol(self) -> WebSocket:
        conn = ServerConnection(
            subprotocols=self._protocols,
            select_subprotocol=self._select_subprotocol,
            config=self._config,
            now=self._loop.time(),
        )
        ws = WebSocket(
            conn, max_queue=self._max_queue, receive_timeout=self._receive_timeout, loop=self._loop
        )
        ws._on_request = self._on_request
        ws._registry = self._connections
        return ws

    def _on_request(self, ws: WebSocket) -> None:
        if self._closing is not None:
            ws._abort()
            return
        task = self._loop.create_task(self._run(ws))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, ws: WebSocket) -> None:
        try:
            if not await _handshake(ws, self._process_request):
                await ws._wait_lost()
                return
            try:
                await self._handler(ws)
            except ConnectionClosed:
                pass  # the peer went away while the handler was sending: not the handler's fault
            except Exception:
                logger.exception("connection handler failed; closing with 1011")
                await ws.close(code=1011, message="internal error")
            else:
                await ws.close()
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
        closes = []
        for ws in list(self._connections):
            if ws._handshaking:
                ws._abort()
            else:
                closes.append(self._loop.create_task(ws.close(code=code, message=reason)))
        tasks = set(self._tasks) | set(closes)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self._shutdown_timeout)
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


class serve:
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

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        protocols: Sequence[str] = (),
        select_subprotocol: SelectSubprotocol | None = None,
        process_request: ProcessRequest | None = None,
        timeout: WSTimeout | None = None,
        open_timeout: float | None = 10.0,
        heartbeat: float | None = None,
        pong_timeout: float | None = None,
        autoping: bool = True,
        autoclose: bool = True,
        compress: bool | int | DeflateOptions | None = True,
        max_msg_size: int | None = 4 * 1024 * 1024,
        max_queue: int = DEFAULT_MAX_QUEUE,
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        shutdown_timeout: float = 10.0,
        backlog: int = 100,
        reuse_port: bool | None = None,
    ) -> None:
        if isinstance(protocols, str):
            raise TypeError("protocols must be a sequence of str, not a str")
        timeout = timeout or WSTimeout()
        config = make_config(
            heartbeat=heartbeat,
            pong_timeout=pong_timeout,
            autoping=autoping,
            autoclose=autoclose,
            timeout=timeout,
            open_timeout=open_timeout,
            compress=compress,
            max_msg_size=max_msg_size,
        )
        self._handler = handler
        self._server_args: dict[str, Any] = {
            "config": config,
            "protocols": protocols,
            "select_subprotocol": select_subprotocol,
            "process_request": process_request,
            "max_queue": max_queue,
            "receive_timeout": timeout.receive,
            "shutdown_timeout": shutdown_timeout,
        }
        self._listen_args: dict[str, Any] = {
            "host": host,
            "port": port,
            "ssl": ssl,
            "sock": sock,
            "backlog": backlog,
            "reuse_port": reuse_port,
        }
        self._server: Server | None = None

    async def _start(self) -> Server:
        server = Server(self._handler, **self._server_args)
        loop = asyncio.get_running_loop()
        server._server = await loop.create_server(server._make_protocol, **self._listen_args)
        return server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        self._server = await self._start()
        return self._server

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        await self._server.close()


async def accept_socket(
    sock: socket.socket,
    *,
    protocols: Sequence[str] = (),
    select_subprotocol: SelectSubprotocol | None = None,
    process_request: ProcessRequest | None = None,
    ssl: ssl_module.SSLContext | None = None,
    timeout: WSTimeout | None = None,
    open_timeout: float | None = 10.0,
    heartbeat: float | None = None,
    pong_timeout: float | None = None,
    autoping: bool = True,
    autoclose: bool = True,
    compress: bool | int | DeflateOptions | None = True,
    max_msg_size: int | None = 4 * 1024 * 1024,
    max_queue: int = DEFAULT_MAX_QUEUE,
) -> WebSocket | None:
    """Do the server's handshake on a socket someone else accepted; the open `WebSocket`, or None
    when the request was answered with plain HTTP or refused (the socket is then closed)."""
    timeout = timeout or WSTimeout()
    config = make_config(
        heartbeat=heartbeat,
        pong_timeout=pong_timeout,
        autoping=autoping,
        autoclose=autoclose,
        timeout=timeout,
        open_timeout=open_timeout,
        compress=compress,
        max_msg_size=max_msg_size,
    )
    loop = asyncio.get_running_loop()
    conn = ServerConnection(
        subprotocols=protocols, select_subprotocol=select_subprotocol, config=config, now=loop.time()
    )
    ws = WebSocket(conn, max_queue=max_queue, receive_timeout=timeout.receive, loop=loop)
    requested: asyncio.Future[None] = loop.create_future()

    def on_request(_: WebSocket) -> None:
        if not requested.done():
            requested.set_result(None)

    ws._on_request = on_request
    ws._lost.add_done_callback(lambda _: on_request(ws))
    try:
        await loop.connect_accepted_socket(lambda: ws, sock, ssl=ssl)
        await requested
        if ws.request is not None and await _handshake(ws, process_request):
            return ws
    except BaseException:
        ws._abort()
        await ws._wait_lost()
        raise
    await ws._wait_lost()
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
