"""The stress and fault suite runs on the same adapter matrix as tests/adapters (see its conftest).

Tests record what they measured with the `figures` fixture; at the end of the pytest run the figures
are written to build/stress-figures.txt (or $WSCORE_STRESS_FIGURES) and one line says so; the
default output stays short (tests/stress/README.md quotes one run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
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


def figures_path(config: pytest.Config) -> Path:
    """Where the figures go: $WSCORE_STRESS_FIGURES, else build/stress-figures.txt in the checkout."""
    return Path(os.environ.get("WSCORE_STRESS_FIGURES") or config.rootpath / "build" / "stress-figures.txt")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Write the figures the stress tests measured to a file, grouped by what was measured, and say
    where in one line (`tests/stress/README.md` quotes a run)."""
    if not _FIGURES:
        return
    lines: list[str] = []
    for what in dict.fromkeys(w for w, _, _ in _FIGURES):
        lines.append(what)
        lines.extend(f"  {name:15} {measured}" for w, name, measured in _FIGURES if w == what)
    path = figures_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"wscore stress figures: {len(_FIGURES)} written to {path}")
