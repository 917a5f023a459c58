"""`wscore_asyncio.uvicorn:WSCoreProtocol` under a real uvicorn server, with a Starlette app.

Each test starts uvicorn on 127.0.0.1 in its own event loop (`asyncio.run`), talks to it with the
`websockets` client (or a raw socket where a misbehaving peer is needed) and stops it. The server is
known to be up when `startup()` has returned (an event, not a sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.logging import TRACE_LOG_LEVEL
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import free_port
from wscore import ServerConnection
from wscore_asyncio.uvicorn import WSCoreProtocol

from .test_core_embedding import KEY


class _Server(uvicorn.Server):
    """uvicorn's Server with an event set once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[tuple[str, _Server]]:
    """Run uvicorn with WSCoreProtocol on a free port for the duration of the block."""
    port = free_port()
    options.setdefault("ws_ping_interval", None)
    options.setdefault("ws", "wscore_asyncio.uvicorn:WSCoreProtocol")  # as `uvicorn --ws` takes it
    options.setdefault("log_level", "warning")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="h11", lifespan="off", **options)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    assert not task.done(), "uvicorn did not start"
    try:
        yield f"ws://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


Runner = Callable[[Callable[[], Awaitable[None]]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Runs a test body on a fresh loop: asyncio's, and uvloop's (uvicorn's default when installed)."""

    def runner(test: Callable[[], Awaitable[None]]) -> None:
        body = asyncio.wait_for(test(), 60)
        if request.param == "uvloop":
            uvloop.run(body)
        else:
            asyncio.run(body)

    return runner


class Recorder:
    """What the app saw, for the test to assert on: disconnect codes and scopes, with an event."""

    def __init__(self) -> None:
        self.disconnects: list[tuple[int, str | None]] = []
        self.disconnected = asyncio.Event()
        self.scopes: list[dict[str, Any]] = []

    def disconnect(self, exc: WebSocketDisconnect) -> None:
        self.disconnects.append((exc.code, exc.reason))
        self.disconnected.set()


def make_app(rec: Recorder) -> Starlette:
    async def echo(ws: WebSocket) -> None:
        rec.scopes.append(dict(ws.scope))
        offered = ws.scope["subprotocols"]
        await ws.accept(subprotocol="chat" if "chat" in offered else None, headers=[(b"x-app", b"yes")])
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
                if message.get("text") is not None:
                    text = message["text"]
                    if text.startswith("close:"):
                        _, code, reason = text.split(":", 2)
                        await ws.close(int(code), reason)
                        return
                    if text == "scope":
                        scope = ws.scope
                        info = {
                            "path": scope["path"],
                            "raw_path": scope["raw_path"].decode(),
                            "root_path": scope["root_path"],
                            "query_string": scope["query_string"].decode(),
                            "subprotocols": scope["subprotocols"],
                            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                            "scheme": scope["scheme"],
                            "http_version": scope["http_version"],
                            "extensions": list(scope.get("extensions", {})),
                        }
                        await ws.send_text(json.dumps(info))
                        continue
                    await ws.send_text(text)
                else:
                    await ws.send_bytes(message["bytes"])
        except WebSocketDisconnect as exc:
            rec.disconnect(exc)

    async def hold(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except WebSocketDisconnect as exc:
            rec.disconnect(exc)

    async def deny(ws: WebSocket) -> None:
        await ws.close()

    async def denial(ws: WebSocket) -> None:
        await ws.send_denial_response(
            PlainTextResponse("not you", status_code=401, headers={"www-authenticate": "Token"})
        )

    async def fail(ws: WebSocket) -> None:
        raise RuntimeError("the app broke before accepting")

    async def fail_after_accept(ws: WebSocket) -> None:
        await ws.accept()
        raise RuntimeError("the app broke after accepting")

    async def returns(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("bye")

    async def bye(ws: WebSocket) -> None:
        await ws.accept()
        await ws.close(1000)

    return Starlette(
        routes=[
            WebSocketRoute("/echo", echo),
            WebSocketRoute("/hold", hold),
            WebSocketRoute("/deny", deny),
            WebSocketRoute("/denial", denial),
            WebSocketRoute("/fail", fail),
            WebSocketRoute("/fail-after-accept", fail_after_accept),
            WebSocketRoute("/returns", returns),
            WebSocketRoute("/bye", bye),
        ]
    )


# -- messages ----------------------------------------------------------------------------------


def test_text_and_bytes_round_trip(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec)) as (url, _), connect(url + "/echo") as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            big = "x" * 200_000  # several reads, and compressed both ways by default
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "mented"])  # a fragmented message arrives whole
            assert await ws.recv() == "fragmented"
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            await ws.close(1001, "leaving")
            await rec.disconnected.wait()
            assert rec.disconnects == [(1001, "leaving")]

    run(main)


def test_many_messages_in_order_with_a_small_queue(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec), ws_max_queue=2) as (url, _), connect(url + "/echo") as ws:
            for i in range(300):
                await ws.send(f"m{i}")
            assert [await ws.recv() for _ in range(300)] == [f"m{i}" for i in range(300)]

    run(main)


def test_scope_and_headers(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with (
            serving(make_app(rec), root_path="/api", headers=[("X-Server-Extra", "1")]) as (url, _),
            connect(url + "/echo?a=1&b=%20", subprotocols=["other", "chat"]) as ws,  # type: ignore[list-item]
        ):
            assert ws.subprotocol == "chat"
            response = ws.response
            assert response is not None
            assert response.headers["x-app"] == "yes"
            assert response.headers["server"] == "uvicorn"
            assert response.headers["x-server-extra"] == "1"
            assert "date" in response.headers
            assert response.headers["sec-websocket-protocol"] == "chat"
            extensions = response.headers["sec-websocket-extensions"]
            assert extensions.startswith("permessage-deflate")
            assert "server_max_window_bits=12" in extensions
            await ws.send("scope")
            info = json.loads(await ws.recv())
            assert info["path"] == "/api/echo"
            assert info["raw_path"] == "/api/echo"
            assert info["root_path"] == "/api"
            assert info["query_string"] == "a=1&b=%20"
            assert info["subprotocols"] == ["other", "chat"]
            assert info["scheme"] == "ws"
            assert info["http_version"] == "1.1"
            assert info["extensions"] == ["websocket.http.response"]
            names = [name for name, _ in info["headers"]]
            assert "host" in names and "sec-websocket-key" in names
            assert all(name == name.lower() for name in names)

    run(main)


def test_no_subprotocol_and_no_deflate(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with (
            serving(make_app(rec), ws_per_message_deflate=False) as (url, _),
            connect(url + "/echo") as ws,
        ):
            assert ws.subprotocol is None
            assert ws.response is not None
            assert "sec-websocket-extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"

    run(main)


def test_raw_header_bytes_and_raw_path_reach_the_app(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec)) as (url, _):
            port = int(url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /ech%6F?q=%C3%A9 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
                b"Sec-WebSocket-Version: 13\r\nX-Name: abra\xc3\xa3o\r\n\r\n"
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            writer.write(b"\x88\x82abcd" + bytes(a ^ b for a, b in zip(b"\x03\xe8", b"ab", strict=True)))
            assert await reader.read() == b"\x88\x02\x03\xe8"  # our close echoed, then EOF
            writer.close()
            await writer.wait_closed()
            await rec.disconnected.wait()
        (scope,) = rec.scopes
        assert scope["path"] == "/echo"
        assert scope["raw_path"] == b"/ech%6F"
        assert scope["query_string"] == b"q=%C3%A9"
        assert dict(scope["headers"])[b"x-name"] == "abraão".encode()

    run(main)


def test_server_and_date_headers_can_be_disabled(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with (
            serving(make_app(rec), server_header=False, date_header=False) as (url, _),
            connect(url + "/echo") as ws,
        ):
            assert ws.response is not None
            assert "server" not in ws.response.headers
            assert "date" not in ws.response.headers

    run(main)


# -- closing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4001, "custom reason"), (1008, "policy")])
def test_app_closes_with_code_and_reason(run: Runner, code: int, reason: str) -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec)) as (url, _), connect(url + "/echo") as ws:
            await ws.send(f"close:{code}:{reason}")
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason)
            assert info.value.sent is not None  # the client answered: a clean close handshake
            await ws.wait_closed()

    run(main)


def test_app_returning_without_close_closes_1000(run: Runner) -> None:
    async def main() -> None:
        async with serving(make_app(Recorder())) as (url, _), connect(url + "/returns") as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000

    run(main)


def test_app_failing_after_accept_closes_1011(run: Runner) -> None:
    async def main() -> None:
        async with serving(make_app(Recorder())) as (url, _), connect(url + "/fail-after-accept") as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011

    run(main)


def test_shutdown_closes_with_1012(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec)) as (url, server):
            async with connect(url + "/hold") as ws:
                server.should_exit = True
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                assert info.value.rcvd is not None and info.value.rcvd.code == 1012
            await rec.disconnected.wait()
            assert rec.disconnects == [(1012, "")]

    run(main)


