"""Echo round trips over sockets: the wscore adapters vs websockets, aiohttp, picows, trio-websocket.

    python -m benchmarks.echo                    # every group, every size
    python -m benchmarks.echo --quick            # a smoke run (< 60 s)
    python -m benchmarks.echo --libs wscore_asyncio,websockets --sizes 16,1024 --markdown
    python -m benchmarks.echo --libs asyncio --mode batch,gated --plot echo.png

Each library's client talks to its own server on 127.0.0.1 (a free port), in one process, one event
loop; the server echoes every binary message. A case is a message size, how many messages are in
flight and a mode. `batch`: 1 in flight (send, wait for the echo) or W (a task sends W while the
caller receives W, then the next batch). `gated`: a sender task keeps up to W in flight, gated by a
semaphore of the row's I/O library (asyncio, trio or anyio) that the receiving task releases once per
echo, as an application writes it. `gated-fast`: the same with anyio's semaphore made with
`fast_acquire=True` (no checkpoint when a permit is free, as asyncio's); asyncio's and trio's rows are
`gated` again. Groups:

- asyncio: wscore_asyncio, websockets, aiohttp, picows, wscore_anyio (on asyncio), each its own pair;
- trio: wscore_trio, trio-websocket, wscore_anyio (on trio), under `trio.run`;
- uvicorn: a Starlette echo endpoint under uvicorn (in this process) with ws=WSCoreProtocol,
  "websockets-sansio" and "wsproto", all driven by the websockets client;
- fixed: the asyncio servers, all driven by the websockets client (server cost, same client).

Compression is off everywhere (websockets enables it by default; it is disabled on both sides).
Servers start and stop inside each measurement; each repeat runs every library once, interleaved, and
the best repeat counts. Ratios are the group's wscore rate over each peer's, from this one run.
`benchmarks.cross` (each client against each server) and `benchmarks.uvicorn_oop` (uvicorn in its
own process) reuse this module's measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

if __package__ in (None, ""):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "adapters"))

import anyio
import trio

from benchmarks import peers
from benchmarks.core import fmt_size
from benchmarks.peers import Client, Recv, Send, Server

DEFAULT_SIZES = (16, 1024, 64 * 1024, 1024 * 1024)
MODES = ("batch", "gated", "gated-fast")
# A case: message size, messages in flight (W), mode (one of MODES).
Case = tuple[int, int, str]


class Gate(Protocol):
    """A semaphore: asyncio's, trio's or anyio's."""

    async def acquire(self) -> object: ...

    def release(self) -> None: ...


ASYNCIO: Callable[[int], Gate] = asyncio.Semaphore
TRIO: Callable[[int], Gate] = trio.Semaphore
ANYIO: Callable[[int], Gate] = anyio.Semaphore


def fast(gate: Callable[[int], Gate]) -> Callable[[int], Gate]:
    """`gate` without a checkpoint when a permit is free: anyio's with `fast_acquire=True`."""
    if gate is ANYIO:
        return partial(anyio.Semaphore, fast_acquire=True)
    return gate


@dataclass(frozen=True)
class Lib:
    """One row: a server, a client, the event loop they run on ("asyncio" or "trio"), and the
    semaphore the gated mode's application code uses (its I/O library's)."""

    name: str
    group: str
    server: Server
    client: Client
    loop: str
    gate: Callable[[int], Gate]


def all_libs() -> list[Lib]:
    from wscore_asyncio.uvicorn import WSCoreProtocol

    libs = [
        Lib(
            "wscore_asyncio",
            "asyncio",
            peers.wscore_asyncio_server,
            peers.wscore_asyncio_client,
            "asyncio",
            ASYNCIO,
        ),
        Lib("websockets", "asyncio", peers.websockets_server, peers.websockets_client, "asyncio", ASYNCIO),
        Lib("aiohttp", "asyncio", peers.aiohttp_server, peers.aiohttp_client, "asyncio", ASYNCIO),
    ]
    try:
        import picows  # noqa: F401

        libs.append(Lib("picows", "asyncio", peers.picows_server, peers.picows_client, "asyncio", ASYNCIO))
    except ImportError:
        print("# picows does not import: skipped", file=sys.stderr)
    libs += [
        Lib(
            "wscore_anyio[asyncio]",
            "asyncio",
            peers.wscore_anyio_server,
            peers.wscore_anyio_client,
            "asyncio",
            ANYIO,
        ),
        Lib("wscore_trio", "trio", peers.wscore_trio_server, peers.wscore_trio_client, "trio", TRIO),
        Lib("trio-websocket", "trio", peers.trio_websocket_server, peers.trio_websocket_client, "trio", TRIO),
        Lib(
            "wscore_anyio[trio]", "trio", peers.wscore_anyio_server, peers.wscore_anyio_client, "trio", ANYIO
        ),
        Lib(
            "uvicorn+wscore",
            "uvicorn",
            peers.uvicorn_server(WSCoreProtocol),
            peers.websockets_client,
            "asyncio",
            ASYNCIO,
        ),
        Lib(
            "uvicorn+websockets-sansio",
            "uvicorn",
            peers.uvicorn_server("websockets-sansio"),
            peers.websockets_client,
            "asyncio",
            ASYNCIO,
        ),
        Lib(
            "uvicorn+wsproto",
            "uvicorn",
            peers.uvicorn_server("wsproto"),
            peers.websockets_client,
            "asyncio",
            ASYNCIO,
        ),
    ]
    # The asyncio servers again, all under the one websockets client.
    fixed = [
        lib for lib in libs if lib.group == "asyncio" and lib.loop == "asyncio" and "anyio" not in lib.name
    ]
    libs += [
        Lib(f"{lib.name} server", "fixed", lib.server, peers.websockets_client, "asyncio", ASYNCIO)
        for lib in fixed
    ]
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


