"""The chat demo (`wscore chat`) as a black box: its page, its protocol, its clean shutdown."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import wscore_asyncio
from wscore import ClientConnection
from wscore_asyncio import HandshakeError, WSMsgType, connect

from .helpers import run, serving, wscore


def _get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    try:
        request = urllib.request.Request(url, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            length = response.headers.get("Content-Length", "")
            if method == "HEAD":
                return response.status, length, response.read()
            body = response.read()
            assert length == str(len(body))
            return response.status, response.headers.get("Content-Type", ""), body
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_chat_relays_announces_and_shuts_down_with_1001(unused_port: int) -> None:
    base = f"http://127.0.0.1:{unused_port}/"
    ws_url = f"ws://127.0.0.1:{unused_port}/ws"

    async def main() -> None:
        async with serving("chat", "--port", str(unused_port), ready=f"open {base} in a browser") as server:
            # The page comes from the same port, through process_request.
            status, ctype, body = await asyncio.to_thread(_get, base)
            assert (status, ctype) == (200, "text/html; charset=utf-8")
            assert b"new WebSocket(" in body and b"server disconnected" in body
            assert await asyncio.to_thread(_get, base, "HEAD") == (200, str(len(body)), b"")
            status, _, _ = await asyncio.to_thread(_get, base + "missing")
            assert status == 404

            alice = await connect(ws_url + "?name=alice")
            bob = await connect(ws_url)
            try:
                assert await alice.receive_str() == "* you are alice (1 online)"
                assert await alice.receive_str() == "* online: alice"
                assert await bob.receive_str() == "* you are guest-1 (2 online)"
                assert await bob.receive_str() == "* online: alice, guest-1"
                assert await alice.receive_str() == "* guest-1 joined"
                assert await alice.receive_str() == "* online: alice, guest-1"

                await bob.send_str("hello, room")
                assert await alice.receive_str() == "guest-1: hello, room"
                await alice.send_str("hi guest-1")
                # The sender does not get its own message back: the next thing bob sees is alice's.
                assert await bob.receive_str() == "alice: hi guest-1"

                # The interactive client is a third member; its Ctrl-D is a leave.
                async with wscore("connect", ws_url + "?name=carol") as carol:
                    await carol.expect("< text: * you are carol (3 online)")
                    await carol.expect("< text: * online: alice, guest-1, carol")
                    for ws in (alice, bob):
                        assert await ws.receive_str() == "* carol joined"
                        assert await ws.receive_str() == "* online: alice, guest-1, carol"
                    await carol.send("from the terminal")
                    assert await alice.receive_str() == "carol: from the terminal"
                    assert await bob.receive_str() == "carol: from the terminal"
                    assert await carol.finish() == 0, carol.output
                for ws in (alice, bob):
                    assert await ws.receive_str() == "* carol left"
                    assert await ws.receive_str() == "* online: alice, guest-1"

                # Ctrl-C: every client gets 1001, the server exits 0.
                server.interrupt()
                for ws in (alice, bob):
                    msg = await ws.receive()
                    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "server shutting down")
                assert await server.finish() == 0, server.output
                assert "stopping: closing 2 connection(s) with 1001 (going away)" in server.stdout
                assert server.stdout[-1] == "chat demo stopped"
                assert not server.stderr, server.output
            finally:
                await alice.close()
                await bob.close()
            assert alice.close_code == bob.close_code == 1001

    run(main())


def test_names_the_member_list_and_renaming(unused_port: int) -> None:
    """?name= is honoured (made unique, or a guest name when it is not a valid name); every join,
    leave and rename sends the member list to everyone; "/name NEW" renames its sender."""
    ws_url = f"ws://127.0.0.1:{unused_port}/ws"

    async def main() -> None:
        async with serving("chat", "--port", str(unused_port), ready="in a browser"):
            alice = await connect(ws_url + "?name=alice")
            second = await connect(ws_url + "?name=alice")
            guest = await connect(ws_url + "?name=not%20a%20name")
            try:
                assert [await alice.receive_str() for _ in range(2)] == [
                    "* you are alice (1 online)",
                    "* online: alice",
                ]
                assert [await second.receive_str() for _ in range(2)] == [
                    "* you are alice-2 (2 online)",
                    "* online: alice, alice-2",
                ]
                assert await guest.receive_str() == "* you are guest-1 (3 online)"
                for ws in (alice, second, guest):
                    while (text := await ws.receive_str()) != "* online: alice, alice-2, guest-1":
                        assert text in ("* alice-2 joined", "* guest-1 joined", "* online: alice, alice-2")

                await second.send_str("/name bob")
                assert await second.receive_str() == "* you are bob (3 online)"
                for ws in (alice, guest):
                    assert await ws.receive_str() == "* alice-2 is now bob"
                for ws in (alice, second, guest):
                    assert await ws.receive_str() == "* online: alice, bob, guest-1"
                await second.send_str("now as bob")
                assert await alice.receive_str() == "bob: now as bob"
                assert await guest.receive_str() == "bob: now as bob"

                # A taken name is made unique; an invalid one is refused, to the sender only.
                await guest.send_str("/name bob")
                assert await guest.receive_str() == "* you are bob-2 (3 online)"
                assert await alice.receive_str() == "* guest-1 is now bob-2"
                await guest.send_str("/name two words")
                assert await guest.receive_str() == "* online: alice, bob, bob-2"
                assert await guest.receive_str() == "* a name is 1 to 24 letters, digits, '_', '.' or '-'"

                await guest.close()
                for ws in (alice, second):
                    while (text := await ws.receive_str()) != "* bob-2 left":
                        assert text in ("* guest-1 is now bob-2", "* online: alice, bob, bob-2")
                    assert await ws.receive_str() == "* online: alice, bob"
            finally:
                for ws in (alice, second, guest):
                    await ws.close()

    run(main())


def test_the_chat_refuses_pages_of_other_sites(unused_port: int) -> None:
    """origins=: a page of another site (cross-site WebSocket hijacking) gets 403; the chat's own page
    (by its address or localhost) and clients without Origin are admitted."""
    ws_url = f"ws://127.0.0.1:{unused_port}/ws"

    async def main() -> None:
        async with serving("chat", "--port", str(unused_port), ready="in a browser"):
            try:
                await connect(ws_url, origin="https://evil.example")
            except HandshakeError as exc:
                assert exc.status == 403
            else:
                raise AssertionError("a foreign origin was admitted")
            for origin in (f"http://127.0.0.1:{unused_port}", f"http://localhost:{unused_port}", None):
                async with connect(ws_url, origin=origin) as ws:
                    assert (await ws.receive_str()).startswith("* you are ")

    run(main())


def test_connect_client_sees_the_chat_server_go_away(unused_port: int) -> None:
    base = f"http://127.0.0.1:{unused_port}/"

    async def main() -> None:
        async with serving("chat", "--port", str(unused_port), ready=f"open {base}") as server:
            async with wscore("connect", f"ws://127.0.0.1:{unused_port}/ws") as client:
                await client.expect("< text: * you are guest-1")
                server.interrupt()
                assert await client.expect("< close") == "< close 1001: server shutting down"
                assert await client.finish() == 0, client.output
                assert "closed: code 1001 server shutting down" in client.stderr
            assert await server.finish() == 0, server.output

    run(main())


def test_a_client_that_stops_reading_does_not_stall_the_room(unused_port: int) -> None:
    """Fan-out skips a connection whose buffers are full instead of waiting for it: the others get
    every message, the stalled one misses some, and the server still shuts down cleanly."""
    count, size = 128, 64 * 1024  # 8 MiB in all: more than the kernel buffers a stalled socket absorbs
    base = f"http://127.0.0.1:{unused_port}/"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with serving("chat", "--port", str(unused_port), ready=f"open {base}") as server:
            # The stalled client: a raw socket with a tiny receive buffer that reads nothing for now.
            stalled = ClientConnection(f"127.0.0.1:{unused_port}", "/ws?name=stalled")
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", unused_port))
                await loop.sock_sendall(sock, stalled.data_to_send())

                sender = await connect(f"ws://127.0.0.1:{unused_port}/ws?name=sender")
                reader = await connect(f"ws://127.0.0.1:{unused_port}/ws?name=reader")
                try:
                    assert (await sender.receive_str()).startswith("* you are sender")
                    assert (await reader.receive_str()).startswith("* you are reader")
                    assert await reader.receive_str() == "* online: stalled, sender, reader"
                    assert await sender.receive_str() == "* online: stalled, sender"
                    assert await sender.receive_str() == "* reader joined"
                    assert await sender.receive_str() == "* online: stalled, sender, reader"
                    for i in range(count):
                        # One message in flight at a time, so the reader itself is never behind.
                        text = f"{i:04d}" + "x" * (size - 4)
                        await sender.send_str(text)
                        assert await reader.receive_str() == f"sender: {text}"
                    server.interrupt()  # every connection gets 1001, the stalled one behind its backlog
                    assert (await reader.receive()).data == 1001
                    assert (await sender.receive()).data == 1001
                finally:
                    await sender.close()
                    await reader.close()

                # Now the stalled client reads everything that was kept for it, then the close.
                received: list[int] = []
                close_code = None
                while close_code is None:
                    data = await loop.sock_recv(sock, 1 << 20)
                    assert data, "EOF before the close frame"
                    stalled.receive_data(data)
                    for msg in stalled.events():
                        if msg.type is WSMsgType.TEXT and msg.data.startswith("sender: "):
                            received.append(int(msg.data[8:12]))
                        elif msg.type is WSMsgType.CLOSE:
                            close_code = msg.data
                await loop.sock_sendall(sock, stalled.data_to_send())  # answer the close
            assert close_code == 1001
            assert received == sorted(received), "messages arrive in order, with gaps"
            assert 0 < len(received) < count, f"the stalled client got {len(received)} of {count}"
            assert await server.finish() == 0, server.output

    run(main())


CHAT_SERVER = Path(wscore_asyncio.__file__).with_name("chat") / "server.py"


@pytest.mark.parametrize(
    "command",
    [["-m", "wscore_asyncio.chat"], [str(CHAT_SERVER)]],
    ids=["python -m wscore_asyncio.chat", "python .../chat/server.py"],
)
def test_the_demo_runs_with_python_alone(command: list[str], unused_port: int) -> None:
    """`python -m wscore_asyncio.chat` is the same demo, and so is `python path/to/chat/server.py`
    for readers who start from the file."""

    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            "--port",
            str(unused_port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        interrupted = False
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line.decode().startswith(f"chat demo: open http://127.0.0.1:{unused_port}/")
            status, ctype, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{unused_port}/")
            assert (status, ctype) == (200, "text/html; charset=utf-8")
            assert b"new WebSocket(" in body
            async with connect(f"ws://127.0.0.1:{unused_port}/ws") as ws:
                assert await ws.receive_str() == "* you are guest-1 (1 online)"
                assert await ws.receive_str() == "* online: guest-1"
                proc.send_signal(signal.SIGINT)
                interrupted = True
                msg = await ws.receive()
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
        finally:
            if not interrupted:
                proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        assert out.decode().splitlines()[-1] == "chat demo stopped"

    run(main())
