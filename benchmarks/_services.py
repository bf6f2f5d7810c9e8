"""The small service every benchmark serves: trivial methods, so the framework's cost shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from vgi_rpc import CallContext, ExchangeState, OutputCollector, ProducerState, Stream
from vgi_rpc.streams import AnnotatedBatch

COUNT_SCHEMA = pa.schema([pa.field("i", pa.int64(), nullable=False)])
SCALE_SCHEMA = pa.schema([pa.field("x", pa.float64(), nullable=False)])


class Bench(Protocol):
    """A trivial unary method, a producer, an exchange and a failing method."""

    def add(self, a: int, b: int) -> int:
        """Return a + b."""
        ...

    def greet(self, name: str, punctuation: str = "!") -> str:
        """Return a greeting."""
        ...

    def countdown(self, n: int) -> Stream[ProducerState]:
        """Produce n one-row batches."""
        ...

    def scale(self, factor: float) -> Stream[ExchangeState]:
        """Multiply each input batch by factor."""
        ...

    def fail(self, message: str) -> str:
        """Always raise ValueError(message)."""
        ...


@dataclass
class Countdown(ProducerState):
    """Emits ``n``, ``n-1`` ... ``1``, then finishes."""

    n: int

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        """One batch per turn."""
        if self.n <= 0:
            out.finish()
            return
        out.emit_pydict({"i": [self.n]})
        self.n -= 1


@dataclass
class Scale(ExchangeState):
    """Multiplies the ``x`` column by ``factor``."""

    factor: float

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """One output batch per input batch."""
        xs = input.batch.column("x").to_pylist()
        out.emit_pydict({"x": [x * self.factor for x in xs]})


class BenchImpl:
    """Implementation of :class:`Bench`."""

    def add(self, a: int, b: int) -> int:
        return a + b

    def greet(self, name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    def countdown(self, n: int) -> Stream[ProducerState]:
        return Stream(output_schema=COUNT_SCHEMA, state=Countdown(n))

    def scale(self, factor: float) -> Stream[ExchangeState]:
        return Stream(output_schema=SCALE_SCHEMA, state=Scale(factor), input_schema=SCALE_SCHEMA)

    def fail(self, message: str) -> str:
        raise ValueError(message)
