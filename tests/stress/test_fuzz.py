"""Fuzzing the core in the suite (issue #7, "Hostile input"): arbitrary bytes into both roles, from the
first byte of the handshake or once OPEN, never get anything but the documented outcomes.

Every input goes through `tests.fuzz.core_target.run`, the target the atheris harness
(tests/fuzz/fuzz_core.py) fuzzes for longer by hand; its docstring states the contract it checks.
Hypothesis runs derandomized with fixed example counts, so the suite tries the same
`INPUTS_PER_RUN` inputs every time (more with `--hypothesis-seed`/a larger `max_examples` locally).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from tests.fuzz.core_target import TARGETS, Outcome, run, seeds

RAW, FRAMES, HANDSHAKE, MUTATED = 600, 800, 300, 300
INPUTS_PER_RUN = RAW + FRAMES + HANDSHAKE + MUTATED + len(seeds())
"""How many fuzz inputs one run of this module feeds the core (each fed twice, whole and cut)."""


def fuzz(examples: int) -> settings:
    """Seeded, bounded hypothesis settings: the same `examples` inputs on every run."""
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=examples,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def preamble(targets: list[int]) -> st.SearchStrategy[bytes]:
    """The 3-byte preamble of `core_target.run`: one of `targets`, any switches, limits and cuts."""
    return st.tuples(
        st.sampled_from(targets), st.integers(0, 31), st.integers(0, 255), st.integers(0, 255)
    ).map(lambda t: bytes((t[0] | t[1] << 3, t[2], t[3])))


# First header bytes worth trying more often than chance would: every opcode's usual form, RSV1 on
# data and control frames, fragmented controls, reserved opcodes and RSV2/RSV3.
HEADS = [0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0xC2, 0x41, 0x42, 0xC0, 0x40]
HEADS += [0x83, 0x8B, 0x09, 0xC9, 0xA1, 0x91, 0x0A, 0x8F]
FLAGS = [0x00, 0x80, 0x08, 0x88, 0x01, 0x02, 0x04, 0x03, 0x13, 0x33, 0x53, 0x73]
# Three to one for the listed values, and a wrong mask bit only from FLAGS: most frames then pass the
# header checks and reach the payload.
record = st.tuples(
    st.one_of(*[st.sampled_from(HEADS)] * 3, st.integers(0, 255)),
    st.one_of(*[st.sampled_from(FLAGS)] * 3, st.integers(0, 255).map(lambda f: f & ~0x04)),
    st.binary(max_size=200) | st.tuples(st.integers(1, 250), st.integers(0, 255)),
).map(
    lambda r: (
        bytes((r[0], r[1], 255, *r[2])) if isinstance(r[2], tuple) else bytes((r[0], r[1], len(r[2]))) + r[2]
    )
)
records = st.lists(record, max_size=12).map(b"".join)

EXTENSIONS = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
    "permessage-deflate; server_max_window_bits=8",
    'permessage-deflate; client_max_window_bits="12"',
    "permessage-deflate; client_max_window_bits=16",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; unknown=1",
    "permessage-deflate, permessage-deflate",
    "x-webkit-deflate-frame",
    'permessage-deflate; a="',
    ";;,",
]
header_values = st.sampled_from(EXTENSIONS) | st.text(
    alphabet=st.sampled_from(list('permsag-dflt; _cowinbx=0189",\\\t ')), max_size=60
)


def same_whole_or_cut(data: bytes, *, statistics: bool = True) -> Outcome:
    """Run `data` as the fuzzer made it, and again delivered in one read: however the transport cuts
    the bytes, the core ends the same way with the same events."""
    outcome = run(data)
    whole = run(data[:1] + bytes((data[1] & 0x03,)) + data[2:])
    assert (outcome.events, outcome.error_code, outcome.close_code, outcome.state) == (
        whole.events,
        whole.error_code,
        whole.close_code,
        whole.state,
    )
    assert (outcome.handshake_status, outcome.messages, outcome.pongs) == (
        whole.handshake_status,
        whole.messages,
        whole.pongs,
    )
    if statistics:  # for --hypothesis-show-statistics: which ends the inputs reach
        end = outcome.error_code or outcome.handshake_status or outcome.close_code
        note_event(f"{outcome.target}: {'handshake refused' if outcome.handshake_failed else 'code'} {end}")
    return outcome


@fuzz(RAW)
@given(head=preamble(list(range(len(TARGETS)))), body=st.binary(max_size=1000))
def test_raw_bytes_into_every_target(head: bytes, body: bytes) -> None:
    """Arbitrary bytes as the client's request, the server's response or frames on an OPEN
    connection, in either role, with any configuration."""
    same_whole_or_cut(head + body)


@fuzz(FRAMES)
@given(head=preamble([TARGETS.index("open-frames")]), body=records)
def test_frame_records_into_open_connections(head: bytes, body: bytes) -> None:
    """Frames with valid-looking headers and random opcodes, RSV bits, lengths (lies up to 2**64-1
    included), masks and payloads (compressed or not, UTF-8 or not) get deep into the parser."""
    same_whole_or_cut(head + body)


@fuzz(HANDSHAKE)
@given(
    head=preamble([TARGETS.index("server-frames"), TARGETS.index("client-frames")]),
    extensions=st.none() | header_values,
    body=records,
)
def test_a_handshake_then_frame_records(head: bytes, extensions: str | None, body: bytes) -> None:
    """A valid request or 101 whose Sec-WebSocket-Extensions is fuzzed, with frames in the same reads."""
    value = b"" if extensions is None else extensions.encode("latin-1")[:255]
    same_whole_or_cut(head + bytes((len(value),)) + value + body)


@fuzz(MUTATED)
@given(
    head=preamble([TARGETS.index("server-mutated"), TARGETS.index("client-mutated")]),
    edits=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=15),
    tail=st.binary(max_size=300),
)
def test_mutated_handshakes(head: bytes, edits: list[tuple[int, int]], tail: bytes) -> None:
    """A valid request or 101 with a few bytes overwritten, then arbitrary bytes."""
    program = bytes((len(edits),)) + b"".join(bytes(e) for e in edits)
    same_whole_or_cut(head + program + tail)


def test_the_seed_corpus_reaches_every_outcome() -> None:
    """The atheris seeds (also run here) reach every target, messages, pongs, each protocol close code,
    and refused handshakes on both sides: the input format gets the fuzzer deep."""
    outcomes = [same_whole_or_cut(seed, statistics=False) for seed in seeds()]
    assert {o.target for o in outcomes} == set(TARGETS)
    assert Counter(o.error_code for o in outcomes).keys() >= {1002, 1007, 1009}
    assert any(o.messages for o in outcomes if o.target.startswith("server"))
    assert any(o.messages for o in outcomes if o.target.startswith("client"))
    assert any(o.pongs for o in outcomes)
    assert any(o.handshake_failed and o.target.startswith("server") for o in outcomes)
    assert any(o.handshake_failed and o.target.startswith("client") for o in outcomes)
