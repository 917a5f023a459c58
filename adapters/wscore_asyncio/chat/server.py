"""The classic WebSocket chat on `wscore_asyncio`, and the page it serves from the same port.

    wscore chat --port 8080        # or: python -m wscore_asyncio.chat --port 8080

- `/` answers the page (`index.html`) through `process_request`: plain HTTP, no upgrade.
- `/ws` is the WebSocket: each client gets a name (`?name=alice`, else `guest-N`), every text message
  is relayed to the others as "name: text", joins and leaves are announced as "* ...", followed by
  the member list ("* online: alice, bob") sent to everyone. "/name bob" renames the sender.
- Fan-out goes through `broadcast()`: the frame is encoded once, and a client whose write buffer is
  full is skipped rather than awaited, so one slow reader never stalls the room.
- Ctrl-C (SIGINT) or SIGTERM stops the server cleanly: every client gets close code 1001.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import signal
import sys
from collections.abc import Callable
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from wscore_asyncio import Request, Server, WebSocket, WSMsgType, broadcast, serve

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,24}")
NAME_RULE = "a name is 1 to 24 letters, digits, '_', '.' or '-'"
RENAME = "/name "
"""A text message starting with this renames its sender instead of being relayed."""

HTTPResponse = tuple[int, list[tuple[str, str]], bytes]


def page() -> bytes:
    """The browser page, read from the installed package (a wheel ships it as package data)."""
    return files("wscore_asyncio.chat").joinpath("index.html").read_bytes()


class ChatRoom:
    """The room: who is connected under which name, and the two hooks `serve()` calls."""

    def __init__(self, page: bytes) -> None:
        self.members: dict[WebSocket, str] = {}
        self._page = page
        self._guests = itertools.count(1)

    def process_request(self, request: Request) -> HTTPResponse | None:
        """Serve the page at `/`, upgrade at `/ws`, 404 for the rest."""
        if request.path == "/ws":
            return None  # the core answers a non-WebSocket request here with 400/426
        if request.path in ("/", "/index.html") and request.method in ("GET", "HEAD"):
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(self._page))),  # also for HEAD, which gets no body
                ("Cache-Control", "no-store"),
            ]
            return 200, headers, self._page if request.method == "GET" else b""
        return 404, [], b"not found: the page is at / and the WebSocket at /ws\n"

    def _unique(self, wanted: str, ws: WebSocket | None = None) -> str:
        """`wanted` if it is free (or already `ws`'s), else `wanted-2`, `wanted-3`, ..."""
        taken = {name for member, name in self.members.items() if member is not ws}
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted}-{n}", n + 1
        return name

    def _name_for(self, request: Request | None) -> str:
        wanted = ""
        if request is not None:
            wanted = parse_qs(urlsplit(request.target).query).get("name", [""])[0]
        if not _NAME.fullmatch(wanted):
            wanted = f"guest-{next(self._guests)}"
        return self._unique(wanted)

    def _announce_members(self) -> None:
        # Names cannot contain ", " (see _NAME), so the page splits this line safely.
        broadcast(self.members, "* online: " + ", ".join(self.members.values()))

    async def _rename(self, ws: WebSocket, wanted: str) -> None:
        if not _NAME.fullmatch(wanted):
            await ws.send_str(f"* {NAME_RULE}")
            return
        old, new = self.members[ws], self._unique(wanted, ws)
        if new == old:
            return
        self.members[ws] = new
        await ws.send_str(f"* you are {new} ({len(self.members)} online)")
        broadcast([m for m in self.members if m is not ws], f"* {old} is now {new}")
        self._announce_members()

    async def handler(self, ws: WebSocket) -> None:
        """One client's life: welcome, announce, relay (or rename) until it leaves."""
        name = self._name_for(ws.request)
        others = list(self.members)
        self.members[ws] = name
        try:
            await ws.send_str(f"* you are {name} ({len(self.members)} online)")
            broadcast(others, f"* {name} joined")
            self._announce_members()
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    if msg.data.startswith(RENAME):
                        await self._rename(ws, msg.data[len(RENAME) :].strip())
                        continue
                    name = self.members[ws]
                    broadcast([m for m in self.members if m is not ws], f"{name}: {msg.data}")
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_str("* binary messages are not relayed")
        finally:
            name = self.members.pop(ws)
            broadcast(self.members, f"* {name} left")
            self._announce_members()


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals, callback: Callable[[], None]) -> bool:
    try:
        loop.add_signal_handler(sig, callback)
    except (NotImplementedError, RuntimeError):  # Windows, or not the main thread: KeyboardInterrupt
        return False
    return True


def _origins(host: str) -> list[str | re.Pattern[str] | None]:
    """Who may open the chat's WebSocket: pages from this server (by any loopback name or the host
    it listens on, any port) and clients that send no Origin (the `wscore connect` CLI). A page of
    another site open in the same browser is refused with 403 (cross-site WebSocket hijacking)."""
    names = {"localhost", "127.0.0.1", "[::1]", f"[{host}]" if ":" in host else host}
    pattern = "|".join(re.escape(name) for name in sorted(names))
    return [re.compile(rf"https?://({pattern})(:[0-9]+)?"), None]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def run(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    started: Callable[[Server], None] | None = None,
) -> None:
    """Serve the chat until SIGINT/SIGTERM (or cancellation), then close every client with 1001."""
    room = ChatRoom(page())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = [sig for sig in (signal.SIGINT, signal.SIGTERM) if _on_signal(loop, sig, stop.set)]
    try:
        async with serve(
            room.handler, host, port, process_request=room.process_request, origins=_origins(host)
        ) as server:
            print(f"chat demo: open {_url(host, server.port)} in a browser (Ctrl-C to stop)", flush=True)
            if started is not None:
                started(server)
            await stop.wait()
            print(f"stopping: closing {len(room.members)} connection(s) with 1001 (going away)", flush=True)
            await server.close(1001, "server shutting down")
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    print("chat demo stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m wscore_asyncio.chat [--host H] [--port P]`; the exit status."""
    parser = argparse.ArgumentParser(description="The wscore chat demo (a page at /, the WebSocket at /ws).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.host, args.port))
    except OSError as exc:
        print(f"chat: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # where signal handlers are unavailable
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
