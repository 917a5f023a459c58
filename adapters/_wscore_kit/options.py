"""The options of every adapter's `connect()`, `serve()` and `accept_socket()`, declared once.

An adapter's public callable takes `**options: Unpack[ClientKwargs]` (or `ServerKwargs`, `AcceptKwargs`)
and builds `ClientOptions.of(options)` / `ServerOptions.of(options)`; `with_options` gives it the full
signature at run time (for `help()`, `inspect` and IDEs), so the names, types and defaults exist once
here. `tests/adapters/test_parity.py` checks every adapter's signatures and these declarations against
each other.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar

from wscore import DeflateOptions, WSConfig
from wscore.handshake import HeadersLike, SubprotocolSelector

from .api import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, WSTimeout, compress_options, make_config
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


class _EncodesAuth(Protocol):
    def encode(self) -> str: ...


BasicAuthLike = tuple[str, str] | _EncodesAuth
"""`auth=`: `(login, password)`, or an object whose `encode()` gives the Authorization value
(aiohttp's `BasicAuth`)."""

ParamValue = str | int | float
Params = Mapping[str, ParamValue] | Sequence[tuple[str, ParamValue]] | str
"""`params=`: query parameters appended to the URL's own, as aiohttp (yarl's `extend_query`) does."""

HANDSHAKE_HEADERS = {
    "upgrade": "the handshake sets it",
    "connection": "the handshake sets it",
    "sec-websocket-key": "the handshake sets it",
    "sec-websocket-version": "the handshake sets it",
    "sec-websocket-accept": "a server's header",
    "sec-websocket-protocol": "use protocols=",
    "sec-websocket-extensions": "use compress= (and client_notakeover=)",
}
"""Request headers `headers=` may not set (lowercase name → what to do instead)."""


class _CommonKwargs(TypedDict, total=False):
    protocols: Sequence[str]
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

    timeout: WSTimeout | float | None
    receive_timeout: float | None
    headers: HeadersLike | Mapping[str, str] | None
    origin: str | None
    ssl: ssl_module.SSLContext | bool | None
    server_hostname: str | None
    max_redirects: int
    max_attempts: int | None
    reconnect_delays: Callable[[], Iterator[float]]
    sock: socket.socket | None
    proxy: ProxyOption
    auth: BasicAuthLike | None
    params: Params | None
    method: str
    client_notakeover: bool
    decode_text: bool


class AcceptKwargs(_CommonKwargs, total=False):
    """The keyword arguments of a server's one connection (`accept_socket()`; see `ServerOptions`)."""

    timeout: WSTimeout | None
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
    def connection_args(self) -> dict[str, Any]:
        """The keyword arguments every adapter's connection class takes from the options."""
        return {
            "max_queue": self.max_queue,
            "max_queue_bytes": self.max_queue_bytes,
            "autoclose": self.autoclose,
            # The default bound of each receive().
            "receive_timeout": None if self.timeout is None else self.timeout.receive,
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
    - aiohttp's other `ws_connect` arguments: `timeout` may be a number (the close timeout, with
      aiohttp's DeprecationWarning) and `receive_timeout` the receive bound (likewise); `auth`
      (`(login, password)` or `BasicAuth`; credentials in the URL do the same): `Authorization: Basic`;
      `params`: query parameters appended to the URL's; `method`: GET only (RFC 6455 §4.1);
      `client_notakeover`: offer client_no_context_takeover; `decode_text=False`: TEXT data as
      UTF-8 bytes (still checked). `headers` replace our defaults (User-Agent) name by name.
    """

    receive_timeout: float | None = None
    """aiohttp's deprecated spelling of `timeout=WSTimeout(receive=...)`: folded into `timeout`
    (with aiohttp's DeprecationWarning), then None."""
    headers: HeadersLike | Mapping[str, str] | None = None
    origin: str | None = None
    ssl: ssl_module.SSLContext | bool | None = None
    server_hostname: str | None = None
    max_redirects: int = 10
    max_attempts: int | None = None
    reconnect_delays: Callable[[], Iterator[float]] = backoff
    sock: socket.socket | None = None
    proxy: ProxyOption = True
    auth: BasicAuthLike | None = None
    params: Params | None = None
    method: str = "GET"
    client_notakeover: bool = False
    decode_text: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        timeout: object = self.timeout
        if timeout is not None and not isinstance(timeout, WSTimeout):
            if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
                # stacklevel: __post_init__ < __init__ < of() < connect() < the caller.
                warnings.warn(
                    "parameter 'timeout' of type 'float' is deprecated, please use "
                    "'timeout=WSTimeout(close=...)'",
                    DeprecationWarning,
                    stacklevel=5,
                )
                timeout = WSTimeout(close=float(timeout))
            elif hasattr(timeout, "ws_receive") and hasattr(timeout, "ws_close"):
                # aiohttp's ClientWSTimeout(ws_receive=, ws_close=)
                timeout = WSTimeout(receive=timeout.ws_receive, close=timeout.ws_close)
            else:
                raise TypeError(f"timeout must be a WSTimeout, a number or None, not {timeout!r}")
        if self.receive_timeout is not None:
            warnings.warn(
                "float parameter 'receive_timeout' is deprecated, please use parameter "
                "'timeout=WSTimeout(receive=...)'",
                DeprecationWarning,
                stacklevel=5,
            )
            # aiohttp's rule: receive_timeout wins over timeout's receive bound, its close stays.
            timeout = replace(timeout or WSTimeout(), receive=self.receive_timeout)
            object.__setattr__(self, "receive_timeout", None)  # folded: replace() does not warn again
        object.__setattr__(self, "timeout", timeout)
        ssl = self.ssl
        if ssl is not None and not isinstance(ssl, bool):
            import ssl as ssl_module  # only for a value that is neither None nor a bool

            if not isinstance(ssl, ssl_module.SSLContext):
                raise TypeError(f"ssl should be SSLContext, bool or None, got {ssl!r} instead.")
        if not isinstance(self.method, str) or self.method.upper() != "GET":
            raise ValueError(
                f"method {self.method!r}: the opening handshake is a GET request (RFC 6455 §4.1), "
                "which every server checks; no other method can upgrade"
            )
        if self.client_notakeover and compress_options(self.compress) is None:
            raise ValueError("client_notakeover offers a permessage-deflate parameter: it needs compress=")
        auth = self.auth
        if auth is not None and not _is_auth(auth):
            raise TypeError("BasicAuth() tuple is required instead")
        check_headers(self.headers, origin=self.origin, auth=auth is not None)

    @property
    def config(self) -> WSConfig:
        """The core's configuration; `client_notakeover` added to the deflate offer."""
        config = super().config
        if self.client_notakeover and config.compress is not None:
            config = replace(config, compress=replace(config.compress, client_no_context_takeover=True))
        return config


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


def _is_auth(auth: object) -> bool:
    if isinstance(auth, (str, bytes)):
        return False
    if callable(getattr(auth, "encode", None)):
        return True  # aiohttp's BasicAuth (a tuple with encode()) and the like
    return isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(part, str) for part in auth)


def header_name(name: str | bytes) -> str:
    """A header name as str (bytes are latin-1, as HTTP is)."""
    return name.decode("latin-1") if isinstance(name, bytes) else name


def check_headers(headers: HeadersLike | Mapping[str, str] | None, *, origin: str | None, auth: bool) -> None:
    """`ValueError` for what `connect(headers=)` may not hold: a name twice (one value per name,
    case-insensitive), a header the handshake owns, Origin besides `origin=`, Authorization
    besides `auth=` (aiohttp's wording)."""
    if not headers:
        return
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    seen: set[str] = set()
    for raw, _value in pairs:
        name = header_name(raw)
        lower = name.lower()
        if lower in seen:
            raise ValueError(f"header {name!r} given twice in headers=: one value per name")
        seen.add(lower)
        owned = HANDSHAKE_HEADERS.get(lower)
        if owned is not None:
            raise ValueError(f"header {name!r} belongs to the WebSocket handshake: {owned}")
        if lower == "origin" and origin is not None:
            raise ValueError(f"header {name!r} in headers= and origin= together: give one (origin=)")
        if lower == "authorization" and auth:
            raise ValueError(
                "Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"
            )


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
