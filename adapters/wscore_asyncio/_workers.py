"""Many processes on one port: `wscore echo --workers N` and `wscore chat --workers N [--redis URL]`.

The parent process serves nothing itself. It reserves the port (a socket bound with SO_REUSEPORT and
never listening, which also picks the port when `--port 0`), starts N workers (`python -m
wscore_asyncio <command> ... --worker-id I`, each listening on that port with `reuse_port=True`, so
that the kernel spreads new connections across them), forwards their output prefixed with their
number, and prints its own ready line once every worker has printed its own.

- Ctrl-C or SIGTERM to the parent: SIGTERM to every worker, each closes its clients with 1001, the
  parent waits for all of them and exits 0.
- A worker that dies on its own is reported on stderr and restarted, so that the others' clients are
  not cut off for one fault (its own clients see 1006 and reconnect, as the chat page does). A worker
  that dies `MAX_RESTARTS` times within `RESTART_WINDOW` seconds is a fault no restart fixes (a bad
  Redis URL, a port it cannot bind): then the whole server stops and exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl as ssl_module
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from _wscore_kit.public import echo_handler

from ._cli import EXIT_FAILED, EXIT_OK, PROG, CommandError, warn
from ._server import Server, serve

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW", "echo_worker", "reserve_port", "supervise", "worker_argv"]

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 15.0
"""Seconds a worker has to close its clients after SIGTERM before it is killed."""


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket that holds `host:port` for the workers (the port it picked when `port` is 0).
    A clear error where the platform has no SO_REUSEPORT."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise CommandError("--workers needs SO_REUSEPORT, which this platform does not have")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound: int = sock.getsockname()[1]
    return sock, bound


@dataclass
class _Worker:
    number: int
    proc: asyncio.subprocess.Process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    output: asyncio.Task[None] | None = None


async def _forward(worker: _Worker, ready_text: str) -> None:
    """Copy the worker's stdout to ours, each line prefixed; note its ready line."""
    stream = worker.proc.stdout
    assert stream is not None
    while line := await stream.readline():
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        print(f"[worker {worker.number}] {text}", flush=True)
        if ready_text in text:
            worker.ready.set()


async def _start(number: int, argv: list[str], ready_text: str) -> _Worker:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    worker = _Worker(number, proc)
    worker.output = asyncio.create_task(_forward(worker, ready_text))
    return worker


async def _stop_all(workers: dict[int, _Worker]) -> None:
    for worker in workers.values():
        if worker.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
    for worker in workers.values():
        try:
            await asyncio.wait_for(worker.proc.wait(), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            warn(f"{PROG}: worker {worker.number} (pid {worker.proc.pid}) did not stop; killing it")
            worker.proc.kill()
            await worker.proc.wait()
        if worker.output is not None:
            await worker.output


async def supervise(
    count: int,
    argv: Callable[[int], list[str]],
    *,
    ready_text: str,
    banner: str,
    stop: asyncio.Event,
) -> int:
    """Run `count` workers (`argv(number)` starts worker `number`, from 1) until `stop` is set;
    print `banner` once all of them have printed `ready_text`. The exit status."""
    workers: dict[int, _Worker] = {}
    crashes: list[float] = []
    stopping = asyncio.create_task(stop.wait())
    try:
        for number in range(1, count + 1):
            workers[number] = await _start(number, argv(number), ready_text)
        pending = {asyncio.create_task(w.ready.wait()) for w in workers.values()}
        exits = {asyncio.create_task(w.proc.wait()): w for w in workers.values()}
        while pending:  # until every worker is ready; a worker dying first is a start-up fault
            done, _ = await asyncio.wait({*pending, *exits, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                return EXIT_OK
            for task in done & exits.keys():
                worker = exits[task]
                warn(f"{PROG}: worker {worker.number} exited with status {worker.proc.returncode} at start")
                return EXIT_FAILED
            pending -= done
        print(banner, flush=True)
        while True:
            done, _ = await asyncio.wait({*exits, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping in done:
                return EXIT_OK
            for task in done:
                worker = exits.pop(task)
                now = time.monotonic()
                crashes[:] = [t for t in crashes if now - t < RESTART_WINDOW] + [now]
                status = worker.proc.returncode
                if len(crashes) > MAX_RESTARTS:
                    warn(
                        f"{PROG}: worker {worker.number} (pid {worker.proc.pid}) exited with status "
                        f"{status}; {len(crashes)} exits within {RESTART_WINDOW:g} s: stopping the server"
                    )
                    return EXIT_FAILED
                warn(
                    f"{PROG}: worker {worker.number} (pid {worker.proc.pid}) exited with status {status}; "
                    "restarting it"
                )
                if worker.output is not None:
                    await worker.output
                fresh = await _start(worker.number, argv(worker.number), ready_text)
                workers[worker.number] = fresh
                exits[asyncio.create_task(fresh.proc.wait())] = fresh
    finally:
        stopping.cancel()
        await _stop_all(workers)
        print(f"stopped {len(workers)} worker(s)", flush=True)


def worker_argv(command: str, args: list[str], number: int) -> list[str]:
    """The command line of worker `number`: this CLI, in worker mode."""
    return [sys.executable, "-m", "wscore_asyncio", command, *args, "--worker-id", str(number)]


async def echo_worker(
    host: str, port: int, *, ssl: ssl_module.SSLContext | None, started: Callable[[Server], None]
) -> None:
    """One worker of `wscore echo --workers N`: `echo()`'s server, on a port shared with the others."""
    async with serve(
        echo_handler, host, port, ssl=ssl, compress=True, max_msg_size=64 * 1024 * 1024, reuse_port=True
    ) as server:
        started(server)
        await asyncio.Event().wait()
