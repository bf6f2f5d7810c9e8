"""The ``otel_capture`` kit (``vgi_rpc.testing.otel``): real SDK providers, plain data, no global.

Its use against the instrumentation (spans, attributes, metrics, every
transport) is ``test_otel.py``; this module tests the kit itself: that it
touches no global provider, its failure messages and report section, what
stays readable after the block, and the error without the ``otel`` extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from support.services import Calculator, CalculatorImpl

from vgi_rpc import RpcServer, serve_pipe
from vgi_rpc.otel import OtelConfig, instrument_server
from vgi_rpc.testing.otel import CapturedSpan, MetricPoint, OtelCapture, otel_capture

pytest_plugins = ["pytester"]


def test_config_routes_spans_and_metrics_to_the_capture() -> None:
    with otel_capture() as cap:
        assert isinstance(cap.config, OtelConfig)
        assert cap.config.tracer_provider is cap.tracer_provider
        assert cap.config.meter_provider is cap.meter_provider
        assert cap.config_with(record_exceptions=False).record_exceptions is False
        server = instrument_server(RpcServer(Calculator, CalculatorImpl()), cap.config)
        with serve_pipe(server) as proxy:
            assert proxy.add(a=1, b=2) == 3
        span = cap.span(method="add")
    assert isinstance(span, CapturedSpan)
    assert (span.name, span.kind, span.status) == ("vgi_rpc/add", "SERVER", "UNSET")
    assert span.attributes["rpc.system"] == "vgi_rpc"
    assert len(span.trace_id) == 32 and len(span.span_id) == 16
    assert span.end_ns >= span.start_ns > 0
    (point,) = cap.points("rpc.server.requests")
    assert isinstance(point, MetricPoint)
    assert (point.kind, point.value, point.unit, point.scope) == ("sum", 1, "{request}", "vgi_rpc")
    (hist,) = cap.points("rpc.server.duration")
    assert hist.kind == "histogram" and hist.count == 1 and hist.sum is not None and hist.sum >= 0


def test_global_providers_are_the_same_objects_before_and_after() -> None:
    """No global is set: OpenTelemetry would refuse a second one, so a capture never sets one."""
    before = (trace.get_tracer_provider(), metrics.get_meter_provider())
    with otel_capture() as cap:
        assert trace.get_tracer_provider() is before[0]
        assert metrics.get_meter_provider() is before[1]
        assert cap.tracer_provider is not before[0]
    assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before


def test_a_global_sdk_provider_set_by_the_app_receives_nothing_from_the_capture() -> None:
    """In a fresh process: the app's own global providers stay installed and see none of the capture's spans."""
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.path.insert(0, TESTS)
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from support.services import Calculator, CalculatorImpl
        from vgi_rpc import RpcServer
        from vgi_rpc.otel import instrument_server
        from vgi_rpc.testing.otel import otel_capture

        app_exporter = InMemorySpanExporter()
        app_provider = TracerProvider()
        app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
        trace.set_tracer_provider(app_provider)
        with otel_capture() as cap:
            server = instrument_server(RpcServer(Calculator, CalculatorImpl()), cap.config)
            server.dispatch("add", a=1, b=2)
        assert trace.get_tracer_provider() is app_provider
        assert [s.name for s in cap.spans] == ["vgi_rpc/add"]
        assert list(app_exporter.get_finished_spans()) == []
        # the code under test replacing a global is reported (OpenTelemetry cannot undo it)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with otel_capture():
                from opentelemetry.sdk.metrics import MeterProvider
                metrics.set_meter_provider(MeterProvider())
        print([str(w.message) for w in caught])
        """
    )
    script = script.replace("TESTS", repr(str(Path(__file__).resolve().parents[1])))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "the global OpenTelemetry providers changed during otel_capture()" in proc.stdout


