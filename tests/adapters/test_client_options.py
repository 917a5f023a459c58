"""What an aiohttp user passes to `ws_connect` (issue #14, last part), on every adapter's `connect()`:
`receive_timeout=`, a number as `timeout=`, `auth=` (and credentials in the URL), `params=`,
`method=`, `headers=` replacing our defaults, `client_notakeover=`, `max_msg_size=0`,
`decode_text=False` and `ssl=` of a wrong type. The server records each request it was sent."""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import pytest

from _wscore_kit.api import WSTimeout
from _wscore_kit.client import USER_AGENT
from wscore import Request, WSMsgType, WSTimeoutError

from .conftest import Adapter

pytestmark = pytest.mark.anyio
DEAD = "ws://127.0.0.1:1/"  # nothing listens: every refusal below happens before connecting


async def _echo(ws: Any) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
        else:
            await ws.send_bytes(msg.data)


def _recorder(seen: list[Request]) -> Callable[[Request], None]:
    def process_request(request: Request) -> None:
        seen.append(request)

    return process_request


def _values(request: Request, name: str) -> list[str]:
    return [v for k, v in request.headers if k.lower() == name]


async def _sent(adapter: Adapter, path: str = "/", **options: Any) -> Request:
    """The request the server received for `connect(url + path, **options)`, after one echo."""
    seen: list[Request] = []
    async with (
        adapter.run_server(_echo, process_request=_recorder(seen)) as url,
        adapter.connect(url.replace("://", options.pop("userinfo", "://")) + path, **options) as ws,
    ):
        await ws.send_str("ping")
        assert await ws.receive_str() == "ping"
    assert len(seen) == 1
    return seen[0]


def _basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


# -- headers= ----------------------------------------------------------------------------------------


async def test_a_user_agent_is_sent_by_default(adapter: Adapter) -> None:
    request = await _sent(adapter)
    assert _values(request, "user-agent") == [USER_AGENT]
    assert USER_AGENT.startswith("Python/3.") and "wscore/" in USER_AGENT


async def test_headers_replace_our_defaults_one_value_per_name(adapter: Adapter) -> None:
    request = await _sent(
        adapter, headers={"user-agent": "mine/1.0", "X-Trace": "abc", "Host": "example.test"}
    )
    assert _values(request, "user-agent") == ["mine/1.0"]
    assert _values(request, "x-trace") == ["abc"]
    assert _values(request, "host") == ["example.test"]  # aiohttp lets Host be replaced too


async def test_an_origin_header_without_origin_option_is_sent(adapter: Adapter) -> None:
    request = await _sent(adapter, headers=[("Origin", "https://app.example")])
    assert _values(request, "origin") == ["https://app.example"]


