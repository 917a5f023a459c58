"""WSCoreProtocol driven by hand, with a fake transport: flow control and the handover, exactly.

uvicorn's HTTP protocol hands over an upgrade with `connection_made(transport)` then
`data_received(request_bytes)`; these tests do the same and look at what the transport was asked to do.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
import uvicorn
from uvicorn.server import ServerState

from wscore import Connection
from wscore_asyncio.uvicorn import WSCoreProtocol

from .test_core_embedding import KEY

REQUEST = (
    f"GET /ws?x=1 HTTP/1.1\r\nhost: example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    f"sec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n\r\n"
).encode()


class FakeTransport(asyncio.Transport):
    """Records writes and reading pauses; never touches a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.paused = False
        self.pause_calls = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True
        self.pause_calls += 1

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5555), "sockname": ("127.0.0.1", 8000)}.get(name, default)


def frames(*texts: str) -> bytes:
    client = Connection(client=True)
    for text in texts:
        client.send_text(text)
    return client.data_to_send()


def make_protocol(app: Any, **options: Any) -> tuple[WSCoreProtocol, FakeTransport, ServerState]:
    options.setdefault("ws_ping_interval", None)
    config = uvicorn.Config(app, lifespan="off", **options)
    state = ServerState()
    protocol = WSCoreProtocol(config, state, {})
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport, state


def test_reading_pauses_at_ws_max_queue_and_resumes_as_the_app_drains() -> None:
    async def main() -> None:
        accepted = asyncio.Event()
        go = asyncio.Event()
        drained = asyncio.Event()
        received: list[tuple[str, bool]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            accepted.set()
            await go.wait()
            while True:
                message = await receive()
                received.append((message.get("text") or message["type"], transport.paused))
                if len(received) == 10:
                    drained.set()
                if message["type"] == "websocket.disconnect":
                    return

        protocol, transport, state = make_protocol(app, ws_max_queue=4)
        assert protocol in cast(set[Any], state.connections)
        protocol.data_received(REQUEST)
        assert len(state.tasks) == 1
        await accepted.wait()
        assert transport.written.startswith(b"HTTP/1.1 101 ")

        protocol.data_received(frames(*(f"m{i}" for i in range(10))))
        # Paused once between the request and accept, once more now: one read may overshoot the bound.
        assert transport.paused and transport.pause_calls == 2
        go.set()
        await drained.wait()
        assert [text for text, _ in received] == [f"m{i}" for i in range(10)]
        # Paused while more than a quarter of the bound is queued (the kit's rule for every
        # adapter): resumed when m8 left 1 behind.
        assert [paused for _, paused in received] == [True] * 8 + [False] * 2
        assert not transport.paused

        close = Connection(client=True)
        close.close(1000, "done")
        protocol.data_received(close.data_to_send())
        (task,) = state.tasks
        await task
        assert received[-1] == ("websocket.disconnect", False)
        assert transport.closed  # the close handshake finished: the server closes TCP
        protocol.connection_lost(None)
        assert protocol not in cast(set[Any], state.connections)
        assert not state.tasks

    asyncio.run(asyncio.wait_for(main(), 10))


def test_frames_sent_with_the_request_reach_the_app_after_accept() -> None:
    async def main() -> None:
        got: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            got.append(await receive())
            await send({"type": "websocket.accept", "subprotocol": None, "headers": [(b"x-a", b"1")]})
            got.append(await receive())
            await send({"type": "websocket.close", "code": 4000, "reason": "enough"})
            got.append(await receive())

        protocol, transport, state = make_protocol(app)
        protocol.data_received(REQUEST + frames("early"))
        (task,) = state.tasks
        await task
        assert got == [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "early"},
            {"type": "websocket.disconnect", "code": 4000, "reason": "enough"},
        ]
        head, _, rest = bytes(transport.written).partition(b"\r\n\r\n")
        assert b"x-a: 1" in head
        assert rest == b"\x88\x08\x0f\xa0enough"  # the close frame; TCP stays open for the reply
        assert not transport.closed
        protocol.connection_lost(None)

    asyncio.run(asyncio.wait_for(main(), 10))


