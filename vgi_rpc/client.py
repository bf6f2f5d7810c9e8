"""The typed client proxy shared by every transport.

A proxy is built from the Protocol's method table; each method encodes its
arguments into a request batch and hands it to a :class:`ClientTransport`,
which moves bytes (pipe, HTTP) and returns the result batch or a stream
session. Calling a method with a wrong or missing argument raises ``TypeError``
before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pyarrow as pa

from vgi_rpc.methods import MethodSpec, ParamSpec, method_table, protocol_names
from vgi_rpc.streams import AnnotatedBatch, empty_batch

__all__ = ["ClientTransport", "RpcProxy", "StreamSession", "decode_result", "encode_call"]


class StreamSession(Protocol):
    """A stream call in progress on the client.

    Producers: iterate it to get :class:`AnnotatedBatch` objects. Exchanges:
    ``exchange(batch)`` returns the output batch for one input batch; ``close()``
    ends the stream, ``cancel()`` abandons it (the server runs ``on_cancel``).
    Usable as a context manager (closes on exit).
    """

    def __iter__(self) -> Iterator[AnnotatedBatch]: ...
    def exchange(self, data: AnnotatedBatch) -> AnnotatedBatch: ...
    def close(self) -> None: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> StreamSession: ...
    def __exit__(self, *exc: object) -> None: ...


class ClientTransport(Protocol):
    """What a transport must do for :class:`RpcProxy`."""

    def call_unary(self, spec: MethodSpec, request: pa.RecordBatch) -> pa.RecordBatch:
        """Send one unary request; return the response's result batch (raise RpcError on error)."""
        ...

    def open_stream(self, spec: MethodSpec, request: pa.RecordBatch) -> StreamSession:
        """Start a stream call and return its session."""
        ...


def encode_call(spec: MethodSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> pa.RecordBatch:
    """Bind Python arguments to *spec*'s parameters and build the request batch.

    Defaults are filled in (so every column is present, like the official client);
    a parameterless call is a 0-row batch on the empty schema.
    """
    params = spec.params
    if not args and len(kwargs) == len(params) and params:
        # Every parameter named (what a typed call usually is): build the columns directly.
        arrays = []
        for p in params:
            if p.name not in kwargs:
                break
            arrays.append(_column(spec, p, kwargs[p.name]))
        else:
            return pa.RecordBatch.from_arrays(arrays, schema=spec.params_schema)
    if len(args) > len(params):
        raise TypeError(f"{spec.name}() takes {len(params)} arguments but {len(args)} were given")
    values: dict[str, Any] = {}
    for p, v in zip(params, args, strict=False):
        values[p.name] = v
    for name, v in kwargs.items():
        if name in values:
            raise TypeError(f"{spec.name}() got multiple values for argument {name!r}")
        values[name] = v
    known = {p.name for p in params}
    unknown = [n for n in values if n not in known]
    if unknown:
        raise TypeError(f"{spec.name}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    if not params:
        return empty_batch(spec.params_schema)
    arrays = []
    for p in params:
        if p.name in values:
            v = values[p.name]
        elif p.has_default:
            v = p.default
        else:
            raise TypeError(f"{spec.name}() missing required argument {p.name!r}")
        arrays.append(_column(spec, p, v))
    return pa.RecordBatch.from_arrays(arrays, schema=spec.params_schema)


def _column(spec: MethodSpec, p: ParamSpec, v: Any) -> pa.Array:
    """The one-row column of parameter *p* holding *v*, or ``TypeError`` naming what does not fit."""
    if v is None and not p.codec.nullable:
        raise TypeError(f"{spec.name}(): argument {p.name!r} may not be None")
    try:
        return p.codec.to_array([v])
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"{spec.name}(): argument {p.name!r}={v!r} does not fit {p.codec.arrow_type}: {exc}"
        ) from None


def decode_result(spec: MethodSpec, batch: pa.RecordBatch) -> Any:
    """The Python value carried by a result batch (``None`` for void methods)."""
    codec = spec.result_codec
    if codec is None:
        return None
    if batch.num_rows < 1 or batch.num_columns < 1:
        from vgi_rpc.errors import ProtocolError

        raise ProtocolError(f"{spec.name}: response has no result row")
    value = batch.column(0)[0].as_py()
    if value is None or codec.identity:
        return value
    return codec.decode(value)


class RpcProxy:
    """A typed stand-in for the remote service: one attribute per Protocol method.

    Unary methods return the decoded result; stream methods return a
    :class:`StreamSession`. Server failures raise :class:`vgi_rpc.RpcError`.
    """

    def __init__(self, protocol: type, transport: ClientTransport) -> None:
        self._protocol = protocol
        self._transport = transport
        self.protocol_name, self.protocol_version = protocol_names(protocol)
        self._methods = method_table(protocol)
        for name, spec in self._methods.items():
            setattr(self, name, self._bind(spec))

    def _bind(self, spec: MethodSpec) -> Callable[..., Any]:
        transport = self._transport
        if spec.method_type == "stream":

            def call_stream(*args: Any, **kwargs: Any) -> StreamSession:
                return transport.open_stream(spec, encode_call(spec, args, kwargs))

            call_stream.__name__ = spec.name
            return call_stream

        def call(*args: Any, **kwargs: Any) -> Any:
            return decode_result(spec, transport.call_unary(spec, encode_call(spec, args, kwargs)))

        call.__name__ = spec.name
        return call

    def __repr__(self) -> str:
        return f"<RpcProxy {self.protocol_name} via {type(self._transport).__name__}>"
