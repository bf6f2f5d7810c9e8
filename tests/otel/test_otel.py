"""OpenTelemetry instrumentation, asserted with the real OpenTelemetry SDK through the kit's ``otel_capture``.

``otel_capture`` (``vgi_rpc.testing.otel``) wires real SDK providers to an
``InMemorySpanExporter`` and an ``InMemoryMetricReader``; nothing in
OpenTelemetry is mocked. The providers are passed through ``otel_capture.config``
so no test touches the global ones (except ``test_global_providers_*``, which
runs in a subprocess).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from support.http import TOKEN_KEY
from support.jwt import JWT_SECRET, sign_jwt
from support.services import Calculator, CalculatorImpl

from vgi_rpc import AnnotatedBatch, AuthContext, RpcError, RpcServer, serve_pipe
from vgi_rpc.otel import OtelConfig, _OtelDispatchHook, instrument_server
from vgi_rpc.pipe import serve_streams
from vgi_rpc.testing.otel import CapturedSpan, OtelCapture
from vgi_rpc.wire import iter_response, request_bytes

HEX12 = re.compile(r"^[0-9a-f]{12}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


@pytest.fixture
def server(otel_capture: OtelCapture) -> RpcServer:
    srv = RpcServer(Calculator, CalculatorImpl(), server_id="0123456789ab")
    return instrument_server(srv, otel_capture.config)


def _current_ids() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# --------------------------------------------------------------------------- a service that looks at the trace


class Traced(Protocol):
    def current(self) -> str:
        """``trace_id-span_id`` of the span current inside the implementation ("" if none)."""
        ...


class TracedImpl:
    def current(self) -> str:
        ids = _current_ids()
        return "" if ids is None else "-".join(ids)


# --------------------------------------------------------------------------- spans (in-process)


def test_unary_span_name_kind_and_attributes(otel_capture: OtelCapture, server: RpcServer) -> None:
    assert server.dispatch("add", a=1, b=2) == 3
    span = otel_capture.span()
    assert span.name == "vgi_rpc/add"
    assert span.kind == "SERVER"
    assert span.scope == "vgi_rpc"
    attrs = span.attributes
    request_id = attrs.pop("rpc.vgi_rpc.request_id")
    assert HEX16.match(str(request_id))
    assert attrs == {
        "rpc.system": "vgi_rpc",
        "rpc.service": "Calculator",
        "rpc.method": "add",
        "rpc.vgi_rpc.method_type": "unary",
        "rpc.vgi_rpc.server_id": "0123456789ab",
        "rpc.vgi_rpc.transport": "inproc",
        "rpc.vgi_rpc.turn": "call",
        "rpc.vgi_rpc.auth.authenticated": False,
    }
    # success leaves the status unset (instrumentation libraries should not set OK)
    assert span.status == "UNSET"
    assert span.events == ()
    assert span.parent is None


def test_kwargs_are_not_recorded(otel_capture: OtelCapture, server: RpcServer) -> None:
    server.dispatch("greet", name="secret-name")
    attrs = otel_capture.span().attributes
    assert not any("secret-name" in str(v) for v in attrs.values())


def test_span_is_current_during_the_call_and_detached_after(otel_capture: OtelCapture) -> None:
    srv = instrument_server(RpcServer(Traced, TracedImpl()), otel_capture.config)
    seen = srv.dispatch("current")
    span = otel_capture.span()
    assert seen == f"{span.trace_id}-{span.span_id}"
    assert _current_ids() is None


def test_in_process_call_is_a_child_of_the_callers_span(otel_capture: OtelCapture, server: RpcServer) -> None:
    tracer = otel_capture.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        server.dispatch("add", a=1, b=1)
        assert trace.get_current_span() is caller  # our context was detached
    rpc = next(s for s in otel_capture.spans if s.name == "vgi_rpc/add")
    assert rpc.parent is not None
    assert rpc.parent.span_id == format(caller.get_span_context().span_id, "016x")
    assert rpc.trace_id == format(caller.get_span_context().trace_id, "032x")


def test_failure_sets_error_status_and_records_the_exception(
    otel_capture: OtelCapture, server: RpcServer
) -> None:
    with pytest.raises(ValueError, match="boom"):
        server.dispatch("fail", message="boom")
    span = otel_capture.span()
    assert span.status == "ERROR"
    assert span.status_description == "ValueError: boom"
    assert span.attributes["error.type"] == "ValueError"
    (event,) = span.events
    assert event.name == "exception"
    attrs = event.attributes
    assert attrs["exception.type"] == "ValueError"
    assert attrs["exception.message"] == "boom"
    assert "ValueError: boom" in str(attrs["exception.stacktrace"])
    assert _current_ids() is None


def test_error_type_is_qualified_for_non_builtin_exceptions(
    otel_capture: OtelCapture, server: RpcServer
) -> None:
    with pytest.raises(Exception, match="bad arrow"):
        server.dispatch("fail", message="bad arrow", error_type="ArrowInvalid")
    assert otel_capture.span().attributes["error.type"] == "pyarrow.lib.ArrowInvalid"


def test_record_exceptions_false_keeps_the_message_off_the_span(otel_capture: OtelCapture) -> None:
    srv = instrument_server(
        RpcServer(Calculator, CalculatorImpl()), otel_capture.config_with(record_exceptions=False)
    )
    with pytest.raises(ValueError):
        srv.dispatch("fail", message="card 4111-1111")
    span = otel_capture.span()
    assert span.status == "ERROR"
    assert span.status_description == "ValueError"
    assert span.events == ()
    assert not any("4111" in str(v) for v in span.attributes.values())


def test_custom_and_claim_attributes(otel_capture: OtelCapture) -> None:
    config = otel_capture.config_with(
        custom_attributes={"deployment.environment.name": "prod", "app.shard": 3},
        claim_attributes={
            "tenant": "app.tenant",
            "level": "app.level",
            "roles": "app.roles",
            "nested": "app.nested",
            "mixed": "app.mixed",
            "absent": "app.absent",
        },
    )
    srv = instrument_server(RpcServer(Calculator, CalculatorImpl()), config)
    auth = AuthContext(
        domain="jwt",
        authenticated=True,
        principal="alice",
        claims={"tenant": "acme", "level": 7, "roles": ["a", "b"], "nested": {"x": 1}, "mixed": [1, "a"]},
    )
    # the server's request path, as a transport calls it, with an authenticated caller
    assert (
        srv.handle_unary(srv.methods["add"], {"a": 1, "b": 2}, io.BytesIO(), auth=auth, transport="http")
        is None
    )
    attrs = otel_capture.span().attributes
    assert attrs["rpc.vgi_rpc.auth.principal"] == "alice"
    assert attrs["rpc.vgi_rpc.auth.domain"] == "jwt"
    assert attrs["rpc.vgi_rpc.auth.authenticated"] is True
    assert attrs["app.tenant"] == "acme"
    assert attrs["app.level"] == 7
    assert attrs["app.roles"] == ("a", "b")
    assert "app.nested" not in attrs
    assert "app.mixed" not in attrs
    assert "app.absent" not in attrs
    assert attrs["deployment.environment.name"] == "prod"
    assert attrs["app.shard"] == 3
    # claims never reach metrics; custom attributes do
    (point,) = otel_capture.points("rpc.server.requests")
    assert "app.tenant" not in point.attributes
    assert "rpc.vgi_rpc.auth.principal" not in point.attributes
    assert point.attributes["deployment.environment.name"] == "prod"


# --------------------------------------------------------------------------- metrics


def test_metrics_count_and_time_calls_by_method_and_status(
    otel_capture: OtelCapture, server: RpcServer
) -> None:
    server.dispatch("add", a=1, b=2)
    server.dispatch("add", a=3, b=4)
    with pytest.raises(ZeroDivisionError):
        server.dispatch("divide", a=1.0, b=0.0)

    base = {"rpc.system": "vgi_rpc", "rpc.service": "Calculator", "rpc.vgi_rpc.method_type": "unary"}
    counts = {
        tuple(sorted(p.attributes.items())): p.value for p in otel_capture.points("rpc.server.requests")
    }
    ok_add = {**base, "rpc.method": "add", "rpc.vgi_rpc.status": "ok"}
    err_div = {
        **base,
        "rpc.method": "divide",
        "rpc.vgi_rpc.status": "error",
        "error.type": "ZeroDivisionError",
    }
    assert counts == {tuple(sorted(ok_add.items())): 2, tuple(sorted(err_div.items())): 1}

    counter, *_ = otel_capture.points("rpc.server.requests")
    assert counter.scope == "vgi_rpc"
    assert counter.unit == "{request}"
    histogram, *_ = otel_capture.points("rpc.server.duration")
    assert histogram.unit == "s"
    points = {p.attributes["rpc.method"]: p for p in otel_capture.points("rpc.server.duration")}
    assert all(p.kind == "histogram" for p in points.values())
    assert points["add"].count == 2
    assert points["divide"].count == 1
    assert dict(points["divide"].attributes) == err_div
    # seconds, not milliseconds: a trivial in-process call takes far less than a second each
    assert 0 <= points["add"].sum < 2 * 60


def test_metrics_only_config_creates_no_spans(otel_capture: OtelCapture) -> None:
    srv = instrument_server(
        RpcServer(Calculator, CalculatorImpl()), otel_capture.config_with(enable_tracing=False)
    )
    srv.dispatch("add", a=1, b=2)
    assert otel_capture.spans == []
    (point,) = otel_capture.points("rpc.server.requests")
    assert point.kind == "sum"
    assert point.value == 1


def test_tracing_only_config_records_no_metrics(otel_capture: OtelCapture, server: RpcServer) -> None:
    srv = instrument_server(
        RpcServer(Calculator, CalculatorImpl()), otel_capture.config_with(enable_metrics=False)
    )
    srv.dispatch("add", a=1, b=2)
    assert len(otel_capture.spans) == 1
    assert otel_capture.points("rpc.server.requests") == []
    assert otel_capture.points("rpc.server.duration") == []


# --------------------------------------------------------------------------- instrument_server


class CountingTracerProvider(TracerProvider):
    """A real SDK provider that counts tracer lookups."""

    lookups = 0

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        self.lookups += 1
        return super().get_tracer(*args, **kwargs)


def test_tracer_is_resolved_once_at_instrument_time() -> None:
    provider = CountingTracerProvider()
    srv = instrument_server(RpcServer(Calculator, CalculatorImpl()), OtelConfig(tracer_provider=provider))
    assert provider.lookups == 1
    for i in range(5):
        srv.dispatch("add", a=i, b=i)
    assert provider.lookups == 1


def test_disabled_tracing_looks_up_no_tracer() -> None:
    provider = CountingTracerProvider()
    config = OtelConfig(tracer_provider=provider, enable_tracing=False, meter_provider=MeterProvider())
    srv = instrument_server(RpcServer(Calculator, CalculatorImpl()), config)
    srv.dispatch("add", a=1, b=2)
    assert provider.lookups == 0


def test_instrument_server_returns_the_server(otel_capture: OtelCapture) -> None:
    srv = RpcServer(Calculator, CalculatorImpl())
    assert instrument_server(srv, otel_capture.config) is srv


def test_instrumenting_twice_replaces_the_hook(otel_capture: OtelCapture) -> None:
    srv = RpcServer(Calculator, CalculatorImpl())
    instrument_server(srv, otel_capture.config_with(custom_attributes={"which": "first"}))
    instrument_server(srv, otel_capture.config_with(custom_attributes={"which": "second"}))
    assert sum(isinstance(h, _OtelDispatchHook) for h in srv.hooks) == 1
    srv.dispatch("add", a=1, b=2)
    span = otel_capture.span()  # exactly one span, not two
    assert span.attributes["which"] == "second"
    (point,) = otel_capture.points("rpc.server.requests")
    assert point.value == 1


def test_instrumenting_twice_keeps_other_hooks(otel_capture: OtelCapture) -> None:
    class Other:
        calls: list[str] = []

        def on_dispatch_start(self, info: Any, auth: Any, md: Any, kwargs: Any) -> object:
            self.calls.append("start")
            return None

        def on_dispatch_end(self, token: object, info: Any, error: Any) -> None:
            self.calls.append("end")

    srv = RpcServer(Calculator, CalculatorImpl())
    other = Other()
    instrument_server(srv, otel_capture.config)
    srv.add_hook(other)
    instrument_server(srv, otel_capture.config)
    assert other in srv.hooks
    srv.dispatch("add", a=1, b=2)
    assert other.calls == ["start", "end"]
    assert len(otel_capture.spans) == 1


def test_everything_disabled_removes_the_hook(otel_capture: OtelCapture) -> None:
    srv = instrument_server(RpcServer(Calculator, CalculatorImpl()), otel_capture.config)
    instrument_server(srv, otel_capture.config_with(enable_tracing=False, enable_metrics=False))
    assert srv.hooks == ()
    srv.dispatch("add", a=1, b=2)
    assert otel_capture.spans == []
    assert otel_capture.points("rpc.server.requests") == []


def test_config_defaults_and_immutability() -> None:
    config = OtelConfig()
    assert (config.tracer_provider, config.meter_provider) == (None, None)
    assert (config.enable_tracing, config.enable_metrics, config.record_exceptions) == (True, True, True)
    assert dict(config.custom_attributes) == {}
    assert dict(config.claim_attributes) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.enable_tracing = False  # type: ignore[misc]
    source = {"env": "prod"}
    config = OtelConfig(custom_attributes=source)
    source["env"] = "changed"
    assert config.custom_attributes["env"] == "prod"
    with pytest.raises(TypeError):
        config.custom_attributes["env"] = "x"  # type: ignore[index]


@pytest.mark.parametrize("value", [{"a": 1}, None, b"bytes", [1, 2]])
def test_custom_attribute_values_must_be_primitives(value: Any) -> None:
    with pytest.raises(TypeError, match="custom_attributes"):
        OtelConfig(custom_attributes={"k": value})


def test_global_providers_are_used_when_none_are_given() -> None:
    """Instrumenting before the global providers are set still reaches them (proxies)."""
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, "tests")
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from support.services import Calculator, CalculatorImpl
        from vgi_rpc import RpcServer
        from vgi_rpc.otel import instrument_server

        server = instrument_server(RpcServer(Calculator, CalculatorImpl()))
        exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        server.dispatch("add", a=1, b=2)
        names = [s.name for s in exporter.get_finished_spans()]
        data = reader.get_metrics_data()
        metric_names = sorted(
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        )
        print(names, metric_names)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['vgi_rpc/add'] ['rpc.server.duration', 'rpc.server.requests']"


# --------------------------------------------------------------------------- failure isolation


class RaisingOnEnd(SpanProcessor):
    """A span processor whose ``on_end`` raises, so ``span.end()`` raises."""

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter exploded")


def test_context_is_detached_and_metrics_recorded_when_ending_the_span_raises(
    otel_capture: OtelCapture, caplog: pytest.LogCaptureFixture
) -> None:
    otel_capture.tracer_provider.add_span_processor(RaisingOnEnd())
    srv = instrument_server(RpcServer(Traced, TracedImpl()), otel_capture.config)
    with caplog.at_level(logging.WARNING, logger="vgi_rpc"):
        inside = srv.dispatch("current")
    assert inside != ""  # the span was current during the call
    assert _current_ids() is None  # and is not any more, although span.end() raised
    assert any("on_dispatch_end" in r.getMessage() for r in caplog.records)
    (point,) = otel_capture.points("rpc.server.requests")
    assert point.value == 1
    # a second call on this thread is a root span, not a child of the first
    srv.dispatch("current")
    second = otel_capture.spans[-1]
    assert second.parent is None


# --------------------------------------------------------------------------- pipe transport


def _serve_raw(server: RpcServer, payload: bytes) -> list[tuple[Any, dict[str, str]]]:
    """Run the pipe server loop over *payload* (one or more requests) and decode the responses."""
    out = io.BytesIO()
    serve_streams(server, io.BytesIO(payload), out)
    out.seek(0)
    import pyarrow as pa

    reader = pa.ipc.open_stream(out)
    return list(iter_response(reader, None))


def _request(method: str, extra: dict[str, str] | None = None, **kwargs: Any) -> bytes:
    import pyarrow as pa

    batch = pa.RecordBatch.from_pydict({k: [v] for k, v in kwargs.items()})
    return request_bytes(method, batch, protocol="Calculator", extra=extra)


def test_pipe_unary_span(otel_capture: OtelCapture, server: RpcServer) -> None:
    with serve_pipe(server) as proxy:
        assert proxy.add(a=2, b=3) == 5
    span = otel_capture.span()
    attrs = span.attributes
    assert span.name == "vgi_rpc/add"
    assert attrs["rpc.vgi_rpc.transport"] == "pipe"
    assert attrs["rpc.vgi_rpc.turn"] == "call"
    assert HEX12.match(str(attrs["rpc.vgi_rpc.server_id"]))
    assert "rpc.vgi_rpc.stream_id" not in attrs
    assert span.parent is None


def test_pipe_traceparent_in_request_metadata_becomes_the_parent(
    otel_capture: OtelCapture, server: RpcServer
) -> None:
    extra = {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    _serve_raw(server, _request("add", extra, a=1, b=2))
    span = otel_capture.span()
    assert span.parent is not None
    assert span.parent.is_remote
    assert span.parent.trace_id == TRACE_ID
    assert span.parent.span_id == PARENT_SPAN_ID
    assert span.trace_id == TRACE_ID
    assert span.trace_state["vendor"] == "abc"


def test_pipe_malformed_traceparent_starts_a_new_trace(otel_capture: OtelCapture, server: RpcServer) -> None:
    _serve_raw(server, _request("add", {"traceparent": "00-nothex-zz-01"}, a=1, b=2))
    span = otel_capture.span()
    assert span.parent is None
    assert span.trace_id != TRACE_ID


def test_pipe_requests_do_not_inherit_each_others_parent(
    otel_capture: OtelCapture, server: RpcServer
) -> None:
    payload = _request("add", {"traceparent": TRACEPARENT}, a=1, b=2) + _request("add", a=3, b=4)
    _serve_raw(server, payload)
    first, second = otel_capture.spans
    assert first.parent is not None
    assert second.parent is None
    assert second.trace_id != TRACE_ID


def test_pipe_producer_stream_is_one_span(otel_capture: OtelCapture, server: RpcServer) -> None:
    with serve_pipe(server) as proxy:
        rows = [b.to_pydict()["i"][0] for b in proxy.countdown(n=3)]
    assert rows == [2, 1, 0]
    span = otel_capture.span()
    attrs = span.attributes
    assert span.name == "vgi_rpc/countdown"
    assert attrs["rpc.vgi_rpc.method_type"] == "stream"
    assert attrs["rpc.vgi_rpc.turn"] == "stream"
    assert attrs["rpc.vgi_rpc.transport"] == "pipe"
    assert HEX32.match(str(attrs["rpc.vgi_rpc.stream_id"]))
    assert span.status == "UNSET"
    (point,) = otel_capture.points("rpc.server.requests")
    assert point.value == 1
    assert point.attributes["rpc.vgi_rpc.method_type"] == "stream"


def test_pipe_exchange_stream_is_one_span(otel_capture: OtelCapture, server: RpcServer) -> None:
    with serve_pipe(server) as proxy:
        session = proxy.scale(factor=2.0)
        for x in (1.0, 2.0, 3.0):
            out = session.exchange(AnnotatedBatch.from_pydict({"x": [x]}))
            assert out.to_pydict() == {"y": [2 * x]}
        session.close()
    span = otel_capture.span()
    assert span.name == "vgi_rpc/scale"
    assert span.attributes["rpc.vgi_rpc.turn"] == "stream"


def test_pipe_producer_failure_marks_the_stream_span(otel_capture: OtelCapture, server: RpcServer) -> None:
    with serve_pipe(server) as proxy, pytest.raises(RpcError, match="ran dry"):
        list(proxy.fail_produce(n=2, message="ran dry"))
    span = otel_capture.span()
    assert span.status == "ERROR"
    (event,) = span.events
    assert event.attributes["exception.type"] == "RuntimeError"
    (point,) = otel_capture.points("rpc.server.requests")
    assert point.attributes["rpc.vgi_rpc.status"] == "error"


def test_pipe_exchange_failure_marks_the_stream_span(otel_capture: OtelCapture, server: RpcServer) -> None:
    with serve_pipe(server) as proxy:
        session = proxy.fail_process(message="negative")
        assert session.exchange(AnnotatedBatch.from_pydict({"x": [1.0]})).to_pydict() == {"y": [1.0]}
        with pytest.raises(RpcError, match="negative"):
            session.exchange(AnnotatedBatch.from_pydict({"x": [-1.0]}))
        session.close()
    span = otel_capture.span()
    assert span.status == "ERROR"
    assert span.attributes["error.type"] == "ValueError"


def test_pipe_stream_init_failure_marks_the_span(otel_capture: OtelCapture, server: RpcServer) -> None:
    with serve_pipe(server) as proxy, pytest.raises(RpcError, match="no start"):
        list(proxy.fail_init(message="no start"))
    span = otel_capture.span()
    assert span.status == "ERROR"
    assert span.name == "vgi_rpc/fail_init"


# --------------------------------------------------------------------------- HTTP transport


def _bearer(**claims: Any) -> str:
    return "Bearer " + sign_jwt("alice", exp_in=600, **claims)


@pytest.fixture
def http_server(otel_capture: OtelCapture) -> Iterator[Any]:
    """A real waitress server (one worker thread) on 127.0.0.1 with JWT auth and OTel."""
    from vgi_rpc.http import jwt_authenticator, start_http_server

    srv = RpcServer(Calculator, CalculatorImpl(), server_id="0123456789ab")
    config = otel_capture.config_with(
        claim_attributes={"tenant": "app.tenant"}, custom_attributes={"env": "test"}
    )
    with start_http_server(
        srv,
        threads=1,
        prefix="/vgi",
        authenticate=jwt_authenticator(key=JWT_SECRET),
        token_key=TOKEN_KEY,
        otel_config=config,
    ) as handle:
        yield handle


def _http(handle: Any, **headers: str) -> Any:
    from vgi_rpc.http import http_connect

    return http_connect(
        Calculator,
        handle.base_url,
        prefix="/vgi",
        headers={"Authorization": _bearer(tenant="acme"), **headers},
        compression=None,
    )


def _attrs(span: CapturedSpan) -> dict[str, Any]:
    return span.attributes


def test_http_unary_span_is_a_child_of_the_traceparent_header(
    otel_capture: OtelCapture, http_server: Any
) -> None:
    with _http(http_server, traceparent=TRACEPARENT, tracestate="vendor=abc") as proxy:
        assert proxy.add(a=20, b=22) == 42
    span = otel_capture.span()
    assert span.name == "vgi_rpc/add"
    assert span.kind == "SERVER"
    assert span.parent is not None
    assert span.parent.is_remote
    assert span.parent.span_id == PARENT_SPAN_ID
    assert span.trace_id == TRACE_ID
    assert span.trace_state["vendor"] == "abc"
    attrs = _attrs(span)
    assert attrs["rpc.system"] == "vgi_rpc"
    assert attrs["rpc.service"] == "Calculator"
    assert attrs["rpc.method"] == "add"
    assert attrs["rpc.vgi_rpc.transport"] == "http"
    assert attrs["rpc.vgi_rpc.turn"] == "call"
    assert attrs["rpc.vgi_rpc.server_id"] == "0123456789ab"
    assert attrs["rpc.vgi_rpc.auth.principal"] == "alice"
    assert attrs["rpc.vgi_rpc.auth.domain"] == "jwt"
    assert attrs["rpc.vgi_rpc.auth.authenticated"] is True
    assert attrs["app.tenant"] == "acme"
    assert attrs["env"] == "test"
    assert span.status == "UNSET"


def test_http_without_traceparent_starts_a_trace_and_does_not_inherit_a_stale_one(
    otel_capture: OtelCapture, http_server: Any
) -> None:
    """One waitress worker thread serves both requests: the first one's context must be gone."""
    with _http(http_server, traceparent=TRACEPARENT) as proxy:
        proxy.add(a=1, b=1)
    with _http(http_server) as proxy:
        proxy.add(a=2, b=2)
    first, second = otel_capture.spans
    assert first.parent is not None
    assert second.parent is None
    assert second.trace_id != TRACE_ID


