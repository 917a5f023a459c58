"""Frame parsing and serialization without sockets: wscore, wsproto and websockets side by side.

    python -m benchmarks.core                 # every case, about two minutes
    python -m benchmarks.core --quick         # a smoke run in a few seconds
    python -m benchmarks.core --sizes 16,1048576 --ops parse --kinds binary --markdown
    python -m benchmarks.core --chunk 65536   # the stream in 64 KiB reads (--batch 1: a frame per read)
    python -m benchmarks.core --cpu-time      # process CPU time instead of wall time (a busy machine)
    python -m benchmarks.core --memory        # bytes per connection instead of speed
    WSCORE_NO_EXTENSIONS=1 python -m benchmarks.core    # wscore without its C accelerator

Each library runs through the entry point its users' connections really run:

- wscore: `wscore.Connection` (`receive_data` + `events()`, `send_text`/`send_bytes` + `data_to_send()`);
- wsproto: `wsproto.connection.Connection` (what uvicorn and hypercorn drive after their own handshake):
  `receive_data` + `events()`, `send(TextMessage/BytesMessage)`;
- websockets: the sans-I/O `websockets.protocol.Protocol` that its asyncio, sync and trio connections
  drive: `receive_data` + `events_received()`, `send_text`/`send_binary` + `data_to_send()`. Its
  protocol hands text frames over as bytes and the connection's assembler decodes them, so the text
  cases here decode too (`frame.data.decode()`), as wscore and wsproto do inside; likewise text to send
  is encoded first, as its `send(str)` does.

"masked" is the server's side of the wire (it receives masked frames, or, for serialization, the client
sends them); "unmasked" the client's. Frames under 64 KiB arrive `--batch` at a time per
`receive_data` call (as after one socket read); bigger ones one per call, whole, unless `--chunk` splits
the stream. Each measurement is a fixed number of calls (calibrated to `--duration`), repeated
`--repeat` times with the libraries interleaved; the best repeat counts, and every library's output is
checked once for the right messages, so that no library is timed on an error path.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

if __package__ in (None, ""):
    # `python benchmarks/core.py` from a checkout: import the wscore next to this directory.
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

import websockets.frames
import websockets.protocol
import wsproto.connection
import wsproto.events

import wscore
import wscore.frames
from wscore.frames import encode_frame

LIBS = ("wscore", "wsproto", "websockets")
DEFAULT_SIZES = (16, 1024, 64 * 1024, 1024 * 1024)
WSPROTO_CLIENT = wsproto.connection.ConnectionType.CLIENT
WSPROTO_SERVER = wsproto.connection.ConnectionType.SERVER


@dataclass(frozen=True)
class Case:
    """One measurement: parse or serialize `size`-byte text or binary messages, masked or not."""

    op: str  # "parse" or "serialize"
    size: int
    masked: bool
    text: bool

    @property
    def label(self) -> str:
        kind = "text" if self.text else "binary"
        mask = "masked" if self.masked else "unmasked"
        return f"{self.op} {fmt_size(self.size)} {kind} {mask}"

    def payload(self) -> str | bytes:
        # ASCII, so that the byte size is the character count; the bytes cycle so nothing is all zeros.
        raw = bytes(32 + i % 95 for i in range(self.size))
        return raw.decode("ascii") if self.text else raw


def fmt_size(n: int) -> str:
    """16 B, 1 KiB, 64 KiB, 1 MiB."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


# -- parsing -----------------------------------------------------------------------------------------

# A parser takes one received chunk and returns the messages it produced (in the library's own type).
Feed = Callable[[bytes], Sequence[Any]]


def wscore_parser(case: Case) -> Feed:
    """wscore's connection; a server (client=False) receives masked frames."""
    conn = wscore.Connection(client=not case.masked)
    receive = conn.receive_data
    events = conn.events

    def feed(chunk: bytes) -> Sequence[Any]:
        receive(chunk)
        return events()

    return feed


def wsproto_parser(case: Case) -> Feed:
    """wsproto's post-handshake connection; `events()` is a generator, drained as a user would."""
    conn = wsproto.connection.Connection(WSPROTO_SERVER if case.masked else WSPROTO_CLIENT)
    receive = conn.receive_data
    events = conn.events

    def feed(chunk: bytes) -> Sequence[Any]:
        receive(chunk)
        return list(events())

    return feed


def websockets_parser(case: Case) -> Feed:
    """websockets' sans-I/O protocol in the OPEN state (what its connections drive after the handshake)."""
    side = websockets.protocol.Side.SERVER if case.masked else websockets.protocol.Side.CLIENT
    proto = websockets.protocol.Protocol(side, max_size=4 * 1024 * 1024)
    receive = proto.receive_data
    events = proto.events_received
    if case.text:

        def feed_text(chunk: bytes) -> Sequence[Any]:
            receive(chunk)
            # The connection's assembler decodes text frames; the protocol leaves them as bytes.
            return [frame.data.decode() for frame in events()]  # type: ignore[union-attr]

        return feed_text

    def feed(chunk: bytes) -> Sequence[Any]:
        receive(chunk)
        return events()

    return feed


