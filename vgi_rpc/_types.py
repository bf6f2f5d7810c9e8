"""Python annotations -> Arrow types, and the value codecs between them.

One :class:`Codec` per annotation knows the Arrow type, whether the field is
nullable, and how to turn a Python value into what ``pyarrow.array`` accepts
(``encode``) and back from what ``.as_py()`` returns (``decode``). The mapping
is the one the official vgi-rpc client uses (see ``shared/spec/interop.md``):

=====================  ==================================================
Python                 Arrow
=====================  ==================================================
int / float / str      int64 / float64 / utf8
bool / bytes           bool / binary
``T | None``           T, nullable (everything else is non-nullable)
list[T], frozenset[T]  list<item: T>
dict[K, V]             map<K, V>
Enum                   dictionary<int16, utf8> holding the member *name*
dataclass              binary holding a whole IPC stream (schema, 1 row, EOS);
                       nested dataclasses inside it are ``struct``
Annotated[T, ArrowType(t)]  t
=====================  ==================================================

The same module holds the rules for a request column whose Arrow type differs
from the declared one (:func:`_coerce`): a cast within one kind of value (integer
widths, an integer for a float, utf8/large_utf8...) is accepted, anything else is a
``ProtocolError`` naming the parameter.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import struct
import types
import typing
from collections.abc import Callable
from typing import Any, get_args, get_origin

import pyarrow as pa

from vgi_rpc.errors import ProtocolError

__all__ = ["ArrowType", "Codec", "UnsupportedTypeError", "codec_for", "dataclass_schema"]


IPC_WRITE_OPTIONS = pa.ipc.IpcWriteOptions()
"""The options every IPC stream we write uses (current format, metadata V5).

Passing them explicitly also keeps ``pyarrow.ipc.new_stream`` from reading two
environment variables per stream, which showed up on the per-call profile.
"""


class UnsupportedTypeError(TypeError):
    """An annotation vgi-rpc cannot map to Arrow."""


class ArrowType:
    """Marker for ``Annotated[T, ArrowType(pa.int32())]``: send T as that Arrow type."""

    __slots__ = ("arrow_type",)

    def __init__(self, arrow_type: pa.DataType) -> None:
        self.arrow_type = arrow_type

    def __repr__(self) -> str:
        return f"ArrowType({self.arrow_type})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrowType) and other.arrow_type == self.arrow_type

    def __hash__(self) -> int:
        return hash(str(self.arrow_type))


def _identity(value: Any) -> Any:
    return value


class Codec:
    """How one annotation travels: Arrow type, nullability, encode/decode functions.

    ``identity`` is True when both directions are no-ops (scalars), so hot paths
    can skip the calls.
    """

    __slots__ = ("_scalar", "annotation", "arrow_type", "decode", "encode", "identity", "nullable")

    def __init__(
        self,
        annotation: Any,
        arrow_type: pa.DataType,
        nullable: bool = False,
        encode: Callable[[Any], Any] = _identity,
        decode: Callable[[Any], Any] = _identity,
    ) -> None:
        self.annotation = annotation
        self.arrow_type = arrow_type
        self.nullable = nullable
        self.encode = encode
        self.decode = decode
        self.identity = encode is _identity and decode is _identity
        self._scalar = _SCALAR_BUFFERS.get(arrow_type) if self.identity else None

    def field(self, name: str) -> pa.Field:
        """An Arrow field named *name* with this codec's type and nullability."""
        return pa.field(name, self.arrow_type, nullable=self.nullable)

    def to_array(self, values: list[Any]) -> pa.Array:
        """Encode Python values into an Arrow array of this codec's type."""
        scalar = self._scalar
        if scalar is not None and len(values) == 1 and type(values[0]) is scalar[0]:
            # One int64 or float64 (a parameter, a result): its buffer, built directly,
            # is half the cost of pa.array's conversion. Anything else -- None, a bool,
            # an int out of range -- takes pa.array's path and its errors.
            try:
                data = pa.py_buffer(scalar[1].pack(values[0]))
            except struct.error:
                pass
            else:
                return pa.Array.from_buffers(self.arrow_type, 1, [None, data])
        if not self.identity:
            values = [None if v is None else self.encode(v) for v in values]
        return pa.array(values, type=self.arrow_type)

    def __repr__(self) -> str:
        return f"Codec({_name(self.annotation)} -> {self.arrow_type}{'?' if self.nullable else ''})"


