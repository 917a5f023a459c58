"""`wscore chat|echo --workers N`: processes sharing one port, one room across them through a real
redis-server, Ctrl-C to the parent closing every client with 1001, a killed worker restarted.

The tests prove that two clients are served by different processes from the worker number and pid
the chat tells each client ("* served by worker 2 (pid N)").
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Callable

import pytest

from tests.redis_server import RedisServer, redis_server  # noqa: F401  (a fixture)
from wscore_asyncio import WebSocket, WSMessage, WSMsgType, connect

from .helpers import DEADLINE, run, serving

_SERVED = re.compile(r"^\* served by worker (\d+) \(pid (\d+)\)$")


async def _joined(url: str, name: str) -> tuple[WebSocket, int, int]:
    """A chat client and the (worker, pid) serving it."""
    ws = await connect(f"{url}?name={name}")
    match = _SERVED.match(await ws.receive_str(timeout=DEADLINE))
    assert match, "the first line names the worker"
    return ws, int(match[1]), int(match[2])


async def _on_two_workers(url: str) -> tuple[tuple[WebSocket, int, int], tuple[WebSocket, int, int]]:
    """Connect until two clients are held by different workers (the kernel picks, not us); the
    others leave again."""
    first = await _joined(url, "ann")
    extra: list[WebSocket] = []
    try:
        for i in range(60):
            other = await _joined(url, f"bo{i}")
            if other[1] != first[1]:
                return first, other
            extra.append(other[0])
        raise AssertionError("60 connections all landed on one worker")
    finally:
        for ws in extra:
            await ws.close()


async def _until(ws: WebSocket, wanted: Callable[[str], bool], timeout: float = DEADLINE) -> str:
    """Read until a text matches (join/leave/member lines come and go in between)."""

    async def read() -> str:
        while True:
            text = await ws.receive_str()
            if wanted(text):
                return text

    return await asyncio.wait_for(read(), timeout)


async def _closed(ws: WebSocket) -> WSMessage:
    """The first message that is not text (the close), within the deadline."""

    async def read() -> WSMessage:
        while (msg := await ws.receive()).type is WSMsgType.TEXT:
            pass
        return msg

    return await asyncio.wait_for(read(), DEADLINE)


def test_chat_workers_share_one_room_through_redis_and_survive_its_restart(
    redis_server: RedisServer,  # noqa: F811
    unused_port: int,
) -> None:
    url = f"ws://127.0.0.1:{unused_port}/ws"

    async def main() -> None:
        args = ("--workers", "2", "--redis", redis_server.url, "--port", str(unused_port))
        async with serving("chat", *args, ready="2 workers on") as server:
            (ann, w1, pid1), (bob, w2, pid2) = await _on_two_workers(url)
            assert w1 != w2 and pid1 != pid2 and os.getpid() not in (pid1, pid2)
            bob_name = (await _until(bob, lambda t: t.startswith("* you are "))).split()[3]
            # Joins and member lists cross the processes: ann (worker w1) sees bob (worker w2).
            await _until(
                ann, lambda t: t.startswith("* online: ") and bob_name in t.split(": ")[1].split(", ")
            )
            await ann.send_str("hello from one process")
            assert await _until(bob, lambda t: not t.startswith("* ")) == "ann: hello from one process"
            await bob.send_str("and back from the other")
            assert (
                await _until(ann, lambda t: not t.startswith("* ")) == f"{bob_name}: and back from the other"
            )

            # Redis restarts: what is said meanwhile is refused (the sender is told), then the
            # workers reconnect and resubscribe by themselves, and the room works again.
            redis_server.stop()
            await ann.send_str("lost?")
            assert (await _until(ann, lambda t: "not delivered" in t)).startswith("* not delivered")
            redis_server.start()
            for attempt in range(int(DEADLINE / 0.5)):
                await ann.send_str(f"after the restart {attempt}")
                try:
                    text = await _until(bob, lambda t: not t.startswith("* "), timeout=0.5)
                except asyncio.TimeoutError:
                    continue  # the workers are still backing off; say it again
                assert text.startswith("ann: after the restart"), text
                break
            else:
                raise AssertionError("no message crossed the workers after Redis restarted")

            # Ctrl-C to the parent: every worker closes its clients with 1001, the parent exits 0.
            server.interrupt()
            for ws in (ann, bob):
                msg = await _closed(ws)
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001), msg
                await ws.close()
            assert await server.finish() == 0, server.output
            assert server.stdout[-1] == "stopped 2 worker(s)", server.output
            for n in (1, 2):
                assert f"[worker {n}] chat demo stopped" in server.stdout

    run(main())


def test_a_killed_worker_is_reported_and_restarted(unused_port: int) -> None:
    url = f"ws://127.0.0.1:{unused_port}/ws"

    async def main() -> None:
        async with serving(
            "chat", "--workers", "2", "--port", str(unused_port), ready="2 workers on"
        ) as server:
            assert "each worker is a room of its own" in await server.expect("--workers", stream="stderr")
            ws, worker, pid = await _joined(url, "victim")
            os.kill(pid, signal.SIGKILL)  # a process this test started (through the parent)
            line = await server.expect(f"worker {worker} (pid {pid}) exited", stream="stderr")
            assert line.endswith("restarting it"), line
            await server.expect(f"[worker {worker}] chat demo: open")
            msg = await _closed(ws)
            assert msg.type is WSMsgType.CLOSED and ws.close_code == 1006  # its clients saw it die
            served: set[int] = set()
            for _ in range(60):  # both workers serve again, one of them new
                client, number, new_pid = await _joined(url, "again")
                served.add(number)
                assert new_pid != pid
                await client.close()
                if len(served) == 2:
                    break
            assert served == {1, 2}
            server.interrupt()
            assert await server.finish() == 0, server.output

    run(main())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_echo_workers_share_the_port_and_stop_with_1001(unused_port: int, signum: signal.Signals) -> None:
    """Ctrl-C (SIGINT) or SIGTERM (what a process manager sends) to the parent: every worker closes its
    clients with 1001 and the parent exits 0."""
    url = f"ws://127.0.0.1:{unused_port}/"

    async def main() -> None:
        async with serving(
            "echo", "--workers", "2", "--port", str(unused_port), ready="with 2 workers"
        ) as server:
            clients = [await connect(url) for _ in range(8)]
            for i, ws in enumerate(clients):
                await ws.send_str(f"echo {i}")
                assert await ws.receive_str(timeout=DEADLINE) == f"echo {i}"
            server.proc.send_signal(signum)
            for ws in clients:
                msg = await ws.receive(timeout=DEADLINE)
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001), msg
                await ws.close()
            assert await server.finish() == 0, server.output
            assert sum("echo server on" in line for line in server.stdout if line.startswith("[worker")) == 2

    run(main())