@pytest.mark.parametrize(
    ("headers", "origin", "message"),
    [
        ([("X-A", "1"), ("x-a", "2")], None, "'x-a' given twice"),
        ({"X-A": "1", "x-A": "2"}, None, "'x-A' given twice"),
        ({"Upgrade": "h2c"}, None, "'Upgrade' belongs to the WebSocket handshake"),
        ({"Connection": "close"}, None, "'Connection' belongs to the WebSocket handshake"),
        ({"Sec-WebSocket-Key": "x"}, None, "'Sec-WebSocket-Key' belongs"),
        ({"sec-websocket-version": "8"}, None, "'sec-websocket-version' belongs"),
        ({"Sec-WebSocket-Protocol": "chat"}, None, "use protocols="),
        ([(b"Sec-WebSocket-Extensions", b"permessage-deflate")], None, "use compress="),
        ({"Origin": "https://a.example"}, "https://b.example", "origin="),
    ],
    ids=["pairs-twice", "dict-case", "upgrade", "connection", "key", "version", "protocol", "ext", "origin"],
)
async def test_headers_the_handshake_owns_or_given_twice_are_refused(
    adapter: Adapter, headers: Any, origin: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        async with adapter.connect(DEAD, headers=headers, origin=origin):
            pass


# -- auth= and credentials in the URL ---------------------------------------------------------------


async def test_auth_tuple_sends_basic_authorization(adapter: Adapter) -> None:
    request = await _sent(adapter, auth=("alice", "s3cr:et é"))
    assert _values(request, "authorization") == [_basic("alice", "s3cr:et é")]


async def test_auth_object_with_encode_is_aiohttps_basic_auth(adapter: Adapter) -> None:
    with pytest.warns(DeprecationWarning, match="BasicAuth is deprecated"):  # aiohttp 3.14's own warning
        auth = aiohttp.BasicAuth("bob", "pw")
    request = await _sent(adapter, auth=auth)
    assert _values(request, "authorization") == [auth.encode()] == [_basic("bob", "pw")]


async def test_credentials_in_the_url_are_sent_as_basic_auth(adapter: Adapter) -> None:
    request = await _sent(adapter, userinfo="://carol:p%40ss@")
    assert _values(request, "authorization") == [_basic("carol", "p@ss")]
    assert "@" not in _values(request, "host")[0]


@pytest.mark.parametrize(
    ("url", "options", "error", "message"),
    [
        (
            DEAD,
            {"auth": ("a", "b"), "headers": {"Authorization": "Bearer x"}},
            ValueError,
            "AUTHORIZATION header",
        ),
        (
            "ws://u:p@127.0.0.1:1/",
            {"headers": {"authorization": "Bearer x"}},
            ValueError,
            "AUTHORIZATION header",
        ),
        (
            "ws://u:p@127.0.0.1:1/",
            {"auth": ("a", "b")},
            ValueError,
            "AUTH argument with credentials encoded in URL",
        ),
        (DEAD, {"auth": ("a:b", "c")}, ValueError, 'A ":" is not allowed in login'),
        (DEAD, {"auth": "user:pw"}, TypeError, "BasicAuth() tuple is required instead"),
        (DEAD, {"auth": ("only-login",)}, TypeError, "BasicAuth() tuple is required instead"),
    ],
    ids=["auth-and-header", "url-and-header", "auth-and-url", "colon-in-login", "str", "1-tuple"],
)
async def test_auth_refusals_in_aiohttps_words(
    adapter: Adapter, url: str, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        async with adapter.connect(url, **options):
            pass


async def test_auth_is_dropped_on_a_redirect_to_another_origin(adapter: Adapter) -> None:
    """As an Authorization header is (the redirect module's rule): kept on the same server, not sent
    to another one."""
    first: list[Request] = []
    second: list[Request] = []
    async with adapter.run_server(_echo, process_request=_recorder(second)) as target:

        def redirect(request: Request) -> Any:
            first.append(request)
            if request.path == "/away":
                return 302, [("Location", target + "/there")], b""
            if request.path == "/here":
                return 302, [("Location", "/away")], b""
            return None

        async with (
            adapter.run_server(_echo, process_request=redirect) as url,
            adapter.connect(url + "/here", auth=("dave", "pw")) as ws,
        ):
            await ws.send_str("x")
            assert await ws.receive_str() == "x"
    assert [r.path for r in first] == ["/here", "/away"]
    assert [_values(r, "authorization") for r in first] == [[_basic("dave", "pw")]] * 2
    assert [r.path for r in second] == ["/there"]
    assert _values(second[0], "authorization") == []


# -- params= and method= -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "target"),
    [
        ("/feed?a=1", {"b": "2 3", "c": 4, "d": "x&y=z/é"}, "/feed?a=1&b=2+3&c=4&d=x%26y%3Dz/%C3%A9"),
        ("/feed", [("k", "1"), ("k", 2.5)], "/feed?k=1&k=2.5"),
        ("/", "raw=1&x", "/?raw=1&x"),
    ],
    ids=["dict-extends-the-query", "repeated-pairs", "str"],
)
async def test_params_extend_the_urls_query(adapter: Adapter, path: str, params: Any, target: str) -> None:
    """The request line aiohttp (yarl's `extend_query`) would send."""
    request = await _sent(adapter, path, params=params)
    assert request.target == target


async def test_params_are_not_added_again_after_a_redirect(adapter: Adapter) -> None:
    seen: list[Request] = []

    def redirect(request: Request) -> Any:
        seen.append(request)
        return (307, [("Location", "/b")], b"") if request.path == "/a" else None

    async with (
        adapter.run_server(_echo, process_request=redirect) as url,
        adapter.connect(url + "/a", params={"t": "1"}) as ws,
    ):
        await ws.send_str("x")
        assert await ws.receive_str() == "x"
    assert [r.target for r in seen] == ["/a?t=1", "/b"]


async def test_method_get_in_any_case_is_sent_as_get(adapter: Adapter) -> None:
    request = await _sent(adapter, method="get")
    assert request.method == "GET"


@pytest.mark.parametrize("method", ["POST", "CONNECT", ""])
async def test_a_method_other_than_get_is_refused(adapter: Adapter, method: str) -> None:
    with pytest.raises(ValueError, match=re.escape("GET request (RFC 6455 §4.1)")):
        async with adapter.connect(DEAD, method=method):
            pass


# -- receive_timeout= and timeout= as aiohttp spells them ----------------------------------------------


async def test_receive_timeout_bounds_receive_and_warns_as_aiohttp(adapter: Adapter) -> None:
    """aiohttp 3.14 deprecates the float in favour of `timeout=ClientWSTimeout(ws_receive=)`; given
    with `timeout=`, it replaces that receive bound (aiohttp's `attr.evolve`)."""
    async with adapter.run_server(_echo) as url:
        with pytest.warns(
            DeprecationWarning, match=re.escape("float parameter 'receive_timeout' is deprecated")
        ):
            cm = adapter.connect(url, receive_timeout=0.2, timeout=WSTimeout(receive=60, close=3))
            ws = await cm.__aenter__()
        try:
            with anyio.fail_after(10), pytest.raises(WSTimeoutError):
                await ws.receive()  # the server sends nothing: 0.2 s, not 60
            assert not ws.closed
            assert ws.core.config.close_timeout == 3  # timeout=''s close bound stays
        finally:
            await cm.__aexit__(None, None, None)


async def test_timeout_as_a_number_is_the_close_timeout_with_a_warning(adapter: Adapter) -> None:
    async with adapter.run_server(_echo) as url:
        with pytest.warns(
            DeprecationWarning, match=re.escape("parameter 'timeout' of type 'float' is deprecated")
        ):
            cm = adapter.connect(url, timeout=2)
            ws = await cm.__aenter__()
        try:
            assert ws.core.config.close_timeout == 2
            await ws.send_str("x")
            assert await ws.receive_str() == "x"
            with pytest.raises(WSTimeoutError):
                await ws.receive(timeout=0)  # still works; no receive bound came from the number
        finally:
            await cm.__aexit__(None, None, None)
        assert ws.close_code == 1000


async def test_aiohttps_client_ws_timeout_is_understood(adapter: Adapter) -> None:
    async with adapter.run_server(_echo) as url:
        timeout = aiohttp.ClientWSTimeout(ws_receive=0.2, ws_close=4)
        async with adapter.connect(url, timeout=timeout) as ws:
            assert ws.core.config.close_timeout == 4
            with anyio.fail_after(10), pytest.raises(WSTimeoutError):
                await ws.receive()


@pytest.mark.parametrize(
    "option", [{"timeout": 3}, {"receive_timeout": 1}], ids=["timeout", "receive_timeout"]
)
async def test_the_deprecation_warning_points_at_the_caller(adapter: Adapter, option: dict[str, Any]) -> None:
    with pytest.warns(DeprecationWarning) as record:
        adapter.module.connect(DEAD, **option)  # not entered: nothing connects
    assert [w.filename for w in record] == [__file__]


async def test_a_timeout_of_another_type_is_a_type_error(adapter: Adapter) -> None:
    with pytest.raises(TypeError, match="timeout must be a WSTimeout, a number or None"):
        async with adapter.connect(DEAD, timeout="10"):
            pass


async def test_the_usual_spelling_does_not_warn(adapter: Adapter) -> None:
    async with adapter.run_server(_echo) as url:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            async with adapter.connect(url, timeout=WSTimeout(receive=5, close=2)) as ws:
                await ws.send_str("x")
                assert await ws.receive_str() == "x"


# -- client_notakeover=, max_msg_size=0, decode_text=False -------------------------------------------------


async def test_client_notakeover_is_offered_and_messages_still_flow(adapter: Adapter) -> None:
    request = await _sent(adapter, compress=15, client_notakeover=True)
    (offer,) = _values(request, "sec-websocket-extensions")
    assert "permessage-deflate" in offer
    assert "client_no_context_takeover" in offer


async def test_ws_client_notakeover_reports_what_was_agreed(adapter: Adapter) -> None:
    """aiohttp's `ws.client_notakeover` on the client: True when offered (and so agreed)."""
    async with adapter.run_server(_echo) as url:
        for offered in (True, False):
            async with adapter.connect(url, compress=15, client_notakeover=offered) as ws:
                await ws.send_str("x" * 1000)
                assert await ws.receive_str() == "x" * 1000
                assert ws.client_notakeover is offered
        async with adapter.connect(url) as ws:
            assert ws.client_notakeover is False  # no compression at all


async def test_without_client_notakeover_it_is_not_offered(adapter: Adapter) -> None:
    request = await _sent(adapter, compress=15)
    assert "client_no_context_takeover" not in _values(request, "sec-websocket-extensions")[0]


async def test_client_notakeover_without_compression_is_refused(adapter: Adapter) -> None:
    with pytest.raises(ValueError, match="needs compress="):
        async with adapter.connect(DEAD, client_notakeover=True):
            pass


BIG = 5 * 1024 * 1024  # over the default max_msg_size (4 MiB)


async def _send_big(ws: Any) -> None:
    await ws.receive()  # "go"
    await ws.send_bytes(b"\x5a" * BIG)
    await ws.receive()  # the client's close


async def test_max_msg_size_zero_is_no_limit(adapter: Adapter) -> None:
    async with adapter.run_server(_send_big) as url, adapter.connect(url, max_msg_size=0) as ws:
        await ws.send_str("go")
        with anyio.fail_after(30):
            data = await ws.receive_bytes()
        assert len(data) == BIG and data.count(b"\x5a") == BIG


async def test_the_default_max_msg_size_refuses_the_same_message(adapter: Adapter) -> None:
    """The counterpart of the test above: without max_msg_size=0 the message closes with 1009."""
    async with adapter.run_server(_send_big) as url, adapter.connect(url) as ws:
        await ws.send_str("go")
        with anyio.fail_after(30):
            msg = await ws.receive()
        assert msg.type is WSMsgType.ERROR
        assert ws.close_code == 1009


async def _texts(ws: Any) -> None:
    await ws.receive()  # "go"
    await ws.send_str("héllo")
    await ws.send_str('{"a": [1, "é"]}')
    await ws.send_str("third")
    await ws.send_bytes(b"binary stays bytes")
    await ws.receive()


@pytest.mark.parametrize("fragments", [False, True], ids=["whole", "fragment-mode"])
async def test_decode_text_false_gives_text_as_utf8_bytes(adapter: Adapter, fragments: bool) -> None:
    """aiohttp 3.14: `msg.data` is bytes for TEXT, `receive_str()` returns them, `receive_json()`
    hands them to `loads` (orjson takes bytes)."""
    given: list[Any] = []

    def loads(data: Any) -> Any:
        given.append(data)
        return json.loads(data)

    async with (
        adapter.run_server(_texts) as url,
        adapter.connect(url, decode_text=False, fragments=fragments) as ws,
    ):
        await ws.send_str("go")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.TEXT, "héllo".encode())
        assert await ws.receive_json(loads=loads) == {"a": [1, "é"]}
        assert given == ['{"a": [1, "é"]}'.encode()]
        assert await ws.receive_str() == b"third"
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.BINARY, b"binary stays bytes")


async def test_decode_text_false_still_closes_invalid_utf8_with_1007(adapter: Adapter) -> None:
    """RFC 6455 §8.1 holds whatever the option (aiohttp 3.14 skips the check with decode_text=False)."""

    async def bad_text(ws: Any) -> None:
        await ws.receive()
        await ws.send_frame(b"ok \xff\xfe", WSMsgType.TEXT)
        await ws.receive()

    async with adapter.run_server(bad_text) as url, adapter.connect(url, decode_text=False) as ws:
        await ws.send_str("go")
        with anyio.fail_after(10):
            msg = await ws.receive()
        assert msg.type is WSMsgType.ERROR
        assert ws.close_code == 1007


# -- ssl= of a wrong type ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ssl", ["yes", 1, object()], ids=["str", "int", "object"])
async def test_ssl_of_a_wrong_type_is_a_type_error_even_on_ws(adapter: Adapter, ssl: Any) -> None:
    with pytest.raises(TypeError, match=re.escape("ssl should be SSLContext, bool or None, got")):
        async with adapter.connect(DEAD, ssl=ssl):
            pass


async def test_ssl_false_on_ws_is_fine(adapter: Adapter) -> None:
    request = await _sent(adapter, ssl=False)
    assert request.method == "GET"
