"""`wscore connect` once connected: standard input to the WebSocket, the WebSocket to standard output.

Interactive (stdin is a terminal): each line typed is sent; Ctrl-D closes at once. Piped (anything
else): every line is sent, then the session waits for the replies until the server closes or nothing
has arrived for `wait` seconds, and only then closes with 1000, so `printf 'a\\nb\\n' | wscore connect`
prints the echoes instead of dropping them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import threading
from collections import Counter
from typing import Any

from wscore import ConnectionClosed, WSMessage, WSMsgType

from ._cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, warn
from ._connection import WebSocket

__all__ = ["Printer", "run_session"]

COMMANDS = "/ping, /binary, /close, //text"


class Printer:
    """Prints each message received: a line ("< text: hi") or, with `as_json`, one JSON object.

    Pings and pongs are shown only when `verbose`, except the pong that answers a `/ping` typed by
    the user (which asked to see it).
    """

    def __init__(self, *, as_json: bool = False, verbose: bool = False) -> None:
        self.as_json = as_json
        self.verbose = verbose
        self._asked: Counter[bytes] = Counter()  # payloads of typed pings not answered yet

    def pinged(self, data: bytes) -> None:
        """Note a ping the user typed, so that its pong is shown."""
        self._asked[data] += 1

    def message(self, msg: WSMessage) -> None:
        """Print `msg` if it is to be shown."""
        if msg.type is WSMsgType.PONG and self._asked[bytes(msg.data)] > 0:
            self._asked[bytes(msg.data)] -= 1
        elif msg.type in (WSMsgType.PING, WSMsgType.PONG) and not self.verbose:
            return
        text = self._json(msg) if self.as_json else self._line(msg)
        if text is not None:
            print(text, flush=True)

    @staticmethod
    def _line(msg: WSMessage) -> str | None:
        kind = msg.type
        if kind is WSMsgType.TEXT:
            return f"< text: {msg.data}"
        if kind is WSMsgType.BINARY:
            return f"< binary ({len(msg.data)} bytes): {bytes(msg.data).hex()}"
        if kind in (WSMsgType.PING, WSMsgType.PONG):
            return f"< {kind.name.lower()}: {bytes(msg.data).decode('utf-8', 'backslashreplace')}"
        if kind is WSMsgType.CLOSE:
            return f"< close {msg.data}: {msg.extra}" if msg.extra else f"< close {msg.data}"
        return None

    @staticmethod
    def _json(msg: WSMessage) -> str | None:
        kind = msg.type
        obj: dict[str, Any]
        if kind is WSMsgType.TEXT:
            obj = {"type": "text", "data": msg.data}
        elif kind in (WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
            obj = {"type": kind.name.lower(), "data": base64.b64encode(bytes(msg.data)).decode("ascii")}
        elif kind is WSMsgType.CLOSE:
            obj = {"type": "close", "code": msg.data, "reason": msg.extra or ""}
        else:
            return None
        # ASCII with \u escapes: valid JSON whatever the encoding of stdout.
        return json.dumps(obj)


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (portable across ttys, pipes and files; it never blocks exit)."""

    def read() -> None:
        while True:
            line = sys.stdin.readline()
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line or None)
            except RuntimeError:  # the loop is gone: we are exiting
                return
            if not line:
                return

    threading.Thread(target=read, name="wscore-stdin", daemon=True).start()


def _parse_close(rest: str) -> tuple[int, str]:
    code_text, _, reason = rest.strip().partition(" ")
    if not code_text:
        return 1000, ""
    try:
        code = int(code_text)
    except ValueError:
        raise ValueError(f"{code_text!r} is not a close code") from None
    return code, reason.strip()


async def _typed(ws: WebSocket, line: str, printer: Printer) -> tuple[int, str] | None:
    """Act on one line of input; `(code, reason)` when it asks to close."""
    if line.startswith("//") or not line.startswith("/"):
        await ws.send_str(line[1:] if line.startswith("//") else line)
        return None
    command, _, rest = line.partition(" ")
    try:
        if command == "/ping":
            data = rest.encode("utf-8")
            await ws.ping(data)
            printer.pinged(data)
        elif command == "/binary":
            await ws.send_bytes(rest.encode("utf-8"))
        elif command == "/close":
            return _parse_close(rest)
        else:
            warn(f"unknown command {command!r}: {COMMANDS}")
    except ValueError as exc:  # a ping over 125 bytes, a close code that is not a number
        warn(f"cannot do that: {exc}")
    return None


async def run_session(
    ws: WebSocket, stop: asyncio.Event, printer: Printer, *, interactive: bool, wait: float
) -> int:
    """Relay stdin to `ws` and `ws` to stdout until either side closes; the exit status.

    Three tasks: one receives and prints, one reads input lines (and, piped, waits for the replies
    after the last one), one waits for Ctrl-C. Only this function calls `close()`, so no close
    handshake is ever cancelled halfway.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _stdin_lines(loop, lines)
    last_message = loop.time()  # when the last text or binary message was sent or received

    async def receiving() -> None:
        nonlocal last_message
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):  # not pings: a heartbeat never goes quiet
                last_message = loop.time()
            if msg.type is WSMsgType.PING:  # autoping is off so that pings can be shown
                with contextlib.suppress(ConnectionClosed):
                    await ws.pong(msg.data)
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            printer.message(msg)

    async def quiet() -> None:
        """Return once `wait` seconds pass without a message (sleeps, rather than wait_for() on an
        event: wait_for() can swallow a cancellation that races with the event, Python < 3.12)."""
        nonlocal last_message
        last_message = max(last_message, loop.time())  # the last line was just sent
        while (left := last_message + wait - loop.time()) > 0:
            await asyncio.sleep(left)

    async def typing() -> tuple[int, str] | None:
        try:
            while True:
                line = await lines.get()
                if line is None:  # end of input: Ctrl-D, or the end of a pipe or file
                    if not interactive:
                        await quiet()
                    return 1000, ""
                close = await _typed(ws, line.rstrip("\r\n"), printer)
                if close is not None:
                    return close
        except ConnectionClosed:
            return None  # the server closed while we were sending: `receiving` reports it

    async def interrupted() -> tuple[int, str]:
        await stop.wait()
        return 1001, "client interrupted"

    receiver = asyncio.create_task(receiving())
    closers = [asyncio.create_task(typing()), asyncio.create_task(interrupted())]
    we_closed = False
    try:
        done, _ = await asyncio.wait([receiver, *closers], return_when=asyncio.FIRST_COMPLETED)
        for task in closers:
            request = task.result() if task in done else None
            # ws.closed: the server's close came first (Ctrl-D typed right after it is no close of ours).
            if request is not None and not we_closed and not ws.closed:
                we_closed = True
                try:
                    await ws.close(code=request[0], message=request[1].encode("utf-8"))
                except ValueError as exc:  # an invalid close code: close with 1000 instead
                    warn(f"cannot close with {request[0]}: {exc}")
                    await ws.close(code=1000)
        await receiver  # ends once the connection is closed
    finally:
        for task in [receiver, *closers]:
            task.cancel()
        await asyncio.gather(receiver, *closers, return_exceptions=True)
    code, error = ws.close_code, ws.exception()
    if error is not None and not we_closed:
        warn(f"connection lost: {error} (code {code})")
        return EXIT_FAILED
    reason = f" {ws.close_reason}" if ws.close_reason else ""
    warn(f"closed: code {code}{reason}")
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_OK if we_closed or code in (1000, 1001) else EXIT_FAILED
