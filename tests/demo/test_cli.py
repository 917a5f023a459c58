"""The `wscore` command line, run as real subprocesses: help, errors, the echo server, the client."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from wscore_asyncio import Request, WebSocket, WSMsgType, serve

from .helpers import WSCORE, Proc, run, serving, wscore


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WSCORE, *args], capture_output=True, text=True, timeout=60, check=False)


def _one_line_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The failure was reported as one line, not a traceback; return that line."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"wscore {command}: "), lines[0]
    return lines[0]


# -- help ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((), ["chat", "echo", "connect"]),
        (("chat",), ["--host", "--port", "default: 127.0.0.1", "default: 8080"]),
        (("echo",), ["--host", "--port", "--tls-cert", "--tls-key"]),
        (
            ("connect",),
            ["URL", "--header", "--subprotocol", "--heartbeat", "--compress", "/ping", "/close", "Ctrl-D"],
        ),
    ],
)
def test_help_describes_each_command(command: tuple[str, ...], expected: list[str]) -> None:
    result = _run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout, f"{text!r} missing from `wscore {' '.join(command)} --help`"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("wscore")
    assert script.exists(), "pip install -e . creates the `wscore` console script next to python"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "usage: wscore" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = _run_cli()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# -- errors: one line, non-zero --------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "ws://", "ws://host:99999/", "ws://h/#frag"])
def test_bad_url(url: str) -> None:
    result = _run_cli("connect", url)
    assert result.returncode == 2
    _one_line_error(result, "connect")


def test_bad_header_is_a_usage_error() -> None:
    result = _run_cli("connect", "ws://127.0.0.1/", "--header", "no-colon")
    assert result.returncode == 2
    assert "NAME:VALUE" in result.stderr
    assert "Traceback" not in result.stderr


def test_refused_connection(unused_port: int) -> None:
    result = _run_cli("connect", f"ws://127.0.0.1:{unused_port}/")
    assert result.returncode == 1
    line = _one_line_error(result, "connect")
    assert f"cannot connect to 127.0.0.1:{unused_port}" in line
    assert "refused" in line.lower()


def test_silent_server_times_out() -> None:
    with socket.socket() as silent:  # listens (the kernel completes TCP) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        result = _run_cli("connect", f"ws://127.0.0.1:{port}/", "--open-timeout", "0.3")
    assert result.returncode == 1
    line = _one_line_error(result, "connect")
    assert f"timed out connecting to 127.0.0.1:{port}" in line and "0.3 s" in line, line


@pytest.mark.parametrize("command", ["echo", "chat"])
def test_port_in_use(command: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run_cli(command, "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in _one_line_error(result, command)


def test_missing_tls_files(tmp_path: Path) -> None:
    result = _run_cli("echo", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "k"))
    assert result.returncode == 1
    assert "cannot load the TLS certificate/key" in _one_line_error(result, "echo")
    result = _run_cli("echo", "--tls-key", str(tmp_path / "k"))
    assert result.returncode == 2
    assert "--tls-key needs --tls-cert" in _one_line_error(result, "echo")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A server certificate+key for 127.0.0.1 (one PEM file) and the CA that signed it."""
    ca = trustme.CA()
    server = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, ca_file


def test_tls_echo_and_verification_failure(tls_files: tuple[Path, Path], unused_port: int) -> None:
    server_pem, ca_pem = tls_files
    url = f"wss://127.0.0.1:{unused_port}/"

    async def main() -> None:
        tls = ("--tls-cert", str(server_pem))  # the key is in the same file
        async with serving("echo", "--port", str(unused_port), *tls, ready=f"echo server on {url}"):
            # Without our CA the certificate does not verify: one line, exit 1.
            async with wscore("connect", url) as untrusted:
                assert await untrusted.finish() == 1, untrusted.output
            assert "Traceback" not in untrusted.output
            assert len(untrusted.stderr) == 1, untrusted.output
            assert f"TLS handshake with 127.0.0.1:{unused_port} failed" in untrusted.stderr[0]
            assert "certificate verify failed" in untrusted.stderr[0]
            # With it, wss:// works end to end.
            async with wscore("connect", url, "--cafile", str(ca_pem)) as client:
                await client.expect("connected to", stream="stderr")
                await client.send("over tls")
                await client.expect("< text: over tls")
                assert await client.finish() == 0, client.output

    run(main())


# -- the interactive client against `wscore echo` -------------------------------------------------


