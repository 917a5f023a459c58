"""The options of every adapter's `connect()`, `serve()` and `accept_socket()`, declared once.

An adapter's public callable takes `**options: Unpack[ClientKwargs]` (or `ServerKwargs`, `AcceptKwargs`)
and builds `ClientOptions.of(options)` / `ServerOptions.of(options)`; `with_options` gives it the full
signature at run time (for `help()`, `inspect` and IDEs), so the names, types and defaults exist once
here. `tests/adapters/test_parity.py` checks every adapter's signatures and these declarations against
each other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from wscore import DeflateOptions, WSConfig
from wscore.handshake import HeadersLike, SubprotocolSelector

from .api import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, WSTimeout, make_config
from .proxy import ProxyOption
from .reconnect import backoff
from .server import Origins, ProcessRequest

if TYPE_CHECKING:  # annotations only: the kit imports no I/O module
    import socket
    import ssl as ssl_module

__all__ = [
    "AcceptKwargs",
    "ClientKwargs",
    "ClientOptions",
    "ServerKwargs",
    "ServerOptions",
    "with_options",
]

_MiB = 1024 * 1024
_F = TypeVar("_F", bound=Callable[..., Any])


class _CommonKwargs(TypedDict, total=False):
    protocols: Sequence[str]
    timeout: WSTimeout | None
    open_timeout: float | None
    heartbeat: float | None
    pong_timeout: float | None
    autoping: bool
    autoclose: bool
    compress: bool | int | DeflateOptions | None
    max_msg_size: int | None
    max_frame_size: int | None
    fragments: bool
    max_queue: int
    max_queue_bytes: int | None
    write_timeout: float | None


class ClientKwargs(_CommonKwargs, total=False):
    """The keyword arguments of every adapter's `connect()` (see `ClientOptions`)."""

    headers: HeadersLike | Mapping[str, str] | None
    origin: str | None
    ssl: ssl_module.SSLContext | bool | None
    server_hostname: str | None
    max_redirects: int
    max_attempts: int | None
    reconnect_delays: Callable[[], Iterator[float]]
    sock: socket.socket | None
    proxy: ProxyOption


class AcceptKwargs(_CommonKwargs, total=False):
    """The keyword arguments of a server's one connection (`accept_socket()`; see `ServerOptions`)."""

    select_subprotocol: SubprotocolSelector | None
    process_request: ProcessRequest | None
    extra_headers: HeadersLike
    origins: Origins | None
    ssl: ssl_module.SSLContext | None


class ServerKwargs(AcceptKwargs, total=False):
    """The keyword arguments of every adapter's `serve()` (see `ServerOptions`)."""

    shutdown_timeout: float
    sock: socket.socket | None
    backlog: int
    reuse_port: bool
    max_connections: int | None


_O = TypeVar("_O", bound="_Options")


