"""The README's "Using the core directly" example runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_core_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- section: core (owner: core) -->", 1)[1].split("<!-- /section -->", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().splitlines() == [
        "/chat ['chat']",
        "[WSMessage(type=<WSMsgType.TEXT: 1>, data='HELLO', extra=None)]",
        "True 1000",
    ]
