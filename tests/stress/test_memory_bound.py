"""What one connection may hold in memory under an attacker that fills every limit (issue #13).

The attacker is another process (so that tracemalloc sees the server only): it upgrades, then sends
4 MiB binary messages, the largest `max_msg_size` admits by default, as fast as the server takes them,
while the server's handler reads nothing. The server must stop reading once `max_queue_bytes` of data
wait unread (or `max_queue` messages), so what it holds is bounded by

    max_queue_bytes + 2 × max_msg_size + READ_SLACK

(the messages queued, the message that crossed the bound, the one being assembled when reading
stopped; with the defaults 8 + 8 MiB plus reads). The attacker stops when its send has been blocked
for a second. Then the handler reads everything: every message the attacker sent whole arrives
intact, and the connection ends with 1006 (the attacker left without a close).
"""

from __future__ import annotations

import sys
import tracemalloc
from typing import Any

import anyio
import pytest

from wscore import WSMsgType

from ..adapters.conftest import Adapter
from .conftest import record_figure

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
MESSAGE = 4 * MiB  # the default max_msg_size
DEFAULT_MAX_QUEUE_BYTES = 8 * MiB
DEFAULT_MAX_QUEUE = 16
# Socket reads (asyncio reads up to 256 KiB at a time), the parser's copies of one frame header, the
# event loop's own allocations while the attack runs.
READ_SLACK = 2 * MiB
BOUND = DEFAULT_MAX_QUEUE_BYTES + 2 * MESSAGE + READ_SLACK

ATTACKER = r"""
import base64, os, socket, struct, sys
port, size, count = (int(a) for a in sys.argv[1:4])
sock = socket.create_connection(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16)).decode()
sock.sendall(
    f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
)
head = b""
while b"\r\n\r\n" not in head:
    head += sock.recv(4096)
assert head.startswith(b"HTTP/1.1 101"), head
# A masked frame (RFC 6455 §5.3) whose key is zero: the payload goes as it is, prepared once.
frame = struct.pack("!BBQ", 0x82, 0x80 | 127, size) + bytes(4) + os.urandom(size)
sock.settimeout(1.0)  # blocked this long: the server has stopped reading
sent = 0
try:
    for _ in range(count):
        sock.sendall(frame)
        sent += 1
except socket.timeout:
    pass
print(sent, flush=True)
"""


@pytest.mark.parametrize("byte_bound", [True, False], ids=["max_queue_bytes", "no_byte_bound"])
async def test_memory_per_connection_is_bounded_under_a_flood_of_the_largest_messages(
    adapter: Adapter, byte_bound: bool
) -> None:
    """With the defaults, a peer that sends the largest messages to a handler that reads nothing makes
    the server hold at most `BOUND`; with `max_queue_bytes=None` only `max_queue` (16 × 4 MiB) limits
    it, and the same attack holds more than `BOUND`: the byte bound is what keeps it."""
    go = anyio.Event()
    done = anyio.Event()
    received: list[int] = []
    ended: list[Any] = []

    async def handler(ws: Any) -> None:
        await go.wait()
        async for msg in ws:
            assert msg.type is WSMsgType.BINARY
            received.append(len(msg.data))
        ended.append(ws.close_code)
        done.set()

    options: dict[str, Any] = {} if byte_bound else {"max_queue_bytes": None}
    tracemalloc.start()
    try:
        async with adapter.run_server(handler, **options) as url:
            port = url.rsplit(":", 1)[1]
            baseline = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            result = await anyio.run_process(
                [sys.executable, "-c", ATTACKER, port, str(MESSAGE), str(DEFAULT_MAX_QUEUE + 24)]
            )
            peak = tracemalloc.get_traced_memory()[1] - baseline
            sent = int(result.stdout)
            go.set()
            with anyio.fail_after(30):
                await done.wait()
    finally:
        tracemalloc.stop()
    name = "max_queue_bytes=8 MiB (default)" if byte_bound else "max_queue_bytes=None"
    record_figure(
        f"memory held by one connection, 4 MiB messages never read ({name})",
        adapter.name,
        f"{peak / MiB:.1f} MiB traced peak (bound {BOUND / MiB:.0f} MiB); attacker sent {sent} whole",
    )
    assert received == [MESSAGE] * sent  # nothing lost, in order, intact in size
    assert ended == [1006]
    if byte_bound:
        assert peak <= BOUND, f"{peak / MiB:.1f} MiB held, over {BOUND / MiB:.0f} MiB"
    else:
        assert peak > BOUND, f"only {peak / MiB:.1f} MiB held without the byte bound"
