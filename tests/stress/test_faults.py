"""Faults, on every adapter and in both roles (issue #7): a peer whose TCP connection drops in the
middle of a frame, a peer that stops answering pings, a peer that never finishes the close handshake,
a server handler that raises, and tasks cancelled while blocked in `receive()` or `send_*()`.

The misbehaving peer is a raw socket driven by a wscore core in the peer's role (`RawPeer`): it does
a correct handshake and correct framing, then exactly the fault under test. Everything it receives
is parsed by that core, so a half-written frame from our side shows up as a protocol error or a
message that never completes. Times are read from the event loop's clock (`anyio.current_time()`),
the clock the adapters' timers run on, and printed in the stress figures table at the end of the run.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import struct
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import anyio.abc
import pytest

from wscore import (
    ClientConnection,
    Connection,
    ConnectionClosed,
    ServerConnection,
    State,
    WSConfig,
    WSMessage,
    WSMsgType,
    WSTimeoutError,
)
from wscore.frames import OP_BINARY, OP_CONTINUATION, OP_TEXT, encode_frame

from ..adapters.conftest import Adapter
from .conftest import record_figure

pytestmark = pytest.mark.anyio

# The peer's core parses whatever we send, of any size, and shows pings and closes as events
# (autoping/autoclose off): it answers nothing unless a test sends the answer itself.
PEER_CONFIG = WSConfig(
    autoping=False, autoclose=False, max_message_size=None, open_timeout=None, close_timeout=None
)
# A timer that is due has to wait for the event loop to get round to it: a wake-up or two on a
# shared 2-core machine (measured at a few ms when idle; tens of ms while other suites run).
SCHEDULING_ALLOWANCE = 0.1
# A lower bound may be missed by a clock tick: asyncio runs a timer that is due within its clock's
# resolution, and the core's deadlines are sums of floats.
CLOCK_SLACK = 0.001
# Small kernel socket buffers (the kernel doubles them) on both ends of the connections whose
# back-pressure a test relies on, so that a few MiB are sure to block the sender.
SOCKET_BUFFER = 64 * 1024
ROLES = ["client", "server"]
HEARTBEAT = 0.3
CLOSE_TIMEOUT = 0.3
# A message bigger than the kernel's buffers on both ends plus the adapters' high-water mark (64 KiB),
# so that sending it to a peer that does not read blocks.
BIG = 4 * 1024 * 1024


def figure(name: str, adapter: Adapter, role: str, value: float, bound: float | None = None) -> None:
    """Keep one measurement for the end-of-run table (tests/stress/conftest.py)."""
    limit = "" if bound is None else f" (bound {bound:.3f})"
    record_figure(name, f"{adapter.name}/{role}", f"{value:.3f}{limit}")


def open_sockets() -> set[str]:
    """The sockets this process has open, as "socket:[inode]" (Linux's /proc; other descriptors, such
    as the /dev/null that libuv opens with a loop's first listening socket, are not leaks)."""
    links = {_readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    return {link for link in links if link.startswith("socket:")}


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # the descriptor listdir itself used, closed since
        return ""


@asynccontextmanager
async def no_leaks() -> AsyncIterator[None]:
    """The body leaves no socket open and no object that warns about a leak when collected (an
    unclosed socket or transport raises ResourceWarning from its finalizer)."""
    gc.collect()  # what earlier tests left behind is not this test's leak
    before = open_sockets()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]
    left = open_sockets() - before
    assert not left, f"sockets left open: {left}"


@dataclass
class RawPeer:
    """The other end of a connection: a raw TCP stream plus a core in the peer's role that parses
    what arrives. It sends only what a test tells it to."""

    stream: anyio.abc.SocketStream
    core: Connection
    messages: list[WSMessage] = field(default_factory=list)
    """Every event the core produced from what was read (PING, CLOSE, TEXT, ...), in order."""
    ended: str | None = None
    """How the stream ended when read: "eof", "reset", or None while open."""
    times: dict[WSMsgType, float] = field(default_factory=dict)
    """When each kind of event first arrived (event loop clock)."""

    def frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
        """One frame as this peer must send it (masked when the peer is the client)."""
        return encode_frame(opcode, payload, fin=fin, masked=self.core.client)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    def _feed(self, data: bytes) -> None:
        self.core.receive_data(data, anyio.current_time())
        for msg in self.core.events():
            self.times.setdefault(msg.type, anyio.current_time())
            self.messages.append(msg)

    async def read(self, max_bytes: int = 65536) -> bool:
        """Read once and parse; False once the stream has ended (EOF or reset)."""
        if self.ended is not None:
            return False
        try:
            data = await self.stream.receive(max_bytes)
        except anyio.EndOfStream:
            self.ended = "eof"
        except (anyio.BrokenResourceError, ConnectionError):
            self.ended = "reset"
        else:
            self._feed(data)
            return True
        self.core.receive_eof()
        return False

    async def read_exactly(self, n: int) -> None:
        """Read exactly `n` bytes (the peer takes that much of what is waiting, no more)."""
        while n > 0:
            data = await self.stream.receive(n)
            n -= len(data)
            self._feed(data)

    async def read_until(self, done: Callable[[], bool]) -> None:
        """Read until `done()` holds or the stream ends."""
        while not done() and await self.read():
            pass

    async def read_to_end(self) -> None:
        """Read until the other side closes the connection."""
        while await self.read():
            pass

    def data_peek(self) -> list[str | bytes]:
        """The data messages received so far."""
        return [m.data for m in self.messages if m.type in (WSMsgType.TEXT, WSMsgType.BINARY)]

    def data(self) -> list[str | bytes]:
        """The data messages received so far, taken out of `messages`."""
        data = self.data_peek()
        self.messages = [m for m in self.messages if m.type not in (WSMsgType.TEXT, WSMsgType.BINARY)]
        return data

    async def drop(self, how: str) -> None:
        """End the TCP connection without a close frame: "rst" (SO_LINGER 0 s, then close, so the
        kernel sends a reset) or "eof" (FIN: a plain end of stream; the socket stays open for
        reading, as a close() with unread data would send a reset instead)."""
        if how == "rst":
            sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await self.stream.aclose()
        else:
            await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


def small_buffers(sock: Any) -> None:
    """Make a raw peer's kernel buffers small (see `SOCKET_BUFFER`)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)


def shrink_send_buffer(ws: Any) -> None:
    """Make our side's kernel send buffer small, so that a few MiB block the sender for sure (the
    kernel grows it up to net.ipv4.tcp_wmem's maximum, 4 MiB here, otherwise)."""
    sock = ws.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)


