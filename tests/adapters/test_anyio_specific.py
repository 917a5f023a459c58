"""wscore_anyio in anyio's idiom, on both of anyio's backends: task_status, task groups, cancellation.

Exact back-pressure and cancellation points use `wrap_stream` over an in-memory byte stream built
from zero-buffer memory object streams (every write waits for the reader: a lockstep pipe), with a
bare wscore core as the peer.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.abc
import pytest

import wscore_anyio
from _wscore_kit.driver import HIGH_WATER
from wscore import Connection, WSConfig, WSMsgType, WSTimeoutError, encode_frame

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test runs on both backends."""
    backend: str = request.param
    return backend


class PipeStream(anyio.abc.ByteStream):
    """One end of an in-memory byte pipe; `send` returns once the other end has taken the bytes."""

    def __init__(
        self,
        send: anyio.abc.ObjectSendStream[bytes],
        receive: anyio.abc.ObjectReceiveStream[bytes],
    ) -> None:
        self._send = send
        self._receive = receive

    async def send(self, item: bytes) -> None:
        await self._send.send(bytes(item))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._receive.receive()

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def pipe() -> tuple[PipeStream, PipeStream]:
    """Two connected ends of a lockstep byte pipe."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](0)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](0)
    return PipeStream(a_send, a_receive), PipeStream(b_send, b_receive)


class Peer:
    """The other end of a pipe, speaking WebSocket through a bare core."""

    def __init__(self, stream: PipeStream, *, client: bool) -> None:
        self.stream = stream
        self.core = Connection(client=client)

    async def read_events(self) -> list[tuple[WSMsgType, object]]:
        try:
            self.core.receive_data(await self.stream.receive())
        except anyio.EndOfStream:
            self.core.receive_eof()
        return [(m.type, m.data) for m in self.core.events()]


@asynccontextmanager
async def echo_server(**kw: Any) -> AsyncIterator[tuple[str, wscore_anyio.WSServer]]:
    async with anyio.create_task_group() as tg:
        server = await tg.start(partial(wscore_anyio.serve, wscore_anyio.echo_handler, "127.0.0.1", 0, **kw))
        yield f"ws://127.0.0.1:{server.port}/", server
        tg.cancel_scope.cancel()


async def test_serve_with_task_status_and_cancel_closes_with_1001() -> None:
    with anyio.fail_after(10):
        async with echo_server() as (url, server):
            assert isinstance(server, wscore_anyio.WSServer)
            async with wscore_anyio.connect(url) as ws:
                await ws.send_str("hello")
                assert await ws.receive_str() == "hello"
                assert len(server.connections) == 1
                server.cancel_scope.cancel()
                msg = await ws.receive()
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
                assert (await ws.receive()).type is WSMsgType.CLOSED


async def test_cancelling_the_async_with_body_closes_with_1001() -> None:
    seen: list[int | None] = []

    async def handler(ws: wscore_anyio.WebSocket) -> None:
        async for _msg in ws:
            pass
        seen.append(ws.close_code)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            server = await tg.start(partial(wscore_anyio.serve, handler, "127.0.0.1", 0))
            with anyio.CancelScope() as scope:
                async with wscore_anyio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    scope.cancel()
                    await ws.receive()  # cancelled here
            assert scope.cancelled_caught
            assert ws.close_code == 1001
            tg.cancel_scope.cancel()
    assert seen == [1001]


async def test_body_exception_propagates_unwrapped() -> None:
    with anyio.fail_after(10):
        async with echo_server() as (url, _server):
            with pytest.raises(KeyError):
                async with wscore_anyio.connect(url):
                    raise KeyError("not an ExceptionGroup")


async def test_move_on_after_around_receive_keeps_the_connection() -> None:
    with anyio.fail_after(10):
        async with echo_server() as (url, _server), wscore_anyio.connect(url) as ws:
            with anyio.move_on_after(0.05) as scope:
                await ws.receive()
            assert scope.cancelled_caught
            await ws.send_str("after")
            assert await ws.receive_str() == "after"
            with pytest.raises(WSTimeoutError):
                await ws.receive(timeout=0.05)
            assert not ws.closed


async def test_cancelled_send_under_back_pressure_never_writes_half_a_frame() -> None:
    ours, theirs = pipe()
    peer = Peer(theirs, client=False)
    big = bytes(range(256)) * (HIGH_WATER // 256 + 1)
    with anyio.fail_after(10):
        async with wscore_anyio.wrap_stream(ours, Connection(client=True)) as ws:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ws.send_bytes, big)  # waits: nobody reads the pipe
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
            events: list[tuple[WSMsgType, object]] = []

            async def peer_reads() -> None:
                while (WSMsgType.TEXT, "next") not in events:
                    events.extend(await peer.read_events())

            async with anyio.create_task_group() as tg:
                tg.start_soon(peer_reads)
                await ws.send_str("next")
            # The cancelled message was still sent whole, then the next one.
            assert events == [(WSMsgType.BINARY, big), (WSMsgType.TEXT, "next")]
            assert peer.core.exception is None
            await theirs.aclose()


async def test_cancelled_send_on_a_full_socket_still_sends_the_frame_whole() -> None:
    """Over a socket (written from the calling task on trio, through the writer on asyncio): cancelled
    part-way through a frame, the socket full, the rest still goes out whole, then the next."""
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours = await anyio.abc.SocketStream.from_socket(a)
    core = Connection(client=False)
    big = bytes(range(256)) * 4096  # 1 MiB: far more than the two socket buffers hold
    events: list[tuple[WSMsgType, object]] = []

    async def peer_reads(theirs: anyio.abc.SocketStream) -> None:
        while (WSMsgType.TEXT, "next") not in events:
            core.receive_data(await theirs.receive())
            events.extend((m.type, m.data) for m in core.events())

    with anyio.fail_after(10):
        async with wscore_anyio.wrap_stream(ours, Connection(client=True)) as ws:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ws.send_bytes, big)
                    await anyio.wait_all_tasks_blocked()
                    # Cancelled in the middle of the frame: its start is on the wire, not its end.
                    assert b.recv(1, socket.MSG_PEEK) == b"\x82"
                    assert ws.write_buffer_size() > 0
                    scope.cancel()
            theirs = await anyio.abc.SocketStream.from_socket(b)
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer_reads, theirs)
                await ws.send_str("next")
            assert events == [(WSMsgType.BINARY, big), (WSMsgType.TEXT, "next")]
            assert core.exception is None
            await theirs.aclose()


async def test_a_full_queue_stops_reading_the_stream() -> None:
    """Reading pauses with `max_queue` messages unread and resumes at a quarter of it (the kit's one
    back-pressure rule), not once per message."""
    ours, theirs = pipe()
    sent = 0

    async def peer_sends() -> None:
        nonlocal sent
        for i in range(10):
            await theirs.send(encode_frame(1, str(i).encode()))
            sent += 1

    with anyio.fail_after(10):
        async with wscore_anyio.wrap_stream(ours, Connection(client=True), max_queue=4) as ws:
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer_sends)
                await anyio.wait_all_tasks_blocked()
                assert sent == 4  # the fifth write waits: the queue is full, nobody reads
                assert [await ws.receive_str() for _ in range(2)] == ["0", "1"]
                await anyio.wait_all_tasks_blocked()
                assert sent == 4  # two unread: still paused
                assert await ws.receive_str() == "2"
                await anyio.wait_all_tasks_blocked()
                assert sent == 7  # one unread (a quarter): reading resumed until full again
                assert [await ws.receive_str() for _ in range(7)] == [str(i) for i in range(3, 10)]
            await theirs.aclose()


async def test_broadcast_skips_a_slow_client() -> None:
    fast_ours, fast_theirs = pipe()
    slow_ours, slow_theirs = pipe()  # nobody ever reads this one
    fast_peer = Peer(fast_theirs, client=True)
    rounds = HIGH_WATER // 4096 + 4
    received: list[object] = []
    quick_close = WSConfig(close_timeout=0.2)

    async def fast_reads() -> None:
        events: list[tuple[WSMsgType, object]] = []
        while not any(t is WSMsgType.CLOSE for t, _ in events):
            events = await fast_peer.read_events()
            received.extend(d for t, d in events if t is WSMsgType.TEXT)
        await fast_theirs.send(fast_peer.core.data_to_send())  # the close's answer

    with anyio.fail_after(10):
        async with (
            anyio.create_task_group() as tg,
            wscore_anyio.wrap_stream(fast_ours, Connection(client=False)) as fast,
            wscore_anyio.wrap_stream(slow_ours, Connection(client=False, config=quick_close)) as slow,
        ):
            tg.start_soon(fast_reads)
            skipped: list[wscore_anyio.WebSocket] = []
            for _ in range(rounds):
                skipped += wscore_anyio.broadcast([fast, slow], "x" * 4096)
                await anyio.wait_all_tasks_blocked()
            assert fast not in skipped
            assert slow in skipped
            assert slow.write_buffer_size() > HIGH_WATER
            await slow.close()  # the slow peer never reads: dropped after the close timeout
            assert slow.close_code == 1006
        assert fast.close_code == 1000
        await fast_theirs.aclose()
        await slow_theirs.aclose()
        assert received == ["x" * 4096] * rounds


# On trio only (wscore_trio, and wscore_anyio on its trio backend): both accept in the kit's
# accept_forever. On asyncio, serve() runs on asyncio's server, which retries by itself.
@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("module_name", ["wscore_anyio", "wscore_trio"])
async def test_accept_running_out_of_descriptors_does_not_end_the_server(
    anyio_backend: str, module_name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE from accept() (too many open files) is logged once, retried shortly after, and the
    server keeps serving, as trio.serve_listeners does (asyncio's server does the same by itself).
    On anyio's trio backend it used to end the server and every connection with it."""
    import errno

    import trio
    from anyio._backends._trio import TCPSocketListener

    import wscore_trio

    module: Any = wscore_anyio if module_name == "wscore_anyio" else wscore_trio
    listener_class: Any = TCPSocketListener if module is wscore_anyio else trio.SocketListener
    failures = 3
    original = listener_class.accept

    async def accept(self: Any) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await original(self)

    monkeypatch.setattr(listener_class, "accept", accept)
    async with anyio.create_task_group() as tg:
        server = await tg.start(partial(module.serve, module.echo_handler, "127.0.0.1", 0))
        with anyio.fail_after(10):
            async with module.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send_str("served")
                assert await ws.receive_str() == "served"
        tg.cancel_scope.cancel()
    assert failures == 0
    assert [r.getMessage() for r in caplog.records if "accept() failed" in r.getMessage()] == [
        "accept() failed ([Errno 24] Too many open files); retrying every 0.1 s"
    ]


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("module_name", ["wscore_anyio", "wscore_trio"])
async def test_a_stopped_server_frees_its_port_while_its_connections_close(
    anyio_backend: str, module_name: str
) -> None:
    """Cancelling a server closes its listeners at once, not after its handlers end: a restarted server
    can bind the port while the old one's connections still close. wscore_anyio on trio kept its
    listener until every handler had finished."""
    import wscore_trio

    module: Any = wscore_anyio if module_name == "wscore_anyio" else wscore_trio
    told = anyio.Event()
    release = anyio.Event()

    async def handler(ws: Any) -> None:
        await ws.receive()  # CLOSING, once the server stops
        told.set()
        await release.wait()

    async with anyio.create_task_group() as tg:
        server = await tg.start(partial(module.serve, handler, "127.0.0.1", 0))
        port = server.port
        async with module.connect(f"ws://127.0.0.1:{port}/"):
            server.cancel_scope.cancel()
            with anyio.fail_after(10):
                await told.wait()
            await anyio.wait_all_tasks_blocked()  # the accept loops have ended
            probe = socket.socket()
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(("127.0.0.1", port))  # EADDRINUSE while the old listener is open
            finally:
                probe.close()
            release.set()


