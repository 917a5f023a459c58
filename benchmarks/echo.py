"""Echo round trips over sockets: the wscore adapters vs websockets, aiohttp, picows, trio-websocket.

    python -m benchmarks.echo                    # every group, every size
    python -m benchmarks.echo --quick            # a smoke run (< 60 s)
    python -m benchmarks.echo --libs wscore_asyncio,websockets --sizes 16,1024 --markdown

Each library's client talks to its own server on 127.0.0.1 (a free port), in one process, one event
loop; the server echoes every binary message. A case is a message size and how many messages are in
flight: 1 (send, wait for the echo) or 64 (send 64 while receiving 64, then the next batch). Groups:

- asyncio: wscore_asyncio, websockets, aiohttp, picows, wscore_anyio (on asyncio), each its own pair;
- trio: wscore_trio, trio-websocket, wscore_anyio (on trio), under `trio.run`;
- uvicorn: a Starlette echo endpoint under uvicorn with ws=WSCoreProtocol, "websockets-sansio" and
  "wsproto", all driven by the websockets client;
- fixed: the asyncio servers, all driven by the websockets client (server cost, same client).

Compression is off everywhere (websockets enables it by default; it is disabled on both sides).
Servers start and stop inside each measurement; each repeat runs every library once, interleaved, and
the best repeat counts. Ratios are the group's wscore rate over each peer's, from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "adapters"))

import anyio
import trio

MAX_SIZE = 4 * 1024 * 1024
DEFAULT_SIZES = (16, 1024, 64 * 1024, 1024 * 1024)
INFLIGHT = (1, 64)

Send = Callable[[bytes], Awaitable[None]]
Recv = Callable[[], Awaitable[bytes]]
# A client: an async context manager, given the server's URL, yielding (send, receive).
Client = Callable[[str], AbstractAsyncContextManager[tuple[Send, Recv]]]
# A server: an async context manager that listens on 127.0.0.1 and yields its ws:// URL.
Server = Callable[[], AbstractAsyncContextManager[str]]


@dataclass(frozen=True)
class Lib:
    """One row: a server, a client, and the event loop they run on ("asyncio" or "trio")."""

    name: str
    group: str
    server: Server
    client: Client
    loop: str


def fmt_size(n: int) -> str:
    """16 B, 1 KiB, 64 KiB, 1 MiB."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- servers -----------------------------------------------------------------------------------------


@asynccontextmanager
async def wscore_asyncio_server() -> AsyncIterator[str]:
    import wscore_asyncio

    async with wscore_asyncio.serve(
        wscore_asyncio.echo_handler, "127.0.0.1", 0, compress=False, max_msg_size=MAX_SIZE
    ) as server:
        yield f"ws://127.0.0.1:{server.port}/"


@asynccontextmanager
async def websockets_server() -> AsyncIterator[str]:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=MAX_SIZE) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def aiohttp_server() -> AsyncIterator[str]:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def picows_server() -> AsyncIterator[str]:
    import picows

    class Echo(picows.WSListener):  # type: ignore[misc,unused-ignore]  # Any when picows (bench extra) is absent
        # No back-pressure, like the simplest picows echo server (the default methods log a warning).
        def pause_writing(self) -> None:
            pass

        def resume_writing(self) -> None:
            pass

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type is picows.WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (picows.WSMsgType.BINARY, picows.WSMsgType.TEXT):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

    server = await picows.ws_create_server(lambda _: Echo(), "127.0.0.1", 0, max_frame_size=MAX_SIZE)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def wscore_trio_server() -> AsyncIterator[str]:
    import wscore_trio

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: wscore_trio.serve(
                wscore_trio.echo_handler,
                "127.0.0.1",
                0,
                compress=False,
                max_msg_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        try:
            yield f"ws://127.0.0.1:{server.port}/"
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def wscore_anyio_server() -> AsyncIterator[str]:
    import wscore_anyio

    async with anyio.create_task_group() as tg:
        server = await tg.start(
            lambda task_status: wscore_anyio.serve(
                wscore_anyio.echo_handler,
                "127.0.0.1",
                0,
                compress=False,
                max_msg_size=MAX_SIZE,
                task_status=task_status,
            )
        )
        try:
            yield f"ws://127.0.0.1:{server.port}/"
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def trio_websocket_server() -> AsyncIterator[str]:
    import trio_websocket

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                handler, "127.0.0.1", 0, None, max_message_size=MAX_SIZE, task_status=task_status
            )
        )
        try:
            yield f"ws://127.0.0.1:{server.port}/"
        finally:
            nursery.cancel_scope.cancel()