def test_message_over_ws_max_size_is_1009(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec), ws_max_size=1024) as (url, _), connect(url + "/echo") as ws:
            await ws.send("y" * 1024)  # at the limit: fine
            assert await ws.recv() == "y" * 1024
            await ws.send("y" * 1025)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
            await rec.disconnected.wait()
            assert rec.disconnects[0][0] == 1009

    run(main)


# -- refusals ----------------------------------------------------------------------------------


def test_close_before_accept_is_403(run: Runner) -> None:
    async def main() -> None:
        async with serving(make_app(Recorder())) as (url, _):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/deny"):
                    pass
            assert info.value.response.status_code == 403

    run(main)


def test_denial_response_extension(run: Runner) -> None:
    async def main() -> None:
        async with serving(make_app(Recorder())) as (url, _):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/denial"):
                    pass
            response = info.value.response
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Token"
            assert response.body == b"not you"

    run(main)


def test_app_failing_before_accept_is_500(run: Runner) -> None:
    async def main() -> None:
        async with serving(make_app(Recorder())) as (url, _):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/fail"):
                    pass
            assert info.value.response.status_code == 500

    run(main)


def test_unknown_route_is_403(run: Runner) -> None:
    async def main() -> None:
        async with serving(make_app(Recorder())) as (url, _):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/nowhere"):
                    pass
            assert info.value.response.status_code == 403

    run(main)


