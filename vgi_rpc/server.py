"""RpcServer: method lookup, request decoding, dispatch, the hook chain and the auto-attach seam.

The method table itself is built by ``vgi_rpc.methods`` (Protocol reflection);
the Arrow cast rules for request columns live with the type mapping in
``vgi_rpc._types``. Transports (``vgi_rpc.pipe``, ``vgi_rpc.http``) decode a
request with ``vgi_rpc.wire``, look the method up here, and let the server run it: the
server calls the dispatch hook around the implementation and encodes the
result or the error. The server never logs an application exception at ERROR:
it logs at WARNING, so Sentry's logging integration records a breadcrumb, not a
second error event (the Sentry hook's capture is the one event).
"""

from __future__ import annotations

import logging
import secrets
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import pyarrow as pa

from vgi_rpc._types import _coerce
from vgi_rpc.auth import ANONYMOUS, AuthContext
from vgi_rpc.context import CallContext
from vgi_rpc.errors import ProtocolError, clip
from vgi_rpc.hooks import (
    CompositeDispatchHook,
    DispatchHook,
    DispatchInfo,
    _safe_end,
    _safe_start,
    iter_hooks,
    register_dispatch_hook,
    strip_dispatch_hooks,
)
from vgi_rpc.methods import _VOID_BATCH, MethodSpec, ParamSpec, method_table, protocol_names
from vgi_rpc.streams import AnnotatedBatch, OutputCollector, Stream
from vgi_rpc.wire import ResponseWriter, error_metadata, log_metadata, new_request_id

# MethodSpec and ParamSpec live in vgi_rpc.methods; they are re-exported here for
# code that imported them from the server module.
__all__ = ["MethodSpec", "ParamSpec", "RpcServer", "as_server"]

_logger = logging.getLogger("vgi_rpc")
def _check_param_fields(spec: MethodSpec, schema: pa.Schema) -> None:
    """Field order and nullability of a request's parameters, as the official server checks them.

    Fields must come in the Protocol's order (a parameter with a default may be left
    out). A request that states nullability -- any field marked non-nullable -- may
    mark nullable only ``T | None`` parameters; a non-nullable field is always fine
    (it can never carry the null an ``Optional`` allows; the official Protocol even
    declares one, ``Annotated[int, ArrowType(pa.int32(), nullable=False)] | None``).
    A request whose fields are all nullable states nothing (it is what Arrow writers
    produce by default: ``pa.RecordBatch.from_pydict``...), so only its values are
    checked: a null for a parameter that is not ``Optional`` is refused later.
    Types are checked (and safely cast) later too.
    """
    names = schema.names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ProtocolError(
            f"{spec.name}: parameter(s) {clip(', '.join(map(repr, twice)))} sent more than once"
        )
    present = set(names)
    declared = [p for p in spec.params if p.name in present]
    stated = not all(field.nullable for field in schema)
    for index, (field, param) in enumerate(zip(schema, declared, strict=True)):
        if field.name != param.name:
            raise ProtocolError(
                f"{spec.name}() parameter schema field {index} expected name {param.name!r}, got {field.name!r}"
            )
        if stated and field.nullable and not param.codec.nullable:
            raise ProtocolError(
                f"{spec.name}() parameter {field.name!r} expected nullable={param.codec.nullable}, "
                f"but the request batch carried nullable={field.nullable}"
            )