def uvicorn_server(ws: Any) -> Server:
    """A Starlette echo endpoint under uvicorn with the given `ws` protocol (a class or a name)."""

    @asynccontextmanager
    async def run() -> AsyncIterator[str]:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import WebSocketRoute
        from starlette.websockets import WebSocket, WebSocketDisconnect

        async def echo(websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                while True:
                    await websocket.send_bytes(await websocket.receive_bytes())
            except WebSocketDisconnect:
                pass

        app = Starlette(routes=[WebSocketRoute("/", echo)])
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and accepted sockets inherit proto 0 from socket.socket(); Nagle would stall pipelining.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, ws=ws, lifespan="off", log_level="warning", ws_max_size=MAX_SIZE)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)  # uvicorn exposes no started event
            yield f"ws://127.0.0.1:{port}/"
        finally:
            server.should_exit = True
            await task
            sock.close()

    return run


# -- clients -----------------------------------------------------------------------------------------


@asynccontextmanager
async def wscore_asyncio_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import wscore_asyncio

    async with wscore_asyncio.connect(url, max_msg_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data: bytes = (await ws.receive()).data
            return data

        yield ws.send_bytes, recv


@asynccontextmanager
async def websockets_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            return await ws.recv(decode=False)

        yield ws.send, recv


@asynccontextmanager
async def aiohttp_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data: bytes = (await ws.receive()).data
            return data

        yield ws.send_bytes, recv


@asynccontextmanager
async def picows_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import picows

    # picows calls back per frame; a queue turns that into the awaitable receive the others have.
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(picows.WSListener):  # type: ignore[misc,unused-ignore]  # as above
        def pause_writing(self) -> None:
            pass

        def resume_writing(self) -> None:
            pass

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            if frame.msg_type is picows.WSMsgType.BINARY:
                queue.put_nowait(frame.get_payload_as_bytes())

    transport, _ = await picows.ws_connect(Client, url, max_frame_size=MAX_SIZE)
    binary = picows.WSMsgType.BINARY

    async def send(data: bytes) -> None:
        transport.send(binary, data)

    try:
        yield send, queue.get
    finally:
        transport.send_close(picows.WSCloseCode.OK)
        await transport.wait_disconnected()


@asynccontextmanager
async def stream_client(module: Any, url: str) -> AsyncIterator[tuple[Send, Recv]]:
    """wscore_trio's or wscore_anyio's client (the same driver)."""
    async with module.connect(url, max_msg_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data: bytes = (await ws.receive()).data
            return data

        yield ws.send_bytes, recv


def wscore_trio_client(url: str) -> AbstractAsyncContextManager[tuple[Send, Recv]]:
    import wscore_trio

    return stream_client(wscore_trio, url)


def wscore_anyio_client(url: str) -> AbstractAsyncContextManager[tuple[Send, Recv]]:
    import wscore_anyio

    return stream_client(wscore_anyio, url)


@asynccontextmanager
async def trio_websocket_client(url: str) -> AsyncIterator[tuple[Send, Recv]]:
    import trio_websocket

    async with trio_websocket.open_websocket_url(url, max_message_size=MAX_SIZE) as ws:

        async def recv() -> bytes:
            data = await ws.get_message()
            assert isinstance(data, bytes)
            return data

        yield ws.send_message, recv


def all_libs() -> list[Lib]:
    from wscore_asyncio.uvicorn import WSCoreProtocol

    libs = [
        Lib("wscore_asyncio", "asyncio", wscore_asyncio_server, wscore_asyncio_client, "asyncio"),
        Lib("websockets", "asyncio", websockets_server, websockets_client, "asyncio"),
        Lib("aiohttp", "asyncio", aiohttp_server, aiohttp_client, "asyncio"),
    ]
    try:
        import picows  # noqa: F401

        libs.append(Lib("picows", "asyncio", picows_server, picows_client, "asyncio"))
    except ImportError:
        print("# picows does not import: skipped", file=sys.stderr)
    libs += [
        Lib("wscore_anyio[asyncio]", "asyncio", wscore_anyio_server, wscore_anyio_client, "asyncio"),
        Lib("wscore_trio", "trio", wscore_trio_server, wscore_trio_client, "trio"),
        Lib("trio-websocket", "trio", trio_websocket_server, trio_websocket_client, "trio"),
        Lib("wscore_anyio[trio]", "trio", wscore_anyio_server, wscore_anyio_client, "trio"),
        Lib("uvicorn+wscore", "uvicorn", uvicorn_server(WSCoreProtocol), websockets_client, "asyncio"),
        Lib(
            "uvicorn+websockets-sansio",
            "uvicorn",
            uvicorn_server("websockets-sansio"),
            websockets_client,
            "asyncio",
        ),
        Lib("uvicorn+wsproto", "uvicorn", uvicorn_server("wsproto"), websockets_client, "asyncio"),
    ]
    # The asyncio servers again, all under the one websockets client.
    fixed = [
        lib for lib in libs if lib.group == "asyncio" and lib.loop == "asyncio" and "anyio" not in lib.name
    ]
    libs += [Lib(f"{lib.name} server", "fixed", lib.server, websockets_client, "asyncio") for lib in fixed]
    return libs


GROUP_TITLES = {
    "asyncio": "asyncio, each library's client and server",
    "trio": "trio, each library's client and server",
    "uvicorn": "Starlette under uvicorn (websockets client)",
    "fixed": "asyncio servers, all driven by the websockets client",
}


# -- measuring ---------------------------------------------------------------------------------------


def rounds_for(size: int, rounds: int, budget: int) -> int:
    """Round trips per measurement: `rounds`, fewer for big messages (at most `budget` bytes), >= 64."""
    return max(64, min(rounds, budget // size))


async def run_case(send: Send, recv: Recv, payload: bytes, inflight: int, rounds: int) -> float:
    """`rounds` round trips, `inflight` at a time; returns round trips per second."""
    batches = max(1, rounds // inflight)

    async def send_batch() -> None:
        for _ in range(inflight):
            await send(payload)

    start = time.perf_counter()
    if inflight == 1:
        for _ in range(batches):
            await send(payload)
            await recv()
    else:
        for _ in range(batches):
            # Sending and receiving at once: sending all 64 first could fill every buffer and
            # deadlock on flow control with big messages.
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_batch)
                for _ in range(inflight):
                    await recv()
    return batches * inflight / (time.perf_counter() - start)


async def run_lib(lib: Lib, cases: Sequence[tuple[int, int]], args: argparse.Namespace) -> list[float]:
    """Start the server, connect the client, run every case once (after a check and a warm-up)."""
    rates = []
    async with lib.server() as url, lib.client(url) as (send, recv):
        for size, inflight in cases:
            payload = bytes(32 + i % 95 for i in range(size))
            await send(payload)
            echoed = await recv()
            if bytes(echoed) != payload:
                raise RuntimeError(f"{lib.name}: wrong echo for {fmt_size(size)}")
            rounds = rounds_for(size, args.rounds, args.budget)
            # Warm up (first-use allocations, the socket buffers' growth) an eighth as long.
            await run_case(send, recv, payload, inflight, max(4 * inflight, rounds // 8))
            rates.append(await run_case(send, recv, payload, inflight, rounds))
    return rates


def run_sync(lib: Lib, cases: Sequence[tuple[int, int]], args: argparse.Namespace) -> list[float]:
    if lib.loop == "trio":
        return trio.run(run_lib, lib, cases, args)
    return asyncio.run(run_lib(lib, cases, args))


# -- reporting ---------------------------------------------------------------------------------------


def fmt_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def table(
    libs: Sequence[Lib], cases: Sequence[tuple[int, int]], best: dict[str, list[float]], markdown: bool
) -> str:
    ref = libs[0]
    peers = libs[1:]
    head = ["case", *(f"{lib.name} msg/s" for lib in libs), *(f"× {lib.name}" for lib in peers)]
    body = []
    for i, (size, inflight) in enumerate(cases):
        line = [f"{fmt_size(size)}, {inflight} in flight"]
        line += [fmt_rate(best[lib.name][i]) for lib in libs]
        line += [f"{best[ref.name][i] / best[lib.name][i]:.2f}" for lib in peers]
        body.append(line)
    if markdown:
        rule = "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|"
        return "\n".join(["| " + " | ".join(head) + " |", rule, *("| " + " | ".join(r) + " |" for r in body)])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [head, *body]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.echo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--libs", help="a subset of the row names (default: all); groups: asyncio,trio,uvicorn,fixed"
    )
    p.add_argument("--sizes", help="message sizes in bytes (default 16,1024,65536,1048576)")
    p.add_argument("--inflight", default="1,64", help="messages in flight (default 1,64)")
    p.add_argument("--rounds", type=int, help="round trips per measurement (default 4000)")
    p.add_argument("--budget", type=int, help="at most this many bytes per measurement (default 64 MiB)")
    p.add_argument("--repeat", type=int, help="repeats; the best counts (default 5)")
    p.add_argument("--quick", action="store_true", help="16 B and 64 KiB, few rounds: a smoke run")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = p.parse_args(argv)
    quick = args.quick
    if args.sizes is None:
        args.sizes = "16,65536" if quick else ",".join(map(str, DEFAULT_SIZES))
    if args.rounds is None:
        args.rounds = 512 if quick else 4000
    if args.budget is None:
        args.budget = (8 if quick else 64) << 20
    if args.repeat is None:
        args.repeat = 2 if quick else 5
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the selected libraries and print one table per group."""
    args = parse_args(argv)
    libs = all_libs()
    if args.libs:
        wanted = set(args.libs.split(","))
        names = {lib.name for lib in libs} | {lib.group for lib in libs}
        if wanted - names:
            raise SystemExit(f"unknown libraries: {', '.join(sorted(wanted - names))}")
        libs = [lib for lib in libs if lib.name in wanted or lib.group in wanted]
    cases = [(int(s), int(n)) for s in args.sizes.split(",") for n in args.inflight.split(",")]
    best: dict[str, list[float]] = {lib.name: [0.0] * len(cases) for lib in libs}
    # An untimed pass first: whichever row ran first in a process measured up to 2x slow otherwise.
    run_sync(libs[0], cases, args)
    for repeat in range(args.repeat):
        for lib in libs:
            rates = run_sync(lib, cases, args)
            best[lib.name] = [max(a, b) for a, b in zip(best[lib.name], rates, strict=True)]
            summary = "  ".join(fmt_rate(r) for r in rates)
            print(f"# repeat {repeat + 1} {lib.name:<28} {summary}", file=sys.stderr, flush=True)
    for group, title in GROUP_TITLES.items():
        members = [lib for lib in libs if lib.group == group]
        if not members:
            continue
        print(f"\n{'### ' if args.markdown else ''}{title}\n")
        print(table(members, cases, best, args.markdown))


if __name__ == "__main__":
    main()
