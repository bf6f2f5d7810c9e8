"""Test your OpenTelemetry instrumentation against the real SDK, with nothing exported anywhere.

The public face is :func:`otel_capture`, the same shape as
:func:`~vgi_rpc.testing.sentry_capture`:

* as a **pytest fixture** (registered by the ``pytest11`` entry point)::

      def test_add_is_traced(otel_capture):
          server = instrument_server(RpcServer(Calc, CalcImpl()), otel_capture.config)
          server.dispatch("add", a=1, b=2)
          span = otel_capture.span(method="add")
          assert span.kind == "SERVER"
          assert span.attributes["rpc.service"] == "Calc"

* as a **context manager**: ``with otel_capture() as cap: ...``.

Inside, a real SDK ``TracerProvider`` exports every finished span to an
``InMemorySpanExporter`` (through a ``SimpleSpanProcessor``: synchronously, as
the span ends) and a real SDK ``MeterProvider`` has an ``InMemoryMetricReader``.
Everything read from an :class:`OtelCapture` is plain data
(:class:`CapturedSpan`, :class:`MetricPoint`: strings, numbers, dicts).

**No global provider.** OpenTelemetry lets a process set its global
providers once, so a capture never sets them: hand ``cap.config``
(an :class:`~vgi_rpc.otel.OtelConfig` with the capture's providers) to
``instrument_server`` / ``make_wsgi_app(otel_config=...)`` / ``serve_http``.
The global providers, whatever they are, are the same objects after the
capture as before it, and nothing in the capture reaches them.

Caveats:

* **Only what you route here is captured.** A server instrumented with the
  global providers (``OtelConfig()`` without providers) reports to those, not
  to the capture; so does your own code's ``trace.get_tracer(...)``.  Get your
  tracers from ``cap.tracer_provider`` when you want their spans too.
* **Threads.** Spans are exported when they end, in the thread that ends
  them; join your threads (or wait for the response) before reading.
* **Metrics are cumulative.** :attr:`OtelCapture.metrics` collects the reader
  on each read and reports totals since the capture started.
* **After the block** the providers are shut down (later spans are dropped)
  and what was captured stays readable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from vgi_rpc._extras import require

require("vgi_rpc.testing.otel", "otel")  # a missing OpenTelemetry SDK names the extra to install

from opentelemetry import metrics as _metrics_api  # noqa: E402
from opentelemetry import trace as _trace_api  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import (  # noqa: E402
    Gauge,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from vgi_rpc.otel import OtelConfig  # noqa: E402
from vgi_rpc.testing._trace import TraceTree, criteria  # noqa: E402

__all__ = [
    "CapturedSpan",
    "MetricPoint",
    "OtelCapture",
    "OtelTrace",
    "SpanEvent",
    "SpanParent",
    "otel_capture",
]


@dataclass(frozen=True)
class SpanParent:
    """The parent of a span: ids as lower-case hex, and whether it came from another process."""

    trace_id: str
    span_id: str
    is_remote: bool


@dataclass(frozen=True)
class SpanEvent:
    """An event on a span (e.g. the ``exception`` event of a failed call)."""

    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class CapturedSpan:
    """One finished span as plain data.

    Attributes:
        name: e.g. ``vgi_rpc/add``.
        kind: ``"SERVER"``, ``"CLIENT"``, ``"INTERNAL"``, ``"PRODUCER"`` or ``"CONSUMER"``.
        attributes: The span's attributes (sequence values are tuples, as the SDK keeps them).
        status: ``"UNSET"``, ``"OK"`` or ``"ERROR"``.
        status_description: The status description (``None`` when there is none).
        trace_id: 32 lower-case hex digits.
        span_id: 16 lower-case hex digits.
        parent: The parent span's ids, or ``None`` for a root span.
        trace_state: The W3C ``tracestate`` entries.
        events: The span's events, in order.
        scope: The instrumentation scope's name (``"vgi_rpc"`` for ours).
        start_ns: Start time, nanoseconds since the epoch.
        end_ns: End time, nanoseconds since the epoch.
        raw: The SDK's ``ReadableSpan`` (for anything not copied here).
    """

    name: str
    kind: str
    attributes: dict[str, Any]
    status: str
    status_description: str | None
    trace_id: str
    span_id: str
    parent: SpanParent | None
    trace_state: dict[str, str]
    events: tuple[SpanEvent, ...]
    scope: str | None
    start_ns: int
    end_ns: int
    raw: ReadableSpan = field(repr=False, compare=False)

    @classmethod
    def of(cls, span: ReadableSpan) -> CapturedSpan:
        """Copy what a test asserts on out of an SDK ``ReadableSpan``."""
        ctx = span.get_span_context()
        parent = span.parent
        return cls(
            name=span.name,
            kind=span.kind.name,
            attributes=dict(span.attributes or {}),
            status=span.status.status_code.name,
            status_description=span.status.description,
            trace_id=format(ctx.trace_id, "032x") if ctx is not None else "",
            span_id=format(ctx.span_id, "016x") if ctx is not None else "",
            parent=None
            if parent is None
            else SpanParent(
                format(parent.trace_id, "032x"), format(parent.span_id, "016x"), parent.is_remote
            ),
            trace_state=dict(ctx.trace_state.items()) if ctx is not None else {},
            events=tuple(SpanEvent(e.name, dict(e.attributes or {})) for e in span.events),
            scope=span.instrumentation_scope.name if span.instrumentation_scope is not None else None,
            start_ns=span.start_time or 0,
            end_ns=span.end_time or 0,
            raw=span,
        )

    @property
    def method(self) -> Any:
        """``attributes["rpc.method"]`` (``None`` when absent)."""
        return self.attributes.get("rpc.method")

    def describe(self) -> str:
        """One line: name, kind, status, ids, the rpc attributes that identify the call."""
        parent = (
            "-"
            if self.parent is None
            else f"{self.parent.span_id}{' (remote)' if self.parent.is_remote else ''}"
        )
        status = (
            self.status if self.status_description is None else f"{self.status}({self.status_description})"
        )
        keys = ("rpc.method", "rpc.vgi_rpc.transport", "rpc.vgi_rpc.turn")
        rpc = " ".join(f"{k.rsplit('.', 1)[-1]}={self.attributes[k]}" for k in keys if k in self.attributes)
        return (
            f"{self.name} {self.kind} status={status} trace={self.trace_id[:8]}.. "
            f"span={self.span_id} parent={parent}{' ' + rpc if rpc else ''}"
        )


@dataclass(frozen=True, repr=False)
class OtelTrace(TraceTree[CapturedSpan]):
    """One OpenTelemetry trace as a capture holds it: its spans with their parent links.

    Attributes:
        trace_id: The trace's id (32 lower-case hex digits).
        spans: Its :class:`CapturedSpan` s, in start order.

    :attr:`roots` are the spans whose parent is not in this capture: the
    trace's top, and a span whose parent is remote (another process's span,
    e.g. the caller's, reported to another provider). ``chain`` gives span
    names; ``describe`` lists ``name [KIND] span_id`` per line, a span's
    ``exception`` events under it.
    """

    def _span_id(self, span: CapturedSpan) -> str | None:
        return span.span_id or None

    def _parent_id(self, span: CapturedSpan) -> str | None:
        return span.parent.span_id if span.parent is not None else None

    def _label(self, span: CapturedSpan) -> str:
        return span.name

    def _line(self, span: CapturedSpan) -> str:
        line = f"{span.name} [{span.kind}] {span.span_id}"
        if span.status != "UNSET":
            line += f" status={span.status}"
        if span.parent is not None and self.parent(span) is None:
            where = "remote" if span.parent.is_remote else "not captured"
            line += f" (parent {span.parent.span_id} {where})"
        return line

    def _lines_under(self, span: CapturedSpan, depth: int) -> list[str]:
        return [
            "  " * depth
            + f"! exception {e.attributes.get('exception.type')}: {e.attributes.get('exception.message')}"
            for e in span.events
            if e.name == "exception"
        ]

    def find(self, name: str | None = None, *, method: str | None = None) -> CapturedSpan:
        """The one span of this trace with that ``name`` and/or ``rpc.method`` attribute (both optional).

        Raises:
            AssertionError: not exactly one such span; the message is :meth:`describe`
                (for a trace this capture has no span of, it also lists the traces it has).
        """
        __tracebackhide__ = True
        wanted = criteria(("named", name), ("for method", method))
        return self._find(
            lambda s: (name is None or s.name == name) and (method is None or s.method == method), wanted
        )


def otel_trace_id(trace_id: object) -> str:
    """*trace_id* as :class:`CapturedSpan` spells it: an int (the SDK's) as 32 hex digits, a str lower-cased."""
    if isinstance(trace_id, int) and not isinstance(trace_id, bool):
        return format(trace_id, "032x")
    if isinstance(trace_id, str):
        return trace_id.strip().lower()
    raise TypeError(f"trace id must be a 32-hex str or an int, not {type(trace_id).__name__}: {trace_id!r}")


@dataclass(frozen=True)
class MetricPoint:
    """One data point of one metric as plain data.

    Attributes:
        name: The metric, e.g. ``rpc.server.requests``.
        kind: ``"sum"`` (counters), ``"gauge"`` or ``"histogram"``.
        unit: The instrument's unit (``"{request}"``, ``"s"``).
        description: The instrument's description.
        scope: The instrumentation scope's name.
        attributes: The point's attributes.
        value: The total (``sum``) or last value (``gauge``); for a histogram, its sum.
        count: Recorded measurements (histograms; ``None`` otherwise).
        sum: Sum of measurements (histograms; ``None`` otherwise).
        min: Smallest measurement (histograms; ``None`` otherwise).
        max: Largest measurement (histograms; ``None`` otherwise).
    """

    name: str
    kind: str
    unit: str
    description: str
    scope: str
    attributes: dict[str, Any]
    value: float
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None

    def describe(self) -> str:
        """One line: name, value (or count/sum) and attributes."""
        what = f"count={self.count} sum={self.sum:.6g}" if self.kind == "histogram" else f"value={self.value}"
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(self.attributes.items()))
        return f"{self.name} ({self.kind}, {self.unit}) {what} {{{attrs}}}"