async def accept_raw(listener: anyio.abc.SocketListener) -> RawPeer:
    """Accept one connection and answer its upgrade request: a raw server peer."""
    stream = await listener.accept()
    core = ServerConnection(config=PEER_CONFIG)
    while core.request is None:
        core.receive_data(await stream.receive())
    core.accept()
    await stream.send(core.data_to_send())
    return RawPeer(stream, core)


async def connect_raw(port: int) -> RawPeer:
    """Connect and upgrade: a raw client peer."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    small_buffers(stream.extra(anyio.abc.SocketAttribute.raw_socket))
    core = ClientConnection(f"127.0.0.1:{port}", "/", config=PEER_CONFIG)
    await stream.send(core.data_to_send())
    while core.state is State.CONNECTING:
        core.receive_data(await stream.receive())
    assert core.state is State.OPEN
    return RawPeer(stream, core)


@asynccontextmanager
async def ws_and_peer(adapter: Adapter, role: str, **kw: Any) -> AsyncIterator[tuple[Any, RawPeer]]:
    """Our side (`role`: "client", from `adapter.connect`; "server", the handler's connection of
    `adapter.run_server`) with a `RawPeer` at the other end. `kw` are our side's options.

    On exit the peer closes TCP first, then our side is left (the server's handler returns), so no
    close handshake has to time out; the conftest's context managers then check for leaks.
    """
    async with AsyncExitStack() as stack:
        if role == "client":
            listeners = await stack.enter_async_context(
                await anyio.create_tcp_listener(local_host="127.0.0.1")
            )
            listener = cast(anyio.abc.SocketListener, listeners.listeners[0])  # one address: one listener
            small_buffers(listener.extra(anyio.abc.SocketAttribute.raw_socket))  # inherited on accept
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            peers: list[RawPeer] = []
            accepted = anyio.Event()

            async def accept() -> None:
                peers.append(await accept_raw(listener))
                accepted.set()

            # The task group outlives the connection (exit is LIFO): no misnested cancel scopes.
            group = await stack.enter_async_context(anyio.create_task_group())
            group.start_soon(accept)
            ws = await stack.enter_async_context(adapter.connect(f"ws://127.0.0.1:{port}/", **kw))
            await accepted.wait()
            peer = peers[0]
            stack.push_async_callback(peer.aclose)
        else:
            handed: list[Any] = []
            opened = anyio.Event()
            release = anyio.Event()

            async def handler(ws: Any) -> None:
                handed.append(ws)
                opened.set()
                await release.wait()

            url = await stack.enter_async_context(adapter.run_server(handler, **kw))
            stack.callback(release.set)
            peer = await connect_raw(int(url.rsplit(":", 1)[1]))
            stack.push_async_callback(peer.aclose)
            await opened.wait()
            ws = handed[0]
        yield ws, peer


# -- the TCP connection drops -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["rst", "eof"])
@pytest.mark.parametrize("role", ROLES)
async def test_peer_drops_mid_frame(adapter: Adapter, role: str, how: str) -> None:
    """The peer sends half a frame, then resets (or closes) TCP. Our side's `receive()` returns
    CLOSED (not a hang, not the half message), `close_code` is 1006 and `exception()` is the
    documented `ConnectionClosed(1006, reason)` with a reason; sending then raises `ConnectionClosed`;
    no socket, transport or task is left behind."""
    async with no_leaks(), ws_and_peer(adapter, role) as (ws, peer):
        frame = peer.frame(OP_BINARY, os.urandom(10_000))
        await peer.send(frame[: len(frame) // 2])
        await peer.drop(how)
        with anyio.fail_after(5):
            msg = await ws.receive()
        assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR)
        assert ws.close_code == 1006
        exc = ws.exception()
        assert isinstance(exc, ConnectionClosed), exc
        assert exc.code == 1006
        assert exc.reason, "exception() must say why the connection ended"
        assert ws.closed
        with anyio.fail_after(5):
            assert (await ws.receive()).type is WSMsgType.CLOSED  # and stays closed
        with pytest.raises(ConnectionClosed):
            await ws.send_str("too late")


@pytest.mark.parametrize("how", ["rst", "eof"])
@pytest.mark.parametrize("role", ROLES)
async def test_peer_drops_while_we_send(adapter: Adapter, role: str, how: str) -> None:
    """The other direction of a drop: our side is blocked sending a large message to a peer that
    does not read, and the peer resets TCP or ends its side of it (EOF, still not reading). The
    send ends: at once with `ConnectionClosed` after a reset; raising or returning after an EOF once
    the close timeout has passed, which bounds how long a closing connection tries to flush to a
    peer that does not read. `receive()` returns CLOSED at once, with 1006 and `exception()` set."""
    timeout = adapter.module.WSTimeout(receive=None, close=CLOSE_TIMEOUT)
    async with no_leaks(), ws_and_peer(adapter, role, timeout=timeout) as (ws, peer):
        shrink_send_buffer(ws)
        sending = anyio.Event()
        outcome: list[str] = []
        ended: list[float] = []

        async def sender() -> None:
            sending.set()
            try:
                await ws.send_bytes(bytes(BIG))
            except ConnectionClosed:
                outcome.append("ConnectionClosed")
            else:
                outcome.append("returned")
            ended.append(anyio.current_time())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(sender)
                await sending.wait()
                assert not outcome and ws.write_buffer_size() > 0, "the send must be blocked"
                await peer.read_exactly(1000)  # part of the frame is on the wire
                await peer.drop(how)
                dropped = anyio.current_time()
                msg = await ws.receive()
                received = anyio.current_time()
        assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR)
        assert ws.close_code == 1006
        exc = ws.exception()
        assert isinstance(exc, ConnectionClosed) and exc.code == 1006 and exc.reason, exc
        figure(f"drop_while_sending_receive_s[{how}]", adapter, role, received - dropped)
        bound = CLOSE_TIMEOUT + SCHEDULING_ALLOWANCE
        figure(f"drop_while_sending_send_ends_s[{how}]", adapter, role, ended[0] - dropped, bound)
        assert ended[0] - dropped <= bound
        record_figure(f"drop_while_sending_outcome[{how}]", f"{adapter.name}/{role}", ", ".join(outcome))
        if how == "rst":
            # The frame cannot have been delivered: every adapter says so, as wscore_asyncio does.
            # (After an EOF the peer's kernel may still take the rest, and the send may return.)
            assert outcome == ["ConnectionClosed"], outcome


# -- a peer that stops answering pings ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
async def test_silent_peer_detected_within_one_and_a_half_heartbeats(adapter: Adapter, role: str) -> None:
    """A peer that completed the handshake, sends one message and then stays silent (it keeps the
    socket open and reads, but answers no ping) is dropped 1.5 heartbeats after its last data: a
    ping after one heartbeat of silence, then the default pong timeout of half a heartbeat. Our
    side reports 1006 with a `WSTimeoutError`; the peer saw the ping, then the connection end."""
    async with no_leaks(), ws_and_peer(adapter, role, heartbeat=HEARTBEAT) as (ws, peer):
        # Our side takes the time of the data when it reads it: after `sending`, perhaps before `sent`.
        sending = anyio.current_time()
        await peer.send(peer.frame(OP_TEXT, b"last words"))
        sent = anyio.current_time()
        async with anyio.create_task_group() as group:
            group.start_soon(peer.read_to_end)
            with anyio.fail_after(5):
                assert await ws.receive_str() == "last words"
                msg = await ws.receive()
            detected = anyio.current_time()
        elapsed = detected - sent
        bound = 1.5 * HEARTBEAT + SCHEDULING_ALLOWANCE
        figure("heartbeat_detection_s", adapter, role, elapsed, bound)
        assert detected - sending >= 1.5 * HEARTBEAT - CLOCK_SLACK, "dropped before its pong was due"
        assert elapsed <= bound
        assert msg.type in (WSMsgType.ERROR, WSMsgType.CLOSED)
        assert ws.close_code == 1006
        assert isinstance(ws.exception(), WSTimeoutError)
        assert WSMsgType.PING in peer.times, "the heartbeat ping never reached the peer"
        assert peer.times[WSMsgType.PING] - sending >= HEARTBEAT - CLOCK_SLACK
        assert peer.ended is not None, "our side must close the silent peer's connection"


# -- a peer that never completes the close handshake --------------------------------------------


@pytest.mark.parametrize(
    ("role", "peer_does"),
    [("client", "nothing"), ("client", "answers_but_keeps_tcp_open"), ("server", "nothing")],
)
async def test_close_returns_within_the_close_timeout(adapter: Adapter, role: str, peer_does: str) -> None:
    """`close()` against a peer that never answers our close frame (or, as the server of our
    client, answers it but never closes TCP, RFC 6455 §7.1.1) returns within the close timeout.
    Unanswered: code 1006 and a `WSTimeoutError`; answered: the handshake did complete, code 1000
    and no exception. Either way the peer got our close frame (1000), then the connection end."""
    timeout = adapter.module.WSTimeout(receive=None, close=CLOSE_TIMEOUT)
    async with no_leaks(), ws_and_peer(adapter, role, timeout=timeout) as (ws, peer):
        async with anyio.create_task_group() as group:

            async def peer_side() -> None:
                await peer.read_until(lambda: WSMsgType.CLOSE in peer.times)
                if peer_does == "answers_but_keeps_tcp_open":
                    peer.core.close(1000)
                    await peer.send(peer.core.data_to_send())
                await peer.read_to_end()

            group.start_soon(peer_side)
            started = anyio.current_time()
            with anyio.fail_after(5):
                assert await ws.close() is True
            elapsed = anyio.current_time() - started
        bound = CLOSE_TIMEOUT + SCHEDULING_ALLOWANCE
        figure(f"close_timeout_s[{peer_does}]", adapter, role, elapsed, bound)
        assert CLOSE_TIMEOUT - CLOCK_SLACK <= elapsed <= bound
        close_frames = [m for m in peer.messages if m.type is WSMsgType.CLOSE]
        assert [m.data for m in close_frames] == [1000]
        assert peer.ended is not None
        if peer_does == "nothing":
            assert ws.close_code == 1006
            assert isinstance(ws.exception(), WSTimeoutError)
        else:
            assert ws.close_code == 1000
            assert ws.exception() is None


# -- a server handler that raises ---------------------------------------------------------------


async def test_handler_error_closes_1011_and_spares_the_others(
    adapter: Adapter, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises closes its own connection with 1011 ("internal error") and the error is
    logged; three connections open at the time, each with a message in flight across the failure,
    get their echo afterwards, and a new connection is accepted and served."""

    async def handler(ws: Any) -> None:
        async for msg in ws:
            if msg.data == "boom":
                raise RuntimeError("handler failure (expected by the test)")
            if msg.data.startswith("wait:"):
                await boomed.wait()  # answer only after the other connection failed
            await ws.send_str(msg.data)

    boomed = anyio.Event()
    caplog.set_level(logging.ERROR)
    async with no_leaks(), adapter.run_server(handler) as url, AsyncExitStack() as stack:
        others = [await stack.enter_async_context(adapter.connect(url)) for _ in range(3)]
        with anyio.fail_after(10):
            for i, ws in enumerate(others):
                await ws.send_str(f"hello {i}")
                assert await ws.receive_str() == f"hello {i}"
                await ws.send_str(f"wait: {i}")
            async with adapter.connect(url) as failing:
                await failing.send_str("boom")
                msg = await failing.receive()
                assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1011, "internal error")
                assert failing.close_code == 1011
            boomed.set()
            for i, ws in enumerate(others):
                assert await ws.receive_str() == f"wait: {i}"
                assert not ws.closed
            async with adapter.connect(url) as late:
                await late.send_str("still serving")
                assert await late.receive_str() == "still serving"
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(failures) == 1 and "handler failed" in failures[0].getMessage()


