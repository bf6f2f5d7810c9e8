"""The stream states the test suites share: one home for each producer and exchange.

* for ``support.services.Calculator``: :class:`Countdown` (column ``i``, ``n-1`` down
  to ``0``, a log per tick), :class:`Scaler` (``y = x * factor``, echoing the input's
  metadata), :class:`FailingProducer`, :class:`FailingExchange`; processing and
  cancels are recorded by ``tag`` (:func:`record`, :func:`stream_events`);
* for ``support.shop.Shop`` (the Sentry suites): :class:`Ticks` (column ``n``, ``n``
  down to ``1``, failing at ``fail_at``) and :class:`CheckedScale` (``x * factor``,
  refusing negative input).

States are dataclasses with Arrow-mappable fields (HTTP carries a state in a
token). Names, columns, messages and exception types are asserted by the suites:
add, don't change. Not here: ``tests/sentry/test_sentry_snapshots.py`` keeps its own
pair, because its snapshots pin the module their frames come from; the
conformance service (``tests/conformance/``) is the official one; and states a
single test builds to break something stay beside that test.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vgi_rpc import AnnotatedBatch, CallContext, ExchangeState, OutputCollector, ProducerState

# --------------------------------------------------------------------------- event registry

_EVENTS_LOCK = threading.Lock()
_EVENTS: dict[str, list[str]] = defaultdict(list)


def record(tag: str, event: str) -> None:
    """Record *event* for stream *tag* (``"process"``, ``"cancel"``...)."""
    with _EVENTS_LOCK:
        _EVENTS[tag].append(event)


def stream_events(tag: str) -> list[str]:
    """Events recorded so far for *tag*, in order."""
    with _EVENTS_LOCK:
        return list(_EVENTS.get(tag, ()))


ERROR_TYPES: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "RuntimeError": RuntimeError,
    "ZeroDivisionError": ZeroDivisionError,
    "FileNotFoundError": FileNotFoundError,
    "ArrowInvalid": pa.ArrowInvalid,
    "PermissionError": PermissionError,
}
"""Exception classes the failing methods can raise, by name (``error_type`` parameter)."""


def raise_named(error_type: str, message: str) -> None:
    """Raise ``ERROR_TYPES[error_type](message)``."""
    raise ERROR_TYPES[error_type](message)


# --------------------------------------------------------------------------- stream states

COUNT_SCHEMA = pa.schema([pa.field("i", pa.int64(), nullable=False)])
X_SCHEMA = pa.schema([pa.field("x", pa.float64())])
Y_SCHEMA = pa.schema([pa.field("y", pa.float64())])


def xs(*values: float) -> AnnotatedBatch:
    """An input batch for ``Calculator.scale`` / ``fail_process``: column ``x``, type inferred."""
    return AnnotatedBatch.from_pydict({"x": list(values)})


@dataclass
class Countdown(ProducerState):
    """Emits ``n-1 ... 0`` one row per turn, logging each tick, then finishes."""

    n: int
    tag: str = ""

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        """One row per turn; ``finish()`` when exhausted."""
        if self.n <= 0:
            out.finish()
            return
        self.n -= 1
        if self.tag:
            record(self.tag, "produce")
        out.log("INFO", f"tick {self.n}", remaining=self.n)
        out.emit_pydict({"i": [self.n]})


@dataclass
class Scaler(ExchangeState):
    """Multiplies column ``x`` by ``factor`` into column ``y``; records process/cancel by tag."""

    factor: float
    tag: str = ""

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """Emit ``y = x * factor``; echoes the input's custom metadata."""
        if self.tag:
            record(self.tag, "process")
        xs = input.batch.column("x").to_pylist()
        md = dict(input.custom_metadata or {})
        if md:
            out.log("DEBUG", "input metadata", **md)
        out.emit_pydict({"y": [None if x is None else x * self.factor for x in xs]}, metadata=md or None)

    def on_cancel(self, ctx: CallContext) -> None:
        """Record the cancel."""
        if self.tag:
            record(self.tag, "cancel")


@dataclass
class FailingProducer(ProducerState):
    """Emits ``n`` rows, then raises ``ERROR_TYPES[error_type](message)``."""

    n: int
    message: str
    error_type: str = "RuntimeError"
    emitted: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        """Emit until ``n``, then fail."""
        if self.emitted >= self.n:
            raise_named(self.error_type, self.message)
        self.emitted += 1
        out.emit_pydict({"i": [self.emitted]})


@dataclass
class FailingExchange(ExchangeState):
    """Echoes ``x`` as ``y``; raises ``ERROR_TYPES[error_type](message)`` on a negative ``x``."""

    message: str
    error_type: str = "ValueError"

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """Fail on negative input, else echo."""
        xs = input.batch.column("x").to_pylist()
        if any(x is not None and x < 0 for x in xs):
            raise_named(self.error_type, self.message)
        out.emit_pydict({"y": xs})


# --------------------------------------------------------------------------- the Shop's states


@dataclass
class Ticks(ProducerState):
    """Emits ``n``, ``n-1`` ... ``1`` in column ``n``; raises ``RuntimeError`` on reaching ``fail_at``."""

    n: int
    fail_at: int = -1

    def produce(self, out: OutputCollector, ctx: Any) -> None:
        """One row per turn; ``finish()`` when exhausted."""
        if self.n == self.fail_at:
            raise RuntimeError(f"producer failed at {self.n}")
        if self.n <= 0:
            out.finish()
            return
        out.emit_pydict({"n": [self.n]})
        self.n -= 1


@dataclass
class CheckedScale(ExchangeState):
    """Multiplies column ``x`` by ``factor``; raises ``ArithmeticError`` on negative input."""

    factor: float

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: Any) -> None:
        """Emit ``x * factor``, or fail on a negative ``x``."""
        xs = input.batch.column("x").to_pylist()
        if any(x < 0 for x in xs):
            raise ArithmeticError("negative input")
        out.emit_pydict({"x": [x * self.factor for x in xs]})
