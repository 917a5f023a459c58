"""The client side of the stream driver (`driver.py`): trio's and anyio's `connect()` and `wrap_stream()`,
made once by `stream_client()` from an adapter's `open_stream`."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from wscore import (
    ClientConnection,
    Connection,
    HandshakeError,
    State,
    WSTimeoutError,
)

from .api import (
    DEFAULT_MAX_QUEUE,
    WSURL,
)
from .backend import IOBackend
from .client import client_connection, prepare_client
from .driver import StreamWebSocket
from .options import ClientKwargs, ClientOptions, with_options
from .reconnect import StreamConnect
from .redirect import follow_redirects

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Connect", "Wrap", "connect_stream", "stream_client", "wrap_stream"]

_W = TypeVar("_W", bound=StreamWebSocket)


@asynccontextmanager
async def connect_stream(
    ws_class: type[StreamWebSocket],
    open_stream: Callable[[ClientOptions, WSURL], Awaitable[Any]],
    url: str,
    options: ClientOptions,
    io: IOBackend | None = None,
) -> AsyncIterator[Any]:
    """The body of every adapter's `connect()`: `open_stream(options, parsed_url)` (TCP, TLS) and the opening
    handshake within `open_timeout` (`WSTimeoutError`), then the connection for the `async with` body.
    `io` overrides `ws_class.io` (an adapter's primitives for the running event loop). Redirects are
    followed (`redirect.follow_redirects`)."""
    if io is None:
        io = ws_class.io
    stream, conn = await follow_redirects(partial(_client_handshake, io, open_stream), url, options)
    ws = ws_class(stream, conn, io=io, **options.connection_args)
    ws._decode_text = options.decode_text
    async with ws.running() as running:
        yield running


async def _client_handshake(
    io: IOBackend,
    open_stream: Callable[[ClientOptions, WSURL], Awaitable[Any]],
    url: str,
    options: ClientOptions,
) -> tuple[Any, ClientConnection]:
    """One connection attempt: the stream and the core connection once the upgrade succeeded."""
    open_timeout = options.open_timeout
    parsed, conn = client_connection(url, options)
    stream: Any = None
    try:
        with io.cancel_scope(
            deadline=io.current_time() + open_timeout if open_timeout else math.inf
        ) as scope:
            stream = await open_stream(options, parsed)
            await io.send(stream, conn.data_to_send())
            while conn.state is State.CONNECTING:
                data = await io.receive(stream)
                if data:
                    conn.receive_data(data, io.current_time())
                else:
                    conn.receive_eof()
    except io.stream_errors as exc:
        if stream is not None:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
        if isinstance(exc, OSError) and stream is None:
            raise  # could not connect at all: the OS's error says why
        raise HandshakeError(f"connection lost during the opening handshake: {exc!r}") from exc
    except BaseException:
        if stream is not None:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
        raise
    if scope.cancelled_caught:
        if stream is not None:
            with io.cancel_scope(shield=True):
                await io.aclose(stream)
        raise WSTimeoutError(f"opening handshake not finished within {open_timeout} s")
    return stream, conn


def wrap_stream(
    ws_class: type[_W],
    stream: Any,
    conn: Connection,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    receive_timeout: float | None = None,
    write_timeout: float | None = 10.0,
    io: IOBackend | None = None,
) -> AbstractAsyncContextManager[_W]:
    """Run `conn` (a core connection past its handshake) over an already connected `stream`: the
    embedding path. A `ServerConnection` just accepted still holds its 101 response, written first."""
    if conn.state is State.CONNECTING:
        raise ValueError("the connection's handshake is not done: accept() it first")
    ws = ws_class(
        stream,
        conn,
        max_queue=max_queue,
        receive_timeout=receive_timeout,
        write_timeout=write_timeout,
        io=io,
    )
    return ws.running(server=not conn.client)


_Wc_co = TypeVar("_Wc_co", bound=StreamWebSocket, covariant=True)


class Connect(Protocol[_Wc_co]):
    """An adapter's `connect()`."""

    def __call__(self, url: str, **options: Unpack[ClientKwargs]) -> StreamConnect[_Wc_co]: ...


class Wrap(Protocol[_Wc_co]):
    """An adapter's `wrap_stream()`."""

    def __call__(
        self,
        stream: Any,
        conn: Connection,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        receive_timeout: float | None = None,
        write_timeout: float | None = 10.0,
    ) -> AbstractAsyncContextManager[_Wc_co]: ...


def stream_client(
    ws_class: type[_W],
    open_stream: Callable[[ClientOptions, WSURL], Awaitable[Any]],
    io_of: Callable[[], IOBackend] | None = None,
) -> tuple[Connect[_W], Wrap[_W]]:
    """An adapter's `connect()` and `wrap_stream()`, from its connection class, how it opens a
    stream (TCP, TLS) and, when its primitives depend on the running event loop, `io_of()`."""

    @with_options(ClientOptions)
    def connect(url: str, **options: Unpack[ClientKwargs]) -> StreamConnect[_W]:
        """Open a client connection to a ws:// or wss:// URL, as an async context manager.

        The options are `ClientOptions`' (aiohttp's `ws_connect` names): `ssl` an `SSLContext` (False:
        no verification), `server_hostname` the name the certificate must match (default: the URL's
        host), `sock` an already connected socket (the URL still gives the Host header and TLS name).
        A refused upgrade raises `HandshakeError`; `open_timeout` bounds TCP, TLS and handshake
        (`WSTimeoutError`). Leaving the block closes the connection (1001 if cancelled). Redirects
        are followed (`max_redirects`); `async for ws in connect(url)` reconnects after each drop
        (`_wscore_kit.reconnect`).
        """
        opts = ClientOptions.of(options)  # a wrong option fails here, before anything else
        url, opts = prepare_client(url, opts)
        io = io_of() if io_of is not None else ws_class.io
        return StreamConnect(partial(connect_stream, ws_class, open_stream, url, opts, io), io, opts)

    def wrap(
        stream: Any,
        conn: Connection,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        receive_timeout: float | None = None,
        write_timeout: float | None = 10.0,
    ) -> AbstractAsyncContextManager[_W]:
        """Run a core connection whose handshake is done (`wscore.Connection(client=..., ...)` after
        another framework's upgrade, or an accepted `ServerConnection`) over an already connected
        stream, as an async context manager (the embedding path)."""
        io = io_of() if io_of is not None else None
        return wrap_stream(
            ws_class,
            stream,
            conn,
            max_queue=max_queue,
            receive_timeout=receive_timeout,
            write_timeout=write_timeout,
            io=io,
        )

    connect.__name__ = connect.__qualname__ = "connect"
    wrap.__name__ = wrap.__qualname__ = "wrap_stream"
    return connect, wrap
