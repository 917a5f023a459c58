"""Server behaviour on every adapter: handler lifecycle, process_request, subprotocols, shutdown."""

from __future__ import annotations

import socket
import ssl
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from wscore import HandshakeError, Request, ServerConnection, WSCloseCode, WSMsgType

from .conftest import Adapter

pytestmark = pytest.mark.anyio


async def test_handler_return_closes_with_1000(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        await ws.send_str("hi")

    async with adapter.run_server(handler) as url, adapter.connect(url) as ws:
        assert await ws.receive_str() == "hi"
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.OK)
        assert (await ws.receive()).type is WSMsgType.CLOSED
        assert ws.close_code == 1000


async def test_handler_exception_closes_with_1011_and_server_keeps_serving(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        msg = await ws.receive_str()
        if msg == "boom":
            raise RuntimeError("handler failure (expected by the test)")
        await ws.send_str(msg)

    async with adapter.run_server(handler) as url:
        async with adapter.connect(url) as ws:
            await ws.send_str("boom")
            msg = await ws.receive()
            assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)
        async with adapter.connect(url) as ws:
            await ws.send_str("fine")
            assert await ws.receive_str() == "fine"


async def test_a_failure_in_one_connections_machinery_ends_that_connection_only(
    adapter: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error raised while a connection reads (a bug; here the core, made to fail for one
    connection) ends that connection, abnormally, and nothing else: the server and its other
    connections go on. On trio and anyio a connection's tasks run in the server's task group, which
    such an error must not reach."""
    failing: list[ServerConnection] = []
    original = ServerConnection.receive_data

    def receive_data(self: ServerConnection, data: bytes, now: float | None = None) -> None:
        if self in failing:
            raise RuntimeError("a bug (injected by the test)")
        original(self, data, now)

    monkeypatch.setattr(ServerConnection, "receive_data", receive_data)
    doomed = anyio.Event()

    async def handler(ws: Any) -> None:
        if not failing:
            failing.append(ws.core)
            doomed.set()
        async for msg in ws:
            await ws.send_str(msg.data)

    async with (
        adapter.run_server(handler) as url,
        adapter.connect(url) as first,
        adapter.connect(url) as second,
    ):
        await doomed.wait()
        await second.send_str("before")
        assert await second.receive_str() == "before"
        await first.send_str("fails")
        msg = await first.receive()
        assert msg.type is WSMsgType.CLOSED
        assert first.close_code == WSCloseCode.ABNORMAL_CLOSURE
        await second.send_str("after")
        assert await second.receive_str() == "after"


async def test_server_close_sends_1001_and_waits_for_handlers(adapter: Adapter) -> None:
    handler_started = anyio.Event()
    handler_saw: list[WSMsgType] = []

    async def handler(ws: Any) -> None:
        handler_started.set()
        handler_saw.append((await ws.receive()).type)

    async with AsyncExitStack() as stack:
        async with adapter.run_server(handler) as url:
            ws = await stack.enter_async_context(adapter.connect(url))
            await handler_started.wait()
        # Leaving run_server shut the server down; the handler has finished.
        assert handler_saw and handler_saw[0] in (WSMsgType.CLOSING, WSMsgType.CLOSED)
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY)


async def test_server_shutdown_cancels_a_handler_that_ignores_close(adapter: Adapter) -> None:
    started = anyio.Event()

    async def handler(ws: Any) -> None:
        started.set()
        await anyio.Event().wait()  # never returns: shutdown must cancel it

    async with AsyncExitStack() as stack:
        async with adapter.run_server(handler, shutdown_timeout=0.2) as url:
            ws = await stack.enter_async_context(adapter.connect(url))
            await started.wait()
        msg = await ws.receive()
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


async def test_process_request_answers_plain_http(adapter: Adapter) -> None:
    seen: list[Request] = []

    def process_request(request: Request) -> Any:
        seen.append(request)
        if request.path == "/forbidden":
            return (403, [("X-Why", "test")], b"go away")
        return None

    async with adapter.run_server(adapter.module.echo_handler, process_request=process_request) as url:
        with pytest.raises(HandshakeError) as info:
            async with adapter.connect(url + "/forbidden"):
                pass
        assert info.value.status == 403
        assert ("x-why", "test") in [(k.lower(), v) for k, v in info.value.headers]
        assert info.value.body == b"go away"
        async with adapter.connect(url + "/ok?q=1", headers={"X-Token": "t1"}) as ws:
            await ws.send_str("upgraded")
            assert await ws.receive_str() == "upgraded"
    assert [r.path for r in seen] == ["/forbidden", "/ok"]
    assert seen[1].target == "/ok?q=1"
    assert seen[1].header("x-token") == "t1"


async def test_async_process_request(adapter: Adapter) -> None:
    async def process_request(request: Request) -> Any:
        await anyio.lowlevel.checkpoint()
        if request.header("authorization") != "Bearer ok":
            return (401, {"WWW-Authenticate": "Bearer"}, "no token")
        return None

    async with adapter.run_server(adapter.module.echo_handler, process_request=process_request) as url:
        with pytest.raises(HandshakeError) as info:
            async with adapter.connect(url):
                pass
        assert info.value.status == 401
        assert info.value.body == b"no token"
        async with adapter.connect(url, headers=[("Authorization", "Bearer ok")]) as ws:
            await ws.send_str("in")
            assert await ws.receive_str() == "in"


async def test_process_request_failure_answers_500(adapter: Adapter) -> None:
    def process_request(request: Request) -> Any:
        raise RuntimeError("process_request failure (expected by the test)")

    async with adapter.run_server(adapter.module.echo_handler, process_request=process_request) as url:
        with pytest.raises(HandshakeError) as info:
            async with adapter.connect(url):
                pass
        assert info.value.status == 500


async def test_handler_sees_the_request(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        await ws.send_str(f"{ws.request.path} {ws.request.header('x-name')}")

    async with (
        adapter.run_server(handler) as url,
        adapter.connect(url + "/room/1", headers={"X-Name": "ann"}) as ws,
    ):
        assert await ws.receive_str() == "/room/1 ann"


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        (["chat", "superchat"], ["superchat", "chat"], "superchat"),
        (["x"], ["chat"], None),
        ([], ["chat"], None),
    ],
)
async def test_subprotocol_selection(
    adapter: Adapter, offered: list[str], supported: list[str], chosen: str | None
) -> None:
    server_side: list[str | None] = []

    async def handler(ws: Any) -> None:
        server_side.append(ws.protocol)

    async with (
        adapter.run_server(handler, protocols=supported) as url,
        adapter.connect(url, protocols=offered) as ws,
    ):
        assert ws.protocol == chosen
        await ws.receive()
    assert server_side == [chosen]


async def test_select_subprotocol_callback(adapter: Adapter) -> None:
    def select(offered: Any) -> str | None:
        return offered[-1] if offered else None

    server = adapter.run_server(adapter.module.echo_handler, select_subprotocol=select)
    async with server as url, adapter.connect(url, protocols=["a", "b", "c"]) as ws:
        assert ws.protocol == "c"


async def test_max_msg_size_closes_with_1009(adapter: Adapter) -> None:
    async with (
        adapter.run_server(adapter.module.echo_handler, max_msg_size=1024) as url,
        adapter.connect(url) as ws,
    ):
        await ws.send_bytes(b"x" * 1024)
        assert await ws.receive_bytes() == b"x" * 1024
        await ws.send_bytes(b"x" * 1025)
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.MESSAGE_TOO_BIG)


async def test_client_max_msg_size(adapter: Adapter) -> None:
    async def handler(ws: Any) -> None:
        await ws.send_bytes(b"y" * 2000)
        await ws.receive()

    async with adapter.run_server(handler) as url, adapter.connect(url, max_msg_size=1000) as ws:
        msg = await ws.receive()
        assert msg.type is WSMsgType.ERROR
        assert ws.close_code == WSCloseCode.MESSAGE_TOO_BIG
        assert ws.exception() is not None


async def test_tls(adapter: Adapter, tls_server: ssl.SSLContext, tls_client: ssl.SSLContext) -> None:
    async with adapter.run_server(adapter.module.echo_handler, ssl=tls_server) as url:
        assert url.startswith("wss://")
        async with adapter.connect(url, ssl=tls_client) as ws:
            await ws.send_str("secret")
            assert await ws.receive_str() == "secret"
            assert ws.get_extra_info("peercert") is not None


async def test_compression_negotiated_on_both_sides(adapter: Adapter) -> None:
    server_deflate: list[bool] = []

    async def handler(ws: Any) -> None:
        server_deflate.append(ws.core.deflate is not None)
        await adapter.module.echo_handler(ws)

    big = "z" * 100_000
    async with adapter.run_server(handler, compress=True) as url, adapter.connect(url, compress=True) as ws:
        assert ws.core.deflate is not None
        await ws.send_str(big)
        assert await ws.receive_str() == big
    assert server_deflate == [True]


async def test_compression_declined_by_server(adapter: Adapter) -> None:
    server = adapter.run_server(adapter.module.echo_handler, compress=False)
    async with server as url, adapter.connect(url, compress=True) as ws:
        assert ws.core.deflate is None
        await ws.send_str("plain")
        assert await ws.receive_str() == "plain"


async def test_reuse_port_where_the_platform_lacks_it_is_a_clear_error(
    adapter: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve(reuse_port=True)` on a platform without SO_REUSEPORT: a ValueError that says so, the
    same on every adapter (not each I/O library's own error, or none)."""
    monkeypatch.delattr(socket, "SO_REUSEPORT")

    async def handler(ws: Any) -> None:
        pass

    with pytest.raises(Exception) as info:  # trio and anyio raise it through the test's task group
        async with adapter.run_server(handler, reuse_port=True):
            pass
    error: BaseException = info.value
    while getattr(error, "exceptions", ()) and len(error.exceptions) == 1:  # type: ignore[attr-defined]
        error = error.exceptions[0]  # type: ignore[attr-defined]
    assert isinstance(error, ValueError)
    assert str(error) == "reuse_port needs SO_REUSEPORT, which this platform does not have"
