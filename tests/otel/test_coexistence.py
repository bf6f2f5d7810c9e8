"""Sentry and OpenTelemetry on one server: they compose and run independently (S29, S30, S7).

Both SDKs are real: Sentry reports to the in-memory transport of
``vgi_rpc.testing.sentry_capture`` (default integrations on: logging, threading,
WSGI, Falcon...), OpenTelemetry to an ``InMemorySpanExporter`` and an
``InMemoryMetricReader``. Every scenario runs in both registration orders and over
both transports (pipe thread, real waitress server on 127.0.0.1).

Faults: OpenTelemetry is made to fail the way it fails in production, through a
span processor that raises in ``on_start`` / ``on_end`` (so ``start_span`` /
``span.end()`` raise inside our hook). The Sentry SDK does not let a callback's
exception escape, so the Sentry hook is made to fail by a subclass of our own
``_SentryDispatchHook`` that raises before delegating (start) or after it (end);
``sentry_sdk`` itself is never patched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from support.http import http_proxy
from support.jwt import bearer
from support.otel import request_counts
from support.sentry import FAILED, span_status, trace_data
from support.services import Calculator, CalculatorImpl

from vgi_rpc import RpcError, RpcServer, serve_pipe
from vgi_rpc.hooks import DispatchHook
from vgi_rpc.otel import _OtelDispatchHook, instrument_server
from vgi_rpc.sentry import SentryConfig, _SentryDispatchHook, instrument_server_sentry
from vgi_rpc.testing import SentryCapture
from vgi_rpc.testing.otel import OtelCapture

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
SENTRY_CONFIG = SentryConfig(enable_performance=True, custom_tags={"env": "coexist"})
OTEL_ATTRIBUTES = {"env": "coexist"}

ORDERS = ("sentry_then_otel", "otel_then_sentry")
TRANSPORTS = ("pipe", "http")


# --------------------------------------------------------------------------- OpenTelemetry side


class RaisingProcessor(SpanProcessor):
    """A broken span processor: raises in ``on_start`` or ``on_end``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if self.where == "start":
            raise RuntimeError("span processor failed on start")

    def on_end(self, span: ReadableSpan) -> None:
        if self.where == "end":
            raise RuntimeError("span processor failed on end")


# --------------------------------------------------------------------------- Sentry side


class FaultySentryHook(_SentryDispatchHook):
    """Our real Sentry hook, made to raise before its start or after its end."""

    __slots__ = ("where",)

    def __init__(self, where: str, config: SentryConfig, service: str, server_id: str) -> None:
        super().__init__(config, service, server_id)
        self.where = where

    def on_dispatch_start(self, info: Any, auth: Any, transport_metadata: Any, kwargs: Any) -> object:
        if self.where == "start":
            raise RuntimeError("sentry hook failed on start")
        return super().on_dispatch_start(info, auth, transport_metadata, kwargs)

    def on_dispatch_end(self, token: object, info: Any, error: BaseException | None) -> None:
        super().on_dispatch_end(token, info, error)
        if self.where == "end":
            raise RuntimeError("sentry hook failed on end")


def _make_sentry_faulty(server: RpcServer, where: str) -> None:
    """Swap the Sentry hook for a faulty one, keeping its place in the chain."""
    hooks: list[DispatchHook] = []
    for hook in server.hooks:
        if isinstance(hook, _SentryDispatchHook):
            hook = FaultySentryHook(where, SENTRY_CONFIG, server.protocol_name, server.server_id)
        hooks.append(hook)
    server.remove_hooks(object)
    for hook in hooks:
        server.add_hook(hook)


# --------------------------------------------------------------------------- the server, both ways


def instrumented(order: str, otel_capture: OtelCapture) -> RpcServer:
    """A Calculator server with both hooks, registered in *order*.

    Built while ``sentry_capture`` is active, so a default Sentry hook is
    auto-attached first; the explicit ``instrument_server_sentry`` replaces it and
    goes outermost, whatever *order* says.
    """
    server = RpcServer(Calculator, CalculatorImpl())
    if order == "sentry_then_otel":
        instrument_server_sentry(server, SENTRY_CONFIG)
        instrument_server(server, otel_capture.config_with(custom_attributes=OTEL_ATTRIBUTES))
    else:
        instrument_server(server, otel_capture.config_with(custom_attributes=OTEL_ATTRIBUTES))
        instrument_server_sentry(server, SENTRY_CONFIG)
    # Either order gives the same chain: the Sentry hook is always outermost, so
    # whatever the OTel hook logs during a call lands in that call's Sentry scope.
    expected = (_SentryDispatchHook, _OtelDispatchHook)
    assert tuple(type(h) for h in server.hooks) == expected
    return server


def _headers() -> dict[str, str]:
    """The HTTP caller: a JWT for carol and a W3C ``traceparent``."""
    return {**bearer("carol", preferred_username="carol"), "traceparent": TRACEPARENT}


