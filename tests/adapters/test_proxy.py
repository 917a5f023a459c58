"""connect(proxy=...) on every adapter, through a real proxy server: pproxy (from the package index),
started here on 127.0.0.1 for HTTP CONNECT, SOCKS5 and SOCKS4, with and without auth; and the kit's
environment lookup and CONNECT exchange on their own (no sockets)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import trustme

from _wscore_kit.api import parse_url
from _wscore_kit.proxy import (
    ConnectExchange,
    Proxy,
    ProxyError,
    environment_proxies,
    parse_proxy,
    proxy_bypass,
    select_proxy,
)
from wscore import HandshakeError, WSTimeoutError

from ..conftest import free_port
from .conftest import Adapter
from .test_client import silent_tcp_server

# pproxy picks uvloop when it is installed, and uvloop has no loop for its get_event_loop(): run it
# on asyncio's own loop.
_RUN_PPROXY = (
    "import runpy, sys; sys.modules['uvloop'] = None; sys.argv[0] = 'pproxy'; "
    "runpy.run_module('pproxy', run_name='__main__')"
)
_USER, _PASSWORD = "alice", "s3cret"
_KINDS = ("http", "http-auth", "https", "socks5", "socks5-auth", "socks4")
_LISTEN = {"https": "http+ssl"}
"""pproxy's scheme for a kind's listener, when it is not the proxy URL's."""


@pytest.fixture(scope="module")
def proxies(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One pproxy process listening on one port per kind: name -> proxy URL (credentials included).
    The https:// one has a certificate for 127.0.0.1 from `tls_ca` (`tls_client` trusts it)."""
    certificate = tmp_path_factory.mktemp("proxy") / "proxy.pem"
    tls_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(certificate))
    ports = {kind: free_port() for kind in _KINDS}
    args = []
    for kind, port in ports.items():
        scheme = kind.partition("-")[0]
        auth = f"#{_USER}:{_PASSWORD}" if kind.endswith("-auth") else ""
        args += ["-l", f"{_LISTEN.get(scheme, scheme)}://127.0.0.1:{port}{auth}"]
    # --auth 0: pproxy would otherwise let an address that once authenticated in for 30 days.
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN_PPROXY, *args, "--auth", "0", "--ssl", str(certificate)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        for port in ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                try:  # the pause between polls, which also notices a pproxy that exited
                    process.wait(0.02)
                except subprocess.TimeoutExpired:
                    continue
                assert process.stderr is not None
                raise RuntimeError(f"pproxy exited: {process.stderr.read().decode()}")
        urls = {}
        for kind, port in ports.items():
            scheme = kind.partition("-")[0]
            auth = f"{_USER}:{_PASSWORD}@" if kind.endswith("-auth") else ""
            urls[kind] = f"{scheme}://{auth}127.0.0.1:{port}"
        yield urls
    finally:
        process.terminate()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable from the environment the tests run in."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    return monkeypatch


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


async def _echo_through(adapter: Adapter, url: str, expect_port: int, **kw: Any) -> None:
    """Connect, echo one message, and check where the client's socket goes: to `expect_port` (the
    proxy's, or the server's own when no proxy is used)."""
    async with adapter.connect(url, **kw) as ws:
        await ws.send_str("through")
        assert await ws.receive_str() == "through"
        assert ws.get_extra_info("peername")[1] == expect_port


# -- through a real proxy, on every adapter ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", _KINDS)
@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_echo_through_proxy(
    adapter: Adapter,
    *,
    proxies: dict[str, str],
    kind: str,
    secure: bool,
    tls_server: ssl.SSLContext,
    tls_client: ssl.SSLContext,
    clean_env: pytest.MonkeyPatch,
) -> None:
    """The tunnel carries the handshake and the messages; with wss://, TLS runs end to end with the
    server (its certificate for 127.0.0.1 is checked through the tunnel). An https:// proxy is
    reached over TLS (checked with the same `ssl=`), and wss:// through it is TLS inside TLS."""
    server_kw: dict[str, Any] = {"ssl": tls_server} if secure else {}
    client_kw: dict[str, Any] = {"ssl": tls_client} if secure or kind == "https" else {}
    proxy = proxies[kind]
    async with adapter.run_server(adapter.module.echo_handler, **server_kw) as url:
        await _echo_through(adapter, url, _port(proxy), proxy=proxy, **client_kw)


