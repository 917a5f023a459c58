"""The server's side of the opening handshake (RFC 6455 §4.2), then the connection."""

from __future__ import annotations

from collections.abc import Sequence

import h11

from ._types import State
from .config import WSConfig
from .connection import Connection
from .errors import HandshakeError, InvalidStateError
from .extensions import negotiate_deflate
from .handshake import (
    Headers,
    HeadersLike,
    Request,
    SubprotocolSelector,
    accept_response_headers,
    build_response,
    check_request,
    normalize_headers,
    select_subprotocol,
)

__all__ = ["ServerConnection"]

_DEFAULT = object()


class ServerConnection(Connection):
    """A server connection. Feed it the client's bytes until `request` is set, then either `accept()`
    the upgrade or `respond()` with a plain HTTP response (a page, a health check, a refusal).

    A malformed request is answered by the core itself (400, 426 or 431, with the reason) and makes
    `receive_data` raise `HandshakeError`. Frameworks that parsed the request themselves call
    `receive_request()` instead of `receive_data()` for the handshake; the core then writes no HTTP:
    `accept()` returns the 101's headers and a refusal is the framework's to write.
    """

    # Slots: a connection's attributes, without a per-instance dict (memory per connection).
    __slots__ = (
        "_embedded",
        "_h11",
        "_select_subprotocol",
        "_subprotocols",
        "request",
        "response_status",
    )

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        select_subprotocol: SubprotocolSelector | None = None,
        config: WSConfig | None = None,
        now: float | None = None,
    ) -> None:
        super().__init__(False, config, now=now, _state=State.CONNECTING)
        self.request: Request | None = None
        """The request, once it has arrived in full."""
        self.response_status: int | None = None
        """The status we answered with: 101, or the plain response's."""
        self._subprotocols = list(subprotocols)
        self._select_subprotocol = select_subprotocol
        self._h11: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.config.max_handshake_size
        )
        self._embedded = False

    def _receive_handshake_data(self, data: bytes) -> None:
        if self.request is not None or self._h11 is None:
            # Bytes after the request (a client that does not wait for the 101) stay buffered.
            self._buf += data
            return
        limit = self.config.max_handshake_size + 1
        if len(data) > limit:
            # h11 parses a head that is complete in its buffer whatever its size (its limit holds only
            # for an incomplete one), at ~40 bytes of objects per byte of short header lines: hand it
            # slices one byte over our limit, so that a longer head fails as incomplete, unparsed.
            for start in range(0, len(data), limit):
                self._receive_handshake_data(data[start : start + limit])
            return
        try:
            self._h11.receive_data(data)
            while True:
                event = self._h11.next_event()
                if event is h11.NEED_DATA:
                    return
                if isinstance(event, h11.Request):
                    # h11 bounds only an incomplete head: a complete one that came in one read is
                    # measured here (request line plus "name: value\r\n" per field).
                    size = len(event.method) + len(event.target) + 12
                    size += sum(len(name) + len(value) + 4 for name, value in event.headers)
                    if size > self.config.max_handshake_size:
                        self._bad_request(431, f"request head over {self.config.max_handshake_size} bytes")
                    if len(event.headers) > self.config.max_headers:
                        self._bad_request(431, f"more than {self.config.max_headers} header fields")
                    if event.http_version not in (b"1.0", b"1.1"):  # 1.0: check_request says why
                        version = event.http_version.decode("ascii", "replace")
                        self._bad_request(
                            400,
                            f"HTTP/{version} on an HTTP/1 connection: the upgrade needs HTTP/1.1"
                            " (RFC 6455 §4.1)",
                        )
                    self.request = Request(
                        event.method.decode("ascii"),
                        event.target.decode("latin-1"),
                        normalize_headers(event.headers),
                        event.http_version.decode("ascii"),
                    )
                elif event is h11.PAUSED:
                    # h11 pauses after the request's EndOfMessage; what follows (frames from a client
                    # that did not wait for the 101) is kept for after accept().
                    self._buf += self._h11.trailing_data[0]
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    return
                # A request body (h11.Data) is not for us: a WebSocket upgrade has none.
        except h11.RemoteProtocolError as exc:
            self._bad_request(exc.error_status_hint, f"invalid HTTP request: {exc}")

    def _bad_request(self, status: int, reason: str) -> None:
        self._write_response(status, [], reason.encode("utf-8"))
        exc = HandshakeError(reason, status=status)
        self.exception = exc
        raise exc

    def receive_request(self, request: Request, now: float | None = None) -> None:
        """Take a request parsed by someone else's HTTP stack (the embedding path).

        From then on the core writes no HTTP: `accept()` returns the 101 response's headers for the
        framework to write, and `accept()`'s `HandshakeError` (status, headers, reason) or `respond()`
        leave `data_to_send()` empty, the framework writing the refusal (see `handshake.build_response`).
        """
        if self.state is not State.CONNECTING or self.request is not None:
            raise InvalidStateError("a request was already received")
        if now is not None:
            self._now = now
        self.request = request
        self._h11 = None
        self._embedded = True

    def _handshake_eof(self) -> None:
        self.state = State.CLOSED
        if self.request is None:
            self.exception = HandshakeError("connection closed before the request was complete")
        else:
            self.exception = HandshakeError("connection closed before the upgrade was answered")

    def accept(
        self,
        subprotocol: str | object | None = _DEFAULT,
        extra_headers: HeadersLike = (),
        now: float | None = None,
    ) -> Headers:
        """Accept the upgrade: queue the 101 response and go OPEN; returns the response's headers.

        The subprotocol is `subprotocol` if given, else the `select_subprotocol` callback's choice,
        else the first of `subprotocols` the client offered. permessage-deflate is accepted when the
        config enables it and the client offered acceptable parameters. An invalid upgrade request is
        answered with 400/426 and raises `HandshakeError`.
        """
        request = self.request
        if request is None or self.state is not State.CONNECTING:
            raise InvalidStateError("accept() needs a received request and a connection not yet opened")
        try:
            key = check_request(request)
        except HandshakeError as exc:
            self._write_response(exc.status or 400, exc.headers, exc.reason.encode("utf-8"))
            self.exception = exc
            raise
        offered = request.subprotocols
        if subprotocol is _DEFAULT:
            if self._select_subprotocol is not None:
                subprotocol = self._select_subprotocol(offered)
            else:
                subprotocol = select_subprotocol(offered, self._subprotocols)
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise TypeError("subprotocol must be a str or None")
        self.subprotocol = subprotocol
        extensions = self.negotiate_extensions(request)
        headers = accept_response_headers(key, subprotocol=subprotocol, extensions=extensions)
        headers.extend(normalize_headers(extra_headers))
        if self._h11 is not None:
            try:
                event = h11.InformationalResponse(
                    status_code=101, headers=headers, reason=b"Switching Protocols"
                )
                self.pending_output.append(self._h11.send(event))
            except h11.LocalProtocolError as exc:
                raise ValueError(f"invalid HTTP response: {exc}") from None
            self._h11 = None
        self.response_status = 101
        self._opened(now)
        return headers

    def negotiate_extensions(self, request: Request) -> str | None:
        """Agree on permessage-deflate from the request's offers; the response header value or None."""
        result = negotiate_deflate(request.header("sec-websocket-extensions"), self.config.compress)
        if result is None:
            return None
        self.deflate, value = result
        return value

    def respond(self, status: int, headers: HeadersLike = (), body: bytes = b"") -> None:
        """Answer with a plain HTTP response instead of upgrading (a page, a health check, a 403).

        Content-Length and Connection: close are added; the connection is then CLOSED.
        """
        if self.state is not State.CONNECTING or self.request is None:
            raise InvalidStateError("respond() needs a received request and a connection not yet opened")
        if not 200 <= status <= 599:
            raise ValueError(f"status {status} is not a final HTTP status")
        self._write_response(status, normalize_headers(headers), body)

    def _write_response(self, status: int, headers: Headers, body: bytes) -> None:
        status, headers, body = build_response(status, headers, body)
        # RFC 9110 §9.3.2: the answer to HEAD has the headers a GET would get (Content-Length
        # included) and no body.
        head = self.request is not None and self.request.method == "HEAD"
        if self._embedded:
            pass  # the framework that parsed the request writes the response
        elif self._h11 is not None and self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                # All or nothing: a response that fails half-way leaves no partial head behind.
                parts = [self._h11.send(h11.Response(status_code=status, headers=headers)) or b""]
                if not head:
                    parts.append(self._h11.send(h11.Data(data=body)) or b"")
                parts.append(self._h11.send(h11.EndOfMessage()) or b"")
            except h11.LocalProtocolError as exc:
                # The application's status or headers are invalid: refuse them, never write them raw.
                raise ValueError(f"invalid HTTP response: {exc}") from None
            self.pending_output.extend(parts)
        else:
            self.pending_output.append(_raw_response(status, headers, b"" if head else body))
        self.response_status = status
        self._h11 = None
        self.state = State.CLOSED
        self.close_transport = True


def _raw_response(status: int, headers: Headers, body: bytes) -> bytes:
    # For responses h11 cannot write (e.g. after a request it could not parse). No CR, LF or NUL may
    # get through: a header value with CRLF would split the response.
    for name, value in headers:
        if not name or not set(name).isdisjoint(" \t:\r\n\0") or not set(value).isdisjoint("\r\n\0"):
            raise ValueError(f"invalid header field {name!r}: {value!r}")
    lines = [f"HTTP/1.1 {status} \r\n"] + [f"{k}: {v}\r\n" for k, v in headers] + ["\r\n"]
    return "".join(lines).encode("latin-1") + body