@contextmanager
def connected(transport: str, server: RpcServer) -> Iterator[Any]:
    if transport == "pipe":
        with serve_pipe(server) as proxy:
            yield proxy
        return
    with http_proxy(server, _headers(), threads=2, client_options={"compression": None}) as proxy:
        yield proxy


# --------------------------------------------------------------------------- what "full output" means


def assert_sentry_output(cap: SentryCapture, transport: str, method: str, failed: bool) -> None:
    """Sentry's full output for one call: its transaction (or child span) and, on failure, one event."""
    status = FAILED if failed else "ok"
    (txn,) = [t for t in cap.transactions if trace_data(t).get("rpc.method") == method]
    assert trace_data(txn)["rpc.system"] == "vgi_rpc"
    assert txn["tags"]["rpc.method"] == method
    assert txn["tags"]["env"] == "coexist"
    if transport == "pipe":  # the hook's own transaction
        assert txn["transaction"] == f"vgi_rpc/{method}"
        assert txn["contexts"]["trace"]["op"] == "rpc.server"
        assert txn["contexts"]["trace"]["status"] == status
    else:  # the WSGI transaction, renamed, with the hook's child span
        assert txn["transaction"] == f"rpc {method}"
        (span,) = txn["spans"]
        assert (span["op"], span["description"], span_status(span)) == (
            "rpc.server",
            f"vgi_rpc/{method}",
            status,
        )
        assert txn["user"]["id"] == "carol"
    events = cap.events_for(method)
    if not failed:
        assert events == []
        return
    (event,) = events
    (exc,) = event["exception"]["values"]
    assert (exc["type"], exc["value"]) == ("ValueError", "boom")
    assert event["contexts"]["rpc"]["method"] == method
    assert event["tags"]["env"] == "coexist"
    assert event["transaction"] == f"rpc {method}"


def assert_otel_output(otel_capture: OtelCapture, transport: str, method: str, failed: bool) -> None:
    """OpenTelemetry's full output for one call: its span and its metric point."""
    (span,) = [s for s in otel_capture.spans if s.name == f"vgi_rpc/{method}"]
    attrs = span.attributes
    assert attrs["rpc.system"] == "vgi_rpc"
    assert attrs["rpc.method"] == method
    assert attrs["rpc.vgi_rpc.transport"] == transport
    assert attrs["env"] == "coexist"
    if transport == "http":
        assert attrs["rpc.vgi_rpc.auth.principal"] == "carol"
        assert span.parent is not None
        assert span.parent.trace_id == TRACE_ID
    if failed:
        assert span.status == "ERROR"
        (event,) = span.events
        assert event.attributes["exception.type"] == "ValueError"
    else:
        assert span.status == "UNSET"
        assert span.events == ()
    status = "error" if failed else "ok"
    assert request_counts(otel_capture).get((method, status)) == 1


def call(proxy: Any, failed: bool) -> str:
    """Run one call; check its result is what it would be with no hooks at all; return the method."""
    if failed:
        with pytest.raises(RpcError) as info:
            proxy.fail(message="boom")
        assert (info.value.error_type, info.value.error_message) == ("ValueError", "ValueError: boom")
        return "fail"
    assert proxy.add(a=40, b=2) == 42
    return "add"


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("failed", [False, True], ids=["success", "failure"])
def test_both_hooks_produce_their_full_output(
    sentry_capture: SentryCapture, otel_capture: OtelCapture, order: str, transport: str, failed: bool
) -> None:
    """S29: registered in either order, on either transport, each hook records everything it documents."""
    server = instrumented(order, otel_capture)
    with connected(transport, server) as proxy:
        method = call(proxy, failed)
    assert_sentry_output(sentry_capture, transport, method, failed)
    assert_otel_output(otel_capture, transport, method, failed)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("order", ORDERS)
