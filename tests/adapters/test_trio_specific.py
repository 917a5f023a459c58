"""wscore_trio in trio's idiom: task_status, nurseries, cancellation, MockClock, memory streams.

Most tests run the connection over `trio.testing` in-memory streams with a raw wscore core as the
peer, so back-pressure and cancellation points are exact and `MockClock` makes timers instant.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing
import trustme

import wscore_trio
from _wscore_kit.api import make_config
from _wscore_kit.driver import HIGH_WATER
from wscore import Connection, WSMsgType, WSTimeoutError, encode_frame

pytestmark = pytest.mark.filterwarnings("error")


def run(fn: Callable[[], Awaitable[None]], *, autojump: bool = False) -> None:
    """Run `fn` under trio, bounded; with `autojump`, on a MockClock that skips idle time."""

    async def bounded() -> None:
        with trio.fail_after(30):
            await fn()

    clock = trio.testing.MockClock(autojump_threshold=0) if autojump else None
    trio.run(bounded, clock=clock)


class Peer:
    """The other end of a memory stream, speaking WebSocket through a bare core."""

    def __init__(self, stream: trio.abc.Stream, *, client: bool) -> None:
        self.stream = stream
        self.core = Connection(client=client)

    async def send(self) -> None:
        await self.stream.send_all(self.core.data_to_send())

    async def read_events(self) -> list[tuple[WSMsgType, object]]:
        data = await self.stream.receive_some(1 << 20)
        if data:
            self.core.receive_data(data)
        else:
            self.core.receive_eof()
        return [(m.type, m.data) for m in self.core.events()]

    async def until(self, kind: WSMsgType) -> list[tuple[WSMsgType, object]]:
        seen: list[tuple[WSMsgType, object]] = []
        while not any(t is kind for t, _ in seen):
            seen += await self.read_events()
        return seen


def test_serve_reports_port_through_task_status_and_cancel_closes_with_1001() -> None:
    async def main() -> None:
        handler_done = trio.Event()

        async def handler(ws: wscore_trio.WebSocket) -> None:
            try:
                async for _ in ws:  # until the server's shutdown closes the connection
                    pass
            finally:
                handler_done.set()

        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(wscore_trio.serve, handler, "127.0.0.1", 0))
            assert isinstance(server, wscore_trio.WSServer)
            async with wscore_trio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                await ws.send_str("hello")  # the handler is running once the upgrade is done
                server.cancel_scope.cancel()
                msg = await ws.receive()
                assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "going away")
                assert (await ws.receive()).type is WSMsgType.CLOSED
            assert handler_done.is_set()
            assert ws.close_code == 1001

    run(main)


def test_cancelling_the_async_with_body_closes_with_1001() -> None:
    async def main() -> None:
        received: list[tuple[WSMsgType, object]] = []

        async def handler(ws: wscore_trio.WebSocket) -> None:
            received.extend([(msg.type, msg.data) async for msg in ws])
            received.append((WSMsgType.CLOSE, ws.close_code))

        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(wscore_trio.serve, handler, "127.0.0.1", 0))
            with trio.CancelScope() as scope:
                async with wscore_trio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                    await ws.send_str("one")
                    scope.cancel()
                    await ws.receive()  # cancelled here
            assert scope.cancelled_caught
            assert ws.closed
            assert ws.close_code == 1001
            nursery.cancel_scope.cancel()
        assert received == [(WSMsgType.TEXT, "one"), (WSMsgType.CLOSE, 1001)]

    run(main)


def test_body_exception_propagates_unwrapped() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(wscore_trio.serve, wscore_trio.echo_handler, "127.0.0.1", 0))
            with pytest.raises(KeyError):
                async with wscore_trio.connect(f"ws://127.0.0.1:{server.port}/"):
                    raise KeyError("not an ExceptionGroup")
            nursery.cancel_scope.cancel()

    run(main)


def test_cancelled_receive_loses_no_message_and_the_connection_stays_usable() -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        peer = Peer(theirs, client=False)
        async with wscore_trio.wrap_stream(ours, Connection(client=True)) as ws:
            with trio.move_on_after(1) as scope:
                await ws.receive()
            assert scope.cancelled_caught
            peer.core.send_text("after the cancel")
            await peer.send()
            assert await ws.receive_str() == "after the cancel"
            await ws.send_str("still open")
            assert (WSMsgType.TEXT, "still open") in await peer.read_events()

    run(main, autojump=True)


def test_receive_timeout_raises_wstimeouterror_and_keeps_the_connection() -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        peer = Peer(theirs, client=False)
        async with wscore_trio.wrap_stream(ours, Connection(client=True)) as ws:
            with pytest.raises(WSTimeoutError):
                await ws.receive(timeout=5)
            peer.core.send_bytes(b"late")
            await peer.send()
            assert await ws.receive_bytes() == b"late"

    run(main, autojump=True)


def test_cancelled_send_under_back_pressure_never_writes_half_a_frame() -> None:
    async def main() -> None:
        # lockstep: every write waits until the peer reads it, so the writer is always behind.
        ours, theirs = trio.testing.lockstep_stream_pair()
        peer = Peer(theirs, client=False)
        big = bytes(range(256)) * (HIGH_WATER // 256 + 1)
        async with wscore_trio.wrap_stream(ours, Connection(client=True)) as ws:
            async with trio.open_nursery() as nursery:

                async def sender(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                    with trio.CancelScope() as scope:
                        task_status.started(scope)
                        await ws.send_bytes(big)
                    assert scope.cancelled_caught

                scope = await nursery.start(sender)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
            # The cancelled message is still sent, whole, and the connection works.
            events: list[tuple[WSMsgType, object]] = []

            async def peer_reads() -> None:
                while (WSMsgType.TEXT, "next") not in events:
                    events.extend(await peer.read_events())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer_reads)
                await ws.send_str("next")
            assert events == [(WSMsgType.BINARY, big), (WSMsgType.TEXT, "next")]
            assert peer.core.exception is None
            await peer.stream.aclose()

    run(main)


def test_cancelled_send_on_a_full_socket_still_sends_the_frame_whole() -> None:
    """Over a plain socket send_*() writes from the calling task; cancelled part-way through a frame
    (the socket is full: the peer reads nothing yet), the rest still goes out whole, then the next."""

    async def main() -> None:
        a, b = socket.socketpair()
        for sock in (a, b):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ours = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        peer = Peer(trio.SocketStream(trio.socket.from_stdlib_socket(b)), client=False)
        big = bytes(range(256)) * 4096  # 1 MiB: far more than the two socket buffers hold
        async with wscore_trio.wrap_stream(ours, Connection(client=True)) as ws:
            async with trio.open_nursery() as nursery:

                async def sender(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                    with trio.CancelScope() as scope:
                        task_status.started(scope)
                        await ws.send_bytes(big)
                    assert scope.cancelled_caught

                scope = await nursery.start(sender)
                await trio.testing.wait_all_tasks_blocked()
                # Cancelled in the middle of the frame: its start is on the wire, not its end.
                assert b.recv(1, socket.MSG_PEEK) == b"\x82"
                assert 0 < ws.write_buffer_size() < len(big)
                scope.cancel()
            events: list[tuple[WSMsgType, object]] = []

            async def peer_reads() -> None:
                while (WSMsgType.TEXT, "next") not in events:
                    events.extend(await peer.read_events())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer_reads)
                await ws.send_str("next")
            assert events == [(WSMsgType.BINARY, big), (WSMsgType.TEXT, "next")]
            assert peer.core.exception is None
            await peer.stream.aclose()

    run(main)


def test_a_full_queue_stops_reading_the_stream() -> None:
    """As on anyio (test_anyio_specific): pause at `max_queue` unread, resume at a quarter."""

    async def main() -> None:
        ours, theirs = trio.testing.lockstep_stream_pair()
        sent = 0

        async def peer_sends() -> None:
            nonlocal sent
            for i in range(10):
                await theirs.send_all(encode_frame(1, str(i).encode()))
                sent += 1

        async with wscore_trio.wrap_stream(ours, Connection(client=True), max_queue=4) as ws:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer_sends)
                await trio.testing.wait_all_tasks_blocked()
                assert sent == 4  # the fifth write waits: nobody reads the stream
                assert [await ws.receive_str() for _ in range(2)] == ["0", "1"]
                await trio.testing.wait_all_tasks_blocked()
                assert sent == 4
                assert await ws.receive_str() == "2"
                await trio.testing.wait_all_tasks_blocked()
                assert sent == 7
                assert [await ws.receive_str() for _ in range(7)] == [str(i) for i in range(3, 10)]
            await theirs.aclose()

    run(main)


def test_heartbeat_drops_a_silent_peer_within_the_bound() -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        conn = Connection(client=True, config=make_config(heartbeat=10))
        start = trio.current_time()
        async with wscore_trio.wrap_stream(ours, conn) as ws:
            msg = await ws.receive()  # the peer never reads nor answers
            assert msg.type is WSMsgType.ERROR
            assert isinstance(msg.data, WSTimeoutError)
            assert (await ws.receive()).type is WSMsgType.CLOSED
            assert ws.close_code == 1006
            assert isinstance(ws.exception(), WSTimeoutError)
        assert trio.current_time() - start <= 15 + 1e-6  # ping after 10 s, pong deadline 5 s later
        raw = await theirs.receive_some()
        assert raw[:1] == b"\x89"  # the heartbeat ping was sent

    run(main, autojump=True)


def test_heartbeat_does_not_drop_a_peer_we_stopped_reading() -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        conn = Connection(client=True, config=make_config(heartbeat=10))
        async with wscore_trio.wrap_stream(ours, conn, max_queue=1) as ws:
            await theirs.send_all(encode_frame(1, b"one") + encode_frame(1, b"two"))
            # 25 s of (mock) time, past ping + pong deadline, with the queue full: reading is paused.
            with trio.move_on_after(25):
                await trio.Event().wait()
            assert not ws.closed
            assert [await ws.receive_str(), await ws.receive_str()] == ["one", "two"]
            await theirs.aclose()

    run(main, autojump=True)


def test_broadcast_skips_a_slow_client_and_reaches_the_others() -> None:
    async def main() -> None:
        fast_ours, fast_theirs = trio.testing.memory_stream_pair()
        slow_ours, _slow_theirs = trio.testing.lockstep_stream_pair()  # nobody ever reads
        fast_peer = Peer(fast_theirs, client=True)
        async with (
            wscore_trio.wrap_stream(fast_ours, Connection(client=False)) as fast,
            wscore_trio.wrap_stream(slow_ours, Connection(client=False)) as slow,
        ):
            chunk = "x" * 4096
            skipped_total = 0
            for _ in range(HIGH_WATER // 4096 + 4):
                skipped = wscore_trio.broadcast([fast, slow], chunk)
                assert fast not in skipped
                skipped_total += len(skipped)
                await trio.testing.wait_all_tasks_blocked()
            assert skipped_total >= 1
            received = 0
            while received < HIGH_WATER // 4096 + 4:
                received += sum(1 for t, _ in await fast_peer.read_events() if t is WSMsgType.TEXT)
            assert slow.write_buffer_size() > HIGH_WATER
            with trio.move_on_after(1):
                await slow.close()  # the slow peer never reads: give up on it

    run(main, autojump=True)


def test_tls_with_trustme_certificates() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(wscore_trio.serve, wscore_trio.echo_handler, "127.0.0.1", 0, ssl=server_ctx)
            )
            async with wscore_trio.connect(f"wss://127.0.0.1:{server.port}/", ssl=client_ctx) as ws:
                await ws.send_str("secret")
                assert await ws.receive_str() == "secret"
                assert ws.get_extra_info("ssl_object") is not None
                assert ws.get_extra_info("peername")[0] == "127.0.0.1"
            assert ws.close_code == 1000
            with pytest.raises(ssl.SSLError):
                async with wscore_trio.connect(f"wss://127.0.0.1:{server.port}/"):
                    pass  # the default context does not trust the test CA
            nursery.cancel_scope.cancel()

    run(main)
