"""The accepting side of the stream driver (`driver.py`): what trio's and anyio's `serve()` share."""

from __future__ import annotations

import errno
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from wscore import (
    HandshakeError,
    ServerConnection,
    WSTimeoutError,
)

from .backend import EventLike, IOBackend, ScopeLike
from .driver import StreamWebSocket
from .options import ServerOptions
from .server import ConnectionLimit, answer_request, logger

if TYPE_CHECKING:
    pass

__all__ = ["StreamServer", "accept_forever", "listen_options"]

# accept() errors that say "not now" (out of descriptors or memory): a server waits and goes on, as
# trio.serve_listeners does, instead of ending with every connection it serves.
_ACCEPT_RETRY = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
_ACCEPT_RETRY_DELAY = 0.1
# Given rather than derived: trio formats one name per task from the function otherwise (memory).
_HANDLER_TASK = "wscore handler"


class StreamServer:
    """The accepting side shared by the adapters' `serve()`: `handle(stream)` serves one accepted
    stream; `shutdown()` (run by `serve()` when it is cancelled) closes every connection with 1001.

    Handlers run shielded, each in its own cancel scope, so that a shutdown is graceful: the handlers'
    `receive()` gets CLOSING and they may finish within `shutdown_timeout`; the ones still running
    then are cancelled.
    """

    def __init__(
        self,
        ws_class: type[StreamWebSocket],
        handler: Callable[[Any], Awaitable[Any]],
        options: ServerOptions,
        io: IOBackend | None = None,
    ) -> None:
        self._ws_class = ws_class
        self._io = ws_class.io if io is None else io
        self._handler = handler
        self.options = options
        self._config = options.config
        self.shutdown_timeout = options.shutdown_timeout
        self._limit = ConnectionLimit(options.max_connections)
        self._tasks: dict[ScopeLike, StreamWebSocket | None] = {}
        self._idle: EventLike | None = None
        self._closing = False
        self._sockets: list[Any] = []
        # The server's task group, set by `serve()`: each connection's background tasks run there, not
        # in a task group of their own (memory per connection); None: one per connection.
        self._group: Any = None

    @property
    def sockets(self) -> list[Any]:
        """The listening sockets."""
        return self._sockets

    @property
    def port(self) -> int:
        """The bound TCP port (the one the OS chose when `port=0`)."""
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> set[Any]:
        """The open connections (handshake done), e.g. for `broadcast()`."""
        return {ws for ws in self._tasks.values() if ws is not None}

    async def handle(self, stream: Any) -> None:
        """Serve one accepted stream: the opening handshake (or `process_request`'s plain answer), then
        `handler(ws)`, then the close (1000; 1011 if the handler raised, which is logged). Never raises
        for a bad client."""
        io = self._io
        if self._closing:
            await io.aclose(stream)
            return
        with io.cancel_scope(shield=True) as scope:
            self._tasks[scope] = None
            try:
                # The handshake in a coroutine of its own, the handler in this one: one frame fewer
                # held while the connection lives (memory per connection).
                ws = await self._open(stream)
                if ws is not None:
                    self._tasks[scope] = ws
                    try:
                        async with ws.running(server=True, group=self._group):
                            await self._handler(ws)
                    except Exception:
                        pass  # logged by the close policy (handler_close), once
            except Exception:
                # Nothing one connection does may end the server's accept loop.
                logger.exception("serving a connection failed")
                with io.cancel_scope(shield=True):
                    await io.aclose(stream)
            finally:
                del self._tasks[scope]
                if not self._tasks and self._idle is not None:
                    self._idle.set()

    async def _open(self, stream: Any) -> StreamWebSocket | None:
        """The opening handshake: the connection, or None once a refusal (or `process_request`'s
        answer) is sent and the stream closed."""
        io = self._io
        config = self._config
        options = self.options
        conn = ServerConnection(
            subprotocols=options.protocols,
            select_subprotocol=options.select_subprotocol,
            config=config,
            now=io.current_time(),
        )
        try:
            opened = await _server_handshake(io, stream, conn, options, self._full)
        except (HandshakeError, WSTimeoutError) as exc:
            logger.debug("opening handshake failed: %s", exc)
            opened = False
        except BaseException:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
            raise
        if not opened or self._closing:
            # The core's answer (a refusal, process_request's response) goes out before the close.
            try:
                data = conn.data_to_send()
                if data and not self._closing:
                    with io.cancel_scope(deadline=_deadline(io, config.close_timeout or 10.0)):
                        await io.send(stream, data)
            except io.stream_errors:
                pass
            finally:
                with io.cancel_scope(shield=True):
                    await io.aclose(stream)
            return None
        return self._ws_class(stream, conn, io=io, **options.connection_args)

    def _full(self) -> bool:
        return self._limit.full(len(self._tasks))

    async def shutdown_on_cancel(self) -> None:
        """A task for the server's task group: when the server is cancelled, `shutdown()` (shielded)
        while the shielded handlers still run."""
        io = self._io
        try:
            await io.sleep_forever()
        finally:
            with io.cancel_scope(shield=True):
                await self.shutdown()

    async def shutdown(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every connection with `code`, wait up to `shutdown_timeout` for the handlers, then
        cancel the ones left (their connections are closed within the close timeout)."""
        io = self._io
        self._closing = True
        for scope, ws in list(self._tasks.items()):
            if ws is None:
                scope.cancel()  # still in the opening handshake: nothing to close gracefully
            else:
                ws._start_close(code, reason)
        if self._tasks:
            self._idle = io.event()
            with io.cancel_scope(deadline=_deadline(io, self.shutdown_timeout)):
                await self._idle.wait()
        for scope in list(self._tasks):
            scope.cancel()
        if self._tasks:
            self._idle = io.event()
            await self._idle.wait()


async def _server_handshake(
    io: IOBackend, stream: Any, conn: ServerConnection, options: ServerOptions, full: Callable[[], bool]
) -> bool:
    timeout = conn.config.open_timeout
    with io.cancel_scope(deadline=io.current_time() + timeout if timeout else math.inf) as scope:
        while conn.request is None:
            try:
                data = await io.receive(stream)
            except io.stream_errors:
                return False
            if not data:
                conn.receive_eof()
                return False
            conn.receive_data(data, io.current_time())
        if not await answer_request(conn, options, io.current_time, full):
            return False
        try:
            await io.send(stream, conn.data_to_send())
        except io.stream_errors:
            return False
    if scope.cancelled_caught:
        raise WSTimeoutError(f"opening handshake not finished within {timeout} s")
    return True


async def accept_forever(
    io: IOBackend, listener: Any, handle: Callable[[Any], Awaitable[None]], group: Any
) -> None:
    """Accept on a trio or anyio listener until cancelled, each stream handled by `handle(stream)` in a
    task of `group`, the handler's coroutine the task's own (no wrapper held per connection: memory).
    The listener is closed when the loop ends, at once: a server that stops frees its port while its
    connections still close (as trio.serve_listeners does)."""
    failing = False
    try:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY:
                    raise
                if not failing:  # once per burst
                    logger.error("accept() failed (%s); retrying every %s s", exc, _ACCEPT_RETRY_DELAY)
                failing = True
                with io.cancel_scope(deadline=io.current_time() + _ACCEPT_RETRY_DELAY):
                    await io.sleep_forever()
                continue
            failing = False
            group.start_soon(handle, stream, name=_HANDLER_TASK)
    finally:
        with io.cancel_scope(shield=True):
            await io.aclose(listener)


def listen_options(host: Any, port: Any, options: Mapping[str, Any]) -> ServerOptions:
    """`serve()`'s options, and its address checked: host/port or an already bound socket, not both,
    not neither (the `ValueError`s asyncio's `create_server` raises)."""
    opts = ServerOptions.of(options)
    if host is not None or port is not None:
        if opts.sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
    elif opts.sock is None:
        raise ValueError("Neither host/port nor sock were specified")
    return opts


def _deadline(io: IOBackend, timeout: float | None) -> float:
    return io.current_time() + timeout if timeout else math.inf
