"""Every ```python block in README.md is a complete program, and runs as it stands.

The convention the README follows:

- A block runs to its end by itself (a server and its client in one program, on a free port) and
  exits with status 0, printing something or asserting something (its own `assert` statements are
  its checks), with no traceback and no warning: the test runs it with `-X dev -W error` in a
  temporary directory, outside the checkout.
- A block right after `<!-- readme-test: serves PORT -->` is a server that runs until Ctrl-C on
  127.0.0.1:PORT (as a reader would start it). The test runs it with a free port in place of PORT,
  waits until the port accepts, pipes two lines through `wscore connect` and expects both echoes,
  then sends SIGINT and expects a clean exit.
- Text that is not a program (shell commands, their output, diagrams) is in ```sh, ```console or
  ``` blocks, which this test leaves alone.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
WSCORE = [sys.executable, "-m", "wscore_asyncio"]
TIMEOUT = 60

BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<directive>[^>]*?) -->\n)?```python\n(?P<code>.*?)^```", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    serves: int | None  # the port of a `serves PORT` block


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        directive = match.group("directive")
        serves = None
        if directive is not None:
            words = directive.split()
            assert len(words) == 2 and words[0] == "serves" and words[1].isdigit(), directive
            serves = int(words[1])
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append(Block(line, match.group("code"), serves))
    return blocks


BLOCKS = readme_blocks()


def test_the_readme_has_its_examples() -> None:
    """The regular expression finds every block (a change of fence style would skip them silently)."""
    text = README.read_text(encoding="utf-8")
    assert len(BLOCKS) == text.count("```python\n") >= 9
    assert [b for b in BLOCKS if b.serves is not None], "the uvicorn example is a server"


def _write(block: Block, tmp_path: Path, port: int | None = None) -> Path:
    code = block.code
    if block.serves is not None:
        assert str(block.serves) in code, f"README.md:{block.line}: `serves {block.serves}` but no such port"
        code = code.replace(str(block.serves), str(port))
    program = tmp_path / f"readme_{block.line}.py"
    program.write_text(code, encoding="utf-8")
    return program


def _command(program: Path) -> list[str]:
    return [sys.executable, "-X", "dev", "-W", "error", str(program)]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.serves is None], ids=lambda b: f"line{b.line}")
def test_a_block_runs_to_its_end(block: Block, tmp_path: Path) -> None:
    program = _write(block, tmp_path)
    result = subprocess.run(
        _command(program), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    where = f"README.md:{block.line}"
    assert result.returncode == 0, f"{where} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, f"{where}:\n{result.stderr}"
    assert result.stdout.strip() or "assert " in block.code, f"{where} neither prints nor checks anything"


def _wait_for_port(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # sleep-ok: polling interval: the loop waits for the port, not for the time
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.serves is not None], ids=lambda b: f"line{b.line}")
def test_a_server_block_serves(block: Block, tmp_path: Path) -> None:
    port = free_port()
    program = _write(block, tmp_path, port)
    log = (tmp_path / "server.log").open("w+", encoding="utf-8")
    server = subprocess.Popen(
        _command(program), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for_port(port, server)
        client = subprocess.run(
            [*WSCORE, "connect", f"ws://127.0.0.1:{port}/"],
            input="a\nb\n",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == ["< text: a", "< text: b"], client.stdout
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=TIMEOUT) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.seek(0)
        output = log.read()
        log.close()
    assert "Traceback" not in output and "Warning" not in output, output


def test_blocks_use_only_the_loopback_interface() -> None:
    for block in BLOCKS:
        assert "0.0.0.0" not in block.code, f"README.md:{block.line}: examples listen on 127.0.0.1"