# -- cancellation -------------------------------------------------------------------------------

# Where the blocked send is cancelled: before send_bytes is even called (its cancel scope is already
# cancelled), once it is blocked on back-pressure with nothing read by the peer, or after the peer
# has read that many bytes of the frame: 1 and 9 (inside the 10-byte, or masked 14-byte, header), 20
# (just into the payload), past the first 64 KiB, past 1 MiB. The frame is then partly written and
# the rest of it waits.
SEND_POINTS: list[str | int] = ["before_call", "blocked", 1, 9, 20, 65536 + 7, 1024 * 1024 + 3]


async def cancel_a_blocked_send(ws: Any, peer: RawPeer, payload: bytes, point: str | int) -> None:
    """Run `ws.send_bytes(payload)` in a task and cancel it at `point` (see `SEND_POINTS`); check
    that the send was blocked then, and that the cancellation ended it."""
    calling = anyio.Event()
    scopes: list[anyio.CancelScope] = []
    result: list[str] = []

    async def sender() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            if point == "before_call":
                scope.cancel()
            calling.set()
            await ws.send_bytes(payload)
        result.append("cancelled" if scope.cancelled_caught else "completed")

    async with anyio.create_task_group() as group:
        group.start_soon(sender)
        # The sender runs until it blocks before this task resumes: it is inside send_bytes now.
        await calling.wait()
        if isinstance(point, int):
            await peer.read_exactly(point)
        if point != "before_call":
            assert not result and ws.write_buffer_size() > 0, "the send must be blocked"
        scopes[0].cancel()
    assert result == ["cancelled"], (point, result)


