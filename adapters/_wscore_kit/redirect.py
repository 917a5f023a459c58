"""Following redirects of the opening handshake, for every adapter's `connect()`.

A server may answer the upgrade with 301, 302, 303, 307 or 308 and a `Location` header (RFC 9110
§15.4): the client opens a new connection to that URL, up to `max_redirects` times. The rules are
websockets' (`websockets.asyncio.client.connect.process_redirect`):

- a relative `Location` is resolved against the URL just tried; `http://`/`https://` are read as
  `ws://`/`wss://` (servers written for HTTP clients send those);
- `ws` → `wss` is followed, `wss` → `ws` is refused (a TLS downgrade);
- to another origin (scheme, host or port), `Authorization`, `Cookie` and `Proxy-Authorization` are
  dropped from `headers` (and `auth=`, or credentials given in the URL) so that credentials do not
  leak to a third party; `origin` and the other headers go along unchanged (the page that opens the
  connection has not moved); a connection given as `sock=` or a TLS name given as `server_hostname=`
  cannot follow there (refused);
- a URL seen before is a loop, reported as such; more than `max_redirects` is an error naming the count.

Every refusal is a `HandshakeError` with the redirect's status and headers, so that
`except HandshakeError` sees them all. Each hop is bounded by `open_timeout` on its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

from wscore import HandshakeError

from .api import parse_url
from .options import ClientOptions
from .proxy import ProxyError

__all__ = ["REDIRECT_STATUSES", "follow_redirects", "redirect_target"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""The answers to an upgrade that `connect()` follows."""

CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Request headers not sent on to another origin."""

_T = TypeVar("_T")


def _location(exc: HandshakeError) -> str | None:
    for name, value in exc.headers:
        if name.lower() == "location":
            return value
    return None


def _name(name: str | bytes) -> str:
    return name.decode("latin-1") if isinstance(name, bytes) else name


def redirect_target(
    exc: HandshakeError, url: str, options: ClientOptions, seen: list[str]
) -> tuple[str, ClientOptions]:
    """The URL and options of the next hop when `exc` (the answer to an upgrade to `url`) is a
    redirect we follow; `seen` holds the URLs tried so far (the new one is added). Raises `exc`
    itself when it is not a redirect, a `HandshakeError` saying why when it may not be followed."""
    location = _location(exc)
    if exc.status not in REDIRECT_STATUSES or location is None or isinstance(exc, ProxyError):
        raise exc  # not a redirect (a proxy's answer to CONNECT is not one either)

    def refuse(reason: str) -> HandshakeError:
        return HandshakeError(reason, status=exc.status, headers=exc.headers, body=exc.body)

    target = urljoin(url, location.strip())
    parts = urlsplit(target)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    target = urlunsplit(parts._replace(scheme=scheme))
    try:
        new, old = parse_url(target), parse_url(url)
    except ValueError as error:
        raise refuse(f"cannot follow the redirect from {url} to {location!r}: {error}") from exc
    if old.secure and not new.secure:
        raise refuse(f"refusing to follow the redirect from {url} to {target}: wss:// to ws:// drops TLS")
    if target in seen:
        raise refuse("redirect loop: " + " → ".join([*seen[seen.index(target) :], target]))
    if len(seen) > options.max_redirects:
        raise refuse(
            f"too many redirects: more than max_redirects={options.max_redirects} ({url} → {target})"
        )
    if options.sock is not None:
        raise refuse(f"cannot follow the redirect to {target} with sock= (that socket is spent)")
    if (new.secure, new.host, new.port) != (old.secure, old.host, old.port):
        if options.server_hostname is not None and new.secure:
            raise refuse(f"cannot follow the redirect to another host ({target}) with server_hostname=")
        headers = options.headers
        if headers:
            pairs = headers.items() if isinstance(headers, Mapping) else headers
            kept = [(k, v) for k, v in pairs if _name(k).lower() not in CREDENTIAL_HEADERS]
            options = replace(options, headers=kept)
        if options.auth is not None:
            options = replace(options, auth=None)  # its Authorization header, dropped likewise
    seen.append(target)
    return target, options


async def follow_redirects(
    open_once: Callable[[str, ClientOptions], Awaitable[_T]], url: str, options: ClientOptions
) -> _T:
    """`await open_once(url, options)`, then again at each redirect's target (see the module's
    docstring); what the last one returned."""
    seen = [url]
    while True:
        try:
            return await open_once(url, options)
        except HandshakeError as exc:  # noqa: PERF203 - a redirect, or raised again
            url, options = redirect_target(exc, url, options, seen)
