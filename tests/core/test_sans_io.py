"""The core is sans-I/O: importing it loads no event loop, socket, TLS or thread module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("asyncio", "trio", "anyio", "socket", "ssl", "selectors", "threading")
ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
import wscore, wscore.adapter, wscore.client, wscore.server, wscore.connection, wscore.extensions
assert wscore.__file__.startswith(sys.argv[1]), wscore.__file__
print(json.dumps(sorted(sys.modules)))
"""


def test_import_wscore_pulls_in_no_io_module() -> None:
    """`import wscore` in a fresh interpreter loads none of the I/O libraries (DESIGN: "imports no
    asyncio, trio, anyio, socket, ssl, threading")."""
    out = subprocess.run(
        [sys.executable, "-E", "-c", _PROBE, str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    loaded = json.loads(out)
    assert "wscore.connection" in loaded  # the probe really imported the core
    offenders = [m for m in loaded if m.split(".")[0].lstrip("_") in FORBIDDEN]
    assert offenders == []
