"""`pytest -m <adapter>` selects exactly one adapter's tests (markers added in tests/conftest.py)."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# marker -> the `adapter` fixture's id (tests/adapters/conftest.py)
ADAPTER_IDS = {
    "asyncio": "asyncio",
    "uvloop": "asyncio-uvloop",
    "trio": "trio",
    "anyio_asyncio": "anyio-asyncio",
    "anyio_trio": "anyio-trio",
}


@functools.cache
def _collect(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def _adapter_of(test_id: str) -> str | None:
    """The adapter id in `test_x[<adapter>-<other params>]` (the adapter fixture's id comes first),
    None for a test not run through the adapter fixture (e.g. one per module: `[wscore_asyncio]`)."""
    params = test_id.partition("[")[2].rstrip("]")
    # Longest first: "anyio-trio" before "trio", "asyncio-uvloop" before "asyncio".
    for adapter in sorted(ADAPTER_IDS.values(), key=len, reverse=True):
        if params == adapter or params.startswith(adapter + "-"):
            return adapter
    return None


@pytest.mark.parametrize("marker", list(ADAPTER_IDS))
def test_a_marker_selects_one_adapter_exactly(marker: str) -> None:
    everything = _collect("tests/adapters/test_parity.py")
    expected = [t for t in everything if _adapter_of(t) == ADAPTER_IDS[marker]]
    selected = _collect("-m", marker, "tests/adapters/test_parity.py")
    assert expected, "test_parity.py has tests for every adapter"
    assert selected == expected
    assert [t for t in everything if _adapter_of(t) is None], "and tests of no single adapter"


def test_the_other_matrices_are_marked_too() -> None:
    """Autobahn and interop parametrize by (module, backend), not by the adapter fixture."""
    trio = _collect("-m", "trio", "tests/autobahn", "tests/interop")
    assert "tests/autobahn/test_autobahn_trio_anyio.py::test_server_role[trio]" in trio
    assert not [t for t in trio if "anyio" in _params(t)], trio
    asyncio = _collect("-m", "asyncio", "tests/autobahn", "tests/interop")
    assert "tests/autobahn/test_autobahn.py::test_server_role[asyncio]" in asyncio
    assert not [t for t in asyncio if "anyio" in _params(t) or "trio" in _params(t)], asyncio
    anyio_trio = _collect("-m", "anyio_trio", "tests/autobahn", "tests/interop")
    assert "tests/autobahn/test_autobahn_trio_anyio.py::test_client_role[anyio-trio]" in anyio_trio
    assert all(_params(t).startswith("anyio-trio") for t in anyio_trio), anyio_trio


def _params(test_id: str) -> str:
    return test_id.partition("[")[2]
