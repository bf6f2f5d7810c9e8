"""The Arrow IPC codec: requests, results, log and error batches, stream turns.

Every byte vgi-rpc puts on a transport is written here, in the dialect the
official vgi-rpc 0.52.2 peers speak (``shared/spec/interop.md``). Transports
(pipe, HTTP) move the bytes; they never build batches themselves.

Conventions:
* A request is one IPC stream: schema (one field per parameter), one batch with
  metadata ``vgi_rpc.method`` / ``vgi_rpc.request_version`` = ``1``, EOS.
* A log or error message is a zero-row batch on the response schema whose
  metadata carries ``vgi_rpc.log_level`` (``EXCEPTION`` for errors),
  ``vgi_rpc.log_message`` and optional JSON ``vgi_rpc.log_extra``.
"""

from __future__ import annotations

import functools
import json
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa

from vgi_rpc._ipc_framing import FramingError, IpcFramer, first_stream_end, starts_empty
from vgi_rpc._types import IPC_WRITE_OPTIONS
from vgi_rpc.errors import ProtocolError, RpcError, clip
from vgi_rpc.streams import EMPTY_SCHEMA, empty_batch

__all__ = [
    "LogMessage",
    "Request",
    "ResponseWriter",
    "error_stream_bytes",
    "read_request",
    "read_response",
    "write_request",
]

METHOD_KEY = "vgi_rpc.method"
REQUEST_VERSION_KEY = "vgi_rpc.request_version"
REQUEST_VERSION = "1"
PROTOCOL_KEY = "vgi_rpc.protocol"
PROTOCOL_VERSION_KEY = "vgi_rpc.protocol_version"
LOG_LEVEL_KEY = "vgi_rpc.log_level"
LOG_MESSAGE_KEY = "vgi_rpc.log_message"
LOG_EXTRA_KEY = "vgi_rpc.log_extra"
SERVER_ID_KEY = "vgi_rpc.server_id"
REQUEST_ID_KEY = "vgi_rpc.request_id"
ERROR_KIND_KEY = "vgi_rpc.error_kind"
ERROR_CODE_KEY = "vgi_rpc.error_code"
STREAM_STATE_KEY = "vgi_rpc.stream_state#b64"
CALL_STATE_KEY = "vgi_rpc.call_state#b64"
CANCEL_KEY = "vgi_rpc.cancel"
PROTOCOL_KEYS = frozenset({STREAM_STATE_KEY, CALL_STATE_KEY, CANCEL_KEY})
"""Keys the transport strips from stream input metadata before user code sees it."""

_B_LOG_LEVEL = LOG_LEVEL_KEY.encode()


def new_request_id() -> str:
    """A fresh 16-hex request id (one per dispatch: per unary call, per HTTP stream turn)."""
    return os.urandom(8).hex()  # what secrets.token_hex does, without its two extra calls


def new_stream_id() -> str:
    """A fresh 32-hex stream id, shared by every turn of one stream call on any transport."""
    return os.urandom(16).hex()


def metadata_dict(md: pa.KeyValueMetadata | Mapping[bytes, bytes] | None) -> dict[str, str]:
    """Decode Arrow custom metadata into a ``str -> str`` dict (invalid UTF-8 replaced)."""
    if not md:
        return {}
    return {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in md.items()}


# --------------------------------------------------------------------------- requests


@dataclass(slots=True)
class Request:
    """A decoded request: the method name, the batch's metadata and the batch."""

    method: str
    metadata: dict[str, str]
    batch: pa.RecordBatch


def _open(source: bytes | IO[bytes] | pa.Buffer) -> pa.ipc.RecordBatchStreamReader:
    if isinstance(source, bytes | bytearray | memoryview):
        source = pa.py_buffer(source)
    return pa.ipc.open_stream(source)


def _read_n(read: Callable[[int], bytes], n: int) -> bytes:
    """Up to *n* bytes: fewer only at end of file (raw pipes may return short reads)."""
    data = read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


