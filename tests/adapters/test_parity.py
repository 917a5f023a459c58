"""Where the adapters used to disagree, one test body on every adapter: a HEAD request, failing
server callbacks, a handler hit by another connection's ConnectionClosed, `receive(timeout=0)`, and the
option lists (compared with the kit's one declaration)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import sniffio

import wscore_anyio
import wscore_asyncio
import wscore_trio
from _wscore_kit.options import ClientKwargs, ClientOptions, ServerKwargs, ServerOptions
from wscore import ConnectionClosed, HandshakeError, Request, WSCloseCode, WSMsgType, WSTimeoutError

from .conftest import Adapter

pytestmark = pytest.mark.anyio
MODULES = [wscore_asyncio, wscore_trio, wscore_anyio]
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


# -- one declaration of the options ----------------------------------------------------------------


def _keyword_params(fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    return {
        name: param.default
        for name, param in inspect.signature(target).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _fields(options: type[Any]) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(options)}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_connect_takes_exactly_the_client_options(module: Any) -> None:
    assert _keyword_params(module.connect) == _fields(ClientOptions)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_serve_takes_exactly_the_server_options(module: Any) -> None:
    params = _keyword_params(module.serve)
    params.pop("task_status", None)  # trio's and anyio's idiom for a started server
    assert params == _fields(ServerOptions)


def test_accept_socket_takes_the_server_options_of_one_connection() -> None:
    listening_only = {"shutdown_timeout", "sock", "backlog", "reuse_port", "max_connections"}
    expected = {k: v for k, v in _fields(ServerOptions).items() if k not in listening_only}
    assert _keyword_params(wscore_asyncio.accept_socket) == expected


@pytest.mark.parametrize(
    ("kwargs", "options"),
    [(ClientKwargs, ClientOptions), (ServerKwargs, ServerOptions)],
    ids=["client", "server"],
)
def test_the_typed_keyword_arguments_mirror_the_options(kwargs: type[Any], options: type[Any]) -> None:
    """What type checkers see (`**options: Unpack[...]`) names exactly the options' fields."""
    assert sorted(kwargs.__annotations__) == sorted(_fields(options))


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_an_unknown_option_is_a_type_error(module: Any) -> None:
    with pytest.raises(TypeError, match="'max_size'"):
        module.connect("ws://127.0.0.1:1/", max_size=10)


def test_the_wrap_helpers_take_the_same_options() -> None:
    stream = _keyword_params(wscore_trio.wrap_stream)
    assert _keyword_params(wscore_anyio.wrap_stream) == stream
    transport = _keyword_params(wscore_asyncio.wrap_transport)
    transport.pop("initial_data")  # what asyncio's protocol hand-over read past the request
    assert transport == stream


# -- the server path -------------------------------------------------------------------------------


async def _raw_exchange(url: str, request: bytes) -> bytes:
    """Send `request` on a plain TCP connection to the server at `url`; everything it answered
    before closing."""
    port = urlsplit(url).port
    assert port is not None
    answer = b""
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(request)
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return answer


async def _echo(ws: Any) -> None:
    async for msg in ws:
        await ws.send_str(msg.data)


async def _still_echoes(adapter: Adapter, url: str) -> None:
    async with adapter.connect(url) as ws:
        await ws.send_str("still there")
        assert await ws.receive_str() == "still there"


def _page(request: Request) -> tuple[int, list[tuple[str, str]], bytes] | None:
    if request.path == "/page":
        return 200, [("Content-Type", "text/plain")], b"a page body"
    if request.path == "/boom":
        raise RuntimeError("process_request failure (expected by the test)")
    if request.path == "/crlf":
        return 200, [("X-Bad", "a\r\nSet-Cookie: injected=1")], b"never"
    if request.path == "/not-a-response":
        return "not a response"  # type: ignore[return-value]
    return None


