"""The adapter matrix: every behavioural test in tests/adapters/ runs once per entry of `ADAPTERS`.

An entry names the anyio backend the test runs on and supplies two async context managers:
`connect(url, **kw)` -> the connection, and `run_server(handler, **kw)` -> the ws:// (wss:// when
`ssl=` is given) URL of that adapter's server on 127.0.0.1, stopped on exit. Adding an adapter is
one entry: `"trio": Adapter("trio", "trio", trio_connect, trio_run_server, wscore_trio)`.

The asyncio entry also checks for leaks: after `connect` exits its transport is closed, and after
`run_server` exits no task the server started is left.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

import anyio
import pytest
import sniffio
import trio
import trustme

import wscore_anyio
import wscore_asyncio
import wscore_trio

Handler = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Adapter:
    """One adapter under test (see the module docstring)."""

    name: str
    backend: str | tuple[str, dict[str, Any]]
    connect: Callable[..., AbstractAsyncContextManager[Any]]
    run_server: Callable[..., AbstractAsyncContextManager[str]]
    module: ModuleType


@asynccontextmanager
async def _asyncio_connect(url: str, **kw: Any) -> AsyncIterator[wscore_asyncio.WebSocket]:
    async with wscore_asyncio.connect(url, **kw) as ws:
        yield ws
    transport = ws.transport
    assert transport is not None and transport.is_closing(), "client transport left open"


@asynccontextmanager
async def _asyncio_run_server(handler: Handler, **kw: Any) -> AsyncIterator[str]:
    before = asyncio.all_tasks()
    scheme = "wss" if kw.get("ssl") is not None else "ws"
    async with wscore_asyncio.serve(handler, "127.0.0.1", 0, **kw) as server:
        yield f"{scheme}://127.0.0.1:{server.port}"
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert not left, f"server left tasks behind: {left}"
    assert not server._connections, "server left connections open"


def _structured_connect(module: Any) -> Callable[..., AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def connect(url: str, **kw: Any) -> AsyncIterator[Any]:
        async with module.connect(url, **kw) as ws:
            yield ws
        assert ws.core.close_transport, "client transport left open"

    return connect


def _spawn(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Start `fn` in a task outside the caller's cancel scopes (a trio system task, an asyncio task)."""
    if sniffio.current_async_library() == "trio":
        trio.lowlevel.spawn_system_task(fn)
    else:
        task = asyncio.get_running_loop().create_task(fn())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: set[asyncio.Task[None]] = set()


def _structured_run_server(module: Any) -> Callable[..., AbstractAsyncContextManager[str]]:
    """run_server for wscore_trio / wscore_anyio: `serve` started with task_status and stopped by
    cancelling it (which closes every connection with 1001).

    The server's task group lives in a task of its own, as a server would in an application: the
    tests may then keep a client connection (which owns a task group in the test's task) open after
    leaving `run_server`, without misnesting the two.
    """

    @asynccontextmanager
    async def run_server(handler: Handler, **kw: Any) -> AsyncIterator[str]:
        scheme = "wss" if kw.get("ssl") is not None else "ws"
        started = anyio.Event()
        stopped = anyio.Event()
        box: dict[str, Any] = {}

        async def server_task() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    box["server"] = await tg.start(partial(module.serve, handler, "127.0.0.1", 0, **kw))
                    started.set()
            except BaseException as exc:  # reported by run_server, in the test's task
                box["error"] = exc
            finally:
                started.set()
                stopped.set()

        _spawn(server_task)
        await started.wait()
        if "error" in box:
            raise box["error"]
        server = box["server"]
        try:
            yield f"{scheme}://127.0.0.1:{server.port}"
        finally:
            server.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await stopped.wait()
        if "error" in box:
            raise box["error"]
        assert not server.connections, "server left connections open"

    return run_server


ADAPTERS: dict[str, Adapter] = {
    "asyncio": Adapter(
        "asyncio", ("asyncio", {"debug": True}), _asyncio_connect, _asyncio_run_server, wscore_asyncio
    ),
    "asyncio-uvloop": Adapter(
        "asyncio-uvloop",
        ("asyncio", {"debug": True, "use_uvloop": True}),
        _asyncio_connect,
        _asyncio_run_server,
        wscore_asyncio,
    ),
    "trio": Adapter(
        "trio", "trio", _structured_connect(wscore_trio), _structured_run_server(wscore_trio), wscore_trio
    ),
    "anyio-asyncio": Adapter(
        "anyio-asyncio",
        ("asyncio", {"debug": True}),
        _structured_connect(wscore_anyio),
        _structured_run_server(wscore_anyio),
        wscore_anyio,
    ),
    "anyio-trio": Adapter(
        "anyio-trio",
        "trio",
        _structured_connect(wscore_anyio),
        _structured_run_server(wscore_anyio),
        wscore_anyio,
    ),
}


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """The adapter under test."""
    return ADAPTERS[request.param]


@pytest.fixture
def anyio_backend(adapter: Adapter) -> str | tuple[str, dict[str, Any]]:
    """Run each test on the backend its adapter needs (asyncio in debug mode)."""
    return adapter.backend


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority for wss:// tests."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 signed by `tls_ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def tls_client(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts `tls_ca`."""
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context
