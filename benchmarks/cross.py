"""Each asyncio client against each asyncio server: a matrix per case, so client and server costs separate.

    python -m benchmarks.cross                        # 16 B and 1 KiB, 1 and 64 in flight, batch
    python -m benchmarks.cross --mode batch,gated --repeat 3 --markdown
    python -m benchmarks.cross --libs wscore_asyncio,picows --quick

The clients and servers are echo.py's asyncio rows (wscore_asyncio, websockets, aiohttp, picows,
wscore_anyio on asyncio); every pairing is a row of echo.py's measuring (check, warm-up, timed round
trips; every repeat runs every pairing once, interleaved; the best counts). Printed per case: a matrix
(rows: client, columns: server, msg/s), then wscore_asyncio's client over picows' client against each
server, and wscore_asyncio's server over picows' server under each client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "adapters"))

from benchmarks.echo import Case, Lib, add_args, all_libs, case_label, finish_args, fmt_rate, measure, render

OURS = "wscore_asyncio"
THEIRS = "picows"


def pair(client: Lib, server: Lib) -> Lib:
    """A row with `client`'s client (and its semaphore for the gated mode) against `server`'s server."""
    return Lib(
        f"{client.name} -> {server.name}", "cross", server.server, client.client, "asyncio", client.gate
    )


def ratios(
    label: str, names: Sequence[str], rate: dict[tuple[str, str], float], *, by_client: bool
) -> str | None:
    """One line: ours over theirs, as a client against each server (or as a server under each client)."""
    if OURS not in names or THEIRS not in names:
        return None
    parts = []
    for other in names:
        if by_client:
            ours, theirs = rate[OURS, other], rate[THEIRS, other]
        else:
            ours, theirs = rate[other, OURS], rate[other, THEIRS]
        parts.append(f"{other} {ours / theirs:.2f}")
    return f"{label}: " + ", ".join(parts)


def report(names: Sequence[str], cases: Sequence[Case], best: dict[str, list[float]], markdown: bool) -> None:
    """Print a matrix and the two ratio lines per case."""
    for i, case in enumerate(cases):
        rate = {(c, s): best[f"{c} -> {s}"][i] for c in names for s in names}
        print(f"\n{'### ' if markdown else ''}{case_label(case)}: msg/s, rows client, columns server\n")
        body = [[c, *(fmt_rate(rate[c, s]) for s in names)] for c in names]
        print(render(["client \\ server", *names], body, markdown))
        lines = [
            ratios(f"{OURS} client × {THEIRS} client, against server", names, rate, by_client=True),
            ratios(f"{OURS} server × {THEIRS} server, under client", names, rate, by_client=False),
        ]
        print("\n" + "\n".join(f"{'- ' if markdown else ''}{line}" for line in lines if line))


def main(argv: Sequence[str] | None = None) -> None:
    """Run every client against every server and print the matrices."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.cross", description=__doc__.splitlines()[0])
    p.add_argument("--libs", help="a subset of the asyncio rows (default: all five)")
    add_args(p, "16,1024")
    args = p.parse_args(argv)
    cases = finish_args(args, "16,1024")
    libs = [lib for lib in all_libs() if lib.group == "asyncio"]
    if args.libs:
        wanted = args.libs.split(",")
        unknown = set(wanted) - {lib.name for lib in libs}
        if unknown:
            raise SystemExit(f"unknown libraries: {', '.join(sorted(unknown))}")
        libs = [lib for lib in libs if lib.name in wanted]
    best = measure([pair(c, s) for c in libs for s in libs], cases, args)
    report([lib.name for lib in libs], cases, best, args.markdown)


if __name__ == "__main__":
    main()
