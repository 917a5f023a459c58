"""The core is sans-I/O: importing it loads no event loop, socket, TLS or thread module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("asyncio", "trio", "anyio", "socket", "ssl", "selectors", "threading")
ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import importlib, json, pkgutil, sys
import wscore
assert wscore.__file__.startswith(sys.argv[1]), wscore.__file__
# Every module of the package, not only what __init__ imports: driver.py too (the trio/anyio adapters'
# shared async driver is pure Python against an I/O-backend protocol).
for module in pkgutil.iter_modules(wscore.__path__):
    importlib.import_module("wscore." + module.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_import_wscore_pulls_in_no_io_module() -> None:
    """`import wscore` (and each of its modules) in a fresh interpreter loads none of the I/O
    libraries (DESIGN: "imports no asyncio, trio, anyio, socket, ssl, threading")."""
    out = subprocess.run(
        [sys.executable, "-E", "-c", _PROBE, str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    loaded = json.loads(out)
    assert {"wscore.connection", "wscore.client", "wscore.server"} <= set(loaded)  # it really ran
    offenders = [m for m in loaded if m.split(".")[0].lstrip("_") in FORBIDDEN]
    assert offenders == []