def test_streams_are_seen_by_both_hooks(
    sentry_capture: SentryCapture, otel_capture: OtelCapture, order: str, transport: str
) -> None:
    """S29 S14: a producer stream is one dispatch per HTTP turn (one on the pipe) for both hooks, same stream id."""
    server = instrumented(order, otel_capture)
    with connected(transport, server) as proxy:
        assert [b.to_pydict()["i"] for b in proxy.countdown(n=2)] == [[1], [0]]
    spans = [s for s in otel_capture.spans if s.name == "vgi_rpc/countdown"]
    txns = [t for t in sentry_capture.transactions if trace_data(t).get("rpc.method") == "countdown"]
    assert len(spans) == len(txns) == (1 if transport == "pipe" else 3)
    otel_ids = {s.attributes["rpc.vgi_rpc.stream_id"] for s in spans}
    if transport == "pipe":
        sentry_ids = {trace_data(t)["rpc.stream_id"] for t in txns}
    else:
        sentry_ids = {t["spans"][0]["data"]["rpc.stream_id"] for t in txns}
    assert len(otel_ids) == 1
    assert otel_ids == sentry_ids


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("failed", [False, True], ids=["success", "failure"])
def test_otel_hook_failure_leaves_sentry_and_the_result_intact(
    sentry_capture: SentryCapture,
    otel_capture: OtelCapture,
    order: str,
    transport: str,
    where: str,
    failed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S30: OpenTelemetry raising on start or end changes neither the result nor Sentry's output."""
    server = instrumented(order, otel_capture)
    otel_capture.tracer_provider.add_span_processor(RaisingProcessor(where))
    with connected(transport, server) as proxy:
        method = call(proxy, failed)
    assert_sentry_output(sentry_capture, transport, method, failed)
    assert any(f"on_dispatch_{where}" in r.getMessage() for r in caplog.records if r.name == "vgi_rpc")
    if where == "end":  # the span was exported before the broken processor ran; metrics still recorded
        assert_otel_output(otel_capture, transport, method, failed)
    else:
        assert otel_capture.spans == []


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("failed", [False, True], ids=["success", "failure"])
def test_sentry_hook_failure_leaves_otel_and_the_result_intact(
    sentry_capture: SentryCapture,
    otel_capture: OtelCapture,
    order: str,
    transport: str,
    where: str,
    failed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S30: the Sentry hook raising on start or end changes neither the result nor OpenTelemetry's output."""
    server = instrumented(order, otel_capture)
    _make_sentry_faulty(server, where)
    with connected(transport, server) as proxy:
        method = call(proxy, failed)
    assert_otel_output(otel_capture, transport, method, failed)
    assert any(f"on_dispatch_{where}" in r.getMessage() for r in caplog.records if r.name == "vgi_rpc")
    if where == "end":  # it raised after doing its work
        assert_sentry_output(sentry_capture, transport, method, failed)
    else:
        assert sentry_capture.events_for(method) == []


@pytest.mark.parametrize("order", ORDERS)
def test_explicit_sentry_instrumentation_after_both_keeps_the_otel_hook(
    sentry_capture: SentryCapture, otel_capture: OtelCapture, order: str
) -> None:
    """S5 S7: a later instrument_server_sentry replaces only the Sentry hook; the same OTel hook stays."""
    server = instrumented(order, otel_capture)
    (otel_hook,) = [h for h in server.hooks if isinstance(h, _OtelDispatchHook)]
    instrument_server_sentry(server, SentryConfig(custom_tags={"env": "explicit"}))
    hooks = server.hooks
    assert [h for h in hooks if isinstance(h, _OtelDispatchHook)] == [otel_hook]
    assert sum(isinstance(h, _SentryDispatchHook) for h in hooks) == 1
    with connected("pipe", server) as proxy:
        call(proxy, failed=True)
    assert sentry_capture.event()["tags"]["env"] == "explicit"
    assert_otel_output(otel_capture, "pipe", "fail", failed=True)


@pytest.mark.parametrize("order", ORDERS)
def test_instrument_server_again_keeps_the_sentry_hook(
    sentry_capture: SentryCapture, otel_capture: OtelCapture, order: str
) -> None:
    """S7 (mirror): re-running instrument_server replaces only the OTel hook."""
    server = instrumented(order, otel_capture)
    (sentry_hook,) = [h for h in server.hooks if isinstance(h, _SentryDispatchHook)]
    instrument_server(server, otel_capture.config_with(custom_attributes=OTEL_ATTRIBUTES))
    hooks = server.hooks
    assert [h for h in hooks if isinstance(h, _SentryDispatchHook)] == [sentry_hook]
    assert sum(isinstance(h, _OtelDispatchHook) for h in hooks) == 1
    with connected("pipe", server) as proxy:
        call(proxy, failed=True)
    assert_sentry_output(sentry_capture, "pipe", "fail", failed=True)
    assert_otel_output(otel_capture, "pipe", "fail", failed=True)


def test_make_wsgi_app_with_both_configs(sentry_capture: SentryCapture, otel_capture: OtelCapture) -> None:
    """S6 S29: sentry_config= and otel_config= together on an auto-attached server: one hook of each."""
    server = RpcServer(Calculator, CalculatorImpl())  # Sentry default auto-attached
    with http_proxy(
        server,
        _headers(),
        sentry_config=SENTRY_CONFIG,
        otel_config=otel_capture.config_with(custom_attributes=OTEL_ATTRIBUTES),
    ) as proxy:
        assert sorted(type(h).__name__ for h in server.hooks) == [
            "_OtelDispatchHook",
            "_SentryDispatchHook",
        ]
        method = call(proxy, failed=True)
    assert_sentry_output(sentry_capture, "http", method, failed=True)
    assert_otel_output(otel_capture, "http", method, failed=True)