PARSERS: dict[str, Callable[[Case], Feed]] = {
    "wscore": wscore_parser,
    "wsproto": wsproto_parser,
    "websockets": websockets_parser,
}


def message_data(lib: str, message: Any) -> tuple[str | bytes, bool]:
    """The payload of one parsed event and whether it ends a message, for the correctness check.

    wsproto hands over what has arrived of a frame as it arrives (`message_finished=False`)."""
    if lib == "wscore":
        assert isinstance(message, wscore.WSMessage)
        data: str | bytes = message.data
        return data, True
    if lib == "wsproto":
        assert isinstance(message, wsproto.events.Message)
        data = message.data if isinstance(message.data, str) else bytes(message.data)
        return data, message.message_finished
    if isinstance(message, str):
        return message, True
    assert isinstance(message, websockets.frames.Frame)
    return bytes(message.data), message.fin


# -- serialization -----------------------------------------------------------------------------------

# A sender takes one message and returns what the driver writes to the transport.
Send = Callable[[Any], Any]


def wscore_sender(case: Case) -> Send:
    """wscore's connection; a client (masked) or server sends one message and takes the bytes."""
    conn = wscore.Connection(client=case.masked)
    send = conn.send_text if case.text else conn.send_bytes
    take = conn.data_to_send

    def sender(payload: Any) -> bytes:
        send(payload)
        return take()

    return sender


def wsproto_sender(case: Case) -> Send:
    """wsproto's connection: `send(event)` returns the bytes."""
    send = wsproto.connection.Connection(WSPROTO_CLIENT if case.masked else WSPROTO_SERVER).send
    event_type: Any = wsproto.events.TextMessage if case.text else wsproto.events.BytesMessage

    def sender(payload: Any) -> bytes:
        return send(event_type(data=payload))

    return sender


def websockets_sender(case: Case) -> Send:
    """websockets' protocol: `send_*` then `data_to_send()` (a list the connection writes out)."""
    side = websockets.protocol.Side.CLIENT if case.masked else websockets.protocol.Side.SERVER
    proto = websockets.protocol.Protocol(side)
    take = proto.data_to_send
    if case.text:
        send_text = proto.send_text

        def sender_text(payload: Any) -> list[bytes]:
            send_text(payload.encode())  # as its connection's send(str) does
            return take()

        return sender_text
    send_binary = proto.send_binary

    def sender(payload: Any) -> list[bytes]:
        send_binary(payload)
        return take()

    return sender


SENDERS: dict[str, Callable[[Case], Send]] = {
    "wscore": wscore_sender,
    "wsproto": wsproto_sender,
    "websockets": websockets_sender,
}


# -- measuring ---------------------------------------------------------------------------------------


@dataclass
class Workload:
    """What one timed call does for a case: the chunks fed (parse) or the messages sent (serialize)."""

    case: Case
    chunks: list[bytes]  # one "unit" of parse input: the wire bytes of `per_unit` messages
    per_unit: int
    payload: str | bytes


