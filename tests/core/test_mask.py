"""RFC 6455 §5.3 masking: every implementation against a trivially correct reference.

`wscore.frames` picks the fastest masking it has (the optional C accelerator, else pure Python that
switches method on size), so each one is checked here on the sizes where its code paths change: empty,
every size to 70, around each 4- and 8-byte boundary, the 125/126 control-size switch, the pure-Python
switch at 4 KiB, 64 KiB and 1 MiB; from buffers at every alignment; with the key rotated as the
partial-frame UTF-8 probe uses it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wscore.connection
from wscore import Connection, WSMsgType, frames

from .helpers import raw_frame

Mask = Callable[[bytes | bytearray | memoryview, bytes | bytearray], bytes]
UnmaskFrom = Callable[[bytes | bytearray, int, int], bytes]

MaskedFrame = Callable[[bytes, bytes | bytearray | memoryview, bytes], bytes]

MASKS: dict[str, Mask] = {"python": frames.mask_py}
UNMASKS: dict[str, UnmaskFrom] = {"python": frames.unmask_from_py}
MASKED_FRAMES: dict[str, MaskedFrame] = {"python": frames.masked_frame_py}
UNMASKS_INPLACE: dict[str, Callable[[bytearray, int, int], None]] = {"python": frames.unmask_inplace_py}
if frames._speedups is not None:
    UNMASKS_INPLACE["c"] = frames._speedups.unmask_inplace
    MASKS["c"] = frames._speedups.mask
    UNMASKS["c"] = frames._speedups.unmask_from
    MASKED_FRAMES["c"] = frames._speedups.masked_frame

KEY = b"\x37\xfa\x21\x3d"  # RFC 6455 §5.7's example key

SIZES = sorted(
    {*range(71)}
    | {n + d for n in (124, 125, 126, 127, 128, 255, 256) for d in (-1, 0, 1)}
    | {n + d for n in (frames._TRANSLATE_MIN, 65536, 1 << 20) for d in (-5, -4, -3, -1, 0, 1, 3, 4, 5)}
)


def reference(data: bytes, key: bytes, offset: int = 0) -> bytes:
    """Byte i is XORed with key[(offset + i) % 4]: RFC 6455 §5.3, spelled out."""
    return bytes(b ^ key[(offset + i) % 4] for i, b in enumerate(data))


def payload(n: int) -> bytes:
    return random.Random(n).randbytes(n)


_expected: dict[int, bytes] = {}


def expected(n: int) -> bytes:
    if n not in _expected:
        _expected[n] = reference(payload(n), KEY)
    return _expected[n]


def test_rfc_example() -> None:
    """§5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58."""
    assert frames.mask(b"Hello", KEY) == bytes.fromhex("7f9f4d5158")
    assert frames.mask(bytes.fromhex("7f9f4d5158"), KEY) == b"Hello"


@pytest.mark.parametrize("impl", sorted(MASKS))
def test_mask_every_size(impl: str) -> None:
    mask = MASKS[impl]
    for n in SIZES:
        data = payload(n)
        assert mask(data, KEY) == expected(n), n


@pytest.mark.parametrize("impl", sorted(MASKS))
@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_mask_accepts_buffers(impl: str, kind: Callable[[bytes], bytes | bytearray | memoryview]) -> None:
    mask = MASKS[impl]
    for n in (0, 1, 5, 125, 126, frames._TRANSLATE_MIN + 3, 65537):
        result = mask(kind(payload(n)), bytearray(KEY))
        assert type(result) is bytes
        assert result == expected(n), n


@pytest.mark.parametrize("impl", sorted(MASKS))
def test_mask_is_its_own_inverse_and_uses_every_key_byte(impl: str) -> None:
    mask = MASKS[impl]
    for key in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x04\x08", os.urandom(4)):
        for n in (3, 64, 4099, 65536):
            data = payload(n)
            masked = mask(data, key)
            assert masked == reference(data, key), (key, n)
            assert mask(masked, key) == data


@pytest.mark.parametrize("impl", sorted(MASKS))
def test_rotated_key_continues_a_payload(impl: str) -> None:
    """The UTF-8 probe unmasks a frame's tail from byte `offset` with the key rotated by offset % 4."""
    mask = MASKS[impl]
    data = payload(300)
    whole = reference(data, KEY)
    for offset in range(12):
        rotated = KEY[offset % 4 :] + KEY[: offset % 4]
        assert mask(data[offset:], rotated) == whole[offset:], offset


@pytest.mark.parametrize("impl", sorted(UNMASKS))
def test_unmask_from_every_size_and_alignment(impl: str) -> None:
    """Straight from a receive buffer: the key just before the payload, at any alignment."""
    unmask_from = UNMASKS[impl]
    for n in SIZES:
        data = payload(n)
        for start in (4, 5, 6, 7, 8, 11) if n < 300 else (4, 7):
            buf = os.urandom(start - 4) + KEY + data + b"\xaa\xbb"
            assert unmask_from(buf, start, start + n) == expected(n), (n, start)
        assert unmask_from(bytearray(buf), start, start + n) == expected(n), n


@pytest.mark.parametrize("impl", sorted(MASKED_FRAMES))
def test_masked_frame_is_the_header_then_the_masked_payload(impl: str) -> None:
    masked_frame = MASKED_FRAMES[impl]
    for n in SIZES:
        for header in (b"", b"\x82\x85" + KEY, bytes(range(14))):
            assert masked_frame(header, payload(n), KEY) == header + expected(n), (n, len(header))
    assert masked_frame(b"h", memoryview(payload(70)), KEY) == b"h" + expected(70)