def test_http_unary_failure(otel_capture: OtelCapture, http_server: Any) -> None:
    with _http(http_server) as proxy, pytest.raises(RpcError, match="no such file"):
        proxy.fail(message="no such file", error_type="FileNotFoundError")
    span = otel_capture.span()
    assert span.status == "ERROR"
    assert span.status_description == "FileNotFoundError: no such file"
    assert _attrs(span)["error.type"] == "FileNotFoundError"
    (event,) = span.events
    assert event.attributes["exception.type"] == "FileNotFoundError"
    (point,) = otel_capture.points("rpc.server.requests")
    assert point.attributes["rpc.vgi_rpc.status"] == "error"
    assert point.attributes["error.type"] == "FileNotFoundError"
    assert point.attributes["env"] == "test"


def test_http_producer_stream_has_one_span_per_turn(otel_capture: OtelCapture, http_server: Any) -> None:
    with _http(http_server, traceparent=TRACEPARENT) as proxy:
        rows = [b.to_pydict()["i"][0] for b in proxy.countdown(n=3)]
    assert rows == [2, 1, 0]
    spans = otel_capture.spans
    # /init runs the first produce; three /exchange ticks follow (the last one finishes)
    assert [_attrs(s)["rpc.vgi_rpc.turn"] for s in spans] == ["init", "exchange", "exchange", "exchange"]
    assert {s.name for s in spans} == {"vgi_rpc/countdown"}
    stream_ids = {_attrs(s)["rpc.vgi_rpc.stream_id"] for s in spans}
    assert len(stream_ids) == 1
    assert HEX32.match(str(stream_ids.pop()))
    assert len({_attrs(s)["rpc.vgi_rpc.request_id"] for s in spans}) == 4
    for s in spans:
        assert _attrs(s)["rpc.vgi_rpc.method_type"] == "stream"
        assert _attrs(s)["rpc.vgi_rpc.auth.principal"] == "alice"
        assert s.parent is not None
        assert s.parent.span_id == PARENT_SPAN_ID
    (point,) = otel_capture.points("rpc.server.requests")
    assert point.value == 4
    (hist,) = otel_capture.points("rpc.server.duration")
    assert hist.count == 4


