"""The stress and fault suite runs on the same adapter matrix as tests/adapters (see its conftest).

Tests record what they measured with the `figures` fixture; the figures are printed in a table at the
end of the pytest run, so that every CI log carries them (tests/stress/README.md quotes one run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.adapters.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    ADAPTERS,
    Adapter,
    adapter,
    tls_ca,
    tls_client,
    tls_server,
)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    """The adapter's backend without asyncio's debug mode, whose per-callback bookkeeping would
    dominate every rate measured here (tests/adapters keeps debug mode for its leak checks)."""
    matrix_entry: Adapter = request.getfixturevalue("adapter")
    if isinstance(matrix_entry.backend, tuple):
        name, options = matrix_entry.backend
        return name, {k: v for k, v in options.items() if k != "debug"}
    return matrix_entry.backend


_FIGURES: list[tuple[str, str, str]] = []


def record_figure(what: str, who: str, measured: str) -> None:
    """Keep one measured figure (`who`: the adapter, and role) for the end-of-run table."""
    _FIGURES.append((what, who, measured))


@pytest.fixture
def figures() -> Callable[[str, str, str], None]:
    """`figures(what, adapter, measured)`: `record_figure` as a fixture."""
    return record_figure


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the stress tests measured, grouped by what was measured."""
    if not _FIGURES:
        return
    terminalreporter.section("wscore stress figures")
    for what in dict.fromkeys(w for w, _, _ in _FIGURES):
        terminalreporter.write_line(what)
        for w, name, measured in _FIGURES:
            if w == what:
                terminalreporter.write_line(f"  {name:15} {measured}")