def test_span_helper_fails_listing_what_was_captured() -> None:
    with otel_capture() as cap:
        server = instrument_server(RpcServer(Calculator, CalculatorImpl()), cap.config)
        with pytest.raises(AssertionError) as none:
            cap.span(method="add")
        server.dispatch("add", a=1, b=2)
        server.dispatch("add", a=3, b=4)
        with pytest.raises(AssertionError) as two:
            cap.span(method="add")
        with pytest.raises(AssertionError, match=r"^expected exactly one span named 'vgi_rpc/sub', found 0"):
            cap.span(name="vgi_rpc/sub")
    assert str(none.value).startswith("expected exactly one span for method 'add', found 0; captured:\n")
    assert "(no finished span)" in str(none.value)
    message = str(two.value)
    assert message.startswith("expected exactly one span for method 'add', found 2; captured:\n")
    assert message.count("vgi_rpc/add SERVER status=UNSET") == 2
    assert "metric rpc.server.requests (sum, {request}) value=2" in message


def test_data_stays_readable_after_exit_and_later_spans_are_dropped() -> None:
    with otel_capture() as cap:
        server = instrument_server(RpcServer(Calculator, CalculatorImpl()), cap.config)
        server.dispatch("add", a=1, b=2)
        assert cap.active
    assert not cap.active
    server.dispatch("add", a=5, b=5)  # the providers are shut down: nothing more is recorded
    assert [s.name for s in cap.spans] == ["vgi_rpc/add"]
    (point,) = cap.points("rpc.server.requests")
    assert point.value == 1
    assert repr(cap) == "<OtelCapture closed: 1 span(s)>"


def test_clear_forgets_spans() -> None:
    with otel_capture() as cap:
        server = instrument_server(RpcServer(Calculator, CalculatorImpl()), cap.config)
        server.dispatch("add", a=1, b=2)
        cap.clear()
        assert cap.spans == []
        server.dispatch("add", a=1, b=2)
        assert len(cap.spans) == 1


def test_fixture_is_an_otel_capture(otel_capture: OtelCapture) -> None:
    assert isinstance(otel_capture, OtelCapture) and otel_capture.active


_FAILING = """
from vgi_rpc import RpcServer
from vgi_rpc.otel import instrument_server
from typing import Protocol


class Calc(Protocol):
    def add(self, a: int, b: int) -> int: ...


class CalcImpl:
    def add(self, a: int, b: int) -> int:
        return a + b


def test_fails(otel_capture):
    server = instrument_server(RpcServer(Calc, CalcImpl()), otel_capture.config)
    server.dispatch("add", a=1, b=2)
    assert otel_capture.span().attributes["rpc.method"] == "sub"


def test_passes(otel_capture):
    server = instrument_server(RpcServer(Calc, CalcImpl()), otel_capture.config)
    server.dispatch("add", a=1, b=2)
    assert otel_capture.span().attributes["rpc.method"] == "add"
"""


def test_a_failing_test_reports_the_captured_spans(pytester: pytest.Pytester) -> None:
    """Like pytest's "Captured log call": the failing test's report lists spans and points; passing ones add nothing."""
    pytester.makepyfile(test_app=_FAILING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert out.count("Captured OpenTelemetry spans") == 1
    result.stdout.fnmatch_lines(
        [
            "*- Captured OpenTelemetry spans -*",
            "  [[]0[]] vgi_rpc/add SERVER status=UNSET trace=* span=* parent=- method=add transport=inproc turn=call",
            "  metric rpc.server.requests (sum, {request}) value=1 {*rpc.method=add*}",
        ]
    )


def test_without_the_otel_sdk_the_import_names_the_extra() -> None:
    """Optional parts fail helpfully: no opentelemetry-sdk -> ModuleNotFoundError naming vgi-rpc[otel]."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry.sdk"] = None  # as if opentelemetry-sdk were not installed
        try:
            import vgi_rpc.testing.otel
        except ModuleNotFoundError as exc:
            print(exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "vgi_rpc.testing.otel needs the 'otel' extra: pip install 'vgi-rpc[otel]'" in proc.stdout
    assert "(missing module: opentelemetry.sdk)" in proc.stdout