@pytest.mark.parametrize("role", ROLES)
async def test_cancelled_send_leaves_no_half_frame(adapter: Adapter, role: str) -> None:
    """A task blocked in `send_bytes()` of a 4 MiB message to a peer that does not read is
    cancelled at each of `SEND_POINTS` in turn, on one connection. Each time the peer then reads
    everything and parses it with a core: once any byte of the frame was on the wire the whole
    message arrives intact, otherwise nothing of it; never a partial frame (the core would fail
    the stream or the next message would be garbage), and the connection stays usable: a text
    message sent after the cancellation arrives intact, right behind."""
    base = os.urandom(BIG)
    outcomes: list[str] = []
    async with no_leaks(), ws_and_peer(adapter, role) as (ws, peer):
        shrink_send_buffer(ws)
        for i, point in enumerate(SEND_POINTS):
            payload = i.to_bytes(4, "big") + base[4:]
            with anyio.fail_after(10):
                await cancel_a_blocked_send(ws, peer, payload, point)
                assert not ws.closed
                marker = f"after {point!r}"
                async with anyio.create_task_group() as group:
                    group.start_soon(peer.read_until, lambda marker=marker: marker in peer.data_peek())
                    await ws.send_str(marker)
            received = peer.data()
            assert peer.core.exception is None, peer.core.exception
            if point == "before_call" and received == [marker]:
                outcomes.append(f"{point}: not sent")
                continue
            assert len(received) == 2 and received[1] == marker, (point, [len(m) for m in received])
            assert received[0] == payload, f"cancelled at {point!r}: the message arrived corrupted"
            outcomes.append(f"{point}: sent whole")
        record_figure("send_cancel", f"{adapter.name}/{role}", f"outcomes={outcomes}")


