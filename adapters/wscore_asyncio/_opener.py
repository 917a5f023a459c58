"""asyncio's two ways to open something: `obj = await opener` or `async with opener as obj` (closed on
exit), for `connect()` and `serve()`."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any, Generic, Protocol, TypeVar


class _Closable(Protocol):
    def close(self) -> Awaitable[object]: ...


_T = TypeVar("_T", bound=_Closable)


class Opener(Generic[_T]):
    """Awaitable and async context manager around `_open()`."""

    _opened: _T | None = None

    async def _open(self) -> _T:  # pragma: no cover - subclasses implement it
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, _T]:
        return self._open().__await__()

    async def __aenter__(self) -> _T:
        self._opened = await self._open()
        return self._opened

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._opened is not None
        await self._opened.close()
