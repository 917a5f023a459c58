"""The broadcast hub on anyio: the kit's `Hub` with anyio's event (its one primitive)."""

from __future__ import annotations

import anyio

from _wscore_kit import hub


class Hub(hub.Hub):
    """A publish/subscribe hub: `Hub()` in-process, `Hub("redis://host:6379")` Redis pub/sub
    (the `redis` extra). See `_wscore_kit.hub` and the README, "Many processes and a broadcast hub"."""

    new_event = anyio.Event
