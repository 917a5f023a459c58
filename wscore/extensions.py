"""Sec-WebSocket-Extensions parsing and permessage-deflate (RFC 7692).

Negotiation is a pair of pure functions per role, so an embedding server can call them on its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import MessageTooBig, ProtocolError

__all__ = [
    "DeflateOptions",
    "ExtensionParams",
    "PerMessageDeflate",
    "accept_deflate_offer",
    "deflate_from_header",
    "deflate_offer",
    "negotiate_deflate",
    "parse_extensions",
    "serialize_extensions",
    "validate_deflate_response",
]

ExtensionParams = list[tuple[str, str | None]]
"""An extension's parameters in order, as `(name, value or None)`."""

_TAIL = b"\x00\x00\xff\xff"
# Bounded inflation works in steps of this many bytes in and out (see PerMessageDeflate.decompress).
_STEP = 16 * 1024
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def parse_extensions(header: str) -> list[tuple[str, ExtensionParams]]:
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 §9.1) into `[(name, params), ...]`.

    Values may be tokens or quoted strings. Raises `ValueError` on a malformed header.
    """
    result: list[tuple[str, ExtensionParams]] = []
    i, n = 0, len(header)

    def skip_ws(i: int) -> int:
        while i < n and header[i] in " \t":
            i += 1
        return i

    def token(i: int) -> tuple[str, int]:
        start = i
        while i < n and header[i] in _TOKEN_CHARS:
            i += 1
        if i == start:
            raise ValueError(f"expected a token at position {start} of {header!r}")
        return header[start:i], i

    while True:
        i = skip_ws(i)
        if i >= n:
            break
        if header[i] == ",":  # empty list elements are allowed (RFC 7230 §7)
            i += 1
            continue
        name, i = token(i)
        params: ExtensionParams = []
        i = skip_ws(i)
        while i < n and header[i] == ";":
            i = skip_ws(i + 1)
            pname, i = token(i)
            i = skip_ws(i)
            value: str | None = None
            if i < n and header[i] == "=":
                i = skip_ws(i + 1)
                if i < n and header[i] == '"':
                    i += 1
                    chars = []
                    while i < n and header[i] != '"':
                        if header[i] == "\\" and i + 1 < n:
                            i += 1
                        chars.append(header[i])
                        i += 1
                    if i >= n:
                        raise ValueError(f"unterminated quoted string in {header!r}")
                    i += 1
                    value = "".join(chars)
                    # A quoted value must still be a token (RFC 6455 §9.1).
                    if not value or not set(value) <= _TOKEN_CHARS:
                        raise ValueError(f"quoted value {value!r} is not a token")
                else:
                    value, i = token(i)
            params.append((pname, value))
            i = skip_ws(i)
        result.append((name, params))
        if i < n:
            if header[i] != ",":
                raise ValueError(f"unexpected {header[i]!r} at position {i} of {header!r}")
            i += 1
    return result


def serialize_extensions(extensions: Sequence[tuple[str, ExtensionParams]]) -> str:
    """The inverse of `parse_extensions`."""
    parts = []
    for name, params in extensions:
        items = [name] + [p if v is None else f"{p}={v}" for p, v in params]
        parts.append("; ".join(items))
    return ", ".join(parts)


@dataclass(frozen=True)
class DeflateOptions:
    """What we offer (client) or accept (server) for permessage-deflate, and how we compress.

    `*_max_window_bits` are 8–15 or None (no limit asked). `level` and `mem_level` tune zlib;
    messages shorter than `min_size` bytes are sent uncompressed (RFC 7692 allows either per message).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    level: int = 6
    mem_level: int = 8
    min_size: int = 0

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if bits is not None and not 8 <= bits <= 15:
                raise ValueError(f"{name} must be between 8 and 15, not {bits}")
        if not -1 <= self.level <= 9:
            raise ValueError(f"level must be between -1 and 9, not {self.level}")
        if not 1 <= self.mem_level <= 9:
            raise ValueError(f"mem_level must be between 1 and 9, not {self.mem_level}")


