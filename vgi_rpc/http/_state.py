"""What an HTTP stream token carries: the state object and the stream's schemas, as bytes.

The state is serialised with the core's dataclass codec (one Arrow IPC row), so a
stream state that travels over HTTP must be a dataclass whose fields vgi-rpc can
map to Arrow. Its class is recorded by import path (``module:QualName``) and
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
from typing import Any

import pyarrow as pa

from vgi_rpc._types import dataclass_from_ipc, dataclass_to_ipc
from vgi_rpc.streams import Stream, StreamState

__all__ = ["StatePayloadError", "pack_stream", "unpack_stream"]

_LEN = struct.Struct(">I")
_FORMAT = b"S1"

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
    try:
        state_bytes = dataclass_to_ipc(state)
    except TypeError as exc:
        raise TypeError(f"stream state {cls.__name__} cannot be serialised for HTTP: {exc}") from None
    parts = (
        _class_ref(cls).encode(),
        state_bytes,
        stream.output_schema.serialize().to_pybytes(),
        stream.input_schema.serialize().to_pybytes(),
    )
    out = bytearray(_FORMAT)
    for p in parts:
        out += _LEN.pack(len(p))
        out += p
    return bytes(out)


def unpack_stream(payload: bytes) -> Stream[Any]:
    """Rebuild the :class:`Stream` sealed by :func:`pack_stream`."""
    if payload[:2] != _FORMAT:
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
    try:
        state = dataclass_from_ipc(cls, parts[1])
        output_schema = pa.ipc.read_schema(pa.py_buffer(parts[2]))
        input_schema = pa.ipc.read_schema(pa.py_buffer(parts[3]))
    except Exception as exc:
        raise StatePayloadError(f"stream state {cls.__name__} cannot be rebuilt: {exc}") from None
    return Stream(output_schema=output_schema, state=state, input_schema=input_schema)
