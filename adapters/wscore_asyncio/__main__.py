"""The `wscore` command line: `wscore chat`, `wscore echo`, `wscore connect URL`.

Every failure a user can cause (a bad URL, a refused connection, a TLS or handshake failure, a port
in use) is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from _wscore_kit.api import parse_url
from wscore import ConnectionClosed, HandshakeError, WSMessage, WSMsgType, WSTimeoutError

from ._client import connect
from ._connection import WebSocket
from ._server import Server, echo
from .chat import server as chat

__all__ = ["main"]

PROG = "wscore"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CommandError(Exception):
    """A failure to report as one line (`wscore <command>: <message>`) with a non-zero exit."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


# -- argument parsing ------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a header: use NAME:VALUE")
    return name.strip(), value.strip()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


CONNECT_HELP = """\
Each line typed is sent as a text message; each message received is printed with its type
("< text: ...", "< binary (N bytes): <hex>", "< ping: ...", "< pong: ...", "< close CODE[: REASON]").
Pings from the server are answered automatically (and shown).

Commands:
  /ping [DATA]           send a ping (the pong is printed)
  /binary TEXT           send TEXT (UTF-8) as a binary message
  /close [CODE [REASON]] close with CODE (default 1000) and REASON, then exit
  //text                 send "/text" as a text message
  Ctrl-D                 close with 1000 and exit; Ctrl-C closes with 1001

Exit status: 0 after a clean close (ours, or the server's with 1000/1001); 1 if the connection failed,
dropped, or the server closed with another code; 2 for bad arguments; 130 after Ctrl-C.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `wscore` and its three commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="wscore: WebSocket tools on the wscore_asyncio adapter (a chat demo, an echo "
        "server, an interactive client).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser(
        "chat",
        help="run the chat demo (a page at /, the WebSocket at /ws)",
        description="Run the chat demo: open the printed URL in two browser tabs. Ctrl-C stops it "
        "and closes every client with 1001.",
    )
    chat.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    chat.add_argument("--port", type=_port, default=8080, help="port to listen on (default: %(default)s)")

    echo_cmd = commands.add_parser(
        "echo",
        help="run an echo server",
        description="Run a WebSocket echo server on any path: every text and binary message is sent "
        "back; permessage-deflate is accepted; messages up to 64 MiB. Ctrl-C stops it (1001).",
    )
    echo_cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    echo_cmd.add_argument("--port", type=_port, default=9001, help="port to listen on (default: %(default)s)")
    echo_cmd.add_argument("--tls-cert", metavar="PEM", help="certificate chain to serve wss:// with")
    echo_cmd.add_argument(
        "--tls-key", metavar="PEM", help="its private key (default: read from the --tls-cert file)"
    )

    client = commands.add_parser(
        "connect",
        help="an interactive client",
        description="Connect to a ws:// or wss:// URL and chat with it from the terminal.",
        epilog=CONNECT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    client.add_argument("url", metavar="URL", help="ws://host[:port]/path or wss://...")
    client.add_argument(
        "--header",
        metavar="K:V",
        type=_header,
        action="append",
        default=[],
        help="extra request header (repeatable)",
    )
    client.add_argument(
        "--subprotocol",
        metavar="P",
        action="append",
        default=[],
        help="offer subprotocol P (repeatable, in order of preference)",
    )
    client.add_argument(
        "--heartbeat",
        metavar="S",
        type=_seconds,
        help="ping after S idle seconds; drop the connection if no pong comes within S/2",
    )
    client.add_argument("--compress", action="store_true", help="offer permessage-deflate")
    client.add_argument("--cafile", metavar="PEM", help="trust the CA certificates in PEM (wss://)")
    client.add_argument(
        "--open-timeout",
        metavar="S",
        type=_seconds,
        default=10.0,
        help="bound on TCP connect + TLS + handshake (default: %(default)s)",
    )
    return parser


# -- running until Ctrl-C --------------------------------------------------------------------------


async def _until_signal(start: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `start(stop)`, with SIGINT/SIGTERM setting `stop` instead of raising KeyboardInterrupt."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        await start(stop)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def _listen_error(host: str, port: int, exc: OSError) -> CommandError:
    return CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


# -- wscore chat -----------------------------------------------------------------------------------


def _chat(args: argparse.Namespace) -> int:
    try:
        asyncio.run(chat.run(args.host, args.port))  # it handles SIGINT/SIGTERM itself
    except OSError as exc:
        raise _listen_error(args.host, args.port, exc) from None
    return EXIT_OK


# -- wscore echo -----------------------------------------------------------------------------------


def _server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None:
        raise CommandError("--tls-key needs --tls-cert", EXIT_USAGE)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot load the TLS certificate/key: {_ssl_text(exc)}") from None
    return context


def _echo(args: argparse.Namespace) -> int:
    context = _server_tls(args.tls_cert, args.tls_key)
    scheme = "wss" if context is not None else "ws"
    host = f"[{args.host}]" if ":" in args.host else args.host

    def started(server: Server) -> None:
        print(f"echo server on {scheme}://{host}:{server.port}/ (Ctrl-C to stop)", flush=True)

    async def serve(stop: asyncio.Event) -> None:
        task = asyncio.create_task(echo(args.host, args.port, ssl=context, started=started))
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        task.cancel()  # echo() closes every connection with 1001 on its way out
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(_until_signal(serve))
    except OSError as exc:
        raise _listen_error(args.host, args.port, exc) from None
    print("echo server stopped", flush=True)
    return EXIT_OK


# -- wscore connect --------------------------------------------------------------------------------


def _ssl_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    return str(exc)


def _show(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _print_message(msg: WSMessage) -> None:
    kind = msg.type
    if kind is WSMsgType.TEXT:
        line = f"< text: {msg.data}"
    elif kind is WSMsgType.BINARY:
        line = f"< binary ({len(msg.data)} bytes): {bytes(msg.data).hex()}"
    elif kind is WSMsgType.PING:
        line = f"< ping: {_show(msg.data)}"
    elif kind is WSMsgType.PONG:
        line = f"< pong: {_show(msg.data)}"
    elif kind is WSMsgType.CLOSE:
        line = f"< close {msg.data}: {msg.extra}" if msg.extra else f"< close {msg.data}"
    else:
        return
    print(line, flush=True)


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


async def _typed(ws: WebSocket, line: str) -> tuple[int, str] | None:
    """Act on one typed line; `(code, reason)` when it asks to close."""
    if line.startswith("//") or not line.startswith("/"):
        await ws.send_str(line[1:] if line.startswith("//") else line)
        return None
    command, _, rest = line.partition(" ")
    try:
        if command == "/ping":
            await ws.ping(rest.encode("utf-8"))
        elif command == "/binary":
            await ws.send_bytes(rest.encode("utf-8"))
        elif command == "/close":
            return _parse_close(rest)
        else:
            print(f"unknown command {command!r}: /ping, /binary, /close, //text", file=sys.stderr, flush=True)
    except ValueError as exc:  # a ping over 125 bytes, a close code that is not a number
        print(f"cannot do that: {exc}", file=sys.stderr, flush=True)
    return None


async def _session(ws: WebSocket, stop: asyncio.Event) -> int:
    """Relay stdin to `ws` and `ws` to stdout until either side closes; the exit status.

    Three tasks: one receives and prints, one reads typed lines, one waits for Ctrl-C. Only this
    function calls `close()`, so no close handshake is ever cancelled halfway.
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _stdin_lines(loop, lines)

    async def receiving() -> None:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.PING:
                with contextlib.suppress(ConnectionClosed):
                    await ws.pong(msg.data)
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            _print_message(msg)

    async def typing() -> tuple[int, str] | None:
        try:
            while True:
                line = await lines.get()
                if line is None:  # Ctrl-D
                    return 1000, ""
                close = await _typed(ws, line.rstrip("\r\n"))
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
                    print(f"cannot close with {request[0]}: {exc}", file=sys.stderr, flush=True)
                    await ws.close(code=1000)
        await receiver  # ends once the connection is closed
    finally:
        for task in [receiver, *closers]:
            task.cancel()
        await asyncio.gather(receiver, *closers, return_exceptions=True)
    code, error = ws.close_code, ws.exception()
    if error is not None and not we_closed:
        print(f"connection lost: {error} (code {code})", file=sys.stderr, flush=True)
        return EXIT_FAILED
    reason = f" {ws.close_reason}" if ws.close_reason else ""
    print(f"closed: code {code}{reason}", file=sys.stderr, flush=True)
    if stop.is_set():
        return EXIT_INTERRUPTED
    return EXIT_OK if we_closed or code in (1000, 1001) else EXIT_FAILED


