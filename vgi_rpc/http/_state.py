"""What an HTTP stream token carries: the state object and the stream's schemas, as bytes.

A stream state that travels over HTTP must be a dataclass whose fields vgi-rpc can
map to Arrow. A state whose fields are all plain scalars (``int``, ``float``,
``str``, ``bytes``, ``bool``, each optionally ``None``) is written in a compact
field-by-field form (format ``S2``, kind ``C``), a few microseconds instead of an
Arrow IPC stream's third of a millisecond; any other state (nested dataclasses,
lists, enums, Arrow-annotated fields...) goes through the core's dataclass codec
(one Arrow IPC row, kind ``I``). Both rebuild the same values. Payloads of the
previous format (``S1``, always IPC) are still read, so a server upgraded while a
stream is open resumes it. Its class is recorded by import path (``module:QualName``) and
resolved again on the next turn — by this process from a registry of classes it
has sealed, by any other process through an import. A class defined inside a
function therefore works only while every turn reaches the process that opened
the stream.

The payload is only ever read after the token's AEAD check succeeded, so the import
path it names was written by a server holding the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import struct
import threading
from typing import Any, cast

import pyarrow as pa

from vgi_rpc._types import dataclass_from_ipc, dataclass_schema, dataclass_to_ipc
from vgi_rpc.streams import Stream, StreamState

__all__ = ["StatePayloadError", "pack_stream", "unpack_stream"]

_LEN = struct.Struct(">I")
_FORMAT = b"S2"
_FORMAT_V1 = b"S1"  # every state as Arrow IPC: still read, no longer written
_COMPACT = b"C"
_IPC = b"I"

_classes: dict[str, type] = {}
_classes_lock = threading.Lock()


class StatePayloadError(Exception):
    """An authentic token whose payload this server cannot rebuild (e.g. code changed between turns)."""


def _class_ref(cls: type) -> str:
    ref = f"{cls.__module__}:{cls.__qualname__}"
    if _classes.get(ref) is not cls:
        with _classes_lock:
            _classes[ref] = cls
    return ref


def _resolve(ref: str) -> type:
    cls = _classes.get(ref)
    if cls is not None:
        return cls
    module_name, _, qualname = ref.partition(":")
    if "<locals>" in qualname:
        raise StatePayloadError(
            f"stream state class {qualname} is local to a function and unknown to this process"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise StatePayloadError(f"stream state class {ref} cannot be imported here: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, StreamState) and dataclasses.is_dataclass(obj)):
        raise StatePayloadError(f"{ref} is not a StreamState dataclass")
    with _classes_lock:
        _classes[ref] = obj
    return obj


def pack_stream(stream: Stream[Any]) -> bytes:
    """Serialise *stream* (state, output and input schema) for sealing into a token.

    Raises ``TypeError`` when the state is not a dataclass of Arrow-mappable fields.
    """
    state = stream.state
    cls = type(state)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(
            f"stream state {cls.__name__} must be a dataclass to travel between HTTP turns "
            "(its fields are sealed into the stream token)"
        )
    state_bytes = _compact(state, cls)
    if state_bytes is None:
        try:
            state_bytes = _IPC + dataclass_to_ipc(state)
        except TypeError as exc:
            raise TypeError(f"stream state {cls.__name__} cannot be serialised for HTTP: {exc}") from None
    parts = (
        _class_ref(cls).encode(),
        state_bytes,
        _schema_bytes(stream.output_schema),
        _schema_bytes(stream.input_schema),
    )
    out = bytearray(_FORMAT)
    for p in parts:
        out += _LEN.pack(len(p))
        out += p
    return bytes(out)


def unpack_stream(payload: bytes) -> Stream[Any]:
    """Rebuild the :class:`Stream` sealed by :func:`pack_stream` (or by the previous format, ``S1``)."""
    version = payload[:2]
    if version not in (_FORMAT, _FORMAT_V1):
        raise StatePayloadError("unknown stream payload format")
    parts: list[bytes] = []
    pos = 2
    try:
        for _ in range(4):
            (n,) = _LEN.unpack_from(payload, pos)
            pos += _LEN.size
            if pos + n > len(payload):
                raise StatePayloadError("stream payload is truncated")
            parts.append(payload[pos : pos + n])
            pos += n
    except struct.error:
        raise StatePayloadError("stream payload is truncated") from None
    cls = _resolve(parts[0].decode())
    state_bytes = parts[1] if version == _FORMAT else _IPC + parts[1]
    try:
        if state_bytes[:1] == _COMPACT:
            state = _from_compact(cls, state_bytes)
        elif state_bytes[:1] == _IPC:
            state = dataclass_from_ipc(cls, state_bytes[1:])
        else:
            raise ValueError("unknown state encoding")
        output_schema = _schema_of(parts[2])
        input_schema = _schema_of(parts[3])
    except Exception as exc:
        raise StatePayloadError(f"stream state {cls.__name__} cannot be rebuilt: {exc}") from None
    return Stream(output_schema=output_schema, state=state, input_schema=input_schema)


# ---------------------------------------------------------------------------- schemas, remembered

_SCHEMAS_MAX = 256  # distinct schemas remembered each way (a server has few); cleared when full
_schema_to_bytes: dict[int, tuple[pa.Schema, bytes]] = {}
_bytes_to_schema: dict[bytes, pa.Schema] = {}


def _schema_bytes(schema: pa.Schema) -> bytes:
    """*schema* serialised; the schema objects :func:`_schema_of` hands out are serialised once."""
    hit = _schema_to_bytes.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    data: bytes = schema.serialize().to_pybytes()
    if len(_schema_to_bytes) >= _SCHEMAS_MAX:
        _schema_to_bytes.clear()
    _schema_to_bytes[id(schema)] = (schema, data)  # holds the schema: its id is not reused meanwhile
    return data


def _schema_of(data: bytes) -> pa.Schema:
    """The schema *data* serialises: read once, then the same (immutable) object every turn."""
    schema = _bytes_to_schema.get(data)
    if schema is None:
        schema = pa.ipc.read_schema(pa.py_buffer(data))
        if len(_bytes_to_schema) >= _SCHEMAS_MAX:
            _bytes_to_schema.clear()
        _bytes_to_schema[bytes(data)] = schema
    return schema


# ---------------------------------------------------------------------------- the compact state form

_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_NONE, _INT, _FLOAT, _TRUE, _FALSE, _STR, _BYTES = range(7)
_KIND_OF_TYPE: dict[pa.DataType, type] = {
    pa.int64(): int,
    pa.float64(): float,
    pa.utf8(): str,
    pa.binary(): bytes,
    pa.bool_(): bool,
}
_compact_plans: dict[type, tuple[tuple[str, type, bool], ...] | None] = {}


def _plan(cls: type) -> tuple[tuple[str, type, bool], ...] | None:
    """(name, Python type, nullable) per field when every field is a plain scalar; else ``None``."""
    try:
        return _compact_plans[cls]
    except KeyError:
        pass
    plan: tuple[tuple[str, type, bool], ...] | None
    try:
        fields = list(dataclass_schema(cls))
        kinds = [(f.name, _KIND_OF_TYPE.get(f.type), f.nullable) for f in fields]
        plan = tuple((name, kind, nullable) for name, kind, nullable in kinds if kind is not None)
        if len(plan) != len(fields):
            plan = None
    except Exception:  # not Arrow-mappable: the IPC path raises the caller's TypeError
        plan = None
    _compact_plans[cls] = plan
    return plan


def _compact(state: Any, cls: type) -> bytes | None:
    """The compact form of *state*, or ``None`` when a value does not fit it exactly (IPC then)."""
    plan = _plan(cls)
    if plan is None:
        return None
    out = bytearray(_COMPACT)
    out += _LEN.pack(len(plan))
    try:
        for name, kind, nullable in plan:
            value: Any = getattr(state, name)
            if type(value) is not kind:
                if value is None and nullable:
                    out.append(_NONE)
                    continue
                return None  # e.g. an int in a float field: IPC converts (or refuses) it as before
            if kind is int:
                out.append(_INT)
                out += _I64.pack(value)
            elif kind is float:
                out.append(_FLOAT)
                out += _F64.pack(value)
            elif kind is bool:
                out.append(_TRUE if value else _FALSE)
            else:
                raw: bytes = cast(str, value).encode() if kind is str else cast(bytes, value)
                out.append(_STR if kind is str else _BYTES)
                out += _LEN.pack(len(raw))
                out += raw
    except (struct.error, UnicodeEncodeError):
        return None  # out of int64's range, a lone surrogate: IPC decides, as before
    return bytes(out)


def _from_compact(cls: type, data: bytes) -> Any:
    """Rebuild a state from :func:`_compact`'s bytes (ValueError if they no longer fit *cls*)."""
    plan = _plan(cls)
    (count,) = _LEN.unpack_from(data, 1)
    if plan is None or count != len(plan):
        raise ValueError(f"its fields changed since the token was sealed ({count} sealed)")
    pos = 1 + _LEN.size
    kwargs: dict[str, Any] = {}
    for name, kind, nullable in plan:
        tag = data[pos]
        pos += 1
        value: Any
        if tag == _NONE and nullable:
            value = None
        elif tag == _INT and kind is int:
            (value,) = _I64.unpack_from(data, pos)
            pos += 8
        elif tag == _FLOAT and kind is float:
            (value,) = _F64.unpack_from(data, pos)
            pos += 8
        elif tag in (_TRUE, _FALSE) and kind is bool:
            value = tag == _TRUE
        elif tag in (_STR, _BYTES) and kind is (str if tag == _STR else bytes):
            (n,) = _LEN.unpack_from(data, pos)
            raw = data[pos + _LEN.size : pos + _LEN.size + n]
            if len(raw) != n:
                raise ValueError("truncated field")
            pos += _LEN.size + n
            value = raw.decode() if kind is str else bytes(raw)
        else:
            raise ValueError(f"field {name} changed type since the token was sealed")
        kwargs[name] = value
    if pos != len(data):
        raise ValueError("trailing bytes after the fields")
    return cls(**kwargs)
