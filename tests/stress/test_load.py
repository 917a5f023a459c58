"""Load: 1,000 concurrent connections per adapter, echo and broadcast (issue #7, "Load").

Each test runs once per adapter of the matrix (tests/adapters/conftest.py). The client and the server
share the event loop and the process, so the rates below are the cost of both ends together. The
figures go to the `figures` fixture and are printed at the end of the run (tests/stress/README.md has
a table of them).
"""

from __future__ import annotations

import os
import random
import socket
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from wscore import ClientConnection, State, WSMsgType

from ..adapters.conftest import Adapter

pytestmark = pytest.mark.anyio

# ./scripts/test sets WSCORE_STRESS_CLIENTS=200 (its quick mode); --full and a bare pytest run use 1,000.
CLIENTS = int(os.environ.get("WSCORE_STRESS_CLIENTS", "1000"))
ROUNDS = 10
# Handshakes in progress at once: the clients all want in at the same instant, and a listen backlog
# (asyncio's default is 100) that overflows makes the kernel drop SYNs, which the client retries only
# a second later. Real clients do not arrive in one burst either; every connection still stays open
# for the whole test.
OPENING = 50


def payload(client: int, round_: int) -> str | bytes:
    """Client `client`'s message of round `round_`: text on even rounds, binary on odd, 1 B to 2 KiB."""
    rng = random.Random(client * 1000 + round_)
    size = rng.randrange(1, 2048)
    if round_ % 2:
        return rng.randbytes(size)
    return f"{client}/{round_}:" + "".join(rng.choices("abcdefghé€𝄞 ", k=size))


def checksum(messages: list[str | bytes]) -> int:
    """A CRC-32 over the messages in order (so a reordering changes it, not only a lost byte)."""
    crc = 0
    for message in messages:
        data = message.encode() if isinstance(message, str) else message
        crc = zlib.crc32(len(data).to_bytes(4, "big") + data, crc)
    return crc


async def test_thousand_connections_echo_every_message_in_order(
    adapter: Adapter, figures: Callable[..., None]
) -> None:
    """1,000 clients stay connected at once and each sends ROUNDS messages back to back; every echo
    comes back intact and in order (per-message equality, plus count and CRC over all of them)."""
    server_received = 0
    opened = 0
    all_open = anyio.Event()

    async def handler(ws: Any) -> None:
        nonlocal server_received
        async for msg in ws:
            server_received += 1
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            else:
                await ws.send_bytes(msg.data)

    sent: list[list[str | bytes]] = [[] for _ in range(CLIENTS)]
    received: list[list[str | bytes]] = [[] for _ in range(CLIENTS)]
    gate = anyio.Semaphore(OPENING)

    async def client(url: str, n: int) -> None:
        nonlocal opened
        async with gate:
            cm = adapter.connect(url)
            ws = await cm.__aenter__()
        try:
            opened += 1
            if opened == CLIENTS:
                all_open.set()
            await all_open.wait()
            for r in range(ROUNDS):
                message = payload(n, r)
                sent[n].append(message)
                if isinstance(message, str):
                    await ws.send_str(message)
                else:
                    await ws.send_bytes(message)
            for _ in range(ROUNDS):
                msg = await ws.receive()
                assert msg.type in (WSMsgType.TEXT, WSMsgType.BINARY), msg
                received[n].append(msg.data)
            await ws.close()
        finally:
            await cm.__aexit__(None, None, None)

    async with adapter.run_server(handler) as url:
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for n in range(CLIENTS):
                tg.start_soon(client, url, n)
            await all_open.wait()
            echo_start = anyio.current_time()
        end = anyio.current_time()

    assert opened == CLIENTS
    for n in range(CLIENTS):
        assert received[n] == sent[n], f"client {n}: echoes differ from what it sent"
    flat_sent = [m for messages in sent for m in messages]
    flat_received = [m for messages in received for m in messages]
    assert len(flat_received) == server_received == CLIENTS * ROUNDS
    assert checksum(flat_received) == checksum(flat_sent)
    echo_bytes = sum(len(m.encode() if isinstance(m, str) else m) for m in flat_sent)
    figures(
        "echo, 1,000 concurrent connections",
        adapter.name,
        f"{CLIENTS * ROUNDS} messages ({echo_bytes / 2**20:.1f} MiB) echoed in order, CRC equal; "
        f"{CLIENTS * ROUNDS / (end - echo_start):,.0f} msg/s echo phase, "
        f"{CLIENTS / (echo_start - start):,.0f} handshakes/s, {end - start:.1f} s in all",
    )


BROADCASTS = 64
BROADCAST_SIZE = 4096