def make_workload(case: Case, batch: int, chunk: int | None) -> Workload:
    payload = case.payload()
    if case.op == "serialize":
        return Workload(case, [], 1, payload)
    raw = payload.encode() if isinstance(payload, str) else payload
    per_unit = max(1, min(batch, 65536 // max(case.size, 1)))
    opcode = 1 if case.text else 2
    wire = b"".join(encode_frame(opcode, raw, masked=case.masked) for _ in range(per_unit))
    chunks = [wire[i : i + chunk] for i in range(0, len(wire), chunk)] if chunk else [wire]
    return Workload(case, chunks, per_unit, payload)


# Wall time by default; --cpu-time switches to this process's CPU time, which leaves out the time
# other processes take the CPU away (a shared machine), though not their effect on the caches.
clock = time.perf_counter


def run_units(lib: str, work: Workload, units: int) -> tuple[float, int]:
    """Time `units` units of work on a fresh connection; returns (seconds, messages)."""
    case = work.case
    if case.op == "parse":
        feed = PARSERS[lib](case)
        chunks = work.chunks * units
        gc.collect()
        gc.disable()
        try:
            start = clock()
            for chunk in chunks:
                feed(chunk)
            elapsed = clock() - start
        finally:
            gc.enable()
        # check() proved that these chunks make exactly per_unit messages per unit.
        return elapsed, units * work.per_unit
    send = SENDERS[lib](case)
    payload = work.payload
    gc.collect()
    gc.disable()
    try:
        start = clock()
        for _ in range(units):
            send(payload)
        elapsed = clock() - start
    finally:
        gc.enable()
    return elapsed, units


def check(lib: str, work: Workload) -> None:
    """Fail loudly unless `lib` turns this workload into the right messages (or the right wire bytes)."""
    case = work.case
    if case.op == "parse":
        feed = PARSERS[lib](case)
        got: list[str | bytes] = []
        partial: list[str | bytes] = []
        for chunk in work.chunks:
            for message in feed(chunk):
                data, finished = message_data(lib, message)
                partial.append(data)
                if finished:
                    got.append(partial[0][:0].join(partial))  # type: ignore[arg-type]
                    partial = []
        if partial or len(got) != work.per_unit:
            raise AssertionError(f"{lib}: {case.label}: {len(got)} messages, expected {work.per_unit}")
        if any(data != work.payload for data in got):
            raise AssertionError(f"{lib}: {case.label}: wrong payload")
        return
    out = SENDERS[lib](case)(work.payload)
    wire = b"".join(out) if isinstance(out, list) else bytes(out)
    # Read it back with wscore on the other side of the wire.
    reader = wscore.Connection(client=not case.masked)
    reader.receive_data(wire)
    events = reader.events()
    if len(events) != 1 or events[0].data != work.payload:
        raise AssertionError(f"{lib}: {case.label}: the frame sent does not read back")


def calibrate(lib: str, work: Workload, duration: float) -> int:
    """The number of units that takes about `duration` seconds for `lib`."""
    units = 1
    while True:
        elapsed, _ = run_units(lib, work, units)
        if elapsed >= duration / 5 or units >= 1 << 24:
            return max(1, int(units * duration / max(elapsed, 1e-9)))
        units *= 4 if elapsed < duration / 50 else 2


@dataclass
class Result:
    """The best repeat of one library on one case."""

    seconds: float
    messages: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def measure(case: Case, libs: Sequence[str], args: argparse.Namespace) -> dict[str, Result]:
    """Check every library on `case`, then time it: the best of `args.repeat` repeats each."""
    duration, repeat = args.duration, args.repeat
    work = make_workload(case, args.batch, args.chunk)
    for lib in libs:
        check(lib, work)
    units = {lib: calibrate(lib, work, duration) for lib in libs}
    best: dict[str, Result] = {}
    for _ in range(repeat):
        # Interleaved, so that a noisy moment on a shared machine hits every library alike.
        for lib in libs:
            elapsed, messages = run_units(lib, work, units[lib])
            result = Result(elapsed, messages)
            if lib not in best or result.rate > best[lib].rate:
                best[lib] = result
    return best


# -- memory ------------------------------------------------------------------------------------------

CONNECTIONS: dict[str, Callable[[], object]] = {
    "wscore": lambda: wscore.Connection(client=False),
    "wsproto": lambda: wsproto.connection.Connection(WSPROTO_SERVER),
    "websockets": lambda: websockets.protocol.Protocol(websockets.protocol.Side.SERVER),
}


def connection_memory(lib: str, count: int = 2000) -> tuple[float, float]:
    """Bytes per OPEN server connection, idle and after one 16-byte message (tracemalloc)."""
    work = make_workload(Case("parse", 16, True, False), 1, None)
    make, feed = CONNECTIONS[lib], PARSERS[lib]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        conns = [make() for _ in range(count)]
        idle = (tracemalloc.get_traced_memory()[0] - base) / count
        del conns
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        feeds = [feed(work.case) for _ in range(count)]
        for f in feeds:
            f(work.chunks[0])
        used = (tracemalloc.get_traced_memory()[0] - base) / count
        del feeds
    finally:
        tracemalloc.stop()
    return idle, used


def memory_table(libs: Sequence[str], markdown: bool) -> str:
    rows = [(lib, *connection_memory(lib)) for lib in libs]
    head = ["library", "idle connection (bytes)", "after one message (bytes)"]
    body = [[lib, f"{idle:,.0f}", f"{used:,.0f}"] for lib, idle, used in rows]
    if markdown:
        return "\n".join(["| " + " | ".join(r) + " |" for r in [head, ["---", "---:", "---:"], *body]])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(3)]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [head, *body]
    )


# -- reporting ---------------------------------------------------------------------------------------


def fmt_rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


def fmt_mbps(case: Case, rate: float) -> str:
    return f"{rate * case.size / 1e6:,.0f}"


