"""The server path every adapter shares: answering the upgrade request, and the close code a handler's
outcome gets. Written once so that a HEAD request, a failing callback or a handler's error is treated
the same on every adapter.

- `answer_request`: `process_request` (a plain HTTP answer: page, health check, 403), the Origin
  check (`origins=`: 403), then the 101, or the core's refusal (400/426). A callback that raises or
  misbehaves (`process_request`, `select_subprotocol`, a response with a CR/LF in a header) is a 500
  for that request only, logged once; it never reaches the server's accept loop.
- `handler_close`: 1000 when the handler returned; 1011 when it raised (logged once), except for a
  `ConnectionClosed` about its own connection (the peer left: nothing to report). A
  `ConnectionClosed` from sending to *another* connection while its own is open is a handler failure.
  Cancellation (server shutdown) is 1001, decided by the adapter, which knows its cancellation.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from wscore import ConnectionClosed, HandshakeError, Request, ServerConnection, State

from .api import check_http_response

if TYPE_CHECKING:
    from .options import ServerOptions

__all__ = [
    "ConnectionLimit",
    "Origins",
    "ProcessRequest",
    "answer_request",
    "handler_close",
    "logger",
    "origin_allowed",
]

logger = logging.getLogger("wscore")

ProcessRequest = Callable[[Request], Any]
"""`process_request(request)` -> None (upgrade) or `(status, headers, body)` (answer with plain HTTP);
may be sync or async."""

_INTERNAL_ERROR = (500, [("Content-Type", "text/plain; charset=utf-8")], b"Internal Server Error\n")


async def answer_request(
    conn: ServerConnection,
    options: ServerOptions,
    now: Callable[[], float],
    full: Callable[[], bool] | None = None,
) -> bool:
    """Answer the upgrade request `conn` has received. True when it is accepted (OPEN, the 101 in
    `conn.data_to_send()`); False when `conn` holds a plain answer, a refusal or a 500 (then CLOSED,
    with `close_transport`), or went away meanwhile. Raises only the caller's cancellation."""
    request = conn.request
    assert request is not None
    try:
        response = None
        if options.process_request is not None:
            response = options.process_request(request)
            if inspect.isawaitable(response):
                response = await response
        if conn.state is not State.CONNECTING:
            return False  # the client went away (or the open timeout passed) meanwhile
        origins = options.origins
        if response is None and origins is not None and not origin_allowed(request, origins):
            origin = request.header("origin")
            logger.info("upgrade refused: Origin %r is not allowed (origins=)", origin)
            response = (403, [], f"Origin {origin!r} is not allowed\n")
        if response is None and full is not None and full():
            response = (503, [("Retry-After", "1")], "server at max_connections\n")
        if response is not None:
            conn.respond(*check_http_response(response))
            return False
        conn.accept(extra_headers=options.extra_headers, now=now())
    except HandshakeError as exc:
        logger.debug("upgrade refused: %s", exc)  # the core wrote the 400/426 with the reason
        return False
    except Exception:
        logger.exception("answering %s %s failed; answered 500", request.method, request.target)
        if conn.state is State.CONNECTING:
            conn.respond(*_INTERNAL_ERROR)
        return False
    return True


Origins = Sequence["str | re.Pattern[str] | None"]
"""`serve(origins=...)`: the Origin values admitted, as exact strings or compiled patterns (matched
whole); `None` in the list admits a request without an Origin header (a non-browser client)."""


def origin_allowed(request: Request, origins: Origins) -> bool:
    """Whether the request's Origin is in `origins` (the defence against cross-site WebSocket
    hijacking: a browser always sends the page's origin, RFC 6455 §10.2)."""
    origin = request.header("origin")
    for allowed in origins:
        if allowed is None:
            if origin is None:
                return True
        elif origin is not None and (
            allowed == origin if isinstance(allowed, str) else allowed.fullmatch(origin) is not None
        ):
            return True
    return False


class ConnectionLimit:
    """`max_connections=`: how many connections a server serves at once (in the handshake or open);
    an upgrade beyond it gets 503. Logged once per burst, not once per refusal."""

    __slots__ = ("_refusing", "maximum")

    def __init__(self, maximum: int | None) -> None:
        if maximum is not None and maximum < 1:
            raise ValueError("max_connections must be at least 1 (or None: no limit)")
        self.maximum = maximum
        self._refusing = False

    def full(self, active: int) -> bool:
        """Whether `active` connections (the one asking included) are over the limit."""
        maximum = self.maximum
        if maximum is None or active <= maximum:
            self._refusing = False
            return False
        if not self._refusing:
            self._refusing = True
            logger.warning("max_connections=%d reached: refusing upgrades with 503", maximum)
        return True


def handler_close(error: BaseException | None, own_closed: bool) -> tuple[int, str]:
    """The close code and reason for a handler that returned (`error` None) or raised `error` (not a
    cancellation); `own_closed` says whether the handler's own connection is already closed."""
    if error is None or (isinstance(error, ConnectionClosed) and own_closed):
        return 1000, ""
    logger.error("connection handler failed; closing with 1011", exc_info=error)
    return 1011, "internal error"
