"""What the `wscore` commands share: exit statuses, the one-line error, Ctrl-C handling, TLS error text."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "CommandError",
    "listen_error",
    "ssl_text",
    "until_signal",
    "warn",
]

PROG = "wscore"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CommandError(Exception):
    """A failure to report as one line (`wscore <command>: <message>`) with a non-zero exit."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def warn(text: str) -> None:
    """One line on stderr, flushed at once (it may interleave with a session's output)."""
    print(text, file=sys.stderr, flush=True)


async def until_signal(start: Callable[[asyncio.Event], Awaitable[None]]) -> None:
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


def listen_error(host: str, port: int, exc: OSError) -> CommandError:
    """The one-line error of a server that cannot bind."""
    return CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def ssl_text(exc: BaseException) -> str:
    """A TLS or file error in a few words (OpenSSL's reason, not its whole tuple)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    return str(exc)
