"""OpenTelemetry tracing and metrics for ``RpcServer`` dispatch.

Requires the ``otel`` extra (``pip install 'vgi-rpc[otel]'``: ``opentelemetry-api``
and ``-sdk``); without them, importing this module raises
an ``ImportError`` that names the extra.
``import vgi_rpc`` never imports this module; importing it imports OpenTelemetry.

Usage::

    from vgi_rpc.otel import OtelConfig, instrument_server

    server = RpcServer(MyService, MyServiceImpl())
    instrument_server(server)          # global TracerProvider / MeterProvider
    # or, for HTTP: make_wsgi_app(server, otel_config=OtelConfig(...))

What gets recorded (see ``docs/otel.md`` for the full table):

* one ``SERVER`` span per dispatch named ``vgi_rpc/<method>`` (per HTTP turn for a
  stream call; one span for the whole stream on the pipe), with the OpenTelemetry
  RPC attributes ``rpc.system="vgi_rpc"``, ``rpc.service``, ``rpc.method`` and
  vgi_rpc-specific ones under ``rpc.vgi_rpc.*``;
* a W3C ``traceparent``/``tracestate`` found in the HTTP headers or in the pipe
  request's metadata becomes the span's parent;
* the counter ``rpc.server.requests`` and the histogram ``rpc.server.duration``
  (seconds).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass, field
from importlib import metadata as _metadata
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

from vgi_rpc._extras import require

require("vgi_rpc.otel", "otel")  # a missing OpenTelemetry names the extra to install

from opentelemetry import context as otel_context  # noqa: E402
from opentelemetry import propagate, trace  # noqa: E402
from opentelemetry.context import Context  # noqa: E402
from opentelemetry.metrics import Counter, Histogram, MeterProvider, get_meter_provider  # noqa: E402
from opentelemetry.propagators.textmap import Getter  # noqa: E402
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider, get_tracer_provider  # noqa: E402

from vgi_rpc._telemetry import rpc_attributes  # noqa: E402
from vgi_rpc.auth import AuthContext  # noqa: E402
from vgi_rpc.hooks import DispatchInfo  # noqa: E402

if TYPE_CHECKING:
    from vgi_rpc.server import RpcServer

__all__ = [
    "ATTR_AUTHENTICATED",
    "ATTR_AUTH_DOMAIN",
    "ATTR_AUTH_PRINCIPAL",
    "ATTR_METHOD_TYPE",
    "ATTR_REQUEST_ID",
    "ATTR_SERVER_ID",
    "ATTR_STATUS",
    "ATTR_STREAM_ID",
    "ATTR_TRANSPORT",
    "ATTR_TURN",
    "DURATION_METRIC",
    "REQUESTS_METRIC",
    "OtelConfig",
    "instrument_server",
]

AttributeValue: TypeAlias = str | bool | int | float
"""A span/metric attribute value this module accepts in configuration."""

# Attribute names. The ``rpc.*`` ones without a third segment come from the
# OpenTelemetry RPC semantic conventions (``rpc.system``, ``rpc.service``,
# ``rpc.method``: vgi_rpc._telemetry.rpc_attributes, shared with Sentry);
# ``rpc.vgi_rpc.*`` is our namespace (the conventions reserve ``rpc.<system>.*``
# for system-specific attributes).
ATTR_METHOD_TYPE = "rpc.vgi_rpc.method_type"
"""``"unary"`` or ``"stream"``."""
ATTR_SERVER_ID = "rpc.vgi_rpc.server_id"
"""``RpcServer.server_id`` of the serving process."""
ATTR_REQUEST_ID = "rpc.vgi_rpc.request_id"
"""The dispatch's request id (one per HTTP turn)."""
ATTR_STREAM_ID = "rpc.vgi_rpc.stream_id"
"""Shared by every span of one stream call (all HTTP turns); absent for unary calls."""
ATTR_TRANSPORT = "rpc.vgi_rpc.transport"
"""``"pipe"``, ``"http"`` or ``"inproc"``."""
ATTR_TURN = "rpc.vgi_rpc.turn"
"""``"call"`` (unary), ``"stream"`` (whole stream, pipe), ``"init"``/``"exchange"`` (HTTP turns)."""
ATTR_AUTH_PRINCIPAL = "rpc.vgi_rpc.auth.principal"
"""``AuthContext.principal``, when set."""
ATTR_AUTH_DOMAIN = "rpc.vgi_rpc.auth.domain"
"""``AuthContext.domain``, when set."""
ATTR_AUTHENTICATED = "rpc.vgi_rpc.auth.authenticated"
"""``AuthContext.authenticated`` (a boolean attribute)."""
ATTR_STATUS = "rpc.vgi_rpc.status"
"""Metric attribute: ``"ok"`` or ``"error"``."""
_ERROR_TYPE = "error.type"  # semantic-conventions attribute, set on failure

