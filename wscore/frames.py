"""RFC 6455 §5 framing: opcodes, masking, frame encoding and the close frame's payload.

Parsing lives in `connection.py`, inlined into the receive loop, because a frame's header is read
there straight from the receive buffer; this module holds the pieces both directions share.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable, Iterator
from types import ModuleType

from .errors import ProtocolError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "build_close_payload",
    "encode_frame",
    "is_valid_close_code",
    "mask",
    "parse_close_payload",
    "unmask_from",
    "unmask_inplace",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DATA_OPCODES = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY))
CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))
KNOWN_OPCODES = DATA_OPCODES | CONTROL_OPCODES

_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack
_pack_key = struct.Struct("!BB4s").pack
_pack_h_key = struct.Struct("!BBH4s").pack
_pack_q_key = struct.Struct("!BBQ4s").pack

# Pure-Python masking, two ways, switched on size (measured with benchmarks/core.py): up to ~768
# bytes, the payload and the repeated key as two big integers XORed in C; above, a bytearray copy
# XORed in place by four strided passes of bytes.translate (a C loop each, one XOR table per key
# byte), which skips the int conversions that cost about 0.5 ns a byte each way.
_TRANSLATE_MIN = 768
_xor_tables: list[bytes | None] = [None] * 256


def _xor_table(k: int) -> bytes:
    table = _xor_tables[k]
    if table is None:
        table = _xor_tables[k] = bytes(b ^ k for b in range(256))
    return table


def _xor_strided(buf: bytearray, start: int, end: int, key: bytes | bytearray) -> None:
    buf[start:end:4] = buf[start:end:4].translate(_xor_table(key[0]))
    buf[start + 1 : end : 4] = buf[start + 1 : end : 4].translate(_xor_table(key[1]))
    buf[start + 2 : end : 4] = buf[start + 2 : end : 4].translate(_xor_table(key[2]))
    buf[start + 3 : end : 4] = buf[start + 3 : end : 4].translate(_xor_table(key[3]))


def mask_py(data: bytes | bytearray | memoryview, key: bytes | bytearray) -> bytes:
    """XOR `data` with the 4-byte masking `key` (RFC 6455 §5.3); masking and unmasking are the same."""
    n = len(data)
    if n < _TRANSLATE_MIN:
        return (
            int.from_bytes(data, "little") ^ int.from_bytes((key * ((n >> 2) + 1))[:n], "little")
        ).to_bytes(n, "little")
    out = bytearray(data)
    _xor_strided(out, 0, n, key)
    return bytes(out)


# For a control-sized payload, the key and the payload are read as one integer (key in the low 32
# bits), and the key is repeated by multiplying with 0x...0000000100000001: fewer objects than slicing.
_REPEAT = [int.from_bytes(b"\x01\x00\x00\x00" * ((n + 3) >> 2), "little") for n in range(126)]
_LOW_BYTES = [(1 << (8 * n)) - 1 for n in range(126)]


def unmask_from_py(buf: bytes | bytearray | memoryview, start: int, end: int) -> bytes:
    """Unmask `buf[start:end]` with the key in `buf[start-4:start]`, as a masked frame has it on the wire."""
    n = end - start
    if n < 126:
        v = int.from_bytes(buf[start - 4 : end], "little")
        return (((v >> 32) ^ (v & 0xFFFFFFFF) * _REPEAT[n]) & _LOW_BYTES[n]).to_bytes(n, "little")
    # A view: the payload is copied once, by mask_py; the view is gone when it returns. The key as bytes
    # (mask_py repeats it), also when `buf` is itself a memoryview.
    return mask_py(memoryview(buf)[start:end], bytes(buf[start - 4 : start]))


def unmask_inplace_py(buf: bytearray, start: int, end: int) -> None:
    """Unmask `buf[start:end]` in place with the key in `buf[start-4:start]`."""
    if end - start < _TRANSLATE_MIN:
        buf[start:end] = mask_py(buf[start:end], buf[start - 4 : start])
    else:
        _xor_strided(buf, start, end, buf[start - 4 : start])


def masked_frame_py(header: bytes, payload: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """A client's frame: `header` (which ends with `key`) followed by the masked `payload`."""
    return header + mask_py(payload, key)


_speedups: ModuleType | None = None
if not os.environ.get("WSCORE_NO_EXTENSIONS"):
    try:
        from . import _speedups
    except ImportError:  # not compiled (no C compiler at install time): pure Python does the same
        _speedups = None

mask: Callable[[bytes | bytearray | memoryview, bytes | bytearray], bytes]
masked_frame: Callable[[bytes, bytes | bytearray | memoryview, bytes], bytes]
unmask_from: Callable[[bytes | bytearray | memoryview, int, int], bytes]
unmask_inplace: Callable[[bytearray, int, int], None]
if _speedups is not None:
    mask = _speedups.mask
    masked_frame = _speedups.masked_frame
    unmask_from = _speedups.unmask_from
    unmask_inplace = _speedups.unmask_inplace
else:
    mask = mask_py
    masked_frame = masked_frame_py
    unmask_from = unmask_from_py
    unmask_inplace = unmask_inplace_py


_split_keys = struct.Struct("4s" * 1024).unpack  # 4 KiB into 1024 keys in one C call


def _key_blocks() -> Iterator[tuple[bytes, ...]]:
    while True:
        yield _split_keys(os.urandom(4096))


class _MaskKeys:
    """Masking keys from the OS's CSPRNG (RFC 6455 §10.3), fetched 4 KiB at a time.

    `next()` is a C iterator's `__next__` (one generator step per 1024 keys), so a key costs a call
    into C, not a Python frame. A forked child starts on fresh keys, never its parent's.
    """

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next: Callable[[], bytes]
        self.reset()

    def reset(self) -> None:
        self.next = itertools.chain.from_iterable(_key_blocks()).__next__


mask_keys = _MaskKeys()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=mask_keys.reset)


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    masked: bool = False,
) -> bytes:
    """Serialize one frame. A client's frames are `masked` with a fresh random key (RFC 6455 §5.3)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    n = len(payload)
    if masked:
        key = mask_keys.next()
        if n < 126:
            return masked_frame(_pack_key(b0, 0x80 | n, key), payload, key)
        if n < 65536:
            return masked_frame(_pack_h_key(b0, 0xFE, n, key), payload, key)
        return masked_frame(_pack_q_key(b0, 0xFF, n, key), payload, key)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return _pack_h(b0, 126, n) + payload
    return _pack_q(b0, 127, n) + payload


def is_valid_close_code(code: int) -> bool:
    """Whether `code` may appear in a close frame (RFC 6455 §7.4; 1012–1014 are IANA-registered)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def build_close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame: empty (no code), or the code and a UTF-8 reason (§5.5.1)."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent (RFC 6455 §7.4)")
    data = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason is longer than 123 bytes (RFC 6455 §5.5)")
    return data


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Read a received close frame's payload; an empty one means 1005 (no status code, §7.1.5)."""
    n = len(payload)
    if n == 0:
        return 1005, ""
    if n == 1:
        raise ProtocolError("close frame payload of 1 byte: a close code takes 2 (RFC 6455 §5.5.1)")
    code = (payload[0] << 8) | payload[1]
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code} (RFC 6455 §7.4)")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8 (RFC 6455 §5.5.1)", 1007) from None
    return code, reason
