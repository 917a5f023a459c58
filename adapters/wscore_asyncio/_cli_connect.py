"""`wscore connect URL`: check the URL, open the connection (TLS included), then run the session.

Every way opening can fail is one line (`CommandError`): a bad URL (with a hint for `http://` or a
missing scheme), a name that does not resolve, a refused connection, a timeout, a TLS failure, a
refused upgrade with its status and the first line of its body.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import os
import socket
import ssl
import sys
from typing import Any

from _wscore_kit.api import parse_url
from wscore import HandshakeError, WSTimeoutError

from ._cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CommandError, ssl_text, until_signal, warn
from ._cli_session import Printer, run_session
from ._client import connect
from ._connection import WebSocket

__all__ = ["DEFAULT_WAIT", "run_connect"]

DEFAULT_WAIT = 1.0
"""Piped input: seconds of quiet after the last line sent or message received before closing."""


def _url_hint(url: str) -> str:
    """A suggestion for a URL that is not ws:// or wss:// ("" when there is none to make)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"did you mean 'ws://{url}'?"
    if scheme.lower() == "http":
        return f"did you mean 'ws://{rest}'?"
    if scheme.lower() == "https":
        return f"did you mean 'wss://{rest}'?"
    return ""


def _check_url(url: str) -> None:
    try:
        parse_url(url)
    except ValueError as exc:
        hint = _url_hint(url) if "scheme" in str(exc) else ""
        raise CommandError(f"{exc} ({hint})" if hint else str(exc), EXIT_USAGE) from None


def _client_tls(cafile: str | None, insecure: bool) -> ssl.SSLContext:
    """The TLS context of a wss:// connection: default verification, `cafile`'s CAs, or none at all."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False  # before verify_mode: a context that checks names refuses CERT_NONE
        context.verify_mode = ssl.CERT_NONE
    elif cafile is not None:
        try:
            context.load_verify_locations(cafile)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(f"cannot load --cafile: {ssl_text(exc)}", EXIT_USAGE) from None
    return context


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


async def _open(args: argparse.Namespace, stop: asyncio.Event) -> WebSocket:
    """Connect as `args` say; a `CommandError` for every way that can fail, Ctrl-C included."""
    url = parse_url(args.url)
    where = f"{url.host}:{url.port}"
    options: dict[str, Any] = {
        "protocols": args.subprotocol,
        "headers": args.header,
        "heartbeat": args.heartbeat,
        "autoping": False,  # the session answers pings itself, so that --verbose can show them
        "compress": 15 if args.compress else 0,
        "open_timeout": args.open_timeout,
    }
    if url.secure:
        options["ssl"] = _client_tls(args.cafile, args.insecure)
        if args.insecure:
            warn(f"warning: --insecure: the certificate of {where} is not verified (no CA, no host name)")
    try:
        connecting = connect(args.url, **options)
    except (ValueError, TypeError) as exc:  # e.g. a --header the handshake owns, or one given twice
        raise CommandError(str(exc), EXIT_USAGE) from None
    opening = asyncio.ensure_future(connecting)
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
        return opening.result()
    except HandshakeError as exc:
        raise CommandError(_refusal(exc)) from None
    except ssl.SSLError as exc:  # before ValueError: SSLCertVerificationError is both
        raise CommandError(f"TLS handshake with {where} failed: {ssl_text(exc)}") from None
    except ValueError as exc:  # e.g. a header value h11 will not send
        raise CommandError(str(exc), EXIT_USAGE) from None
    except socket.gaierror as exc:
        raise CommandError(f"cannot resolve {url.host!r}: {exc.strerror or exc}") from None
    except (WSTimeoutError, TimeoutError) as exc:
        raise CommandError(f"timed out connecting to {where}: {exc}") from None
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CommandError(f"cannot connect to {where}: {why}") from None


async def _open_and_run(args: argparse.Namespace, stop: asyncio.Event) -> int:
    ws = await _open(args, stop)
    interactive = sys.stdin.isatty()
    extras = [f"subprotocol {ws.protocol}"] if ws.protocol else []
    if ws.core.deflate is not None:
        extras.append("permessage-deflate")
    details = f" ({', '.join(extras)})" if extras else ""
    if interactive:
        then = "type messages, Ctrl-D to close"
    else:
        then = f"sending standard input, then closing after {args.wait:g} s without messages"
    warn(f"connected to {args.url}{details}; {then}")
    printer = Printer(as_json=args.json, verbose=args.verbose)
    return await run_session(ws, stop, printer, interactive=interactive, wait=args.wait)


def run_connect(args: argparse.Namespace) -> int:
    """`wscore connect`: the exit status (0 after a clean close, 1 on failure, 130 after Ctrl-C)."""
    _check_url(args.url)
    status = EXIT_OK

    async def run(stop: asyncio.Event) -> None:
        nonlocal status
        status = await _open_and_run(args, stop)

    asyncio.run(until_signal(run))
    return status
