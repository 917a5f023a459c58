"""`_AsyncioStream`: a TCP (or TLS) connection on asyncio's transport and protocol, as an anyio byte
stream that the kit's driver can also run in push mode."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, cast

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from _wscore_kit.api import read_buffer
from _wscore_kit.driver import (
    HIGH_WATER,
    StreamWebSocket,
)

# Bytes an _AsyncioStream holds unread (before a connection is attached) before it pauses reading.
_BUFFER_LIMIT = 256 * 1024


def _nodelay(sock: Any) -> None:
    # asyncio sets TCP_NODELAY only on sockets created with IPPROTO_TCP; socket.socket() and
    # socket.create_server() make proto-0 sockets, and Nagle would hold small frames back.
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _AsyncioStream(anyio.abc.ByteStream, asyncio.BufferedProtocol):
    """A TCP (or TLS) connection on asyncio's transport and protocol, as an anyio byte stream.

    It is its own asyncio protocol, a buffered one: the transport reads into a buffer shared by the
    thread's connections. Until a connection is attached (`attach`, the driver's push mode) received
    bytes are copied out for `receive()` (the opening handshake reads them so); after, each read goes
    straight to the connection's core, as in `wscore_asyncio`: no reader task, no pause/resume of
    reading per read.
    """

    def __init__(self, on_connect: Callable[[_AsyncioStream], None] | None = None) -> None:
        self._on_connect = on_connect
        self._transport: asyncio.Transport | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._read_paused = False
        self._eof = False
        self._lost = False
        self._exc: BaseException | None = None
        self._closed = False  # closed by us (aclose)
        self._waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._sink: StreamWebSocket | None = None
        self._read_view: memoryview | None = None

    # -- asyncio.BufferedProtocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.set_write_buffer_limits(high=HIGH_WATER)
        # Here, not in __init__: this runs on the loop's thread, whose buffer the transport will fill.
        self._read_view = read_buffer()
        _nodelay(transport.get_extra_info("socket"))
        if self._on_connect is not None:
            self._on_connect(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view  # type: ignore[return-value]  # set in connection_made

    def buffer_updated(self, nbytes: int) -> None:
        data = self._read_view[:nbytes]  # type: ignore[index]
        sink = self._sink
        if sink is not None:
            sink._push_data(data)
        else:  # kept for receive(): a copy, as the buffer is reused
            self.data_received(bytes(data))

    def data_received(self, data: bytes) -> None:
        """Bytes from a transport that does not read into `get_buffer` (the kit's TLS acceptor hands
        over what came with the handshake so)."""
        sink = self._sink
        if sink is not None:
            sink._push_data(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > _BUFFER_LIMIT and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        if self._sink is not None:
            self._sink._push_eof()
        else:
            self._eof = True
            self._wake()
        # None: the transport closes itself; the core has what it needs.

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._exc = exc
        self._write_paused = False
        if self._sink is not None:
            self._sink._push_lost(exc)
        self._wake()
        for fut in (self._drain, self._lost_waiter):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._sink is not None:
            self._sink._push_pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._sink is not None:
            self._sink._push_resume_writing()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- PushSource (_wscore_kit.backend) ----------------------------------------------------------------

    @property
    def transport(self) -> asyncio.Transport:
        """The asyncio transport."""
        assert self._transport is not None
        return self._transport

    def attach(self, ws: StreamWebSocket) -> None:
        """Hand every received byte to `ws` from now on, starting with the unread ones."""
        self._sink = ws
        # The transport looks data_received up per call: one frame less per read.
        self.data_received = ws._push_data  # type: ignore[method-assign]
        if self._read_paused:
            self._read_paused = False
            if not self._lost:
                self.transport.resume_reading()
        while self._buffer:
            ws._push_data(self._buffer.popleft())
        self._buffered = 0
        if self._write_paused:
            ws._push_pause_writing()
        if self._eof:
            ws._push_eof()
        if self._lost:
            ws._push_lost(self._exc)

    # -- anyio.abc.ByteStream ----------------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        buffer = self._buffer
        while not buffer:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._lost and self._exc is not None and not self._eof:
                raise anyio.BrokenResourceError from self._exc
            if self._eof or self._lost:
                raise anyio.EndOfStream
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunk = buffer.popleft()
        if len(chunk) > max_bytes:
            buffer.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self._buffered -= len(chunk)
        if self._read_paused and self._buffered <= _BUFFER_LIMIT // 4 and not self._lost:
            self._read_paused = False
            self.transport.resume_reading()
        return chunk

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._lost:
            raise anyio.BrokenResourceError from self._exc
        self.transport.write(item)
        while self._write_paused and not self._lost:
            drain = self._drain = asyncio.get_running_loop().create_future()
            await drain

    async def send_eof(self) -> None:
        if not self._lost:
            self.transport.write_eof()

    async def aclose(self) -> None:
        self._closed = True
        if self._lost or self._transport is None:
            return
        self._transport.close()
        try:
            if not self._lost:
                waiter = self._lost_waiter = asyncio.get_running_loop().create_future()
                await waiter
        except BaseException:
            self._transport.abort()  # cancelled (anyio.aclose_forcefully): drop it now
            raise

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        transport = self._transport
        if transport is None:
            return {}
        info = transport.get_extra_info
        attributes: dict[Any, Callable[[], Any]] = {
            SocketAttribute.raw_socket: lambda: info("socket"),
            SocketAttribute.local_address: lambda: info("sockname"),
            SocketAttribute.remote_address: lambda: info("peername"),
            SocketAttribute.local_port: lambda: info("sockname")[1],
        }
        ssl_object = info("ssl_object")
        if ssl_object is not None:
            attributes[TLSAttribute.ssl_object] = lambda: ssl_object
            attributes[TLSAttribute.peer_certificate] = ssl_object.getpeercert
        return attributes
