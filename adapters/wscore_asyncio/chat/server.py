"""The classic WebSocket chat on `wscore_asyncio`, and the page it serves from the same port.

    wscore chat --port 8080        # or: python -m wscore_asyncio.chat --port 8080

- `/` answers the page (`index.html`) through `process_request`: plain HTTP, no upgrade.
- `/ws` is the WebSocket: each client gets a name (`?name=alice`, else `guest-N`), every text message
  is relayed to the others as "name: text", joins and leaves are announced as "* ...", followed by
  the member list ("* online: alice, bob") sent to everyone. "/name bob" renames the sender.
- Fan-out goes through `broadcast()`: the frame is encoded once, and a client whose write buffer is
  full is skipped rather than awaited, so one slow reader never stalls the room.
- Every event goes through a hub (`Hub`): in-process by default; with `--redis redis://...` the
  room spans every process on that Redis (`wscore chat --workers 4 --redis ...`, see `_workers.py`),
  and each client is told which worker serves it ("* served by worker 2 (pid N)").
- Ctrl-C (SIGINT) or SIGTERM stops the server cleanly: every client gets close code 1001.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from wscore_asyncio import (
    Hub,
    HubMessage,
    HubUnavailable,
    Request,
    Server,
    WebSocket,
    WSMsgType,
    broadcast,
    serve,
)

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,24}")
NAME_RULE = "a name is 1 to 24 letters, digits, '_', '.' or '-'"
CHANNEL = "wscore-chat"
"""The hub channel every process of the chat publishes its events on (see `ChatRoom`)."""
RENAME = "/name "
"""A text message starting with this renames its sender instead of being relayed."""

HTTPResponse = tuple[int, list[tuple[str, str]], bytes]


def page() -> bytes:
    """The browser page, read from the installed package (a wheel ships it as package data)."""
    return files("wscore_asyncio.chat").joinpath("index.html").read_bytes()


class ChatRoom:
    """The room: who is connected to this process under which name, the two hooks `serve()` calls,
    and the hub traffic that makes one room of many processes.

    Everything a client says or does goes through the hub on `CHANNEL` as a small JSON event, and
    each process fans it out to its own clients with `broadcast()` (encoded once per process):
    `{"type": "say", "text": ..., "skip": id}` (relay a line to all but its sender),
    `{"type": "members", "worker": w, "names": [...]}` (the names worker `w` holds; the member list is
    every worker's, in worker order), `{"type": "hello", "worker": w}` (a process that starts or
    reconnects asks every other one for its members). In-process, the hub delivers as it publishes,
    so one process behaves exactly as without a hub.
    """

    def __init__(self, page: bytes, hub: Hub, worker: int | None = None) -> None:
        self.members: dict[WebSocket, str] = {}
        self.worker = worker
        self._hub = hub
        self._page = page
        self._guests = itertools.count(1)
        self._ids: dict[WebSocket, str] = {}
        self._next_id = itertools.count(1)
        self._key = str(worker or 0)
        self._presence: dict[str, list[str]] = {}
        self._announced: list[str] | None = None

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

    # -- the room of every process -------------------------------------------------------------

    def everyone(self) -> list[str]:
        """Every member's name, this process's from `members`, the others' from their last report."""
        names: list[str] = []
        for key in sorted({*self._presence, self._key}, key=int):
            names += list(self.members.values()) if key == self._key else self._presence[key]
        return names

    def on_event(self, msg: HubMessage) -> None:
        """A hub event (see the class docstring), from any process, this one included."""
        event = json.loads(msg.data)
        kind = event.get("type")
        if kind == "say":
            skip = event.get("skip")
            broadcast([ws for ws in self.members if self._ids[ws] != skip], event["text"])
        elif kind == "members":
            if event["worker"] != self._key:
                self._presence[event["worker"]] = list(event["names"])
            self._announce_members()
        elif kind == "hello" and event["worker"] != self._key:
            self._presence.pop(event["worker"], None)  # a restarted worker starts empty
            asyncio.get_running_loop().create_task(self._publish_members())

    async def _publish(self, event: dict[str, object]) -> bool:
        try:
            await self._hub.publish(CHANNEL, json.dumps(event))
        except HubUnavailable:
            return False
        return True

    async def _publish_members(self) -> None:
        await self._publish({"type": "members", "worker": self._key, "names": list(self.members.values())})

    async def hello(self) -> None:
        """On start and after the hub reconnects: tell the others, who answer with their members."""
        await self._publish({"type": "hello", "worker": self._key})
        await self._publish_members()

    def _announce_members(self) -> None:
        # Names cannot contain ", " (see _NAME), so the page splits this line safely.
        names = self.everyone()
        if names != self._announced:
            self._announced = names
            broadcast(self.members, "* online: " + ", ".join(names))

    async def _say(self, ws: WebSocket | None, text: str) -> None:
        skip = None if ws is None else self._ids[ws]
        if not await self._publish({"type": "say", "text": text, "skip": skip}) and ws is not None:
            await ws.send_str("* not delivered: the other servers are unreachable (reconnecting)")

    # -- one client ----------------------------------------------------------------------------

    def _unique(self, wanted: str, ws: WebSocket | None = None) -> str:
        """`wanted` if it is free (or already `ws`'s), else `wanted-2`, `wanted-3`, ..."""
        mine = self.members.get(ws) if ws is not None else None
        taken = set(self.everyone()) - ({mine} if mine is not None else set())
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted}-{n}", n + 1
        return name

    def _name_for(self, request: Request | None) -> str:
        wanted = ""
        if request is not None:
            wanted = parse_qs(urlsplit(request.target).query).get("name", [""])[0]
        if not _NAME.fullmatch(wanted):
            wanted = f"guest-{self._key + '.' if self.worker else ''}{next(self._guests)}"
        return self._unique(wanted)

    async def _rename(self, ws: WebSocket, wanted: str) -> None:
        if not _NAME.fullmatch(wanted):
            await ws.send_str(f"* {NAME_RULE}")
            return
        old, new = self.members[ws], self._unique(wanted, ws)
        if new == old:
            return
        self.members[ws] = new
        await ws.send_str(f"* you are {new} ({len(self.everyone())} online)")
        await self._say(ws, f"* {old} is now {new}")
        await self._publish_members()

    async def handler(self, ws: WebSocket) -> None:
        """One client's life: welcome, announce, relay (or rename) until it leaves."""
        name = self._name_for(ws.request)
        self.members[ws] = name
        self._ids[ws] = f"{self._key}:{next(self._next_id)}"
        try:
            if self.worker is not None:
                await ws.send_str(f"* served by worker {self.worker} (pid {os.getpid()})")
            await ws.send_str(f"* you are {name} ({len(self.everyone())} online)")
            await self._say(ws, f"* {name} joined")
            await self._publish_members()
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    if msg.data.startswith(RENAME):
                        await self._rename(ws, msg.data[len(RENAME) :].strip())
                        continue
                    await self._say(ws, f"{self.members[ws]}: {msg.data}")
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_str("* binary messages are not relayed")
        finally:
            name = self.members.pop(ws)
            await self._say(None, f"* {name} left")
            del self._ids[ws]
            await self._publish_members()


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
    hub_url: str | None = None,
    worker: int | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve the chat until SIGINT/SIGTERM (or cancellation), then close every client with 1001.

    `hub_url` (redis://...) joins the room of every process on that Redis; `worker` is this
    process's number under `wscore chat --workers N` (shown to its clients); `reuse_port` lets the
    workers share the port (SO_REUSEPORT)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = [sig for sig in (signal.SIGINT, signal.SIGTERM) if _on_signal(loop, sig, stop.set)]
    tasks: set[asyncio.Task[None]] = set()
    try:
        async with Hub(hub_url) as hub:
            room = ChatRoom(page(), hub, worker)

            def reconnected() -> None:  # what was said meanwhile is lost; the member lists are not
                task = loop.create_task(room.hello())
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            hub.on_reconnect.append(reconnected)
            async with hub.listen(CHANNEL, room.on_event):
                await room.hello()
                async with serve(
                    room.handler,
                    host,
                    port,
                    process_request=room.process_request,
                    origins=_origins(host),
                    reuse_port=reuse_port,
                ) as server:
                    url = _url(host, server.port)
                    print(f"chat demo: open {url} in a browser (Ctrl-C to stop)", flush=True)
                    if started is not None:
                        started(server)
                    await stop.wait()
                    print(
                        f"stopping: closing {len(room.members)} connection(s) with 1001 (going away)",
                        flush=True,
                    )
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
    parser.add_argument(
        "--redis", metavar="URL", help="share the room through Redis pub/sub (redis://host:port)"
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.host, args.port, hub_url=args.redis))
    except HubUnavailable as exc:
        print(f"chat: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"chat: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # where signal handlers are unavailable
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
