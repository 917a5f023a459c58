"""Run `wscore` commands as real subprocesses and read their output line by line, with deadlines."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

WSCORE = [sys.executable, "-m", "wscore_asyncio"]
DEADLINE = 20.0
"""Bound on any single wait for output (generous: the machine is shared)."""

T = TypeVar("T")


def run(body: Awaitable[T], timeout: float = 90.0) -> T:
    """Run a test body in a fresh event loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(body, timeout)

    return asyncio.run(bounded())


class Proc:
    """A running `wscore ...` process: send lines to its stdin, wait for lines on stdout/stderr."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout: list[str] = []
        self.stderr: list[str] = []

    async def expect(self, text: str, *, stream: str = "stdout", timeout: float = DEADLINE) -> str:
        """Read lines from `stream` until one contains `text`; return it. Fails on EOF or timeout."""
        reader = self.proc.stdout if stream == "stdout" else self.proc.stderr
        seen = self.stdout if stream == "stdout" else self.stderr
        assert reader is not None
        start = len(seen)

        async def find() -> str:
            while True:
                raw = await reader.readline()
                if not raw:
                    raise AssertionError(f"{stream} ended before {text!r}; got {seen[start:]!r}")
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                seen.append(line)
                if text in line:
                    return line

        try:
            return await asyncio.wait_for(find(), timeout)
        except asyncio.TimeoutError:
            got = seen[start:]
            raise AssertionError(f"no {text!r} on {stream} within {timeout} s; got {got!r}") from None

    async def send(self, line: str) -> None:
        """Type one line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        await self.proc.stdin.drain()

    def interrupt(self) -> None:
        """Ctrl-C."""
        self.proc.send_signal(signal.SIGINT)

    async def finish(self, *, eof: bool = True, timeout: float = DEADLINE) -> int:
        """Close stdin (Ctrl-D) if `eof`, read the rest of both streams and wait for the exit status."""
        if eof and self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        self.stdout += out.decode("utf-8", "replace").splitlines()
        self.stderr += err.decode("utf-8", "replace").splitlines()
        assert self.proc.returncode is not None
        return self.proc.returncode

    @property
    def output(self) -> str:
        """Everything read so far from both streams (for assertion messages)."""
        return "\n".join(["-- stdout:", *self.stdout, "-- stderr:", *self.stderr])


@asynccontextmanager
async def wscore(*args: str) -> AsyncIterator[Proc]:
    """Start `wscore ARGS...`; on exit, stop it if it still runs (Ctrl-C, then kill) and reap it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *WSCORE,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    wrapper = Proc(proc)
    try:
        yield wrapper
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await wrapper.finish(timeout=10.0)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.communicate()


@asynccontextmanager
async def serving(command: str, *args: str, ready: str) -> AsyncIterator[Proc]:
    """Start a `wscore chat`/`wscore echo` server and wait until it prints `ready` (its URL line)."""
    async with wscore(command, *args) as proc:
        await proc.expect(ready)
        yield proc