def test_interactive_session_with_echo(unused_port: int) -> None:
    url = f"ws://127.0.0.1:{unused_port}/"

    async def main() -> None:
        async with serving("echo", "--port", str(unused_port), ready=f"echo server on {url}") as server:
            async with wscore("connect", url, "--compress") as client:
                assert "permessage-deflate" in await client.expect("connected to", stream="stderr")
                await client.send("hello")
                assert await client.expect("< ") == "< text: hello"
                await client.send("/ping abc")
                assert await client.expect("< ") == "< pong: abc"
                await client.send("/binary hi")
                assert await client.expect("< ") == "< binary (2 bytes): 6869"
                await client.send("//slash")
                assert await client.expect("< ") == "< text: /slash"
                await client.send("/nonsense")
                await client.expect("unknown command", stream="stderr")
                await client.send("/close 4000 bye")
                # The echo server answers our close frame with the same code.
                assert await client.expect("closed:", stream="stderr") == "closed: code 4000"
                assert await client.finish() == 0, client.output
            # Ctrl-D closes with 1000.
            async with wscore("connect", url) as client:
                await client.expect("connected to", stream="stderr")
                assert await client.finish() == 0, client.output
                assert "closed: code 1000" in client.stderr
            # Ctrl-C on the server: a connected client is closed with 1001 and exits cleanly.
            async with wscore("connect", url) as client:
                await client.expect("connected to", stream="stderr")
                server.interrupt()
                assert await client.expect("< close") == "< close 1001"
                assert await client.finish() == 0, client.output
            assert await server.finish() == 0, server.output
            assert "echo server stopped" in server.stdout

    run(main())


# -- the client's options, observed by an in-process server ---------------------------------------


def test_connect_options_reach_the_server(unused_port: int) -> None:
    """--header, --subprotocol and --compress are in the request; --heartbeat sends pings; Ctrl-C
    closes with 1001; a server's close is printed with its code and reason."""
    seen: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    async def handler(ws: WebSocket) -> None:
        request = ws.request
        assert request is not None
        await ws.send_str(f"header={request.header('x-demo')} protocol={ws.protocol}")
        await ws.send_str(f"deflate={ws.core.deflate is not None}")
        async for msg in ws:
            if msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
                await ws.send_str("server saw a ping")
            elif msg.type is WSMsgType.TEXT and msg.data == "please close":
                await ws.close(code=4001, message="as you wish")
        await seen.put(("close", ws.close_code))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", unused_port, protocols=["chat.v2"], autoping=False):
            url = f"ws://127.0.0.1:{unused_port}/"
            args = ["--header", "X-Demo: 42", "--subprotocol", "chat.v1", "--subprotocol", "chat.v2"]
            async with wscore("connect", url, *args, "--compress", "--heartbeat", "0.2") as client:
                assert "(subprotocol chat.v2, permessage-deflate)" in await client.expect(
                    "connected to", stream="stderr"
                )
                assert await client.expect("< text: header") == "< text: header=42 protocol=chat.v2"
                assert await client.expect("< text: deflate") == "< text: deflate=True"
                # Nothing typed: the heartbeat pings after 0.2 s of silence and the pong is printed.
                await client.expect("< pong: ")
                await client.expect("< text: server saw a ping")
                client.interrupt()
                assert await client.finish(eof=False) == 130, client.output
            assert await asyncio.wait_for(seen.get(), 10) == ("close", 1001)

            async with wscore("connect", url) as client:
                await client.expect("connected to", stream="stderr")
                await client.send("please close")
                assert await client.expect("< close") == "< close 4001: as you wish"
                # A server-chosen code other than 1000/1001 is reported as a failure.
                assert await client.finish() == 1, client.output
                assert "closed: code 4001 as you wish" in client.stderr

    run(main())


def test_heartbeat_drops_a_server_that_stops_answering(unused_port: int) -> None:
    async def silent(ws: WebSocket) -> None:
        await ws.wait_closed()  # autoping is off and nothing reads: pings go unanswered

    async def main() -> Proc:
        async with (
            serve(silent, "127.0.0.1", unused_port, autoping=False),
            wscore("connect", f"ws://127.0.0.1:{unused_port}/", "--heartbeat", "0.2") as client,
        ):
            await client.expect("connected to", stream="stderr")
            line = await client.expect("connection lost", stream="stderr")
            assert "no pong within 0.1 s" in line and "code 1006" in line, line
            assert await client.finish() == 1, client.output
            return client

    assert "Traceback" not in run(main()).output


def test_refused_handshake_prints_status_and_reason(unused_port: int) -> None:
    def forbid(request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        return 403, [], b"no entry for you\n"

    async def handler(ws: WebSocket) -> None:
        raise AssertionError("the upgrade was refused; no handler should run")

    async def main() -> Proc:
        async with (
            serve(handler, "127.0.0.1", unused_port, process_request=forbid),
            wscore("connect", f"ws://127.0.0.1:{unused_port}/") as client,
        ):
            await client.finish()
            return client

    client = run(main())
    assert client.proc.returncode == 1
    assert client.stderr == [
        "wscore connect: server refused the WebSocket upgrade: HTTP 403 Forbidden: no entry for you"
    ]