_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def test_a_reply_sent_while_messages_wait_unread_leaves_without_another_receive() -> None:
    """On asyncio, answers sent while received messages still wait are joined into one write; one
    must still go out when the handler does something else than receive the next message."""
    got_reply = anyio.Event()
    done = anyio.Event()
    second: list[object] = []

    async def handler(ws: wscore_anyio.WebSocket) -> None:
        first = await ws.receive_bytes()
        await ws.send_bytes(b"re:" + first)
        await got_reply.wait()  # not receive(): the second message waits unread meanwhile
        second.append(await ws.receive_bytes(timeout=0))  # it had arrived with the first
        done.set()

    peer = Connection(client=True)  # the client side of an open connection, after our own upgrade
    peer.send_bytes(b"one")
    peer.send_bytes(b"two")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            server = await tg.start(partial(wscore_anyio.serve, handler, "127.0.0.1", 0))
            async with await anyio.connect_tcp("127.0.0.1", server.port) as tcp:
                await tcp.send(_UPGRADE)
                response = b""
                while b"\r\n\r\n" not in response:
                    response += await tcp.receive()
                assert response.startswith(b"HTTP/1.1 101 ")
                await tcp.send(peer.data_to_send())  # both frames in one write
                peer.receive_data(response.partition(b"\r\n\r\n")[2])
                while not (events := [(m.type, m.data) for m in peer.events()]):
                    peer.receive_data(await tcp.receive())
                assert events == [(WSMsgType.BINARY, b"re:one")]
                got_reply.set()
                await done.wait()
            tg.cancel_scope.cancel()
    assert second == [b"two"]


