"""The chat demo (`wscore chat`) as a black box: its page, its protocol, its clean shutdown."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from wscore_asyncio import WSMsgType, connect

from .helpers import run, serving, wscore


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
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
            status, _, _ = await asyncio.to_thread(_get, base + "missing")
            assert status == 404

            alice = await connect(ws_url + "?name=alice")
            bob = await connect(ws_url)
            try:
                assert await alice.receive_str() == "* you are alice (1 online)"
                assert await bob.receive_str() == "* you are guest-1 (2 online)"
                assert await alice.receive_str() == "* guest-1 joined"

                await bob.send_str("hello, room")
                assert await alice.receive_str() == "guest-1: hello, room"
                await alice.send_str("hi guest-1")
                # The sender does not get its own message back: the next thing bob sees is alice's.
                assert await bob.receive_str() == "alice: hi guest-1"

                # The interactive client is a third member; its Ctrl-D is a leave.
                async with wscore("connect", ws_url + "?name=carol") as carol:
                    await carol.expect("< text: * you are carol (3 online)")
                    assert await alice.receive_str() == "* carol joined"
                    assert await bob.receive_str() == "* carol joined"
                    await carol.send("from the terminal")
                    assert await alice.receive_str() == "carol: from the terminal"
                    assert await bob.receive_str() == "carol: from the terminal"
                    assert await carol.finish() == 0, carol.output
                assert await alice.receive_str() == "* carol left"
                assert await bob.receive_str() == "* carol left"

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
