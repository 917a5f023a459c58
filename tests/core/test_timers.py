"""Timers with an explicit `now`: heartbeat, pong timeout, close timeout, open timeout (design: "Time
comes in as an argument (`now`), deadlines go out as numbers")."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from wscore import Connection, State, WSConfig, WSMsgType, WSTimeoutError

from .helpers import ConnectionPair, FakeClock, open_connection, parse_frames, peer_frame

ROLES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])


def pings(conn: Connection) -> list[bytes]:
    return [f.payload for f in parse_frames(conn.data_to_send()) if f.opcode == 0x9]


class TestHeartbeat:
    """A ping after `heartbeat` seconds without incoming data; then, within the pong timeout
    (default heartbeat / 2), any incoming data proves the peer alive — else 1006 with
    WSTimeoutError."""

    @ROLES
    def test_a_ping_after_heartbeat_seconds_of_silence(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(heartbeat=10), now=0.0)
        assert conn.next_deadline() == 10.0
        conn.handle_timer(9.9)
        assert pings(conn) == []
        conn.handle_timer(10.0)
        assert pings(conn) == [b""]
        assert conn.next_deadline() == 15.0  # the pong deadline: heartbeat / 2

    @ROLES
    def test_incoming_data_postpones_the_ping(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(heartbeat=10), now=0.0)
        conn.receive_data(peer_frame(conn, 0x1, b"hi"), now=6.0)
        assert conn.next_deadline() == 16.0
        conn.handle_timer(10.0)  # a driver's stale timer: nothing to do yet
        assert pings(conn) == []
        conn.handle_timer(16.0)
        assert pings(conn) == [b""]

    @ROLES
    def test_a_pong_in_time_keeps_the_connection(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(heartbeat=10), now=0.0)
        conn.handle_timer(10.0)
        assert pings(conn) == [b""]
        conn.receive_data(peer_frame(conn, 0xA, b""), now=12.0)
        conn.handle_timer(15.0)
        assert conn.state is State.OPEN
        assert conn.next_deadline() == 22.0  # the next heartbeat counts from the pong
        conn.handle_timer(22.0)
        assert pings(conn) == [b""]

    @ROLES
    def test_any_data_counts_as_an_answer(self, client: bool) -> None:
        """ "no pong (no data at all)": a busy peer whose pong is queued behind data is alive."""
        conn = open_connection(client, WSConfig(heartbeat=10), now=0.0)
        conn.handle_timer(10.0)
        conn.receive_data(peer_frame(conn, 0x2, b"data", fin=False)[:3], now=14.0)
        conn.handle_timer(15.0)
        assert conn.state is State.OPEN

    @ROLES
    def test_no_answer_within_the_pong_timeout_is_1006(self, client: bool) -> None:
        conn = open_connection(client, WSConfig(heartbeat=10), now=0.0)
        conn.handle_timer(10.0)
        conn.data_to_send()
        conn.handle_timer(14.9)
        assert conn.state is State.OPEN
        conn.handle_timer(15.0)
        assert conn.closed
        assert conn.close_code == 1006
        assert isinstance(conn.exception, WSTimeoutError)
        assert "no pong within 5.0 s" in str(conn.exception)
        assert conn.close_transport
        assert [e.type for e in conn.events()] == [WSMsgType.ERROR, WSMsgType.CLOSED]
        assert conn.data_to_send() == b""  # dropped, not closed politely: the peer is gone

    def test_an_explicit_pong_timeout(self) -> None:
        conn = open_connection(client=True, config=WSConfig(heartbeat=10, pong_timeout=1), now=0.0)
        conn.handle_timer(10.0)
        assert conn.next_deadline() == 11.0
        conn.handle_timer(11.0)
        assert conn.close_code == 1006

    @ROLES
    def test_after_a_pong_the_cadence_follows_the_last_data_not_the_pong_deadline(self, client: bool) -> None:
        """With a pong timeout longer than the heartbeat, a pong must bring the next ping forward to
        a heartbeat after it: measured before the fix, 1 ping in 5 s with heartbeat=1, pong_timeout=5."""
        conn = open_connection(client, WSConfig(heartbeat=1, pong_timeout=5), now=0.0)
        sent = []
        now = 0.0
        while now < 5.0:
            deadline = conn.next_deadline()
            assert deadline is not None
            now = deadline
            conn.handle_timer(now)
            if pings(conn):
                sent.append(now)
                now += 0.01  # the pong comes back 10 ms later
                conn.receive_data(peer_frame(conn, 0xA, b""), now)
        assert len(sent) == 5, sent
        assert all(abs(b - a - 1.01) < 1e-9 for a, b in itertools.pairwise(sent)), sent

    def test_waiting_for_a_pong_the_deadline_never_moves_earlier(self) -> None:
        """The one-timer contract holds while a ping waits for its pong, however late the pong."""
        conn = open_connection(client=False, config=WSConfig(heartbeat=1, pong_timeout=5), now=0.0)
        conn.handle_timer(1.0)
        assert pings(conn) == [b""]
        deadlines = [conn.next_deadline()]
        for now in (2.0, 3.0):  # the heartbeat checks while no answer has come
            conn.handle_timer(now)
            deadlines.append(conn.next_deadline())
        conn.receive_data(peer_frame(conn, 0xA, b""), 3.5)  # a late pong
        deadlines.append(conn.next_deadline())
        assert deadlines == [2.0, 3.0, 4.0, 4.5]
        assert conn.state is State.OPEN

    def test_no_heartbeat_no_deadline(self) -> None:
        conn = open_connection(client=True, now=0.0)
        assert conn.next_deadline() is None
        conn.handle_timer(1e6)
        assert conn.data_to_send() == b""

    def test_no_heartbeat_while_closing(self) -> None:
        conn = open_connection(client=True, config=WSConfig(heartbeat=1, close_timeout=None), now=0.0)
        conn.close(now=0.5)
        conn.data_to_send()
        assert conn.next_deadline() is None
        conn.handle_timer(10.0)
        assert conn.data_to_send() == b""

    def test_a_connection_created_without_now(self) -> None:
        """Time may start with the first timer call."""
        conn = Connection(True, WSConfig(heartbeat=5))
        assert conn.next_deadline() is None
        conn.handle_timer(100.0)
        assert conn.next_deadline() == 105.0
        conn.handle_timer(105.0)
        assert pings(conn) == [b""]

    def test_deadlines_only_move_later_as_data_arrives(self) -> None:
        """A driver may keep one timer: next_deadline() never moves earlier because data arrived."""
        clock = FakeClock(0.0)
        conn = open_connection(client=False, config=WSConfig(heartbeat=3), now=clock.now)
        previous = conn.next_deadline()
        assert previous is not None
        for _ in range(20):
            conn.receive_data(peer_frame(conn, 0x1, b"x"), now=clock.advance(0.7))
            deadline = conn.next_deadline()
            assert deadline is not None and deadline >= previous
            previous = deadline

    def test_a_pair_with_heartbeats_stays_up(self) -> None:
        """Both sides ping after silence; each answers the other's ping, so nobody times out."""
        pair = ConnectionPair(client_config=WSConfig(heartbeat=2), server_config=WSConfig(heartbeat=3))
        for _ in range(50):
            pair.tick(0.5)
            pair.exchange()
        assert pair.client.state is State.OPEN
        assert pair.server.state is State.OPEN

    def test_a_pair_where_the_peer_stops_answering(self) -> None:
        pair = ConnectionPair(client_config=WSConfig(heartbeat=2))
        pair.tick(2.0)
        pair.client.data_to_send()  # the ping is lost: the server never sees it
        pair.tick(0.9)
        assert pair.client.state is State.OPEN
        pair.tick(0.1)
        assert pair.client.close_code == 1006


