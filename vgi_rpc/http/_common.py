"""HTTP constants and body codings shared by the server app and the client."""

from __future__ import annotations

import gzip
import zlib

import zstandard

from vgi_rpc.errors import ProtocolError

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
BUDGET_HEADER = "VGI-Accept-Max-Response-Bytes"
BUDGET_SUPPORT_HEADER = "VGI-Accept-Max-Response-Bytes-Support"
ENCODINGS_HEADER = "VGI-Supported-Encodings"
MAX_REQUEST_HEADER = "VGI-Max-Request-Bytes"
EXTERNALIZATION_HEADER = "VGI-Externalization-Enabled"
ERROR_HEADER = "X-VGI-RPC-Error"

_ZSTD_STEP = 4096
SUPPORTED_ENCODINGS = ("zstd", "gzip")
"""Request codings the server decodes, in the server's order of preference."""

HEALTH_PATH = "/health"


class BodyError(ProtocolError):
    """A request body that cannot be read: 400, 413 or 415."""


def decode_body(data: bytes, coding: str | None, limit: int | None) -> bytes:
    """Undo ``Content-Encoding`` *coding* on *data*, refusing output larger than *limit*.

    Raises :class:`BodyError` with status 415 for a coding we do not speak, 400 for a
    body that does not decode (corrupt or truncated), 413 when the decoded body would
    exceed *limit*.
    """
    token = (coding or "").strip().lower()
    if token in ("", "identity"):
        return data
    if token == "zstd":
        return _unzstd(data, limit)
    if token in ("gzip", "x-gzip"):
        return _gunzip(data, limit)
    raise BodyError(
        f"unsupported Content-Encoding {coding!r}; this server accepts {', '.join(SUPPORTED_ENCODINGS)} "
        "or an uncompressed body",
        error_kind="unsupported_media_type",
        status=415,
    )


def _too_large(limit: int) -> BodyError:
    return BodyError(
        f"decompressed request body exceeds the server's limit of {limit} bytes",
        error_kind="request_too_large",
        status=413,
    )


def _unzstd(data: bytes, limit: int | None) -> bytes:
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        if limit is None:
            out = dobj.decompress(data)
        else:
            # decompressobj has no output cap: feed small input slices and check as we go,
            # so a decompression bomb is stopped within a bounded overshoot (zstd expands
            # at most ~32k-fold, so a 4 KiB slice yields at most ~128 MiB).
            buf = bytearray()
            view = memoryview(data)
            for start in range(0, len(view), _ZSTD_STEP):
                buf += dobj.decompress(view[start : start + _ZSTD_STEP])
                if len(buf) > limit:
                    raise _too_large(limit)
                if dobj.eof:
                    break
            out = bytes(buf)
    except zstandard.ZstdError as exc:
        raise BodyError(f"request body is not valid zstd: {exc}") from None
    if not dobj.eof:
        raise BodyError("request body is truncated zstd (the frame never ends)")
    return out


def _gunzip(data: bytes, limit: int | None) -> bytes:
    dobj = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        if limit is None:
            out = dobj.decompress(data)
        else:
            out = dobj.decompress(data, limit + 1)
            if len(out) > limit:
                raise _too_large(limit)
    except zlib.error as exc:
        raise BodyError(f"request body is not valid gzip: {exc}") from None
    if not dobj.eof:
        raise BodyError("request body is truncated gzip (the stream never ends)")
    return out


def encode_body(data: bytes, coding: str, level: int = 1) -> bytes:
    """Compress *data* with ``zstd`` or ``gzip``."""
    if coding == "zstd":
        return zstandard.ZstdCompressor(level=level).compress(data)
    if coding == "gzip":
        return gzip.compress(data, compresslevel=max(1, min(level, 9)))
    raise ValueError(f"unknown coding {coding!r}")


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