async def test_concurrent_connections_each_read_their_own_bytes() -> None:
    """On asyncio, every connection of a thread reads into one shared buffer: what arrives before a
    connection takes over (with the handshake) and frames split across reads must be copied out of
    it before the next read, whichever connection that read is for."""
    big = bytes(range(256)) * 1200  # 300 KiB: more than one read of the shared 256 KiB buffer

    async def handler(ws: wscore_anyio.WebSocket) -> None:
        name = ws.request.path if ws.request is not None else "?"
        for i in range(5):  # at once: they may come with the 101 response
            await ws.send_str(f"{name}:{i}")
        await ws.send_bytes(name.encode() + big)
        await ws.receive()

    results: dict[int, list[object]] = {}

    async def client(url: str, n: int) -> None:
        async with wscore_anyio.connect(f"{url}{n}", max_msg_size=1 << 20) as ws:
            results[n] = [(await ws.receive()).data for _ in range(6)]

    with anyio.fail_after(20):
        async with serving(handler) as url, anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(client, url, n)
    for n in range(10):
        assert results[n] == [*(f"/{n}:{i}" for i in range(5)), f"/{n}".encode() + big]


@asynccontextmanager
async def serving(handler: Any) -> AsyncIterator[str]:
    """`handler` served on 127.0.0.1; yields the ws:// URL up to the path."""
    async with anyio.create_task_group() as tg:
        server = await tg.start(partial(wscore_anyio.serve, handler, "127.0.0.1", 0))
        yield f"ws://127.0.0.1:{server.port}/"
        tg.cancel_scope.cancel()


