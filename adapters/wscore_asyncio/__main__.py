"""The `wscore` command line: `wscore chat`, `wscore echo`, `wscore connect URL`.

Every failure a user can cause (a bad URL, a refused connection, a TLS or handshake failure, a port
in use) is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import Callable, Sequence

import wscore
from _wscore_kit.hub import HubUnavailable

from ._cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CommandError,
    listen_error,
    ssl_text,
    until_signal,
    warn,
)
from ._cli_connect import DEFAULT_WAIT, run_connect
from ._server import Server, echo
from ._workers import echo_worker, reserve_port, supervise, worker_argv
from .chat import server as chat

__all__ = ["build_parser", "main"]


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


def _seconds_or_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} must be 0 seconds or more")
    return value


CONNECT_HELP = """\
Each line of standard input is sent as a text message; each message received is printed with its
type ("< text: ...", "< binary (N bytes): <hex>", "< close CODE[: REASON]"), or with --json as one
JSON object per line: {"type": "text", "data": "..."}, {"type": "binary", "data": "<base64>"},
{"type": "close", "code": 1000, "reason": "..."} (and "ping"/"pong" with base64 data, --verbose).
Pings are answered automatically; pings and pongs are printed only with --verbose, except the pong
of a /ping.

Typed at a terminal, Ctrl-D closes at once. Piped or redirected (stdin is not a terminal), every
line is sent, then the client waits for the replies: until the server closes, or until --wait
seconds (default: 1) pass without a message, when it closes with 1000.
    printf 'a\\nb\\n' | wscore connect ws://127.0.0.1:9001/

Commands (in either mode):
  /ping [DATA]           send a ping (its pong is printed)
  /binary TEXT           send TEXT (UTF-8) as a binary message
  /close [CODE [REASON]] close with CODE (default 1000) and REASON, then exit
  //text                 send "/text" as a text message
  Ctrl-D                 end of input (see above); Ctrl-C closes with 1001

Exit status: 0 after a clean close (ours, or the server's with 1000/1001); 1 if the connection failed,
dropped, or the server closed with another code; 2 for bad arguments; 130 after Ctrl-C.
"""


def _workers_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers") from None
    if not 1 <= count <= 256:
        raise argparse.ArgumentTypeError(f"{count} workers: use 1 to 256")
    return count


def _add_workers(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--workers",
        metavar="N",
        type=_workers_count,
        help="run N processes sharing the port (SO_REUSEPORT); a worker that dies is restarted",
    )
    command.add_argument("--worker-id", type=int, help=argparse.SUPPRESS)  # set by the parent for each worker


def _run_workers(args: argparse.Namespace, worker_args: list[str], ready_text: str, banner: str) -> int:
    """`--workers N`: reserve the port, run N workers of this command on it (see `_workers`)."""
    sock, port = reserve_port(args.host, args.port)
    status = [EXIT_OK]
    with sock:
        worker_args = [*worker_args, "--host", args.host, "--port", str(port)]
        url_host = f"[{args.host}]" if ":" in args.host else args.host

        async def run(stop: asyncio.Event) -> None:
            status[0] = await supervise(
                args.workers,
                lambda number: worker_argv(args.command, worker_args, number),
                ready_text=ready_text,
                banner=banner.format(host=url_host, port=port),
                stop=stop,
            )

        asyncio.run(until_signal(run))
    return status[0]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `wscore` and its three commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="wscore: WebSocket tools on the wscore_asyncio adapter (a chat demo, an echo "
        "server, an interactive client).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {wscore.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = commands.add_parser(
        "chat",
        help="run the chat demo (a page at /, the WebSocket at /ws)",
        description="Run the chat demo: open the printed URL in two browser tabs. Ctrl-C stops it "
        "and closes every client with 1001.",
    )
    chat.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    chat.add_argument("--port", type=_port, default=8080, help="port to listen on (default: %(default)s)")
    chat.add_argument(
        "--redis",
        metavar="URL",
        help="share the room with every process on this Redis (redis://host:port; the `redis` extra)",
    )
    _add_workers(chat)

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
    _add_workers(echo_cmd)

    client = commands.add_parser(
        "connect",
        help="a client, interactive or piped",
        description="Connect to a ws:// or wss:// URL and chat with it from the terminal or a script.",
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
    trust = client.add_mutually_exclusive_group()
    trust.add_argument("--cafile", metavar="PEM", help="trust the CA certificates in PEM (wss://)")
    trust.add_argument(
        "--insecure",
        action="store_true",
        help="wss:// without verifying the certificate or the host name (self-signed test servers)",
    )
    client.add_argument(
        "--wait",
        metavar="S",
        type=_seconds_or_zero,
        default=DEFAULT_WAIT,
        help="piped input: close after S seconds without a message once all is sent (default: %(default)g)",
    )
    client.add_argument(
        "--json", action="store_true", help="print each message received as one JSON object per line"
    )
    client.add_argument("-v", "--verbose", action="store_true", help="also print pings and pongs")
    client.add_argument(
        "--open-timeout",
        metavar="S",
        type=_seconds,
        default=10.0,
        help="bound on TCP connect + TLS + handshake (default: %(default)s)",
    )
    return parser


# -- wscore chat -----------------------------------------------------------------------------------


def _chat(args: argparse.Namespace) -> int:
    if args.workers is not None and args.worker_id is None:
        if args.redis is None:
            warn(f"{PROG} chat: --workers without --redis: each worker is a room of its own")
        return _run_workers(
            args,
            [] if args.redis is None else ["--redis", args.redis],
            ready_text="chat demo: open",
            banner=f"chat demo: {args.workers} workers on http://{{host}}:{{port}}/, open it in a browser "
            "(Ctrl-C to stop)",
        )
    worker = args.worker_id
    try:
        asyncio.run(  # it handles SIGINT/SIGTERM itself
            chat.run(args.host, args.port, hub_url=args.redis, worker=worker, reuse_port=worker is not None)
        )
    except HubUnavailable as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise listen_error(args.host, args.port, exc) from None
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
        raise CommandError(f"cannot load the TLS certificate/key: {ssl_text(exc)}") from None
    return context


def _echo(args: argparse.Namespace) -> int:
    context = _server_tls(args.tls_cert, args.tls_key)
    scheme = "wss" if context is not None else "ws"
    host = f"[{args.host}]" if ":" in args.host else args.host
    if args.workers is not None and args.worker_id is None:
        tls = [] if args.tls_cert is None else ["--tls-cert", args.tls_cert]
        tls += [] if args.tls_key is None else ["--tls-key", args.tls_key]
        return _run_workers(
            args,
            tls,
            ready_text="echo server on",
            banner=f"echo server on {scheme}://{{host}}:{{port}}/ with {args.workers} workers "
            "(Ctrl-C to stop)",
        )

    def started(server: Server) -> None:
        print(f"echo server on {scheme}://{host}:{server.port}/ (Ctrl-C to stop)", flush=True)

    async def serve(stop: asyncio.Event) -> None:
        if args.worker_id is None:
            task = asyncio.create_task(echo(args.host, args.port, ssl=context, started=started))
        else:
            task = asyncio.create_task(echo_worker(args.host, args.port, ssl=context, started=started))
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        task.cancel()  # echo() closes every connection with 1001 on its way out
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(until_signal(serve))
    except OSError as exc:
        raise listen_error(args.host, args.port, exc) from None
    print("echo server stopped", flush=True)
    return EXIT_OK


# -- entry point -----------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "chat": _chat,
    "echo": _echo,
    "connect": run_connect,
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
