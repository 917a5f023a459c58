"""The client path every adapter shares: URL and options → the core connection that will send the
upgrade request. Each adapter then opens its stream or transport (TCP, TLS) to `url.host:url.port`
and feeds the core until the handshake ends. (Proxies, redirects and reconnection belong here.)"""

from __future__ import annotations

from collections.abc import Mapping

from wscore import ClientConnection

from .api import WSURL, parse_url
from .options import ClientOptions

__all__ = ["client_connection"]


def client_connection(
    url: str, options: ClientOptions, now: float | None = None
) -> tuple[WSURL, ClientConnection]:
    """`url` parsed (`ValueError` saying what is wrong with it) and a `ClientConnection` holding the
    upgrade request with the options' subprotocols, headers, origin and limits."""
    parsed = parse_url(url)
    headers = options.headers
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    conn = ClientConnection(
        parsed.host_header,
        parsed.target,
        subprotocols=options.protocols,
        origin=options.origin,
        extra_headers=headers or (),
        config=options.config,
        now=now,
    )
    return parsed, conn
