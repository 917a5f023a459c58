"""uvicorn as a user runs it, in its own process, with each WebSocket protocol class: echo round trips.

    python -m benchmarks.uvicorn_oop                  # 16 B and 1 KiB, 1 and 64 in flight, batch and gated
    python -m benchmarks.uvicorn_oop --repeat 3 --markdown
    python -m benchmarks.uvicorn_oop --ws wscore,wsproto --quick

Each row starts `python -m uvicorn --ws WS --host 127.0.0.1 --port P benchmarks.asgi_echo:echo
--no-access-log --lifespan off --loop auto` (a raw ASGI echo app; uvicorn's other settings are its
defaults, so its loop is uvloop when uvloop is installed; `--loop asyncio` to compare) in a
subprocess, waits until the port accepts a connection, and measures with echo.py's cases and repeats
from this process, with the fastest asyncio client (picows if it imports, else wscore_asyncio).
`--ws` rows: wscore's plug-in (`wscore_asyncio.uvicorn:WSCoreProtocol`), `websockets-sansio`,
`wsproto` and the legacy `websockets`.
Ratios are wscore's row over each other row, from this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))

from benchmarks import peers
from benchmarks.echo import ASYNCIO, Lib, add_args, finish_args, measure, table
from benchmarks.peers import Client, Server

ROOT = Path(__file__).resolve().parent.parent
WS = {
    "wscore": "wscore_asyncio.uvicorn:WSCoreProtocol",
    "websockets-sansio": "websockets-sansio",
    "wsproto": "wsproto",
    "websockets": "websockets",
}
START_TIMEOUT = 30.0


def uvicorn_process(ws: str, loop: str) -> Server:
    """A server: uvicorn's CLI in a subprocess (`--ws ws --loop loop`), stopped (or killed) on exit."""

    @asynccontextmanager
    async def run() -> AsyncIterator[str]:
        port = peers.free_port()
        command = [
            *(sys.executable, "-m", "uvicorn", "--ws", ws, "--host", "127.0.0.1", "--port", str(port)),
            *("benchmarks.asgi_echo:echo", "--no-access-log", "--lifespan", "off"),
            *("--log-level", "warning", "--ws-max-size", str(peers.MAX_SIZE), "--loop", loop),
        ]
        # This checkout's wscore and adapters, whatever is installed.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "adapters")])}
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                await wait_for_port(proc, port, log)
                yield f"ws://127.0.0.1:{port}/"
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    return run


async def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    """Connect until the port accepts, the process exits, or `START_TIMEOUT` passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(
                f"uvicorn exited with {proc.returncode}:\n{log.read().decode(errors='replace')}"
            )
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"uvicorn did not listen on port {port} within {START_TIMEOUT} s"
                ) from None
            await asyncio.sleep(0.02)  # a refused connect returns at once: pace the next attempt
        else:
            writer.close()
            await writer.wait_closed()
            return


def fastest_client() -> tuple[str, Client]:
    """picows' client if it imports, else wscore_asyncio's."""
    try:
        import picows  # noqa: F401
    except ImportError:
        return "wscore_asyncio", peers.wscore_asyncio_client
    return "picows", peers.picows_client


def main(argv: Sequence[str] | None = None) -> None:
    """Run every selected `--ws` class under uvicorn's CLI and print one table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.uvicorn_oop", description=__doc__.splitlines()[0])
    p.add_argument("--ws", default=",".join(WS), help=f"the rows (default {','.join(WS)})")
    p.add_argument("--loop", default="auto", help="uvicorn's --loop: auto (its default), asyncio, uvloop")
    p.add_argument(
        "--pin",
        type=int,
        metavar="CPU",
        help="run this process and uvicorn's on this one CPU: wake-ups stay on one CPU, so one in "
        "flight measures both sides' work rather than how fast the VM wakes an idle CPU",
    )
    add_args(p, "16,1024")
    p.set_defaults(mode="batch,gated")
    args = p.parse_args(argv)
    cases = finish_args(args, "16,1024")
    if args.cpu_time:
        raise SystemExit("--cpu-time would leave out the server: it runs in another process")
    unknown = set(args.ws.split(",")) - set(WS)
    if unknown:
        raise SystemExit(f"unknown --ws rows: {', '.join(sorted(unknown))}")
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})  # uvicorn's process inherits it
    client_name, client = fastest_client()
    libs = [
        Lib(
            f"uvicorn --ws {name}",
            "uvicorn-oop",
            uvicorn_process(WS[name], args.loop),
            client,
            "asyncio",
            ASYNCIO,
        )
        for name in args.ws.split(",")
    ]
    best = measure(libs, cases, args)
    pinned = "" if args.pin is None else f", both processes on CPU {args.pin}"
    title = f"uvicorn in its own process (--loop {args.loop}{pinned}), {client_name} client"
    print(f"\n{'### ' if args.markdown else ''}{title}\n")
    print(table(libs, cases, best, args.markdown))


if __name__ == "__main__":
    main()
