"""HTTP constants and body codings shared by the server app and the client."""

from __future__ import annotations

import gzip
import struct
import zlib

import pyarrow as pa
import zstandard

from vgi_rpc._ipc_framing import FramingError, IpcFramer
from vgi_rpc.errors import ProtocolError, clip

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
BUDGET_HEADER = "VGI-Accept-Max-Response-Bytes"
BUDGET_SUPPORT_HEADER = "VGI-Accept-Max-Response-Bytes-Support"
ENCODINGS_HEADER = "VGI-Supported-Encodings"
MAX_REQUEST_HEADER = "VGI-Max-Request-Bytes"
EXTERNALIZATION_HEADER = "VGI-Externalization-Enabled"
ERROR_HEADER = "X-VGI-RPC-Error"

SUPPORTED_ENCODINGS = ("zstd", "gzip")
"""Request codings the server decodes, in the server's order of preference."""

HEALTH_PATH = "/health"

ResponseBody = bytes | pa.Buffer
"""A response body: the Arrow sink's own buffer (handed to the WSGI server without a copy) or bytes."""


class BodyError(ProtocolError):
    """A request body that cannot be read: 400, 413 or 415."""


DECODE_CHUNK = 1 << 20
"""Most decoded bytes one decompression step produces; the memory a body may overshoot its limit by."""

ZSTD_MAX_WINDOW = 1 << 23
"""Largest zstd window (8 MiB, what level 19 uses) a request may need; larger frames are refused (400)."""

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_MAX = 1 << 17
_GZIP_INPUT_STEP = 1 << 16
_CONTENTSIZE_UNKNOWN = {-1, (1 << 64) - 1}


def decode_body(data: bytes, coding: str | None, limit: int | None) -> bytes | bytearray:
    """Undo ``Content-Encoding`` *coding* on *data*, refusing output larger than *limit*.

    Decoding streams into one buffer: each step produces at most :data:`DECODE_CHUNK`
    bytes and the limit is checked after every step. Only the bytes that belong to
    the body's Arrow IPC stream are kept (its messages declare their own lengths);
    what a body decodes to past the stream's end (or past a message that could not
    fit in *limit*) is counted against *limit* and dropped, so a decompression bomb
    costs one chunk of memory, not *limit*.

    Raises :class:`BodyError` with status 415 for a coding we do not speak, 400 for a
    body that does not decode (corrupt or truncated), 413 when the decoded body would
    exceed *limit*.
    """
    token = (coding or "").strip().lower()
    if token in ("", "identity"):
        return data
    if token == "zstd":
        return _unzstd(data, _IpcBody(limit))
    if token in ("gzip", "x-gzip"):
        return _gunzip(data, _IpcBody(limit))
    raise BodyError(
        f"unsupported Content-Encoding {clip(coding or '')!r}; this server accepts "
        f"{', '.join(SUPPORTED_ENCODINGS)} or an uncompressed body",
        error_kind="unsupported_media_type",
        status=415,
    )


def _too_large(limit: int, detail: str = "") -> BodyError:
    return BodyError(
        f"decompressed request body exceeds the server's limit of {limit} bytes{detail}",
        error_kind="request_too_large",
        status=413,
    )


class _IpcBody:
    """The decoded body being built: keeps its Arrow IPC stream's bytes, counts all of them.

    The stream's messages declare their own lengths: following them as the bytes
    arrive (:class:`~vgi_rpc._ipc_framing.IpcFramer`) tells how far the stream can
    reach, so a message that would end past the limit is refused at once, and bytes
    after the stream's end are only counted. Whatever the framer cannot make sense
    of is kept up to that point, so Arrow itself reports the problem on exactly the
    bytes it would have read.
    """

    __slots__ = ("broken", "buf", "framer", "keep", "limit", "total")

    def __init__(self, limit: int | None) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.total = 0  # decoded bytes seen, kept or not
        self.framer = IpcFramer()
        self.broken = False  # the framer found bytes that are not IPC framing
        self.keep = 8  # keep decoded bytes up to this offset (-1 once nothing more is kept)

    def add(self, chunk: bytes | memoryview) -> None:
        """Take one decoded chunk (raises the 413 as soon as the total passes the limit)."""
        n = len(chunk)
        if not n:
            return
        self.total += n
        if self.limit is not None and self.total > self.limit:
            raise _too_large(self.limit)
        taken = 0
        while taken < n:
            room = self.keep - len(self.buf)
            if room <= 0:
                return  # past the end of the stream: counted, not kept
            piece = chunk if not taken and room >= n else memoryview(chunk)[taken : taken + room]
            self.buf += piece
            taken += len(piece)
            self._follow(piece)

    def _follow(self, piece: bytes | memoryview) -> None:
        """Frame the bytes just kept; once they reach :attr:`keep`, decide how far to keep on.

        Up to the framer's next decision; nothing more once the stream ended, its
        bytes broke the framing (Arrow will say so), or a message would end past the
        limit (it can never be read: the verdict then follows the decoded size, 413
        once it passes the limit, else Arrow's 400 on what was kept, as for any body).
        """
        framer = self.framer
        if not self.broken:
            try:
                framer.feed(piece)
            except FramingError:
                self.broken = True
        if len(self.buf) < self.keep:
            return
        if self.broken or framer.ends:
            self.keep = -1
            return
        reach = framer.reach()
        self.keep = reach if self.limit is None or reach <= self.limit else -1

    def result(self) -> bytearray:
        """The kept bytes: the whole body, or its IPC stream when the body went on past it."""
        return self.buf


_U32 = struct.Struct("<I")


