"""The hub's tests run on the adapter matrix of tests/adapters (one test body, every adapter)."""

from __future__ import annotations

from tests.adapters.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    ADAPTERS,
    Adapter,
    adapter,
    anyio_backend,
)
from tests.redis_server import redis_server  # noqa: F401
