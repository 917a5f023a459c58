"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session", autouse=True)
def no_proxy_from_the_environment() -> Iterator[None]:
    """Every client connects to 127.0.0.1 directly, whatever proxy the machine running the tests is
    set up with (connect() reads HTTP_PROXY and the rest by default); tests/adapters/test_proxy.py
    sets its own."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.lower().endswith("_proxy"):
                patch.delenv(name)
        yield


@pytest.fixture
def unused_port() -> int:
    """A free port on 127.0.0.1 for a test server."""
    return free_port()


# -- one marker per adapter: `pytest -m trio` runs wscore_trio's tests and not anyio's on trio --------

ADAPTER_MARKS = {
    "asyncio": "asyncio",
    "asyncio-uvloop": "uvloop",
    "trio": "trio",
    "anyio-asyncio": "anyio_asyncio",
    "anyio-trio": "anyio_trio",
}
"""The `adapter` fixture's ids (tests/adapters/conftest.py) -> marker names (registered in pyproject)."""

MODULE_MARKS = {
    ("wscore_trio", "trio"): "trio",
    ("wscore_anyio", "asyncio"): "anyio_asyncio",
    ("wscore_anyio", "trio"): "anyio_trio",
}
"""(module, anyio_backend) parameters of the Autobahn and interop matrices -> marker names."""

FILE_MARKS = {
    "tests/adapters/test_asyncio_specific.py": "asyncio",
    "tests/adapters/test_trio_specific.py": "trio",
    "tests/adapters/test_anyio_specific.py": "anyio_",  # + the anyio_backend parameter
    "tests/autobahn/test_autobahn.py": "asyncio",
    "tests/interop/test_asyncio_interop.py": "asyncio",
}
"""Files that test one adapter without the `adapter` fixture."""

ROOT = Path(__file__).resolve().parents[1]


def adapter_mark(item: pytest.Item) -> str | None:
    """The adapter `item` runs on, as a marker name, or None for a test of no adapter (or of several)."""
    params: dict[str, object] = getattr(getattr(item, "callspec", None), "params", {})
    if isinstance(params.get("adapter"), str):
        return ADAPTER_MARKS[str(params["adapter"])]
    if "module" in params and "anyio_backend" in params:
        return MODULE_MARKS.get((str(params["module"]), str(params["anyio_backend"])))
    path = Path(str(item.path)).resolve()
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else ""
    mark = FILE_MARKS.get(rel)
    if mark == "anyio_":
        backend = params.get("anyio_backend")
        return f"anyio_{backend}" if backend in ("asyncio", "trio") else None
    return mark


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the adapter it runs on, so that `-m` selects exactly one adapter."""
    for item in items:
        mark = adapter_mark(item)
        if mark is not None:
            item.add_marker(getattr(pytest.mark, mark))
