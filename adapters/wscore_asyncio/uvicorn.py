"""A uvicorn WebSocket protocol on the wscore core, so Starlette and FastAPI endpoints run on wscore.

    uvicorn app:app --ws wscore_asyncio.uvicorn:WSCoreProtocol
    uvicorn.run(app, ws=WSCoreProtocol)  # or Config(app, ws=WSCoreProtocol)

uvicorn's HTTP protocol hands the upgrade over by calling `connection_made(transport)` and then
`data_received(request_bytes)`. From there this is `wscore_asyncio.WebSocket` (the same connection,
pump, timer and back-pressure as every adapter's, from the shared kit) with the ASGI websocket scope and
messages on top (and the `websocket.http.response` denial extension), and uvicorn's settings:
`ws_max_size` (close 1009), `ws_max_queue` (reading pauses while that many messages wait for the app,
and resumes at a quarter of it), `ws_ping_interval`/`ws_ping_timeout` (the core's heartbeat),
`ws_per_message_deflate`, `root_path` and the server's default headers (Server, Date), and
`h11_max_incomplete_event_size` (the bound on the request head).

uvicorn has no setting for the close timeout: its own protocols hard-code 10 s
(`self.close_timeout = 10.0` in `websockets_sansio_impl.py` and `wsproto_impl.py`; `websockets_impl.py`
takes the websockets library's default, also 10 s). Here it is the class attribute `close_timeout`
(same name, same 10 s), which a subclass changes: `class P(WSCoreProtocol): close_timeout = 3.0`, then
`--ws mymodule:P`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from wscore import (
    ConnectionClosed,
    DeflateOptions,
    HandshakeError,
    ServerConnection,
    State,
    WSConfig,
    WSMessage,
    WSMsgType,
    WSTimeoutError,
)
from wscore.frames import OP_CLOSE, build_close_payload, encode_frame
from wscore.handshake import Request, check_request

from ._connection import WebSocket

__all__ = ["WSCoreProtocol"]

Message = dict[str, Any]

# uvicorn's built-in protocols offer these deflate parameters: smaller windows, less memory per socket.
_DEFLATE = DeflateOptions(server_max_window_bits=12, client_max_window_bits=12, mem_level=5)
# h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE: what uvicorn's h11 HTTP protocol allows a request head when
# `h11_max_incomplete_event_size` is None (uvicorn/protocols/http/h11_impl.py, `h11.Connection(...)`).
_H11_DEFAULT_HEAD = 16 * 1024
# websockets' MAX_LINE_LENGTH (websockets/http11.py): the longest request or header line, CRLF
# included, that uvicorn's websockets-sansio protocol parses; longer is 414 (request line) or 431
# (header line) there (websockets/server.py, ServerProtocol.parse).
_MAX_LINE = 8192
_OPEN = State.OPEN
_CLOSED = State.CLOSED
_KEEPALIVE_CLOSE = encode_frame(OP_CLOSE, build_close_payload(1011, "keepalive ping timeout"))


class WSCoreProtocol(WebSocket, asyncio.Protocol):
    """One WebSocket connection handed over by uvicorn's HTTP protocol, run by the wscore core.

    An `asyncio.Protocol` for uvicorn's type, and a `BufferedProtocol` (the connection class's fast
    path) for the transport, which prefers that once uvicorn hands it over.
    """

    close_timeout: float | None = 10.0
    """Seconds to wait for the peer's close frame after ours; uvicorn's protocols: a fixed 10 s."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app: Callable[..., Any] = cast(Callable[..., Any], config.loaded_app)
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path: str = config.root_path
        self.app_state = app_state
        self.connections: set[Any] = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        interval = config.ws_ping_interval or None
        conn = ServerConnection(
            config=WSConfig(
                heartbeat=interval,
                # uvicorn's "no pong timeout" has no equivalent in the core: the interval bounds it.
                pong_timeout=(config.ws_ping_timeout or interval) if interval else None,
                close_timeout=self.close_timeout,
                open_timeout=None,  # the app decides how long the handshake takes, as in uvicorn
                # The head uvicorn's h11 HTTP protocol let through is within this already; the same
                # bound here, for a head that came through httptools (which sets none).
                max_handshake_size=max(1024, config.h11_max_incomplete_event_size or _H11_DEFAULT_HEAD),
                max_message_size=config.ws_max_size or None,
                compress=_DEFLATE if config.ws_per_message_deflate else None,
            )
        )
        super().__init__(conn, max_queue=max(1, config.ws_max_queue), loop=_loop or asyncio.get_event_loop())
        self._on_request = WSCoreProtocol._request_arrived  # type: ignore[assignment]
        # Joined in connection_made, left in connection_lost.
        self._registry = cast("set[WebSocket]", self.connections)
        self.scope: dict[str, Any] = {}
        self.handshake_complete = False  # accepted, refused, or answered with plain HTTP
        self.app_closed = False  # the app sent websocket.close (or a denial response)
        self._connect_pending = True  # "websocket.connect" not yet received by the app
        self._disconnect: Message | None = None  # the app's last message, once decided
        self.response_start: Message | None = None
        self.response_body: list[bytes] = []

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register with the server, as uvicorn's own protocols do."""
        super().connection_made(transport)
        self.scope = {
            "server": get_local_addr(cast(asyncio.Transport, transport)),
            "client": get_remote_addr(cast(asyncio.Transport, transport)),
            "scheme": "wss" if is_ssl(cast(asyncio.Transport, transport)) else "ws",
        }
        self._trace("%sWebSocket connection made")

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone: the app's next receive is the disconnect."""
        super().connection_lost(exc)
        self.handshake_complete = True
        self._trace("%sWebSocket connection lost")

    def _deliver(self, events: list[WSMessage]) -> None:
        conn = self._conn
        if conn.state is _CLOSED and not conn.close_sent:
            for event in events:
                if event.type is WSMsgType.ERROR and isinstance(event.data, WSTimeoutError):
                    # A missed pong: the core drops the peer without a close frame; tell the peer why,
                    # as uvicorn's protocols do, in case it is only slow.
                    self._trace("%sWebSocket keepalive ping timeout")
                    self._write(_KEEPALIVE_CLOSE)
        super()._deliver(events)

    @property
    def conn(self) -> ServerConnection:
        """The core connection."""
        return cast(ServerConnection, self._conn)

    # -- uvicorn's lifecycle -------------------------------------------------------------------

    def shutdown(self) -> None:
        """Server shutdown: close open connections with 1012, refuse pending handshakes with 500."""
        state = self.conn.state
        if state is State.OPEN:
            # Unlike uvicorn's protocols, which drop TCP at once, wait (within the close timeout)
            # for the peer's close frame: a clean close handshake, as RFC 6455 §7.1.1 wants.
            self._set_disconnect(1012)
            self._start_close(1012, "")
        elif state is State.CONNECTING:
            self._send_500()  # before the app answered the handshake (then the transport closes)
        else:
            self._abort()  # already closing: do not wait any longer

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        """Drop the finished app task from the server's set."""
        self.tasks.discard(task)

    # -- the handshake -------------------------------------------------------------------------

    def _request_arrived(self) -> None:
        request = self.conn.request
        assert request is not None
        try:
            check_request(request)
            _check_line_lengths(request)
        except HandshakeError as exc:
            self.logger.info('%s - "WebSocket %s" %d', self._client_addr(), request.target, exc.status)
            self.conn.respond(exc.status or 400, exc.headers, exc.reason.encode("utf-8"))
            self.handshake_complete = True
            self._pump()
            return
        raw_path, _, query = request.target.partition("?")
        addresses = self.scope
        # Keys in the order of uvicorn's protocols: its TRACE log of the scope reads the same.
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": addresses["scheme"],
            "server": addresses["server"],
            "client": addresses["client"],
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers
            ],
            "subprotocols": request.subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        task = self._loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    async def run_asgi(self) -> None:
        """Run the app; a failure before accept is a 500, a return while open closes the socket."""
        try:
            result = await self.app(self.scope, self.asgi_receive, self.asgi_send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self._end_after_app(1011)
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
            self._end_after_app(1000)

    def _end_after_app(self, code: int) -> None:
        conn = self.conn
        start = self.response_start
        if conn.state is State.CONNECTING and start is not None:
            # A denial response was started: send it with the body so far (uvicorn's wsproto
            # protocol has already written the head by then, so the client sees the app's status).
            self._deny(start["status"], list(start.get("headers") or []), b"".join(self.response_body))
        elif conn.state is State.CONNECTING:
            self._send_500()
        elif conn.state is State.OPEN and not conn.close_sent:
            # An app that returns (or fails) without websocket.close: close cleanly for it.
            self._set_disconnect(code)
            self._start_close(code, "")

    def _send_500(self) -> None:
        conn = self.conn
        if conn.state is State.CONNECTING and conn.request is not None:
            conn.respond(500, self.default_headers, b"Internal Server Error")
            self.handshake_complete = True
            self._pump()  # the response, then the transport closes
        else:
            self._abort()  # no request to answer yet

    # -- ASGI ----------------------------------------------------------------------------------

    async def asgi_receive(self) -> Message:
        """The next ASGI event for the app: connect, receive, then the disconnect (again and again)."""
        if self._connect_pending:
            self._connect_pending = False
            return {"type": "websocket.connect"}
        while self._disconnect is None:
            queue = self._queue
            # The common case inline (a message waiting, reading not paused): no receive() frame.
            msg = queue.popleft() if queue and not self._read_paused else await self.receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                return {"type": "websocket.receive", "text": msg.data}
            if kind is WSMsgType.BINARY:
                return {"type": "websocket.receive", "bytes": msg.data}
            if self._disconnect is not None:
                break  # decided by the app's close or a shutdown while this receive waited
            conn = self.conn
            if kind is WSMsgType.CLOSE:
                self._set_disconnect(1005 if msg.data is None else int(msg.data), msg.extra or "")
            elif conn.close_sent or conn.close_code not in (None, 1006):
                # We failed the connection (1002, 1007, 1009, ...) with a close frame saying why.
                self._set_disconnect(conn.close_code or 1006, conn.close_reason)
            else:
                self._set_disconnect(1006)  # dropped: no close frame, so no reason
        return self._disconnect

    def _set_disconnect(self, code: int, reason: str | None = None) -> None:
        # ASGI's disconnect carries a reason only when a close frame gave one, as uvicorn's
        # protocols do (none for a lost connection, a shutdown or a refused handshake).
        if self._disconnect is None:
            message: Message = {"type": "websocket.disconnect", "code": code}
            if reason is not None:
                message["reason"] = reason
            self._disconnect = message

    async def asgi_send(self, message: Message) -> None:
        """Carry out one ASGI event from the app."""
        if self._lost.done():
            raise ClientDisconnected()
        kind = message["type"]
        conn = self._conn
        if kind == "websocket.send" and conn.state is _OPEN and not self.app_closed:
            try:  # the common case first
                data = message.get("bytes")
                if data is not None:
                    await self.send_bytes(data)
                    return
                text = message.get("text")
                if text is not None:
                    await self.send_str(text)
                    return
            except ConnectionClosed:
                raise ClientDisconnected() from None
        if self.response_start is not None:
            self._send_response_body(message)
        elif conn.state is State.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self.logger.info('%s - "WebSocket %s" 403', self._client_addr(), self._path())
                self._deny(403, [], b"")
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if not 200 <= status < 600:
                    raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
                self.logger.info('%s - "WebSocket %s" %d', self._client_addr(), self._path(), status)
                self.response_start = message
                self.handshake_complete = True  # the answer is the app's response
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        elif self.app_closed:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")
        else:
            try:
                if kind == "websocket.send":
                    data = message.get("bytes")
                    if data is not None:
                        await self.send_bytes(data)
                    else:
                        text = message.get("text")
                        if text is None:
                            raise RuntimeError("websocket.send needs 'bytes' or 'text'")
                        await self.send_str(text)
                elif kind == "websocket.close":
                    code = message.get("code") or 1000
                    reason = message.get("reason") or ""
                    self.app_closed = True
                    self._set_disconnect(code, reason)
                    self._start_close(code, reason)
                else:
                    raise RuntimeError(
                        f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
                    )
            except ConnectionClosed:
                raise ClientDisconnected() from None

    def _accept(self, message: Message) -> None:
        self.logger.info('%s - "WebSocket %s" [accepted]', self._client_addr(), self._path())
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        headers = list(self.default_headers) + list(message.get("headers") or [])
        self.conn.accept(subprotocol=message.get("subprotocol"), extra_headers=headers, now=self._now())
        self.handshake_complete = True
        self._accepted()

    def _deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        present = {name.lower() for name, _ in headers}
        defaults = [(name, value) for name, value in self.default_headers if name.lower() not in present]
        self.conn.respond(status, defaults + headers, body)
        self.handshake_complete = True
        self.app_closed = True
        self._set_disconnect(1006)
        self._pump()

    def _send_response_body(self, message: Message) -> None:
        if message["type"] != "websocket.http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'websocket.http.response.body' but got '{message['type']}'."
            )
        if self.app_closed:
            raise RuntimeError("the denial response is already complete")
        self.response_body.append(message.get("body", b""))
        if not message.get("more_body", False):
            start = self.response_start
            assert start is not None
            self._deny(start["status"], list(start.get("headers") or []), b"".join(self.response_body))

    # -- logging helpers -----------------------------------------------------------------------

    def _trace(self, message: str) -> None:
        # uvicorn's protocols log their connection's life at TRACE on "uvicorn.error", the same format
        # with the peer's address as its argument (websockets_sansio_impl.py: connection_made,
        # connection_lost, keepalive_timeout; websockets_impl.py checks isEnabledFor the same way).
        logger = self.logger
        if logger.isEnabledFor(TRACE_LOG_LEVEL):
            client = self.scope.get("client")
            logger.log(TRACE_LOG_LEVEL, message, f"{client[0]}:{client[1]} - " if client else "")

    def _client_addr(self) -> str:
        return get_client_addr(cast(Any, self.scope))

    def _path(self) -> str:
        return get_path_with_query_string(cast(Any, self.scope)) if "path" in self.scope else ""


def _check_line_lengths(request: Request) -> None:
    """Refuse a line uvicorn's websockets-sansio protocol would not parse: 414 or 431, as it does.

    uvicorn's HTTP protocol rebuilds the head as `METHOD target HTTP/1.1` and `name: value` lines;
    websockets reads each with a limit of `_MAX_LINE` bytes, CRLF included (websockets/streams.py).
    """
    request_line = len(request.method) + len(request.target) + len(" HTTP/1.1\r\n") + 1
    if request_line > _MAX_LINE:
        raise HandshakeError(
            f"request line of {request_line} bytes, over {_MAX_LINE}",
            status=HTTPStatus.REQUEST_URI_TOO_LONG.value,
        )
    for name, value in request.headers:
        line = len(name) + len(value) + len(": \r\n")
        if line > _MAX_LINE:
            raise HandshakeError(
                f"header line {name!r} of {line} bytes, over {_MAX_LINE}",
                status=HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE.value,
            )