def _unzstd(data: bytes, body: _IpcBody) -> bytearray:
    """Decode every zstd frame in *data*, a bounded group of blocks per step."""
    view = memoryview(data)
    size = len(view)
    pos = 0
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    try:
        while pos < size:
            if size - pos >= 8 and (_U32.unpack_from(view, pos)[0] & 0xFFFFFFF0) == 0x184D2A50:
                pos += 8 + _U32.unpack_from(view, pos + 4)[0]  # a skippable frame
                continue
            declared = zstandard.get_frame_parameters(view[pos : pos + 18]).content_size
            if (
                declared not in _CONTENTSIZE_UNKNOWN
                and body.limit is not None
                and body.total + declared > body.limit
            ):
                raise _too_large(body.limit, f" (the zstd frame declares {declared} bytes)")
            frame = decompressor.decompressobj()
            step = pos
            cut = pos + zstandard.frame_header_size(view[pos : pos + 18])
            checksum = 4 if view[pos + 4] & 0x04 else 0
            produced = 0
            last = False
            while not last and cut + 3 <= size:
                (head,) = _U32.unpack_from(bytes(view[cut : cut + 3]) + b"\0")
                last, kind, length = bool(head & 1), (head >> 1) & 3, head >> 3
                cut += 3 + (1 if kind == 1 else length)
                produced += length if kind in (0, 1) else _ZSTD_BLOCK_MAX
                if last:
                    cut += checksum
                if produced >= DECODE_CHUNK or last:
                    body.add(frame.decompress(view[step : min(cut, size)]))
                    step, produced = min(cut, size), 0
            if step < size and not frame.eof:  # the input ended inside the frame
                body.add(frame.decompress(view[step:size]))
            if not frame.eof:
                raise BodyError("request body is truncated zstd (the frame never ends)")
            pos = min(cut, size) - len(frame.unused_data)
    except zstandard.ZstdError as exc:
        raise BodyError(f"request body is not valid zstd: {exc}") from None
    return body.result()


def _gunzip(data: bytes, body: _IpcBody) -> bytearray:
    """Decode every gzip member in *data*, at most :data:`DECODE_CHUNK` bytes per step."""
    view = memoryview(data)
    pos = 0
    try:
        while True:
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not member.eof:
                if member.unconsumed_tail:
                    piece: bytes | memoryview = member.unconsumed_tail
                elif pos < len(view):
                    piece = view[pos : pos + _GZIP_INPUT_STEP]
                    pos += len(piece)
                else:  # no input left: only output held back by the previous step's cap
                    rest = member.decompress(b"", DECODE_CHUNK)
                    if not rest:
                        raise BodyError("request body is truncated gzip (the stream never ends)")
                    body.add(rest)
                    continue
                body.add(member.decompress(piece, DECODE_CHUNK))
            pos -= len(member.unused_data)
            if pos >= len(view):
                return body.result()
    except zlib.error as exc:
        raise BodyError(f"request body is not valid gzip: {exc}") from None


def encode_body(data: bytes | pa.Buffer, coding: str, level: int = 1) -> bytes:
    """Compress *data* with ``zstd`` or ``gzip``."""
    if coding == "zstd":
        return zstandard.ZstdCompressor(level=level).compress(data)
    if coding == "gzip":
        return gzip.compress(data, compresslevel=max(1, min(level, 9)))
    raise ValueError(f"unknown coding {coding!r}")


RESPONSE_ZSTD_LEVEL = 1
"""zstd level of a compressed response when ``compress_responses`` names no level (zstd's fastest)."""

RESPONSE_COMPRESS_MIN = 4096
"""Responses smaller than this are never compressed (the frame would cost more than it saves)."""


def response_coding(option: bool | str | None) -> tuple[str, int] | None:
    """Parse ``make_wsgi_app(compress_responses=...)`` into ``(coding, level)``; ``None``: never compress.

    ``False``/``None``: never (the default). ``True`` or ``"zstd"``: zstd at
    :data:`RESPONSE_ZSTD_LEVEL`. ``"zstd:N"``: zstd at level N (1 to 19). Only zstd is
    offered for responses: a client that does not accept it gets the identity body.
    Raises ``ValueError`` for anything else.
    """
    if option is None or option is False:
        return None
    if option is True:
        return ("zstd", RESPONSE_ZSTD_LEVEL)
    if isinstance(option, str):
        name, sep, level = option.strip().lower().partition(":")
        if name == "zstd" and not sep:
            return ("zstd", RESPONSE_ZSTD_LEVEL)
        if name == "zstd" and level.isdigit() and 1 <= int(level) <= 19:
            return ("zstd", int(level))
    raise ValueError(f"compress_responses must be False, True, 'zstd' or 'zstd:<level 1-19>', got {option!r}")


def accepts(accept: str | None, coding: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows *coding* (named with a non-zero q, or ``*``)."""
    if not accept:
        return False
    star = False
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        refused = params.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000")
        if name == coding:
            return not refused
        if name == "*":
            star = not refused
    return star


def pick_coding(accept: str | None) -> str | None:
    """The first of our codings that an ``Accept-Encoding``-style list allows, or ``None``."""
    if not accept:
        return None
    offered = set()
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if params.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        offered.add(name)
    for coding in SUPPORTED_ENCODINGS:
        if coding in offered:
            return coding
    return None


def normalise_prefix(prefix: str) -> str:
    """``"vgi/"`` -> ``"/vgi"``; ``""`` and ``"/"`` -> ``""``."""
    prefix = prefix.strip()
    if not prefix or prefix == "/":
        return ""
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix.rstrip("/")