class PerMessageDeflate:
    """A negotiated permessage-deflate: compresses what we send, inflates what we receive.

    "local" is our sending side, "remote" the peer's. Inflation is bounded: `decompress` never
    produces more than `max_size` bytes, so a small frame cannot inflate to gigabytes.
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "level",
        "local_max_window_bits",
        "local_no_context_takeover",
        "mem_level",
        "min_size",
        "remote_max_window_bits",
        "remote_no_context_takeover",
    )

    def __init__(
        self,
        *,
        local_no_context_takeover: bool = False,
        remote_no_context_takeover: bool = False,
        local_max_window_bits: int = 15,
        remote_max_window_bits: int = 15,
        level: int = 6,
        mem_level: int = 8,
        min_size: int = 0,
    ) -> None:
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.level = level
        self.mem_level = mem_level
        # zlib cannot deflate with a 256-byte window (it silently needs 512), so a peer that limits
        # us to 8 bits gets every message uncompressed, which RFC 7692 §6.1 permits.
        self.min_size = min_size if local_max_window_bits > 8 else -1
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    @property
    def compresses(self) -> bool:
        """False when every message goes uncompressed (a window of 8 bits was negotiated for us)."""
        return self.min_size >= 0

    def should_compress(self, size: int) -> bool:
        """Whether a message of `size` bytes is worth compressing."""
        return 0 <= self.min_size <= size

    def compress(self, data: bytes, fin: bool = True) -> bytes:
        """Deflate one frame's worth of a message (RFC 7692 §7.2.1); the tail is dropped on the last."""
        comp = self._compressor
        if comp is None:
            comp = self._compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self.local_max_window_bits, self.mem_level
            )
        out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self.local_no_context_takeover:
                self._compressor = None
        return out

    def decompress(self, data: bytes, fin: bool, max_size: int | None) -> bytes:
        """Inflate one frame of a compressed message, producing at most `max_size` bytes.

        Past `max_size`, `MessageTooBig` is raised having held at most `max_size` bytes of output plus
        a step (16 KiB), however much the frame would inflate to.
        """
        pieces = self.decompress_parts(data, fin, max_size)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def decompress_parts(self, data: bytes, fin: bool, max_size: int | None) -> list[bytes]:
        """`decompress`, as the inflation steps' outputs (for a caller that keeps a message in parts,
        so that one fragment's output is never held twice, as the parts and joined)."""
        decomp = self._decompressor
        if decomp is None:
            decomp = self._decompressor = zlib.decompressobj(-max(9, self.remote_max_window_bits))
        try:
            if max_size is None:
                out = decomp.decompress(data)
                if fin:
                    out += decomp.decompress(_TAIL)
                pieces = [out]
            else:
                pieces = _inflate(decomp, data, fin, max_size)
        except zlib.error as exc:
            raise ProtocolError(f"invalid deflate data: {exc} (RFC 7692 §7.2.2)") from None
        # A block with BFINAL set (RFC 7692 §7.2.3.4) ends the deflate stream: zlib would ignore
        # everything after it, so the next message starts a new stream.
        if fin and (self.remote_no_context_takeover or decomp.eof):
            self._decompressor = None
        return pieces

    def reset_decompressor(self) -> None:
        """Drop the inflate state, e.g. after a message was rejected mid-way."""
        self._decompressor = None

    def response_params(self, *, server: bool) -> ExtensionParams:
        """The parameters that describe this agreement in a server's response header."""
        params: ExtensionParams = []
        server_nct = self.local_no_context_takeover if server else self.remote_no_context_takeover
        client_nct = self.remote_no_context_takeover if server else self.local_no_context_takeover
        server_bits = self.local_max_window_bits if server else self.remote_max_window_bits
        client_bits = self.remote_max_window_bits if server else self.local_max_window_bits
        if server_nct:
            params.append(("server_no_context_takeover", None))
        if client_nct:
            params.append(("client_no_context_takeover", None))
        if server_bits < 15:
            params.append(("server_max_window_bits", str(server_bits)))
        if client_bits < 15:
            params.append(("client_max_window_bits", str(client_bits)))
        return params

    def __repr__(self) -> str:
        return f"PerMessageDeflate({serialize_extensions([('', self.response_params(server=True))])})"