_SCALAR_BUFFERS: dict[pa.DataType, tuple[type, struct.Struct]] = {
    pa.int64(): (int, struct.Struct("=q")),  # native byte order, as Arrow's buffers
    pa.float64(): (float, struct.Struct("=d")),
}

_SCALARS: dict[Any, pa.DataType] = {
    int: pa.int64(),
    float: pa.float64(),
    str: pa.utf8(),
    bool: pa.bool_(),
    bytes: pa.binary(),
}

_ENUM_TYPE = pa.dictionary(pa.int16(), pa.utf8())


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)


def _is_optional(annotation: Any) -> tuple[bool, Any]:
    origin = get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return True, args[0]
        raise UnsupportedTypeError(f"unsupported union type {annotation!r}: only `T | None` is supported")
    return False, annotation


@functools.cache
def codec_for(annotation: Any, nested: bool = False) -> Codec:
    """Return the codec for *annotation*.

    ``nested`` is True for fields inside a dataclass, where dataclasses become
    ``struct`` instead of binary IPC. Raises :class:`UnsupportedTypeError`
    naming the type when it cannot be mapped.
    """
    optional, inner = _is_optional(annotation)
    codec = _codec_for_required(inner, nested)
    if optional:
        return Codec(annotation, codec.arrow_type, True, codec.encode, codec.decode)
    return codec


def _codec_for_required(annotation: Any, nested: bool) -> Codec:
    if annotation in _SCALARS:
        return Codec(annotation, _SCALARS[annotation], False, *_scalar_fns(annotation))
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *extras = get_args(annotation)
        overrides = [e for e in extras if isinstance(e, ArrowType)]
        if not overrides:
            return codec_for(base, nested)
        return _override_codec(annotation, base, overrides[-1].arrow_type, nested)
    if origin in (list, frozenset, set, tuple) or annotation in (list, frozenset):
        args = get_args(annotation)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                args = (args[0],)
            else:
                raise UnsupportedTypeError(
                    f"unsupported tuple type {annotation!r}: use tuple[T, ...] or list[T]"
                )
        if len(args) != 1:
            raise UnsupportedTypeError(f"{annotation!r} needs an item type, e.g. list[int]")
        # items of a container are nested values: a dataclass item is a struct, as the peers send it
        item = codec_for(args[0], True)
        arrow_type = pa.list_(pa.field("item", item.arrow_type, nullable=True))
        container = {list: list, frozenset: frozenset, set: set, tuple: tuple}[origin]
        return _container_codec(annotation, arrow_type, item, container)
    if origin is dict:
        args = get_args(annotation)
        if len(args) != 2:
            raise UnsupportedTypeError(f"{annotation!r} needs key and value types, e.g. dict[str, int]")
        key, value = codec_for(args[0], True), codec_for(args[1], True)
        return _map_codec(annotation, key, value)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_codec(annotation)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _struct_codec(annotation) if nested else _dataclass_ipc_codec(annotation)
    if annotation is pa.RecordBatch:
        return Codec(annotation, pa.binary(), False, _batch_to_ipc, _batch_from_ipc)
    if annotation is pa.Schema:
        return Codec(annotation, pa.binary(), False, _schema_to_ipc, _schema_from_ipc)
    raise UnsupportedTypeError(f"cannot map type {_name(annotation)} ({annotation!r}) to Arrow")


def _override_codec(annotation: Any, base: Any, arrow_type: pa.DataType, nested: bool) -> Codec:
    """Codec for ``Annotated[base, ArrowType(arrow_type)]``: the Arrow type is given, so *base* need
    not be mappable on its own (``date``, ``Decimal``...: pyarrow converts those values itself).
    Lists and maps are walked alongside the Arrow type so their items keep their own codecs.
    """
    optional, inner = _is_optional(base)
    origin = get_origin(inner)
    args = get_args(inner)
    codec: Codec
    if origin in (list, frozenset, set) and len(args) == 1 and pa.types.is_list(arrow_type):
        item = _override_codec(args[0], args[0], arrow_type.value_type, True)
        codec = _container_codec(inner, arrow_type, item, origin)
    elif origin is dict and len(args) == 2 and pa.types.is_map(arrow_type):
        key = _override_codec(args[0], args[0], arrow_type.key_type, True)
        value = _override_codec(args[1], args[1], arrow_type.item_type, True)
        codec = _map_codec(inner, key, value)
    else:
        try:
            codec = codec_for(inner, nested)
        except UnsupportedTypeError:
            codec = Codec(inner, arrow_type)
    return Codec(annotation, arrow_type, optional or codec.nullable, codec.encode, codec.decode)


