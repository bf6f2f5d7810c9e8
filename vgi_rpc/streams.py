"""Streams: producer and exchange calls, their state and output.

A stream method returns ``Stream(output_schema=..., state=...)``. Without
``input_schema`` it is a *producer*: the server calls ``state.produce(out, ctx)``
once per turn until ``out.finish()``. With ``input_schema`` it is an *exchange*:
each client batch is passed to ``state.process(input, out, ctx)`` (or
``ExchangeState.exchange``), which must emit exactly one batch.

Over HTTP the state travels between turns inside a sealed token, so a state must
be a dataclass whose fields have types vgi-rpc can map to Arrow (the same types as
method parameters); over the pipe it stays in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic

import pyarrow as pa
from typing_extensions import TypeVar  # PEP 696 defaults: Stream[S] and Stream[S, H] on 3.11

from vgi_rpc.context import CallContext, LogSink, normalize_level
from vgi_rpc.errors import clip

__all__ = [
    "EMPTY_SCHEMA",
    "AnnotatedBatch",
    "ExchangeState",
    "OutputCollector",
    "ProducerState",
    "Stream",
    "StreamState",
    "cast_input",
]

EMPTY_SCHEMA = pa.schema([])


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A zero-row batch on *schema* (works for the empty schema too)."""
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


@dataclass(slots=True)
class AnnotatedBatch:
    """A record batch plus its custom metadata (string keys and values)."""

    batch: pa.RecordBatch
    custom_metadata: Mapping[str, str] | None = None

    @classmethod
    def from_pydict(
        cls,
        data: Mapping[str, Any],
        schema: pa.Schema | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AnnotatedBatch:
        """Build from column lists, e.g. ``AnnotatedBatch.from_pydict({"x": [1, 2]})``."""
        return cls(pa.RecordBatch.from_pydict(dict(data), schema=schema), metadata)

    def to_pydict(self) -> dict[str, list[Any]]:
        """The batch's columns as Python lists."""
        return self.batch.to_pydict()  # type: ignore[no-any-return]


def cast_input(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast an exchange input to the stream's input schema (int32 -> float64...).

    Raises ``TypeError`` naming the problem when the columns differ or a column
    cannot be cast; the client then sees that error.
    """
    if batch.schema.names != schema.names:
        raise TypeError(
            f"exchange input columns {clip(str(batch.schema.names))} do not match the stream's input columns "
            f"{schema.names}"
        )
    try:
        return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise TypeError(
            f"exchange input schema {clip(str(batch.schema))} cannot be cast to {schema}: {clip(str(exc))}"
        ) from None


class OutputCollector:
    """Collects what one stream turn sends: log messages and data batches.

    Producer turns emit at most one batch or call :meth:`finish`; exchange turns
    must emit exactly one batch. On the server, a turn's log messages go to the
    call's log buffer (the same one ``ctx.log()`` writes to, so both keep their
    order) and reach the client ahead of the turn's data; a collector built
    without *log* (e.g. in a unit test of a state) keeps them in :attr:`items`.
    """

    __slots__ = ("_log", "_producer", "finished", "items", "output_schema")

    def __init__(self, output_schema: pa.Schema, *, producer: bool, log: LogSink | None = None) -> None:
        self.output_schema = output_schema
        self._producer = producer
        self._log = log
        self.finished = False
        # ("data", batch, metadata), and ("log", level, message, extra) when there is no *log* sink
        self.items: list[tuple[Any, ...]] = []

    @property
    def data_count(self) -> int:
        """How many data batches were emitted this turn."""
        return sum(1 for it in self.items if it[0] == "data")

    def emit(self, batch: pa.RecordBatch | AnnotatedBatch, metadata: Mapping[str, str] | None = None) -> None:
        """Emit one data batch; it must match the stream's output schema."""
        if isinstance(batch, AnnotatedBatch):
            metadata = metadata if metadata is not None else batch.custom_metadata
            batch = batch.batch
        if self.data_count:
            raise RuntimeError("a stream turn may emit only one data batch")
        if not batch.schema.equals(self.output_schema):
            try:
                batch = batch.cast(self.output_schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise TypeError(
                    f"emitted batch schema {batch.schema} does not match output schema {self.output_schema}"
                ) from exc
        self.items.append(("data", batch, dict(metadata) if metadata else None))

    def emit_pydict(self, data: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> None:
        """Emit one data batch built from column lists on the output schema."""
        self.emit(pa.RecordBatch.from_pydict(dict(data), schema=self.output_schema), metadata)

    def emit_arrays(self, arrays: list[pa.Array], metadata: Mapping[str, str] | None = None) -> None:
        """Emit one data batch from arrays in output-schema order."""
        self.emit(pa.RecordBatch.from_arrays(arrays, schema=self.output_schema), metadata)

    def log(self, level: str, message: str, **extra: Any) -> None:
        """Send a log message to the client ahead of this turn's data."""
        if self._log is not None:
            self._log(normalize_level(level), message, extra)
        else:
            self.items.append(("log", normalize_level(level), message, extra))

    @property
    def data(self) -> tuple[pa.RecordBatch, dict[str, str] | None] | None:
        """The turn's data batch and its metadata, or ``None`` when it emitted none."""
        for item in self.items:
            if item[0] == "data":
                return item[1], item[2]
        return None

    client_log = log

    def finish(self) -> None:
        """End a producer stream after this turn."""
        if not self._producer:
            raise RuntimeError(
                "finish() is for producer streams; exchange streams end when the client closes"
            )
        self.finished = True

    def validate(self) -> None:
        """Check the turn emitted what its kind requires."""
        n = self.data_count
        if self._producer:
            if n == 0 and not self.finished:
                raise RuntimeError("producer turn emitted no batch and did not call out.finish()")
        elif n != 1:
            raise RuntimeError(f"exchange turn must emit exactly one batch (emitted {n})")


class StreamState:
    """Base class of stream states (make subclasses dataclasses).

    Override :meth:`process` (called once per input batch), or use
    :class:`ProducerState` / :class:`ExchangeState`.
    """

    def process(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """Handle one turn."""
        raise NotImplementedError

    def on_cancel(self, ctx: CallContext) -> None:
        """Called when the client cancels the stream. Default: nothing."""


class ProducerState(StreamState):
    """State of a producer stream: :meth:`produce` runs once per turn."""

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        """Emit the next batch, or call ``out.finish()``."""
        raise NotImplementedError

    def process(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """Producer turns ignore the (empty) tick input."""
        self.produce(out, ctx)


class ExchangeState(StreamState):
    """State of an exchange stream: :meth:`exchange` maps one input batch to one output batch."""

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """Emit exactly one batch for *input*."""
        raise NotImplementedError

    def process(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """Delegates to :meth:`exchange`."""
        self.exchange(input, out, ctx)


S = TypeVar("S", bound=StreamState)
H = TypeVar("H", default=None)


@dataclass(slots=True)
class Stream(Generic[S, H]):
    """What a stream method returns: the output schema, the state, and an optional header.

    ``input_schema`` left empty makes a producer; set it for an exchange.
    A method annotated ``-> Stream[State, Header]`` (``Header`` a dataclass) must
    return ``Stream(..., header=Header(...))``: the header reaches the client once,
    before the first batch, as ``session.header``. ``-> Stream[State]`` has no header.
    """

    output_schema: pa.Schema
    state: S
    input_schema: pa.Schema = field(default_factory=lambda: EMPTY_SCHEMA)
    header: H | None = None

    @property
    def is_producer(self) -> bool:
        """True when the stream takes no input batches."""
        return len(self.input_schema) == 0
