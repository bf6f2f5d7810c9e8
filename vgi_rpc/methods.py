"""Protocol reflection: the method table both sides build from a ``Protocol`` class.

:func:`method_table` reads a Protocol's public methods and their annotations once
and returns one :class:`MethodSpec` per method: its kind (unary or stream), its
parameters with their Arrow codecs and defaults, its result codec, the stream
header type, and -- on the server side -- the implementation's bound method.
The server, the typed client proxy and both transports read this table; none of
them inspects annotations itself. :func:`protocol_names` gives the wire name and
version a Protocol declares.

Errors are found here, at construction: a missing implementation method, an
unannotated parameter or an annotation with no Arrow mapping raises ``TypeError``
naming ``Protocol.method`` and the type.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin

import pyarrow as pa

from vgi_rpc._types import Codec, UnsupportedTypeError, codec_for, dataclass_schema
from vgi_rpc.context import CallContext
from vgi_rpc.streams import EMPTY_SCHEMA, Stream, empty_batch

__all__ = ["MethodSpec", "ParamSpec", "method_table", "protocol_names"]

_NO_DEFAULT: Any = inspect.Parameter.empty
_VOID_BATCH = empty_batch(EMPTY_SCHEMA)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of an RPC method."""

    name: str
    codec: Codec
    default: Any = _NO_DEFAULT

    @property
    def has_default(self) -> bool:
        """True when the Protocol gives the parameter a default."""
        return self.default is not _NO_DEFAULT


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC method: its kind, parameters, result type and implementation."""

    name: str
    method_type: typing.Literal["unary", "stream"]
    params: tuple[ParamSpec, ...]
    params_schema: pa.Schema
    result_codec: Codec | None
    result_schema: pa.Schema
    wants_ctx: bool
    func: Callable[..., Any]
    header_type: Any = None
    """The dataclass of a ``Stream[S, H]`` header, or ``None``."""

    def encode_result(self, value: Any) -> pa.RecordBatch:
        """The one-row ``result`` batch for *value* (a zero-row empty batch for void methods)."""
        codec = self.result_codec
        if codec is None:
            if value is not None:
                raise TypeError(f"{self.name} is declared to return None but returned {type(value).__name__}")
            return _VOID_BATCH
        if value is None and not codec.nullable:
            raise TypeError(f"{self.name} returned None but its return type is not Optional")
        try:
            array = codec.to_array([value])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise TypeError(
                f"{self.name} returned {type(value).__name__} that does not fit {codec.arrow_type}: {exc}"
            ) from None
        return pa.RecordBatch.from_arrays([array], schema=self.result_schema)


def _protocol_methods(protocol: type) -> dict[str, Callable[..., Any]]:
    skip = {object, typing.Protocol, typing.Generic}
    found: dict[str, Callable[..., Any]] = {}
    for cls in reversed(protocol.__mro__):
        if cls in skip:
            continue
        for name, member in vars(cls).items():
            if name.startswith("_") or not callable(member) or isinstance(member, type):
                continue
            if isinstance(member, staticmethod | classmethod):
                continue
            found[name] = member
    return found


def _is_stream(annotation: Any) -> bool:
    return annotation is Stream or get_origin(annotation) is Stream


def _build_method(protocol: type, name: str, proto_fn: Callable[..., Any], impl: object | None) -> MethodSpec:
    where = f"{protocol.__name__}.{name}"
    try:
        hints = typing.get_type_hints(proto_fn, include_extras=True)
    except Exception as exc:
        raise TypeError(f"{where}: cannot resolve type annotations: {exc}") from None
    params = _params_of(where, proto_fn, hints)
    if "return" not in hints:
        raise TypeError(f"{where}: missing return annotation")
    ret = hints["return"]
    method_type: typing.Literal["unary", "stream"] = "unary"
    result_codec: Codec | None = None
    result_schema = EMPTY_SCHEMA
    header_type: Any = None
    if _is_stream(ret):
        method_type = "stream"
        header_type = _stream_header(where, ret)
    elif ret is not None and ret is not type(None):
        try:
            result_codec = codec_for(ret)
        except UnsupportedTypeError as exc:
            raise TypeError(f"{where}: return type: {exc}") from None
        result_schema = pa.schema([result_codec.field("result")])
    func, impl_params = _implementation(impl, name, where)
    return MethodSpec(
        name=name,
        method_type=method_type,
        params=tuple(params),
        params_schema=pa.schema([p.codec.field(p.name) for p in params]),
        result_codec=result_codec,
        result_schema=result_schema,
        wants_ctx="ctx" in impl_params,
        func=func,
        header_type=header_type,
    )


def _params_of(where: str, proto_fn: Callable[..., Any], hints: Mapping[str, Any]) -> list[ParamSpec]:
    """The wire parameters of *proto_fn*: every annotated parameter but ``self`` and the call context."""
    params: list[ParamSpec] = []
    for p in list(inspect.signature(proto_fn).parameters.values())[1:]:  # drop self
        if p.name == "ctx" or hints.get(p.name) is CallContext:
            continue
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"{where}: *args/**kwargs parameters are not supported")
        if p.name not in hints:
            raise TypeError(f"{where}: parameter {p.name!r} has no type annotation")
        try:
            codec = codec_for(hints[p.name])
        except UnsupportedTypeError as exc:
            raise TypeError(f"{where}: parameter {p.name!r}: {exc}") from None
        params.append(ParamSpec(p.name, codec, p.default))
    return params


def _stream_header(where: str, ret: Any) -> Any:
    """The header dataclass of ``Stream[State, Header]`` (``None`` without one); TypeError if unusable."""
    stream_args = get_args(ret)
    if len(stream_args) <= 1 or stream_args[1] in (None, type(None)):
        return None
    header_type = stream_args[1]
    try:
        if not (isinstance(header_type, type) and dataclasses.is_dataclass(header_type)):
            raise UnsupportedTypeError(f"{header_type!r} is not a dataclass")
        dataclass_schema(header_type)
    except UnsupportedTypeError as exc:
        raise TypeError(f"{where}: stream header type: {exc}") from None
    return header_type


def _implementation(
    impl: object | None, name: str, where: str
) -> tuple[Callable[..., Any], Mapping[str, Any]]:
    """*impl*'s method *name* and its parameters (the client-only stand-in when there is no *impl*)."""
    if impl is None:
        return _client_only, {}
    func = getattr(impl, name, None)
    if func is None or not callable(func):
        raise TypeError(f"{type(impl).__name__} does not implement {where}")
    try:
        return func, inspect.signature(func).parameters
    except (TypeError, ValueError):
        return func, {}


def _client_only(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("client-side method table: there is no implementation to call")


def method_table(protocol: type, implementation: object | None = None) -> dict[str, MethodSpec]:
    """Build the method table of *protocol* (client side when *implementation* is None)."""
    return {
        name: _build_method(protocol, name, fn, implementation)
        for name, fn in _protocol_methods(protocol).items()
    }


def protocol_names(protocol: type) -> tuple[str, str | None]:
    """The Protocol's wire name (its ``protocol_name`` attribute, else the class name) and version."""
    return _class_attr(protocol, "protocol_name") or protocol.__name__, _class_attr(
        protocol, "protocol_version"
    )


def _class_attr(protocol: type, name: str) -> str | None:
    value = getattr(protocol, name, None)
    return value if isinstance(value, str) else None
