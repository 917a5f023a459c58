"""The WebSocket connection after the handshake: RFC 6455 §5–§7 and the timeout state.

Bytes in (`receive_data`, `receive_eof`), calls in (`send_*`, `ping`, `close`, `handle_timer`), and
out: `events()`, `data_to_send()`, `next_deadline()`, `close_transport`. No I/O and no clock: time is
the `now` the caller passes (any monotonic seconds).

The state machine, in one place:

    state       input                         -> state      side effect
    CONNECTING  handshake done                -> OPEN
    CONNECTING  handshake failed / timed out  -> CLOSED     close_transport
    OPEN        close()                       -> CLOSING    close frame sent, close deadline armed
    OPEN        close frame, autoclose        -> CLOSED     close frame echoed (server: close_transport)
    OPEN        close frame, no autoclose     -> CLOSING    the application must call close()
    CLOSING     close frame / close()         -> CLOSED     (server: close_transport)
    any         protocol violation            -> CLOSED     close frame with the RFC's code, close_transport
    any         EOF, pong or close timeout    -> CLOSED     code 1006, close_transport
    CLOSED      (client) EOF or close timeout -> CLOSED     close_transport

Every violation raises `ProtocolError` inside the parser and ends in `_fail`, the one path that
turns it into a close code, an ERROR event and a closed state.
"""

from __future__ import annotations

import codecs
import struct
from typing import Final, TypeVar

from . import frames
from ._types import CLOSED_MESSAGE, State, WSMessage, WSMsgType
from .config import DEFAULT_CONFIG, WSConfig
from .errors import (
    ConnectionClosed,
    InvalidStateError,
    MessageTooBig,
    ProtocolError,
    WSTimeoutError,
)
from .extensions import PerMessageDeflate
from .frames import encode_frame, mask, masked_frame, unmask_from, unmask_inplace

__all__ = ["Connection"]

_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_CONTINUATION: Final = WSMsgType.CONTINUATION
_OPEN: Final = State.OPEN
_CLOSING: Final = State.CLOSING
_CLOSED: Final = State.CLOSED
_CONNECTING: Final = State.CONNECTING
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
# WSMessage(...) runs NamedTuple's __new__, a Python function; tuple.__new__ builds the same object in C.
_new_message = tuple.__new__
# receive_data's fast path: frames up to this size; bigger ones go to _parse, which copies large
# payloads once and decodes large text straight from the buffer.
_SMALL: Final = 4095
# A frame at least this big that spans reads is gathered in parts (copied out of each read once, or
# decoded straight from it), not appended to the receive buffer and copied out again.
_BIG: Final = 64 * 1024
_BAD_UTF8: Final = "text message is not valid UTF-8 (RFC 6455 §8.1)"
_NO_LIMIT: Final = 1 << 64  # above any frame length (§5.2 caps it at 2**63 - 1)
# A server's small message is a cached 2-byte header (FIN + opcode, length) and one concatenation.
_TEXT_HEADERS: Final = [bytes((0x81, n)) for n in range(126)]
_BINARY_HEADERS: Final = [bytes((0x82, n)) for n in range(126)]
# Headers packed in one call: FIN + opcode, (MASK +) length, (the client's key).
_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack
_pack_key = struct.Struct("!BB4s").pack
_pack_h_key = struct.Struct("!BBH4s").pack
# Fragments shorter than this are merged as they arrive (see _add_part).
_SMALL_PART: Final = 512
# Pongs queued in a row at most while nobody takes the output; past it only the latest ping is answered.
_MAX_QUEUED_PONGS: Final = 64
_Part = TypeVar("_Part", bytes, str)


def _add_part(parts: list[_Part], part: _Part) -> None:
    """Keep one fragment of a message being received. Empty ones are dropped and small ones merged
    (copying under 1 KiB each), so a message's parts cost about its size even when a peer sends it
    as a million 1-byte or empty fragments, not some 60 bytes of object per fragment."""
    if not part:
        return
    if len(part) < _SMALL_PART and parts and len(parts[-1]) < _SMALL_PART:
        parts[-1] += part
    else:
        parts.append(part)


