"""`connect()` follows 301/302/303/307/308 answers to the upgrade (issue #14, "Redirects"), on every
adapter: relative and absolute `Location`, ws → wss, never wss → ws, loops and too many hops reported,
credentials not sent to another origin (websockets' rule)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pytest

from _wscore_kit.options import ClientOptions
from _wscore_kit.proxy import ProxyError, parse_proxy
from _wscore_kit.redirect import redirect_target
from wscore import HandshakeError, Request

from .conftest import Adapter

pytestmark = pytest.mark.anyio

Answer = tuple[int, list[tuple[str, str]], bytes] | None


async def _echo(ws: Any) -> None:
    async for msg in ws:
        await ws.send_str(msg.data)


def _redirects(routes: dict[str, tuple[int, str]], seen: list[Request]) -> Callable[[Request], Answer]:
    """A process_request that answers the paths in `routes` with (status, Location) and upgrades the
    others; every request is recorded in `seen`."""

    def process_request(request: Request) -> Answer:
        seen.append(request)
        if request.target in routes:
            status, location = routes[request.target]
            return status, [("Location", location)], b""
        return None

    return process_request


async def _echoes(ws: Any) -> None:
    await ws.send_str("through")
    assert await ws.receive_str() == "through"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_each_redirect_status_is_followed(adapter: Adapter, status: int) -> None:
    seen: list[Request] = []
    routes = {"/old": (status, "/new")}
    async with (
        adapter.run_server(_echo, process_request=_redirects(routes, seen)) as url,
        adapter.connect(url + "/old") as ws,
    ):
        await _echoes(ws)
    assert [r.target for r in seen] == ["/old", "/new"]


async def test_a_relative_location_is_resolved_against_the_current_url(adapter: Adapter) -> None:
    seen: list[Request] = []
    routes = {"/a/b/c?x=1": (302, "../d?y=2"), "/a/d?y=2": (307, "e")}
    async with (
        adapter.run_server(_echo, process_request=_redirects(routes, seen)) as url,
        adapter.connect(url + "/a/b/c?x=1") as ws,
    ):
        await _echoes(ws)
    assert [r.target for r in seen] == ["/a/b/c?x=1", "/a/d?y=2", "/a/e"]


async def test_an_absolute_location_to_another_server(adapter: Adapter) -> None:
    seen: list[Request] = []
    async with adapter.run_server(_echo, process_request=_redirects({}, seen)) as target:
        routes = {"/": (301, target + "/moved")}
        async with (
            adapter.run_server(_echo, process_request=_redirects(routes, [])) as first,
            adapter.connect(first + "/") as ws,
        ):
            await _echoes(ws)
    assert [r.target for r in seen] == ["/moved"]


async def test_credentials_are_not_sent_to_another_origin(adapter: Adapter) -> None:
    """websockets' rule: Authorization, Cookie and Proxy-Authorization stay with the origin they were
    given for; the Origin header and the other headers go on (the page has not moved)."""
    seen: list[Request] = []
    headers = {"Authorization": "Bearer secret", "Cookie": "session=1", "X-Keep": "kept"}
    async with adapter.run_server(_echo, process_request=_redirects({}, seen)) as target:
        routes = {"/": (302, target + "/")}
        first_seen: list[Request] = []
        async with (
            adapter.run_server(_echo, process_request=_redirects(routes, first_seen)) as first,
            adapter.connect(first + "/", headers=headers, origin="https://app.example") as ws,
        ):
            await _echoes(ws)
    assert first_seen[0].header("authorization") == "Bearer secret"
    (request,) = seen
    assert request.header("authorization") is None
    assert request.header("cookie") is None
    assert request.header("x-keep") == "kept"
    assert request.header("origin") == "https://app.example"


async def test_credentials_stay_on_a_same_origin_redirect(adapter: Adapter) -> None:
    seen: list[Request] = []
    routes = {"/old": (308, "/new")}
    async with (
        adapter.run_server(_echo, process_request=_redirects(routes, seen)) as url,
        adapter.connect(url + "/old", headers=[("Authorization", "Bearer secret")]) as ws,
    ):
        await _echoes(ws)
    assert [r.header("authorization") for r in seen] == ["Bearer secret", "Bearer secret"]


async def test_ws_to_wss_is_followed(
    adapter: Adapter, tls_server: ssl.SSLContext, tls_client: ssl.SSLContext
) -> None:
    seen: list[Request] = []
    async with adapter.run_server(_echo, ssl=tls_server, process_request=_redirects({}, seen)) as secure:
        assert secure.startswith("wss://")
        routes = {"/": (301, secure + "/secure")}
        async with (
            adapter.run_server(_echo, process_request=_redirects(routes, [])) as plain,
            adapter.connect(plain + "/", ssl=tls_client) as ws,
        ):
            await _echoes(ws)
            assert ws.get_extra_info("ssl_object") is not None
    assert [r.target for r in seen] == ["/secure"]


async def test_wss_to_ws_is_refused(
    adapter: Adapter, tls_server: ssl.SSLContext, tls_client: ssl.SSLContext
) -> None:
    plain_seen: list[Request] = []
    async with adapter.run_server(_echo, process_request=_redirects({}, plain_seen)) as plain:
        routes = {"/": (302, plain + "/")}
        async with adapter.run_server(
            _echo, ssl=tls_server, process_request=_redirects(routes, [])
        ) as secure:
            with pytest.raises(HandshakeError, match="wss:// to ws://") as info:
                async with adapter.connect(secure + "/", ssl=tls_client):
                    pass
    assert info.value.status == 302
    assert plain_seen == []  # never contacted


async def test_a_redirect_loop_is_reported_as_such(adapter: Adapter) -> None:
    seen: list[Request] = []
    routes = {"/a": (302, "/b"), "/b": (302, "/a")}
    async with adapter.run_server(_echo, process_request=_redirects(routes, seen)) as url:
        with pytest.raises(HandshakeError, match="redirect loop") as info:
            async with adapter.connect(url + "/a"):
                pass
    assert info.value.status == 302
    assert str(info.value).count("/a") == 2
    assert [r.target for r in seen] == ["/a", "/b"]


async def test_too_many_redirects_names_the_count(adapter: Adapter) -> None:
    """Three hops are followed with max_redirects=3; a fourth is refused, naming the limit."""
    routes = {f"/{n}": (307, f"/{n - 1}") for n in range(1, 5)}
    seen: list[Request] = []
    async with (
        adapter.run_server(_echo, process_request=_redirects(routes, seen)) as url,
        adapter.connect(url + "/3", max_redirects=3) as ws,
    ):
        await _echoes(ws)
        assert [r.target for r in seen] == ["/3", "/2", "/1", "/0"]
        with pytest.raises(HandshakeError, match=r"too many redirects.*max_redirects=3") as info:
            async with adapter.connect(url + "/4", max_redirects=3):
                pass
        assert info.value.status == 307


async def test_the_default_follows_ten_redirects(adapter: Adapter) -> None:
    routes = {f"/{n}": (302, f"/{n - 1}") for n in range(1, 12)}
    async with (
        adapter.run_server(_echo, process_request=_redirects(routes, [])) as url,
        adapter.connect(url + "/10") as ws,
    ):
        await _echoes(ws)
        with pytest.raises(HandshakeError, match="max_redirects=10"):
            async with adapter.connect(url + "/11"):
                pass


async def test_max_redirects_zero_follows_none(adapter: Adapter) -> None:
    async with adapter.run_server(_echo, process_request=_redirects({"/": (301, "/x")}, [])) as url:
        with pytest.raises(HandshakeError, match="too many redirects") as info:
            async with adapter.connect(url + "/", max_redirects=0):
                pass
        assert info.value.status == 301


async def test_a_3xx_without_location_is_the_handshake_error(adapter: Adapter) -> None:
    def process_request(request: Request) -> Answer:
        return 302, [], b"nowhere"

    async with adapter.run_server(_echo, process_request=process_request) as url:
        with pytest.raises(HandshakeError) as info:
            async with adapter.connect(url + "/"):
                pass
    assert (info.value.status, info.value.body) == (302, b"nowhere")


# -- the rules without sockets ---------------------------------------------------------------------


def test_a_proxys_redirect_is_not_followed() -> None:
    """A 3xx answer to CONNECT comes from the proxy, not the WebSocket server: it is raised as is."""
    error = ProxyError(
        parse_proxy("http://127.0.0.1:3128"), "refused", status=302, headers=[("Location", "/x")]
    )
    with pytest.raises(ProxyError) as info:
        redirect_target(error, "ws://127.0.0.1:1/", ClientOptions(), ["ws://127.0.0.1:1/"])
    assert info.value is error


def test_credentials_given_as_bytes_are_dropped_too() -> None:
    error = HandshakeError("moved", status=301, headers=[("Location", "ws://127.0.0.1:2/")])
    options = ClientOptions(headers=[(b"Authorization", b"Basic eA=="), (b"X-Keep", b"1")])
    url, followed = redirect_target(error, "ws://127.0.0.1:1/", options, ["ws://127.0.0.1:1/"])
    assert url == "ws://127.0.0.1:2/"
    assert followed.headers == [(b"X-Keep", b"1")]


def test_http_locations_are_read_as_websocket_urls() -> None:
    error = HandshakeError("moved", status=308, headers=[("Location", "https://127.0.0.1:2/a")])
    url, _ = redirect_target(error, "ws://127.0.0.1:1/", ClientOptions(), ["ws://127.0.0.1:1/"])
    assert url == "wss://127.0.0.1:2/a"
