"""The Autobahn TestSuite (run by kosoku) against wscore_trio and wscore_anyio (on anyio's asyncio and
trio backends), in both roles, compression included.

Same cases and verdict rule as test_autobahn.py (every case OK, NON-STRICT or INFORMATIONAL); kosoku
runs in a child process (tests/autobahn/kosoku_proc.py) because its API needs asyncio while the
adapter under test may run on trio. `WSCORE_AUTOBAHN_CASES` and `WSCORE_AUTOBAHN_PARALLEL` narrow or
widen the run as there.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from wscore import ConnectionClosed, DeflateOptions

from .conftest import SUMMARY

pytestmark = [pytest.mark.autobahn, pytest.mark.timeout(1800)]

PARALLEL = int(os.environ.get("WSCORE_AUTOBAHN_PARALLEL", "2"))
CASES = os.environ.get("WSCORE_AUTOBAHN_CASES", "").replace(" ", "")
ROOT = Path(__file__).resolve().parents[2]

# The client offers client_no_context_takeover, so that the 13.x cases where the server asks for it
# (13.2, 13.5, 13.6) run instead of ending UNIMPLEMENTED. zlib level 1, as in test_autobahn.py: the same
# code paths as the default level 6 at a third of the CPU (the 12.x/13.x cases are CPU-bound).
CLIENT_COMPRESS = DeflateOptions(client_no_context_takeover=True, level=1)
SERVER_COMPRESS = DeflateOptions(level=1)

MATRIX = [
    pytest.param("wscore_trio", "trio", id="trio"),
    pytest.param("wscore_anyio", "asyncio", id="anyio-asyncio"),
    pytest.param("wscore_anyio", "trio", id="anyio-trio"),
]


def _check(role: str, rows: list[list[Any]], seconds: float, outdir: Path) -> None:
    SUMMARY[role] = (Counter(r[1] for r in rows), Counter(r[2] for r in rows), seconds, len(rows))
    failed = [f"{r[0]}: {r[1]}/{r[2]}" for r in rows if not r[3]]
    assert rows, "no case ran"
    assert not failed, f"{len(failed)} cases failed (reports in {outdir}):\n" + "\n".join(failed[:50])


async def _kosoku(*args: str) -> anyio.abc.Process:
    return await anyio.open_process(
        [sys.executable, "-m", "tests.autobahn.kosoku_proc", *args], cwd=ROOT, stderr=None
    )


@pytest.mark.anyio
@pytest.mark.parametrize(("module", "anyio_backend"), MATRIX)
async def test_server_role(module: str, anyio_backend: str, tmp_path: Path) -> None:
    """kosoku's fuzzing client against our echo server (compression accepted)."""
    mod: Any = importlib.import_module(module)
    async with anyio.create_task_group() as tg:
        server = await tg.start(
            partial(
                mod.serve,
                mod.echo_handler,
                "127.0.0.1",
                0,
                compress=SERVER_COMPRESS,
                max_msg_size=64 * 1024 * 1024,
            )
        )
        start = time.monotonic()
        url = f"ws://127.0.0.1:{server.port}"
        async with await _kosoku("fuzzingclient", url, CASES, str(PARALLEL), str(tmp_path)) as proc:
            assert proc.stdout is not None
            output = "".join([chunk async for chunk in TextReceiveStream(proc.stdout)])
        seconds = time.monotonic() - start
        tg.cancel_scope.cancel()
    assert proc.returncode == 0, f"kosoku exited with {proc.returncode}"
    role = f"{module} on {anyio_backend}, server role (fuzzingclient)"
    _check(role, json.loads(output.splitlines()[-1]), seconds, tmp_path)


async def _run_client(mod: Any, base: str) -> None:
    async with mod.connect(f"{base}/getCaseCount") as ws:
        count = int(await ws.receive_str())
    numbers = iter(range(1, count + 1))

    async def worker() -> None:
        for case in numbers:
            url = f"{base}/runCase?case={case}&agent={mod.__name__}"
            try:
                async with mod.connect(url, compress=CLIENT_COMPRESS, max_msg_size=0) as ws:
                    await mod.echo_handler(ws)
            except ConnectionClosed:
                pass  # the case closed the connection while we were echoing: that is its verdict

    async with anyio.create_task_group() as tg:
        for _ in range(PARALLEL):
            tg.start_soon(worker)
    async with mod.connect(f"{base}/updateReports?agent={mod.__name__}") as ws:
        await ws.receive()


@pytest.mark.anyio
@pytest.mark.parametrize(("module", "anyio_backend"), MATRIX)
async def test_client_role(module: str, anyio_backend: str, tmp_path: Path) -> None:
    """Our client (offering compression) against kosoku's fuzzing server."""
    mod: Any = importlib.import_module(module)
    start = time.monotonic()
    async with await _kosoku("fuzzingserver", CASES, str(tmp_path)) as proc:
        assert proc.stdout is not None
        lines = TextReceiveStream(proc.stdout)
        buffer = ""
        while "\n" not in buffer:
            buffer += await lines.receive()
        first, _, buffer = buffer.partition("\n")
        assert first.startswith("PORT "), first
        await _run_client(mod, f"ws://127.0.0.1:{first.split()[1]}")
        buffer += "".join([chunk async for chunk in lines])
    seconds = time.monotonic() - start
    assert proc.returncode == 0, f"kosoku exited with {proc.returncode}"
    role = f"{module} on {anyio_backend}, client role (fuzzingserver)"
    _check(role, json.loads(buffer.strip().splitlines()[-1]), seconds, tmp_path)