def test_under_a_plain_asyncio_run_a_close_arriving_unread_is_answered() -> None:
    """wscore_anyio inside `asyncio.run()` (how an asyncio application or framework runs anyio code,
    without `anyio.run()`): the peer's close arrives while messages wait unread, which arms the
    close-reply timer from the transport's callback, outside any task, where anyio can make no task
    or cancel scope. The server answers it (1000) and the event loop reports no error."""
    loop_errors: list[dict[str, Any]] = []
    got: list[object] = []

    async def main() -> int | None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
        release = anyio.Event()
        handled = anyio.Event()

        async def handler(ws: wscore_anyio.WebSocket) -> None:
            await release.wait()  # the messages and the close wait unread meanwhile
            got.extend([msg.data async for msg in ws])
            handled.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                server = await tg.start(
                    partial(
                        wscore_anyio.serve, handler, "127.0.0.1", 0, timeout=wscore_anyio.WSTimeout(close=0.4)
                    )
                )
                async with wscore_anyio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    await ws.send_str("one")
                    await ws.send_str("two")
                    # Answered by the server's timer after half its close timeout: nobody reads.
                    await ws.close()
                    code = ws.close_code
                release.set()
                await handled.wait()
                tg.cancel_scope.cancel()
        return code

    assert asyncio.run(main()) == 1000
    assert got == ["one", "two"]
    assert loop_errors == []