def _inflate(decomp: zlib._Decompress, data: bytes, fin: bool, max_size: int) -> list[bytes]:
    """Inflate `data` (and the §7.2.2 tail if `fin`) into at most `max_size` bytes, else MessageTooBig.

    In and out in steps of at most `_STEP` bytes: zlib's output for a bounded call is built in blocks
    then joined (twice its size for a moment), and its unconsumed input is a copy, so one call with the
    whole frame and `max_size` would hold about two `max_size` plus two frames at its peak.
    """
    inputs: Sequence[bytes | memoryview]
    if len(data) <= _STEP:
        inputs = (data + _TAIL if fin else data,)
    else:
        view = memoryview(data)
        inputs = [view[i : i + _STEP] for i in range(0, len(data), _STEP)]
        if fin:
            inputs.append(_TAIL)
    pieces: list[bytes] = []
    size = 0
    for first in inputs:
        chunk = first
        while True:
            room = min(max_size - size + 1, _STEP)
            out = decomp.decompress(chunk, room)
            size += len(out)
            if size > max_size:
                raise MessageTooBig(f"message inflates to more than {max_size} bytes (max_message_size)")
            pieces.append(out)
            if len(out) < room:
                break  # all of `chunk` is consumed and nothing is pending
            # A full step: input left over, or output still pending inside zlib.
            chunk = decomp.unconsumed_tail
    return pieces


_KNOWN = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)


def _bits(value: str | None, name: str) -> int:
    if value is None or not value.isdigit() or value.startswith("0") or not 8 <= int(value) <= 15:
        raise ValueError(f"{name}={value!r}: must be an integer from 8 to 15 (RFC 7692 §7.1.2)")
    return int(value)


def _check_params(params: ExtensionParams) -> dict[str, str | None]:
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _KNOWN:
            raise ValueError(f"unknown permessage-deflate parameter {name!r} (RFC 7692 §7)")
        if name in seen:
            raise ValueError(f"duplicate permessage-deflate parameter {name!r} (RFC 7692 §7)")
        if name.endswith("no_context_takeover") and value is not None:
            raise ValueError(f"{name} takes no value (RFC 7692 §7.1.1)")
        seen[name] = value
    return seen


def deflate_offer(options: DeflateOptions) -> ExtensionParams:
    """The parameters a client offers for `options` (RFC 7692 §7.1)."""
    params: ExtensionParams = []
    if options.server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if options.client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if options.server_max_window_bits is not None:
        params.append(("server_max_window_bits", str(options.server_max_window_bits)))
    # Always say that we accept a limit on our window; with a value, we promise one.
    bits = options.client_max_window_bits
    params.append(("client_max_window_bits", None if bits is None else str(bits)))
    return params


def accept_deflate_offer(
    offers: Sequence[ExtensionParams], options: DeflateOptions
) -> tuple[PerMessageDeflate, ExtensionParams] | None:
    """Server side: the first acceptable offer as an agreement plus the response's parameters.

    Offers with unknown, duplicate or invalid parameters are declined (RFC 7692 §5); None if none fit.
    """
    for params in offers:
        try:
            offer = _check_params(params)
            server_bits = options.server_max_window_bits or 15
            if "server_max_window_bits" in offer:
                server_bits = min(
                    server_bits, _bits(offer["server_max_window_bits"], "server_max_window_bits")
                )
            client_bits = 15
            if "client_max_window_bits" in offer:
                value = offer["client_max_window_bits"]
                if value is not None:
                    client_bits = _bits(value, "client_max_window_bits")
                if options.client_max_window_bits is not None:
                    client_bits = min(client_bits, options.client_max_window_bits)
        except ValueError:
            continue
        agreement = PerMessageDeflate(
            local_no_context_takeover=options.server_no_context_takeover
            or "server_no_context_takeover" in offer,
            # In an offer, client_no_context_takeover is only the client's hint (RFC 7692 §7.1.1.2):
            # our inflater keeping its context costs nothing, so we ask for it only when configured.
            remote_no_context_takeover=options.client_no_context_takeover,
            local_max_window_bits=server_bits,
            remote_max_window_bits=client_bits,
            level=options.level,
            mem_level=options.mem_level,
            min_size=options.min_size,
        )
        return agreement, agreement.response_params(server=True)
    return None


