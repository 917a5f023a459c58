"""The options of every adapter's `connect()` and `serve()`, declared once.

Each adapter's public callables spell the keyword arguments out (for `help()`, IDEs and type
checkers) and hand them to `ClientOptions.of(locals())` / `ServerOptions.of(locals())`;
`tests/adapters/test_options.py` compares every adapter's signatures with the fields below, names and
defaults, and fails on any drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

from wscore import DeflateOptions, WSConfig
from wscore.handshake import HeadersLike, SubprotocolSelector

from .api import DEFAULT_MAX_QUEUE, WSTimeout, make_config
from .server import ProcessRequest

if TYPE_CHECKING:  # annotations only: the kit imports no I/O module
    import socket
    import ssl as ssl_module

__all__ = ["ClientOptions", "ServerOptions"]

_MiB = 1024 * 1024


_O = TypeVar("_O", bound="_Options")


class _Options:
    """What the client's and the server's options share (the fields are the subclasses')."""

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
    max_queue: int

    @classmethod
    def of(cls: type[_O], values: Mapping[str, Any]) -> _O:
        """The options from a callable's `locals()`: its other arguments (url, handler, host, ...)
        are ignored."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})  # type: ignore[arg-type]

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
            autoclose=self.autoclose,
            timeout=self.timeout,
            open_timeout=self.open_timeout,
            compress=self.compress,
            max_msg_size=self.max_msg_size,
            max_frame_size=self.max_frame_size,
        )

    @property
    def receive_timeout(self) -> float | None:
        """The default bound of each `receive()`."""
        return None if self.timeout is None else self.timeout.receive


@dataclass(frozen=True)
class ClientOptions(_Options):
    """What `connect()` takes besides the URL (aiohttp's `ws_connect` names)."""

    protocols: Sequence[str] = ()
    headers: HeadersLike | Mapping[str, str] | None = None
    origin: str | None = None
    timeout: WSTimeout | None = None
    open_timeout: float | None = 10.0
    heartbeat: float | None = None
    pong_timeout: float | None = None
    autoping: bool = True
    autoclose: bool = True
    compress: bool | int | DeflateOptions | None = 0
    max_msg_size: int | None = 4 * _MiB
    max_frame_size: int | None = None
    max_queue: int = DEFAULT_MAX_QUEUE
    ssl: ssl_module.SSLContext | bool | None = None
    server_hostname: str | None = None
    sock: socket.socket | None = None


@dataclass(frozen=True)
class ServerOptions(_Options):
    """What `serve()` takes besides the handler and the address."""

    protocols: Sequence[str] = ()
    select_subprotocol: SubprotocolSelector | None = None
    process_request: ProcessRequest | None = None
    extra_headers: HeadersLike = ()
    timeout: WSTimeout | None = None
    open_timeout: float | None = 10.0
    heartbeat: float | None = None
    pong_timeout: float | None = None
    autoping: bool = True
    autoclose: bool = True
    compress: bool | int | DeflateOptions | None = True
    max_msg_size: int | None = 4 * _MiB
    max_frame_size: int | None = None
    max_queue: int = DEFAULT_MAX_QUEUE
    shutdown_timeout: float = 10.0
    ssl: ssl_module.SSLContext | None = None
    sock: socket.socket | None = None
    backlog: int = 100
    reuse_port: bool = False
