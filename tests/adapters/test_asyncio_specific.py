"""wscore_asyncio only: uvloop, debug mode and leaks on every closing path, transports and
back-pressure, broadcast, the embedding entry points (wrap_transport, accept_socket, connect(sock=))."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

import wscore_asyncio
from wscore import Connection, ConnectionClosed, Request, ServerConnection, State, WSMsgType
from wscore_asyncio import WebSocket

Main = Callable[[], Awaitable[None]]


def run(main: Main, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Run `main` in debug mode, bounded, then check that it left no task behind."""

    async def checked() -> None:
        await asyncio.wait_for(main(), 30)
        current = asyncio.current_task()
        left = {t for t in asyncio.all_tasks() if t is not current}
        assert not left, f"tasks left behind: {left}"

    if loop is None:
        asyncio.run(checked(), debug=True)
        return
    loop.set_debug(True)
    try:
        loop.run_until_complete(checked())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def assert_closed(ws: WebSocket) -> None:
    """The connection's transport is closed and nothing of it is pending."""
    assert ws.transport is not None and ws.transport.is_closing()
    assert ws._lost.done()
    assert ws._timer_handle is None


def test_echo_on_uvloop() -> None:
    async def main() -> None:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        async with wscore_asyncio.serve(wscore_asyncio.echo_handler, "127.0.0.1", 0) as server:
            async with wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/", compress=15) as ws:
                for size in (0, 10, 200, 70_000, 1 << 20):
                    await ws.send_bytes(b"u" * size)
                    assert await ws.receive_bytes() == b"u" * size
                await ws.send_str("done")
                assert await ws.receive_str() == "done"
            assert_closed(ws)

    run(main, loop=uvloop.new_event_loop())


def test_await_forms_of_connect_and_serve() -> None:
    async def main() -> None:
        server = await wscore_asyncio.serve(wscore_asyncio.echo_handler, "127.0.0.1", 0)
        ws = await wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/")
        await ws.send_str("x")
        assert await ws.receive_str() == "x"
        assert await ws.close() is True
        assert_closed(ws)
        await server.close()
        await server.wait_closed()
        assert server.close() is server.close()  # idempotent: the same task

    run(main)


def test_no_leaks_when_the_server_drops_the_connection() -> None:
    async def handler(ws: WebSocket) -> None:
        assert ws.transport is not None
        ws.transport.abort()
        await ws.wait_closed()

    async def main() -> None:
        async with wscore_asyncio.serve(handler, "127.0.0.1", 0) as server:
            async with wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                msg = await ws.receive()
                assert msg.type is WSMsgType.CLOSED
                assert ws.close_code == 1006
                assert isinstance(ws.exception(), ConnectionClosed)
                with pytest.raises(ConnectionClosed):
                    await ws.send_str("too late")
            assert_closed(ws)

    run(main)


def test_no_leaks_when_the_client_drops_the_connection() -> None:
    server_saw: list[Any] = []
    done = asyncio.Event

    async def main() -> None:
        finished = done()

        async def handler(ws: WebSocket) -> None:
            msg = await ws.receive()
            server_saw.append((msg.type, ws.close_code))
            finished.set()

        async with wscore_asyncio.serve(handler, "127.0.0.1", 0) as server:
            ws = await wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/")
            assert ws.transport is not None
            ws.transport.abort()
            await ws.wait_closed()
            await finished.wait()
            assert_closed(ws)
        assert server_saw == [(WSMsgType.CLOSED, 1006)]

    run(main)


def test_cancelled_close_drops_the_connection() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def handler(ws: WebSocket) -> None:
            await release.wait()  # autoclose is off and we do not read: the client's close waits

        async with wscore_asyncio.serve(handler, "127.0.0.1", 0, autoclose=False) as server:
            ws = await wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/")
            closing = asyncio.ensure_future(ws.close())
            await asyncio.wait([closing], timeout=0.1)
            assert not closing.done()
            closing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await closing
            await ws.wait_closed()
            assert_closed(ws)
            release.set()

    run(main)


