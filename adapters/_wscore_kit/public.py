"""The names every adapter re-exports (`broadcast` and `echo_handler` included: one implementation
for every adapter), so that an application imports one module
(`from wscore_trio import connect, WSMsgType, ConnectionClosed, ...`)."""

from __future__ import annotations

from wscore import (
    ConnectionClosed,
    DeflateOptions,
    HandshakeError,
    InvalidStateError,
    MessageTooBig,
    ProtocolError,
    Request,
    WSCloseCode,
    WSError,
    WSMessage,
    WSMessageTypeError,
    WSMsgType,
    WSTimeoutError,
)

from .api import DEFAULT_MAX_QUEUE, WSTimeout
from .connection import broadcast, echo_handler

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "ConnectionClosed",
    "DeflateOptions",
    "HandshakeError",
    "InvalidStateError",
    "MessageTooBig",
    "ProtocolError",
    "Request",
    "WSCloseCode",
    "WSError",
    "WSMessage",
    "WSMessageTypeError",
    "WSMsgType",
    "WSTimeout",
    "WSTimeoutError",
    "broadcast",
    "echo_handler",
]
