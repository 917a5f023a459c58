"""Hostile input against the sans-I/O core, with the memory it costs measured (issue #7, "Hostile input").

No sockets: a peer's bytes are fed straight to a `Connection` in either role, and `tracemalloc` measures
the peak of what the core allocates while it reads them (the input itself is made before tracing
starts). Each test asserts the RFC's close code and a bound on that peak, and records its figures
(input bytes, close code, peak traced bytes) for the table of stress figures printed at the end of the
pytest run.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Iterable, Iterator

import pytest

from tests.core.helpers import KEY, parse_frames, raw_frame
from wscore import Connection, PerMessageDeflate, State, WSConfig, WSMsgType

from .conftest import record_figure

MiB = 1 << 20
LIMIT = MiB
"""`max_message_size` for these tests (the default is 4 MiB)."""
ROLES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])


def feed(conn: Connection, reads: Iterable[bytes]) -> tuple[int, int]:
    """Feed `reads` to `conn` until it closes; (input bytes fed, peak bytes traced meanwhile)."""
    fed = 0
    tracemalloc.start()
    try:
        for data in reads:
            conn.receive_data(data)
            fed += len(data)
            if conn.closed:
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return fed, peak


def record(case: str, conn: Connection, fed: int, peak: int) -> None:
    """Keep a row for the end-of-run table of stress figures (tests/stress/conftest.py)."""
    code = "-" if conn.close_code is None else str(conn.close_code)
    who = "core client" if conn.client else "core server"
    record_figure(f"hostile input: {case}", who, f"{fed:>11,} B in   close {code:>4}   peak {peak:>11,} B")


def frame(conn: Connection, opcode: int, payload: bytes = b"", **kwargs: bool) -> bytes:
    """A frame as `conn`'s peer sends it (masked towards a server)."""
    return raw_frame(opcode, payload, mask=None if conn.client else KEY, **kwargs)


def header(conn: Connection, opcode: int, length: int) -> bytes:
    """Just the header of a frame announcing `length` bytes, in the 64-bit form (RFC 6455 §5.2)."""
    mask = b"" if conn.client else KEY
    return bytes((0x80 | opcode, (0 if conn.client else 0x80) | 127)) + struct.pack("!Q", length) + mask


def error_code(conn: Connection) -> int | None:
    """The code of the ERROR event among `conn`'s events (None without one)."""
    codes = [e.data.code for e in conn.events() if e.type is WSMsgType.ERROR]
    return codes[0] if codes else None


