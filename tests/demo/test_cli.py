"""The `wscore` command line, run as real subprocesses: help, errors, the echo server, the client."""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import json
import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from wscore import __version__
from wscore_asyncio import Request, WebSocket, WSMsgType, serve

from .helpers import WSCORE, Proc, run, serving, wscore


def _run_cli(*args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    """`wscore ARGS...` with `input` piped to it (stdin is not a terminal)."""
    return subprocess.run(
        [*WSCORE, *args], input=input, capture_output=True, text=True, timeout=60, check=False
    )


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
            [
                *("URL", "--header", "--subprotocol", "--heartbeat", "--compress", "--insecure"),
                *("--wait S", "default: 1)", "--json", '{"type": "binary", "data": "<base64>"}'),
                *("--verbose", "/ping", "/close", "Ctrl-D", "Piped"),
            ],
        ),
    ],
)
def test_help_describes_each_command(command: tuple[str, ...], expected: list[str]) -> None:
    result = _run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout, f"{text!r} missing from `wscore {' '.join(command)} --help`"


def test_console_script_is_installed() -> None:
    # The distribution is `wscore-ws` (the index's `wscore` is another project); the script is `wscore`.
    dist = importlib.metadata.distribution("wscore-ws")
    assert dist.version == __version__
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"wscore": "wscore_asyncio.__main__:main"}
    script = Path(sys.executable).with_name("wscore")
    assert script.exists(), "pip install -e . creates the `wscore` console script next to python"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "usage: wscore" in result.stdout


def test_version() -> None:
    result = _run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wscore {__version__}\n"


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


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("http://127.0.0.1:9001/", "(did you mean 'ws://127.0.0.1:9001/'?)"),
        ("HTTPS://example.com/chat?x=1", "(did you mean 'wss://example.com/chat?x=1'?)"),
        ("127.0.0.1:9001/ws", "(did you mean 'ws://127.0.0.1:9001/ws'?)"),
        ("localhost:9001", "(did you mean 'ws://localhost:9001'?)"),
    ],
)
def test_a_web_url_or_no_scheme_gets_a_hint(url: str, hint: str) -> None:
    result = _run_cli("connect", url)
    assert result.returncode == 2
    line = _one_line_error(result, "connect")
    assert "is not a WebSocket URL" in line and line.endswith(hint), line


def test_no_hint_for_other_schemes() -> None:
    result = _run_cli("connect", "ftp://127.0.0.1/")
    assert result.returncode == 2
    assert "did you mean" not in _one_line_error(result, "connect")


def test_bad_header_is_a_usage_error() -> None:
    result = _run_cli("connect", "ws://127.0.0.1/", "--header", "no-colon")
    assert result.returncode == 2
    assert "NAME:VALUE" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        (["Upgrade: h2c"], "'Upgrade' belongs to the WebSocket handshake"),
        (["X-A: 1", "x-a: 2"], "'x-a' given twice"),
    ],
    ids=["owned", "twice"],
)
def test_a_header_connect_refuses_is_a_usage_error(headers: list[str], said: str) -> None:
    args = [arg for header in headers for arg in ("--header", header)]
    result = _run_cli("connect", "ws://127.0.0.1:1/", *args)
    assert result.returncode == 2
    assert said in _one_line_error(result, "connect")
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


# -- the client against `wscore echo`, line by line ------------------------------------------------


def test_session_with_echo_line_by_line(unused_port: int) -> None:
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
            async with wscore("connect", url, *args, "--compress", "--heartbeat", "0.2", "-v") as client:
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


# -- scripted use: piped input, --wait, --json, --verbose ------------------------------------------


