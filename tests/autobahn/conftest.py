"""Collects the Autobahn verdicts of each role and prints them at the end of the pytest run."""

from __future__ import annotations

from collections import Counter

import pytest

SUMMARY: dict[str, tuple[Counter[str], Counter[str], float, int]] = {}
"""role -> (count per message verdict, count per closing verdict, seconds, cases), from test_autobahn.py."""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per Autobahn role: the verdict counts and how long the run took."""
    if not SUMMARY:
        return
    terminalreporter.section("Autobahn TestSuite (kosoku)")
    for role, (behavior, closing, seconds, cases) in sorted(SUMMARY.items()):
        terminalreporter.write_line(
            f"{role}: {cases} cases in {seconds:.0f} s; "
            f"behavior: {_counts(behavior)}; close: {_counts(closing)}"
        )


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{verdict} {n}" for verdict, n in sorted(counter.items()))