def test_http_exchange_stream_has_one_span_per_turn(otel_capture: OtelCapture, http_server: Any) -> None:
    with _http(http_server) as proxy:
        session = proxy.scale(factor=3.0)
        for x in (1.0, 2.0):
            assert session.exchange(AnnotatedBatch.from_pydict({"x": [x]})).to_pydict() == {"y": [3 * x]}
        session.close()
    spans = otel_capture.spans
    assert [_attrs(s)["rpc.vgi_rpc.turn"] for s in spans] == ["init", "exchange", "exchange"]
    assert len({_attrs(s)["rpc.vgi_rpc.stream_id"] for s in spans}) == 1
    assert all(s.status == "UNSET" for s in spans)


def test_http_stream_turn_failure_marks_that_turns_span(otel_capture: OtelCapture, http_server: Any) -> None:
    with _http(http_server) as proxy:
        session = proxy.fail_process(message="negative input")
        session.exchange(AnnotatedBatch.from_pydict({"x": [1.0]}))
        with pytest.raises(RpcError, match="negative input"):
            session.exchange(AnnotatedBatch.from_pydict({"x": [-1.0]}))
    init, ok, failed = otel_capture.spans
    assert init.status == "UNSET"
    assert ok.status == "UNSET"
    assert failed.status == "ERROR"
    # the original exception, not a transport wrapper
    assert _attrs(failed)["error.type"] == "ValueError"
    (event,) = failed.events
    assert event.attributes["exception.message"] == "negative input"