def _points(data: MetricsData | None) -> list[MetricPoint]:
    out: list[MetricPoint] = []
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = "gauge" if isinstance(metric.data, Gauge) else "sum"
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    unit, text, scope = metric.unit or "", metric.description or "", sm.scope.name
                    if isinstance(point, HistogramDataPoint):
                        out.append(
                            MetricPoint(
                                metric.name,
                                "histogram",
                                unit,
                                text,
                                scope,
                                attrs,
                                point.sum,
                                count=point.count,
                                sum=point.sum,
                                min=point.min,
                                max=point.max,
                            )
                        )
                    elif isinstance(point, NumberDataPoint):
                        out.append(MetricPoint(metric.name, kind, unit, text, scope, attrs, point.value))
    return out


class OtelCapture:
    """What one :func:`otel_capture` recorded; every accessor returns plain data.

    Attributes:
        tracer_provider: The capture's SDK ``TracerProvider`` (add processors,
            get your own tracers from it).
        meter_provider: The capture's SDK ``MeterProvider``.
        exporter: The ``InMemorySpanExporter`` behind :attr:`spans`.
        reader: The ``InMemoryMetricReader`` behind :attr:`metrics`.
    """

    def __init__(self) -> None:
        """Build the providers; :func:`otel_capture` does this, you normally don't."""
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self._active = True
        self._final_points: list[MetricPoint] | None = None

    @property
    def active(self) -> bool:
        """Whether the capture's providers are still running."""
        return self._active

    @property
    def config(self) -> OtelConfig:
        """An :class:`~vgi_rpc.otel.OtelConfig` that reports to this capture (everything else default)."""
        return OtelConfig(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def config_with(self, **overrides: Any) -> OtelConfig:
        """:attr:`config` with other ``OtelConfig`` fields set, e.g. ``config_with(record_exceptions=False)``."""
        return replace(self.config, **overrides)

    # -- spans -------------------------------------------------------------------------

    @property
    def spans(self) -> list[CapturedSpan]:
        """Every finished span, in the order they ended."""
        return [CapturedSpan.of(s) for s in self.exporter.get_finished_spans()]

    def spans_for(self, method: str) -> list[CapturedSpan]:
        """Finished spans whose ``rpc.method`` attribute is *method*."""
        return [s for s in self.spans if s.method == method]

    def span(self, method: str | None = None, *, name: str | None = None) -> CapturedSpan:
        """The single finished span (for *method* / with *name*, if given).

        Raises:
            AssertionError: if there is not exactly one; the message lists
                everything that was captured.
        """
        __tracebackhide__ = True
        found = self.spans
        if method is not None:
            found = [s for s in found if s.method == method]
        if name is not None:
            found = [s for s in found if s.name == name]
        if len(found) == 1:
            return found[0]
        where = " ".join(
            part
            for part in (
                f"for method {method!r}" if method is not None else "",
                f"named {name!r}" if name is not None else "",
            )
            if part
        )
        raise AssertionError(
            f"expected exactly one span{' ' + where if where else ''}, found {len(found)}; "
            f"captured:\n{self.describe()}"
        )

    @property
    def trace_ids(self) -> list[str]:
        """The distinct trace ids of the finished spans, in the order spans ended."""
        return list(dict.fromkeys(s.trace_id for s in self.spans if s.trace_id))

    def trace(self, trace_id: str | int) -> OtelTrace:
        """One trace: its finished spans, in start order, with their parent links.

        ``trace_id`` is 32 hex digits (``CapturedSpan.trace_id``, case does not
        matter) or the SDK's int (``span.get_span_context().trace_id``). A trace
        this capture has no span of is an empty :class:`OtelTrace`, not an
        error; its ``find`` fails naming the traces the capture does hold.
        Only spans routed to this capture's provider and already ended are there.

        Raises:
            TypeError: ``trace_id`` is neither a str nor an int.
        """
        wanted = otel_trace_id(trace_id)
        spans = self.spans
        mine = sorted((s for s in spans if s.trace_id == wanted), key=lambda s: s.start_ns)
        return OtelTrace(wanted, tuple(mine), tuple(dict.fromkeys(s.trace_id for s in spans if s.trace_id)))

    def clear(self) -> None:
        """Forget the spans captured so far (metrics are cumulative and stay)."""
        self.exporter.clear()

    # -- metrics -----------------------------------------------------------------------

    @property
    def metrics(self) -> list[MetricPoint]:
        """Every point of every metric, totals since the capture started."""
        if self._final_points is not None:
            return list(self._final_points)
        return _points(self.reader.get_metrics_data())

    def points(self, name: str) -> list[MetricPoint]:
        """The points of metric *name* (e.g. ``rpc.server.requests``), one per attribute set."""
        return [p for p in self.metrics if p.name == name]

    # -- diagnostics -------------------------------------------------------------------

    def describe(self) -> str:
        """A short human-readable listing of the spans and metric points (used in failures)."""
        lines = [f"  [{i}] {span.describe()}" for i, span in enumerate(self.spans)]
        if not lines:
            lines.append("  (no finished span)")
        lines += [f"  metric {p.describe()}" for p in self.metrics]
        return "\n".join(lines)

    def _close(self) -> None:
        if not self._active:
            return
        self._final_points = _points(self.reader.get_metrics_data())
        self._active = False
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    def __repr__(self) -> str:
        state = "active" if self._active else "closed"
        return f"<OtelCapture {state}: {len(self.exporter.get_finished_spans())} span(s)>"


def _globals() -> tuple[object, object]:
    return _trace_api.get_tracer_provider(), _metrics_api.get_meter_provider()


@contextlib.contextmanager
def otel_capture() -> Iterator[OtelCapture]:
    """Real SDK providers with in-memory exporters for the block; yield an :class:`OtelCapture`.

    Instrument with ``cap.config``.  The global providers are never touched
    (they are the same objects after the block); on exit the capture's
    providers are flushed and shut down and the captured data stays
    readable.  Also available as the pytest fixture ``otel_capture``.
    """
    before = _globals()
    cap = OtelCapture()
    try:
        yield cap
    finally:
        cap._close()
        after = _globals()
        if after != before:  # only if the code under test set a global
            import warnings

            warnings.warn(
                "the global OpenTelemetry providers changed during otel_capture() "
                "(the code under test called set_tracer_provider/set_meter_provider); "
                "OpenTelemetry cannot undo that",
                stacklevel=3,
            )
