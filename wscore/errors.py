"""One exception hierarchy for everything the core (and the adapters) can raise."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConnectionClosed",
    "HandshakeError",
    "InvalidStateError",
    "MessageTooBig",
    "ProtocolError",
    "WSError",
    "WSMessageTypeError",
    "WSTimeoutError",
]


class WSError(Exception):
    """Base class of every error wscore raises."""


class HandshakeError(WSError):
    """The opening handshake failed: a refused upgrade, or a request/response that breaks RFC 6455 §4.

    `status` is the HTTP status seen (client) or sent (server), `headers` the response's headers as
    `(name, value)` pairs, `body` the response body (bounded), and `reason` the rule that broke, in words.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(f"{reason} (HTTP {status})" if status is not None else reason)
        self.reason = reason
        self.status = status
        self.headers = list(headers)
        self.body = body


class ProtocolError(WSError):
    """The peer broke a rule of RFC 6455/7692; `code` is the close code we send for it (1002, 1007, ...)."""

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class MessageTooBig(ProtocolError):
    """A frame or message (after decompression) is over the configured limit: close code 1009."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 1009)


class ConnectionClosed(WSError):
    """The connection is closed (or closing), so the operation cannot be done.

    `code` and `reason` are the close code and reason received (1006 when the connection dropped).
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        text = f"connection closed: code {code}" if code is not None else "connection closed"
        super().__init__(f"{text}, reason {reason!r}" if reason else text)
        self.code = code
        self.reason = reason


class InvalidStateError(WSError, RuntimeError):
    """A call that the connection's state does not allow (e.g. accept() on a client)."""


class WSMessageTypeError(WSError, TypeError):
    """A typed receive (`receive_str`, `receive_bytes`, `receive_json`) got another kind of message."""


class WSTimeoutError(WSError, TimeoutError):
    """A deadline passed: opening handshake, close handshake, or the pong after a heartbeat ping."""