_PEEK = 1 << 16


def read_stream_bytes(source: IO[bytes]) -> bytes:
    """Read exactly one IPC stream's bytes (to its end-of-stream marker) from a binary file.

    Why not ``pyarrow.ipc.open_stream(file)``: pyarrow then reads a Python file in
    many small calls back into Python (two for each message's prefix, one for its
    metadata, one for its body), which on a pipe round trip cost more than the
    decoding itself. This follows the framing with :class:`~vgi_rpc._ipc_framing.IpcFramer`
    in a handful of buffered reads -- the message prefix, the metadata, then the body
    whose length the metadata names -- and leaves the decoding to pyarrow, from memory.
    From a buffered reader (the pipe's) the whole stream is usually in the peeked
    bytes already: it is found there and taken in one read.

    Returns ``b""`` at a clean end of file. Bytes that are not IPC framing (a bad
    prefix, a negative length, metadata that is not a message) or an end of file
    inside a message stop the reading: what was read so far is returned, for
    pyarrow to name the problem when it decodes it. Both the current format
    (``0xFFFFFFFF`` continuation marker) and the pre-1.0 one are framed.
    """
    peek = getattr(source, "peek", None)
    if peek is not None:
        try:
            ahead = peek(_PEEK)
        except ValueError:  # closed
            return b""
        if not ahead:
            return b""
        end = first_stream_end(ahead)
        if end is not None:
            data: bytes = source.read(end)
            return data
    read = source.read
    framer = IpcFramer()
    parts: list[bytes] = []
    while not framer.ends:
        want = framer.wanted()
        chunk = _read_n(read, want)
        parts.append(chunk)
        try:
            framer.feed(chunk)
        except FramingError:
            break
        if len(chunk) < want:  # end of file inside a message
            break
    return b"".join(parts)


def read_request(source: bytes | IO[bytes] | pa.Buffer) -> Request:
    """Read one request IPC stream (schema, one batch, EOS).

    Raises :class:`ProtocolError` naming the problem for bad IPC (made by
    :meth:`ProtocolError.bad_ipc_stream`), a missing batch, missing metadata or a
    request version we do not speak. ``EOFError`` at a clean end, so a loop can
    stop: a file at its end (the pipe's peer closed it), or bytes holding no
    message before the end-of-stream marker (an empty HTTP body).
    """
    if isinstance(source, bytes | bytearray | memoryview | pa.Buffer):
        data: bytes | bytearray | memoryview | pa.Buffer = source
    else:
        # A file (the pipe): frame the stream first, so that a clean end (the peer
        # closed) is told apart from bytes that are not Arrow IPC, which deserve an
        # error answer rather than a silent hang-up.
        data = read_stream_bytes(source)
        if not data:
            raise EOFError
    try:
        reader = _open(data)
    except (pa.ArrowInvalid, OSError) as exc:  # bad bytes surface as either
        if data is source and starts_empty(memoryview(source)):
            raise EOFError from exc
        raise ProtocolError.bad_ipc_stream("request", exc) from None
    try:
        batch, md = reader.read_next_batch_with_custom_metadata()
        extra_batches = 0
        for _ in reader:  # drain to EOS so the next request starts clean
            extra_batches += 1
    except StopIteration:
        raise ProtocolError("request stream has no batch", error_kind="missing_method") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProtocolError.bad_ipc_stream("request", exc) from None
    if extra_batches:
        raise ProtocolError(f"request stream has {extra_batches + 1} batches; a request has exactly one")
    return _request(batch, md)