def test_client_disconnects_during_async_process_request() -> None:
    async def main() -> None:
        entered = asyncio.Event()
        release = asyncio.Event()
        handled: list[WebSocket] = []

        async def process_request(request: Request) -> None:
            entered.set()
            await release.wait()

        async def handler(ws: WebSocket) -> None:
            handled.append(ws)

        async with wscore_asyncio.serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
            connecting = asyncio.ensure_future(wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/"))
            await entered.wait()
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            (conn,) = server._connections
            await conn.wait_closed()
            release.set()
        assert handled == []

    run(main)


def test_invalid_upgrade_request_gets_an_http_error() -> None:
    async def main() -> None:
        async with wscore_asyncio.serve(wscore_asyncio.echo_handler, "127.0.0.1", 0) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            response = await reader.read()  # the server answers and closes
            writer.close()
            await writer.wait_closed()
        assert response.startswith(b"HTTP/1.1 400 ")

    run(main)


def test_tls_verification_failure_does_not_disturb_the_server(
    tls_server: ssl.SSLContext, tls_client: ssl.SSLContext
) -> None:
    async def main() -> None:
        # asyncio's debug mode reports the server side's failed TLS handshake; that is expected here.
        reported: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
        async with wscore_asyncio.serve(
            wscore_asyncio.echo_handler, "127.0.0.1", 0, ssl=tls_server
        ) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            with pytest.raises(ssl.SSLError):
                await wscore_asyncio.connect(url)  # the default trust store lacks the test CA
            async with wscore_asyncio.connect(url, ssl=tls_client) as ws:
                await ws.send_str("ok")
                assert await ws.receive_str() == "ok"
        assert all("transport creation" in context["message"] for context in reported)

    run(main)


def _on_pause_reading(monkeypatch: pytest.MonkeyPatch, client: bool) -> list[asyncio.Event]:
    """Record when a connection of that role pauses reading (the class's hook: connections have
    slots, no per-object attributes). Append an event to the returned list to be told."""
    events: list[asyncio.Event] = []
    original = WebSocket._pause_reading

    def pause(self: WebSocket) -> None:
        original(self)
        if self.core.client is client and self.core.state is State.OPEN:  # not the handshake's pause
            for event in events:
                event.set()

    monkeypatch.setattr(WebSocket, "_pause_reading", pause)
    return events


def test_reading_pauses_when_the_application_stops_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    on_pause = _on_pause_reading(monkeypatch, client=False)

    async def main() -> None:
        paused = asyncio.Event()
        on_pause.append(paused)
        received: list[str] = []

        async def handler(ws: WebSocket) -> None:
            await paused.wait()
            assert ws.transport is not None and not ws.transport.is_reading()
            # max_queue messages, plus at most what the last read carried (a read is <= 256 KiB).
            assert 4 <= len(ws._queue) <= 4 + 4
            async for msg in ws:
                received.append(msg.data[:8])
                if len(received) == 40:
                    assert ws.transport.is_reading()
                    break

        server = wscore_asyncio.serve(handler, "127.0.0.1", 0, max_queue=4)
        async with server as srv, wscore_asyncio.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
            for i in range(40):
                await ws.send_str(f"{i:08}" + "m" * 65536)
            assert (await ws.receive()).type is WSMsgType.CLOSE
        assert received == [f"{i:08}" for i in range(40)]

    run(main)


def test_send_waits_while_the_write_buffer_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    paused_events: list[asyncio.Event] = []
    original = WebSocket.pause_writing

    def hooked_pause_writing(self: WebSocket) -> None:
        original(self)
        if self.core.client:
            for event in paused_events:
                event.set()

    monkeypatch.setattr(WebSocket, "pause_writing", hooked_pause_writing)

    async def main() -> None:
        release = asyncio.Event()
        total: list[int] = []

        async def handler(ws: WebSocket) -> None:
            await release.wait()
            size = 0
            async for msg in ws:
                size += len(msg.data)
            total.append(size)

        async with wscore_asyncio.serve(handler, "127.0.0.1", 0, max_queue=1) as server:
            ws = await wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/")
            paused = asyncio.Event()
            paused_events.append(paused)
            chunk = b"w" * (1 << 20)

            async def sender() -> int:
                sent = 0
                while not paused.is_set():
                    await ws.send_bytes(chunk)
                    sent += 1
                return sent

            sending = asyncio.ensure_future(sender())
            await paused.wait()
            # The send that filled the buffer is waiting for it to drain; the reader lets it.
            assert not sending.done()
            assert ws._drain_waiters
            release.set()
            sent = await sending
            await ws.close()
        assert total == [sent * len(chunk)]

    run(main)


def test_broadcast_skips_closed_and_slow_connections() -> None:
    async def main() -> None:
        server_side: list[WebSocket] = []
        ready = asyncio.Event()

        async def handler(ws: WebSocket) -> None:
            server_side.append(ws)
            if len(server_side) == 3:
                ready.set()
            await ws.receive()

        async with wscore_asyncio.serve(handler, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            clients = [await wscore_asyncio.connect(url) for _ in range(3)]
            await ready.wait()
            assert wscore_asyncio.broadcast(server.connections, "to all") == []
            assert wscore_asyncio.broadcast(server.connections, b"\x01\x02") == []
            for ws in clients:
                assert await ws.receive_str() == "to all"
                assert await ws.receive_bytes() == b"\x01\x02"

            # A slow client: it stops reading until its server-side write buffer holds data.
            slow, fast = clients[0], clients[1:]
            assert slow.transport is not None
            slow.transport.pause_reading()
            slow_server = next(
                s for s in server_side if s.get_extra_info("peername") == slow.get_extra_info("sockname")
            )
            big = b"b" * (1 << 20)
            for _ in range(64):
                if slow_server.write_buffer_size() > 0:
                    break
                assert wscore_asyncio.broadcast([slow_server], big) == []
            assert slow_server.write_buffer_size() > 0
            skipped = wscore_asyncio.broadcast(server.connections, "news", limit=0)
            assert skipped == [slow_server]
            for ws in fast:
                assert await ws.receive_str() == "news"

            # A closed connection is skipped as well; a client connection can be broadcast to too.
            await fast[0].close()
            await server_side[1].wait_closed()
            assert wscore_asyncio.broadcast([server_side[1], fast[1]], "last") == [server_side[1]]
            assert wscore_asyncio.broadcast([], "nobody") == []
            with pytest.raises(TypeError):
                wscore_asyncio.broadcast(server.connections, 42)  # type: ignore[arg-type]
            slow.transport.resume_reading()
            for ws in clients:
                await ws.close()

    run(main)


def test_wrap_transport_after_another_framework_parsed_the_upgrade() -> None:
    """A toy "framework" reads the request itself, then hands the transport to wscore_asyncio."""

    async def main() -> None:
        results: list[str] = []
        finished = asyncio.Event()
        tasks: list[asyncio.Future[None]] = []

        class Framework(asyncio.Protocol):
            def __init__(self) -> None:
                self.buffer = b""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.buffer += data
                if b"\r\n\r\n" not in self.buffer:
                    return
                head, rest = self.buffer.split(b"\r\n\r\n", 1)
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ")
                headers = [tuple(line.split(": ", 1)) for line in lines]
                conn = ServerConnection()
                conn.receive_request(Request.build(method, target, headers))  # type: ignore[arg-type]
                # After receive_request() the core leaves the response to the framework.
                response = "".join(f"{k}: {v}\r\n" for k, v in conn.accept())
                self.transport.write(f"HTTP/1.1 101 Switching Protocols\r\n{response}\r\n".encode())
                ws = wscore_asyncio.wrap_transport(self.transport, conn, initial_data=rest)
                tasks.append(asyncio.ensure_future(serve_one(ws)))

        async def serve_one(ws: WebSocket) -> None:
            assert ws.request is not None
            results.append(ws.request.path)
            async for msg in ws:
                await ws.send_str(msg.data * 2)
            finished.set()

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Framework, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with wscore_asyncio.connect(f"ws://127.0.0.1:{port}/embedded") as ws:
            await ws.send_str("ab")
            assert await ws.receive_str() == "abab"
        await finished.wait()
        server.close()
        await server.wait_closed()
        assert results == ["/embedded"]

    run(main)


def test_accept_socket_and_connect_over_an_existing_socket() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            port = listener.getsockname()[1]
            client_sock = socket.create_connection(("127.0.0.1", port))
            accepted, _ = await loop.sock_accept(listener)

            async def server_side() -> None:
                ws = await wscore_asyncio.accept_socket(accepted, protocols=["p1"])
                assert ws is not None and ws.protocol == "p1"
                async for msg in ws:
                    await ws.send_bytes(msg.data[::-1])

            serving = asyncio.ensure_future(server_side())
            async with wscore_asyncio.connect(
                f"ws://127.0.0.1:{port}/", sock=client_sock, protocols=["p1"]
            ) as ws:
                await ws.send_bytes(b"abc")
                assert await ws.receive_bytes() == b"cba"
            await serving

    run(main)


def test_accept_socket_answering_plain_http() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            port = listener.getsockname()[1]
            connecting = asyncio.ensure_future(wscore_asyncio.connect(f"ws://127.0.0.1:{port}/health"))
            accepted, _ = await loop.sock_accept(listener)
            ws = await wscore_asyncio.accept_socket(accepted, process_request=lambda r: (200, [], b"OK"))
            assert ws is None
            with pytest.raises(wscore_asyncio.HandshakeError) as info:
                await connecting
            assert info.value.status == 200 and info.value.body == b"OK"

    run(main)


def test_serve_forever_shuts_down_when_cancelled() -> None:
    async def main() -> None:
        server = await wscore_asyncio.serve(wscore_asyncio.echo_handler, "127.0.0.1", 0)
        forever = asyncio.ensure_future(server.serve_forever())
        ws = await wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/")
        forever.cancel()
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
        with pytest.raises(asyncio.CancelledError):
            await forever
        await ws.close()

    run(main)


def test_heartbeat_does_not_drop_a_peer_we_stopped_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """With reading paused for a slow application, the peer's pongs sit unread: no false 1006."""
    on_pause = _on_pause_reading(monkeypatch, client=False)

    async def main() -> None:
        release = asyncio.Event()
        paused = asyncio.Event()
        on_pause.append(paused)

        async def handler(ws: WebSocket) -> None:
            await release.wait()
            count = 0
            async for msg in ws:
                count += 1
                if msg.data == "last":
                    await ws.send_str(str(count))

        server = wscore_asyncio.serve(handler, "127.0.0.1", 0, max_queue=1, heartbeat=0.05, pong_timeout=0.2)
        async with server as srv, wscore_asyncio.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
            for _ in range(20):
                await ws.send_bytes(b"p" * 300_000)
            await ws.send_str("last")
            await paused.wait()
            # Many heartbeat periods pass while the server's application does not read.
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(timeout=0.6)
            release.set()
            assert await ws.receive_str() == "21"

    run(main)


def test_server_drops_a_client_that_never_sends_its_request() -> None:
    async def main() -> None:
        echo = wscore_asyncio.echo_handler
        async with wscore_asyncio.serve(echo, "127.0.0.1", 0, open_timeout=0.1) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert await reader.read() == b""  # closed by the server's open deadline, unanswered
            writer.close()
            await writer.wait_closed()
            assert not server._connections

    run(main)


def test_connection_as_its_own_context_manager_and_argument_checks(
    tls_server: ssl.SSLContext,
) -> None:
    async def main() -> None:
        echo = wscore_asyncio.echo_handler
        async with wscore_asyncio.serve(echo, "127.0.0.1", 0, ssl=tls_server) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            async with await wscore_asyncio.connect(url, ssl=False) as ws:  # no verification
                await ws.send_str("unverified")
                assert await ws.receive_str() == "unverified"
                assert "WebSocket client OPEN" in repr(ws)
            assert_closed(ws)
            with pytest.raises(ValueError):
                await wscore_asyncio.connect(url, max_queue=0)
            with pytest.raises(TypeError):
                await wscore_asyncio.connect(url, protocols="chat")
            with pytest.raises(TypeError):
                wscore_asyncio.serve(echo, protocols="chat")

    run(main)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x83\x80\x00\x00\x00\x00", 1002),  # reserved opcode 0x3
        (b"\x81\x82\x00\x00\x00\x00\xc3\x28", 1007),  # text that is not UTF-8
        (b"\x82\x00", 1002),  # unmasked frame from a client
    ],
)
def test_server_fails_a_client_that_breaks_the_protocol(frame: bytes, code: int) -> None:
    async def main() -> None:
        seen: list[Any] = []

        async def handler(ws: WebSocket) -> None:
            msg = await ws.receive()
            seen.append((msg.type, ws.close_code, type(ws.exception()).__name__))
            seen.append((await ws.receive()).type)

        async with wscore_asyncio.serve(handler, "127.0.0.1", 0) as server:
            async with wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/") as ws:
                assert ws.transport is not None
                ws.transport.write(frame)  # bytes our own core would never send
                msg = await ws.receive()
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, code)
            assert_closed(ws)
        assert seen == [(WSMsgType.ERROR, code, "ProtocolError"), WSMsgType.CLOSED]

    run(main)


