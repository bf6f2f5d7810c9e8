"""RpcServer: one Protocol's method table, request decoding, the hook chain, and the calls it makes.

The data path: a transport (``vgi_rpc.pipe``, ``vgi_rpc.http``) frames bytes and
decodes a request with ``vgi_rpc.wire``; an :class:`Admission` (the one home of the
rules a request must pass before its call, whatever the transport) finds the method,
checks the protocol, the method's kind and the version, and turns the request batch
into keyword arguments (:meth:`RpcServer.decode_kwargs`); then one
:class:`~vgi_rpc.call.Call` (:meth:`RpcServer.call`) runs the hooks, the
implementation and writes the response. The server holds the dispatch hooks
(``hooks=``, :meth:`RpcServer.add_hook`, :meth:`RpcServer.remove_hooks`).

This module imports no transport and no instrumentation. The one arrow out of the
core is the auto-attach seam, :meth:`RpcServer._auto_attach`, which imports
``vgi_rpc.sentry`` only when ``sentry_sdk`` is already imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vgi_rpc._types import _coerce
from vgi_rpc.auth import ANONYMOUS, AuthContext
from vgi_rpc.call import Call
from vgi_rpc.errors import ProtocolError, clip
from vgi_rpc.hooks import (
    CompositeDispatchHook,
    DispatchHook,
    iter_hooks,
    register_dispatch_hook,
    strip_dispatch_hooks,
)
from vgi_rpc.methods import MethodSpec, ParamSpec, method_table, protocol_names
from vgi_rpc.wire import PROTOCOL_KEY, Request, error_metadata

# MethodSpec and ParamSpec live in vgi_rpc.methods; they are re-exported here for
# code that imported them from the server module.
__all__ = ["Admission", "ExpectedKind", "MethodSpec", "ParamSpec", "RpcServer", "as_server"]


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
        methods: Method name -> :class:`~vgi_rpc.methods.MethodSpec`.
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
        self.server_id = server_id or os.urandom(6).hex()
        self.include_tracebacks = include_tracebacks
        self.methods: dict[str, MethodSpec] = method_table(protocol, implementation)
        self._hook: DispatchHook | None = None
        for hook in hooks:
            self.add_hook(hook)
        self._auto_attach()

    def __repr__(self) -> str:
        return f"RpcServer({self.protocol_name}, server_id={self.server_id!r})"

    def _auto_attach(self) -> None:
        """The auto-attach seam: attach default Sentry instrumentation when ``sentry_sdk`` is imported.

        The only arrow from the core to an instrumentation, and a method of its own
        so that a subclass can switch it off (the construction benchmark measures
        ``RpcServer`` against such a subclass). Without ``sentry_sdk`` in
        ``sys.modules`` this is one dict lookup: ``vgi_rpc.sentry`` is not imported.
        """
        if "sentry_sdk" in sys.modules:
            try:
                from vgi_rpc.sentry import _auto_attach
            except ImportError:  # the sentry extra is not installed
                return
            _auto_attach(self)

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
        """Turn a request batch into keyword arguments, or raise :class:`ProtocolError` naming the problem.

        The request parameter contract: no unknown columns, exactly one row (none
        for a parameterless call), every parameter without a default present, a
        column of another Arrow type only when ``vgi_rpc._types._coerce`` may cast it.
        """
        schema = batch.schema
        if batch.num_rows == 1 and schema.equals(spec.params_schema):
            # What our own client sends: every column in order with its declared
            # type, so there is nothing to look up or cast.
            return {p.name: _value(spec, p, batch.column(i)) for i, p in enumerate(spec.params)}
        names = schema.names
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
            if column.type != p.codec.arrow_type:
                column = _coerce(spec.name, p.name, column, p.codec.arrow_type)
            kwargs[p.name] = _value(spec, p, column)
        return kwargs

    # ----------------------------------------------------------------- calls

    def call(
        self,
        spec: MethodSpec,
        *,
        auth: AuthContext = ANONYMOUS,
        metadata: Mapping[str, str] | None = None,
        transport: str = "inproc",
        stream_id: str | None = None,
    ) -> Call:
        """A :class:`~vgi_rpc.call.Call` for one dispatch of *spec*, with the hooks registered now.

        *metadata* is what hooks and ``ctx.transport_metadata`` see (HTTP headers,
        pipe request metadata); *stream_id* is given only to resume an HTTP stream.
        """
        return Call(
            self, self._hook, spec, auth=auth, metadata=metadata, transport=transport, stream_id=stream_id
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
        return self.call(spec, auth=auth, metadata=transport_metadata, transport=transport).unary(
            kwargs, sink
        )

    def dispatch(self, method: str, /, **kwargs: Any) -> Any:
        """Run one unary call in-process (hooks included, ``transport="inproc"``) and return its result.

        Exceptions from the implementation propagate unchanged. No Arrow encoding
        happens: this is the hook-and-implementation path only.
        """
        spec = self.lookup(method)
        if self._hook is None and not spec.wants_ctx:
            # Nothing for a Call to own (no hook, no context): keep the in-process
            # micro-call a plain function call (benchmarks/test_dispatch.py gates it).
            return spec.func(**kwargs)
        return Call(self, self._hook, spec).inproc(kwargs)

    def error_md(self, exc: BaseException, request_id: str | None = None) -> dict[str, str]:
        """Metadata of the EXCEPTION batch reporting *exc* (traceback only if ``include_tracebacks``)."""
        return error_metadata(
            exc, server_id=self.server_id, request_id=request_id, include_traceback=self.include_tracebacks
        )


@dataclass(frozen=True, slots=True)
class ExpectedKind:
    """The method kind a way in serves: HTTP's unary route, or its stream ``/init`` and ``/exchange``.

    Attributes:
        stream: ``True``: stream methods only; ``False``: unary methods only.
        redirect: ``redirect(where)``: how the client reaches a method of the other kind
            from *where* (the address the request was sent to), for the refusal's message.
            Called only to refuse.
    """

    stream: bool
    redirect: Callable[[str], str]


class Admission:
    """The rules a request passes before its call, in one place for every transport.

    A transport builds one per way in (the pipe per connection, the HTTP app per
    server); what differs between transports is a parameter, never a copy. In order:

    1. the protocol is named -- by the request's own metadata on a transport with no
       URL (the pipe: ``protocol_not_specified`` when it is missing), else by the URL;
    2. it is this server's (``protocol_not_supported``, 404), and
    3. the method is served here (``method_not_implemented``, 404): :meth:`RpcServer.lookup`;
    4. its kind is the one the way in serves, when it serves one kind only
       (:class:`ExpectedKind`: HTTP's routes), else ``bad_request``;
    5. (the transport reads the request here: over HTTP after 1-4, so that a wrong
       route is refused before the body is read) when the URL named protocol and
       method, the request agrees with it: the same method, and the same protocol if
       its metadata names one;
    6. ``vgi_rpc.protocol_version`` has our major.minor (:meth:`RpcServer.check_version`);
    7. the parameters decode (:meth:`RpcServer.decode_kwargs`).

    :meth:`route` runs 1-4 (all an HTTP stream turn needs: its token names the rest),
    :meth:`request` runs 5-7 and returns the keyword arguments.

    Args:
        server: The server requests are admitted to.
        by_url: Whether something outside the request (the HTTP URL) names the protocol
            and method; ``False`` (the pipe): the request's metadata is their only name.
    """

    __slots__ = ("by_url", "server")

    def __init__(self, server: RpcServer, *, by_url: bool = False) -> None:
        self.server = server
        self.by_url = by_url

    def route(
        self, method: str, protocol: str | None, expected: ExpectedKind | None = None, where: str = ""
    ) -> MethodSpec:
        """Rules 1-4: the method *method* of *protocol*, of the *expected* kind (any when ``None``)."""
        server = self.server
        if not protocol and not self.by_url:
            # Without a URL the metadata is the only thing that names the protocol,
            # so a request without it is unroutable.
            raise ProtocolError(
                f"request carries no {PROTOCOL_KEY} metadata: a pipe request must name its "
                f"protocol ({server.protocol_name!r} here)",
                error_kind="protocol_not_specified",
            )
        spec = server.methods.get(method)
        if spec is None or protocol != server.protocol_name:
            spec = server.lookup(method, protocol)  # refuses (or, given no protocol, finds the method)
        if expected is not None and (spec.method_type == "stream") != expected.stream:
            raise ProtocolError(f"{spec.name} is a {spec.method_type} method: {expected.redirect(where)}")
        return spec

    def request(self, spec: MethodSpec, request: Request) -> dict[str, Any]:
        """Rules 5-7 for a *request* routed to *spec*: its keyword arguments."""
        server = self.server
        if self.by_url:
            if request.method != spec.name:
                raise ProtocolError(
                    f"the URL names method {spec.name!r} but the request metadata names {clip(request.method)!r}"
                )
            named = request.metadata.get(PROTOCOL_KEY)
            if named and named != server.protocol_name:
                raise ProtocolError(
                    f"the request metadata names protocol {clip(named)!r} but this URL serves "
                    f"{server.protocol_name!r}"
                )
        if server.protocol_version is not None:  # else no version to disagree with
            server.check_version(request.metadata)
        return server.decode_kwargs(spec, request.batch)


def _value(spec: MethodSpec, param: ParamSpec, column: pa.Array) -> Any:
    """The Python value of *param* from the first row of its (declared-type) *column*."""
    value = column[0].as_py()
    codec = param.codec
    if value is None:
        if not codec.nullable:
            raise ProtocolError(f"{spec.name}: parameter {param.name!r} is null but not Optional")
        return None
    if codec.identity:
        return value
    try:
        return codec.decode(value)
    except Exception as exc:
        raise ProtocolError(f"{spec.name}: parameter {param.name!r}: {exc}") from None


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
