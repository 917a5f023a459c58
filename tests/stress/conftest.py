"""The stress and fault suite runs on the same adapter matrix as tests/adapters (see its conftest)."""

from __future__ import annotations

from tests.adapters.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    ADAPTERS,
    Adapter,
    adapter,
    anyio_backend,
    tls_ca,
    tls_client,
    tls_server,
)
