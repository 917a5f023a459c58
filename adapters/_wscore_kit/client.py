"""The client path every adapter shares: URL and options → the core connection that will send the
upgrade request. Each adapter then opens its stream or transport (TCP, TLS) to `url.host:url.port`
and feeds the core until the handshake ends. (Proxies, redirects and reconnection belong here.)"""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from wscore import ClientConnection, __version__

from .api import WSURL, parse_url
from .options import BasicAuthLike, ClientOptions, Params, check_headers, header_name

__all__ = ["USER_AGENT", "basic_auth", "client_connection", "prepare_client"]

USER_AGENT = f"Python/{sys.version_info.major}.{sys.version_info.minor} wscore/{__version__}"
"""The User-Agent sent unless `headers=` gives one (aiohttp and websockets send theirs)."""


def basic_auth(auth: BasicAuthLike) -> str:
    """The Authorization value for `auth=`: `(login, password)` as `Basic base64(login:password)`
    in UTF-8 (RFC 7617), or what an object's `encode()` returns (aiohttp's `BasicAuth`)."""
    encode = getattr(auth, "encode", None)
    if callable(encode):
        value = encode()
        if not isinstance(value, str):
            raise TypeError(f"auth.encode() must return a str, not {type(value).__name__}")
        return value
    assert isinstance(auth, tuple)  # checked by ClientOptions
    login, password = auth
    if ":" in login:
        raise ValueError('A ":" is not allowed in login (RFC 7617#section-2)')
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


_QUERY_SAFE = "/:?@!$'()*,~"
"""Left as they are in a query value, as yarl leaves them (aiohttp's URLs): the same request line."""


def _with_params(url: str, params: Params) -> str:
    """`url` with `params` appended to its query (aiohttp: yarl's `extend_query`)."""
    if isinstance(params, str):
        extra = params.lstrip("?")
    else:
        pairs = list(params.items() if isinstance(params, Mapping) else params)
        for name, value in pairs:
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise TypeError(f"params value of {name!r} must be str, int or float, not {value!r}")
        extra = urlencode(pairs, safe=_QUERY_SAFE)
    if not extra:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def prepare_client(url: str, options: ClientOptions) -> tuple[str, ClientOptions]:
    """What `connect(url, ...)` does once, before the first attempt (redirects and reconnections
    reuse the result): `params` appended to the URL, credentials in the URL moved to `auth`
    (aiohttp's rules: not both; not with an Authorization header)."""
    if options.params is not None:
        url = _with_params(url, options.params)
        options = replace(options, params=None)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        if options.auth is not None:
            raise ValueError("Cannot combine AUTH argument with credentials encoded in URL")
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        check_headers(options.headers, origin=options.origin, auth=True)
        netloc = parts.netloc.rpartition("@")[2]
        url = urlunsplit(parts._replace(netloc=netloc))
        options = replace(options, auth=auth)
    return url, options


def client_connection(
    url: str, options: ClientOptions, now: float | None = None
) -> tuple[WSURL, ClientConnection]:
    """`url` parsed (`ValueError` saying what is wrong with it) and a `ClientConnection` holding the
    upgrade request with the options' subprotocols, headers, origin and limits.

    Headers: the handshake's own first, then `User-Agent` and `Authorization` (from `auth`), then
    `headers=`; a name in `headers=` replaces our default of that name (Host and User-Agent too)."""
    parsed = parse_url(url)
    given = options.headers
    pairs = list(given.items() if isinstance(given, Mapping) else given or ())
    names = {header_name(name).lower() for name, _ in pairs}
    host = parsed.host_header
    defaults: list[tuple[str | bytes, str | bytes]] = []
    if "user-agent" not in names:
        defaults.append(("User-Agent", USER_AGENT))
    if options.auth is not None:
        defaults.append(("Authorization", basic_auth(options.auth)))
    extra: list[tuple[str | bytes, str | bytes]] = []
    for name, value in pairs:
        if header_name(name).lower() == "host":  # aiohttp lets Host be replaced; so do we
            host = value.decode("latin-1") if isinstance(value, bytes) else value
        else:
            extra.append((name, value))
    conn = ClientConnection(
        host,
        parsed.target,
        subprotocols=options.protocols,
        origin=options.origin,
        extra_headers=defaults + extra,
        config=options.config,
        now=now,
    )
    return parsed, conn