def table(rows: list[tuple[Case, dict[str, Result]]], libs: Sequence[str], markdown: bool) -> str:
    peers = [lib for lib in libs if lib != "wscore"]
    head = ["case", *(f"{lib} msg/s" for lib in libs)]
    if "wscore" in libs:
        head.append("wscore MB/s")
        head.extend(f"× {peer}" for peer in peers)
    body: list[list[str]] = []
    for case, results in rows:
        line = [case.label]
        line.extend(fmt_rate(results[lib].rate) for lib in libs)
        if "wscore" in libs:
            ours = results["wscore"].rate
            line.append(fmt_mbps(case, ours))
            line.extend(f"{ours / results[peer].rate:.2f}" for peer in peers)
        body.append(line)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    if markdown:
        rule = "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|"
        return "\n".join(["| " + " | ".join(head) + " |", rule, *("| " + " | ".join(r) + " |" for r in body)])
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [head, *body]
    )


# Issue 2's speed targets: (case, peer, minimum ratio wscore/peer).
TARGETS = [
    (Case("parse", 16, True, False), "wsproto", 3.0),
    (Case("parse", 16, True, False), "websockets", 1.5),
    (Case("parse", 1 << 20, True, False), "websockets", 1.0),
]


def target_lines(rows: list[tuple[Case, dict[str, Result]]]) -> list[str]:
    """One line per speed target whose case and libraries were measured in this run."""
    found = dict(rows)
    lines = []
    for case, peer, minimum in TARGETS:
        results = found.get(case)
        if results is None or "wscore" not in results or peer not in results:
            continue
        ratio = results["wscore"].rate / results[peer].rate
        verdict = "met" if ratio >= minimum else "NOT MET"
        lines.append(f"# target: {case.label} >= {minimum}x {peer}: {ratio:.2f}x, {verdict}")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.core", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", help="payload sizes in bytes (default 16,1024,65536,1048576)")
    p.add_argument("--ops", default="parse,serialize", help="parse, serialize or both")
    p.add_argument("--kinds", default="binary,text", help="binary, text or both")
    p.add_argument("--masks", default="masked,unmasked", help="masked (server side), unmasked (client)")
    p.add_argument("--libs", default=",".join(LIBS), help=f"a subset of {','.join(LIBS)}")
    p.add_argument("--duration", type=float, help="seconds per timed repeat (default 0.1)")
    p.add_argument("--repeat", type=int, help="repeats per library; the best counts (default 5)")
    p.add_argument("--batch", type=int, default=64, help="frames per receive_data call, under 64 KiB")
    p.add_argument("--chunk", type=int, default=None, help="split the received stream into chunks of N bytes")
    p.add_argument("--quick", action="store_true", help="16 B and 64 KiB, short repeats: a smoke run")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--memory", action="store_true", help="only measure memory per connection")
    p.add_argument("--cpu-time", action="store_true", help="time with process CPU time, not wall time")
    args = p.parse_args(argv)
    # --quick changes only the defaults: `--quick --sizes 16` is a quick run of 16 B.
    quick = args.quick
    if args.sizes is None:
        args.sizes = "16,65536" if quick else ",".join(map(str, DEFAULT_SIZES))
    if args.duration is None:
        args.duration = 0.02 if quick else 0.1
    if args.repeat is None:
        args.repeat = 2 if quick else 5
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the cases selected on the command line and print one table."""
    args = parse_args(argv)
    global clock
    clock = time.process_time if args.cpu_time else time.perf_counter
    libs = [lib for lib in args.libs.split(",") if lib]
    unknown = set(libs) - set(LIBS)
    if unknown:
        raise SystemExit(f"unknown libraries: {', '.join(sorted(unknown))}")
    if args.memory:
        print(memory_table(libs, args.markdown))
        return
    cases = [
        Case(op, int(size), mask == "masked", kind == "text")
        for op in args.ops.split(",")
        for size in args.sizes.split(",")
        for mask in args.masks.split(",")
        for kind in args.kinds.split(",")
    ]
    masking = "C accelerator" if wscore.frames._speedups is not None else "pure Python (no C accelerator)"
    print(
        f"# Python {sys.version.split()[0]}, wscore masking: {masking}, wsproto {wsproto.__version__}, "
        f"websockets {websockets.version.version}; best of {args.repeat} x {args.duration} s "
        f"of {'CPU' if args.cpu_time else 'wall'} time",
        file=sys.stderr,
    )
    rows: list[tuple[Case, dict[str, Result]]] = []
    for case in cases:
        results = measure(case, libs, args)
        rows.append((case, results))
        summary = "  ".join(f"{lib} {fmt_rate(results[lib].rate)}/s" for lib in libs)
        print(f"{case.label:<32} {summary}", file=sys.stderr, flush=True)
    print(table(rows, libs, args.markdown))
    for line in target_lines(rows):
        print(line, file=sys.stderr)
    if args.json:
        data = [
            {
                "op": case.op,
                "size": case.size,
                "masked": case.masked,
                "text": case.text,
                **{lib: results[lib].rate for lib in libs},
            }
            for case, results in rows
        ]
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