def _client_tls(cafile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cafile is not None:
        try:
            context.load_verify_locations(cafile)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"cannot load --cafile: {_ssl_text(exc)}", EXIT_USAGE) from None
    return context


async def _open_and_run(args: argparse.Namespace, stop: asyncio.Event) -> int:
    url = parse_url(args.url)
    where = f"{url.host}:{url.port}"
    options: dict[str, Any] = {
        "protocols": args.subprotocol,
        "headers": args.header,
        "heartbeat": args.heartbeat,
        "autoping": False,  # pings and pongs are shown; _session answers pings
        "compress": 15 if args.compress else 0,
        "open_timeout": args.open_timeout,
    }
    if url.secure:
        options["ssl"] = _client_tls(args.cafile)
    opening = asyncio.ensure_future(connect(args.url, **options))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({opening, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not opening.done():
        opening.cancel()
        with contextlib.suppress(BaseException):
            await opening
        raise CommandError("interrupted while connecting", EXIT_INTERRUPTED)
    try:
        ws = opening.result()
    except HandshakeError as exc:
        raise CommandError(_refusal(exc)) from None
    except ssl.SSLError as exc:  # before ValueError: SSLCertVerificationError is both
        raise CommandError(f"TLS handshake with {where} failed: {_ssl_text(exc)}") from None
    except ValueError as exc:  # e.g. a header value h11 will not send
        raise CommandError(str(exc), EXIT_USAGE) from None
    except socket.gaierror as exc:
        raise CommandError(f"cannot resolve {url.host!r}: {exc.strerror or exc}") from None
    except (WSTimeoutError, TimeoutError) as exc:
        raise CommandError(f"timed out connecting to {where}: {exc}") from None
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CommandError(f"cannot connect to {where}: {why}") from None
    extras = [f"subprotocol {ws.protocol}"] if ws.protocol else []
    if ws.core.deflate is not None:
        extras.append("permessage-deflate")
    details = f" ({', '.join(extras)})" if extras else ""
    print(f"connected to {args.url}{details}; type messages, Ctrl-D to close", file=sys.stderr, flush=True)
    return await _session(ws, stop)


def _refusal(exc: HandshakeError) -> str:
    if exc.status is None or exc.status == 101:
        return f"handshake failed: {exc.reason}"
    try:
        phrase = http.HTTPStatus(exc.status).phrase
    except ValueError:
        phrase = ""
    body = exc.body.decode("utf-8", "replace").strip().splitlines()
    tail = f": {body[0][:200]}" if body else ""
    return f"server refused the WebSocket upgrade: HTTP {exc.status} {phrase}".rstrip() + tail


def _connect(args: argparse.Namespace) -> int:
    try:
        parse_url(args.url)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    status = EXIT_OK

    async def run(stop: asyncio.Event) -> None:
        nonlocal status
        status = await _open_and_run(args, stop)

    asyncio.run(_until_signal(run))
    return status


# -- entry point -----------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "chat": _chat,
    "echo": _echo,
    "connect": _connect,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run `wscore COMMAND ...`; the process's exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr, flush=True)
        return exc.status
    except KeyboardInterrupt:  # only where signal handlers are unavailable (Windows)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