@pytest.mark.parametrize("impl", sorted(UNMASKS_INPLACE))
def test_unmask_inplace_every_size_and_alignment(impl: str) -> None:
    """In the parser's own buffer: only buf[start:end] changes, to the unmasked payload."""
    unmask_inplace = UNMASKS_INPLACE[impl]
    for n in SIZES:
        for start in (4, 5, 6, 7, 8, 11) if n < 300 else (4, 7):
            head = bytes(range(start - 4)) + KEY
            buf = bytearray(head + payload(n) + b"\xaa\xbb")
            unmask_inplace(buf, start, start + n)
            assert buf == head + expected(n) + b"\xaa\xbb", (n, start)


def test_c_accelerator_checks_its_arguments() -> None:
    if frames._speedups is None:
        return  # nothing compiled to check; the pure-Python paths are covered above
    with pytest.raises(ValueError, match="4 bytes"):
        frames._speedups.mask(b"data", b"abc")
    for start, end in ((3, 4), (4, 9), (6, 5), (-1, 2)):
        with pytest.raises(ValueError):
            frames._speedups.unmask_from(b"keyspayl", start, end)
    with pytest.raises(TypeError):
        frames._speedups.mask("text", KEY)
    with pytest.raises(ValueError, match="4 bytes"):
        frames._speedups.masked_frame(b"h", b"data", b"abcde")
    with pytest.raises(TypeError):
        frames._speedups.masked_frame(b"h", b"data")
    with pytest.raises(BufferError):
        frames._speedups.unmask_inplace(b"keyspayload", 4, 11)  # read-only
    for start, end in ((3, 4), (4, 12), (6, 5)):
        with pytest.raises(ValueError):
            frames._speedups.unmask_inplace(bytearray(b"keyspayload"), start, end)


def test_no_extensions_variable_selects_pure_python() -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "import wscore.frames as f;"
        "print(f.mask is f.mask_py, f.unmask_from is f.unmask_from_py, f.masked_frame is f.masked_frame_py,"
        " f.unmask_inplace is f.unmask_inplace_py)"
    )
    env = {**os.environ, "WSCORE_NO_EXTENSIONS": "1", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"] * 4


@given(data=st.binary(max_size=9000), key=st.binary(min_size=4, max_size=4), start=st.integers(4, 20))
def test_property_all_implementations_agree(data: bytes, key: bytes, start: int) -> None:
    want = reference(data, key)
    for mask in MASKS.values():
        assert mask(data, key) == want
    buf = bytes(start - 4) + key + data
    for unmask_from in UNMASKS.values():
        assert unmask_from(buf, start, start + len(data)) == want
    for masked_frame in MASKED_FRAMES.values():
        assert masked_frame(buf[:start], data, key) == buf[:start] + want
    for unmask_inplace in UNMASKS_INPLACE.values():
        inplace = bytearray(buf)
        unmask_inplace(inplace, start, len(buf))
        assert inplace == buf[:start] + want


def test_mask_keys_are_fresh_4_byte_values() -> None:
    """§5.3: a fresh key per frame from a strong source; 2048 keys span more than one 4 KiB block."""
    keys = [frames.mask_keys.next() for _ in range(2048)]
    assert all(type(k) is bytes and len(k) == 4 for k in keys)
    assert len(set(keys)) > 2040  # 32-bit random values: a handful of collisions at most


def test_forked_child_does_not_reuse_the_parents_keys() -> None:
    if not hasattr(os, "fork"):
        return
    frames.mask_keys.next()  # the parent has a block of keys in hand
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next 8 keys and leave at once
        os.write(write_end, b"".join(frames.mask_keys.next() for _ in range(8)))
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        child = f.read()
    parent = b"".join(frames.mask_keys.next() for _ in range(8))
    assert len(child) == 32
    assert child != parent


@pytest.mark.parametrize("impl", sorted(UNMASKS))
@pytest.mark.parametrize("chunk", [None, 7, 4096])
def test_server_parser_unmasks_with_each_implementation(
    impl: str, chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame parser reads masked frames through `unmask_from`; whichever is installed, from a
    bytes read or from its own bytearray buffer (frames split across reads), the messages are right."""
    monkeypatch.setattr(wscore.connection, "unmask_from", UNMASKS[impl])
    monkeypatch.setattr(wscore.connection, "unmask_inplace", UNMASKS_INPLACE[impl])
    sizes = [0, 1, 3, 4, 5, 125, 126, 127, frames._TRANSLATE_MIN + 1, 65535, 65536, 70001]
    big_text = "¡masked text ✓" * 1000  # over 4 KiB: unmasked in place when it comes through the buffer
    stream = b"".join(raw_frame(2, payload(n), mask=KEY) for n in sizes)
    stream += raw_frame(1, "¡masked text ✓".encode(), mask=KEY[::-1]) + raw_frame(
        1, big_text.encode(), mask=KEY
    )
    conn = Connection(client=False)
    pieces = [stream] if chunk is None else [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    for piece in pieces:
        conn.receive_data(piece)
    events = conn.events()
    assert [(e.type, e.data) for e in events] == [
        *((WSMsgType.BINARY, payload(n)) for n in sizes),
        (WSMsgType.TEXT, "¡masked text ✓"),
        (WSMsgType.TEXT, big_text),
    ]