@dataclass(frozen=True)
class _Options:
    """What the client's and the server's options share."""

    protocols: Sequence[str] = ()
    timeout: WSTimeout | None = None
    """`WSTimeout(receive=, close=)`: the default bound of each `receive()`, and of the close."""
    open_timeout: float | None = 10.0
    heartbeat: float | None = None
    pong_timeout: float | None = None
    autoping: bool = True
    autoclose: bool = True
    max_msg_size: int | None = 4 * _MiB
    max_frame_size: int | None = None
    fragments: bool = False
    """Deliver each frame as it arrives, for `receive_stream()`: `max_msg_size` then bounds what
    `receive()` joins, not a streamed message, and each frame is bounded by `max_frame_size`
    (default: `max_msg_size`)."""
    max_queue: int = DEFAULT_MAX_QUEUE
    max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES
    """Received data held unread (bytes of binary messages, characters of text) at which reading
    pauses, like `max_queue`; None: no byte bound."""
    write_timeout: float | None = 10.0
    """How long a send may wait for the peer to read (back-pressure) before the connection is
    dropped (1006, `WSTimeoutError` in `exception()`); None: forever."""
    compress: bool | int | DeflateOptions | None = 0

    @classmethod
    def of(cls: type[_O], values: Mapping[str, Any], *, only: Sequence[str] | None = None) -> _O:
        """The options from a callable's keyword arguments; `TypeError` for a name that is not one
        (or not one of `only`)."""
        allowed = set(only) if only is not None else {f.name for f in fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        return cls(**values)

    def __post_init__(self) -> None:
        if isinstance(self.protocols, str):
            raise TypeError("protocols must be a sequence of str, not a str")
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")

    @property
    def config(self) -> WSConfig:
        """The core's configuration."""
        return make_config(
            heartbeat=self.heartbeat,
            pong_timeout=self.pong_timeout,
            autoping=self.autoping,
            # The connection answers the peer's close when the application reads it (aiohttp's
            # rule, `connection_args`), not the core on arrival.
            autoclose=False,
            timeout=self.timeout,
            open_timeout=self.open_timeout,
            compress=self.compress,
            max_msg_size=self.max_msg_size,
            max_frame_size=self.max_frame_size,
            fragments=self.fragments,
        )

    @property
    def receive_timeout(self) -> float | None:
        """The default bound of each `receive()`."""
        return None if self.timeout is None else self.timeout.receive

    @property
    def connection_args(self) -> dict[str, Any]:
        """The keyword arguments every adapter's connection class takes from the options."""
        return {
            "max_queue": self.max_queue,
            "max_queue_bytes": self.max_queue_bytes,
            "autoclose": self.autoclose,
            "receive_timeout": self.receive_timeout,
            "write_timeout": self.write_timeout,
        }


@dataclass(frozen=True)
class ClientOptions(_Options):
    """What `connect()` takes besides the URL (aiohttp's `ws_connect` names).

    - `protocols`: subprotocols to offer; `headers`: extra request headers; `origin`: the Origin header.
    - `timeout=WSTimeout(receive=, close=)`: the default bound of each `receive()`, and of the close;
      `open_timeout`: TCP, TLS and the opening handshake.
    - `heartbeat`: ping after that many idle seconds; no pong within `pong_timeout` (default half of
      it) drops the connection. `autoping`, `autoclose`: as in aiohttp.
    - `compress`: offer permessage-deflate (True/15, a window size 9-14, or `DeflateOptions`).
    - `max_msg_size`: largest message accepted (0: no limit); `max_frame_size`: largest frame;
      `max_queue`: received messages held before reading from the socket pauses.
    - `write_timeout`: a send blocked by a peer that does not read drops the connection after that
      long (1006, `WSTimeoutError`); None: wait forever.
    - `max_redirects`: 301/302/303/307/308 answers followed (`_wscore_kit.redirect`).
    - `max_attempts`, `reconnect_delays`: `async for ws in connect(url)` gives up after that many
      failed attempts in a row (None: never) and waits those delays (`_wscore_kit.reconnect`).
    - `ssl`: an `SSLContext`, True (default verification) or False (none); `server_hostname`: the name
      the certificate must match; `sock`: an already connected socket to use instead of connecting.
    - `proxy`: an HTTP CONNECT (`http://user:pass@host:port`, `https://` with `ssl=` for both hops) or
      SOCKS (`socks5://`, `socks5h://`, `socks4://`, the `socks` extra) proxy URL; True (default):
      from the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, as urllib reads them);
      None: connect directly.
    """

    headers: HeadersLike | Mapping[str, str] | None = None
    origin: str | None = None
    ssl: ssl_module.SSLContext | bool | None = None
    server_hostname: str | None = None
    max_redirects: int = 10
    max_attempts: int | None = None
    reconnect_delays: Callable[[], Iterator[float]] = backoff
    sock: socket.socket | None = None
    proxy: ProxyOption = True


@dataclass(frozen=True)
class ServerOptions(_Options):
    """What `serve()` takes besides the handler and the address.

    - `process_request(request)`: return None to upgrade, or `(status, headers, body)` to answer with
      plain HTTP (a page, a health check, a 403). May be sync or async; one that raises is a 500.
    - `protocols`: the subprotocols we speak, in our order of preference; or
      `select_subprotocol(offered)`. `extra_headers`: added to every 101 response.
    - `origins`: the Origin values admitted (exact strings, or compiled patterns matched whole; `None`
      in the list admits requests without Origin); anything else gets 403. Default: no check.
    - `compress`: accept permessage-deflate when offered (default True).
    - `shutdown_timeout`: how long stopping the server waits for handlers before cancelling them.
    - `ssl`: an `SSLContext` for wss://; `sock`: a bound socket to use instead of host/port;
      `backlog`; `reuse_port`: SO_REUSEPORT, so that several processes accept on one port.
    - `max_connections`: connections served at once (handshaking or open); an upgrade beyond it gets
      503 with Retry-After, logged once per burst. Default: no limit.
    - The others are `ClientOptions`'.
    """

    compress: bool | int | DeflateOptions | None = True
    select_subprotocol: SubprotocolSelector | None = None
    process_request: ProcessRequest | None = None
    extra_headers: HeadersLike = ()
    origins: Origins | None = None
    shutdown_timeout: float = 10.0
    ssl: ssl_module.SSLContext | None = None
    sock: socket.socket | None = None
    backlog: int = 100
    reuse_port: bool = False
    max_connections: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reuse_port:
            import socket as socket_module  # the kit loads no I/O module until a server is made

            if not hasattr(socket_module, "SO_REUSEPORT"):
                raise ValueError("reuse_port needs SO_REUSEPORT, which this platform does not have")


ACCEPT_OPTIONS = tuple(AcceptKwargs.__annotations__)
"""The names `accept_socket()` takes: a server's options less those of listening."""


def with_options(options: type[_Options], only: Sequence[str] | None = None) -> Callable[[_F], _F]:
    """Decorate a callable that takes `**options`: its run-time signature lists the options' fields
    (all, or `only` these) as keyword-only parameters with their defaults."""

    def decorate(fn: _F) -> _F:
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params.extend(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if f.default is MISSING else f.default,
                annotation=f.type,
            )
            for f in fields(options)
            if only is None or f.name in only
        )
        fn.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return fn

    return decorate