def denial_app(*steps: dict[str, Any], fail: bool = False) -> Any:
    """A raw ASGI app that answers the handshake with `steps` (http.response messages)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "websocket.http.response" in scope["extensions"]
        assert (await receive())["type"] == "websocket.connect"
        for step in steps:
            await send(step)
        if fail:
            raise RuntimeError("the app broke in the middle of its response")

    return app


@pytest.mark.parametrize(
    ("steps", "fail", "status", "body"),
    [
        # A body in two parts, and the app's Content-Length kept.
        (
            [
                {"status": 400, "headers": [(b"content-length", b"20"), (b"content-type", b"text/plain")]},
                {"body": b"x" * 10, "more_body": True},
                {"body": b"y" * 10},
            ],
            False,
            400,
            b"x" * 10 + b"y" * 10,
        ),
        # No Content-Length from the app: one is added.
        ([{"status": 403, "headers": []}, {"body": b"hardbody"}], False, 403, b"hardbody"),
        # The app returns after the start without a body: the response goes out with what there is.
        ([{"status": 404, "headers": []}], False, 404, b""),
        # A second start is an error in the app, but the response it started is still sent.
        ([{"status": 404, "headers": []}, {"status": 404, "headers": []}], False, 404, b""),
        # An invalid status is an error before anything was started: 500.
        ([{"status": 700, "headers": []}], False, 500, b"Internal Server Error"),
        ([{"status": 401, "headers": []}, {"body": b"a", "more_body": True}], True, 401, b"a"),
    ],
)
def test_denial_responses(
    run: Runner, steps: list[dict[str, Any]], fail: bool, status: int, body: bytes
) -> None:
    for step in steps:
        step["type"] = "websocket.http.response." + ("start" if "status" in step else "body")

    async def main() -> None:
        async with serving(denial_app(*steps, fail=fail)) as (url, _):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "/"):
                    pass
            response = info.value.response
            assert response.status_code == status
            assert response.body == body
            assert response.headers["content-length"] == str(len(body))
            assert response.headers["server"] == "uvicorn"

    run(main)


async def raw_handshake(port: int, path: str, *, version: str = "13") -> tuple[Any, Any, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
        f"Sec-WebSocket-Version: {version}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def test_bad_version_is_refused_before_the_app_runs(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        async with serving(make_app(rec)) as (url, _):
            port = int(url.rsplit(":", 1)[1])
            reader, writer, head = await raw_handshake(port, "/echo", version="8")
            assert head.startswith(b"HTTP/1.1 426 ")
            assert b"sec-websocket-version: 13" in head.lower()
            await reader.read()  # the server closes the connection
            writer.close()
            await writer.wait_closed()
            assert rec.scopes == []

    run(main)


# -- keepalive ---------------------------------------------------------------------------------


def test_keepalive_drops_a_silent_peer(run: Runner) -> None:
    async def main() -> None:
        rec = Recorder()
        interval, timeout = 0.3, 0.3
        async with serving(make_app(rec), ws_ping_interval=interval, ws_ping_timeout=timeout) as (url, _):
            port = int(url.rsplit(":", 1)[1])
            reader, writer, head = await raw_handshake(port, "/hold")
            assert head.startswith(b"HTTP/1.1 101 ")
            opened = time.monotonic()
            ping = await reader.readexactly(2)
            pinged = time.monotonic()
            assert ping[0] == 0x89  # a ping, which this peer never answers
            ping_payload = await reader.readexactly(ping[1])
            assert len(ping_payload) == ping[1]
            # Then the server says why (as uvicorn's protocols do) and drops the connection.
            reason = b"keepalive ping timeout"
            assert await reader.read() == bytes([0x88, 2 + len(reason)]) + (1011).to_bytes(2, "big") + reason
            dropped = time.monotonic()
            writer.close()
            await writer.wait_closed()
            await rec.disconnected.wait()
            assert rec.disconnects[0][0] == 1006
            assert pinged - opened >= interval * 0.9
            assert timeout * 0.9 <= dropped - pinged < timeout + 2.0

    run(main)


def test_keepalive_keeps_an_answering_peer(run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        rec = Recorder()
        async with (
            serving(make_app(rec), ws_ping_interval=0.1, ws_ping_timeout=0.1) as (url, server),
            connect(url + "/echo", ping_interval=None) as ws,  # websockets answers pings by itself
        ):
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, WSCoreProtocol)
            timer_calls: list[float] = []
            conn = protocol.conn
            handle_timer = type(conn).handle_timer

            def recording(self: ServerConnection, now: float) -> None:
                if self is conn:
                    timer_calls.append(now)
                handle_timer(self, now)

            # On the class: the core's connections have slots, no instance dict to patch.
            monkeypatch.setattr(type(conn), "handle_timer", recording)
            # Ten heartbeat intervals of silence from the app's side: the peer must survive them.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(rec.disconnected.wait(), 1.0)
            assert len(timer_calls) >= 4
            await ws.send("still here")
            assert await ws.recv() == "still here"

    run(main)


# -- what uvicorn's own protocols do -----------------------------------------------------------
# Each test below runs the same client against WSCoreProtocol and against uvicorn's websockets-sansio
# protocol (the reference: uvicorn/protocols/websockets/websockets_sansio_impl.py) and asserts the
# same outcome.

OURS = "wscore_asyncio.uvicorn:WSCoreProtocol"
SANSIO = "websockets-sansio"
UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.asgi")
TRACED: dict[str, Any] = {"log_level": "trace", "log_config": None}


class _Records(logging.Handler):
    """Keeps every record it handles."""

    def __init__(self) -> None:
        super().__init__(TRACE_LOG_LEVEL)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def trace_records() -> Iterator[list[logging.LogRecord]]:
    """uvicorn's TRACE records, for a server run with `TRACED` options. uvicorn's default log config
    stops propagation at "uvicorn" and replaces its loggers' handlers, so the server runs without it
    (`log_config=None`) and a handler goes on the loggers themselves (caplog's handler changes with
    the test phase); `log_level="trace"` changes their levels, restored afterwards."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in UVICORN_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _normalized(records: list[logging.LogRecord], client: str) -> dict[str, list[object]]:
    """Each logger's TRACE records, the addresses (new ports each run) replaced by placeholders."""
    result: dict[str, list[object]] = {name: [] for name in UVICORN_LOGGERS}
    for record in records:
        if record.levelno != TRACE_LOG_LEVEL or record.name not in result:
            continue
        # The scope's keys in their order (the log shows them so), its addresses as placeholders.
        args = tuple(
            {k: k.upper() if k in ("client", "server") else v for k, v in arg.items()}
            if isinstance(arg, dict)
            else arg
            for arg in (record.args if isinstance(record.args, tuple) else ())
        )
        result[record.name].append((str(record.msg), repr(args).replace(client, "CLIENT")))
    return result


