"""What every adapter shares and none of them should write again: URL parsing, aiohttp-style options
turned into a `WSConfig`, argument checks and typed receives. Pure Python, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._types import WSMessage, WSMsgType
from .config import WSConfig
from .errors import WSMessageTypeError
from .extensions import DeflateOptions

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "WSTimeout",
    "WSURL",
    "compress_options",
    "expect_bytes",
    "expect_str",
    "make_config",
    "parse_url",
    "text_or_bytes",
]

DEFAULT_MAX_QUEUE = 16
"""Received messages an adapter holds before it stops reading from the socket (back-pressure)."""


@dataclass(frozen=True)
class WSTimeout:
    """aiohttp's `ClientWSTimeout`: `receive` bounds each `receive()` (None: wait forever), `close` the
    close handshake."""

    receive: float | None = None
    close: float | None = 10.0


@dataclass(frozen=True)
class WSURL:
    """A parsed ws:// or wss:// URL."""

    secure: bool
    host: str
    port: int
    target: str

    @property
    def host_header(self) -> str:
        """The Host header's value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> WSURL:
    """Split a ws:// or wss:// URL (RFC 6455 §3); raises `ValueError` saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a WebSocket URL: the scheme must be ws or wss")
    if parts.fragment:
        raise ValueError(f"{url!r} has a fragment, which a WebSocket URL may not have (RFC 6455 §3)")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    secure = parts.scheme == "wss"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WSURL(secure, parts.hostname, port or (443 if secure else 80), target)


def compress_options(compress: bool | int | DeflateOptions | None) -> DeflateOptions | None:
    """aiohttp's `compress` argument as `DeflateOptions`: 0/False/None off, True or 15 on, 9–14 a
    smaller window for the server's messages to us, or `DeflateOptions` as they are."""
    if compress is None or compress is False or compress == 0:
        return None
    if isinstance(compress, DeflateOptions):
        return compress
    if compress is True or compress == 15:
        return DeflateOptions()
    if isinstance(compress, int) and 8 <= compress <= 15:
        return DeflateOptions(server_max_window_bits=compress)
    raise ValueError(f"compress must be a bool, 0, a window size 8-15 or DeflateOptions, not {compress!r}")


def make_config(
    *,
    heartbeat: float | None = None,
    pong_timeout: float | None = None,
    autoping: bool = True,
    autoclose: bool = True,
    timeout: WSTimeout | None = None,
    open_timeout: float | None = 10.0,
    compress: bool | int | DeflateOptions | None = 0,
    max_msg_size: int | None = 4 * 1024 * 1024,
    max_frame_size: int | None = None,
    fragments: bool = False,
) -> WSConfig:
    """A `WSConfig` from the keyword arguments every adapter's `connect` and `serve` take."""
    close_timeout = (timeout or WSTimeout()).close
    return WSConfig(
        autoping=autoping,
        autoclose=autoclose,
        heartbeat=heartbeat or None,
        pong_timeout=pong_timeout,
        close_timeout=close_timeout or None,
        open_timeout=open_timeout or None,
        max_message_size=max_msg_size or None,  # aiohttp: 0 means no limit
        max_frame_size=max_frame_size,
        fragments=fragments,
        compress=compress_options(compress),
    )


def text_or_bytes(data: object, kind: str) -> None:
    """Raise `TypeError` unless `data` fits `send_str` (`kind="str"`) or `send_bytes` (`"bytes"`)."""
    if kind == "str":
        if not isinstance(data, str):
            raise TypeError(f"data argument must be str, not {type(data).__name__}")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data argument must be bytes-like, not {type(data).__name__}")


def expect_str(msg: WSMessage) -> str:
    """The data of a TEXT message; anything else raises `WSMessageTypeError` (aiohttp's behaviour)."""
    if msg.type is not WSMsgType.TEXT:
        raise WSMessageTypeError(f"Received message {msg.type.name}:{msg.data!r} is not TEXT")
    return str(msg.data)


def expect_bytes(msg: WSMessage) -> bytes:
    """The data of a BINARY message; anything else raises `WSMessageTypeError`."""
    if msg.type is not WSMsgType.BINARY:
        raise WSMessageTypeError(f"Received message {msg.type.name}:{msg.data!r} is not BINARY")
    return bytes(msg.data)


def decode_json(msg: WSMessage, loads: Callable[[str], Any] = json.loads) -> Any:
    """`receive_json`: a TEXT message's data through `loads` (aiohttp accepts TEXT only)."""
    return loads(expect_str(msg))