def check(data: bytes, size: int) -> None:
    if len(data) != size:
        raise RuntimeError(f"echo of {len(data)} bytes, {size} sent")


async def run_batch(send: Send, recv: Recv, payload: bytes, inflight: int, rounds: int) -> int:
    """About `rounds` round trips, `inflight` at a time (batches of them); returns how many."""
    batches = max(1, rounds // inflight)
    size = len(payload)

    async def send_batch() -> None:
        for _ in range(inflight):
            await send(payload)

    if inflight == 1:
        for _ in range(batches):
            await send(payload)
            check(await recv(), size)
    else:
        for _ in range(batches):
            # Sending and receiving at once: sending all 64 first could fill every buffer and
            # deadlock on flow control with big messages.
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_batch)
                for _ in range(inflight):
                    check(await recv(), size)
    return batches * inflight


async def run_gated(send: Send, recv: Recv, payload: bytes, window: int, rounds: int, *, gate: Gate) -> int:
    """`rounds` round trips, a sender task keeping up to `window` in flight behind `gate`; returns rounds."""
    size = len(payload)

    async def sender() -> None:
        for _ in range(rounds):
            await gate.acquire()
            await send(payload)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        for _ in range(rounds):
            check(await recv(), size)
            gate.release()
    return rounds


async def run_case(
    lib: Lib, send: Send, recv: Recv, payload: bytes, *, case: Case, rounds: int, cpu: bool = False
) -> float:
    """One timed run of `case` (its mode, W) with `payload`; round trips per second of wall time, or
    of this process's CPU time (both sides' when client and server run here) if `cpu`."""
    _, inflight, mode = case
    clock = time.process_time if cpu else time.perf_counter
    start = clock()
    if mode.startswith("gated"):
        gate = (lib.gate if mode == "gated" else fast(lib.gate))(inflight)
        done = await run_gated(send, recv, payload, inflight, rounds, gate=gate)
    else:
        done = await run_batch(send, recv, payload, inflight, rounds)
    return done / (clock() - start)