class Connection:
    """One end of a WebSocket connection, as a pure state machine.

    Create a `ClientConnection` or `ServerConnection` to include the HTTP upgrade; create this class
    directly to start in the OPEN state after someone else's handshake (`client` says our role,
    `deflate` and `subprotocol` what was negotiated).

    The driver fast path (public, and held to by `tests/core/test_fast_path.py`): after a call such as
    `receive_data()`, a driver may read `state`, `pending_output` and `pending_events` directly instead
    of calling `data_to_send()` and `events()`, to spend no call on a read that produced nothing. A
    driver that reads `pending_events` must empty that list in place (`.clear()`) once it has taken
    the events; one that reads `pending_output` takes its bytes with `data_to_send()` (or pops a lone
    frame). Nothing else of the object may be written from outside.
    """

    # Slots: a connection's attributes, without a per-instance dict (memory per connection).
    __slots__ = (
        "_autoping",
        "_big_b0",
        "_big_key",
        "_big_left",
        "_big_off",
        "_big_parts",
        "_big_text",
        "_big_utf8",
        "_buf",
        "_close_deadline",
        "_close_received",
        "_close_sent",
        "_expect_mask",
        "_fragments",
        "_last_pong",
        "_last_recv",
        "_max_frame",
        "_max_message",
        "_msg_compressed",
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_msg_text",
        "_now",
        "_open_deadline",
        "_ping_sent_at",
        "_pongs_queued",
        "_probe",
        "_probe_checked",
        "_send_compressed",
        "_send_opcode",
        "_send_streamed",
        "_small_limit",
        "_utf8",
        "abort_transport",
        "client",
        "close_code",
        "close_reason",
        "close_transport",
        "config",
        "deflate",
        "exception",
        "pending_events",
        "pending_output",
        "state",
        "subprotocol",
    )

    def __init__(
        self,
        client: bool,
        config: WSConfig | None = None,
        *,
        deflate: PerMessageDeflate | None = None,
        subprotocol: str | None = None,
        now: float | None = None,
        _state: State = State.OPEN,
    ) -> None:
        self.config: Final = config or DEFAULT_CONFIG
        self.client: Final = client
        self.subprotocol = subprotocol
        self.deflate = deflate
        self.exception: BaseException | None = None
        """Why the connection failed or dropped (a `ProtocolError`, `WSTimeoutError`, ...), else None."""
        self.close_code: int | None = None
        """The peer's close code; the code we sent when we failed the connection; 1006 when it dropped."""
        self.close_reason: str = ""
        self.close_transport = False
        """True once the driver should close the TCP connection (RFC 6455 §7.1.1)."""
        self.abort_transport = False
        """True when the connection was dropped (1006, e.g. a close or pong timeout): close TCP at
        once instead of flushing first, so `close()` stays within the close timeout."""

        self.state: State = _state
        """CONNECTING, OPEN, CLOSING or CLOSED (read-only: a plain attribute so that drivers read it
        without a call)."""
        self._buf = bytearray()
        self.pending_events: list[WSMessage] = []
        """The events not yet taken, oldest first (the driver fast path; see the class docstring)."""
        self.pending_output: list[bytes] = []
        """The byte strings not yet taken for writing, in order (the driver fast path)."""
        self._expect_mask = 0 if client else 0x80
        self._autoping = self.config.autoping
        self._max_message = self.config.max_message_size
        max_frame = self.config.max_frame_size
        if self._max_message is not None and (max_frame is None or max_frame > self._max_message):
            max_frame = self._max_message
        self._max_frame = max_frame
        self._fragments = self.config.fragments
        if self._fragments:
            # Fragment mode holds one frame (inflated: one step) at a time, never a message: each frame
            # is bounded by `max_frame_size` (default `max_message_size`); a message's total is the
            # reader's to bound (the adapters' receive() bounds what it joins by `max_message_size`).
            self._max_message = None
        # receive_data's fast path takes data frames up to this length (-1: none, in fragment mode).
        small = _SMALL if max_frame is None else min(_SMALL, max_frame)
        self._small_limit = -1 if self._fragments else small

        # The message being received: its opcode (0 when none), size so far, and parts.
        self._msg_opcode = 0
        self._msg_compressed = False
        self._msg_size = 0
        self._msg_parts: list[bytes] = []
        self._msg_text: list[str] = []
        self._utf8 = _Utf8Decoder()
        # Fail-fast UTF-8 check of a text frame that has only partly arrived.
        self._probe_checked = 0
        self._probe: codecs.IncrementalDecoder | None = None
        # A frame of _BIG bytes or more that spans reads (see _start_big): payload bytes still to come
        # (0: none), its first byte, masking key and offset, and its parts so far: bytes, or for a whole
        # text message str decoded as it arrives; the decoder checks (or decodes) text as it comes.
        self._big_left = 0
        self._big_b0 = 0
        self._big_key: bytes | None = None
        self._big_off = 0
        self._big_parts: list[bytes] = []
        self._big_text: list[str] | None = None
        self._big_utf8: codecs.IncrementalDecoder | None = None
        # The message being sent in fragments: its opcode (0 when none) and whether it is compressed.
        self._send_opcode = 0
        self._send_compressed = False
        self._send_streamed = False  # that message is sent by send_fragment (see there)

        self._close_sent = False
        self._close_received = False
        # The run of pongs at the end of the output (see _queue_pong): its length and last frame.
        self._pongs_queued = 0
        self._last_pong = b""

        # Timers (monotonic seconds from the caller); see next_deadline().
        self._now = now
        self._last_recv = now
        self._ping_sent_at: float | None = None
        self._close_deadline: float | None = None
        timeout = self.config.open_timeout
        self._open_deadline: float | None = (
            now + timeout if _state is _CONNECTING and now is not None and timeout else None
        )

    # -- reading the state -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection is CLOSED."""
        return self.state is _CLOSED

    @property
    def close_sent(self) -> bool:
        """True once we sent a close frame (after which nothing else is sent)."""
        return self._close_sent

    def events(self) -> list[WSMessage]:
        """Take the events produced since the last call, oldest first."""
        events = self.pending_events
        if events:
            self.pending_events = []
        return events

    def data_to_send(self) -> bytes:
        """Take the bytes to write to the transport, in order."""
        out = self.pending_output
        if not out:
            return b""
        self.pending_output = []
        return out[0] if len(out) == 1 else b"".join(out)

    # -- input: bytes ------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float | None = None) -> None:
        """Feed bytes read from the transport; events and replies become available.

        `now` records the time of this activity for the heartbeat; without it, the last time given to
        any call is used. `data` is only read during the call, never kept: a driver may pass a view of
        a read buffer it reuses.
        """
        if now is None:
            now = self._now
        else:
            self._now = now
        self._last_recv = now
        if self.state is _OPEN and not self._buf and not self._msg_opcode and not self._big_left:
            # The fast path: a read that starts with whole, unfragmented, uncompressed data frames of
            # up to _SMALL bytes (one message in flight, or a pipelined batch) costs a few operations
            # a frame. Anything else (a control frame, a fragment, a partial or bigger frame, a bad
            # header) stops it, and _parse takes over at that frame.
            n = len(data)
            pos = 0
            mask_bit = self._expect_mask
            hlen = 6 if mask_bit else 2
            limit = self._small_limit
            copy = type(data) is not bytes  # a slice of a bytearray or a view is not a bytes copy
            append = self.pending_events.append
            try:
                while n - pos >= 2:
                    b0 = data[pos]
                    # Without the expected MASK bit (or with an unexpected one) this is >= 128.
                    length = data[pos + 1] ^ mask_bit
                    if length < 126:
                        start = pos + hlen
                    elif length == 126 and n - pos >= 4:
                        length = (data[pos + 2] << 8) | data[pos + 3]
                        if length < 126:
                            break  # not minimally encoded: _parse fails it (RFC 6455 §5.2)
                        start = pos + hlen + 2
                    else:
                        break
                    end = start + length
                    if length > limit or end > n:
                        break
                    # FIN, no RSV bit, and binary (0x82) or text (0x81).
                    if b0 == 0x82:
                        if mask_bit:
                            payload = unmask_from(data, start, end)
                        elif copy:
                            payload = bytes(data[start:end])
                        else:
                            payload = data[start:end]  # type: ignore[assignment]  # bytes, as checked above
                        append(_new_message(WSMessage, (_BINARY, payload, None)))
                    elif b0 == 0x81:
                        try:
                            if mask_bit:
                                text = unmask_from(data, start, end).decode("utf-8")
                            else:
                                text = str(data[start:end], "utf-8")
                        except UnicodeDecodeError:
                            raise ProtocolError(_BAD_UTF8, 1007) from None
                        append(_new_message(WSMessage, (_TEXT, text, None)))
                    else:
                        break
                    pos = end
                if pos < n:
                    self._parse(data, pos)
            except ProtocolError as exc:
                self._fail(exc)
            return
        state = self.state
        if state is not _OPEN and state is not _CLOSING:
            if state is _CONNECTING and data:  # h11 would take an empty read for EOF
                self._receive_handshake_data(bytes(data))
            # After the close handshake or a failure, RFC 6455 §5.5.1: data is discarded.
            return
        if self._close_received:
            return
        try:
            if self._buf or self._big_left:
                data = self._complete_pending(data)
                if not data or self._close_received:
                    return
                if self.state is _OPEN and not self._msg_opcode:
                    self.receive_data(data)  # the rest, on the fast path
                    return
            self._parse(data)
        except ProtocolError as exc:
            self._fail(exc)

    def _complete_pending(self, data: bytes | bytearray | memoryview) -> memoryview:
        """Finish the frame that spans reads with the start of `data`; return the rest of `data`.

        Only the bytes the buffered frame still needs are appended to the buffer (what follows it is
        parsed straight from the read), and a big frame's payload is gathered in parts.
        """
        view = memoryview(data)
        buf = self._buf
        try:
            while view:
                if self._big_left:
                    view = view[self._feed_big(view) :]
                    continue
                if not buf:
                    break
                need = self._buffered_need()
                buf += view[:need]
                view = view[need:]
                self._parse(buf)
                if self._close_received:
                    break
        except ProtocolError:
            view.release()  # the traceback keeps this frame: it must not keep the caller's buffer exported
            raise
        return view

    def _buffered_need(self) -> int:
        """How many more bytes the frame at the start of the buffer needs (to complete its header, if
        that is not whole yet). The header's validity is _parse's to check."""
        buf = self._buf
        n = len(buf)
        if n < 2:
            return 2 - n
        length = buf[1] & 0x7F
        hlen = (2 if length < 126 else 4 if length == 126 else 10) + (4 if self._expect_mask else 0)
        if n < hlen:
            return hlen - n
        if length == 126:
            length = (buf[2] << 8) | buf[3]
        elif length == 127:
            length = int.from_bytes(buf[2:10], "big")
        return max(hlen + length - n, 1)

    def _start_big(self, data: bytes | bytearray | memoryview, b0: int, start: int, length: int) -> None:
        """Gather a data frame of _BIG bytes or more that is not all in `data`; its payload so far is
        `data[start:]` (the header is checked)."""
        opcode = b0 & 0x0F
        self._big_b0 = b0
        self._big_left = length
        self._big_key = bytes(data[start - 4 : start]) if self._expect_mask else None
        self._big_off = 0
        self._big_parts = []
        self._big_text = None
        self._big_utf8 = None
        text_frame = opcode == 1 or (opcode == 0 and self._msg_opcode == 1)
        if text_frame and not (self._msg_compressed or b0 & 0x40):
            # Text, checked as it arrives to fail early (RFC 6455 §8.1); a whole message is decoded
            # as it arrives, a fragment only checked (it is decoded with its message).
            self._big_utf8 = _Utf8Decoder()
            if opcode == 0:
                self._big_utf8.setstate(self._utf8.getstate())
            elif b0 & 0x80 and not self._fragments:
                self._big_text = []
        self._feed_big(memoryview(data)[start:])

    def _feed_big(self, view: memoryview) -> int:
        """Take the next bytes of the big frame from `view`; returns how many it took."""
        take = min(len(view), self._big_left)
        if not take:
            return 0
        piece = view[:take]
        key = self._big_key
        if key is not None:
            offset = self._big_off & 3
            chunk: bytes | memoryview = mask(piece, key[offset:] + key[:offset])
        elif self._big_text is None:
            chunk = bytes(piece)
        else:
            chunk = piece  # decoded below, straight from the read
        self._big_off += take
        left = self._big_left = self._big_left - take
        utf8 = self._big_utf8
        if utf8 is not None:
            try:
                text: str | None = utf8.decode(chunk, not left and self._big_text is not None)
            except UnicodeDecodeError:
                text = None
            if text is None:
                # Raised here, not in the except clause, and with the view released: nothing that
                # outlives this call (the error's context or traceback) keeps the caller's buffer.
                piece.release()
                raise ProtocolError(_BAD_UTF8, 1007)
            if self._big_text is not None:
                self._big_text.append(text)
        if self._big_text is None:
            self._big_parts.append(chunk)  # type: ignore[arg-type]  # bytes: a view only for text
        if not left:
            self._finish_big()
        return take

    def _finish_big(self) -> None:
        b0 = self._big_b0
        text = self._big_text
        parts = self._big_parts
        self._big_parts = []
        self._big_text = self._big_utf8 = self._big_key = None
        if text is not None:
            self.pending_events.append(_new_message(WSMessage, (_TEXT, "".join(text), None)))
            return
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        if b0 == 0x82 and not self._fragments:
            self.pending_events.append(_new_message(WSMessage, (_BINARY, payload, None)))
        else:
            self._data_frame(b0 & 0x0F, payload, b0)

    def _parse(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        # The hot path: everything read more than once per frame is a local, and a whole,
        # uncompressed message in one frame costs one slice (or one unmask) and one tuple.
        append = self.pending_events.append
        expect_mask = self._expect_mask
        max_frame = self._max_frame
        if max_frame is None:
            max_frame = _NO_LIMIT
        max_message = self._max_message
        fragments = self._fragments
        probing = self._probe_checked
        unmask = unmask_from
        new_message = _new_message
        is_bytes = type(data) is bytes
        own_buffer = data is self._buf  # ours to modify: a large masked payload is unmasked in place
        n = len(data)
        while n - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            if (b1 & 0x80) != expect_mask:
                if expect_mask:
                    raise ProtocolError("unmasked frame from a client (RFC 6455 §5.1)")
                raise ProtocolError("masked frame from a server (RFC 6455 §5.1)")
            length = b1 & 0x7F
            # What the first two bytes decide fails at once, without waiting for the rest.
            opcode = b0 & 0x0F
            if b0 & 0x70:
                self._check_rsv(b0, opcode)
            if opcode & 0x8:
                if length > 125:  # 126 and 127 announce a 16- or 64-bit length
                    # Invalid either way, known from these two bytes: a payload over 125 bytes, or
                    # one of at most 125 in a longer form than the minimal one.
                    raise ProtocolError(
                        "control frame with an extended payload length: over 125 bytes (RFC 6455 §5.5)"
                        " or not minimally encoded (§5.2)"
                    )
                if not b0 & 0x80:
                    raise ProtocolError("fragmented control frame (RFC 6455 §5.5)")
                if opcode > 0xA:
                    raise ProtocolError(f"reserved opcode {opcode:#x} (RFC 6455 §5.2)")
            else:
                if opcode > 2:
                    raise ProtocolError(f"reserved opcode {opcode:#x} (RFC 6455 §5.2)")
                # §5.4's order is checked on the header too, so a doomed frame is never buffered.
                if opcode:
                    if self._msg_opcode:
                        raise ProtocolError("new data frame inside a fragmented message (RFC 6455 §5.4)")
                elif not self._msg_opcode:
                    raise ProtocolError("continuation frame without a message to continue (RFC 6455 §5.4)")
            hlen = 2
            if length >= 126:
                if length == 126:
                    if n - pos < 4:
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    if length < 126:
                        raise ProtocolError(
                            f"payload length {length} in the 16-bit form: the minimal number of"
                            " bytes MUST be used (RFC 6455 §5.2)"
                        )
                    hlen = 4
                else:
                    if n - pos < 10:
                        break
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                    if length >> 63:
                        raise ProtocolError(
                            "64-bit payload length with the most significant bit set (RFC 6455 §5.2)"
                        )
                    if length < 65536:
                        raise ProtocolError(
                            f"payload length {length} in the 64-bit form: the minimal number of"
                            " bytes MUST be used (RFC 6455 §5.2)"
                        )
                    hlen = 10
            if not opcode & 0x8:
                # Limits are checked on the header, before the payload is buffered. max_frame is at
                # most max_message, so only a continuation can pass one limit and not the other.
                if length > max_frame:
                    raise MessageTooBig(f"frame of {length} bytes is over the limit of {max_frame}")
                if (
                    opcode == 0
                    and max_message is not None
                    and self._msg_size + length > max_message
                    and not (self._msg_compressed or b0 & 0x40)
                ):
                    raise MessageTooBig(f"message of over {max_message} bytes (max_message_size)")
            if expect_mask:
                hlen += 4
            start = pos + hlen
            end = start + length
            if end > n:
                if length >= _BIG and start <= n:  # the header is whole, the masking key included
                    self._start_big(data, b0, start, length)
                    pos = n
                    break
                if length and (opcode == 1 or (opcode == 0 and self._msg_opcode == 1)):
                    self._probe_partial_text(data, pos, hlen, n)
                break
            if b0 == 0x81 and length >= 4096 and not fragments and (not expect_mask or own_buffer):
                # A whole, large text message: decoded straight from the read or the buffer (masked:
                # unmasked in place first, in our own buffer), without a bytes copy of the payload,
                # which saves one big allocation per message.
                pos = end
                if probing:
                    self._probe_checked = probing = 0
                    self._probe = None
                if expect_mask:
                    unmask_inplace(data, start, end)  # type: ignore[arg-type]  # own_buffer: bytearray
                try:
                    text = str(memoryview(data)[start:end], "utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError("text message is not valid UTF-8 (RFC 6455 §8.1)", 1007) from None
                append(new_message(WSMessage, (_TEXT, text, None)))
                continue
            if expect_mask:
                payload = unmask(data, start, end)
            elif is_bytes:
                payload = data[start:end]  # type: ignore[assignment]  # bytes, as checked above
            elif length < 4096:
                payload = bytes(data[start:end])
            else:
                # From a bytearray (our buffer): one copy, not a bytearray slice and then bytes of it. The
                # view is a temporary, released before the buffer is resized below.
                payload = bytes(memoryview(data)[start:end])
            pos = end
            if probing:
                self._probe_checked = probing = 0
                self._probe = None

            if opcode == 1 or opcode == 2:
                if b0 & 0xC0 == 0x80 and not fragments:
                    # The common case: a whole, uncompressed message in one frame.
                    if opcode == 1:
                        try:
                            append(new_message(WSMessage, (_TEXT, payload.decode("utf-8"), None)))
                        except UnicodeDecodeError:
                            raise ProtocolError(
                                "text message is not valid UTF-8 (RFC 6455 §8.1)", 1007
                            ) from None
                    else:
                        append(new_message(WSMessage, (_BINARY, payload, None)))
                else:
                    self._data_frame(opcode, payload, b0)
            elif opcode == 0:
                self._data_frame(0, payload, b0)
            else:
                self._control_frame(opcode, payload)
                if self._close_received:
                    pos = n
                    break
        if pos:
            if data is self._buf:
                del self._buf[:pos]
            elif pos < n:
                self._buf += data[pos:]
        elif data is not self._buf:
            self._buf += data

    def _check_rsv(self, b0: int, opcode: int) -> None:
        # RSV1 is permessage-deflate's "compressed" bit, only on a message's first frame (RFC 7692 §6).
        if b0 & 0x30 or self.deflate is None or opcode not in (1, 2):
            raise ProtocolError(
                f"RSV bits {(b0 >> 4) & 7:#05b} set without a negotiated extension (RFC 6455 §5.2)"
            )

    def _probe_partial_text(self, data: bytes | bytearray | memoryview, pos: int, hlen: int, n: int) -> None:
        """Validate the UTF-8 of a text frame that has only partly arrived, to fail fast (§8.1)."""
        if self._msg_compressed or data[pos] & 0x40:
            return  # compressed text can only be checked once inflated
        start = pos + hlen + self._probe_checked
        if start >= n:
            return
        if self._probe is None:
            self._probe = _Utf8Decoder()
            if data[pos] & 0x0F == 0:  # a continuation: carry over the message's pending bytes
                self._probe.setstate(self._utf8.getstate())
        chunk: bytes | bytearray
        if self._expect_mask:
            offset = self._probe_checked & 3
            key = bytes(data[pos + hlen - 4 : pos + hlen])
            chunk = mask(memoryview(data)[start:n], key[offset:] + key[:offset])  # one copy, not two
        else:
            chunk = bytes(data[start:n]) if type(data) is memoryview else data[start:n]
        self._probe_checked += n - start
        if chunk.isascii() and not self._probe.getstate()[0]:
            return  # ASCII after a whole character is valid and leaves nothing pending: no decode
        try:
            self._probe.decode(chunk, False)
        except UnicodeDecodeError:
            raise ProtocolError("text message is not valid UTF-8 (RFC 6455 §8.1)", 1007) from None

    def _data_frame(self, opcode: int, payload: bytes, b0: int) -> None:
        fin = bool(b0 & 0x80)
        if opcode:
            self._msg_opcode = opcode
            self._msg_compressed = bool(b0 & 0x40)
            self._msg_size = 0
            if opcode == 1:
                self._utf8.reset()
        if self._msg_compressed:
            assert self.deflate is not None
            limit = None if self._max_message is None else self._max_message - self._msg_size
            if self._fragments:
                self._inflated_pieces(payload, fin, opcode)
                return
            if not fin:
                self._inflated_fragment(self.deflate.decompress_parts(payload, fin, limit))
                return
            payload = self.deflate.decompress(payload, fin, limit)
        self._msg_size += len(payload)
        text = self._msg_opcode == 1
        if text:
            try:
                chunk = self._utf8.decode(payload, fin)
            except UnicodeDecodeError:
                raise ProtocolError("text message is not valid UTF-8 (RFC 6455 §8.1)", 1007) from None
            if self._fragments:
                msg_type = _TEXT if opcode else _CONTINUATION
                self.pending_events.append(WSMessage(msg_type, chunk, fin))
            elif fin:
                self._msg_text.append(chunk)
                self.pending_events.append(WSMessage(_TEXT, "".join(self._msg_text), None))
                self._msg_text = []
            else:
                _add_part(self._msg_text, chunk)
        elif self._fragments:
            msg_type = _BINARY if opcode else _CONTINUATION
            self.pending_events.append(WSMessage(msg_type, payload, fin))
        elif fin:
            if self._msg_parts:
                self._msg_parts.append(payload)
                payload = b"".join(self._msg_parts)
                self._msg_parts = []
            self.pending_events.append(WSMessage(_BINARY, payload, None))
        else:
            _add_part(self._msg_parts, payload)
        if fin:
            self._msg_opcode = 0
            self._msg_size = 0
            self._msg_compressed = False

    def _inflated_pieces(self, payload: bytes, fin: bool, opcode: int) -> None:
        """Fragment mode: deliver a compressed frame as the inflation steps' outputs, one event each,
        so that a reader streaming the message holds a step (16 KiB), not the inflated frame. The
        frame's inflated size is bounded by `max_frame_size` (and what `max_message_size` leaves)."""
        assert self.deflate is not None
        limit = self._max_frame
        if self._max_message is not None:
            left = self._max_message - self._msg_size
            limit = left if limit is None else min(limit, left)
        pieces = self.deflate.decompress_parts(payload, fin, limit)
        pieces.reverse()  # consumed from the end, so that each piece is freed once delivered
        text = self._msg_opcode == 1
        append = self.pending_events.append
        msg_type = (_TEXT if text else _BINARY) if opcode else _CONTINUATION
        while pieces:
            piece = pieces.pop()
            last = not pieces
            if not piece and not last and msg_type is _CONTINUATION:
                continue  # an empty step: nothing to deliver (the first and the last always are)
            self._msg_size += len(piece)
            data: str | bytes = piece
            if text:
                try:
                    data = self._utf8.decode(piece, fin and last)
                except UnicodeDecodeError:
                    raise ProtocolError("text message is not valid UTF-8 (RFC 6455 §8.1)", 1007) from None
            append(WSMessage(msg_type, data, fin and last))
            msg_type = _CONTINUATION
        if fin:
            self._msg_opcode = 0
            self._msg_size = 0
            self._msg_compressed = False

    def _inflated_fragment(self, pieces: list[bytes]) -> None:
        """Keep a compressed message's non-final fragment as the inflation steps' outputs: joined, a
        fragment that inflates to just under the limit would be held twice for a moment."""
        pieces.reverse()  # consumed from the end, so that each piece is freed once kept
        if self._msg_opcode == 1:
            while pieces:
                piece = pieces.pop()
                self._msg_size += len(piece)
                try:
                    chunk = self._utf8.decode(piece, False)
                except UnicodeDecodeError:
                    raise ProtocolError("text message is not valid UTF-8 (RFC 6455 §8.1)", 1007) from None
                _add_part(self._msg_text, chunk)
        else:
            while pieces:
                piece = pieces.pop()
                self._msg_size += len(piece)
                _add_part(self._msg_parts, piece)

    def _control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == frames.OP_PING:
            if self._autoping:
                if not self._close_sent:
                    self._queue_pong(encode_frame(frames.OP_PONG, payload, masked=self.client))
            else:
                self.pending_events.append(WSMessage(WSMsgType.PING, payload, None))
        elif opcode == frames.OP_PONG:
            if not self._autoping:
                self.pending_events.append(WSMessage(WSMsgType.PONG, payload, None))
        else:
            code, reason = frames.parse_close_payload(payload)
            self._close_received = True
            self._buf.clear()
            self._msg_parts = []
            self._msg_text = []
            if self._close_sent:
                # Our close is answered: the handshake is complete; keep the code we learned.
                self.close_code = code
                self.close_reason = reason
                self.pending_events.append(WSMessage(WSMsgType.CLOSE, code, reason))
                self._set_closed()
                return
            self.close_code = code
            self.close_reason = reason
            self.pending_events.append(WSMessage(WSMsgType.CLOSE, code, reason))
            if self.config.autoclose:
                self._send_close(None if code == 1005 else code, "")
                self._set_closed()
            else:
                self.state = _CLOSING

    def _queue_pong(self, pong: bytes) -> None:
        out = self.pending_output
        if out and out[-1] is self._last_pong:  # our last pong is still queued, at the end
            if self._pongs_queued >= _MAX_QUEUED_PONGS:
                # A ping flood that nobody drains: RFC 6455 §5.5.3 lets us answer only the most
                # recent ping while earlier pongs are unsent, so the queue stops growing.
                out[-1] = self._last_pong = pong
                return
            self._pongs_queued += 1
        else:
            self._pongs_queued = 1
        out.append(pong)
        self._last_pong = pong

    # -- input: end of stream and failures -----------------------------------------------------

    def receive_eof(self) -> None:
        """The transport reached EOF (or dropped). Without a completed close handshake: code 1006."""
        self.close_transport = True
        if self.state is _CLOSED:
            self._close_deadline = None
            return
        if self.state is _CONNECTING:
            self._handshake_eof()
            return
        reason = "TCP connection closed without a close frame (RFC 6455 §7.1.5)"
        self.close_code = 1006
        self.close_reason = reason
        if self.exception is None:
            self.exception = ConnectionClosed(1006, reason)
        self._set_closed()

    def _fail(self, exc: ProtocolError) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7): send the close code, stop reading."""
        # Without its traceback: the parser's frames would keep the read and the message so far alive.
        self.exception = exc.with_traceback(None)
        self._buf.clear()
        self._msg_parts = []
        self._msg_text = []
        if not self._close_sent:
            reason = exc.reason.encode("utf-8")[:123].decode("utf-8", "ignore")
            self._send_close(exc.code, reason)
        self.close_code = exc.code
        self.close_reason = exc.reason
        self.pending_events.append(WSMessage(WSMsgType.ERROR, exc, None))
        self._set_closed()
        self.close_transport = True

    def abort(self, exc: BaseException) -> None:
        """Drop the connection now, without a close handshake, for a reason the driver found (its
        own deadline, such as a write timeout): close code 1006, `exc` in `exception`, an ERROR
        event, `close_transport` and `abort_transport` set."""
        self._abort(exc)

    def _abort(self, exc: BaseException) -> None:
        """Drop the connection without a close handshake: code 1006 and `exc` as the reason."""
        self.exception = exc
        self.close_code = 1006
        self.close_reason = str(exc)
        self._buf.clear()
        if self.state is not _CLOSED:
            self.pending_events.append(WSMessage(WSMsgType.ERROR, exc, None))
            self._set_closed()
        self.close_transport = True
        self.abort_transport = True

    def _set_closed(self) -> None:
        self.state = _CLOSED
        self._big_left = 0
        self._big_parts = []
        self._big_text = self._big_utf8 = None
        self._ping_sent_at = None
        self.pending_events.append(CLOSED_MESSAGE)
        if self.client:
            # RFC 6455 §7.1.1: the server closes TCP first; the client waits, within the close timeout.
            if not self.close_transport and self.config.close_timeout and self._now is not None:
                self._close_deadline = self._now + self.config.close_timeout
        else:
            self.close_transport = True

    # -- input: calls --------------------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self._close_sent or self.state is _CLOSED or self.state is _CONNECTING:
            if self.state is _CONNECTING:
                raise InvalidStateError("the opening handshake is not finished")
            raise ConnectionClosed(self.close_code, self.close_reason)

    def send_text(self, data: str, *, fin: bool = True, compress: bool | None = None) -> None:
        """Send a text message (or, with `fin=False`, the first or next fragment of one)."""
        if (
            not self._send_opcode
            and fin
            and self.deflate is None
            and not self._close_sent
            and (self.state is _OPEN or self.state is _CLOSING)
        ):
            self._frame_whole(0x81, _TEXT_HEADERS, data.encode("utf-8"))
            return
        self._send_data(1, data.encode("utf-8"), fin, compress)

    def send_bytes(
        self,
        data: bytes | bytearray | memoryview,
        *,
        fin: bool = True,
        compress: bool | None = None,
    ) -> None:
        """Send a binary message (or, with `fin=False`, the first or next fragment of one)."""
        if (
            not self._send_opcode
            and fin
            and self.deflate is None
            and not self._close_sent
            and (self.state is _OPEN or self.state is _CLOSING)
        ):
            if type(data) is not bytes:
                data = bytes(data)  # a copy the caller cannot change; len() of a view may count items
            self._frame_whole(0x82, _BINARY_HEADERS, data)
            return
        self._send_data(2, bytes(data), fin, compress)

    def _frame_whole(self, b0: int, small_headers: list[bytes], payload: bytes) -> None:
        """The send fast path: frame a whole, uncompressed message (FIN and opcode in `b0`) inline."""
        n = len(payload)
        if self.client:
            if n >= 65536:
                self.pending_output.append(encode_frame(b0 & 0x0F, payload, masked=True))
            else:
                key = frames.mask_keys.next()
                header = _pack_key(b0, 0x80 | n, key) if n < 126 else _pack_h_key(b0, 0xFE, n, key)
                self.pending_output.append(masked_frame(header, payload, key))
        elif n < 126:
            self.pending_output.append(small_headers[n] + payload)
        elif n < 65536:
            self.pending_output.append(_pack_h(b0, 126, n) + payload)
        else:
            self.pending_output.append(_pack_q(b0, 127, n) + payload)

    def send_fragment(
        self, data: str | bytes | bytearray | memoryview, fin: bool, *, compress: bool | None = None
    ) -> None:
        """Send the first or next frame of a message (TEXT for str data, BINARY for bytes-like) that
        only this method continues: the streamed send of a driver whose application may call
        `send_text`/`send_bytes` meanwhile, which then raise `InvalidStateError` instead of
        becoming part of it (they would continue a message started with `fin=False`)."""
        if isinstance(data, str):
            self._send_data(1, data.encode("utf-8"), fin, compress, streamed=True)
        else:
            self._send_data(2, bytes(data), fin, compress, streamed=True)

    def _send_data(
        self, opcode: int, payload: bytes, fin: bool, compress: bool | None, *, streamed: bool = False
    ) -> None:
        self._check_can_send()
        rsv1 = False
        if self._send_opcode:
            if streamed is not self._send_streamed:
                raise InvalidStateError(
                    "a streamed message is being sent"
                    if self._send_streamed
                    else "a fragmented message is being sent"
                )
            if opcode != self._send_opcode:
                raise InvalidStateError("a fragmented message of the other type is being sent")
            wire_opcode = 0
            compressed = self._send_compressed
        else:
            wire_opcode = opcode
            deflate = self.deflate
            if deflate is None or compress is False:
                compressed = False
            elif compress is None:
                compressed = deflate.should_compress(len(payload))
            else:
                compressed = deflate.compresses
            rsv1 = compressed
        if compressed:
            assert self.deflate is not None
            payload = self.deflate.compress(payload, fin)
        self.pending_output.append(encode_frame(wire_opcode, payload, fin=fin, rsv1=rsv1, masked=self.client))
        if fin:
            self._send_opcode = 0
        else:
            self._send_opcode = opcode
            self._send_compressed = compressed
            self._send_streamed = streamed

    def send_frame(self, payload: bytes, opcode: int, *, fin: bool = True) -> None:
        """Send one raw frame with `opcode` (never compressed). Control frames are checked as in §5.5."""
        if opcode in (frames.OP_PING, frames.OP_PONG):
            self._send_control(opcode, payload)
        elif opcode == frames.OP_CLOSE:
            try:
                code, reason = frames.parse_close_payload(payload) if payload else (None, "")
            except ProtocolError as exc:  # the caller's payload: an argument error, not the peer's
                raise ValueError(exc.reason) from None
            self.close(code, reason)
        elif opcode in (frames.OP_TEXT, frames.OP_BINARY, frames.OP_CONTINUATION):
            self._check_can_send()
            self.pending_output.append(encode_frame(opcode, bytes(payload), fin=fin, masked=self.client))
        else:
            raise ValueError(f"opcode {opcode:#x} is reserved (RFC 6455 §5.2)")

    def send_prepared(self, frame: bytes) -> None:
        """Queue a frame already encoded by `frames.encode_frame` (server side: the same bytes for many
        connections, as `broadcast` does)."""
        if self.client:
            raise InvalidStateError("a client must mask every frame; prepared frames are unmasked")
        self._check_can_send()
        if self._send_opcode:
            raise InvalidStateError("a fragmented message is being sent")
        self.pending_output.append(frame)

    def ping(self, data: bytes = b"", now: float | None = None) -> None:
        """Send a ping (payload of at most 125 bytes)."""
        if now is not None:
            self._now = now
        self._send_control(frames.OP_PING, data)

    def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong, or answer a ping when autoping is off."""
        self._send_control(frames.OP_PONG, data)

    def _send_control(self, opcode: int, data: bytes) -> None:
        if len(data) > 125:
            raise ValueError("control frame payload over 125 bytes (RFC 6455 §5.5)")
        self._check_can_send()
        self.pending_output.append(encode_frame(opcode, bytes(data), masked=self.client))

    def close(self, code: int | None = 1000, reason: str = "", now: float | None = None) -> bool:
        """Start (or complete) the close handshake. Returns False if a close frame was already sent.

        `code=None` sends a close frame without a code. The close deadline starts at `now`.
        """
        if now is not None:
            self._now = now
        if self._close_sent or self.state is _CLOSED:
            return False
        if self.state is _CONNECTING:
            raise InvalidStateError("the opening handshake is not finished; reject it instead")
        self._send_close(code, reason)
        if self._close_received:
            self._set_closed()
        else:
            self.state = _CLOSING
            timeout = self.config.close_timeout
            if timeout and self._now is not None:
                self._close_deadline = self._now + timeout
        return True

    def _send_close(self, code: int | None, reason: str) -> None:
        payload = frames.build_close_payload(code, reason)
        self.pending_output.append(encode_frame(frames.OP_CLOSE, payload, masked=self.client))
        self._close_sent = True
        self._send_opcode = 0

    # -- timers --------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next be called (same clock as `now`), or None.

        As data arrives the heartbeat deadline only moves later, so a driver may keep one timer and
        re-read this when it fires, and after each call that can arm a deadline (`close`, `ping`).
        """
        deadline = self._open_deadline if self.state is _CONNECTING else self._close_deadline
        heartbeat = self.config.heartbeat
        if heartbeat is not None and self.state is _OPEN and self._last_recv is not None:
            ping_sent_at = self._ping_sent_at
            if ping_sent_at is not None and self._last_recv < ping_sent_at:
                # Waiting for the pong: its deadline, but also every heartbeat since the ping, so
                # that once data has come the next ping is a heartbeat after it even when the pong
                # timeout is longer (with no data moving this deadline earlier: one driver timer).
                pong = ping_sent_at + (self.config.effective_pong_timeout or heartbeat)
                now = self._now if self._now is not None else ping_sent_at
                check = ping_sent_at + heartbeat * ((now - ping_sent_at) // heartbeat + 1)
                pong = min(pong, check)
                deadline = pong if deadline is None else min(deadline, pong)
            else:
                # No ping out, or data (a pong or anything) came after it: the next ping is due a
                # heartbeat after the last data.
                ping = self._last_recv + heartbeat
                deadline = ping if deadline is None else min(deadline, ping)
        return deadline

    def handle_timer(self, now: float) -> None:
        """Do what the deadlines due at `now` require: heartbeat ping, pong/close/open timeouts."""
        self._now = now
        if self._last_recv is None:
            self._last_recv = now
        state = self.state
        if state is _CONNECTING:
            if self._open_deadline is not None and now >= self._open_deadline:
                self._handshake_timeout()
            return
        if self._close_deadline is not None and now >= self._close_deadline:
            self._close_deadline = None
            if state is _CLOSED:
                self.close_transport = True  # the server never closed TCP: we do (§7.1.1)
            else:
                self._abort(WSTimeoutError(f"no close frame within {self.config.close_timeout} s"))
            return
        heartbeat = self.config.heartbeat
        if heartbeat is None or state is not _OPEN:
            return
        assert self._last_recv is not None
        if self._ping_sent_at is not None:
            if self._last_recv >= self._ping_sent_at:
                self._ping_sent_at = None  # anything received since the ping proves the peer alive
            else:
                pong_timeout = self.config.effective_pong_timeout or heartbeat
                if now >= self._ping_sent_at + pong_timeout:
                    self._abort(WSTimeoutError(f"no pong within {pong_timeout} s of a heartbeat ping"))
                return
        if now >= self._last_recv + heartbeat:
            self.pending_output.append(encode_frame(frames.OP_PING, b"", masked=self.client))
            self._ping_sent_at = now

    # -- handshake hooks, implemented by the client and server subclasses -------------------------

    def _receive_handshake_data(self, data: bytes) -> None:
        raise InvalidStateError("this connection has no opening handshake")

    def _handshake_eof(self) -> None:
        self.state = _CLOSED

    def _handshake_timeout(self) -> None:
        self.exception = WSTimeoutError(f"opening handshake not finished within {self.config.open_timeout} s")
        self.state = _CLOSED
        self.close_transport = True

    def _opened(self, now: float | None) -> None:
        """The handshake succeeded: go OPEN and parse any frames that came with it."""
        if now is not None:
            self._now = now
        self.state = _OPEN
        self._open_deadline = None
        self._last_recv = self._now
        if self._buf:
            pending = bytes(self._buf)
            self._buf.clear()
            self.receive_data(pending)
