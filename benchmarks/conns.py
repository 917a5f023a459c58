"""Server memory per idle connection and time to broadcast to all: the wscore adapters and their peers.

    python -m benchmarks.conns                   # 1,000 connections per server
    python -m benchmarks.conns --quick           # 200 connections, a smoke run
    python -m benchmarks.conns --conns 2000 --libs wscore_asyncio,websockets --markdown

Servers: wscore_asyncio, websockets, aiohttp, picows, wscore_anyio[asyncio] on asyncio; wscore_trio,
trio-websocket, wscore_anyio[trio] on trio. Each runs in its own subprocess (`python -m
benchmarks.conns --serve LIB`), so its memory is its own: the benchmark reads the server's VmRSS from
/proc/PID/status after one warm-up connection (imports and first-use allocations done) and again once
all N clients are connected and idle; the growth over N is the bytes per connection (RSS: Python
objects, buffers, allocator slack; not kernel socket buffers). The clients all run in this process
on one wscore_asyncio client per connection, the same for every server.

Broadcast: the server is told (on its stdin) to send one message to every connection, with the
library's own way: the wscore adapters' `broadcast`, `websockets.broadcast`; for aiohttp and
trio-websocket (which have none) `await ws.send_str()` / `await ws.send_message()` per connection, and
for picows (callback based: its open transports kept in a set) `transport.send()` per connection.
Reported: the server's time in that call, and the time from the command until the last client has
the message (best of --repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "adapters"))

LIBS = (
    "wscore_asyncio",
    "websockets",
    "aiohttp",
    "picows",
    "wscore_anyio[asyncio]",
    "wscore_trio",
    "trio-websocket",
    "wscore_anyio[trio]",
)


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss(pid: int) -> int:
    """The process's resident set size in bytes, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# -- the server side (in the subprocess) -------------------------------------------------------------

Count = Callable[[], int]
SendAll = Callable[[str], Awaitable[None]]


async def command_loop(read_line: Callable[[], Awaitable[str]], count: Count, send_all: SendAll) -> None:
    """Answer "count" and "broadcast N" commands on stdin until "quit" (any event loop: `read_line`
    is the loop's own way to read a line in a thread)."""
    while True:
        line = (await read_line()).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "count":
            print(f"count {count()}", flush=True)
        elif line[0] == "broadcast":
            message = "x" * int(line[1])
            start = time.perf_counter()
            await send_all(message)
            print(f"sent {time.perf_counter() - start}", flush=True)
    os._exit(0)  # the parent reads nothing more; skip the closing handshakes of N connections


async def serve_asyncio(lib: str) -> None:
    """Run an asyncio library's server on a free port, then the command loop."""
    count: Count
    send_all: SendAll
    if lib == "wscore_asyncio":
        import wscore_asyncio

        async def wscore_handler(ws: wscore_asyncio.WebSocket) -> None:
            async for _ in ws:
                pass

        server = await wscore_asyncio.serve(wscore_handler, "127.0.0.1", 0, compress=False, backlog=1024)
        port = server.port

        def count() -> int:
            return len(server.connections)

        async def send_all(message: str) -> None:
            wscore_asyncio.broadcast(server.connections, message)

    elif lib == "websockets":
        import websockets
        from websockets.asyncio.server import ServerConnection
        from websockets.asyncio.server import serve as ws_serve

        async def websockets_handler(ws: ServerConnection) -> None:
            await ws.wait_closed()

        ws_server = await ws_serve(websockets_handler, "127.0.0.1", 0, compression=None, backlog=1024)
        port = ws_server.sockets[0].getsockname()[1]

        def count() -> int:
            return len(ws_server.connections)

        async def send_all(message: str) -> None:
            websockets.broadcast(ws_server.connections, message)

    elif lib == "aiohttp":
        from aiohttp import web

        sockets: set[web.WebSocketResponse] = set()

        async def aiohttp_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(compress=False)
            await ws.prepare(request)
            sockets.add(ws)
            try:
                async for _ in ws:
                    pass
            finally:
                sockets.discard(ws)
            return ws

        app = web.Application()
        app.router.add_get("/", aiohttp_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]

        def count() -> int:
            return len(sockets)

        async def send_all(message: str) -> None:
            for ws in list(sockets):
                await ws.send_str(message)

    elif lib == "picows":
        import picows

        transports: set[Any] = set()

        class Listener(picows.WSListener):  # type: ignore[misc,unused-ignore]  # Any when picows is absent
            # Callback based: the open transports are kept in a set (what a picows broadcast needs).
            def on_ws_connected(self, transport: picows.WSTransport) -> None:
                transports.add(transport)

            def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
                transports.discard(transport)

        pico_server = await picows.ws_create_server(lambda _: Listener(), "127.0.0.1", 0, backlog=1024)
        port = pico_server.sockets[0].getsockname()[1]

        def count() -> int:
            return len(transports)

        async def send_all(message: str) -> None:
            data = message.encode()
            for transport in transports:
                transport.send(picows.WSMsgType.TEXT, data)

    else:
        raise SystemExit(f"unknown library {lib}")
    print(f"port {port}", flush=True)
    loop = asyncio.get_running_loop()
    await command_loop(lambda: loop.run_in_executor(None, sys.stdin.readline), count, send_all)


