"""A uvicorn WebSocket protocol on the wscore core, so Starlette and FastAPI endpoints run on wscore.

    uvicorn app:app --ws wscore_asyncio.uvicorn:WSCoreProtocol
    uvicorn.run(app, ws=WSCoreProtocol)  # or Config(app, ws=WSCoreProtocol)

uvicorn's HTTP protocol hands the upgrade over by calling `connection_made(transport)` and then
`data_received(request_bytes)`. From there this is an `asyncio.Protocol` over `wscore.ServerConnection`:
the ASGI websocket scope and messages (with the `websocket.http.response` denial extension), and
uvicorn's settings: `ws_max_size` (close 1009), `ws_max_queue` (reading pauses while that many
messages wait for the app), `ws_ping_interval`/`ws_ping_timeout` (the core's heartbeat, driven by
one loop timer), `ws_per_message_deflate`, `root_path` and the server's default headers (Server, Date).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
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
    WSMsgType,
    WSTimeoutError,
)
from wscore.frames import OP_CLOSE, build_close_payload, encode_frame
from wscore.handshake import check_request

__all__ = ["WSCoreProtocol"]

Message = dict[str, Any]

# uvicorn's built-in protocols offer these deflate parameters: smaller windows, less memory per socket.
_DEFLATE = DeflateOptions(server_max_window_bits=12, client_max_window_bits=12, mem_level=5)
_CLOSE_TIMEOUT = 10.0  # uvicorn's own protocols wait this long for the peer's close frame
_KEEPALIVE_CLOSE = encode_frame(OP_CLOSE, build_close_payload(1011, "keepalive ping timeout"))


class WSCoreProtocol(asyncio.Protocol):
    """One WebSocket connection handed over by uvicorn's HTTP protocol, run by the wscore core."""

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
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path: str = config.root_path
        self.app_state = app_state
        self.connections: set[Any] = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers

        interval = config.ws_ping_interval or None
        self.conn = ServerConnection(
            config=WSConfig(
                heartbeat=interval,
                # uvicorn's "no pong timeout" has no equivalent in the core: the interval bounds it.
                pong_timeout=(config.ws_ping_timeout or interval) if interval else None,
                close_timeout=_CLOSE_TIMEOUT,
                open_timeout=None,  # the app decides how long the handshake takes, as in uvicorn
                max_message_size=config.ws_max_size or None,
                compress=_DEFLATE if config.ws_per_message_deflate else None,
            )
        )
        self.max_queue: int = max(1, config.ws_max_queue)

        self.transport: asyncio.Transport | None = None
        self.scope: dict[str, Any] = {}
        self.queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.handshake_complete = False  # accepted, refused, or answered with plain HTTP
        self.app_closed = False  # the app sent websocket.close (or a denial response)
        self.disconnect_queued = False
        self.disconnected = False
        self.response_start: Message | None = None
        self.response_body: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._early_bytes = 0
        self._timer_at: float | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register with the server, as uvicorn's own protocols do."""
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)
        self.scope = {
            "server": get_local_addr(self.transport),
            "client": get_remote_addr(self.transport),
            "scheme": "wss" if is_ssl(self.transport) else "ws",
        }

    def data_received(self, data: bytes) -> None:
        """Feed the core; the first bytes are the upgrade request uvicorn parsed and re-serialized."""
        conn = self.conn
        if conn.state is State.CONNECTING and conn.request is None:
            try:
                conn.receive_data(data)
            except HandshakeError:
                self._flush()
                self._close_transport()
                return
            if conn.request is not None:
                self._handle_request()
            return
        if conn.state is State.CONNECTING:
            # Frames sent before the app accepted wait in the core; bound them as a message is bounded.
            self._early_bytes += len(data)
            if self._early_bytes > self.config.ws_max_size and not self.read_paused and self.transport:
                self.read_paused = True
                self.transport.pause_reading()
        conn.receive_data(data, self.loop.time())
        self._process()

    def eof_received(self) -> bool | None:
        """Let connection_lost report the drop (the transport closes itself)."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone: tell the app (1006 unless a close handshake finished)."""
        self._cancel_timer()
        conn = self.conn
        if conn.state is not State.CLOSED:
            conn.receive_eof()
            conn.events()
        code = conn.close_code if self.handshake_complete and conn.close_code is not None else 1006
        self._queue_disconnect(code, conn.close_reason if code != 1006 else "")
        self.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        self.writable.set()  # asyncio never resumes writing on a lost transport
        if self.transport is not None and exc is None:
            self.transport.close()

    def pause_writing(self) -> None:
        """The transport's buffer is full: ASGI sends wait."""
        self.writable.clear()

    def resume_writing(self) -> None:
        """The transport's buffer drained."""
        self.writable.set()

    # -- uvicorn's lifecycle -------------------------------------------------------------------

    def shutdown(self) -> None:
        """Server shutdown: close open connections with 1012, refuse pending handshakes with 500."""
        conn = self.conn
        if conn.state is State.OPEN:
            # Unlike uvicorn's protocols, which drop TCP at once, wait (within the close timeout)
            # for the peer's close frame: a clean close handshake, as RFC 6455 §7.1.1 wants.
            self._queue_disconnect(1012, "")
            conn.close(1012, "", now=self.loop.time())
            self._flush()
            self._resume_reading()  # the peer's close frame must be read
            self._arm_timer()
        else:
            # Before the app answered the handshake: 500. Already closing: do not wait any longer.
            self._send_500()
            self._close_transport()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        """Drop the finished app task from the server's set."""
        self.tasks.discard(task)

    # -- the handshake -------------------------------------------------------------------------

    def _handle_request(self) -> None:
        request = self.conn.request
        assert request is not None
        try:
            check_request(request)
        except HandshakeError as exc:
            self.logger.info('%s - "WebSocket %s" %d', self._client_addr(), request.target, exc.status)
            self.conn.respond(exc.status or 400, exc.headers, exc.reason.encode("utf-8"))
            self.handshake_complete = True
            self._flush()
            self._close_transport()
            return
        raw_path, _, query = request.target.partition("?")
        self.scope.update(
            {
                "type": "websocket",
                "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
                "http_version": "1.1",
                "root_path": self.root_path,
                "path": self.root_path + unquote(raw_path),
                "raw_path": self.root_path.encode("ascii") + raw_path.encode("latin-1"),
                "query_string": query.encode("latin-1"),
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in request.headers
                ],
                "subprotocols": request.subprotocols,
                "state": self.app_state.copy(),
                "extensions": {"websocket.http.response": {}},
            }
        )
        self.queue.append({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.on_task_complete)
        self.tasks.add(task)

    async def run_asgi(self) -> None:
        """Run the app; a failure before accept is a 500, a return while open closes the socket."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
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
            self._close_transport()
        elif conn.state is State.OPEN and not conn.close_sent:
            # An app that returns (or fails) without websocket.close: close cleanly for it.
            self._queue_disconnect(code, "")
            conn.close(code, "", now=self.loop.time())
            self._flush()
            self._resume_reading()
            self._arm_timer()
        elif conn.close_transport or not conn.close_sent:
            self._close_transport()

    def _send_500(self) -> None:
        if self.conn.state is State.CONNECTING and self.conn.request is not None:
            self.conn.respond(500, self.default_headers, b"Internal Server Error")
            self.handshake_complete = True
            self._flush()

    # -- ASGI ----------------------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next ASGI event for the app: connect, receive, then one disconnect."""
        while not self.queue:
            waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message = self.queue.popleft()
        if self.read_paused and len(self.queue) <= self.max_queue // 2:
            self._resume_reading()
        return message

    async def send(self, message: Message) -> None:
        """Carry out one ASGI event from the app."""
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        conn = self.conn
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
                        conn.send_bytes(data)
                    else:
                        text = message.get("text")
                        if text is None:
                            raise RuntimeError("websocket.send needs 'bytes' or 'text'")
                        conn.send_text(text)
                    self._flush()
                elif kind == "websocket.close":
                    code = message.get("code") or 1000
                    reason = message.get("reason") or ""
                    self.app_closed = True
                    self._queue_disconnect(code, reason)
                    conn.close(code, reason, now=self.loop.time())
                    self._flush()
                    self._resume_reading()  # the peer's close frame must be read
                    self._arm_timer()
                else:
                    raise RuntimeError(
                        f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
                    )
            except ConnectionClosed:
                raise ClientDisconnected() from None

    def _accept(self, message: Message) -> None:
        self.logger.info('%s - "WebSocket %s" [accepted]', self._client_addr(), self._path())
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        headers = list(self.default_headers) + list(message.get("headers") or [])
        self.conn.accept(subprotocol=message.get("subprotocol"), extra_headers=headers, now=self.loop.time())
        self.handshake_complete = True
        self._flush()
        self._process()  # frames that came with the request, and the first timer
        if len(self.queue) <= self.max_queue // 2:
            self._resume_reading()

    def _deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        present = {name.lower() for name, _ in headers}
        defaults = [(name, value) for name, value in self.default_headers if name.lower() not in present]
        self.conn.respond(status, defaults + headers, body)
        self.handshake_complete = True
        self.app_closed = True
        self._queue_disconnect(1006, "")
        self._flush()
        self._close_transport()

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

    # -- driving the core ----------------------------------------------------------------------

    def _process(self) -> None:
        """Hand the core's events to the app, write its output, keep the timer, close when told."""
        conn = self.conn
        queue_message = self._queue_message
        for event in conn.events():
            kind = event.type
            if kind is WSMsgType.TEXT:
                queue_message({"type": "websocket.receive", "text": event.data})
            elif kind is WSMsgType.BINARY:
                queue_message({"type": "websocket.receive", "bytes": event.data})
            elif kind is WSMsgType.CLOSE or kind is WSMsgType.ERROR:
                self._queue_disconnect(conn.close_code or 1005, conn.close_reason)
                if isinstance(event.data, WSTimeoutError) and not conn.close_sent:
                    # A missed pong: the core drops the peer without a close frame; tell the peer why,
                    # as uvicorn's protocols do, in case it is only slow.
                    self._write(_KEEPALIVE_CLOSE)
        self._flush()
        if conn.close_transport:
            self._close_transport()
        else:
            self._arm_timer()

    def _queue_message(self, message: Message) -> None:
        if self.disconnect_queued:
            return  # the app is past websocket.close (or told of one): keep reading for the close frame
        self.queue.append(message)
        self._wake()
        if not self.read_paused and len(self.queue) >= self.max_queue and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _queue_disconnect(self, code: int, reason: str) -> None:
        if self.disconnect_queued:
            return
        self.disconnect_queued = True
        self.queue.append({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self._write(data)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _close_transport(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            if self.conn.abort_transport:
                # Dropped (e.g. no close frame in time): what is still buffered will never be read.
                self.transport.abort()
            else:
                self.transport.close()

    def _arm_timer(self) -> None:
        # One loop timer: the core's deadlines only move later as data arrives, so it is re-armed
        # only when it fires or when a call (close) brought the deadline earlier.
        deadline = self.conn.next_deadline()
        if deadline is None:
            self._cancel_timer()
        elif self._timer_at is None or deadline < self._timer_at:
            self._cancel_timer()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.loop.time()
        if self.read_paused and self.conn.state is State.OPEN:
            # We stopped reading because the app is behind on what the peer sent: the silence is
            # ours, so it must not count against the peer (its pongs wait unread in the socket).
            self.conn.receive_data(b"", now)
        self.conn.handle_timer(now)
        self._process()

    # -- logging helpers -----------------------------------------------------------------------

    def _client_addr(self) -> str:
        return get_client_addr(cast(Any, self.scope))

    def _path(self) -> str:
        return get_path_with_query_string(cast(Any, self.scope)) if "path" in self.scope else ""
