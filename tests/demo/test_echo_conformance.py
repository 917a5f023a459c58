"""`wscore echo`, the process a user starts, against the Autobahn TestSuite's fuzzing client (kosoku).

tests/autobahn runs every case against the same handler in-process; this runs the framing, UTF-8,
close-handshake and a compression group against the command line's server, as shipped.
"""

from __future__ import annotations

import pytest
from kosoku import FailureError, run_fuzzingclient

from .helpers import run, serving

pytestmark = [
    pytest.mark.autobahn,
    pytest.mark.timeout(600),
    # kosoku's case 12/13 setup leaves its test-data files to the garbage collector: its leak, not ours.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <_io\.FileIO name='[^']*/kosoku/"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*", "12.1.*"]


def test_wscore_echo_passes_autobahn_cases(unused_port: int) -> None:
    url = f"ws://127.0.0.1:{unused_port}"

    async def main() -> list[str]:
        async with serving("echo", "--port", str(unused_port), ready=f"echo server on {url}/") as server:
            try:
                results = await run_fuzzingclient(url, CASES, None, concurrency=2)
            except FailureError as exc:
                results = exc.results
            server.interrupt()
            assert await server.finish() == 0, server.output
        assert len(results) >= 250, f"only {len(results)} cases ran"
        return [f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value}" for r in results if not r.passed]

    failed = run(main(), timeout=580)
    assert not failed, f"{len(failed)} cases failed:\n" + "\n".join(failed[:50])