class TestCloseAndOpenTimeouts:
    """The close handshake and the opening handshake are bounded too."""

    def test_close_deadline_after_close(self) -> None:
        conn = open_connection(client=False, config=WSConfig(close_timeout=3, heartbeat=100), now=0.0)
        conn.close(now=1.0)
        assert conn.next_deadline() == 4.0
        assert conn.close_transport is False
        conn.handle_timer(4.0)
        assert conn.close_code == 1006
        assert isinstance(conn.exception, WSTimeoutError)
        # Our close frame may sit unread in the send buffer of a peer that stopped reading: the driver
        # must drop TCP now rather than flush, or close() would take a second close timeout.
        assert conn.close_transport and conn.abort_transport

    def test_a_completed_close_handshake_closes_tcp_gracefully(self) -> None:
        conn = open_connection(client=False, config=WSConfig(close_timeout=3), now=0.0)
        conn.close(now=1.0)
        conn.receive_data(peer_frame(conn, 0x8, b"\x03\xe8"), now=2.0)
        assert conn.close_code == 1000
        assert conn.close_transport and not conn.abort_transport

    def test_close_timeout_with_now_from_receive(self) -> None:
        conn = open_connection(client=False, config=WSConfig(close_timeout=3), now=None)
        conn.receive_data(peer_frame(conn, 0x1, b"x"), now=50.0)
        conn.close()
        assert conn.next_deadline() == 53.0

    def test_the_open_deadline_disappears_once_open(self) -> None:
        pair = ConnectionPair(
            client_config=WSConfig(open_timeout=1), server_config=WSConfig(open_timeout=1), handshake=False
        )
        assert pair.client.next_deadline() == pair.clock.now + 1
        assert pair.server.next_deadline() == pair.clock.now + 1
        pair.handshake()
        assert pair.client.next_deadline() is None
        assert pair.server.next_deadline() is None
        pair.tick(5)
        assert pair.client.state is State.OPEN