@pytest.mark.parametrize(
    ("request_line", "status", "body"),
    [
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", b"400", b""),
        (b"HEAD /page HTTP/1.1\r\nHost: x\r\n\r\n", b"200", b""),
        (b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n", b"200", b"a page body"),
        (b"HEAD /boom HTTP/1.1\r\nHost: x\r\n\r\n", b"500", b""),
        (b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n", b"500", b"Internal Server Error\n"),
        (b"GET /crlf HTTP/1.1\r\nHost: x\r\n\r\n", b"500", b"Internal Server Error\n"),
        (b"GET /not-a-response HTTP/1.1\r\nHost: x\r\n\r\n", b"500", b"Internal Server Error\n"),
    ],
    ids=["head-upgrade-path", "head-page", "get-page", "head-raises", "get-raises", "crlf", "bad-return"],
)
async def test_plain_http_gets_one_answer_and_the_server_survives(
    adapter: Adapter, request_line: bytes, status: bytes, body: bytes
) -> None:
    """RFC 9110 §9.3.2: HEAD gets the headers a GET would get and no body; a failing or misbehaving
    `process_request` is a 500 for that request only. Then the same server still serves."""
    async with adapter.run_server(_echo, process_request=_page) as url:
        answer = await _raw_exchange(url, request_line)
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == status, answer
        assert rest == body, answer  # one response, nothing after it
        assert b"injected" not in answer
        await _still_echoes(adapter, url)


@pytest.mark.parametrize(
    "select",
    [lambda offered: 1 / 0 if offered else None, lambda offered: 42 if offered else None],
    ids=["raises", "returns-an-int"],
)
async def test_a_failing_select_subprotocol_is_a_500(adapter: Adapter, select: Any) -> None:
    async with adapter.run_server(_echo, select_subprotocol=select) as url:
        answer = await _raw_exchange(url, UPGRADE + b"Sec-WebSocket-Protocol: chat\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 500 "), answer
        await _still_echoes(adapter, url)


async def test_connection_closed_from_another_connection_is_the_handlers_failure(adapter: Adapter) -> None:
    """A handler that relays to a connection that has gone (a chat room by hand) and lets the
    ConnectionClosed escape has failed: its own client gets 1011, not silence and not 1000."""
    gone: list[Any] = []
    first_done = anyio.Event()

    async def handler(ws: Any) -> None:
        if not gone:
            gone.append(ws)
            await ws.receive()  # until its client leaves
            first_done.set()
            return
        await first_done.wait()
        await ws.receive_str()
        await gone[0].send_str("relayed")  # raises ConnectionClosed: that connection is closed

    async with adapter.run_server(handler) as url:
        async with adapter.connect(url) as first:
            await first.send_str("hello")  # the handler has it once this is read back... or closed
        async with adapter.connect(url) as second:
            await second.send_str("relay this")
            with anyio.fail_after(10):
                msg = await second.receive()
            assert (msg.type, msg.data) == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)


async def test_connection_closed_about_its_own_connection_is_the_peer_leaving(adapter: Adapter) -> None:
    seen: list[BaseException] = []
    done = anyio.Event()

    async def handler(ws: Any) -> None:
        if seen:
            await _echo(ws)
            return
        try:
            await ws.receive()  # the client's close
            await ws.send_str("too late")
        except ConnectionClosed as exc:
            seen.append(exc)
            raise
        finally:
            done.set()

    async with adapter.run_server(handler) as url:
        async with adapter.connect(url) as ws:
            await ws.close()
            assert ws.close_code == 1000
        with anyio.fail_after(10):
            await done.wait()
        assert len(seen) == 1
        await _still_echoes(adapter, url)


# -- receive(timeout=0) ----------------------------------------------------------------------------


async def test_receive_with_timeout_zero_does_not_wait(adapter: Adapter) -> None:
    """0 means "only what is already here": with nothing queued, `WSTimeoutError` at once (not the
    default bound, not forever); the connection stays open and usable."""
    async with (
        adapter.run_server(_echo) as url,
        adapter.connect(url, timeout=wscore_asyncio.WSTimeout(receive=60)) as ws,
    ):
        with pytest.raises(WSTimeoutError), anyio.fail_after(5):
            await ws.receive(timeout=0)
        assert not ws.closed
        await ws.send_str("after")
        assert await ws.receive_str() == "after"


async def test_a_peer_that_answers_every_ping_is_never_dropped(adapter: Adapter) -> None:
    """Heartbeat every 20 ms, pong within 20 ms, over loopback (a pong often arrives in the clock tick
    its ping left in): twenty-five heartbeats later the connection is still open. A driver that
    stamped the ping with the timer's deadline instead of the clock dropped such peers (uvloop)."""
    ended = anyio.Event()

    async def handler(ws: Any) -> None:
        try:
            await _echo(ws)
        finally:
            ended.set()

    async with (
        adapter.run_server(handler, heartbeat=0.02, pong_timeout=0.02) as url,
        adapter.connect(url) as ws,
    ):
        with anyio.move_on_after(0.5):
            await ended.wait()  # must not happen: the server keeps the answering peer
        assert not ended.is_set(), ws.exception()
        await ws.send_str("still open")
        assert await ws.receive_str() == "still open"


# -- origins= (cross-site WebSocket hijacking) ------------------------------------------------------

ORIGINS = ["https://good.example", re.compile(r"https://[a-z]+\.good\.example"), None]


@pytest.mark.parametrize(
    ("origin", "admitted"),
    [
        ("https://good.example", True),
        ("https://app.good.example", True),  # the pattern, matched whole
        (None, True),  # None in the list: a client that sends no Origin (not a browser)
        ("https://evil.example", False),
        ("https://good.example.evil.example", False),
        ("https://app.good.example:444", False),
    ],
)
async def test_origins_admits_only_the_listed_origins(
    adapter: Adapter, origin: str | None, admitted: bool
) -> None:
    async with adapter.run_server(_echo, origins=ORIGINS) as url:
        if admitted:
            async with adapter.connect(url, origin=origin) as ws:
                await ws.send_str("in")
                assert await ws.receive_str() == "in"
        else:
            with pytest.raises(HandshakeError) as info:
                async with adapter.connect(url, origin=origin):
                    pass
            assert info.value.status == 403
            assert b"is not allowed" in info.value.body
        await _still_echoes(adapter, url)


async def test_without_none_in_origins_a_request_without_origin_is_refused(adapter: Adapter) -> None:
    async with adapter.run_server(_echo, origins=["https://good.example"]) as url:
        with pytest.raises(HandshakeError) as info:
            async with adapter.connect(url):
                pass
        assert info.value.status == 403


async def test_process_request_answers_before_the_origin_check(adapter: Adapter) -> None:
    """A page served by process_request is plain HTTP: no Origin is needed for it."""
    async with adapter.run_server(_echo, origins=["https://good.example"], process_request=_page) as url:
        answer = await _raw_exchange(url, b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")


# -- write_timeout: a peer that never reads ----------------------------------------------------------


async def test_a_peer_that_never_reads_is_dropped_after_the_write_timeout(adapter: Adapter) -> None:
    """The server's handler sends to a client that completed the handshake and never reads again:
    once the socket buffers are full its send waits, and after `write_timeout` the connection is
    dropped (1006), the send raises ConnectionClosed and `exception()` says why."""
    outcome: dict[str, Any] = {}
    done = anyio.Event()

    async def handler(ws: Any) -> None:
        if done.is_set():
            await _echo(ws)  # the server goes on serving the others
            return
        chunk = b"x" * 65536
        try:
            while True:
                await ws.send_bytes(chunk)
        except ConnectionClosed:
            outcome["exception"] = ws.exception()
            outcome["close_code"] = ws.close_code
        finally:
            done.set()

    async with adapter.run_server(handler, write_timeout=0.3) as url:
        port = urlsplit(url).port
        assert port is not None
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(UPGRADE + b"\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive(1)  # the 101, byte by byte: no frame is read
            assert head.startswith(b"HTTP/1.1 101 ")
            with anyio.fail_after(30):
                await done.wait()
        assert outcome["close_code"] == 1006
        assert isinstance(outcome["exception"], WSTimeoutError)
        assert "write_timeout" in str(outcome["exception"])
        await _still_echoes(adapter, url)


# -- max_connections ----------------------------------------------------------------------------------


async def test_max_connections_refuses_the_next_upgrade_with_503(adapter: Adapter) -> None:
    """Two served at once: a third upgrade gets 503 with Retry-After; once one has gone, a new one is
    admitted (the server lets go of a connection when its close completes, a moment after the
    client's: the last step retries, bounded)."""
    async with adapter.run_server(_echo, max_connections=2) as url:
        async with adapter.connect(url) as first:
            async with adapter.connect(url) as second:
                with pytest.raises(HandshakeError) as info:
                    async with adapter.connect(url):
                        pass
                assert info.value.status == 503
                assert ("retry-after", "1") in [(k.lower(), v) for k, v in info.value.headers]
                await second.send_str("two")
                assert await second.receive_str() == "two"
            await first.send_str("one")
            assert await first.receive_str() == "one"
        with anyio.fail_after(10):
            while True:
                try:
                    async with adapter.connect(url) as again:
                        await again.send_str("again")
                        assert await again.receive_str() == "again"
                        break
                except HandshakeError as exc:
                    assert exc.status == 503


async def test_a_tls_handshake_never_finished_is_dropped_at_the_open_timeout(
    adapter: Adapter, tls_server: ssl.SSLContext
) -> None:
    """A client that opens TCP to a wss:// server and sends nothing holds its slot only for the open
    timeout (asyncio's own default was 60 s, anyio's 30 s); the server goes on serving."""
    reported: list[dict[str, Any]] = []
    if sniffio.current_async_library() == "asyncio":
        # asyncio reports each aborted TLS handshake to the loop's exception handler (its own log).
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
    async with adapter.run_server(_echo, ssl=tls_server, open_timeout=0.3) as url:
        port = urlsplit(url).port
        assert port is not None
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            with anyio.fail_after(5):  # far below the old 30-60 s
                try:
                    while await stream.receive():
                        pass
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass  # closed (or reset) by the server
    assert all("SSL handshake is taking longer" in str(c.get("exception")) for c in reported), reported


async def test_a_receive_while_our_close_is_pending_keeps_its_own_timeout(adapter: Adapter) -> None:
    """The peer does not answer our close yet (its handler holds its CLOSE unread, autoclose off): a
    receive(timeout=0.2) in that window raises WSTimeoutError after 0.2 s instead of waiting out the
    close timeout (5 s here)."""
    release = anyio.Event()

    async def handler(ws: Any) -> None:
        await release.wait()

    async with (
        adapter.run_server(handler, autoclose=False) as url,
        adapter.connect(url, timeout=wscore_asyncio.WSTimeout(close=5)) as ws,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(ws.close)
        await anyio.wait_all_tasks_blocked()
        assert ws.closed
        with anyio.fail_after(2), pytest.raises(WSTimeoutError):
            await ws.receive(timeout=0.2)
        release.set()  # the server's handler returns: it closes, our close() completes
    assert ws.close_code == 1000