async def serve_trio(lib: str) -> None:
    """Run a trio library's server on a free port, then the command loop."""
    import trio

    count: Count
    send_all: SendAll
    async with trio.open_nursery() as nursery:
        if lib == "wscore_trio":
            import wscore_trio

            async def wscore_handler(ws: wscore_trio.WebSocket) -> None:
                async for _ in ws:
                    pass

            server = await nursery.start(
                lambda task_status: wscore_trio.serve(
                    wscore_handler, "127.0.0.1", 0, compress=False, backlog=1024, task_status=task_status
                )
            )
            port = server.port

            def count() -> int:
                return len(server.connections)

            async def send_all(message: str) -> None:
                wscore_trio.broadcast(server.connections, message)

        elif lib == "trio-websocket":
            import trio_websocket

            sockets: set[Any] = set()

            async def handler(request: trio_websocket.WebSocketRequest) -> None:
                ws = await request.accept()
                sockets.add(ws)
                try:
                    while True:
                        await ws.get_message()
                except trio_websocket.ConnectionClosed:
                    pass
                finally:
                    sockets.discard(ws)

            tw_server = await nursery.start(
                lambda task_status: trio_websocket.serve_websocket(
                    handler, "127.0.0.1", 0, None, task_status=task_status
                )
            )
            port = tw_server.port

            def count() -> int:
                return len(sockets)

            async def send_all(message: str) -> None:
                # No broadcast in trio-websocket: an await per connection, as its users write it.
                for ws in list(sockets):
                    await ws.send_message(message)

        else:
            raise SystemExit(f"unknown library {lib}")
        print(f"port {port}", flush=True)
        await command_loop(lambda: trio.to_thread.run_sync(sys.stdin.readline), count, send_all)


async def serve_anyio() -> None:
    """Run wscore_anyio's server (on the backend `anyio.run` was given), then the command loop."""
    import anyio

    import wscore_anyio

    async def handler(ws: wscore_anyio.WebSocket) -> None:
        async for _ in ws:
            pass

    async with anyio.create_task_group() as tg:
        server = await tg.start(
            lambda task_status: wscore_anyio.serve(
                handler, "127.0.0.1", 0, compress=False, backlog=1024, task_status=task_status
            )
        )

        def count() -> int:
            return len(server.connections)

        async def send_all(message: str) -> None:
            wscore_anyio.broadcast(server.connections, message)

        print(f"port {server.port}", flush=True)
        await command_loop(lambda: anyio.to_thread.run_sync(sys.stdin.readline), count, send_all)


def serve(lib: str) -> None:
    """Serve `lib` on its event loop (the subprocess's main)."""
    if lib in ("wscore_trio", "trio-websocket"):
        import trio

        trio.run(serve_trio, lib)
    elif lib.startswith("wscore_anyio["):
        import anyio

        anyio.run(serve_anyio, backend=lib[len("wscore_anyio[") : -1])
    else:
        asyncio.run(serve_asyncio(lib))


# -- the benchmark side ------------------------------------------------------------------------------


