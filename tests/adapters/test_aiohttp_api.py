"""aiohttp's connection API details that aiohttp code relies on (issue #14), on every adapter."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from wscore import WSCloseCode, WSMsgType

from .conftest import Adapter

pytestmark = pytest.mark.anyio


async def test_send_json_bytes_sends_the_encoders_bytes_as_binary(adapter: Adapter) -> None:
    """`send_json_bytes(data, dumps=)` takes an encoder returning bytes (orjson) and sends BINARY."""

    async def handler(ws: Any) -> None:
        await ws.send_json_bytes({"a": [1, 2]}, dumps=lambda d: json.dumps(d).encode())

    with anyio.fail_after(10):
        async with adapter.run_server(handler) as url, adapter.connect(url) as ws:
            msg = await ws.receive()
    assert (msg.type, msg.data) == (WSMsgType.BINARY, b'{"a": [1, 2]}')


@pytest.mark.parametrize(("offer", "expected"), [(0, 0), (15, 15), (10, 10)])
async def test_compress_is_the_negotiated_window_bits_on_both_sides(
    adapter: Adapter, offer: int, expected: int
) -> None:
    """`ws.compress`: the server's window bits that were negotiated (the client may ask for fewer),
    0 without permessage-deflate, as aiohttp reports it."""
    server_side: list[int] = []

    async def handler(ws: Any) -> None:
        server_side.append(ws.compress)
        await ws.send_str("ready")

    with anyio.fail_after(10):
        async with adapter.run_server(handler) as url, adapter.connect(url, compress=offer) as ws:
            assert await ws.receive_str() == "ready"
            client_side = ws.compress
    assert (client_side, server_side) == (expected, [expected])


@pytest.mark.parametrize("code", [1001, 1011, 4000])
async def test_close_code_is_a_wsclosecode_member_when_known(adapter: Adapter, code: int) -> None:
    """aiohttp code compares `close_code` with `is WSCloseCode.GOING_AWAY`: a known code is the member,
    an application's own code (4000) the plain int."""

    async def handler(ws: Any) -> None:
        await ws.close(code=code)

    with anyio.fail_after(10):
        async with adapter.run_server(handler) as url, adapter.connect(url) as ws:
            msg = await ws.receive()
            assert msg.type is WSMsgType.CLOSE
            close_code = ws.close_code
    if code == 4000:
        assert type(close_code) is int and close_code == 4000
    else:
        assert close_code is WSCloseCode(code)