def _batch_to_ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=IPC_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _batch_from_ipc(data: bytes) -> pa.RecordBatch:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()


def _schema_to_ipc(schema: pa.Schema) -> bytes:
    return schema.serialize().to_pybytes()  # type: ignore[no-any-return]


def _schema_from_ipc(data: bytes) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(data))


def _scalar_fns(annotation: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    if annotation is float:
        # ints are acceptable floats on the way in; keep the decoded value a float.
        return _identity, _identity
    return _identity, _identity


def _container_codec(annotation: Any, arrow_type: pa.DataType, item: Codec, container: type) -> Codec:
    if item.identity:

        def encode(v: Any) -> Any:
            return list(v)

    else:
        item_encode = item.encode

        def encode(v: Any) -> Any:
            return [None if x is None else item_encode(x) for x in v]

    item_decode = item.decode
    if item.identity and container is list:
        return Codec(annotation, arrow_type, False, encode, _identity)

    def decode(v: Any) -> Any:
        return container(None if x is None else item_decode(x) for x in v)

    return Codec(annotation, arrow_type, False, encode, decode)


def _map_codec(annotation: Any, key: Codec, value: Codec) -> Codec:
    arrow_type = pa.map_(key.arrow_type, pa.field("value", value.arrow_type, nullable=True))
    kenc, venc, kdec, vdec = key.encode, value.encode, key.decode, value.decode

    def encode(v: Any) -> Any:
        return [(kenc(k), None if x is None else venc(x)) for k, x in v.items()]

    def decode(v: Any) -> Any:
        if isinstance(v, dict):
            v = v.items()
        return {kdec(k): None if x is None else vdec(x) for k, x in v}

    return Codec(annotation, arrow_type, False, encode, decode)


def _enum_codec(cls: type[enum.Enum]) -> Codec:
    members = cls.__members__

    def encode(v: Any) -> Any:
        if isinstance(v, cls):
            return v.name
        if isinstance(v, str) and v in members:
            return v
        raise TypeError(f"{v!r} is not a member of {cls.__name__}")

    def decode(v: Any) -> Any:
        try:
            return members[v]
        except KeyError:
            raise ValueError(f"{v!r} is not a member of {cls.__name__}") from None

    return Codec(cls, _ENUM_TYPE, False, encode, decode)


def _dataclass_fields(cls: type) -> list[tuple[str, Codec]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        try:
            out.append((f.name, codec_for(hints[f.name], True)))
        except UnsupportedTypeError as exc:
            raise UnsupportedTypeError(f"{cls.__name__}.{f.name}: {exc}") from None
    return out


@functools.cache
def dataclass_schema(cls: Any) -> pa.Schema:
    """The Arrow schema of a dataclass's fields (nested dataclasses as struct)."""
    return pa.schema([codec.field(name) for name, codec in _dataclass_fields(cls)])


@functools.cache
def _row_codecs(cls: Any) -> tuple[Callable[[Any], dict[str, Any]], Callable[[dict[str, Any]], Any]]:
    fields = _dataclass_fields(cls)

    def to_row(v: Any) -> dict[str, Any]:
        if not isinstance(v, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(v).__name__}")
        row = {}
        for name, codec in fields:
            x = getattr(v, name)
            row[name] = None if x is None else codec.encode(x)
        return row

    def from_row(row: dict[str, Any]) -> Any:
        kwargs = {}
        for name, codec in fields:
            if name in row:
                x = row[name]
                kwargs[name] = None if x is None else codec.decode(x)
        return cls(**kwargs)

    return to_row, from_row


def _struct_codec(cls: type) -> Codec:
    schema = dataclass_schema(cls)
    to_row, from_row = _row_codecs(cls)
    return Codec(cls, pa.struct(list(schema)), False, to_row, from_row)


def _dataclass_ipc_codec(cls: type) -> Codec:
    schema = dataclass_schema(cls)
    to_row, from_row = _row_codecs(cls)

    def encode(v: Any) -> bytes:
        batch = pa.RecordBatch.from_pylist([to_row(v)], schema=schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema, options=IPC_WRITE_OPTIONS) as writer:
            writer.write_batch(batch)
        return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]

    def decode(v: Any) -> Any:
        reader = pa.ipc.open_stream(pa.py_buffer(v))
        table = reader.read_all()
        if table.num_rows != 1:
            raise ValueError(f"{cls.__name__}: expected 1 row in nested IPC, got {table.num_rows}")
        return from_row(table.to_pylist()[0])

    return Codec(cls, pa.binary(), False, encode, decode)


def dataclass_batch(value: Any) -> pa.RecordBatch:
    """A dataclass instance as a 1-row batch of :func:`dataclass_schema` (stream headers)."""
    cls: Any = type(value)
    to_row, _ = _row_codecs(cls)
    return pa.RecordBatch.from_pylist([to_row(value)], schema=dataclass_schema(cls))


def dataclass_from_batch(cls: Any, batch: pa.RecordBatch) -> Any:
    """Inverse of :func:`dataclass_batch`: the first row of *batch* as a *cls* instance."""
    if batch.num_rows < 1:
        raise ValueError(f"{cls.__name__}: header batch has no row")
    _, from_row = _row_codecs(cls)
    return from_row(batch.slice(0, 1).to_pylist()[0])


def dataclass_to_ipc(value: Any) -> bytes:
    """Serialise a dataclass instance as an IPC stream (schema, 1 row, EOS)."""
    cls: Any = type(value)
    encoded: bytes = codec_for(cls).encode(value)
    return encoded


def dataclass_from_ipc(cls: Any, data: bytes) -> Any:
    """Inverse of :func:`dataclass_to_ipc`."""
    return codec_for(cls).decode(data)


# --------------------------------------------------------------------------- request coercion

_KINDS: tuple[tuple[str, Callable[[pa.DataType], bool]], ...] = (
    ("int", pa.types.is_integer),
    ("float", pa.types.is_floating),
    ("str", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
    ("bin", lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)),
    ("bool", pa.types.is_boolean),
    ("decimal", pa.types.is_decimal),
    ("timestamp", pa.types.is_timestamp),
    ("date", pa.types.is_date),
    ("time", pa.types.is_time),
    ("duration", pa.types.is_duration),
)


def _kind(t: pa.DataType) -> str | None:
    return next((name for name, test in _KINDS if test(t)), None)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether a parameter sent as *source* may be cast to the declared *target*.

    Only conversions within one kind of value: integer/float widths (an integer
    is an acceptable float), utf8/large_utf8, binary/large_binary, units of one
    temporal kind, and containers whose parts are castable. An int sent for a
    ``str`` parameter (which Arrow would cast to ``"1"``) is a wrong type.
    """
    if source == target or pa.types.is_null(source):
        return True
    if pa.types.is_dictionary(source):
        return _castable(source.value_type, target.value_type if pa.types.is_dictionary(target) else target)
    if pa.types.is_dictionary(target):
        return _castable(source, target.value_type)
    if pa.types.is_map(source) and pa.types.is_map(target):
        return _castable(source.key_type, target.key_type) and _castable(source.item_type, target.item_type)
    if (pa.types.is_list(source) or pa.types.is_large_list(source)) and (
        pa.types.is_list(target) or pa.types.is_large_list(target)
    ):
        return _castable(source.value_type, target.value_type)
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        if [f.name for f in source] != [f.name for f in target]:
            return False
        return all(_castable(s.type, t.type) for s, t in zip(source, target, strict=True))
    kinds = (_kind(source), _kind(target))
    return kinds == ("int", "float") or (kinds[0] is not None and kinds[0] == kinds[1])


def _coerce(method: str, param: str, column: pa.Array, target: pa.DataType) -> pa.Array:
    """*column* (parameter *param* of *method*) as the declared *target* type, or ``ProtocolError``."""
    if pa.types.is_dictionary(target) and pa.types.is_string(column.type):
        return column  # plain utf8 carries an enum member name just as well
    if _castable(column.type, target):
        try:
            return column.cast(target)  # safe cast: overflow or truncation raises
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    raise ProtocolError(f"{method}: parameter {param!r} has Arrow type {column.type}, expected {target}")
