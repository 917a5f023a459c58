"""A stateful property test: random interleavings of sends, partial deliveries, corrupt bytes, timer
calls, EOF and closes on a client/server pair never raise anything but the documented errors, and
the protocol's invariants hold at every step.

Documented errors from calls: `ConnectionClosed` (the connection is closing or closed),
`InvalidStateError` (a call the state forbids) and `ValueError` (a bad argument). `receive_data`,
`receive_eof` and `handle_timer` never raise after the handshake: violations become events.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from wscore import (
    ConnectionClosed,
    DeflateOptions,
    InvalidStateError,
    State,
    WSConfig,
    WSMessage,
    WSMsgType,
)

from .helpers import ConnectionPair, FakeClock, parse_frames

DOCUMENTED = (ConnectionClosed, InvalidStateError, ValueError)
ORDER = {State.OPEN: 1, State.CLOSING: 2, State.CLOSED: 3}
SIDES = st.sampled_from(["client", "server"])
CODES = st.sampled_from([None, 1000, 1001, 1011, 1014, 3000, 4999, 999, 1005, 1006, 5000])
payloads = st.binary(max_size=130)
message_data = st.one_of(
    st.text(max_size=200), st.binary(max_size=200), st.binary(min_size=126, max_size=70_000)
)


class PairMachine(RuleBasedStateMachine):
    """Drives a `ConnectionPair` like a hostile network and an erratic application would."""

    pair: ConnectionPair

    @initialize(
        options=st.fixed_dictionaries(
            {
                "compress": st.none()
                | st.just(DeflateOptions())
                | st.just(DeflateOptions(server_no_context_takeover=True)),
                "heartbeat": st.none() | st.sampled_from([1.0, 4.0]),
                "autoclose": st.booleans(),
                "autoping": st.booleans(),
                "fragments": st.booleans(),
            }
        ),
        first=st.lists(message_data, min_size=1, max_size=3),
    )
    def start(self, options: dict[str, Any], first: list[str | bytes]) -> None:
        config = WSConfig(**options, close_timeout=3.0, max_message_size=100_000)
        self.pair = ConnectionPair(client_config=config, server_config=config, clock=FakeClock(0.0))
        self.conns = {"client": self.pair.client, "server": self.pair.server}
        self.wire = {"client": bytearray(), "server": bytearray()}  # bytes on their way TO that side
        self.sent: dict[str, list[object]] = {"client": [], "server": []}  # messages sent BY that side
        self.received: dict[str, list[object]] = {"client": [], "server": []}  # messages received BY it
        self.partial: dict[str, list[object]] = {"client": [], "server": []}
        self.clean_upto = {"client": -1, "server": -1}  # messages sent before garbage was injected
        self.eof = {"client": False, "server": False}
        self.close_sent_at: dict[str, bool] = {"client": False, "server": False}
        self.peer_closed = {"client": False, "server": False}
        self.states = {side: conn.state for side, conn in self.conns.items()}
        self.ended = {"client": False, "server": False}
        # Both sides start with messages in flight, so that most runs deliver data.
        for i, data in enumerate(first):
            self.send_message("client", data, 1)
            self.send_message("server", data, i + 1)

    @staticmethod
    def other(side: str) -> str:
        return "server" if side == "client" else "client"

    def call(self, side: str, action: str, *args: object, **kwargs: object) -> bool:
        """Call `action` on `side`; only documented errors may come out. True if it succeeded."""
        try:
            getattr(self.conns[side], action)(*args, **kwargs)
        except DOCUMENTED:
            return False
        return True

    def take_output(self, side: str) -> None:
        """Move what `side` wants to write onto the wire, checking nothing follows its close frame."""
        data = self.conns[side].data_to_send()
        if not data:
            return
        for frame in parse_frames(data):
            assert not self.close_sent_at[side], f"{side} sent {frame} after its close frame"
            assert frame.masked == (side == "client")
            if frame.opcode == 0x8:
                self.close_sent_at[side] = True
        self.wire[self.other(side)] += data

    def collect(self, side: str) -> None:
        for event in self.conns[side].events():
            self.check_event(side, event)

    def check_event(self, side: str, event: WSMessage) -> None:
        assert not self.ended[side], f"{side} produced {event} after CLOSED"
        conn = self.conns[side]
        if event.type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            assert not self.peer_closed[side], "data after the peer's close frame"
            if conn.config.fragments:
                self.partial[side].append(event.data)
                if event.extra:
                    parts = self.partial[side]
                    if isinstance(parts[0], str):
                        self.received[side].append("".join(str(p) for p in parts))
                    else:
                        self.received[side].append(b"".join(p for p in parts if isinstance(p, bytes)))
                    self.partial[side] = []
            else:
                self.received[side].append(event.data)
        elif event.type in (WSMsgType.PING, WSMsgType.PONG):
            assert not conn.config.autoping
        elif event.type is WSMsgType.CLOSE:
            self.peer_closed[side] = True
        elif event.type is WSMsgType.ERROR:
            assert conn.exception is event.data
        elif event.type is WSMsgType.CLOSED:
            self.ended[side] = True
            assert conn.closed
        else:
            raise AssertionError(f"unexpected event {event}")

    # -- the application ---------------------------------------------------------------------

    @rule(side=SIDES, data=message_data, parts=st.integers(1, 3))
    def send_message(self, side: str, data: str | bytes, parts: int) -> None:
        method = "send_text" if isinstance(data, str) else "send_bytes"
        step = max(1, len(data) // parts)
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [data]
        ok = True
        for i, chunk in enumerate(chunks):
            ok = self.call(side, method, chunk, fin=i == len(chunks) - 1) and ok
            if not ok:
                assert i == 0, "a fragmented send failed half-way"
                break
        if ok:
            self.sent[side].append(data)

    @rule(side=SIDES, payload=payloads, pong=st.booleans())
    def ping_or_pong(self, side: str, payload: bytes, pong: bool) -> None:
        ok = self.call(side, "pong" if pong else "ping", payload)
        if len(payload) > 125:
            assert not ok

    @rule(side=SIDES, code=CODES, reason=st.text(max_size=5))
    def close(self, side: str, code: int | None, reason: str) -> None:
        conn = self.conns[side]
        could = not conn.close_sent and not conn.closed
        try:
            result = conn.close(code, reason if code is not None else "")
        except ValueError:
            assert could, "close() on a closed connection returns False, it does not raise"
            return
        assert result == could  # True only for the call that sent our close frame
        assert conn.close_sent or conn.closed

    @rule(side=SIDES, payload=payloads, opcode=st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xF]))
    def send_frame(self, side: str, payload: bytes, opcode: int) -> None:
        if opcode == 0x1:
            payload = payload.decode("latin-1").encode()  # valid UTF-8 text
        # (send_message finishes its fragmented messages within one step, so a raw data frame never
        # lands inside one of ours.)
        if opcode == 0x0:
            return  # a raw continuation would corrupt the stream on purpose: see inject_garbage
        if opcode in (0x1, 0x2):
            if self.call(side, "send_frame", payload, opcode):
                self.sent[side].append(payload.decode() if opcode == 0x1 else payload)
            return
        self.call(side, "send_frame", payload, opcode)

    # -- the network ---------------------------------------------------------------------------

    @rule(side=SIDES, amount=st.integers(0, 1000) | st.just(10**9))
    def deliver(self, side: str, amount: int) -> None:
        """Deliver up to `amount` bytes of what is on the wire to `side`."""
        self.take_output(self.other(side))
        if self.eof[side]:
            self.wire[side].clear()
            return
        chunk = bytes(self.wire[side][:amount])
        del self.wire[side][:amount]
        self.conns[side].receive_data(chunk, now=self.pair.clock.now)
        self.collect(side)

    @rule()
    def deliver_everything(self) -> None:
        for _ in range(3):
            self.deliver("server", 10**9)
            self.deliver("client", 10**9)

    @rule(side=SIDES, garbage=st.binary(min_size=1, max_size=20), dice=st.integers(0, 3))
    def inject_garbage(self, side: str, garbage: bytes, dice: int) -> None:
        if dice:
            return  # rarer than the other rules, so that most runs carry messages first
        self.take_output(self.other(side))
        if self.clean_upto[self.other(side)] < 0:
            self.clean_upto[self.other(side)] = len(self.sent[self.other(side)])
        self.wire[side] += garbage

    @rule(side=SIDES, dice=st.integers(0, 4))
    def drop(self, side: str, dice: int) -> None:
        """The transport towards `side` drops (rarely)."""
        if not dice:
            self.eof_to(side)

    def eof_to(self, side: str) -> None:
        """The transport towards `side` ends (the peer closed TCP, or it dropped)."""
        if not self.eof[side]:
            self.eof[side] = True
            self.conns[side].receive_eof()
            assert self.conns[side].closed
            assert self.conns[side].close_transport
            self.collect(side)

    @rule(side=SIDES)
    def close_transport_if_asked(self, side: str) -> None:
        """A driver closes TCP when `close_transport` says so: the peer gets the rest, then EOF."""
        if self.conns[side].close_transport:
            self.deliver(self.other(side), 10**9)
            self.eof_to(self.other(side))
            self.eof_to(side)

    @rule(seconds=st.sampled_from([0.1, 0.2, 0.5, 1.0, 5.0]))
    def tick(self, seconds: float) -> None:
        now = self.pair.clock.advance(seconds)
        for side, conn in self.conns.items():
            deadline = conn.next_deadline()
            assert deadline is None or isinstance(deadline, float)
            conn.handle_timer(now)
            self.collect(side)

    # -- invariants ----------------------------------------------------------------------------

    def teardown(self) -> None:
        if hasattr(self, "pair"):  # statistics for --hypothesis-show-statistics: are runs interesting?
            for side, conn in self.conns.items():
                note_event(f"{side} ended {conn.state.name} with code {conn.close_code}")
            delivered = len(self.received["client"]) + len(self.received["server"])
            note_event(f"messages delivered: {min(delivered, 5)}+")

    @invariant()
    def states_only_move_forward(self) -> None:
        for side, conn in self.conns.items():
            assert ORDER[conn.state] >= ORDER[self.states[side]], (side, self.states[side], conn.state)
            self.states[side] = conn.state
            if conn.closed:
                assert conn.close_code is not None

    @invariant()
    def messages_arrive_intact_and_in_order(self) -> None:
        for side in self.conns:
            sender = self.other(side)
            got = self.received[side]
            sent = self.sent[sender]
            limit = len(got) if self.clean_upto[sender] < 0 else min(len(got), self.clean_upto[sender])
            assert got[:limit] == sent[:limit]
            if self.clean_upto[sender] < 0:
                assert len(got) <= len(sent)

    @precondition(lambda self: hasattr(self, "pair"))
    @invariant()
    def errors_carry_their_code(self) -> None:
        for conn in self.conns.values():
            exc = conn.exception
            code = getattr(exc, "code", None)
            if (
                exc is not None
                and conn.closed
                and isinstance(code, int)
                and not isinstance(exc, ConnectionClosed)
            ):
                assert conn.close_code == code


TestPairMachine = PairMachine.TestCase
TestPairMachine.settings = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=150,
    stateful_step_count=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
