"""The names every adapter re-exports (`broadcast`, `echo_handler` and the hub's types included:
one implementation for every adapter; each adapter adds its `Hub`, the kit's with its event), so
that an application imports one module (`from wscore_trio import connect, Hub, WSMsgType, ...`)."""

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
from .hub import HubMessage, HubUnavailable, Room, Subscription
from .proxy import ProxyError
from .reconnect import backoff

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "ConnectionClosed",
    "DeflateOptions",
    "HandshakeError",
    "HubMessage",
    "HubUnavailable",
    "InvalidStateError",
    "MessageTooBig",
    "ProtocolError",
    "ProxyError",
    "Request",
    "Room",
    "Subscription",
    "WSCloseCode",
    "WSError",
    "WSMessage",
    "WSMessageTypeError",
    "WSMsgType",
    "WSTimeout",
    "WSTimeoutError",
    "backoff",
    "broadcast",
    "echo_handler",
]