def test_trace_logging_as_uvicorn_protocols(run: Runner, trace_records: list[logging.LogRecord]) -> None:
    async def session(ws_protocol: str) -> dict[str, list[object]]:
        trace_records.clear()
        rec = Recorder()
        async with serving(make_app(rec), ws=ws_protocol, **TRACED) as (url, _):
            async with connect(url + "/echo") as ws:
                host, port = ws.local_address[:2]
                await ws.send("hi")
                assert await ws.recv() == "hi"
            await rec.disconnected.wait()
        # uvicorn's shutdown waits for its connections: connection_lost has run by now.
        return _normalized(trace_records, f"{host}:{port}")

    async def main() -> None:
        ours = await session(OURS)
        assert ours == await session(SANSIO)
        assert ("%sWebSocket connection made", "('CLIENT - ',)") in ours["uvicorn.error"]
        assert ("%sWebSocket connection lost", "('CLIENT - ',)") in ours["uvicorn.error"]
        # uvicorn's MessageLoggerMiddleware (installed by Config.load at TRACE) wraps our app too.
        asgi = [args for msg, args in cast("list[tuple[str, str]]", ours["uvicorn.asgi"])]
        assert any("'websocket.connect'" in args for args in asgi)
        assert any("'websocket.disconnect'" in args for args in asgi)

    run(main)