REQUESTS_METRIC = "rpc.server.requests"
"""Counter of finished dispatches (HTTP stream turns count one each)."""
DURATION_METRIC = "rpc.server.duration"
"""Histogram of dispatch durations in seconds."""

_SCOPE = "vgi_rpc"


def _scope_version() -> str | None:
    try:
        return _metadata.version("vgi-rpc")
    except _metadata.PackageNotFoundError:  # running from a source tree
        return None


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class OtelConfig:
    """How :func:`instrument_server` records spans and metrics.

    Attributes:
        tracer_provider: Where spans go; ``None`` uses the global provider
            (``opentelemetry.trace.get_tracer_provider()``). The tracer is looked up
            once, at instrument time; the global *proxy* provider forwards to a
            provider installed later, so instrumenting before
            ``trace.set_tracer_provider`` works.
        meter_provider: Where metrics go; ``None`` uses the global provider (same
            once-only lookup).
        enable_tracing: Create a span per dispatch (default ``True``). When ``False``
            no span is created and no trace context is extracted.
        enable_metrics: Record ``rpc.server.requests`` and ``rpc.server.duration``
            (default ``True``). When both switches are off, :func:`instrument_server`
            registers no hook at all (and removes an earlier OTel hook).
        record_exceptions: Add an ``exception`` event (type, message, stack trace)
            to the span of a failed call and put the message in the status
            description (default ``True``). The span status is ``ERROR`` on failure
            either way; when ``False`` its description is only the exception's type
            name, so exception messages never reach the exporter.
        custom_attributes: Constant attributes put on every span *and* every metric
            point (e.g. ``{"deployment.environment.name": "prod"}``). They are
            applied last on spans, so they can override a built-in attribute.
        claim_attributes: Maps JWT claim names to span attribute names, e.g.
            ``{"tenant_id": "rpc.vgi_rpc.auth.claim.tenant_id"}``. Spans only — never
            metrics (claims have unbounded cardinality). Only ``str``/``bool``/
            ``int``/``float`` claims and homogeneous lists of one of those are
            recorded; absent or other values are skipped.

    Both mappings are copied into read-only views when the config is created.
    """

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    enable_tracing: bool = True
    enable_metrics: bool = True
    record_exceptions: bool = True
    custom_attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    claim_attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Freeze the mappings and reject attribute values OpenTelemetry would drop."""
        for key, value in self.custom_attributes.items():
            if not isinstance(key, str) or not isinstance(value, str | bool | int | float):
                raise TypeError(
                    f"custom_attributes[{key!r}] must map a str to str/bool/int/float, got {value!r}"
                )
        for claim, name in self.claim_attributes.items():
            if not isinstance(claim, str) or not isinstance(name, str) or not name:
                raise TypeError(f"claim_attributes must map claim names to attribute names: {claim!r}")
        object.__setattr__(self, "custom_attributes", _freeze(self.custom_attributes))
        object.__setattr__(self, "claim_attributes", _freeze(self.claim_attributes))


def instrument_server(server: RpcServer, config: OtelConfig | None = None) -> RpcServer:
    """Attach OpenTelemetry tracing and metrics to *server*, replacing an earlier OTel hook.

    Calling it again (e.g. once directly and once through
    ``make_wsgi_app(..., otel_config=)``) does not double-instrument: the previous
    OTel hook is removed and the new one, built from *config*, is appended to the
    hook chain. Other hooks (Sentry's) keep their place and run independently.

    Must be called before the server serves — not thread-safe during dispatch.

    Args:
        server: The server to instrument.
        config: ``None`` means ``OtelConfig()`` (global providers, everything on).

    Returns:
        The same *server*, for chaining.
    """
    if config is None:
        config = OtelConfig()
    server.remove_hooks(_OtelDispatchHook)
    if config.enable_tracing or config.enable_metrics:
        server.add_hook(_OtelDispatchHook(config))
    return server


class _MappingGetter(Getter[Mapping[str, Any]]):
    """Reads propagation fields from transport metadata (HTTP headers or pipe metadata).

    Keys are tried as given and lower-cased (HTTP header names arrive lower-cased);
    ``bytes`` values are decoded as UTF-8.
    """

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            value = carrier.get(key.lower())
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            return [value]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value)
        return None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k for k in carrier if isinstance(k, str)]


_GETTER = _MappingGetter()


def _attribute_value(value: object) -> AttributeValue | tuple[AttributeValue, ...] | None:
    """*value* if OpenTelemetry accepts it as an attribute, else ``None``."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value:
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return tuple(value)
    return None


class _Started:
    """What ``on_dispatch_start`` hands to ``on_dispatch_end``."""

    __slots__ = ("context_token", "span", "start_ns")

    def __init__(self, span: trace.Span | None, context_token: Token[Context] | None, start_ns: int) -> None:
        self.span = span
        self.context_token = context_token
        self.start_ns = start_ns


def _error_type(error: BaseException) -> str:
    """The exception's type the way the OTel SDK writes ``exception.type``."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"


class _OtelDispatchHook:
    """The ``DispatchHook`` that records one span and one metric point per dispatch.

    Tracer and instruments are resolved once, here; a disabled feature leaves its
    slot ``None`` and costs one ``is None`` test per call. Stateless per call, so
    safe to share between threads.
    """

    __slots__ = ("_claims", "_custom", "_instruments", "_record_exceptions", "_tracer")

    def __init__(self, config: OtelConfig) -> None:
        version = _scope_version()
        self._record_exceptions = config.record_exceptions
        self._custom: dict[str, AttributeValue] = dict(config.custom_attributes)
        self._claims: tuple[tuple[str, str], ...] = tuple(config.claim_attributes.items())
        self._tracer: Tracer | None = None
        self._instruments: tuple[Counter, Histogram] | None = None
        if config.enable_tracing:
            provider = config.tracer_provider if config.tracer_provider is not None else get_tracer_provider()
            self._tracer = provider.get_tracer(_SCOPE, version)
        if config.enable_metrics:
            meters = config.meter_provider if config.meter_provider is not None else get_meter_provider()
            meter = meters.get_meter(_SCOPE, version)
            counter = meter.create_counter(
                REQUESTS_METRIC, unit="{request}", description="RPC dispatches handled by the server"
            )
            histogram = meter.create_histogram(
                DURATION_METRIC, unit="s", description="Duration of RPC dispatches on the server"
            )
            self._instruments = (counter, histogram)

    def __repr__(self) -> str:
        return (
            f"_OtelDispatchHook(tracing={self._tracer is not None}, metrics={self._instruments is not None})"
        )

    # -- start ---------------------------------------------------------------

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        """Start the span (parented on an incoming ``traceparent``) and make it current.

        The returned token carries the context token that ``on_dispatch_end`` detaches.
        Kwargs are not recorded (they may hold user data).
        """
        start_ns = time.perf_counter_ns()
        if self._tracer is None:
            return _Started(None, None, start_ns)
        # A traceparent in the request wins; otherwise whatever is current (e.g. the
        # caller's span for an in-process RpcServer.dispatch) is the parent.
        parent = propagate.extract(transport_metadata, context=otel_context.get_current(), getter=_GETTER)
        span = self._tracer.start_span(
            f"vgi_rpc/{info.name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=self._span_attributes(info, auth),
        )
        try:
            context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        except BaseException:
            span.end()
            raise
        return _Started(span, context_token, start_ns)

    def _span_attributes(self, info: DispatchInfo, auth: AuthContext) -> dict[str, Any]:
        attrs = rpc_attributes(info, method_type_key=ATTR_METHOD_TYPE)
        attrs[ATTR_SERVER_ID] = info.server_id
        attrs[ATTR_REQUEST_ID] = info.request_id
        attrs[ATTR_TRANSPORT] = info.transport
        attrs[ATTR_TURN] = info.turn
        attrs[ATTR_AUTHENTICATED] = auth.authenticated
        if info.stream_id is not None:
            attrs[ATTR_STREAM_ID] = info.stream_id
        if auth.principal:
            attrs[ATTR_AUTH_PRINCIPAL] = auth.principal
        if auth.domain:
            attrs[ATTR_AUTH_DOMAIN] = auth.domain
        if self._claims and auth.claims:
            for claim, name in self._claims:
                value = _attribute_value(auth.claims.get(claim))
                if value is not None:
                    attrs[name] = value
        attrs.update(self._custom)
        return attrs

    # -- end -----------------------------------------------------------------

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        """End the span (status ``ERROR`` on failure), detach the context, record metrics.

        The context is detached and the metrics are recorded even when ending the
        span raises (e.g. a failing span processor); that exception then propagates
        to the caller, which logs it.
        """
        if not isinstance(token, _Started):
            return
        try:
            if token.span is not None:
                self._finish_span(token.span, error)
        finally:
            try:
                if token.context_token is not None:
                    otel_context.detach(token.context_token)
            finally:
                if self._instruments is not None:
                    self._record_metrics(self._instruments, token.start_ns, info, error)

    def _finish_span(self, span: trace.Span, error: BaseException | None) -> None:
        try:
            if error is not None:
                span.set_attribute(_ERROR_TYPE, _error_type(error))
                if self._record_exceptions:
                    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
                    span.record_exception(error)
                else:  # the message may carry user data: keep it off the span
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        finally:
            span.end()

    def _record_metrics(
        self,
        instruments: tuple[Counter, Histogram],
        start_ns: int,
        info: DispatchInfo,
        error: BaseException | None,
    ) -> None:
        seconds = (time.perf_counter_ns() - start_ns) / 1e9
        attrs: dict[str, AttributeValue] = rpc_attributes(info, method_type_key=ATTR_METHOD_TYPE)
        attrs[ATTR_STATUS] = "ok" if error is None else "error"
        if error is not None:
            attrs[_ERROR_TYPE] = _error_type(error)
        attrs.update(self._custom)
        counter, histogram = instruments
        counter.add(1, attrs)
        histogram.record(seconds, attrs)
