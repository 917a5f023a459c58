"""The opening handshake's pieces (RFC 6455 §4), usable on their own by a server that parses HTTP itself.

Everything an embedding server needs is importable from here: request validation (`check_request`),
the accept token and the 101's headers (`accept_response_headers`), subprotocol choice
(`select_subprotocol`), Sec-WebSocket-Extensions parsing and permessage-deflate negotiation
(`parse_extensions`, `negotiate_deflate`, `deflate_from_header`), and refusals (`build_response`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .errors import HandshakeError
from .extensions import deflate_from_header, negotiate_deflate, parse_extensions, serialize_extensions

__all__ = [
    "GUID",
    "Headers",
    "Request",
    "accept_response_headers",
    "accept_token",
    "build_response",
    "check_request",
    "deflate_from_header",
    "header_tokens",
    "negotiate_deflate",
    "normalize_headers",
    "parse_extensions",
    "select_subprotocol",
    "serialize_extensions",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Headers = list[tuple[str, str]]
"""Header fields in order as `(name, value)`; names as received (h11 lowercases them)."""

HeadersLike = Iterable[tuple[str | bytes, str | bytes]]


# The handshake's own names and values as h11 delivers them (names lowercased), decoded once: a
# server holds each connection's request headers for as long as it lives, and these strs are shared
# (memory per connection). A fixed table: nothing a peer sends is added to it.
_SHARED = {
    raw.encode("latin-1"): raw
    for raw in (
        "host",
        "upgrade",
        "connection",
        "origin",
        "user-agent",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "websocket",
        "Upgrade",
        "13",
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
    )
}


def normalize_headers(headers: HeadersLike) -> Headers:
    """Turn `(name, value)` pairs of bytes or str (ASGI, h11, a dict's items) into `Headers`."""
    shared = _SHARED
    result: Headers = []
    for name, value in headers:
        result.append(
            (
                shared.get(name) or name.decode("latin-1") if isinstance(name, bytes) else name,
                shared.get(value) or value.decode("latin-1") if isinstance(value, bytes) else value,
            )
        )
    return result


def get_header(headers: Headers, name: str) -> str | None:
    """All values of header `name` (case-insensitive) joined with ", ", or None if absent."""
    name = name.lower()
    values = [v for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None


def header_tokens(value: str | None) -> list[str]:
    """A comma-separated header value as its list of non-empty, stripped tokens."""
    if not value:
        return []
    return [t.strip() for t in value.split(",") if t.strip()]


def accept_token(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


@dataclass(frozen=True)
class Request:
    """An HTTP request as a server received it: what `process_request` and `accept` look at."""

    method: str
    target: str
    headers: Headers = field(default_factory=list)
    http_version: str = "1.1"

    @classmethod
    def build(
        cls,
        method: str | bytes,
        target: str | bytes,
        headers: HeadersLike,
        http_version: str | bytes = "1.1",
    ) -> Request:
        """A request from values another HTTP parser produced (bytes or str; headers as pairs)."""
        if isinstance(method, bytes):
            method = method.decode("ascii")
        if isinstance(target, bytes):
            target = target.decode("latin-1")
        if isinstance(http_version, bytes):
            http_version = http_version.decode("ascii")
        return cls(method, target, normalize_headers(headers), http_version)

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive; repeated fields joined with ", ")."""
        return get_header(self.headers, name)

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return header_tokens(self.header("sec-websocket-protocol"))

    @property
    def is_websocket(self) -> bool:
        """Whether this asks for a WebSocket upgrade at all (checked fully by `check_request`)."""
        return "websocket" in (t.lower() for t in header_tokens(self.header("upgrade")))


# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9112 §3.2 / RFC 3986 §3.2.2: Host = uri-host [ ":" port ] (an IP literal, or a reg-name).
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(:[0-9]*)?")
# RFC 9112 §3.2.2: a server MUST accept the absolute-form.
_ABSOLUTE_TARGET = re.compile(r"(?i)(https?|wss?)://[^/?#]+")


def is_token(value: str) -> bool:
    """Whether `value` is an HTTP token (RFC 9110 §5.6.2): what a subprotocol name must be."""
    return _TOKEN.fullmatch(value) is not None


def check_request(request: Request) -> str:
    """Validate a WebSocket upgrade request (RFC 6455 §4.2.1); return its Sec-WebSocket-Key.

    Raises `HandshakeError` with the status to answer: 426 for a wrong version, 400 otherwise.
    """
    if request.method != "GET":
        raise HandshakeError(f"method {request.method} instead of GET (RFC 6455 §4.2.1)", status=400)
    if request.http_version not in ("1.1", "2", "2.0", "3"):
        raise HandshakeError(f"HTTP/{request.http_version} instead of HTTP/1.1 (RFC 6455 §4.2.1)", status=400)
    hosts = [value for name, value in request.headers if name.lower() == "host"]
    if request.http_version == "1.1" and not hosts:
        raise HandshakeError("missing Host header (RFC 6455 §4.2.1)", status=400)
    if len(hosts) > 1:
        raise HandshakeError("more than one Host header (RFC 9112 §3.2)", status=400)
    if hosts and not _HOST.fullmatch(hosts[0]):
        raise HandshakeError(f"invalid Host header value {hosts[0]!r} (RFC 9112 §3.2)", status=400)
    target = request.target
    if not target.startswith("/") and not _ABSOLUTE_TARGET.match(target):
        raise HandshakeError(
            f"request target {target!r} is neither a path nor an absolute URI (RFC 9112 §3.2)",
            status=400,
        )
    if request.header("transfer-encoding") is not None:
        if request.header("content-length") is not None:
            raise HandshakeError("Content-Length and Transfer-Encoding together (RFC 9112 §6.3)", status=400)
        raise HandshakeError("an upgrade request has no body: Transfer-Encoding (RFC 6455 §4.1)", status=400)
    length = request.header("content-length")
    if length is not None and length.strip() != "0":
        raise HandshakeError(
            f"an upgrade request has no body: Content-Length {length!r} (RFC 6455 §4.1)", status=400
        )
    if not request.is_websocket:
        raise HandshakeError("missing 'Upgrade: websocket' header (RFC 6455 §4.2.1)", status=400)
    connection = [t.lower() for t in header_tokens(request.header("connection"))]
    if "upgrade" not in connection:
        raise HandshakeError("missing 'Connection: Upgrade' header (RFC 6455 §4.2.1)", status=400)
    version = request.header("sec-websocket-version")
    if version != "13":
        raise HandshakeError(
            f"Sec-WebSocket-Version {version!r} is not 13 (RFC 6455 §4.2.2)",
            status=426,
            headers=[("Sec-WebSocket-Version", "13")],
        )
    key = request.header("sec-websocket-key")
    if key is None:
        raise HandshakeError("missing Sec-WebSocket-Key header (RFC 6455 §4.2.1)", status=400)
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(
            f"Sec-WebSocket-Key {key!r} is not 16 bytes in base64 (RFC 6455 §4.2.1)", status=400
        )
    return key


def accept_response_headers(
    key: str, *, subprotocol: str | None = None, extensions: str | None = None
) -> Headers:
    """The headers of the 101 response to a request with Sec-WebSocket-Key `key` (RFC 6455 §4.2.2):
    Upgrade, Connection, Sec-WebSocket-Accept, then the chosen subprotocol and extensions if any."""
    headers: Headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_token(key)),
    ]
    if subprotocol is not None:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    return headers


SubprotocolSelector = Callable[[Sequence[str]], "str | None"]


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first of the server's `supported` subprotocols that the client offered, or None."""
    for protocol in supported:
        if protocol in offered:
            return protocol
    return None


def build_response(status: int, headers: HeadersLike = (), body: bytes = b"") -> tuple[int, Headers, bytes]:
    """A complete plain HTTP response for a refused upgrade or a page: adds Content-Length,
    Content-Type (text/plain when a body has none) and Connection: close."""
    result = normalize_headers(headers)
    names = {k.lower() for k, _ in result}
    if body and "content-type" not in names:
        result.append(("Content-Type", "text/plain; charset=utf-8"))
    if "content-length" not in names:
        result.append(("Content-Length", str(len(body))))
    if "connection" not in names:
        result.append(("Connection", "close"))
    return status, result, body
