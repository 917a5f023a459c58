"""wscore: a sans-I/O WebSocket protocol core (RFC 6455 + RFC 7692).

Bytes in, events out; calls in, bytes out; time passed in, deadlines out. No sockets, tasks, threads
or clocks: the adapters (`wscore_asyncio`, `wscore_trio`, `wscore_anyio`) or your own I/O drive it.
"""

from __future__ import annotations

from ._types import CLOSED_MESSAGE, CLOSING_MESSAGE, State, WSCloseCode, WSMessage, WSMsgType
from .client import ClientConnection
from .config import WSConfig
from .connection import Connection
from .errors import (
    ConnectionClosed,
    HandshakeError,
    InvalidStateError,
    MessageTooBig,
    ProtocolError,
    WSError,
    WSMessageTypeError,
    WSTimeoutError,
)
from .extensions import DeflateOptions, PerMessageDeflate
from .frames import encode_frame
from .handshake import Request, accept_token
from .server import ServerConnection

__all__ = [
    "CLOSED_MESSAGE",
    "CLOSING_MESSAGE",
    "ClientConnection",
    "Connection",
    "ConnectionClosed",
    "DeflateOptions",
    "HandshakeError",
    "InvalidStateError",
    "MessageTooBig",
    "PerMessageDeflate",
    "ProtocolError",
    "Request",
    "ServerConnection",
    "State",
    "WSCloseCode",
    "WSConfig",
    "WSError",
    "WSMessage",
    "WSMessageTypeError",
    "WSMsgType",
    "WSTimeoutError",
    "accept_token",
    "encode_frame",
]

__version__ = "0.1.0"
