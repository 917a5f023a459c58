"""Before/after: one benchmark run on two checkouts of wscore, interleaved, medians side by side.

    python benchmarks/ab.py BEFORE_DIR AFTER_DIR --reps 5 -- echo.py --libs wscore_asyncio --markdown
    git worktree add /tmp/before HEAD~3   # a checkout to compare with (copy the built _speedups*.so)

Each repetition runs `python DIR/benchmarks/SCRIPT ARGS...` for BEFORE then AFTER (alternating which
goes first, so that neither always runs on a warmer machine); every run imports the wscore of its own
checkout (the benchmark scripts put their tree first on sys.path). The Markdown table rows each run
prints are collected, and the median of every cell is reported with after/before. Single runs on a
2-core machine swing by up to 30%: the medians of interleaved runs are what to compare.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

_UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_NUMBER = re.compile(r"^([0-9][0-9,.]*)\s*([kMG]?)(?:\s*(?:KiB|B|/s|msg/s))?$")


def _value(cell: str) -> float | None:
    match = _NUMBER.match(cell.strip().replace("**", ""))
    if match is None:
        return None
    return float(match.group(1).replace(",", "")) * _UNITS[match.group(2)]


def _rows(output: str) -> dict[str, float]:
    """Every numeric cell of every Markdown table row: "table header | row | column" -> value."""
    cells: dict[str, float] = {}
    header: list[str] = []
    for line in output.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if set("".join(parts)) <= set("-: "):
            continue
        if not header:
            header = parts
            continue
        for name, cell in zip(header[1:], parts[1:], strict=False):
            if name.startswith("×"):
                continue  # a ratio to a peer: not measured here
            value = _value(cell)
            if value is not None:
                cells[f"{parts[0]} | {name}"] = value
    return cells


def _run(tree: Path, script: str, args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / script), *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=tree,
    ).stdout
    return _rows(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("script", help="a benchmarks/ script, e.g. echo.py")
    p.add_argument("args", nargs=argparse.REMAINDER)
    ns = p.parse_args()
    args = [a for a in ns.args if a != "--"]
    results: dict[str, dict[str, list[float]]] = {"before": defaultdict(list), "after": defaultdict(list)}
    for rep in range(ns.reps):
        order = [("before", ns.before), ("after", ns.after)]
        if rep % 2:
            order.reverse()
        for label, tree in order:
            for key, value in _run(tree, ns.script, args).items():
                results[label][key].append(value)
        print(f"# repetition {rep + 1} of {ns.reps} done", file=sys.stderr)
    print(f"| {ns.script} {' '.join(args)} | before (median of {ns.reps}) | after | after/before |")
    print("|---|---:|---:|---:|")
    for key in results["before"]:
        before = statistics.median(results["before"][key])
        after_values = results["after"].get(key)
        if not after_values:
            continue
        after = statistics.median(after_values)
        print(f"| {key} | {before:,.0f} | {after:,.0f} | {after / before:.3f} |")


if __name__ == "__main__":
    main()
