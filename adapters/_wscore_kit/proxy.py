"""Proxies for the client path, written once for every adapter.

- Which proxy: `connect(proxy=...)` is a URL, None (direct), or True (the default: the environment,
  read the way `urllib.request.getproxies_environment()` and `proxy_bypass_environment()` read it —
  `<scheme>_proxy` in either case, the lower-case one winning, `NO_PROXY` host suffixes, `*`).
  wss:// uses `WSS_PROXY`, then `HTTPS_PROXY`, then `ALL_PROXY`; ws:// `WS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`.
- HTTP CONNECT (`http://` and `https://` proxies, Basic auth from the URL's userinfo) as a sans-I/O
  exchange on h11 (`ConnectExchange`), driven by `http_connect()` over any pair of send/receive
  coroutines. An https:// proxy is reached over TLS (`proxy_ssl_context`: connect()'s `ssl=`), and
  wss:// through it is TLS inside that TLS.
- SOCKS 4/5 through python-socks (the `socks` extra), with the backend of the caller's I/O library.

A refused tunnel is a `ProxyError`: a `HandshakeError` that names the proxy (never its password) and
gives its status. The kit loads no I/O library at module level: python-socks and asyncio are imported
where they run.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import unquote, urlsplit

import h11

from wscore import HandshakeError

from .api import WSURL, client_ssl_context

if TYPE_CHECKING:
    import asyncio
    import socket
    import ssl as ssl_module

__all__ = [
    "ConnectExchange",
    "Proxy",
    "ProxyError",
    "ProxyOption",
    "asyncio_create_connection",
    "asyncio_proxy_socket",
    "environment_proxies",
    "http_connect",
    "parse_proxy",
    "proxy_bypass",
    "proxy_ssl_context",
    "select_proxy",
    "socks_connect",
]

ProxyOption = str | Literal[True] | None
"""`connect(proxy=)`: a proxy URL, True (from the environment) or None (no proxy)."""

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks5": 1080, "socks5h": 1080}
_MAX_BODY = 64 * 1024
"""Bytes of a refusing proxy's body kept for `ProxyError.body`."""


@dataclass(frozen=True)
class Proxy:
    """A parsed proxy URL."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """The URL without the password, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = "" if self.username is None else f"{self.username}@"
        return f"{self.scheme}://{user}{host}:{self.port}"

    @property
    def is_socks(self) -> bool:
        return self.scheme.startswith("socks")