def test_piped_input_prints_every_echo_then_closes_with_1000(unused_port: int) -> None:
    """`printf ... | wscore connect URL`: every line is sent, every echo printed, in order, and the
    client closes with 1000 once no more messages come (it used to close at end of input and drop them)."""
    url = f"ws://127.0.0.1:{unused_port}/"
    lines = [f"line {i}" for i in range(200)]

    async def main() -> None:
        async with serving("echo", "--port", str(unused_port), ready=f"echo server on {url}"):
            piped = "\n".join([*lines, "/binary hi", "/ping p"]) + "\n"
            result = await asyncio.to_thread(_run_cli, "connect", url, input=piped)
            assert result.returncode == 0, result.stderr
            got = result.stdout.splitlines()
            # The pong answers a control frame and may overtake the echoes; everything else is in order.
            assert sorted(got) == sorted(
                [*(f"< text: {line}" for line in lines), "< binary (2 bytes): 6869", "< pong: p"]
            )
            assert [line for line in got if line.startswith("< text")] == [
                f"< text: {line}" for line in lines
            ]
            assert result.stderr.splitlines()[-1] == "closed: code 1000", result.stderr
            assert "sending standard input" in result.stderr

    run(main())


def test_piped_input_waits_while_messages_keep_coming(unused_port: int) -> None:
    """--wait counts from the last message received: replies spaced by less than it all arrive,
    even when they span more than --wait in all; the server then sees our close with 1000."""
    closed: asyncio.Queue[int | None] = asyncio.Queue()

    async def slow(ws: WebSocket) -> None:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                for i in range(4):
                    await asyncio.sleep(0.5)  # sleep-ok: the pacing under test, not a synchronisation
                    await ws.send_str(f"{msg.data} {i}")
        await closed.put(ws.close_code)

    async def main() -> None:
        async with serve(slow, "127.0.0.1", unused_port):
            url = f"ws://127.0.0.1:{unused_port}/"
            result = await asyncio.to_thread(_run_cli, "connect", url, "--wait", "1.2", input="tick\n")
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == [f"< text: tick {i}" for i in range(4)]
            assert await asyncio.wait_for(closed.get(), 10) == 1000

    run(main())


def test_piped_input_ends_when_the_server_closes(unused_port: int) -> None:
    """A server that closes after its reply ends the session at once, whatever --wait says; its close
    code decides the exit status as documented."""

    async def reply_and_close(ws: WebSocket) -> None:
        msg = await ws.receive()
        await ws.send_str(f"got {msg.data}")
        await ws.close(code=1000 if msg.data == "fine" else 4002, message=b"done")

    async def main() -> None:
        async with serve(reply_and_close, "127.0.0.1", unused_port):
            url = f"ws://127.0.0.1:{unused_port}/"
            # --wait 60 would outlast the 60 s bound of _run_cli if the client waited for it.
            result = await asyncio.to_thread(_run_cli, "connect", url, "--wait", "60", input="fine\n")
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == ["< text: got fine", "< close 1000: done"]
            result = await asyncio.to_thread(_run_cli, "connect", url, "--wait", "60", input="bad\n")
            assert result.returncode == 1, result.stderr
            assert result.stdout.splitlines() == ["< text: got bad", "< close 4002: done"]
            assert "closed: code 4002 done" in result.stderr

    run(main())


def test_json_prints_one_object_per_message(unused_port: int) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.send_str('héllo "quoted"\nsecond line')
        await ws.send_bytes(b"\x00\xffbin")
        await ws.ping(b"\x01ping")
        async for msg in ws:
            if msg.type is WSMsgType.PING:  # autoping is off, so that the client's pong is seen here
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await ws.close(code=4001, message=b"as you wish")

    async def main() -> None:
        async with serve(handler, "127.0.0.1", unused_port, autoping=False):
            url = f"ws://127.0.0.1:{unused_port}/"
            quiet, verbose = await asyncio.gather(
                asyncio.to_thread(_run_cli, "connect", url, "--json", input="/ping me\nclose please\n"),
                asyncio.to_thread(_run_cli, "connect", url, "--json", "-v", input="/ping me\nclose please\n"),
            )
        expected = [
            {"type": "text", "data": 'héllo "quoted"\nsecond line'},
            {"type": "binary", "data": base64.b64encode(b"\x00\xffbin").decode()},
            {"type": "pong", "data": base64.b64encode(b"me").decode()},  # it answers our /ping
            {"type": "close", "code": 4001, "reason": "as you wish"},
        ]
        assert quiet.returncode == 1, quiet.stderr  # the server closed with 4001
        assert [json.loads(line) for line in quiet.stdout.splitlines()] == expected
        ping = {"type": "ping", "data": base64.b64encode(b"\x01ping").decode()}
        assert verbose.returncode == 1, verbose.stderr
        assert [json.loads(line) for line in verbose.stdout.splitlines()] == [
            *expected[:2],
            ping,
            *expected[2:],
        ]

    run(main())