async def run_lib(lib: Lib, cases: Sequence[Case], args: argparse.Namespace) -> list[float]:
    """Start the server, connect the client, run every case once (after a check and a warm-up)."""
    rates = []
    async with lib.server() as url, lib.client(url) as (send, recv):
        for case in cases:
            size, inflight, _ = case
            payload = bytes(32 + i % 95 for i in range(size))
            await send(payload)
            echoed = await recv()
            if bytes(echoed) != payload:
                raise RuntimeError(f"{lib.name}: wrong echo for {fmt_size(size)}")
            rounds = rounds_for(size, args.rounds, args.budget)
            # Warm up (first-use allocations, the socket buffers' growth) an eighth as long.
            await run_case(lib, send, recv, payload, case=case, rounds=max(4 * inflight, rounds // 8))
            rates.append(
                await run_case(lib, send, recv, payload, case=case, rounds=rounds, cpu=args.cpu_time)
            )
    return rates


def run_sync(lib: Lib, cases: Sequence[Case], args: argparse.Namespace) -> list[float]:
    if lib.loop == "trio":
        return trio.run(run_lib, lib, cases, args)
    return asyncio.run(run_lib(lib, cases, args))


def measure(libs: Sequence[Lib], cases: Sequence[Case], args: argparse.Namespace) -> dict[str, list[float]]:
    """Every row `args.repeat` times, interleaved; the best rate per row and case."""
    best: dict[str, list[float]] = {lib.name: [0.0] * len(cases) for lib in libs}
    # An untimed pass first: whichever row ran first in a process measured up to 2x slow otherwise.
    run_sync(libs[0], cases, args)
    for repeat in range(args.repeat):
        for lib in libs:
            rates = run_sync(lib, cases, args)
            best[lib.name] = [max(a, b) for a, b in zip(best[lib.name], rates, strict=True)]
            summary = "  ".join(fmt_rate(r) for r in rates)
            print(f"# repeat {repeat + 1} {lib.name:<28} {summary}", file=sys.stderr, flush=True)
    return best


# -- reporting ---------------------------------------------------------------------------------------


def fmt_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def case_label(case: Case) -> str:
    """ "16 B, 64 in flight" (batch) or "16 B, 64 gated"."""
    size, inflight, mode = case
    return f"{fmt_size(size)}, {inflight} {'in flight' if mode == 'batch' else mode}"


def render(head: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
    """A Markdown table, or aligned columns (the first left-aligned)."""
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


def table(libs: Sequence[Lib], cases: Sequence[Case], best: dict[str, list[float]], markdown: bool) -> str:
    ref = libs[0]
    peers_ = libs[1:]
    head = ["case", *(f"{lib.name} msg/s" for lib in libs), *(f"× {lib.name}" for lib in peers_)]
    body = []
    for i, case in enumerate(cases):
        line = [case_label(case)]
        line += [fmt_rate(best[lib.name][i]) for lib in libs]
        line += [f"{best[ref.name][i] / best[lib.name][i]:.2f}" for lib in peers_]
        body.append(line)
    return render(head, body, markdown)


def add_args(p: argparse.ArgumentParser, sizes: str) -> None:
    """The options every echo-style script takes."""
    p.add_argument("--sizes", help=f"message sizes in bytes (default {sizes})")
    p.add_argument("--inflight", default="1,64", help="messages in flight, W (default 1,64)")
    p.add_argument(
        "--mode", default="batch", help="batch, gated, gated-fast, or several: batch,gated (default batch)"
    )
    p.add_argument("--rounds", type=int, help="round trips per measurement (default 4000)")
    p.add_argument("--budget", type=int, help="at most this many bytes per measurement (default 64 MiB)")
    p.add_argument("--repeat", type=int, help="repeats; the best counts (default 5)")
    p.add_argument("--quick", action="store_true", help="16 B and 64 KiB, few rounds: a smoke run")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="rates per second of this process's CPU time (client and server), not wall time: less "
        "sensitive to other jobs on a shared machine",
    )


def finish_args(args: argparse.Namespace, sizes: str) -> list[Case]:
    """Fill the defaults (smaller with --quick); returns the cases, by size, then mode, then W."""
    quick = args.quick
    if args.sizes is None:
        args.sizes = "16,65536" if quick else sizes
    if args.rounds is None:
        args.rounds = 512 if quick else 4000
    if args.budget is None:
        args.budget = (8 if quick else 64) << 20
    if args.repeat is None:
        args.repeat = 2 if quick else 5
    modes = args.mode.split(",")
    if set(modes) - set(MODES):
        raise SystemExit(f"unknown mode: {args.mode} ({', '.join(MODES)})")
    inflights = [int(n) for n in args.inflight.split(",")]
    return [(int(s), n, m) for s in args.sizes.split(",") for m in modes for n in inflights]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the selected libraries and print one table per group."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.echo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--libs", help="a subset of the row names (default: all); groups: asyncio,trio,uvicorn,fixed"
    )
    p.add_argument("--plot", metavar="FILE.png", help="also draw the run as grouped bars (matplotlib)")
    add_args(p, ",".join(map(str, DEFAULT_SIZES)))
    args = p.parse_args(argv)
    cases = finish_args(args, ",".join(map(str, DEFAULT_SIZES)))
    libs = all_libs()
    if args.libs:
        wanted = set(args.libs.split(","))
        names = {lib.name for lib in libs} | {lib.group for lib in libs}
        if wanted - names:
            raise SystemExit(f"unknown libraries: {', '.join(sorted(wanted - names))}")
        libs = [lib for lib in libs if lib.name in wanted or lib.group in wanted]
    best = measure(libs, cases, args)
    panels = []
    for group, title in GROUP_TITLES.items():
        members = [lib for lib in libs if lib.group == group]
        if not members:
            continue
        print(f"\n{'### ' if args.markdown else ''}{title}\n")
        print(table(members, cases, best, args.markdown))
        panels.append((title, {lib.name: best[lib.name] for lib in members}))
    if args.plot:
        from benchmarks.plot import grouped_bars

        command = "python -m benchmarks.echo " + " ".join(sys.argv[1:] if argv is None else argv)
        note = f"{command}  (Python {sys.version.split()[0]}; best of {args.repeat})"
        multi = len(set(args.sizes.split(","))) > 1
        grouped_bars(args.plot, [case_label(c) for c in cases], panels, log=multi, note=note)
        print(f"\n# plot: {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
