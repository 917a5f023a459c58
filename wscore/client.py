"""The client's side of the opening handshake (RFC 6455 §4.1), then the connection."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

import h11

from ._types import State
from .config import WSConfig
from .connection import Connection
from .errors import HandshakeError
from .extensions import (
    deflate_offer,
    parse_extensions,
    serialize_extensions,
    validate_deflate_response,
)
from .handshake import (
    Headers,
    HeadersLike,
    accept_token,
    get_header,
    header_tokens,
    is_token,
    normalize_headers,
)

__all__ = ["ClientConnection"]

_MAX_ERROR_BODY = 64 * 1024


class ClientConnection(Connection):
    """A client connection: the upgrade request is in `data_to_send()` from the start.

    `host` is the Host header's value (with the port when it is not the scheme's default), `target`
    the request target (path and query). A refused or invalid response makes `receive_data` raise
    `HandshakeError`; on success the state becomes OPEN and `response_headers` holds the 101's headers.
    """

    # Slots: a connection's attributes, without a per-instance dict (memory per connection).
    __slots__ = (
        "_h11",
        "_key",
        "_offered_subprotocols",
        "_refusal",
        "_refusal_body",
        "request_headers",
        "response_headers",
    )

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        origin: str | None = None,
        extra_headers: HeadersLike = (),
        config: WSConfig | None = None,
        now: float | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(True, config, now=now, _state=State.CONNECTING)
        self._key = key or base64.b64encode(os.urandom(16)).decode("ascii")
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a sequence of str, not a str")
        for protocol in subprotocols:
            if not isinstance(protocol, str) or not is_token(protocol):
                raise ValueError(f"subprotocol {protocol!r} is not an HTTP token (RFC 6455 §4.1)")
        self._offered_subprotocols = list(subprotocols)
        self.response_headers: Headers = []
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.config.max_handshake_size)
        self._refusal: h11.Response | None = None
        self._refusal_body = bytearray()

        headers: Headers = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self._key),
            ("Sec-WebSocket-Version", "13"),
        ]
        if origin is not None:
            headers.append(("Origin", origin))
        if self._offered_subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self._offered_subprotocols)))
        if self.config.compress is not None:
            offer = [("permessage-deflate", deflate_offer(self.config.compress))]
            headers.append(("Sec-WebSocket-Extensions", serialize_extensions(offer)))
        headers.extend(normalize_headers(extra_headers))
        try:
            request = h11.Request(method="GET", target=target, headers=headers)
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid request: {exc}") from None
        self.request_headers: Headers = headers
        self.pending_output.append(self._h11.send(request) + self._h11.send(h11.EndOfMessage()))

    def _refuse(self, reason: str, status: int | None = None, headers: Headers | None = None) -> None:
        exc = HandshakeError(
            reason,
            status=status,
            headers=headers if headers is not None else self.response_headers,
            body=bytes(self._refusal_body),
        )
        self.exception = exc
        self.state = State.CLOSED
        self.close_transport = True
        raise exc

    def _receive_handshake_data(self, data: bytes) -> None:
        limit = self.config.max_handshake_size + 1
        if len(data) > limit:
            # As the server does: h11 parses a complete head whatever its size, so it gets slices one
            # byte over our limit, and a longer head fails as incomplete, unparsed.
            for start in range(0, len(data), limit):
                if self.state is not State.CONNECTING:
                    self.receive_data(data[start:])  # the frames right behind the 101
                    return
                self._receive_handshake_data(data[start : start + limit])
            return
        try:
            self._h11.receive_data(data)
            self._next_h11_events()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:  # h11's own limit, on a head still incomplete
                self._refuse(f"response head over {self.config.max_handshake_size} bytes")
            self._refuse(f"invalid HTTP response: {exc}")

    def _next_h11_events(self) -> None:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    # h11 bounds only an incomplete head: a complete one is measured here, as by the server.
                    size = len(event.reason) + 15 + sum(len(k) + len(v) + 4 for k, v in event.headers)
                    if size > self.config.max_handshake_size:
                        self._refuse(f"response head over {self.config.max_handshake_size} bytes", 101)
                    if len(event.headers) > self.config.max_headers:
                        self._refuse(f"more than {self.config.max_headers} header fields", 101)
                    self._check_response(normalize_headers(event.headers))
                    return
                continue  # 1xx other than 101 (e.g. 100 Continue) carry nothing for us
            if isinstance(event, h11.Response):
                self._refusal = event
                self.response_headers = normalize_headers(event.headers.raw_items())
            elif isinstance(event, h11.Data):
                room = _MAX_ERROR_BODY - len(self._refusal_body)
                self._refusal_body += event.data[: max(room, 0)]
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.PAUSED:
                self._refused()

    def _refused(self) -> None:
        status = self._refusal.status_code if self._refusal is not None else None
        self._refuse("server refused the WebSocket upgrade", status)  # str() adds " (HTTP <status>)"

    def _check_response(self, headers: Headers) -> None:
        self.response_headers = headers

        def fail(reason: str) -> None:
            self._refuse(reason, 101, headers)

        upgrade = [t.lower() for t in header_tokens(get_header(headers, "upgrade"))]
        if upgrade != ["websocket"]:
            fail("101 response without 'Upgrade: websocket' (RFC 6455 §4.1)")
        connection = [t.lower() for t in header_tokens(get_header(headers, "connection"))]
        if "upgrade" not in connection:
            fail("101 response without 'Connection: Upgrade' (RFC 6455 §4.1)")
        accept = get_header(headers, "sec-websocket-accept")
        if accept != accept_token(self._key):
            fail(f"Sec-WebSocket-Accept {accept!r} does not match the key sent (RFC 6455 §4.1)")
        protocol = get_header(headers, "sec-websocket-protocol")
        if protocol is not None:
            if protocol not in self._offered_subprotocols:
                fail(f"server chose subprotocol {protocol!r}, which was not offered (RFC 6455 §4.1)")
            self.subprotocol = protocol
        ext_header = get_header(headers, "sec-websocket-extensions")
        if ext_header is not None:
            try:
                accepted = parse_extensions(ext_header)
            except ValueError as exc:
                fail(f"malformed Sec-WebSocket-Extensions: {exc}")
                return
            for name, params in accepted:
                if name != "permessage-deflate" or self.config.compress is None:
                    fail(f"server accepted extension {name!r}, which was not offered (RFC 6455 §9.1)")
                if self.deflate is not None:
                    fail("server accepted permessage-deflate twice (RFC 7692 §5)")
                assert self.config.compress is not None
                try:
                    self.deflate = validate_deflate_response(params, self.config.compress)
                except ValueError as exc:
                    fail(f"invalid permessage-deflate response: {exc}")
        trailing, _closed = self._h11.trailing_data
        self._buf += trailing
        self._opened(None)

    def _handshake_eof(self) -> None:
        try:
            self._h11.receive_data(b"")
            self._next_h11_events()
        except h11.RemoteProtocolError:
            pass
        if self._refusal is not None:
            self._refused()
        self._refuse("connection closed before the handshake response was complete")
