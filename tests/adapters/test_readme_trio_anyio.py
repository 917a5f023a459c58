"""The README's trio and anyio examples run as written (the anyio one on both backends)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- section: trio-anyio (owner: trio/anyio adapters) -->", 1)[1]
    section = section.split("<!-- /section -->", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_trio_example_runs() -> None:
    trio_example = _examples()[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(trio_example, "README.md", "exec"), {})
    assert out.getvalue().splitlines() == ["/room: hello"]


def test_the_anyio_example_runs_on_both_backends() -> None:
    anyio_example = _examples()[1]
    assert "anyio.run(main)  " in anyio_example
    both = anyio_example.replace("anyio.run(main)  ", 'anyio.run(main); anyio.run(main, backend="trio")  ')
    exec(compile(both, "README.md", "exec"), {})