def test_trace_keepalive_timeout_as_uvicorn_protocols(
    run: Runner, trace_records: list[logging.LogRecord]
) -> None:
    async def session(ws_protocol: str) -> list[object]:
        trace_records.clear()
        rec = Recorder()
        options = {"ws": ws_protocol, "ws_ping_interval": 0.2, "ws_ping_timeout": 0.2, **TRACED}
        async with serving(make_app(rec), **options) as (url, _):
            reader, writer, head = await raw_handshake(int(url.rsplit(":", 1)[1]), "/hold")
            assert head.startswith(b"HTTP/1.1 101 ")
            host, port = writer.get_extra_info("sockname")[:2]
            await reader.read()  # pings never answered: the server drops this peer
            writer.close()
            await rec.disconnected.wait()
        return _normalized(trace_records, f"{host}:{port}")["uvicorn.error"]

    async def main() -> None:
        ours = await session(OURS)
        assert ours == await session(SANSIO)
        assert ("%sWebSocket keepalive ping timeout", "('CLIENT - ',)") in ours

    run(main)


class _QuickClose(WSCoreProtocol):
    close_timeout = 0.5


def test_close_timeout_is_uvicorns_and_a_subclass_changes_it(run: Runner) -> None:
    async def main() -> None:
        # uvicorn's protocols wait a fixed 10 s (websockets_sansio_impl.py: self.close_timeout = 10.0).
        async with serving(make_app(Recorder())) as (url, server), connect(url + "/hold"):
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, WSCoreProtocol)
            assert protocol.conn.config.close_timeout == 10.0
        async with serving(make_app(Recorder()), ws=_QuickClose) as (url, _):
            reader, writer, head = await raw_handshake(int(url.rsplit(":", 1)[1]), "/bye")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await reader.readexactly(4) == b"\x88\x02\x03\xe8"  # the app's close, 1000
            sent = time.monotonic()
            # This peer never answers the close frame: the server drops it at its close timeout.
            assert await asyncio.wait_for(reader.read(), 5) == b""
            waited = time.monotonic() - sent
            writer.close()
            assert _QuickClose.close_timeout * 0.9 <= waited < 5

    run(main)


def _upgrade(port: int, *, target: str = "/", extra: str = "") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def _line(length: int) -> str:
    """A header line of `length` bytes, CRLF included."""
    return "x-big: " + "a" * (length - len("x-big: \r\n")) + "\r\n"


def _target(length: int) -> str:
    """A request target that makes the request line `length` bytes, CRLF included."""
    return "/?" + "a" * (length - len("GET /? HTTP/1.1\r\n"))


@pytest.mark.parametrize("ws_protocol", [OURS, SANSIO])
def test_line_limits_and_bodies_as_uvicorn_protocols(run: Runner, ws_protocol: str) -> None:
    """A line over 8 KiB is 414/431, a body 400 (websockets' parser under uvicorn's sansio protocol:
    MAX_LINE_LENGTH = 8192 in websockets/http11.py; a request body refused in Request.parse)."""

    async def main() -> None:
        scopes: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scopes.append(scope)
            await receive()
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass

        async with serving(app, ws=ws_protocol) as (url, _):
            port = int(url.rsplit(":", 1)[1])
            cases = [
                (_upgrade(port, extra=_line(8192)), b"101", 1),
                (_upgrade(port, extra=_line(8193)), b"431", 0),
                (_upgrade(port, target=_target(8192)), b"101", 1),
                (_upgrade(port, target=_target(8193)), b"414", 0),
                (_upgrade(port, extra="Content-Length: 0\r\n"), b"101", 1),
                (_upgrade(port, extra="Content-Length: 5\r\n") + b"hello", b"400", 0),
            ]
            for request, status, runs in cases:
                before = len(scopes)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                writer.close()
                await writer.wait_closed()
                assert head.split(b" ", 2)[1] == status, (len(request), head)
                assert len(scopes) - before == runs

    run(main)