# -- the per-message path: coalesced answers, the shared read buffer, data_received ---------------


def _burst(ws: WebSocket, payloads: list[bytes]) -> None:
    """Queue `payloads` in the client's core and write them in one go, so the server reads a batch."""
    for payload in payloads:
        ws.core.send_bytes(payload)
    ws._write_out()


def test_answers_to_a_pipelined_batch_leave_in_few_writes() -> None:
    """An echo handler working through queued messages sends its answers in one write (per 64 KiB),
    not one per message, and they arrive complete and in order."""

    async def main() -> None:
        writes: list[int] = []

        async def handler(ws: WebSocket) -> None:
            transport = ws.transport
            assert transport is not None
            write = transport.write

            def counting_write(data: bytes | bytearray | memoryview) -> None:
                writes.append(len(data))
                write(data)

            transport.write = counting_write  # type: ignore[method-assign]
            await wscore_asyncio.echo_handler(ws)

        payloads = [f"{i:04}".encode() * 25 for i in range(200)]  # 100 B each
        server = wscore_asyncio.serve(handler, "127.0.0.1", 0)
        async with server as srv, wscore_asyncio.connect(f"ws://127.0.0.1:{srv.port}/", max_queue=256) as ws:
            await ws.send_bytes(b"warm-up")  # the handler is running and its writes are counted
            assert await ws.receive_bytes() == b"warm-up"
            writes.clear()
            _burst(ws, payloads)
            assert [await ws.receive_bytes() for _ in payloads] == payloads
            # 200 answers of 102 bytes on the wire: about one write per read the server made (the
            # 20 KB come in a few reads), where one write per message would make 200.
            assert sum(writes) == 200 * 102
            assert len(writes) < 20

    run(main)