class TestHeartbeatProperty:
    """Driven by a driver that sleeps until `next_deadline()`, against a peer that sends data at random
    times and answers pings after a random delay (or never):

    - a ping goes out only after `heartbeat` seconds without incoming data, and one at a time;
    - the connection is dropped exactly `pong_timeout` after an unanswered ping, and only then;
    - a peer that answers within the pong timeout is never dropped.
    """

    @settings(derandomize=True, database=None, deadline=None, max_examples=150)
    @given(
        heartbeat=st.sampled_from([1.0, 2.5, 10.0]),
        pong_timeout=st.none() | st.sampled_from([0.5, 3.0]),
        gaps=st.lists(st.floats(0.05, 30.0), max_size=15),
        answer_after=st.none() | st.floats(0.0, 6.0),
        client=st.booleans(),
    )
    def test_heartbeat_schedule(
        self,
        heartbeat: float,
        pong_timeout: float | None,
        gaps: list[float],
        answer_after: float | None,
        client: bool,
    ) -> None:
        effective = pong_timeout if pong_timeout is not None else heartbeat / 2
        conn = open_connection(client, WSConfig(heartbeat=heartbeat, pong_timeout=pong_timeout), now=0.0)
        data_times = list(itertools.accumulate(gaps))
        last_data = 0.0
        ping_at: float | None = None
        pong_due: float | None = None
        now = 0.0
        while now < 100.0 and not conn.closed:
            deadline = conn.next_deadline()
            assert deadline is not None  # a heartbeat connection always has something to wait for
            candidates = [deadline] + data_times[:1] + ([pong_due] if pong_due is not None else [])
            now = max(now, min(candidates))
            if data_times and now == data_times[0]:
                data_times.pop(0)
                conn.receive_data(peer_frame(conn, 0x2, b"data"), now=now)
                last_data = now
            elif pong_due is not None and now == pong_due:
                pong_due = None
                conn.receive_data(peer_frame(conn, 0xA, b""), now=now)
                last_data = now
            else:
                conn.handle_timer(now)
            for frame in parse_frames(conn.data_to_send()):
                assert frame.opcode == 0x9, frame
                assert ping_at is None or last_data >= ping_at, "a second ping while one is unanswered"
                assert now - last_data >= heartbeat - 1e-9
                ping_at = now
                if answer_after is not None:
                    pong_due = now + answer_after
            if conn.closed:
                assert ping_at is not None and last_data < ping_at
                assert now == pytest.approx(ping_at + effective)
                assert conn.close_code == 1006
                assert isinstance(conn.exception, WSTimeoutError)
        if answer_after is not None and answer_after < effective:
            assert not conn.closed
        event("dropped" if conn.closed else "kept")
