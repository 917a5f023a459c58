"""The broadcast hub across processes: N workers on one port with the Redis hub, against one process
with the in-process hub, the same number of clients, side by side in one run.

    .venv/bin/python -m benchmarks.hub                         # 4 workers x 1,000 clients
    .venv/bin/python -m benchmarks.hub --clients 2000 --publishes 30 --burst 200

What is measured, for each setup:

- latency: one message published (a control connection asks a server process to publish it on the
  hub), time until every client has it; p50 and p99 over `--publishes` publishes, one at a time;
- throughput: `--burst` messages published back to back; messages/s until every client has the last
  one, and deliveries/s (messages x clients).

Processes: the servers (`serve` below, wscore_asyncio on asyncio's own loop, a `Hub` room
forwarding the channel with `broadcast`), client processes (`clients` below, 1,000 connections
each, on uvloop when installed) and, for the Redis setup, a redis-server of its own on a free port.
Times are CLOCK_MONOTONIC, which every process on the machine shares. Every process shares the
machine's cores: on a 2-core machine the clients compete with the servers, so the figures are a
floor (and say more about the ratio between setups than about either alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

CHANNEL = "bench"
PER_CLIENT_PROCESS = 1000


# -- the server process ----------------------------------------------------------------------------


async def _serve(port: int, redis: str | None, reuse_port: bool) -> None:
    from wscore_asyncio import Hub, WebSocket, serve

    members: set[WebSocket] = set()
    async with Hub(redis) as hub, hub.room(CHANNEL, members):

        async def handler(ws: WebSocket) -> None:
            if ws.request is not None and ws.request.path == "/control":
                async for msg in ws:  # each text is published as it is
                    await hub.publish(CHANNEL, msg.data)
                return
            members.add(ws)
            try:
                async for _ in ws:
                    pass
            finally:
                members.discard(ws)

        async with serve(handler, "127.0.0.1", port, reuse_port=reuse_port, backlog=4096):
            print("ready", flush=True)
            await asyncio.Event().wait()


# -- a client process ------------------------------------------------------------------------------


async def _clients(url: str, count: int) -> None:
    """`count` connections; prints "got SEQ TIME" once all of them have message SEQ."""
    from wscore_asyncio import connect

    seen: dict[int, int] = {}

    async def one(ready: asyncio.Event) -> None:
        async with connect(url, max_queue=4096) as ws:
            ready.set()
            async for msg in ws:
                seq = int(msg.data.split(" ", 1)[0])
                n = seen[seq] = seen.get(seq, 0) + 1
                if n == count:
                    print(f"got {seq} {time.monotonic()}", flush=True)

    tasks = []
    for _ in range(count):
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(one(ready)))
        await ready.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)


# -- the driver ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.hub", *args, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    assert line.strip() == b"ready", line
    return proc


class _Reports:
    """The "got SEQ TIME" lines of every client process: SEQ -> the times reported so far."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.times: dict[int, list[float]] = {}
        self.changed = asyncio.Event()
        self.tasks = [asyncio.create_task(self._read(p)) for p in procs]
        self.expected = len(procs)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            _, seq, at = line.split()
            self.times.setdefault(int(seq), []).append(float(at))
            self.changed.set()

    async def all_have(self, seq: int, timeout: float = 60.0) -> float:
        """When the last client got `seq`."""

        async def wait() -> float:
            while len(self.times.get(seq, ())) < self.expected:
                self.changed.clear()
                await self.changed.wait()
            return max(self.times[seq])

        return await asyncio.wait_for(wait(), timeout)