def test_a_burst_of_sends_leaves_in_few_writes_and_its_first_at_once() -> None:
    """A client keeping many messages in flight: the first send since it last waited for a message is
    written at once (no added latency for one in flight), the rest of the burst together."""

    async def main() -> None:
        async with (
            wscore_asyncio.serve(wscore_asyncio.echo_handler, "127.0.0.1", 0) as server,
            wscore_asyncio.connect(f"ws://127.0.0.1:{server.port}/") as ws,
        ):
            transport = ws.transport
            assert transport is not None
            write = transport.write
            writes: list[int] = []

            def counting_write(data: bytes | bytearray | memoryview) -> None:
                writes.append(len(data))
                write(data)

            transport.write = counting_write  # type: ignore[method-assign]
            for round_ in range(3):
                writes.clear()
                payloads = [f"{round_}-{i:03}".encode() for i in range(64)]
                await ws.send_bytes(payloads[0])
                assert len(writes) == 1  # the first of the burst: already on its way
                for payload in payloads[1:]:
                    await ws.send_bytes(payload)
                assert len(writes) == 1  # the other 63 are held for one write
                assert ws.write_buffer_size() > 0  # and counted as not yet sent
                # Waiting for the echoes lets the loop run: the held sends leave in one write.
                assert [await ws.receive_bytes() for _ in payloads] == payloads
                assert len(writes) == 2
                assert sum(writes) == sum(len(p) + 6 for p in payloads)  # 2-byte header, 4-byte mask

    run(main)