def validate_deflate_response(params: ExtensionParams, options: DeflateOptions) -> PerMessageDeflate:
    """Client side: check the server's accepted parameters against what we offered (RFC 7692 §7.1).

    Raises `ValueError` saying which rule the response broke.
    """
    resp = _check_params(params)
    remote_bits = 15
    if "server_max_window_bits" in resp:
        remote_bits = _bits(resp["server_max_window_bits"], "server_max_window_bits")
        if options.server_max_window_bits is not None and remote_bits > options.server_max_window_bits:
            raise ValueError(
                f"server_max_window_bits={remote_bits} is larger than the "
                f"{options.server_max_window_bits} offered (RFC 7692 §7.1.2.1)"
            )
    if options.server_no_context_takeover and "server_no_context_takeover" not in resp:
        raise ValueError("server_no_context_takeover was offered but not accepted (RFC 7692 §7.1.1.1)")
    local_bits = options.client_max_window_bits or 15
    if "client_max_window_bits" in resp:
        local_bits = min(local_bits, _bits(resp["client_max_window_bits"], "client_max_window_bits"))
    return PerMessageDeflate(
        local_no_context_takeover=options.client_no_context_takeover or "client_no_context_takeover" in resp,
        remote_no_context_takeover="server_no_context_takeover" in resp,
        local_max_window_bits=local_bits,
        remote_max_window_bits=remote_bits,
        level=options.level,
        mem_level=options.mem_level,
        min_size=options.min_size,
    )


def negotiate_deflate(
    offer_header: str | None, options: DeflateOptions | None
) -> tuple[PerMessageDeflate, str] | None:
    """Server side in one call: from a request's Sec-WebSocket-Extensions value (None if absent), the
    agreed permessage-deflate and the response header value, or None when nothing is agreed.

    A malformed header or unacceptable offers are declined rather than fatal (RFC 6455 §9.1).
    """
    if options is None or not offer_header:
        return None
    try:
        offers = [params for name, params in parse_extensions(offer_header) if name == "permessage-deflate"]
    except ValueError:
        return None
    result = accept_deflate_offer(offers, options)
    if result is None:
        return None
    agreement, params = result
    return agreement, serialize_extensions([("permessage-deflate", params)])


def deflate_from_header(
    header: str | None, *, client: bool, options: DeflateOptions | None = None
) -> PerMessageDeflate | None:
    """The agreement described by an *accepted* Sec-WebSocket-Extensions value (a server's response),
    for our role: for a `Connection` started OPEN after a handshake done elsewhere.

    None when the value has no permessage-deflate; `options` supply level, mem_level and min_size.
    Raises `ValueError` on a malformed value or parameters.
    """
    if not header:
        return None
    found = [params for name, params in parse_extensions(header) if name == "permessage-deflate"]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError("permessage-deflate accepted more than once (RFC 7692 §5)")
    params = _check_params(found[0])
    server_bits = 15
    client_bits = 15
    if "server_max_window_bits" in params:
        server_bits = _bits(params["server_max_window_bits"], "server_max_window_bits")
    if "client_max_window_bits" in params:
        client_bits = _bits(params["client_max_window_bits"], "client_max_window_bits")
    server_nct = "server_no_context_takeover" in params
    client_nct = "client_no_context_takeover" in params
    options = options or DeflateOptions()
    return PerMessageDeflate(
        local_no_context_takeover=client_nct if client else server_nct,
        remote_no_context_takeover=server_nct if client else client_nct,
        local_max_window_bits=client_bits if client else server_bits,
        remote_max_window_bits=server_bits if client else client_bits,
        level=options.level,
        mem_level=options.mem_level,
        min_size=options.min_size,
    )