def deflate_block() -> bytes:
    """1 MiB of zeros as one stand-alone deflate block (a full flush resets the window), ~1 KiB long:
    repeated n times it is a valid stream that inflates to n MiB, at deflate's ratio of ~1000:1."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(MiB)) + comp.flush(zlib.Z_FULL_FLUSH)
    assert zlib.decompressobj(-15).decompress(block * 3) == bytes(3 * MiB)
    return block


BLOCK = deflate_block()


class TestCompressionBombs:
    """RFC 7692 with max_message_size 1 MiB: close 1009, and the peak stays under the limit plus a
    constant (a 16 KiB step of inflation, zlib's state) plus the compressed frame's own copy."""

    @ROLES
    def test_a_few_kib_that_inflate_to_4_mib(self, client: bool) -> None:
        conn = Connection(client, WSConfig(max_message_size=LIMIT), deflate=PerMessageDeflate())
        bomb = frame(conn, 0x2, BLOCK * 4, rsv1=True)
        fed, peak = feed(conn, [bomb])
        assert error_code(conn) == 1009
        assert len(bomb) < 5000
        assert peak < LIMIT + 128 * 1024
        record("bomb: 4 KiB inflating to 4 MiB, one frame", conn, fed, peak)

    @ROLES
    def test_a_mib_that_inflates_to_a_gib(self, client: bool) -> None:
        """The largest bomb a 1 MiB frame limit lets through: 1,000 blocks, 1,000 MiB inflated."""
        conn = Connection(client, WSConfig(max_message_size=LIMIT), deflate=PerMessageDeflate())
        bomb = frame(conn, 0x2, BLOCK * 1000, rsv1=True)
        fed, peak = feed(conn, [bomb])
        assert error_code(conn) == 1009
        assert len(bomb) < LIMIT  # under the frame limit: it is inflation that stops it
        assert peak < LIMIT + len(bomb) + 128 * 1024
        record("bomb: 1 MB inflating to 1,000 MiB, one frame", conn, fed, peak)

    @ROLES
    @pytest.mark.parametrize("size", [64, 1024], ids=["64 B", "1 KiB"])
    def test_a_gib_bomb_in_fragments(self, client: bool, size: int) -> None:
        """The same 1,000 MiB as a fragmented message of small compressed frames, a read each.
        A fragment's output is kept as its inflation steps (never joined while the message is
        incomplete), so the peak is the limit plus the constant, even when one fragment inflates to
        nearly the whole limit (the 1 KiB case)."""
        conn = Connection(client, WSConfig(max_message_size=LIMIT), deflate=PerMessageDeflate())
        data = BLOCK * 1000
        pieces = [data[i : i + size] for i in range(0, 32 * size, size)]
        reads = [frame(conn, 0x2, pieces[0], fin=False, rsv1=True)]
        reads += [frame(conn, 0x0, p, fin=False) for p in pieces[1:]]
        fed, peak = feed(conn, reads)
        assert error_code(conn) == 1009
        assert fed < 20 * (size + 14)  # stopped once 1 MiB was inflated, a few frames in
        assert peak < LIMIT + 128 * 1024
        record(f"bomb: 1,000 MiB in {size} B compressed fragments", conn, fed, peak)


@ROLES
def test_for_comparison_a_valid_message_at_the_limit(client: bool) -> None:
    """Not hostile: a valid 1 MiB message in 1 KiB fragments. Delivering it costs its parts plus the
    joined message, about twice the limit, which bounds what any input within the limits can cost."""
    conn = Connection(client, WSConfig(max_message_size=LIMIT))
    part = b"v" * 1024
    wire = frame(conn, 0x2, part, fin=False)
    wire += frame(conn, 0x0, part, fin=False) * 1022 + frame(conn, 0x0, part)
    fed, peak = feed(conn, [wire[i : i + 65536] for i in range(0, len(wire), 65536)])
    (message,) = conn.events()
    assert len(message.data) == LIMIT
    assert peak < 2 * LIMIT + 192 * 1024
    record("(valid 1 MiB message in 1 KiB fragments)", conn, fed, peak)


class TestHugeLengths:
    """A header announcing 2**62 bytes: 1009 at once under a limit, and nothing allocated for the
    announced size without one; 2**63 and up (the most significant bit set) break §5.2: 1002."""

    @ROLES
    def test_2_to_the_62_under_a_limit(self, client: bool) -> None:
        conn = Connection(client, WSConfig(max_message_size=LIMIT))
        fed, peak = feed(conn, [header(conn, 0x2, 1 << 62), b"x" * 65536])
        assert error_code(conn) == 1009
        assert peak < 16 * 1024
        record("length 2**62, limit 1 MiB", conn, fed, peak)

    @ROLES
    def test_2_to_the_62_without_a_limit_costs_what_arrives(self, client: bool) -> None:
        conn = Connection(client, WSConfig(max_message_size=None))
        reads = [header(conn, 0x2, 1 << 62)] + [b"x" * 65536] * 16
        fed, peak = feed(conn, reads)
        assert conn.state is State.OPEN
        assert conn.events() == []
        assert peak < 1.25 * fed  # the 1 MiB received (in a growing buffer), not 2**62
        record("length 2**62, no limit, 1 MiB sent", conn, fed, peak)

    @ROLES
    @pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1], ids=["2**63", "2**64-1"])
    @pytest.mark.parametrize("limit", [LIMIT, None], ids=["limit", "no-limit"])
    def test_the_most_significant_bit(self, client: bool, length: int, limit: int | None) -> None:
        conn = Connection(client, WSConfig(max_message_size=limit))
        fed, peak = feed(conn, [header(conn, 0x2, length), b"x" * 65536])
        assert error_code(conn) == 1002
        assert "most significant bit" in str(conn.exception)
        assert peak < 16 * 1024
        if length == 1 << 63:
            record(f"length 2**63 (MSB set), {'limit 1 MiB' if limit else 'no limit'}", conn, fed, peak)


def endless(first: bytes, read: bytes) -> Iterator[bytes]:
    """A message that never ends: `first`, then the same `read` of continuation frames forever (made
    by the caller, so that its allocation is not counted in the peak)."""
    yield first
    while True:
        yield read


class TestEndlessFragmentedMessages:
    """Continuation frames forever: 1009 once the total passes max_message_size, and until then the
    message costs about its size, whatever the size of its fragments."""

    @ROLES
    @pytest.mark.parametrize("opcode", [0x1, 0x2], ids=["text", "binary"])
    def test_one_kib_fragments(self, client: bool, opcode: int) -> None:
        conn = Connection(client, WSConfig(max_message_size=LIMIT))
        cont = frame(conn, 0x0, b"a" * 1024, fin=False)
        fed, peak = feed(conn, endless(frame(conn, opcode, b"a" * 1024, fin=False), cont * 64))
        assert error_code(conn) == 1009
        assert fed < 1.1 * LIMIT
        assert peak < LIMIT + 128 * 1024
        kind = "text" if opcode == 0x1 else "binary"
        record(f"endless {kind} message, 1 KiB fragments", conn, fed, peak)

    @ROLES
    def test_one_byte_fragments(self, client: bool) -> None:
        """Each fragment costs its byte, not a ~50-byte object and a list slot (that was 40 times the
        limit before fragments were merged; see connection._add_part)."""
        limit = 16 * 1024
        conn = Connection(client, WSConfig(max_message_size=limit))
        cont = frame(conn, 0x0, b"a", fin=False)
        fed, peak = feed(conn, endless(frame(conn, 0x2, b"a", fin=False), cont * 4096))
        assert error_code(conn) == 1009
        assert peak < 1.25 * limit + 8 * 1024
        record("endless binary message, 1 B fragments (limit 16 KiB)", conn, fed, peak)

    @ROLES
    def test_empty_fragments_never_reach_the_limit_and_cost_nothing(self, client: bool) -> None:
        conn = Connection(client, WSConfig(max_message_size=LIMIT))
        cont = frame(conn, 0x0, b"", fin=False)
        reads = endless(frame(conn, 0x2, b"a", fin=False), cont * 10_000)
        fed, peak = feed(conn, (next(reads) for _ in range(11)))  # 100,000 empty fragments
        assert conn.state is State.OPEN
        assert peak < 16 * 1024  # before they were dropped: 8 bytes a fragment, 800 KB
        record("endless message, 100,000 empty fragments", conn, fed, peak)


# 64 pongs, and for a client the 1,024 masking keys it draws from 4 KiB of os.urandom at a time (~46 KB).
PONGS_BOUND = 96 * 1024


class TestPingFloods:
    """RFC 6455 §5.5.2 answers each ping with a pong; §5.5.3 lets an endpoint answer only the most
    recent ping while earlier pongs are unsent. The core queues at most 64 pongs in a row for an
    output nobody takes, so 100,000 pings cost a few KiB, and the last pong answers the last ping."""

    @ROLES
    def test_100000_pings_in_one_read(self, client: bool) -> None:
        conn = Connection(client, WSConfig(max_message_size=LIMIT))
        flood = frame(conn, 0x9, b"") * 99_999 + frame(conn, 0x9, b"last")
        fed, peak = feed(conn, [flood])
        assert conn.state is State.OPEN
        assert conn.events() == []
        pongs = parse_frames(conn.data_to_send())
        assert len(pongs) == 64
        assert pongs[-1].payload == b"last"
        assert {p.opcode for p in pongs} == {0xA}
        assert peak < PONGS_BOUND  # before the cap: ~45 bytes a pong, 4.5 MB
        record("100,000 pings in one read, never drained", conn, fed, peak)

    @ROLES
    def test_pings_over_many_reads_never_drained(self, client: bool) -> None:
        conn = Connection(client, WSConfig(max_message_size=LIMIT))
        flood = frame(conn, 0x9, b"p" * 125) * 1000
        fed, peak = feed(conn, [flood] * 20)
        assert conn.state is State.OPEN
        assert len(parse_frames(conn.data_to_send())) == 64
        assert peak < PONGS_BOUND  # before the cap: 3.4 MB, growing with every read
        record("20 reads of 1,000 pings (125 B), never drained", conn, fed, peak)

    def test_without_autoping_pings_are_events_for_the_application(self) -> None:
        """With autoping off the pings are the application's to read: the core hands each one over as
        an event (the adapters' bounded receive queues apply back-pressure to such a reader)."""
        conn = Connection(False, WSConfig(max_message_size=LIMIT, autoping=False))
        flood = frame(conn, 0x9, b"") * 10_000
        fed, peak = feed(conn, [flood])
        events = conn.events()
        assert len(events) == 10_000
        assert {e.type for e in events} == {WSMsgType.PING}
        assert conn.data_to_send() == b""
        assert peak < 200 * len(events)  # one small event each
        record("10,000 pings, autoping off (events kept)", conn, fed, peak)