@pytest.mark.parametrize("role", ROLES)
async def test_cancelled_receive_loses_nothing(adapter: Adapter, role: str) -> None:
    """A task blocked in `receive()` is cancelled at several moments of a message's arrival: with
    nothing sent yet, after the first byte of a frame, in the middle of a payload (splitting a
    two-byte UTF-8 character), between the fragments of a fragmented message, right after a whole
    frame (before our side read it), after it was delivered, and with two messages waiting. Every
    message sent is then received, in order and intact, by the following `receive()` calls."""
    text = "é" * 20_000  # 40,000 bytes of payload: several reads, every second byte mid-character
    sent: list[str] = []
    received: list[str] = []
    async with no_leaks(), ws_and_peer(adapter, role) as (ws, peer):

        async def receive_once(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
            with anyio.CancelScope() as scope:
                task_status.started(scope)
                msg = await ws.receive()
                assert msg.type is WSMsgType.TEXT, msg
                received.append(msg.data)

        points = ["idle", "first_byte", "mid_payload", "between_fragments", "whole", "delivered", "two"]
        for i, point in enumerate(points):
            message = f"{i} {point} {text}"
            payload = message.encode()
            frame = peer.frame(OP_TEXT, payload)
            sent.append(message)
            settle = True  # let our side take what was sent before cancelling
            if point == "idle":
                before, after = b"", frame
            elif point == "first_byte":
                before, after = frame[:1], frame[1:]
            elif point == "mid_payload":
                middle = len(payload) // 2
                middle += (payload[middle] & 0xC0) != 0x80  # onto the second byte of an "é"
                assert payload[middle] & 0xC0 == 0x80, "the cut must fall inside a character"
                cut = len(frame) - len(payload) + middle
                before, after = frame[:cut], frame[cut:]
            elif point == "between_fragments":
                thirds = [payload[:9999], payload[9999:20001], payload[20001:]]
                before = peer.frame(OP_TEXT, thirds[0], fin=False)
                before += peer.frame(OP_CONTINUATION, thirds[1], fin=False)
                after = peer.frame(OP_CONTINUATION, thirds[2])
            elif point == "whole":
                before, after, settle = frame, b"", False
            elif point == "delivered":
                before, after = frame, b""
            else:
                sent.append(f"{message} (second)")
                before = frame + peer.frame(OP_TEXT, sent[-1].encode())
                after, settle = b"", False
            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    scope = await group.start(receive_once)
                    if before:
                        await peer.send(before)
                    if settle:
                        await anyio.wait_all_tasks_blocked()
                    scope.cancel()
                if after:
                    await peer.send(after)
                while len(received) < len(sent):
                    msg = await ws.receive()
                    assert msg.type is WSMsgType.TEXT, (point, msg)
                    received.append(msg.data)
            assert received == sent, f"cancelled at {point!r}: a message was lost or corrupted"
        assert not ws.closed