@pytest.mark.anyio
async def test_wrong_password_is_407_naming_the_proxy(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    wrong = proxies["http-auth"].replace(_PASSWORD, "wrong")
    async with adapter.run_server(adapter.module.echo_handler) as url:
        with pytest.raises(adapter.module.ProxyError) as info:
            async with adapter.connect(url, proxy=wrong):
                pass
    error = info.value
    assert adapter.module.ProxyError is ProxyError  # re-exported by every adapter
    assert isinstance(error, ProxyError) and isinstance(error, HandshakeError)
    assert error.status == 407
    assert error.proxy == f"http://{_USER}@127.0.0.1:{_port(wrong)}"
    assert ("Proxy-Authenticate", 'Basic realm="simple"') in error.headers
    assert "407" in str(error) and error.proxy in str(error) and "wrong" not in str(error)


@pytest.mark.anyio
async def test_proxy_credentials_stay_with_the_proxy(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    """Proxy-Authorization goes in the CONNECT request only, never to the WebSocket server."""
    seen: list[tuple[str | None, str | None]] = []

    async def handler(ws: Any) -> None:
        seen.append((ws.request.header("Proxy-Authorization"), ws.request.header("Host")))
        await ws.send_str("ok")

    async with adapter.run_server(handler) as url, adapter.connect(url, proxy=proxies["http-auth"]) as ws:
        assert await ws.receive_str() == "ok"
    assert seen == [(None, f"127.0.0.1:{_port(url)}")]


@pytest.mark.anyio
async def test_https_proxy_certificate_is_checked(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    """The default verification does not trust the test CA that signed the proxy's certificate."""
    async with adapter.run_server(adapter.module.echo_handler) as url:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with adapter.connect(url, proxy=proxies["https"]):
                pass


@pytest.mark.anyio
async def test_no_credentials_for_an_auth_proxy_is_407(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    anonymous = proxies["http-auth"].replace(f"{_USER}:{_PASSWORD}@", "")
    async with adapter.run_server(adapter.module.echo_handler) as url:
        with pytest.raises(ProxyError) as info:
            async with adapter.connect(url, proxy=anonymous):
                pass
    assert info.value.status == 407


@pytest.mark.anyio
async def test_socks5_wrong_password_is_a_proxy_error(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    wrong = proxies["socks5-auth"].replace(_PASSWORD, "wrong")
    async with adapter.run_server(adapter.module.echo_handler) as url:
        with pytest.raises(ProxyError) as info:
            async with adapter.connect(url, proxy=wrong):
                pass
    error = info.value
    assert error.status is None
    assert error.proxy == f"socks5://{_USER}@127.0.0.1:{_port(wrong)}"
    assert "wrong" not in str(error) and error.proxy in str(error)


@pytest.mark.anyio
async def test_proxy_that_cannot_reach_the_target(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    """pproxy hangs up without an answer when the target refuses: a ProxyError that says so."""
    with pytest.raises(ProxyError, match="closed the connection before answering CONNECT"):
        async with adapter.connect(f"ws://127.0.0.1:{free_port()}/", proxy=proxies["http"]):
            pass


@pytest.mark.anyio
async def test_unreachable_proxy_is_an_os_error(adapter: Adapter, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(OSError):
        async with adapter.connect("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{free_port()}"):
            pass


@pytest.mark.anyio
@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_open_timeout_bounds_a_silent_proxy(
    adapter: Adapter, scheme: str, clean_env: pytest.MonkeyPatch
) -> None:
    """A proxy that accepts and never answers: the tunnel counts against `open_timeout`."""
    async with silent_tcp_server() as silent:
        proxy = f"{scheme}://127.0.0.1:{_port(silent)}"
        with anyio.fail_after(10), pytest.raises(WSTimeoutError):
            async with adapter.connect("ws://127.0.0.1:9/", proxy=proxy, open_timeout=0.2):
                pass


@pytest.mark.anyio
async def test_environment_selects_the_proxy(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    """ws:// takes http_proxy (lower case wins over upper case), by default."""
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # dead: would fail
    clean_env.setenv("http_proxy", proxies["http"])
    async with adapter.run_server(adapter.module.echo_handler) as url:
        await _echo_through(adapter, url, _port(proxies["http"]))


@pytest.mark.anyio
async def test_environment_https_proxy_for_wss(
    adapter: Adapter,
    proxies: dict[str, str],
    tls_server: ssl.SSLContext,
    tls_client: ssl.SSLContext,
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # for ws:// only
    clean_env.setenv("HTTPS_PROXY", proxies["socks5"])
    async with adapter.run_server(adapter.module.echo_handler, ssl=tls_server) as url:
        await _echo_through(adapter, url, _port(proxies["socks5"]), ssl=tls_client)


@pytest.mark.anyio
async def test_environment_all_proxy(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("ALL_PROXY", proxies["socks5-auth"])
    async with adapter.run_server(adapter.module.echo_handler) as url:
        await _echo_through(adapter, url, _port(proxies["socks5-auth"]))


@pytest.mark.anyio
async def test_no_proxy_bypasses_the_environment_proxy(
    adapter: Adapter, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # dead: would fail
    clean_env.setenv("NO_PROXY", "localhost,127.0.0.1")
    async with adapter.run_server(adapter.module.echo_handler) as url:
        await _echo_through(adapter, url, _port(url))


@pytest.mark.anyio
async def test_proxy_none_ignores_the_environment(adapter: Adapter, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ALL_PROXY", f"http://127.0.0.1:{free_port()}")  # dead: would fail
    async with adapter.run_server(adapter.module.echo_handler) as url:
        await _echo_through(adapter, url, _port(url), proxy=None)


@pytest.mark.anyio
async def test_explicit_proxy_ignores_no_proxy(
    adapter: Adapter, proxies: dict[str, str], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("NO_PROXY", "*")
    async with adapter.run_server(adapter.module.echo_handler) as url:
        await _echo_through(adapter, url, _port(proxies["http"]), proxy=proxies["http"])


def test_connect_signature_has_proxy(adapter: Adapter) -> None:
    import inspect

    parameter = inspect.signature(adapter.module.connect).parameters["proxy"]
    assert parameter.default is True


# -- the environment, read as urllib reads it -----------------------------------------------------------

_ENVIRONMENTS = [
    {},
    {"HTTP_PROXY": "http://up:1"},
    {"http_proxy": "http://low:1", "HTTP_PROXY": "http://up:1"},
    {"http_proxy": "", "HTTP_PROXY": "http://up:1"},
    {"HTTPS_PROXY": "http://s:1", "ALL_PROXY": "socks5://a:2", "NO_PROXY": "example.com, .internal,10.0.0.1"},
    {"HTTP_PROXY": "http://up:1", "REQUEST_METHOD": "GET"},
    {"no_proxy": "*", "all_proxy": "http://a:1"},
    {"WSS_PROXY": "http://w:1", "no_proxy": "host.example:8080"},
]
_urllib_bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
_HOSTS = ["example.com", "www.example.com", "notexample.com", "a.internal", "10.0.0.1", "host.example"]


@pytest.mark.parametrize("environ", _ENVIRONMENTS)
def test_environment_matches_urllib(environ: dict[str, str], clean_env: pytest.MonkeyPatch) -> None:
    for name, value in environ.items():
        clean_env.setenv(name, value)
    ours = environment_proxies()
    assert ours == urllib.request.getproxies_environment()
    assert environment_proxies(environ) == ours
    for host in _HOSTS:
        for port in (80, 8080):
            expected = bool(_urllib_bypass(f"{host}:{port}", ours))
            assert proxy_bypass(host, port, ours) is expected, (host, port)


def test_select_proxy_precedence() -> None:
    ws, wss = parse_url("ws://h.example/"), parse_url("wss://h.example/")
    env = {"HTTP_PROXY": "http://p1:3128", "HTTPS_PROXY": "socks5h://p2", "ALL_PROXY": "socks4://p3:9"}
    assert select_proxy(True, ws, env) == Proxy("http", "p1", 3128)
    assert select_proxy(True, wss, env) == Proxy("socks5h", "p2", 1080)
    assert select_proxy(True, ws, {"ALL_PROXY": "socks4://p3:9"}) == Proxy("socks4", "p3", 9)
    assert select_proxy(True, ws, {**env, "ws_proxy": "p4:1"}) == Proxy("http", "p4", 1)
    assert select_proxy(True, ws, {**env, "NO_PROXY": ".example"}) is None
    assert select_proxy(True, ws, {}) is None
    assert select_proxy(None, ws, env) is None
    assert select_proxy("http://u:p@x", ws, {}) == Proxy("http", "x", 80, "u", "p")
    with pytest.raises(TypeError):
        select_proxy(1, ws, {})  # type: ignore[arg-type]


def test_parse_proxy() -> None:
    assert parse_proxy("proxy.example:3128") == Proxy("http", "proxy.example", 3128)
    proxy = parse_proxy("socks5://us%40er:p%3Ass@[::1]:1081")
    assert proxy == Proxy("socks5", "::1", 1081, "us@er", "p:ss")
    assert proxy.display == "socks5://us@er@[::1]:1081"
    assert "p:ss" not in repr(proxy)
    assert parse_proxy("HTTPS://h").port == 443
    for bad in ("ftp://h:1", "http://:8080", "http://h:99999"):
        with pytest.raises(ValueError):
            parse_proxy(bad)


# -- the CONNECT exchange, sans-I/O ----------------------------------------------------------------------

_PROXY = Proxy("http", "proxy.test", 3128, "user", "pa:ss")


def test_connect_request_carries_target_and_basic_auth() -> None:
    exchange = ConnectExchange(_PROXY, "::1", 443)
    request = exchange.request.decode()
    assert request.startswith("CONNECT [::1]:443 HTTP/1.1\r\n")
    assert "Host: [::1]:443\r\n" in request
    assert "Proxy-Authorization: Basic dXNlcjpwYTpzcw==\r\n" in request  # user:pa:ss
    anonymous = ConnectExchange(Proxy("http", "p", 1), "h", 80).request.decode()
    assert "Proxy-Authorization" not in anonymous


def test_connect_accepted_in_pieces() -> None:
    exchange = ConnectExchange(_PROXY, "h", 80)
    assert exchange.receive_data(b"HTTP/1.1 200 Connection estab") is False
    assert exchange.receive_data(b"lished\r\n\r\n") is True


@pytest.mark.parametrize("status", [403, 407, 502])
def test_connect_refused(status: int) -> None:
    exchange = ConnectExchange(_PROXY, "h", 80)
    head = f"HTTP/1.1 {status} No\r\nX-Why: policy\r\nContent-Length: 4\r\n\r\n".encode()
    assert exchange.receive_data(head + b"de") is False  # the body is read for the error
    with pytest.raises(ProxyError) as info:
        exchange.receive_data(b"ny")
    error = info.value
    assert (error.status, error.body, error.proxy) == (status, b"deny", "http://user@proxy.test:3128")
    assert ("X-Why", "policy") in error.headers
    assert f"HTTP {status}" in str(error) and "pa:ss" not in str(error)


def test_connect_refused_then_closed_without_length() -> None:
    exchange = ConnectExchange(_PROXY, "h", 80)
    assert exchange.receive_data(b"HTTP/1.0 502 Bad Gateway\r\n\r\nupstream down") is False
    with pytest.raises(ProxyError) as info:
        exchange.receive_data(b"")
    assert (info.value.status, info.value.body) == (502, b"upstream down")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "closed the connection before answering"),
        (b"HTTP/1.1 200 OK\r\n\r\nhello", "sent data before the tunnel was used"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "invalid answer to CONNECT"),
    ],
)
def test_connect_broken_answers(data: bytes, message: str) -> None:
    with pytest.raises(ProxyError, match=message):
        ConnectExchange(_PROXY, "h", 80).receive_data(data)