async def stuck_client(url: str) -> socket.socket:
    """A client that completes the opening handshake and then never reads again.

    Its receive buffer is made as small as the kernel allows before connecting, so the server's
    writes to it back up after a few KiB, as with a client on a dead mobile link.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.setblocking(False)
    try:
        sock.connect((parts.hostname, parts.port))
    except BlockingIOError:
        await anyio.wait_writable(sock)
    core = ClientConnection(f"{parts.hostname}:{parts.port}", "/")
    sock.send(core.data_to_send())
    while core.state is State.CONNECTING:
        await anyio.wait_readable(sock)
        # The 101 may come with the first broadcast right behind it: take only as much as needed.
        core.receive_data(sock.recv(1))
    assert core.state is State.OPEN
    return sock


async def test_broadcast_to_thousand_skips_a_stuck_client_with_bounded_memory(
    adapter: Adapter, figures: Callable[..., None]
) -> None:
    """The server broadcasts BROADCASTS messages to 1,000 clients, one of which never reads: the other
    999 receive every message in order; `broadcast` reports the stuck one as skipped once its
    backlog passes the high-water mark, so what the server holds for it stays bounded; the server
    then closes it within its close timeout. The traced memory peak of the broadcast phase (the whole
    process: the server and the 999 clients) is measured and bounded."""
    server_side: list[Any] = []
    everyone_in = anyio.Event()
    close_timeout = 0.5

    async def handler(ws: Any) -> None:
        server_side.append(ws)
        if len(server_side) == CLIENTS:
            everyone_in.set()
        async for _ in ws:
            pass

    fast = CLIENTS - 1
    got = [0] * BROADCASTS
    round_done = [anyio.Event() for _ in range(BROADCASTS)]
    checksums: list[int] = []
    gate = anyio.Semaphore(OPENING)
    stuck: socket.socket | None = None

    def message(k: int) -> bytes:
        return random.Random(k).randbytes(BROADCAST_SIZE)

    async def client(url: str) -> None:
        async with gate:
            cm = adapter.connect(url)
            ws = await cm.__aenter__()
        try:
            crc = 0
            for k in range(BROADCASTS):
                msg = await ws.receive()
                assert msg.type is WSMsgType.BINARY, msg
                assert msg.data == message(k), f"broadcast {k} arrived damaged or out of order"
                crc = zlib.crc32(msg.data, crc)
                got[k] += 1
                if got[k] == fast:
                    round_done[k].set()
            checksums.append(crc)
            await ws.close()
        finally:
            await cm.__aexit__(None, None, None)

    skipped_rounds = 0
    peak_backlog = 0
    mw = adapter.module.WSTimeout(None, close_timeout)
    async with adapter.run_server(handler, timeout=mw) as url:
        async with anyio.create_task_group() as tg:
            stuck = await stuck_client(url)
            for _ in range(fast):
                tg.start_soon(client, url)
            await everyone_in.wait()
            port = stuck.getsockname()[1]
            (stuck_ws,) = [ws for ws in server_side if ws.get_extra_info("peername")[1] == port]
            # Loopback lets the kernel absorb megabytes for a socket that is not read (autotuned send
            # buffers); a small send buffer on this one connection gets its backlog to the server's
            # user-space buffer within a few broadcasts, as a long-haul link would.
            stuck_ws.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                start = anyio.current_time()
                for k in range(BROADCASTS):
                    skipped = adapter.module.broadcast(server_side, message(k))
                    assert all(ws is stuck_ws for ws in skipped), "a reading client was skipped"
                    skipped_rounds += bool(skipped)
                    peak_backlog = max(peak_backlog, stuck_ws.write_buffer_size())
                    # Pace the broadcasts on the readers (a ticker would pace them on the clock):
                    # a reader that is merely scheduled later must not count as stuck.
                    await round_done[k].wait()
                elapsed = anyio.current_time() - start
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
        # Once the 999 others are done (their closes would delay our timers): close the stuck one.
        close_start = anyio.current_time()
        await stuck_ws.close()
        close_took = anyio.current_time() - close_start
        assert stuck is not None
        stuck.close()

    expected = 0
    for k in range(BROADCASTS):
        expected = zlib.crc32(message(k), expected)
    assert checksums == [expected] * fast
    # The stuck client was skipped from some round on: its backlog never grew past the high-water
    # mark (64 KiB) plus the one frame that crossed it.
    assert skipped_rounds > 0
    assert peak_backlog <= 64 * 1024 + BROADCAST_SIZE + 16
    assert stuck_ws.close_code == 1006, (stuck_ws.close_code, stuck_ws.exception())
    assert close_took <= close_timeout * 1.5 + 0.25
    # 999 readers each holding at most a message or two, plus the stuck backlog: a few tens of MiB
    # at most. Without the skipping the stuck backlog alone would be BROADCASTS x 4 KiB per round.
    assert peak < 64 * 2**20
    figures(
        "broadcast to 1,000, one stuck",
        adapter.name,
        f"{BROADCASTS} x {BROADCAST_SIZE} B to {fast} readers, all intact "
        f"({fast * BROADCASTS / elapsed:,.0f} deliveries/s, traced); stuck one skipped in "
        f"{skipped_rounds}/{BROADCASTS} rounds, its backlog peak {peak_backlog / 1024:.0f} KiB; "
        f"traced memory peak {peak / 2**20:.1f} MiB; its close() took {close_took:.2f} s "
        f"(close timeout {close_timeout} s)",
    )