def _request(batch: pa.RecordBatch, md: pa.KeyValueMetadata | None) -> Request:
    """The :class:`Request` of a request stream's one batch (ProtocolError on bad dispatch metadata)."""
    meta = metadata_dict(md)
    method = meta.get(METHOD_KEY)
    if not method:
        raise ProtocolError(f"request batch has no {METHOD_KEY} metadata", error_kind="missing_method")
    version = meta.get(REQUEST_VERSION_KEY)
    if version != REQUEST_VERSION:
        shown = None if version is None else clip(version)
        raise ProtocolError(
            f"unsupported request version {shown!r} (this server speaks {REQUEST_VERSION_KEY}="
            f"{REQUEST_VERSION})",
            error_kind="version_mismatch",
        )
    return Request(method, meta, batch)


def request_bytes(
    method: str,
    batch: pa.RecordBatch,
    *,
    protocol: str | None = None,
    protocol_version: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> bytes:
    """Encode one request as an IPC stream (used by our clients)."""
    sink = pa.BufferOutputStream()
    write_request(sink, method, batch, protocol=protocol, protocol_version=protocol_version, extra=extra)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def write_request(
    sink: Any,
    method: str,
    batch: pa.RecordBatch,
    *,
    protocol: str | None = None,
    protocol_version: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> None:
    """Write one request IPC stream to *sink*."""
    md: pa.KeyValueMetadata | dict[str, str]
    if extra:
        md = {**_request_metadata(method, protocol, protocol_version), **extra}
    else:
        md = _request_metadata(method, protocol, protocol_version)
    with pa.ipc.new_stream(sink, batch.schema, options=IPC_WRITE_OPTIONS) as writer:
        writer.write_batch(batch, custom_metadata=md)


@functools.lru_cache(maxsize=1024)
def _request_metadata(method: str, protocol: str | None, protocol_version: str | None) -> pa.KeyValueMetadata:
    """A request batch's metadata, built once per method: converting a dict costs as much as the batch."""
    md = {METHOD_KEY: method, REQUEST_VERSION_KEY: REQUEST_VERSION}
    if protocol:
        md[PROTOCOL_KEY] = protocol
    if protocol_version:
        md[PROTOCOL_VERSION_KEY] = protocol_version
    return pa.KeyValueMetadata(md)


# --------------------------------------------------------------------------- responses


def log_metadata(
    level: str,
    message: str,
    extra: Mapping[str, Any] | None = None,
    *,
    server_id: str | None = None,
    request_id: str | None = None,
) -> dict[str, str]:
    """Metadata of one log batch."""
    md = {LOG_LEVEL_KEY: level, LOG_MESSAGE_KEY: message}
    if extra:
        md[LOG_EXTRA_KEY] = json.dumps(dict(extra), default=str)
    if server_id:
        md[SERVER_ID_KEY] = server_id
    if request_id:
        md[REQUEST_ID_KEY] = request_id
    return md


def error_metadata(
    exc: BaseException,
    *,
    server_id: str | None = None,
    request_id: str | None = None,
    include_traceback: bool = False,
) -> dict[str, str]:
    """Metadata of the EXCEPTION batch that reports *exc* to the client.

    The message is ``"<Type>: <message>"`` like the reference server; the Python
    traceback is included only when *include_traceback* is set.
    """
    error_type = type(exc).__name__
    message = str(exc)
    kind = getattr(exc, "error_kind", None) if isinstance(exc, ProtocolError) else None
    code = "UNIMPLEMENTED" if kind in ("method_not_implemented", "protocol_not_supported") else "UNKNOWN"
    if isinstance(exc, ProtocolError):
        code = "INVALID_ARGUMENT" if code == "UNKNOWN" else code
    extra: dict[str, Any] = {
        "exception_type": error_type,
        "exception_message": message,
        "error_code": code,
    }
    if kind:
        extra["error_kind"] = kind
    if include_traceback:
        extra["traceback"] = "".join(traceback.format_exception(exc))
    md = log_metadata(
        "EXCEPTION", f"{error_type}: {message}", extra, server_id=server_id, request_id=request_id
    )
    md[ERROR_CODE_KEY] = code
    if kind:
        md[ERROR_KIND_KEY] = kind
    return md


class ResponseWriter:
    """Writes one response IPC stream on *schema*: logs first, then data, then EOS."""

    __slots__ = ("_writer", "schema")

    def __init__(self, sink: Any, schema: pa.Schema) -> None:
        self.schema = schema
        self._writer = pa.ipc.new_stream(sink, schema, options=IPC_WRITE_OPTIONS)

    def write(self, batch: pa.RecordBatch, metadata: Mapping[str, str] | None = None) -> None:
        """Write a data batch (optionally with custom metadata)."""
        self._writer.write_batch(batch, custom_metadata=dict(metadata) if metadata else None)

    def meta(self, metadata: Mapping[str, str]) -> None:
        """Write a zero-row batch carrying only *metadata* (logs, errors, tokens)."""
        self._writer.write_batch(empty_batch(self.schema), custom_metadata=dict(metadata))

    def close(self) -> None:
        """Write EOS."""
        self._writer.close()


def error_stream_bytes(
    exc: BaseException,
    schema: pa.Schema = EMPTY_SCHEMA,
    *,
    server_id: str | None = None,
    request_id: str | None = None,
    include_traceback: bool = False,
) -> bytes:
    """A whole response stream holding just the EXCEPTION batch for *exc*."""
    sink = pa.BufferOutputStream()
    writer = ResponseWriter(sink, schema)
    writer.meta(
        error_metadata(exc, server_id=server_id, request_id=request_id, include_traceback=include_traceback)
    )
    writer.close()
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- client side


@dataclass(frozen=True, slots=True)
class LogMessage:
    """A log message the server sent to the client."""

    level: str
    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    server_id: str | None = None


def rpc_error_from(md: Mapping[str, str]) -> RpcError:
    """Build the :class:`RpcError` an EXCEPTION batch's metadata describes."""
    extra = _parse_extra(md.get(LOG_EXTRA_KEY))
    return RpcError(
        str(extra.get("exception_type", "EXCEPTION")),
        md.get(LOG_MESSAGE_KEY, ""),
        remote_traceback=extra.get("traceback"),
        error_kind=md.get(ERROR_KIND_KEY) or extra.get("error_kind"),
        error_code=md.get(ERROR_CODE_KEY) or extra.get("error_code"),
        request_id=md.get(REQUEST_ID_KEY),
    )


def _parse_extra(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


OnLog = Callable[[LogMessage], None]


def iter_response(
    reader: pa.ipc.RecordBatchStreamReader, on_log: OnLog | None
) -> Iterator[tuple[pa.RecordBatch, dict[str, str]]]:
    """Yield the data batches of a response stream; deliver logs; raise on EXCEPTION.

    A zero-row batch whose metadata has no log level is yielded too (token batches).
    """
    while True:
        try:
            batch, raw = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            return
        if raw is not None and _B_LOG_LEVEL in raw:
            md = metadata_dict(raw)
            level = md[LOG_LEVEL_KEY]
            if level == "EXCEPTION":
                raise rpc_error_from(md)
            if on_log is not None:
                on_log(
                    LogMessage(
                        level,
                        md.get(LOG_MESSAGE_KEY, ""),
                        _parse_extra(md.get(LOG_EXTRA_KEY)),
                        md.get(SERVER_ID_KEY),
                    )
                )
            continue
        yield batch, metadata_dict(raw)


def read_response(
    source: bytes | IO[bytes] | pa.Buffer, on_log: OnLog | None = None
) -> tuple[pa.Schema, list[tuple[pa.RecordBatch, dict[str, str]]]]:
    """Read a whole response stream: its schema and its non-log batches (raises RpcError)."""
    try:
        reader = _open(source)
        batches = list(iter_response(reader, on_log))
    except pa.ArrowInvalid as exc:
        raise ProtocolError.bad_ipc_stream("response", exc) from None
    return reader.schema, batches
