"""TLS on an asyncio server, with connections a stopping server can close while in their handshake.

`loop.create_server(ssl=...)` keeps a connection to itself until its TLS handshake is over: the
application's protocol hears of it only then, and the server (Python < 3.13 has no
`Server.close_clients()`, uvloop none) cannot close it, so a client that opened TCP and sent nothing
or half a ClientHello outlived the server by up to the handshake timeout. Here the server listens for
plain TCP and runs each handshake itself with `loop.start_tls`, keeping the raw transport until the
handshake ends, so that `close()` can abort it.

Used by the asyncio-based adapters (wscore_asyncio, and wscore_anyio on asyncio). The kit loads no I/O
library at module level: asyncio is imported where it runs, and the protocol is duck-typed, as
asyncio's transports allow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import asyncio
    import ssl

__all__ = ["TLSAcceptor", "supported"]


def supported(loop: asyncio.AbstractEventLoop) -> bool:
    """False on uvloop: its transports start reading after `connection_made` even when it paused
    them, so the ClientHello reaches the raw protocol before start_tls's TLS layer (measured with
    uvloop 0.23); there the server keeps `create_server(ssl=...)`."""
    return type(loop).__module__.partition(".")[0] != "uvloop"


class TLSAcceptor:
    """Protocol factory for `loop.create_server(acceptor.accept)` (no `ssl=`): TLS per connection, then
    `make_protocol()` gets the TLS transport as if asyncio's server had made it."""

    def __init__(
        self,
        make_protocol: Callable[[], Any],  # an asyncio.Protocol or BufferedProtocol
        context: ssl.SSLContext,
        handshake_timeout: float | None,
    ) -> None:
        self._make_protocol = make_protocol
        self._context = context
        self._timeout = handshake_timeout or None  # None: asyncio's default (60 s)
        self._handshakes: set[asyncio.Task[None]] = set()
        self._closing = False

    def accept(self) -> asyncio.Protocol:
        """The protocol of one accepted TCP connection until its TLS handshake ends."""
        return cast("asyncio.Protocol", _Handshake(self))

    async def close(self) -> None:
        """Abort the connections still in their TLS handshake and wait until they are gone."""
        import asyncio

        self._closing = True
        handshakes = list(self._handshakes)
        for task in handshakes:
            task.cancel()  # start_tls closes the raw transport; _run aborts it
        if handshakes:
            await asyncio.wait(handshakes)


class _Handshake:
    """The raw transport's protocol until TLS is up, then the TLS layer's until the application's
    protocol is attached: bytes, EOF and loss that arrive in between are kept and handed on."""

    def __init__(self, acceptor: TLSAcceptor) -> None:
        self._acceptor = acceptor
        self._app: Any = None
        self._data = bytearray()
        self._eof = False
        self._lost = False
        self._exc: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import asyncio

        acceptor = self._acceptor
        if acceptor._closing:
            transport.abort()  # type: ignore[attr-defined]
            return
        # The ClientHello stays in the socket for start_tls's TLS protocol (start_tls pauses reading
        # too, but only when it runs: a task step later).
        transport.pause_reading()  # type: ignore[attr-defined]
        task = asyncio.get_running_loop().create_task(self._run(transport))
        acceptor._handshakes.add(task)
        task.add_done_callback(acceptor._handshakes.discard)

    async def _run(self, raw: asyncio.BaseTransport) -> None:
        import asyncio

        acceptor = self._acceptor
        try:
            tls = await asyncio.get_running_loop().start_tls(
                raw,
                cast("asyncio.Protocol", self),
                acceptor._context,
                server_side=True,
                ssl_handshake_timeout=acceptor._timeout,
            )
        except BaseException:
            # A failed, timed-out or (the server stops) cancelled handshake: that client's only.
            raw.abort()  # type: ignore[attr-defined]
            return
        if tls is None:  # pragma: no cover - the raw transport was closed under start_tls
            raw.abort()  # type: ignore[attr-defined]
            return
        app = self._app = acceptor._make_protocol()
        tls.set_protocol(app)
        app.connection_made(tls)
        if self._data:
            app.data_received(bytes(self._data))
            self._data.clear()
        if self._eof and not app.eof_received():
            tls.close()
        if self._lost:
            app.connection_lost(self._exc)

    # -- asyncio.Protocol (the TLS layer's app protocol until the application's is attached) ----------

    def data_received(self, data: bytes) -> None:
        self._data += data

    def eof_received(self) -> bool:
        self._eof = True
        return True  # keep the transport open until the application's protocol decides

    def connection_lost(self, exc: Exception | None) -> None:
        if self._app is not None:  # scheduled by the TLS layer before the application took over
            self._app.connection_lost(exc)
            return
        self._lost = True
        self._exc = exc

    def pause_writing(self) -> None:
        pass  # nothing is written before the application's protocol is attached

    def resume_writing(self) -> None:
        pass
