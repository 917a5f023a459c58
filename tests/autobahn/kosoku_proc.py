"""kosoku in a child process, for the Autobahn runs of the trio and anyio adapters.

kosoku's API needs asyncio; the adapters under test may run on trio. A child process also keeps the
fuzzer's CPU work off our interpreter's GIL. Protocol on stdout: in `fuzzingserver` mode one line
`PORT <n>` once listening; in both modes, finally one line of JSON: a list of
`[case_id, behavior, behavior_close, passed]`. When a case fails, the HTML/JSON reports are written to
OUTDIR.

    python -m tests.autobahn.kosoku_proc fuzzingclient URL CASES PARALLEL OUTDIR
    python -m tests.autobahn.kosoku_proc fuzzingserver CASES OUTDIR
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from kosoku import FailureError, run_fuzzingclient, run_fuzzingserver
from kosoku._report import write_reports


def _cases(arg: str) -> list[str] | None:
    return [c for c in arg.split(",") if c] or None


def _emit(results: Sequence[Any], outdir: str) -> None:
    if not all(r.passed for r in results):
        write_reports(list(results), outdir)
    rows = [[r.case_id, r.behavior.value, r.behavior_close.value, r.passed] for r in results]
    print(json.dumps(rows), flush=True)


async def _fuzzingclient(url: str, cases: str, parallel: str, outdir: str) -> None:
    try:
        results = await run_fuzzingclient(url, _cases(cases), None, concurrency=int(parallel))
    except FailureError as exc:
        results = exc.results
    _emit(results, outdir)


async def _fuzzingserver(cases: str, outdir: str) -> None:
    async with run_fuzzingserver(_cases(cases), None, host="127.0.0.1", port=0) as server:
        print(f"PORT {server.port}", flush=True)
        try:
            results = await server.get_result()
        except FailureError as exc:
            results = exc.results
    _emit(results, outdir)


def main(argv: list[str]) -> None:
    """Run one kosoku role as described in the module docstring."""
    if argv[0] == "fuzzingclient":
        asyncio.run(_fuzzingclient(*argv[1:5]))
    else:
        asyncio.run(_fuzzingserver(*argv[1:3]))
    # kosoku's native runtime sometimes aborts (SIGABRT) while the interpreter finalizes, after the
    # results line is out (seen in about 1 run in 3). The results are complete here, so skip teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