def test_a_held_answer_leaves_without_another_receive() -> None:
    """An answer held back while messages were queued is written on the loop's next iteration even
    if the handler, instead of receiving again, waits for something else."""

    async def main() -> None:
        replied = asyncio.Event()

        async def handler(ws: WebSocket) -> None:
            first = await ws.receive_bytes()
            assert ws._queue  # the second message is waiting: the answer is held
            await ws.send_bytes(first.upper())
            await replied.wait()  # set only once the client has the answer
            assert await ws.receive_bytes() == b"second"

        server = wscore_asyncio.serve(handler, "127.0.0.1", 0)
        async with server as srv, wscore_asyncio.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
            _burst(ws, [b"first", b"second"])
            assert await ws.receive_bytes(timeout=5) == b"FIRST"
            replied.set()

    run(main)


def test_big_answers_are_not_held_back() -> None:
    """A frame over 16 KiB goes to the transport at once, and so does everything held when the held
    bytes would pass 64 KiB: the transport's flow control sees big sends."""

    async def main() -> None:
        left_in_core: list[bytes] = []

        async def handler(ws: WebSocket) -> None:
            await ws.receive_bytes()
            assert ws._queue
            await ws.send_bytes(b"b" * 20_000)
            left_in_core.append(ws.core.data_to_send())
            for _ in range(5):  # four are held (60 KB); the fifth would make 75 KB
                await ws.send_bytes(b"s" * 15_000)
            left_in_core.append(ws.core.data_to_send())
            await wscore_asyncio.echo_handler(ws)

        server = wscore_asyncio.serve(handler, "127.0.0.1", 0)
        async with server as srv, wscore_asyncio.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
            _burst(ws, [b"one", b"two"])
            assert await ws.receive_bytes() == b"b" * 20_000
            for _ in range(5):
                assert await ws.receive_bytes() == b"s" * 15_000
            assert await ws.receive_bytes() == b"two"
        assert left_in_core == [b"", b""]

    run(main)