class Child:
    """A server subprocess and its line protocol."""

    def __init__(self, lib: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.conns", "--serve", lib],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'adapters'}"},
        )
        self.port = int(self.ask(None).split()[1])

    def ask(self, command: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the server exited")
        return line

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


async def measure(lib: str, conns: int, size: int, repeat: int) -> dict[str, float]:
    import wscore_asyncio

    child = Child(lib)
    url = f"ws://127.0.0.1:{child.port}/"
    loop = asyncio.get_running_loop()
    clients: list[wscore_asyncio.WebSocket] = []
    try:
        warm = await wscore_asyncio.connect(url)
        await warm.close()
        while int((await loop.run_in_executor(None, child.ask, "count")).split()[1]):
            await asyncio.sleep(0.01)  # the server drops the warm-up connection asynchronously
        before = float(rss(child.proc.pid))
        for first in range(0, conns, 100):
            batch = range(first, min(conns, first + 100))
            clients += await asyncio.gather(*(wscore_asyncio.connect(url) for _ in batch))
        while int((await loop.run_in_executor(None, child.ask, "count")).split()[1]) < conns:
            await asyncio.sleep(0.01)  # handlers register after the handshake
        after = float(rss(child.proc.pid))
        best_call = best_all = float("inf")
        for _ in range(repeat):
            receives = [asyncio.ensure_future(ws.receive()) for ws in clients]
            start = time.perf_counter()
            reply = await loop.run_in_executor(None, child.ask, f"broadcast {size}")
            messages = await asyncio.gather(*receives)
            elapsed = time.perf_counter() - start
            if any(len(m.data) != size for m in messages):
                raise RuntimeError(f"{lib}: a client got the wrong broadcast")
            best_call = min(best_call, float(reply.split()[1]))
            best_all = min(best_all, elapsed)
        return {
            "per_conn": (after - before) / conns,
            "before": before,
            "after": after,
            "call": best_call,
            "all": best_all,
        }
    finally:
        for ws in clients:
            if ws.transport is not None:
                ws.transport.abort()
        child.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conns", description=__doc__.splitlines()[0])
    p.add_argument("--libs", default=",".join(LIBS), help=f"a subset of {','.join(LIBS)}")
    p.add_argument("--conns", type=int, help="connections per server (default 1000)")
    p.add_argument("--size", type=int, default=64, help="broadcast message size in bytes (default 64)")
    p.add_argument("--repeat", type=int, help="broadcasts per server; the best counts (default 5)")
    p.add_argument("--quick", action="store_true", help="200 connections, 2 broadcasts: a smoke run")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--serve", metavar="LIB", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.conns is None:
        args.conns = 200 if args.quick else 1000
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Measure each library's server and print one table."""
    args = parse_args(argv)
    limit = raise_fd_limit()
    if args.serve:
        serve(args.serve)
        return
    if limit < args.conns + 100:
        raise SystemExit(f"the open-file limit ({limit}) is too low for {args.conns} connections")
    libs = [lib for lib in args.libs.split(",") if lib]
    if set(libs) - set(LIBS):
        raise SystemExit(f"unknown libraries: {', '.join(sorted(set(libs) - set(LIBS)))}")
    results: dict[str, dict[str, float]] = {}
    for lib in libs:
        results[lib] = asyncio.run(measure(lib, args.conns, args.size, args.repeat))
        r = results[lib]
        print(
            f"# {lib}: RSS {r['before'] / 2**20:.1f} -> {r['after'] / 2**20:.1f} MiB, "
            f"{r['per_conn']:,.0f} B/conn, broadcast call {r['call'] * 1e3:.2f} ms, "
            f"all received {r['all'] * 1e3:.1f} ms",
            file=sys.stderr,
            flush=True,
        )
    ref = results.get("wscore_asyncio")
    head = [
        "server",
        "RSS per idle connection",
        f"broadcast {args.size} B: server call",
        f"until all {args.conns} received",
    ]
    if ref is not None:
        head.append("memory × wscore")
    body = []
    for lib, r in results.items():
        line = [
            lib,
            f"{r['per_conn'] / 1024:,.1f} KiB",
            f"{r['call'] * 1e3:.2f} ms",
            f"{r['all'] * 1e3:.1f} ms",
        ]
        if ref is not None:
            line.append(f"{r['per_conn'] / ref['per_conn']:.2f}")
        body.append(line)
    if args.markdown:
        rule = "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|"
        print("\n".join(["| " + " | ".join(head) + " |", rule, *("| " + " | ".join(r) + " |" for r in body)]))
    else:
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        for row in [head, *body]:
            print(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )


if __name__ == "__main__":
    main()
