"""What every adapter shares and none of them should write again: URL parsing, aiohttp-style options
turned into a `WSConfig`, argument checks and typed receives. Pure Python, no I/O.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from wscore import DeflateOptions, WSConfig, WSMessage, WSMessageTypeError, WSMsgType
from wscore.frames import build_close_payload

if TYPE_CHECKING:
    import ssl as ssl_module

__all__ = [
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE",
    "HTTPResponse",
    "WSTimeout",
    "WSURL",
    "check_http_response",
    "client_ssl_context",
    "close_args",
    "compress_flag",
    "compress_options",
    "control_payload",
    "decode_json",
    "expect_bytes",
    "expect_str",
    "header_pairs",
    "make_config",
    "parse_url",
    "read_buffer",
    "text_or_bytes",
]

# The read buffer asyncio transports fill (asyncio's own read size): one per thread, shared by its
# connections (`BufferedProtocol.get_buffer`); the core copies what it keeps before `buffer_updated`
# returns. Left to itself a transport allocates 256 KiB per read, which glibc serves with an
# mmap/munmap pair: about 15 us a read, half the cost of a 16 B round trip (issue #16).
_READ_BUFFER_SIZE = 256 * 1024
_thread_local = threading.local()


def read_buffer() -> memoryview:
    """This thread's read buffer for asyncio transports (wscore_asyncio, wscore_anyio on asyncio)."""
    view: memoryview | None = getattr(_thread_local, "read_buffer", None)
    if view is None:
        view = _thread_local.read_buffer = memoryview(bytearray(_READ_BUFFER_SIZE))
    return view


DEFAULT_MAX_QUEUE = 16
"""Received messages an adapter holds before it stops reading from the socket (back-pressure)."""

DEFAULT_MAX_QUEUE_BYTES = 8 * 1024 * 1024
"""Bytes (of binary data; characters of text) of received messages held before reading stops."""


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
    """The data of a TEXT message (bytes with `decode_text=False`, as in aiohttp); anything else
    raises `WSMessageTypeError` (aiohttp's behaviour)."""
    if msg.type is not WSMsgType.TEXT:
        raise WSMessageTypeError(f"Received message {msg.type}:{msg.data!r} is not WSMsgType.TEXT")
    data: str = msg.data
    return data


def expect_bytes(msg: WSMessage) -> bytes:
    """The data of a BINARY message; anything else raises `WSMessageTypeError`."""
    if msg.type is not WSMsgType.BINARY:
        raise WSMessageTypeError(f"Received message {msg.type}:{msg.data!r} is not WSMsgType.BINARY")
    return bytes(msg.data)


def decode_json(msg: WSMessage, loads: Callable[[str], Any] = json.loads) -> Any:
    """`receive_json`: a TEXT message's data through `loads` (aiohttp accepts TEXT only)."""
    return loads(expect_str(msg))


def compress_flag(compress: bool | int | None) -> bool | None:
    """A send's per-message `compress=` override for the core: None keeps the connection's default,
    0/False sends this message uncompressed, anything else (True, a window size) compresses it."""
    if compress is None:
        return None
    if not isinstance(compress, int):
        raise TypeError(f"compress must be a bool, an int or None, not {type(compress).__name__}")
    return bool(compress)


def control_payload(data: object) -> bytes:
    """A ping/pong payload as bytes (a str is UTF-8 encoded); `TypeError` for anything else and
    `ValueError` over 125 bytes (RFC 6455 §5.5)."""
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
    else:
        raise TypeError(f"ping/pong payload must be bytes or str, not {type(data).__name__}")
    if len(payload) > 125:
        raise ValueError("ping/pong payload over 125 bytes (RFC 6455 §5.5)")
    return payload


def close_args(code: object, message: object) -> tuple[int | None, str]:
    """`close(code=, message=)` checked and converted for the core: `(code, reason)`.

    `message` may be bytes (aiohttp) or str; `TypeError` for wrong types, `ValueError` for a code that
    may not be sent or a reason over 123 bytes (RFC 6455 §5.5.1, §7.4).
    """
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise TypeError(f"close code must be an int or None, not {type(code).__name__}")
    if isinstance(message, (bytes, bytearray, memoryview)):
        try:
            reason = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("close message must be valid UTF-8") from None
    elif isinstance(message, str):
        reason = message
    else:
        raise TypeError(f"close message must be bytes or str, not {type(message).__name__}")
    build_close_payload(code, reason)  # raises ValueError for what the RFC forbids
    return code, reason


def header_pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Extra headers given as a mapping (aiohttp) or as `(name, value)` pairs, as a list of pairs."""
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


HTTPResponse = tuple[int, Any, bytes]
"""What a `process_request` hook returns to answer without upgrading: `(status, headers, body)`."""


def check_http_response(response: object) -> tuple[int, list[tuple[str, str]], bytes]:
    """Validate a `process_request` result that is not None: `(status, headers, body)` where headers
    is a mapping or pairs and body bytes or str (UTF-8). `TypeError` if it is something else."""
    if not isinstance(response, tuple) or len(response) != 3:
        raise TypeError(f"process_request must return None or (status, headers, body), not {response!r}")
    status, headers, body = response
    if not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, (bytes, bytearray)):
        raise TypeError(f"body must be bytes or str, not {type(body).__name__}")
    return status, header_pairs(headers), bytes(body)


def client_ssl_context(ssl: ssl_module.SSLContext | bool | None) -> ssl_module.SSLContext:
    """aiohttp's `ssl=` for a wss:// URL: a context as is, True/None the default verification,
    False no verification at all (self-signed test servers only)."""
    # Imported here, when a wss:// URL needs it: the kit imports no I/O module (tests/test_layers.py).
    import ssl as ssl_module

    if isinstance(ssl, ssl_module.SSLContext):
        return ssl
    if ssl is False:
        context = ssl_module.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
        return context
    return ssl_module.create_default_context()