def test_sends_after_close_and_after_disconnect() -> None:
    async def main() -> None:
        errors: list[BaseException] = []
        accepted = asyncio.Event()
        peer_closed = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            accepted.set()
            await peer_closed.wait()
            message = await receive()
            assert message["type"] == "websocket.disconnect" and message["code"] == 1001
            try:
                await send({"type": "websocket.send", "text": "too late"})
            except OSError as exc:  # uvicorn's ClientDisconnected
                errors.append(exc)
                raise

        protocol, transport, state = make_protocol(app)
        protocol.data_received(REQUEST)
        (task,) = state.tasks
        await accepted.wait()
        peer = Connection(client=True)
        peer.close(1001, "")
        protocol.data_received(peer.data_to_send())
        assert transport.closed
        protocol.connection_lost(None)
        peer_closed.set()
        await task
        assert len(errors) == 1 and type(errors[0]).__name__ == "ClientDisconnected"

    asyncio.run(asyncio.wait_for(main(), 10))


def test_shutdown_before_accept_is_500_and_connection_lost_before_accept() -> None:
    async def main() -> None:
        results: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            results.append(await receive())
            results.append(await receive())

        protocol, transport, state = make_protocol(app)
        protocol.data_received(REQUEST)
        protocol.shutdown()
        assert transport.written.startswith(b"HTTP/1.1 500 ")
        assert transport.closed
        protocol.connection_lost(None)
        (task,) = state.tasks
        await task
        assert results == [
            {"type": "websocket.connect"},
            {"type": "websocket.disconnect", "code": 1006},  # no close frame, no reason (as uvicorn)
        ]

    asyncio.run(asyncio.wait_for(main(), 10))


def test_reading_stops_between_the_request_and_accept() -> None:
    """Frames a client sends before the app accepts wait in what was already read: reading pauses as
    soon as the request is in, and resumes once the app has accepted."""

    async def main() -> None:
        go = asyncio.Event()
        got: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await go.wait()
            await send({"type": "websocket.accept"})
            got.append(await receive())

        protocol, transport, state = make_protocol(app, ws_max_size=100)
        protocol.data_received(REQUEST)
        assert transport.paused
        protocol.data_received(frames("a" * 60))  # what the transport had read before the pause
        go.set()
        (task,) = state.tasks
        await task
        assert got == [{"type": "websocket.receive", "text": "a" * 60}]
        assert not transport.paused  # accepted and drained: reading again
        protocol.connection_lost(None)

    asyncio.run(asyncio.wait_for(main(), 10))


def test_heartbeat_does_not_blame_the_peer_while_reading_is_paused() -> None:
    async def main() -> None:
        accepted = asyncio.Event()
        go = asyncio.Event()
        got: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            accepted.set()
            await go.wait()
            while len(got) < 4:
                got.append((await receive())["text"])

        protocol, transport, state = make_protocol(
            app, ws_max_queue=2, ws_ping_interval=0.05, ws_ping_timeout=0.05
        )
        protocol.data_received(REQUEST)
        (task,) = state.tasks
        await accepted.wait()
        protocol.data_received(frames("a", "b", "c", "d"))
        assert transport.paused
        written = len(transport.written)
        # Ten ping intervals with reading paused: no ping goes out, and the peer is not dropped.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 0.5)
        assert len(transport.written) == written and not transport.closed
        go.set()
        await task
        assert got == ["a", "b", "c", "d"]
        assert not transport.paused
        protocol.connection_lost(None)

    asyncio.run(asyncio.wait_for(main(), 10))


def test_uvicorn_loads_the_class_by_import_path_or_as_a_class() -> None:
    for ws in ("wscore_asyncio.uvicorn:WSCoreProtocol", WSCoreProtocol):
        config = uvicorn.Config(lambda scope, receive, send: None, ws=ws, lifespan="off")
        config.load()
        assert config.ws_protocol_class is WSCoreProtocol