async def _measure(
    name: str, servers: list[list[str]], clients: int, args: argparse.Namespace
) -> dict[str, Any]:
    from wscore_asyncio import connect

    port = _free_port()
    procs = [await _spawn("serve", "--port", str(port), *extra) for extra in servers]
    url = f"ws://127.0.0.1:{port}/"
    client_procs = []
    try:
        for start in range(0, clients, PER_CLIENT_PROCESS):
            n = min(PER_CLIENT_PROCESS, clients - start)
            client_procs.append(await _spawn("clients", "--url", url, "--count", str(n)))
        reports = _Reports(client_procs)
        async with connect(url + "control") as control:
            latencies = []
            for seq in range(args.publishes):
                t0 = time.monotonic()
                await control.send_str(f"{seq} {'x' * args.size}")
                latencies.append(await reports.all_have(seq) - t0)
            first = 1_000_000
            t0 = time.monotonic()
            for seq in range(first, first + args.burst):
                await control.send_str(f"{seq} {'x' * args.size}")
            done = await reports.all_have(first + args.burst - 1, timeout=300)
            complete = sum(
                len(reports.times.get(s, ())) == reports.expected for s in range(first, first + args.burst)
            )
        rate = args.burst / (done - t0)
        return {
            "setup": name,
            "clients": clients,
            "p50": statistics.median(latencies) * 1000,
            "p99": sorted(latencies)[max(0, round(len(latencies) * 0.99) - 1)] * 1000,
            "rate": rate,
            "deliveries": rate * clients,
            "complete": complete / args.burst,
        }
    finally:
        for proc in [*client_procs, *procs]:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in [*client_procs, *procs]:
            await proc.wait()


async def _redis_cost(url: str, count: int = 2000) -> tuple[float, float]:
    """What Redis adds per publish, with no WebSocket client: microseconds per `publish()` (awaited
    one after another, as a hub does) and the median publish-to-delivery time to another hub."""
    from wscore_asyncio import Hub

    async with (
        Hub(url) as publisher,
        Hub(url) as listener,
        listener.subscribe("cost", max_queue=count) as sub,
    ):
        t0 = time.monotonic()
        for n in range(count):
            await publisher.publish("cost", str(n))
        per_publish = (time.monotonic() - t0) / count * 1e6
        for _ in range(count):
            await sub.get()
        trips = []
        for n in range(200):
            t0 = time.monotonic()
            await publisher.publish("cost", str(n))
            await sub.get()
            trips.append(time.monotonic() - t0)
    return per_publish, statistics.median(trips) * 1e6


async def _drive(args: argparse.Namespace) -> None:
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis_port = _free_port()
    redis = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):  # readiness: the port accepts
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
                break
            time.sleep(0.01)
        url = f"redis://127.0.0.1:{redis_port}"
        per_publish, trip = await _redis_cost(url)
        total = args.workers * args.clients
        rows = [
            await _measure("1 process, in-process hub", [[]], total, args),
            await _measure(
                f"{args.workers} workers, Redis hub",
                [["--redis", url, "--reuse-port"]] * args.workers,
                total,
                args,
            ),
        ]
    finally:
        redis.terminate()
        redis.wait()
    print(
        f"\n{os.cpu_count()} cores; {args.publishes} single publishes, "
        f"bursts of {args.burst}, {args.size} B\n"
    )
    print("| setup | clients | p50 ms | p99 ms | messages/s | deliveries/s | burst fully delivered |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['setup']} | {r['clients']:,} | {r['p50']:.1f} | {r['p99']:.1f} | {r['rate']:,.0f} "
            f"| {r['deliveries']:,.0f} | {r['complete']:.0%} |"
        )
    print(
        f"\nRedis, no clients: {per_publish:.0f} us per publish() (awaited in a row, one hub), "
        f"{trip:.0f} us publish-to-delivery to another hub (median of 200)"
    )
    base, multi = rows
    print(
        f"\nratio (workers/one process): p50 {multi['p50'] / base['p50']:.2f}, "
        f"messages/s {multi['rate'] / base['rate']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="role")
    server = sub.add_parser("serve")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--redis")
    server.add_argument("--reuse-port", action="store_true")
    client = sub.add_parser("clients")
    client.add_argument("--url", required=True)
    client.add_argument("--count", type=int, required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=1000, help="clients per worker (default: %(default)s)")
    parser.add_argument("--publishes", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--size", type=int, default=100, help="message bytes (default: %(default)s)")
    args = parser.parse_args()
    if args.role == "serve":
        asyncio.run(_serve(args.port, args.redis, args.reuse_port))
    elif args.role == "clients":
        try:
            import uvloop
        except ImportError:
            asyncio.run(_clients(args.url, args.count))
        else:
            uvloop.run(_clients(args.url, args.count))
    else:
        asyncio.run(_drive(args))


if __name__ == "__main__":
    main()
