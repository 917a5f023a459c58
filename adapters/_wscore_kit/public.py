"""The names every adapter re-exports, so that an application imports one module
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

from .api import DEFAULT_MAX_QUEUE, WSTimeout, echo_handler

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
    "echo_handler",
]
