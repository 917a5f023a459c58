"""The connection object's calls, on every adapter: send/receive, typed receives, control frames,
argument checks, iteration, concurrency rules."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from wscore import ConnectionClosed, WSMessageTypeError, WSMsgType

from .conftest import Adapter

pytestmark = pytest.mark.anyio


async def test_text_binary_json_round_trip(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.send_str("héllo")
        assert await ws.receive_str() == "héllo"
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive_bytes() == b"\x00\xff"
        await ws.send_bytes(bytearray(b"ba"))
        assert await ws.receive_bytes() == b"ba"
        await ws.send_json({"a": [1, 2]})
        assert await ws.receive_json() == {"a": [1, 2]}


async def test_receive_returns_typed_messages(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.send_str("x")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.TEXT, "x")
        await ws.send_bytes(b"y")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.BINARY, b"y")
        await ws.send_str('{"k": 1}')
        assert (await ws.receive()).json() == {"k": 1}


async def test_large_message_round_trip(adapter: Adapter) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.send_bytes(payload)
        assert await ws.receive_bytes() == payload


async def test_typed_receive_rejects_other_kinds(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.send_bytes(b"b")
        with pytest.raises(WSMessageTypeError):
            await ws.receive_str()
        await ws.send_str("t")
        with pytest.raises(WSMessageTypeError):
            await ws.receive_bytes()
        await ws.send_bytes(b"{}")
        with pytest.raises(WSMessageTypeError):
            await ws.receive_json()


async def test_wrong_argument_types_raise_type_error(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        bad: Any = b"bytes"
        with pytest.raises(TypeError):
            await ws.send_str(bad)
        bad = "text"
        with pytest.raises(TypeError):
            await ws.send_bytes(bad)
        bad = 42
        with pytest.raises(TypeError):
            await ws.ping(bad)
        with pytest.raises(TypeError):
            await ws.pong(bad)
        with pytest.raises(TypeError):
            await ws.close(code="1000")
        with pytest.raises(TypeError):
            await ws.close(message=42)
        # The connection is still usable after rejected calls.
        await ws.send_str("ok")
        assert await ws.receive_str() == "ok"


async def test_control_frames_over_125_bytes_raise_value_error(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        with pytest.raises(ValueError):
            await ws.ping(b"x" * 126)
        with pytest.raises(ValueError):
            await ws.pong(b"x" * 126)
        await ws.ping(b"x" * 125)
        with pytest.raises(ValueError):
            await ws.close(code=1000, message=b"r" * 124)
        with pytest.raises(ValueError):
            await ws.close(code=1005)  # reserved: may not be sent


async def test_autoping_off_delivers_ping_and_pong(adapter: Adapter) -> None:
    got: list[tuple[WSMsgType, Any]] = []

    async def handler(ws: Any) -> None:
        msg = await ws.receive()
        got.append((msg.type, msg.data))
        await ws.pong(msg.data)  # autoping is off: answering is the application's job
        await ws.ping(b"srv")
        msg = await ws.receive()
        got.append((msg.type, msg.data))

    async with adapter.run_server(handler, autoping=False) as url, adapter.connect(url, autoping=False) as ws:
        await ws.ping(b"hi")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.PONG, b"hi")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.PING, b"srv")
        await ws.pong(b"srv")
        msg = await ws.receive()
        assert msg.type is WSMsgType.CLOSE
    assert got == [(WSMsgType.PING, b"hi"), (WSMsgType.PONG, b"srv")]


async def test_autoping_hides_ping_and_pong(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.ping(b"p")
        await ws.pong(b"unsolicited")
        await ws.send_str("after")
        assert await ws.receive_str() == "after"


async def test_async_iteration_stops_at_close(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        for i in range(3):
            await ws.send_str(str(i))
        await ws.close(code=4000, message="done")

    async with adapter.run_server(handler) as url, adapter.connect(url) as ws:
        seen = [msg.data async for msg in ws]
        assert seen == ["0", "1", "2"]
        assert ws.close_code == 4000


async def test_concurrent_receive_raises_runtime_error(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        first_waiting = anyio.Event()
        result: list[str] = []

        async def first() -> None:
            first_waiting.set()
            result.append(await ws.receive_str())

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await first_waiting.wait()
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError):
                await ws.receive()
            await ws.send_str("for the first")
        assert result == ["for the first"]


async def test_close_wakes_a_waiting_receiver(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        woken: list[WSMsgType] = []

        async def receiver() -> None:
            woken.append((await ws.receive()).type)

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()
            assert await ws.close() is True
        assert woken[0] in (WSMsgType.CLOSING, WSMsgType.CLOSED)
        assert (await ws.receive()).type is WSMsgType.CLOSED


async def test_receive_timeout_leaves_connection_open(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.05)
        assert not ws.closed
        await ws.send_str("still here")
        assert await ws.receive_str(timeout=5) == "still here"


async def test_default_receive_timeout_from_wstimeout(adapter: Adapter) -> None:
    timeout = adapter.module.WSTimeout(receive=0.05, close=5)
    async with (
        adapter.run_server(adapter.module.echo_handler) as url,
        adapter.connect(url, timeout=timeout) as ws,
    ):
        with pytest.raises(TimeoutError):
            await ws.receive()
        await ws.send_str("x")
        assert await ws.receive_str() == "x"


async def test_send_after_close_raises_connection_closed(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        assert await ws.close(code=1000, message=b"bye") is True
        assert ws.closed
        assert await ws.close() is False
        with pytest.raises(ConnectionClosed):
            await ws.send_str("x")
        with pytest.raises(ConnectionClosed):
            await ws.send_bytes(b"x")
        with pytest.raises(ConnectionClosed):
            await ws.ping()
        assert (await ws.receive()).type is WSMsgType.CLOSED
        assert (await ws.receive()).type is WSMsgType.CLOSED
        assert ws.close_code == 1000
        assert ws.exception() is None


async def test_per_message_compress_override(adapter: Adapter) -> None:
    text = "compressible " * 2000
    async with (
        adapter.run_server(adapter.module.echo_handler) as url,
        adapter.connect(url, compress=15) as ws,
    ):
        assert ws.core.deflate is not None
        await ws.send_str(text, compress=False)
        assert await ws.receive_str() == text
        await ws.send_bytes(text.encode(), compress=True)
        assert await ws.receive_bytes() == text.encode()
        await ws.send_str(text)
        assert await ws.receive_str() == text
        await ws.send_json({"t": text}, compress=0)
        assert await ws.receive_json() == {"t": text}


async def test_send_frame(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.send_frame(b"raw", WSMsgType.BINARY)
        assert await ws.receive_bytes() == b"raw"
        await ws.send_frame(b"txt", WSMsgType.TEXT)
        assert await ws.receive_str() == "txt"
        await ws.send_frame(b"\x0f\xa0", WSMsgType.CLOSE)
        assert ws.closed
        assert ws.close_code == 4000


async def test_send_frame_control_opcodes(adapter: Adapter) -> None:
    server = adapter.run_server(adapter.module.echo_handler, autoping=False)
    async with server as url, adapter.connect(url, autoping=False) as ws:
        await ws.send_frame(b"hb", WSMsgType.PING)
        # The echo handler ignores the PING it receives (autoping off): nothing comes back for it.
        await ws.send_frame(b"x", WSMsgType.PONG)
        await ws.send_str("after")
        assert await ws.receive_str() == "after"
        with pytest.raises(ValueError):
            await ws.send_frame(b"", 0x3)  # reserved opcode


async def test_json_with_custom_codecs(adapter: Adapter) -> None:
    def dumps(value: Any) -> str:
        return "J" + repr(value)

    def loads(text: str) -> Any:
        assert text.startswith("J")
        return text[1:]

    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        await ws.send_json([1], dumps=dumps)
        assert await ws.receive_json(loads=loads) == "[1]"


async def test_close_without_a_code(adapter: Adapter) -> None:
    async with adapter.run_server(adapter.module.echo_handler) as url, adapter.connect(url) as ws:
        assert await ws.close(code=None) is True
        assert ws.close_code == 1005  # the server echoed an empty close frame: "no status received"