def test_connections_on_one_loop_share_the_read_buffer_safely() -> None:
    """Several clients at once, small and large messages pipelined: each gets exactly its echoes."""

    async def main() -> None:
        sizes = [0, 10, 126, 3000, 70_000, 300_000]

        async def client(url: str, tag: int) -> None:
            async with wscore_asyncio.connect(url) as ws:
                payloads = [bytes([tag]) * size + bytes([i]) for i in range(3) for size in sizes]

                async def send_all() -> None:
                    for payload in payloads:
                        await ws.send_bytes(payload)

                sending = asyncio.ensure_future(send_all())
                for payload in payloads:
                    assert await ws.receive_bytes() == payload
                await sending

        async with wscore_asyncio.serve(wscore_asyncio.echo_handler, "127.0.0.1", 0) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            await asyncio.gather(*(client(url, tag) for tag in range(4)))

    run(main)


def test_event_loops_in_two_threads_read_into_their_own_buffers() -> None:
    import threading

    errors: list[BaseException] = []
    started = threading.Barrier(2)

    def thread_main(tag: int) -> None:
        async def main() -> None:
            started.wait(5)
            server = wscore_asyncio.serve(wscore_asyncio.echo_handler, "127.0.0.1", 0)
            async with server as srv, wscore_asyncio.connect(f"ws://127.0.0.1:{srv.port}/") as ws:
                for i in range(200):
                    payload = bytes([tag]) * (i * 997 % 70_000)
                    await ws.send_bytes(payload)
                    assert await ws.receive_bytes() == payload

        try:
            run(main)
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(tag,)) for tag in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def test_a_transport_that_calls_data_received() -> None:
    """A framework that keeps the transport's protocol and forwards what it reads to data_received
    (no get_buffer): small, large and split messages arrive whole, both ways."""

    class Forwarder(asyncio.Protocol):
        ws: WebSocket | None = None

        def data_received(self, data: bytes) -> None:
            assert self.ws is not None
            self.ws.data_received(data)

        def eof_received(self) -> None:
            assert self.ws is not None
            self.ws.eof_received()

        def connection_lost(self, exc: Exception | None) -> None:
            assert self.ws is not None
            self.ws.connection_lost(exc)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, forwarder = await loop.create_connection(Forwarder, sock=ours)
        ws = WebSocket(Connection(client=True))
        forwarder.ws = ws
        ws.connection_made(transport)
        peer_transport, _ = await loop.create_connection(asyncio.Protocol, sock=theirs)
        peer = wscore_asyncio.wrap_transport(peer_transport, Connection(client=False))
        for size in (0, 5, 200, 5000, 300_000):
            await peer.send_bytes(b"p" * size)
            await ws.send_str("q" * size)
            assert await ws.receive_bytes() == b"p" * size
            assert await peer.receive_str() == "q" * size
        await ws.close()
        assert (await peer.receive()).type is WSMsgType.CLOSE
        await peer.wait_closed()
        await ws.wait_closed()

    run(main)