def test_pings_and_pongs_are_shown_only_with_verbose(unused_port: int) -> None:
    """Heartbeat pongs and the server's pings are answered silently unless --verbose."""

    async def pinger(ws: WebSocket) -> None:
        await ws.ping(b"from server")
        await ws.send_str("pinged")
        await ws.wait_closed()

    async def main() -> tuple[Proc, Proc]:
        url = f"ws://127.0.0.1:{unused_port}/"
        async with serve(pinger, "127.0.0.1", unused_port):
            async with wscore("connect", url, "--heartbeat", "0.1", "--verbose") as loud:
                await loud.expect("< ping: from server")
                await loud.expect("< pong: ")  # a heartbeat's
                assert await loud.finish() == 0, loud.output
            async with wscore("connect", url, "--heartbeat", "0.1") as quiet:
                await quiet.expect("< text: pinged")
                # Several heartbeat rounds (0.1 s each) pass during the --wait after end of input.
                assert await quiet.finish() == 0, quiet.output
            return loud, quiet

    loud, quiet = run(main())
    assert quiet.stdout == ["< text: pinged"], quiet.output
    assert "< text: pinged" in loud.stdout


def test_a_terminal_closes_at_end_of_input_without_waiting(unused_port: int) -> None:
    """Typed at a terminal, Ctrl-D closes at once: --wait applies to piped input only."""
    url = f"ws://127.0.0.1:{unused_port}/"

    async def main() -> None:
        async with serving("echo", "--port", str(unused_port), ready=f"echo server on {url}"):
            controller, terminal = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *WSCORE,
                    "connect",
                    url,
                    "--wait",
                    "600",
                    stdin=terminal,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                client = Proc(proc)
                await client.expect("type messages, Ctrl-D to close", stream="stderr")
                os.write(controller, b"typed\n")
                await client.expect("< text: typed")
                os.write(controller, b"\x04")  # Ctrl-D at the start of a line: end of input
                assert await client.finish(eof=False) == 0, client.output
                assert client.stderr[-1] == "closed: code 1000", client.output
            finally:
                os.close(controller)
                os.close(terminal)

    run(main())


# -- wss:// with --insecure ------------------------------------------------------------------------


def test_insecure_connects_to_an_untrusted_server_with_a_warning(
    tls_files: tuple[Path, Path], unused_port: int
) -> None:
    server_pem, _ = tls_files  # the client is not given the CA
    url = f"wss://127.0.0.1:{unused_port}/"

    async def main() -> None:
        tls = ("--tls-cert", str(server_pem))
        async with serving("echo", "--port", str(unused_port), *tls, ready=f"echo server on {url}"):
            result = await asyncio.to_thread(_run_cli, "connect", url, "--insecure", input="unverified\n")
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == ["< text: unverified"]
            assert result.stderr.splitlines()[0] == (
                f"warning: --insecure: the certificate of 127.0.0.1:{unused_port} is not verified "
                "(no CA, no host name)"
            )
            # Without it, the same server is refused (test_tls_echo_and_verification_failure).
            both = await asyncio.to_thread(
                _run_cli, "connect", url, "--insecure", "--cafile", str(server_pem)
            )
            assert both.returncode == 2 and "not allowed with argument" in both.stderr

    run(main())