def test_http_producer_failure_in_a_later_turn(otel_capture: OtelCapture, http_server: Any) -> None:
    with _http(http_server) as proxy, pytest.raises(RpcError, match="dried up"):
        list(proxy.fail_produce(n=1, message="dried up"))
    spans = otel_capture.spans
    assert [_attrs(s)["rpc.vgi_rpc.turn"] for s in spans] == ["init", "exchange"]
    assert spans[-1].status == "ERROR"
    assert _attrs(spans[-1])["error.type"] == "RuntimeError"


def test_make_wsgi_app_otel_config_does_not_double_instrument(otel_capture: OtelCapture) -> None:
    """Instrumenting the server first and passing ``otel_config`` too gives one span (falcon.testing)."""
    import falcon.testing
    import pyarrow as pa

    from vgi_rpc.http import make_wsgi_app

    srv = instrument_server(RpcServer(Calculator, CalculatorImpl()), otel_capture.config)
    app = make_wsgi_app(
        srv, otel_config=otel_capture.config_with(custom_attributes={"via": "app"}), token_key=TOKEN_KEY
    )
    assert sum(isinstance(h, _OtelDispatchHook) for h in srv.hooks) == 1
    body = request_bytes("add", pa.RecordBatch.from_pydict({"a": [1], "b": [2]}), protocol="Calculator")
    client = falcon.testing.TestClient(app)
    result = client.simulate_post(
        "/Calculator/add",
        body=body,
        headers={"Content-Type": "application/vnd.apache.arrow.stream", "traceparent": TRACEPARENT},
    )
    assert result.status_code == 200
    span = otel_capture.span()
    assert _attrs(span)["via"] == "app"
    assert _attrs(span)["rpc.vgi_rpc.auth.authenticated"] is False
    assert span.parent is not None
    assert span.parent.trace_id == TRACE_ID


def test_documented_client_recipe_propagates_the_callers_trace(
    otel_capture: OtelCapture, http_server: Any
) -> None:
    """docs/otel.md: an httpx request hook that injects the current context parents the server span."""
    import httpx
    from opentelemetry import propagate

    from vgi_rpc.http import http_connect

    def inject(request: httpx.Request) -> None:
        propagate.inject(request.headers)

    tracer = otel_capture.tracer_provider.get_tracer("client")
    with (
        httpx.Client(event_hooks={"request": [inject]}) as client,
        http_connect(
            Calculator,
            http_server.base_url,
            prefix="/vgi",
            client=client,
            headers={"Authorization": _bearer()},
            compression=None,
        ) as proxy,
        tracer.start_as_current_span("client-call") as caller,
    ):
        proxy.add(a=1, b=2)
    server_span = next(s for s in otel_capture.spans if s.name == "vgi_rpc/add")
    assert server_span.parent is not None
    assert server_span.parent.span_id == format(caller.get_span_context().span_id, "016x")
    assert server_span.parent.trace_id == format(caller.get_span_context().trace_id, "032x")