class RpcServer:
    """Serves one Protocol's implementation.

    ``RpcServer(Calculator, CalculatorImpl())`` builds the method table from the
    Protocol's annotations and fails fast with an error naming the method and the
    type when an implementation method is missing or a type cannot be mapped.

    If ``sentry_sdk`` is already imported and initialised when the server is
    constructed, default-config Sentry instrumentation is attached (see
    ``vgi_rpc.sentry``); a process that never imported Sentry pays one dict lookup.

    Args:
        protocol: The Protocol class.
        implementation: The object whose methods run the calls.
        server_id: 12 hex characters identifying this server (random when omitted).
        include_tracebacks: Send Python tracebacks to clients (trusted deployments only).
        hooks: Dispatch hooks to register, in order (as :meth:`add_hook` would);
            auto-attached Sentry instrumentation is added after them, outermost.

    Attributes:
        protocol: The Protocol class.
        implementation: The object whose methods run the calls.
        protocol_name: The wire name (the Protocol's ``protocol_name`` class
            attribute if set, else its class name).
        protocol_version: The Protocol's ``protocol_version`` class attribute, if any.
        server_id: 12 hex characters identifying this server (given or random).
        methods: Method name -> :class:`MethodSpec`.
        include_tracebacks: Send Python tracebacks to clients (trusted deployments only).
    """

    def __init__(
        self,
        protocol: type,
        implementation: object,
        *,
        server_id: str | None = None,
        include_tracebacks: bool = False,
        hooks: Iterable[DispatchHook] = (),
    ) -> None:
        self.protocol = protocol
        self.implementation = implementation
        self.protocol_name, self.protocol_version = protocol_names(protocol)
        self.server_id = server_id or secrets.token_hex(6)
        self.include_tracebacks = include_tracebacks
        self.methods: dict[str, MethodSpec] = method_table(protocol, implementation)
        self._hook: DispatchHook | None = None
        for hook in hooks:
            self.add_hook(hook)
        if "sentry_sdk" in sys.modules:
            _sentry_auto_attach(self)

    def __repr__(self) -> str:
        return f"RpcServer({self.protocol_name}, server_id={self.server_id!r})"

    # ----------------------------------------------------------------- hooks

    @property
    def hooks(self) -> tuple[DispatchHook, ...]:
        """The registered dispatch hooks, outermost first (starts run in this order, ends reversed)."""
        return iter_hooks(self._hook)

    def add_hook(self, hook: DispatchHook, *, first: bool = False) -> None:
        """Register a dispatch hook: last (innermost), or outermost with ``first=True``.

        A hook's ``on_dispatch_start`` runs before the implementation, its
        ``on_dispatch_end`` after it (see :class:`~vgi_rpc.hooks.DispatchHook`); a
        hook that raises is logged and skipped, never changing the call.

        Register hooks before the server serves: the chain is swapped without a
        lock, and a dispatch already running keeps the chain it started with. Not
        thread-safe while calls are being dispatched.
        """
        if not isinstance(hook, DispatchHook):
            raise TypeError(
                f"{hook!r} is not a dispatch hook: it needs on_dispatch_start(info, auth, "
                "transport_metadata, kwargs) and on_dispatch_end(token, info, error)"
            )
        for one in iter_hooks(hook) if isinstance(hook, CompositeDispatchHook) else (hook,):
            self._hook = register_dispatch_hook(self._hook, one, first=first)

    def remove_hooks(self, kind: type) -> tuple[DispatchHook, ...]:
        """Unregister every hook that is an instance of *kind*; return them. Others keep their order.

        Same caveat as :meth:`add_hook`: before serving, not thread-safe during dispatch.
        """
        removed = tuple(h for h in iter_hooks(self._hook) if isinstance(h, kind))
        if removed:
            self._hook = strip_dispatch_hooks(self._hook, kind)
        return removed

    @property
    def _dispatch_hook(self) -> DispatchHook | None:
        """The hook slot itself: one hook, a composite, or ``None`` (use the public methods above).

        Kept for code written against the slot. An empty composite is stored as
        ``None``, so an empty chain costs nothing.
        """
        return self._hook

    @_dispatch_hook.setter
    def _dispatch_hook(self, hook: DispatchHook | None) -> None:
        if isinstance(hook, CompositeDispatchHook) and not hook.hooks:
            hook = None
        self._hook = hook

    # ----------------------------------------------------------------- lookup / decode

    def lookup(self, method: str, protocol: str | None = None) -> MethodSpec:
        """The method named *method*; :class:`ProtocolError` (404 kind) when unknown."""
        if protocol is not None and protocol != self.protocol_name:
            raise ProtocolError(
                f"protocol {clip(protocol)!r} is not served here (this server serves {self.protocol_name!r})",
                error_kind="protocol_not_supported",
                status=404,
            )
        spec = self.methods.get(method)
        if spec is None:
            raise ProtocolError(
                f"unknown method {clip(method)!r} on {self.protocol_name}",
                error_kind="method_not_implemented",
                status=404,
            )
        return spec

    def check_version(self, metadata: Mapping[str, str]) -> None:
        """Reject a request whose ``vgi_rpc.protocol_version`` major.minor differs from ours."""
        theirs = metadata.get("vgi_rpc.protocol_version")
        ours = self.protocol_version
        if theirs and ours and theirs.split(".")[:2] != ours.split(".")[:2]:
            raise ProtocolError(
                f"protocol version mismatch: client {clip(theirs)}, server {ours}",
                error_kind="protocol_version_mismatch",
            )

    def decode_kwargs(self, spec: MethodSpec, batch: pa.RecordBatch) -> dict[str, Any]:
        """Turn a request batch into keyword arguments, or raise :class:`ProtocolError` naming the problem."""
        names = batch.schema.names
        known = {p.name for p in spec.params}
        extra = [n for n in names if n not in known]
        if extra:
            raise ProtocolError(f"{spec.name}: unexpected parameter(s) {clip(', '.join(map(repr, extra)))}")
        if not batch.schema.equals(spec.params_schema):
            _check_param_fields(spec, batch.schema)
        if batch.num_rows != 1 and not (batch.num_rows == 0 and not names):
            raise ProtocolError(f"{spec.name}: request batch must have exactly 1 row, got {batch.num_rows}")
        kwargs: dict[str, Any] = {}
        for p in spec.params:
            idx = batch.schema.get_field_index(p.name)
            if idx < 0:
                if not p.has_default:
                    raise ProtocolError(f"{spec.name}: missing parameter {p.name!r}")
                kwargs[p.name] = p.default
                continue
            column = batch.column(idx)
            codec = p.codec
            if column.type != codec.arrow_type:
                column = _coerce(spec.name, p.name, column, codec.arrow_type)
            value = column[0].as_py()
            if value is None:
                if not codec.nullable:
                    raise ProtocolError(f"{spec.name}: parameter {p.name!r} is null but not Optional")
                kwargs[p.name] = None
                continue
            if not codec.identity:
                try:
                    value = codec.decode(value)
                except Exception as exc:
                    raise ProtocolError(f"{spec.name}: parameter {p.name!r}: {exc}") from None
            kwargs[p.name] = value
        return kwargs

    # ----------------------------------------------------------------- running calls

    def make_context(
        self,
        spec: MethodSpec,
        auth: AuthContext,
        request_id: str,
        sink: Callable[[str, str, Mapping[str, Any]], None],
        *,
        stream_id: str | None = None,
        transport_metadata: Mapping[str, str] | None = None,
    ) -> CallContext:
        """A :class:`CallContext` for one dispatch whose log messages go to *sink*."""
        return CallContext(
            auth=auth,
            server_id=self.server_id,
            method=spec.name,
            protocol_name=self.protocol_name,
            request_id=request_id,
            sink=sink,
            stream_id=stream_id,
            transport_metadata=transport_metadata,
        )

    def invoke(self, spec: MethodSpec, kwargs: Mapping[str, Any], ctx: CallContext | None) -> Any:
        """Call the implementation (injecting ``ctx`` when it wants one). No hooks."""
        if spec.wants_ctx:
            return spec.func(**kwargs, ctx=ctx)
        return spec.func(**kwargs)

    def open_stream(self, spec: MethodSpec, kwargs: Mapping[str, Any], ctx: CallContext) -> Stream[Any, Any]:
        """Call a stream method's implementation and check it returned a :class:`Stream`.

        For a method declaring a header type, the stream's header must be an
        instance of it (``TypeError`` otherwise), checked here so that the error
        answers the call before any stream byte is written.
        """
        result = self.invoke(spec, kwargs, ctx)
        if not isinstance(result, Stream):
            raise TypeError(f"{spec.name} must return a Stream, got {type(result).__name__}")
        if spec.header_type is not None and not isinstance(result.header, spec.header_type):
            raise TypeError(
                f"{spec.name} declares header type {spec.header_type.__name__} but returned "
                f"header={type(result.header).__name__ if result.header is not None else None}"
            )
        return result

    def run_turn(
        self, stream: Stream[Any, Any], data: AnnotatedBatch, ctx: CallContext, out: OutputCollector
    ) -> None:
        """Run one stream turn on *data* into *out* and check it (one batch, or finish for producers).

        The caller owns *out*, so the log messages a turn emitted before raising
        still reach the client ahead of the error.
        """
        stream.state.process(data, out, ctx)
        out.validate()

    def hook_start(
        self,
        spec: MethodSpec,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
        *,
        request_id: str,
        transport: str,
        turn: typing.Literal["call", "init", "exchange", "stream"],
        stream_id: str | None = None,
    ) -> tuple[DispatchHook, DispatchInfo, object] | None:
        """Start the dispatch hook (if any) for one dispatch; pass the result to :meth:`hook_end`.

        Hooks get read-only views of *kwargs* and *transport_metadata*: the same
        objects feed the implementation and its ``ctx``, and a hook must never be
        able to change the call (one that tries raises, is logged and skipped).
        """
        hook = self._hook
        if hook is None:
            return None
        info = DispatchInfo(
            spec.name,
            spec.method_type,
            self.protocol_name,
            self.server_id,
            request_id,
            stream_id,
            transport,
            turn,
        )
        ro_kwargs = None if kwargs is None else MappingProxyType(kwargs)
        ro_md = MappingProxyType(transport_metadata)
        return hook, info, _safe_start(hook, info, auth, ro_md, ro_kwargs)

    @staticmethod
    def hook_end(
        handle: tuple[DispatchHook, DispatchInfo, object] | None, error: BaseException | None
    ) -> None:
        """End the dispatch started by :meth:`hook_start` (a no-op when there was no hook)."""
        if handle is not None:
            hook, info, token = handle
            _safe_end(hook, token, info, error)

    def log_md(
        self, level: str, message: str, extra: Mapping[str, Any], request_id: str | None
    ) -> dict[str, str]:
        """Metadata of a log batch sent by this server for *request_id*."""
        return log_metadata(level, message, extra, server_id=self.server_id, request_id=request_id)

    def error_md(self, exc: BaseException, request_id: str | None = None) -> dict[str, str]:
        """Metadata of the EXCEPTION batch reporting *exc* (traceback only if ``include_tracebacks``)."""
        return error_metadata(
            exc, server_id=self.server_id, request_id=request_id, include_traceback=self.include_tracebacks
        )

    def log_call_error(self, spec: MethodSpec, exc: BaseException) -> None:
        """Record an application error on the ``vgi_rpc`` logger (WARNING, never ERROR)."""
        _logger.warning(
            "%s.%s raised %s: %s",
            self.protocol_name,
            spec.name,
            type(exc).__name__,
            exc,
            exc_info=_logger.isEnabledFor(logging.DEBUG),
        )

    def handle_unary(
        self,
        spec: MethodSpec,
        kwargs: Mapping[str, Any],
        sink: Any,
        *,
        auth: AuthContext = ANONYMOUS,
        transport_metadata: Mapping[str, str] | None = None,
        transport: str = "inproc",
    ) -> BaseException | None:
        """Run a unary call and write its whole response stream to *sink*; returns the error, if any."""
        request_id = new_request_id()
        logs: list[tuple[str, str, Mapping[str, Any]]] = []
        ctx = (
            self.make_context(
                spec, auth, request_id, lambda *m: logs.append(m), transport_metadata=transport_metadata
            )
            if spec.wants_ctx
            else None
        )
        handle = (
            None
            if self._hook is None
            else self.hook_start(
                spec,
                auth,
                transport_metadata or {},
                kwargs,
                request_id=request_id,
                transport=transport,
                turn="call",
            )
        )
        error: BaseException | None = None
        batch = _VOID_BATCH
        try:
            batch = spec.encode_result(self.invoke(spec, kwargs, ctx))
        except Exception as exc:
            error = exc
            self.log_call_error(spec, exc)
        finally:
            if handle is not None:
                self.hook_end(handle, error)
        writer = ResponseWriter(sink, spec.result_schema)
        for level, message, extra in logs:
            writer.meta(self.log_md(level, message, extra, request_id))
        if error is None:
            writer.write(batch)
        else:
            writer.meta(self.error_md(error, request_id))
        writer.close()
        return error

    def dispatch(self, method: str, /, **kwargs: Any) -> Any:
        """Run one unary call in-process (hooks included, ``transport="inproc"``) and return its result.

        Exceptions from the implementation propagate unchanged. No Arrow encoding
        happens: this is the hook-and-implementation path only.
        """
        spec = self.lookup(method)
        hook = self._hook
        if hook is None and not spec.wants_ctx:
            return spec.func(**kwargs)
        request_id = new_request_id()
        ctx = self.make_context(spec, ANONYMOUS, request_id, _drop_log) if spec.wants_ctx else None
        if hook is None:
            return self.invoke(spec, kwargs, ctx)
        handle = self.hook_start(
            spec, ANONYMOUS, {}, kwargs, request_id=request_id, transport="inproc", turn="call"
        )
        error: BaseException | None = None
        try:
            return self.invoke(spec, kwargs, ctx)
        except Exception as exc:
            error = exc
            raise
        finally:
            self.hook_end(handle, error)

    def serve(self, reader: typing.BinaryIO, writer: typing.BinaryIO) -> None:
        """Serve the pipe protocol on a pair of binary streams until the reader reaches EOF."""
        from vgi_rpc.pipe import serve_streams

        serve_streams(self, reader, writer)


def as_server(target: type | RpcServer, impl: object | None = None) -> RpcServer:
    """The server an entry point should serve: *target* itself, or ``RpcServer(target, impl)``.

    Every entry point that takes ``(Protocol, implementation)`` also takes a ready
    :class:`RpcServer` (instrument it first); passing both a server and an
    implementation, or a Protocol without one, is a ``TypeError``.
    """
    if isinstance(target, RpcServer):
        if impl is not None:
            raise TypeError("pass either a ready RpcServer or (Protocol, implementation), not both")
        return target
    if impl is None:
        raise TypeError("an implementation is required with a Protocol class")
    return RpcServer(target, impl)


def _drop_log(level: str, message: str, extra: Mapping[str, Any]) -> None:
    _logger.debug("client log outside a transport: %s %s", level, message)


def _sentry_auto_attach(server: RpcServer) -> None:
    try:
        from vgi_rpc.sentry import _auto_attach
    except ImportError:  # sentry extra not installed
        return
    _auto_attach(server)
