"""The optional C accelerator (wscore/_speedups.c); frames.py falls back to pure Python without it."""

def mask(data: bytes | bytearray | memoryview, key: bytes | bytearray, /) -> bytes:
    """XOR `data` with the repeated 4-byte `key` (RFC 6455 §5.3)."""

def unmask_from(buf: bytes | bytearray, start: int, end: int, /) -> bytes:
    """`buf[start:end]` XOR the key at `buf[start-4:start]`."""

def masked_frame(header: bytes, payload: bytes | bytearray | memoryview, key: bytes, /) -> bytes:
    """`header + mask(payload, key)`, built in one buffer."""

def unmask_inplace(buf: bytearray, start: int, end: int, /) -> None:
    """XOR `buf[start:end]` in place with the key at `buf[start-4:start]`."""
