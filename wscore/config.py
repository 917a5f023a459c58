"""The connection's policy as one validated value object."""

from __future__ import annotations

from dataclasses import dataclass

from .extensions import DeflateOptions

__all__ = ["WSConfig"]


@dataclass(frozen=True)
class WSConfig:
    """Everything a connection's behaviour depends on, in plain values.

    - `autoping`: answer pings with pongs and hide ping/pong from the events.
    - `autoclose`: answer a peer's close frame at once (echoing its code).
    - `heartbeat`: send a ping after this many seconds without incoming data; `pong_timeout` (default
      `heartbeat / 2`) later, a still silent peer is dropped with code 1006.
    - `close_timeout`: how long to wait for the peer's close frame (and, as a client, for the server to
      close TCP) before giving up; `open_timeout`: the opening handshake's bound.
    - `max_message_size`, `max_frame_size`: limits in bytes (after decompression), close 1009 past them.
    - `fragments`: deliver each data frame as it arrives instead of whole messages (a compressed one as
      its inflation steps). Each frame is then bounded by `max_frame_size` (default: `max_message_size`),
      not the message: joining fragments, and bounding what is joined, is the reader's.
    - `compress`: permessage-deflate options to offer (client) or accept (server); None disables it.
    - `max_handshake_size`, `max_headers`: bounds on the HTTP upgrade request/response.
    """

    autoping: bool = True
    autoclose: bool = True
    heartbeat: float | None = None
    pong_timeout: float | None = None
    close_timeout: float | None = 10.0
    open_timeout: float | None = 10.0
    max_message_size: int | None = 4 * 1024 * 1024
    max_frame_size: int | None = None
    fragments: bool = False
    compress: DeflateOptions | None = None
    max_handshake_size: int = 16 * 1024
    max_headers: int = 128

    def __post_init__(self) -> None:
        for name in ("heartbeat", "pong_timeout", "close_timeout", "open_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, not {value}")
        for name in ("max_message_size", "max_frame_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be non-negative or None, not {value}")
        if self.max_handshake_size < 1024:
            raise ValueError("max_handshake_size must be at least 1024 bytes")
        if self.max_headers < 8:
            raise ValueError("max_headers must be at least 8")

    @property
    def effective_pong_timeout(self) -> float | None:
        """The pong deadline after a heartbeat ping: `pong_timeout`, else half the heartbeat."""
        if self.pong_timeout is not None:
            return self.pong_timeout
        return None if self.heartbeat is None else self.heartbeat / 2


DEFAULT_CONFIG = WSConfig()
