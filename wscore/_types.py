"""Message objects shared by the core and the adapters (aiohttp's names and values)."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Any, NamedTuple


class WSMsgType(enum.IntEnum):
    """What a `WSMessage` carries; the values are aiohttp's, so code written for it reads the same."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    PING = 0x9
    PONG = 0xA
    CLOSE = 0x8
    CLOSING = 0x100
    CLOSED = 0x101
    ERROR = 0x102


class WSCloseCode(enum.IntEnum):
    """Close codes of RFC 6455 §7.4.1 and the IANA registry."""

    OK = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    ABNORMAL_CLOSURE = 1006
    INVALID_TEXT = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


class State(enum.Enum):
    """The connection's life: CONNECTING, OPEN, CLOSING (a close frame sent or received), CLOSED."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class WSMessage(NamedTuple):
    """One event: `type`, `data` (str, bytes, close code, exception or None) and `extra`.

    As in aiohttp: TEXT has `str` data, BINARY/PING/PONG `bytes`, CLOSE the close code with the reason in
    `extra`, ERROR the exception. In fragment mode, TEXT/BINARY/CONTINUATION carry `extra=True` on the
    frame that ends the message and `False` before it.
    """

    type: WSMsgType
    data: Any
    extra: Any

    def json(self, *, loads: Callable[[Any], Any] = json.loads) -> Any:
        """Decode a TEXT or BINARY message's data as JSON."""
        return loads(self.data)


# Singletons for the events that carry nothing, so that emitting them allocates nothing.
CLOSED_MESSAGE = WSMessage(WSMsgType.CLOSED, None, None)
CLOSING_MESSAGE = WSMessage(WSMsgType.CLOSING, None, None)