class ProxyError(HandshakeError):
    """The proxy refused or broke the tunnel. `proxy` is its URL without the password; `status` the
    HTTP status of a refused CONNECT (407, 403, 502, ...), None for SOCKS; `headers` and `body` the
    proxy's answer."""

    def __init__(
        self,
        proxy: Proxy,
        reason: str,
        *,
        status: int | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(f"proxy {proxy.display}: {reason}", status=status, headers=headers or (), body=body)
        self.proxy = proxy.display


def parse_proxy(url: str) -> Proxy:
    """Split a proxy URL (`http://user:pass@host:port`, `socks5h://host`, ...); a URL without a scheme
    is an HTTP proxy, as curl and requests read it. `ValueError` says what is wrong."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported proxy scheme {scheme!r}: use http, https, socks4, socks5 or socks5h")
    if not parts.hostname:
        raise ValueError(f"the proxy URL {parts.scheme}://{parts.hostname or ''} has no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"the proxy URL for {parts.hostname} has an invalid port") from None
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return Proxy(scheme, parts.hostname, port, username, password)


def environment_proxies(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`{"https": url, "no": "localhost,.example", ...}` from `<scheme>_proxy` variables, exactly as
    `urllib.request.getproxies_environment()` reads them (the lower-case name wins; an empty
    lower-case one removes the entry; HTTP_PROXY is ignored under CGI, where it is a request header)."""
    env = os.environ if environ is None else environ
    proxies: dict[str, str] = {}
    for name, value in env.items():
        lowered = name.lower()
        if value and lowered[-6:] == "_proxy":
            proxies[lowered[:-6]] = value
    if "REQUEST_METHOD" in env:
        proxies.pop("http", None)
    for name, value in env.items():
        if name[-6:] == "_proxy":
            if value:
                proxies[name[:-6]] = value
            else:
                proxies.pop(name[:-6], None)
    return proxies


def proxy_bypass(host: str, port: int, proxies: Mapping[str, str]) -> bool:
    """True when `NO_PROXY` (`proxies["no"]`) names the host (`*`, the name, a parent domain, or
    `host:port`), as `urllib.request.proxy_bypass_environment()` decides."""
    no_proxy = proxies.get("no")
    if no_proxy is None:
        return False
    if no_proxy == "*":
        return True
    hostonly = host.lower()
    hostport = f"{hostonly}:{port}"
    for entry in no_proxy.split(","):
        name = entry.strip().lstrip(".").lower()
        if not name:
            continue
        if name in (hostonly, hostport):
            return True
        if hostonly.endswith("." + name) or hostport.endswith("." + name):
            return True
    return False


def select_proxy(option: ProxyOption, url: WSURL, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy to reach `url` through: `option` parsed, or (True) the environment's, or None."""
    if option is None:
        return None
    if option is not True:
        if not isinstance(option, str):
            raise TypeError(f"proxy must be a URL string, True or None, not {type(option).__name__}")
        return parse_proxy(option)
    proxies = environment_proxies(environ)
    if proxy_bypass(url.host, url.port, proxies):
        return None
    for key in ("wss", "https", "all") if url.secure else ("ws", "http", "all"):
        if key in proxies:
            return parse_proxy(proxies[key])
    return None


def proxy_ssl_context(proxy: Proxy, ssl: ssl_module.SSLContext | bool | None) -> ssl_module.SSLContext | None:
    """The TLS context for the connection to an https:// proxy (None for the others): `connect()`'s
    `ssl=` read as for a wss:// URL (a context as is, True/None default verification, False none),
    one context for both hops, as aiohttp does; the proxy's certificate must match its host name."""
    return client_ssl_context(ssl) if proxy.scheme == "https" else None


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ConnectExchange:
    """The HTTP CONNECT exchange, sans-I/O: send `request`, feed the proxy's bytes to `receive_data`
    (b"" at EOF) until it returns True (the tunnel is open); a refusal raises `ProxyError`."""

    def __init__(self, proxy: Proxy, host: str, port: int) -> None:
        self._proxy = proxy
        self._target = _authority(host, port)
        self._h11 = h11.Connection(h11.CLIENT)
        headers = [("Host", self._target)]
        if proxy.username is not None:
            credentials = f"{proxy.username}:{proxy.password or ''}".encode()
            headers.append(("Proxy-Authorization", "Basic " + base64.b64encode(credentials).decode()))
        self.request = self._h11.send(h11.Request(method="CONNECT", target=self._target, headers=headers))
        self.request += self._h11.send(h11.EndOfMessage()) or b""
        self._refusal: h11.Response | None = None
        self._body = bytearray()

    def receive_data(self, data: bytes | bytearray) -> bool:
        """Feed bytes from the proxy (b"" at EOF); True once the tunnel is open."""
        if not data and self._refusal is None:
            raise ProxyError(self._proxy, f"closed the connection before answering CONNECT {self._target}")
        self._h11.receive_data(bytes(data))
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._refusal is not None:  # a refusal cut short: report it with what came
                    raise self._refused() from None
                raise ProxyError(self._proxy, f"invalid answer to CONNECT: {exc}") from None
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Response):
                if 200 <= event.status_code < 300:
                    leftover, _ = self._h11.trailing_data
                    if leftover:  # the target cannot have spoken first: nothing was sent to it yet
                        raise ProxyError(self._proxy, "sent data before the tunnel was used")
                    return True
                self._refusal = event
            elif isinstance(event, h11.Data):
                self._body += event.data[: _MAX_BODY - len(self._body)]
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                raise self._refused()

    def _refused(self) -> ProxyError:
        refusal = self._refusal
        assert refusal is not None
        return ProxyError(
            self._proxy,
            f"refused CONNECT {self._target}: {refusal.reason.decode('latin-1')}",
            status=refusal.status_code,
            headers=[
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in refusal.headers.raw_items()
            ],
            body=bytes(self._body),
        )


async def http_connect(
    proxy: Proxy,
    host: str,
    port: int,
    send: Callable[[bytes], Awaitable[object]],
    receive: Callable[[], Awaitable[bytes | bytearray]],
) -> None:
    """Open an HTTP CONNECT tunnel to `host:port` over a connection to the proxy."""
    exchange = ConnectExchange(proxy, host, port)
    await send(exchange.request)
    while not exchange.receive_data(await receive()):
        pass


async def socks_connect(
    backend: Literal["asyncio", "trio", "anyio"], proxy: Proxy, host: str, port: int
) -> Any:
    """A connection to `host:port` through a SOCKS proxy, made by python-socks' `backend`: a socket
    (asyncio), a trio socket (trio) or an anyio `SocketStream` (anyio). socks5h:// and socks4 resolve
    `host` at the proxy, socks5:// here."""
    try:
        import importlib

        from python_socks import ProxyError as SocksError
        from python_socks import ProxyType

        module = importlib.import_module(f"python_socks.async_.{backend}")
    except ImportError as exc:
        raise ImportError(f"SOCKS proxies need python-socks: pip install 'wscore-ws[socks]' ({exc})") from exc
    kind = ProxyType.SOCKS4 if proxy.scheme == "socks4" else ProxyType.SOCKS5
    client = module.Proxy(
        kind, proxy.host, proxy.port, proxy.username, proxy.password, rdns=proxy.scheme == "socks5h"
    )
    try:
        return await client.connect(host, port)
    except SocksError as exc:
        raise ProxyError(proxy, f"refused the tunnel to {_authority(host, port)}: {exc}") from exc
    except Exception as exc:
        # python-socks 3.2's anyio backend lets its own IncompleteReadError out (it catches asyncio's):
        # the proxy hung up mid-handshake, which its other backends report as ProxyError.
        if type(exc).__name__ != "IncompleteReadError" or not type(exc).__module__.startswith("python_socks"):
            raise
        raise ProxyError(proxy, f"refused the tunnel to {_authority(host, port)}: {exc}") from exc


async def asyncio_proxy_socket(proxy: Proxy, host: str, port: int) -> socket.socket:
    """For the asyncio-based adapters: a connected, non-blocking socket tunnelled to `host:port`,
    ready for `loop.create_connection(sock=..., ssl=..., server_hostname=host)`."""
    import asyncio
    import socket

    if proxy.is_socks:
        sock: socket.socket = await socks_connect("asyncio", proxy, host, port)
        return sock
    loop = asyncio.get_running_loop()
    sock = await _asyncio_tcp(loop, proxy)
    try:

        async def receive() -> bytes:
            return await loop.sock_recv(sock, 65536)

        await http_connect(proxy, host, port, lambda data: loop.sock_sendall(sock, data), receive)
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def _asyncio_tcp(loop: asyncio.AbstractEventLoop, proxy: Proxy) -> socket.socket:
    import socket

    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise OSError(
        getattr(error, "errno", None), f"could not connect to proxy {proxy.display}: {error}"
    ) from error


async def asyncio_create_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], Any],
    proxy: Proxy,
    url: WSURL,
    *,
    proxy_ssl: ssl_module.SSLContext | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """`loop.create_connection(protocol_factory, **kwargs)` to `url` through `proxy`: TLS (`ssl=`,
    `server_hostname=`) runs end to end with the target over the tunnelled socket. An https://
    proxy (`proxy_ssl`, see `proxy_ssl_context`) carries the tunnel in its own TLS, with the
    target's TLS inside it (`loop.start_tls` over the proxy's TLS transport)."""
    if proxy_ssl is None:
        sock = await asyncio_proxy_socket(proxy, url.host, url.port)
        return await loop.create_connection(protocol_factory, sock=sock, **kwargs)
    tunnel = _AsyncioTunnel(loop)
    transport, _ = await loop.create_connection(
        lambda: cast(Any, tunnel), proxy.host, proxy.port, ssl=proxy_ssl, server_hostname=proxy.host
    )
    try:
        await http_connect(proxy, url.host, url.port, tunnel.send, tunnel.receive)
        if kwargs.get("ssl") is not None:
            try:
                inner: Any = await loop.start_tls(
                    transport, cast(Any, tunnel), kwargs["ssl"], server_hostname=kwargs.get("server_hostname")
                )
            except TypeError as exc:  # Python 3.10's asyncio: start_tls() takes no TLS transport
                raise NotImplementedError(
                    f"wss:// through the https:// proxy {proxy.display} needs TLS inside TLS, which this"
                    " event loop cannot do (Python 3.11+ or uvloop can)"
                ) from exc
            transport = inner
    except BaseException:
        transport.abort()
        raise
    protocol = protocol_factory()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return transport, protocol


class _AsyncioTunnel:
    """The protocol of an https:// proxy's transport while the CONNECT exchange runs (duck-typed
    `asyncio.Protocol`: the kit loads no I/O module)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: Any = None
        self._buffer = bytearray()
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._eof = True
        self._wake()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def send(self, data: bytes) -> None:
        self._transport.write(data)

    async def receive(self) -> bytes:
        while not self._buffer and not self._eof:
            self._waiter = self._loop.create_future()
            await self._waiter
        data = bytes(self._buffer)
        self._buffer.clear()
        return data
