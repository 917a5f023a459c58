"""Reconnection, for every adapter's `connect()`: `async for ws in connect(url): ...`.

Each iteration gets a fresh, open connection. When the body's iteration ends:

- the connection was dropped (close code in `RECONNECT_CLOSE_CODES`: 1001 going away — what a server
  that stops sends —, 1006 abnormal, 1011 internal error, 1012 service restart, 1013 try again later):
  wait the first delay of the backoff, then connect again;
- it is still open (the body used `continue`): it is closed (1000) and the next one opened at once;
- it was closed any other way (1000 normal closure, 1008 policy, an application's 4xxx, our own
  `close()`): the loop ends, as it does when the body breaks or returns.

A connection attempt that fails because the server is refused, unreachable or slow (`OSError`,
`WSTimeoutError`), lost during the handshake, or answered 500/502/503/504 is retried after the next
delay; after `max_attempts` such failures in a row (None: never) the last error is raised. Any other
refusal (a 4xx such as 403 or 404, a redirect we may not follow, a bad URL) is raised at once.

Delays: websockets' backoff (`websockets.client.backoff`), with its names and defaults. The first is
random between 0 and `initial_delay` (RFC 6455 §7.2.3: spread the clients of a server that restarts),
then `min_delay`, growing by `factor` up to `max_delay`: 0–5 s, 3.1 s, 5.0 s, 8.1 s, … 90 s. It starts
over after each connection that opened. `reconnect_delays=` takes any function returning an iterator of
delays, e.g. `functools.partial(backoff, initial_delay=0.1, min_delay=0.1, max_delay=2)`.

After `break` (or `return`) the loop's iterator is released and its connection closed (1000) at once on
CPython; `await iterator.aclose()` does it explicitly. On trio and anyio the connection's tasks run in
a task of their own (a trio system task, an asyncio task), so that the iterator holds no cancel scope
between iterations and leaving the loop anywhere is safe.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from wscore import HandshakeError, WSTimeoutError

if TYPE_CHECKING:
    from .backend import EventLike, IOBackend, ScopeLike
    from .options import ClientOptions

__all__ = [
    "BACKOFF_FACTOR",
    "BACKOFF_INITIAL_DELAY",
    "BACKOFF_MAX_DELAY",
    "BACKOFF_MIN_DELAY",
    "RECONNECT_CLOSE_CODES",
    "RETRY_STATUSES",
    "Reconnecting",
    "StreamConnect",
    "backoff",
    "retryable",
]

logger = logging.getLogger("wscore.client")

BACKOFF_INITIAL_DELAY = 5.0
BACKOFF_MIN_DELAY = 3.1
BACKOFF_MAX_DELAY = 90.0
BACKOFF_FACTOR = 1.618

RECONNECT_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013})
"""Close codes after which `async for ws in connect(...)` connects again."""

RETRY_STATUSES = frozenset({500, 502, 503, 504})
"""Answers to the upgrade that are retried (server or proxy errors); any other refusal is raised."""


def backoff(
    initial_delay: float = BACKOFF_INITIAL_DELAY,
    min_delay: float = BACKOFF_MIN_DELAY,
    max_delay: float = BACKOFF_MAX_DELAY,
    factor: float = BACKOFF_FACTOR,
) -> Iterator[float]:
    """The delays before each reconnection attempt: random in [0, initial_delay), then `min_delay`
    multiplied by `factor` each time, then `max_delay` forever."""
    yield random.random() * initial_delay
    delay = min_delay
    while delay < max_delay:
        yield delay
        delay *= factor
    while True:
        yield max_delay


def retryable(exc: BaseException) -> bool:
    """Whether a failed connection attempt may succeed if tried again."""
    if isinstance(exc, HandshakeError):
        return exc.status is None or exc.status in RETRY_STATUSES
    return isinstance(exc, (OSError, WSTimeoutError))


class _Closable(Protocol):
    @property
    def closed(self) -> bool: ...
    @property
    def close_code(self) -> int | None: ...


_W = TypeVar("_W", bound=_Closable)
_W_co = TypeVar("_W_co", covariant=True)
_S_co = TypeVar("_S_co", bound=_Closable, covariant=True)


class Session(Protocol[_W_co]):
    """One connection held by the loop: `ws`, `release()` (close it, 1000 if still open, and wait
    until it is done) and `abandon()` (the same, soon, from synchronous code)."""

    @property
    def ws(self) -> _W_co: ...
    async def release(self) -> None: ...
    def abandon(self) -> None: ...


class Reconnecting(Generic[_W]):
    """The iterator of `async for ws in connect(...)` (see the module's docstring)."""

    def __init__(
        self,
        open_session: Callable[[], Awaitable[Session[_W]]],
        sleep: Callable[[float], Awaitable[None]],
        options: ClientOptions,
    ) -> None:
        self._open_session = open_session
        self._sleep = sleep
        self._max_attempts = options.max_attempts
        self._delays_of = options.reconnect_delays
        self._session: Session[_W] | None = None
        self._ended = False
        self._opened = False

    def __aiter__(self) -> Reconnecting[_W]:
        return self

    async def __anext__(self) -> _W:
        if self._ended:
            raise StopAsyncIteration
        delays: Iterator[float] | None = None
        delay: float | None = None
        session, self._session = self._session, None
        if session is not None:
            still_open = not session.ws.closed
            await session.release()
            code = session.ws.close_code
            if not still_open:
                if code not in RECONNECT_CLOSE_CODES:
                    self._ended = True
                    raise StopAsyncIteration
                delays = self._delays_of()
                delay = next(delays)
                logger.info("connection closed with %s; reconnecting in %.3f s", code, delay)
        failures = 0
        while True:
            if delay is not None:
                await self._sleep(delay)
            try:
                session = await self._open_session()
            except Exception as exc:
                failures += 1
                if not retryable(exc) or (self._max_attempts is not None and failures >= self._max_attempts):
                    self._ended = True
                    if self._max_attempts is not None and failures >= self._max_attempts and retryable(exc):
                        _add_note(exc, f"gave up after {failures} failed connection attempts (max_attempts)")
                    raise
                if delays is None:
                    delays = self._delays_of()
                delay = next(delays)
                logger.info("connect failed (%s); retrying in %.3f s", exc, delay)
                # The swallowed error's traceback holds this frame: were the error kept alive by a
                # cycle (asyncio's often are), this iterator would outlive a `break` in the loop,
                # and so would its connection.
                exc.__traceback__ = None
                continue
            self._session = session
            return session.ws

    async def aclose(self) -> None:
        """End the loop and close its connection (1000)."""
        self._ended = True
        session, self._session = self._session, None
        if session is not None:
            await session.release()

    def __del__(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.abandon()


def _add_note(exc: BaseException, note: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(note)


# -- the sessions of the adapters ----------------------------------------------------------------

_DETACHED: set[Any] = set()


def spawn_detached(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `fn()` in a task of its own, outside the caller's cancel scopes: an asyncio task, or a trio
    system task. (The I/O libraries are imported here, when called, not with the kit.)"""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is None:
            raise RuntimeError("no event loop is running") from None
        trio.lowlevel.spawn_system_task(fn)  # RuntimeError outside trio.run
        return
    task = loop.create_task(fn())
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)


class _Closing(Protocol):
    @property
    def closed(self) -> bool: ...
    @property
    def close_code(self) -> int | None: ...
    def close(self) -> Awaitable[object]: ...


_C = TypeVar("_C", bound=_Closing)


class ClosingSession(Generic[_C]):
    """A session whose connection needs nothing but `close()` (asyncio's)."""

    def __init__(self, ws: _C) -> None:
        self._ws = ws

    @property
    def ws(self) -> _C:
        return self._ws

    async def release(self) -> None:
        await self._ws.close()

    def abandon(self) -> None:
        async def close() -> None:
            await self._ws.close()

        with contextlib.suppress(RuntimeError):  # no event loop any more: nothing to close gracefully
            spawn_detached(close)


class HostedSession(Generic[_W]):
    """A session whose connection runs inside an async context manager (trio, anyio: it owns a task
    group). The context is entered and left by a detached task, so the loop holds no cancel scope
    across its iterations."""

    def __init__(self, io: IOBackend, make: Callable[[], AbstractAsyncContextManager[_W]]) -> None:
        self._io = io
        self._make = make
        self._ready: EventLike = io.event()
        self._release: EventLike = io.event()
        self._done: EventLike = io.event()
        self._scope: ScopeLike | None = None
        self._error: BaseException | None = None
        self._ws: _W | None = None

    @property
    def ws(self) -> _W:
        assert self._ws is not None
        return self._ws

    async def open(self) -> HostedSession[_W]:
        spawn_detached(self._host)
        try:
            await self._ready.wait()
        except BaseException:
            self._release.set()
            if self._scope is not None and self._ws is None:
                self._scope.cancel()  # still connecting
            raise
        if self._error is not None:
            error, self._error = self._error, None
            try:
                raise error
            finally:
                del error  # no cycle through this frame (see `Reconnecting.__anext__`)
        return self

    async def _host(self) -> None:
        try:
            with self._io.cancel_scope() as scope:
                self._scope = scope
                async with self._make() as ws:
                    self._ws = ws
                    self._ready.set()
                    await self._release.wait()
        except BaseException as exc:  # handed to the loop, or the connection's own end
            if self._ws is None:
                self._error = exc
        finally:
            self._ready.set()
            self._done.set()

    async def release(self) -> None:
        self._release.set()
        await self._done.wait()

    def abandon(self) -> None:
        self._release.set()


async def sleep_on(io: IOBackend, delay: float) -> None:
    """Sleep `delay` seconds with the backend's primitives."""
    with io.cancel_scope(deadline=io.current_time() + delay if delay > 0 else -math.inf):
        await io.sleep_forever()


class StreamConnect(Generic[_S_co]):
    """What trio's and anyio's `connect()` return: an async context manager (one connection, closed
    on exit) that is also async-iterable (a fresh connection after each drop: `Reconnecting`)."""

    def __init__(
        self, make: Callable[[], AbstractAsyncContextManager[_S_co]], io: IOBackend, options: ClientOptions
    ) -> None:
        self._make = make
        self._io = io
        self._options = options
        self._cm: AbstractAsyncContextManager[_S_co] | None = None

    async def __aenter__(self) -> _S_co:
        if self._cm is not None:
            raise RuntimeError("this connect() is already entered")
        self._cm = self._make()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        cm, self._cm = self._cm, None
        assert cm is not None
        return await cm.__aexit__(*exc_info)

    def __aiter__(self) -> AsyncIterator[_S_co]:
        io = self._io

        async def open_session() -> Session[_S_co]:
            return await HostedSession(io, self._make).open()

        async def sleep(delay: float) -> None:
            await sleep_on(io, delay)

        return Reconnecting(open_session, sleep, self._options)
