"""The real OpenTelemetry SDK wired to in-memory exporters (the ``otel`` fixture's value).

``tests/conftest.py`` builds one :class:`Otel` per test and shuts its providers
down afterwards; :meth:`Otel.config` is the ``OtelConfig`` that points a server
at them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vgi_rpc.otel import OtelConfig


@dataclasses.dataclass
class Otel:
    """Real SDK providers wired to in-memory exporters."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    @classmethod
    def create(cls) -> Otel:
        """Fresh providers: spans to an ``InMemorySpanExporter``, metrics to an ``InMemoryMetricReader``."""
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        return cls(exporter, reader, tracer_provider, meter_provider)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def config(self, **overrides: Any) -> OtelConfig:
        return OtelConfig(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **overrides
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric(self, name: str) -> Any:
        data = self.reader.get_metrics_data()
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        return metric, sm.scope
        raise AssertionError(f"no metric {name}")

    def request_counts(self) -> dict[tuple[str, str], int]:
        """``(method, status) -> count`` from ``rpc.server.requests``."""
        data = self.reader.get_metrics_data()
        counts: dict[tuple[str, str], int] = {}
        if data is None:
            return counts
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "rpc.server.requests":
                        for p in metric.data.data_points:
                            key = (str(p.attributes["rpc.method"]), str(p.attributes["rpc.vgi_rpc.status"]))
                            counts[key] = int(p.value)
        return counts
