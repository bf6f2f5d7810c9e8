"""Our implementation of the peer ``ConformanceService`` (see ``_protocol.py``).

The behaviour follows what the official runner checks (values echoed, exact
strings such as ``"Point(1.5, 2.5)"``, error types, log levels and order,
batch shapes); the code is our own.

Stream states are dataclasses whose fields are plain ints/floats so that, over
HTTP, they fit in the sealed continuation token.  The cancel-probe counters are
process-wide (module level, behind a lock): the runner reads them back over
the wire with ``cancel_probe_counters``, so they must live in the server
process whatever the transport.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tests.conformance._types import (
    AllTypes,
    BoundingBox,
    ConformanceHeader,
    ContainerWideTypes,
    DeepNested,
    EmbeddedArrow,
    NestedContainers,
    Point,
    RichHeader,
    Status,
    WideTypes,
    build_rich_header,
)
from vgi_rpc import (
    AnnotatedBatch,
    CallContext,
    ExchangeState,
    OutputCollector,
    ProducerState,
    Stream,
    StreamState,
)

__all__ = ["ANNOTATED_EMIT_LABEL", "INPUT_METADATA_KEY", "TICK_METADATA_KEY", "ConformanceServiceImpl"]

TICK_METADATA_KEY = "vgi.conformance.tick"
"""Producer-tick metadata key ``produce_tick_metadata`` reports."""

INPUT_METADATA_KEY = "vgi.conformance.input"
"""Exchange-input metadata key ``exchange_input_metadata`` reports."""

ANNOTATED_EMIT_LABEL = "\u00fcn\u00efcode-\u03bb"
"""Non-ASCII label each ``produce_annotated_batches`` batch carries in its metadata."""

_COUNTER = pa.schema([pa.field("index", pa.int64()), pa.field("value", pa.int64())])
_VALUE_F64 = pa.schema([pa.field("value", pa.float64())])
_VALUE_I64 = pa.schema([pa.field("value", pa.int64())])
_ACCUM_OUT = pa.schema([pa.field("running_sum", pa.float64()), pa.field("exchange_count", pa.int64())])
_TICK_OUT = pa.schema([pa.field("index", pa.int64()), pa.field("seen", pa.string())])
_INPUT_MD_OUT = pa.schema([pa.field("seen", pa.string()), pa.field("keys", pa.string())])
_EMPTY = pa.schema([])

_NO_EXTERNAL = "external storage is not supported by this vgi_rpc"
_NO_STICKY = "sticky sessions are not supported by this vgi_rpc"


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _metadata_items(md: Mapping[Any, Any] | None) -> dict[str, str]:
    """Metadata as ``str -> str`` whether the transport handed us str or bytes keys."""
    if not md:
        return {}
    return {_text(k): _text(v) for k, v in md.items()}


# --------------------------------------------------------------------------- cancel probe
class _Probe:
    """Counters the cancel tests read back: produce turns, exchange turns, on_cancel calls."""

    lock = threading.Lock()
    counts = [0, 0, 0]

    @classmethod
    def bump(cls, slot: int) -> None:
        with cls.lock:
            cls.counts[slot] += 1

    @classmethod
    def snapshot(cls) -> list[int]:
        with cls.lock:
            return list(cls.counts)

    @classmethod
    def reset(cls) -> None:
        with cls.lock:
            cls.counts = [0, 0, 0]


_PRODUCE, _EXCHANGE, _CANCEL = 0, 1, 2


# --------------------------------------------------------------------------- producer states
@dataclass
class CountingProducer(ProducerState):
    """``count`` one-row batches ``{index: i, value: 10 i}``; optional INFO log before each."""

    count: int
    current: int = 0
    log_each: bool = False

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.current >= self.count:
            out.finish()
            return
        if self.log_each:
            out.log("INFO", f"producing batch {self.current}")
        out.emit_pydict({"index": [self.current], "value": [self.current * 10]})
        self.current += 1


@dataclass
class TickMetadataProducer(StreamState):
    """Producer that reports the ``vgi.conformance.tick`` value carried by each tick."""

    count: int
    current: int = 0

    def process(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        seen = _metadata_items(input.custom_metadata).get(TICK_METADATA_KEY, "")
        out.emit_pydict({"index": [self.current], "seen": [seen]})
        self.current += 1
        if self.current >= self.count:
            out.finish()


@dataclass
class BlockProducer(ProducerState):
    """``batch_count`` batches of ``rows`` consecutive ``{index, value}`` rows."""

    rows: int
    batch_count: int
    current: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.current >= self.batch_count:
            out.finish()
            return
        start = self.current * self.rows
        idx = list(range(start, start + self.rows))
        out.emit_pydict({"index": idx, "value": [i * 10 for i in idx]})
        self.current += 1


@dataclass
class AnnotatedProducer(ProducerState):
    """Each batch carries its own index, the total and a non-ASCII label as metadata."""

    count: int
    rows: int
    current: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.current >= self.count:
            out.finish()
            return
        base = self.current * 1_000_000
        out.emit_pydict(
            {"value": [base + r for r in range(self.rows)]},
            metadata={
                "conformance.batch_index": str(self.current),
                "conformance.batch_total": str(self.count),
                "conformance.emit_label": ANNOTATED_EMIT_LABEL,
            },
        )
        self.current += 1


@dataclass
class FailingProducer(ProducerState):
    """Emits ``good`` batches, then raises ``RuntimeError`` on the next turn."""

    good: int
    current: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.current >= self.good:
            raise RuntimeError(f"intentional error after {self.good} batches")
        out.emit_pydict({"index": [self.current], "value": [self.current * 10]})
        self.current += 1


@dataclass
class EndlessProducer(ProducerState):
    """Never finishes; counts turns and cancellations in the probe."""

    current: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        _Probe.bump(_PRODUCE)
        out.emit_pydict({"index": [self.current], "value": [self.current * 10]})
        self.current += 1

    def on_cancel(self, ctx: CallContext) -> None:
        _Probe.bump(_CANCEL)


# --------------------------------------------------------------------------- exchange states
@dataclass
class DynamicColumns(ProducerState):
    """``count`` rows of ``index``, plus ``label`` and/or ``score`` when the call asked for them."""

    count: int
    include_strings: bool
    include_floats: bool
    current: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.current >= self.count:
            out.finish()
            return
        row: dict[str, list[Any]] = {"index": [self.current]}
        if self.include_strings:
            row["label"] = [f"row-{self.current}"]
        if self.include_floats:
            row["score"] = [1.5 * self.current]
        out.emit_pydict(row)
        self.current += 1


@dataclass
class Scale(ExchangeState):
    """Multiplies the float64 ``value`` column by ``factor``."""

    factor: float

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        col = input.batch.column("value")
        out.emit_arrays([pc.multiply(col, pa.scalar(self.factor, pa.float64()))])


@dataclass
class Accumulate(ExchangeState):
    """Running sum of every ``value`` seen, and how many exchanges there were."""

    running_sum: float = 0.0
    exchange_count: int = 0

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        total = pc.sum(input.batch.column("value")).as_py()
        self.running_sum += float(total or 0.0)
        self.exchange_count += 1
        out.emit_pydict({"running_sum": [self.running_sum], "exchange_count": [self.exchange_count]})


@dataclass
class LoggingEcho(ExchangeState):
    """Echoes each input after one INFO and one DEBUG log."""

    turns: int = 0

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        self.turns += 1
        out.log("INFO", "exchange processing")
        out.log("DEBUG", "exchange debug")
        out.emit(input.batch)


@dataclass
class FailOnNth(ExchangeState):
    """Echoes inputs until exchange number ``fail_on`` (1-based), which raises."""

    fail_on: int
    seen: int = 0

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        self.seen += 1
        if self.seen >= self.fail_on:
            raise RuntimeError(f"intentional error on exchange {self.seen}")
        out.emit(input.batch)


@dataclass
class ZeroColumns(ExchangeState):
    """Answers each (zero-column) input with a zero-column batch."""

    turns: int = 0

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        self.turns += 1
        out.emit(pa.RecordBatch.from_arrays([], schema=_EMPTY))


@dataclass
class ReportInputMetadata(ExchangeState):
    """One row per input: the ``vgi.conformance.input`` value and the sorted metadata keys."""

    turns: int = 0

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        self.turns += 1
        md = _metadata_items(input.custom_metadata)
        out.emit_pydict({"seen": [md.get(INPUT_METADATA_KEY, "")], "keys": [",".join(sorted(md))]})


@dataclass
class BigAnswer(ExchangeState):
    """Answers every input with ``rows`` ``{index, value}`` rows."""

    rows: int

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        idx = list(range(self.rows))
        out.emit_pydict({"index": idx, "value": [i * 10 for i in idx]})


@dataclass
class CountingEcho(ExchangeState):
    """Echoes forever; counts turns and cancellations in the probe."""

    turns: int = 0

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        _Probe.bump(_EXCHANGE)
        self.turns += 1
        out.emit(input.batch)

    def on_cancel(self, ctx: CallContext) -> None:
        _Probe.bump(_CANCEL)


# --------------------------------------------------------------------------- the service
class ConformanceServiceImpl:
    """Implements every method of our ``ConformanceService`` port."""

    # scalar echo
    def echo_string(self, value: str) -> str:
        return value

    def echo_bytes(self, data: bytes) -> bytes:
        return data

    def oversized_unary(self, target_bytes: int) -> bytes:
        if target_bytes < 0:
            raise ValueError("target_bytes must not be negative")
        return bytes(target_bytes)

    def published_string(self, value: str, include_sha256: bool) -> str:
        raise NotImplementedError(_NO_EXTERNAL)

    def echo_int(self, value: int) -> int:
        return value

    def echo_float(self, value: float) -> float:
        return value

    def echo_bool(self, value: bool) -> bool:
        return value

    # void
    def void_noop(self) -> None:
        return None

    def void_with_param(self, value: int) -> None:
        return None

    # containers, enums, optionals
    def echo_enum(self, status: Status) -> Status:
        return status

    def echo_list(self, values: list[str]) -> list[str]:
        return values

    def echo_dict(self, mapping: dict[str, int]) -> dict[str, int]:
        return mapping

    def echo_nested_list(self, matrix: list[list[int]]) -> list[list[int]]:
        return matrix

    def echo_optional_string(self, value: str | None) -> str | None:
        return value

    def echo_optional_int(self, value: int | None) -> int | None:
        return value

    def echo_optional_point(self, point: Point | None) -> Point | None:
        return point

    def echo_annotated_optional_int(self, value: int | None) -> int | None:
        return value

    def echo_outer_optional_non_null(self, value: int | None) -> int | None:
        return value

    # dataclasses
    def echo_point(self, point: Point) -> Point:
        return point

    def echo_all_types(self, data: AllTypes) -> AllTypes:
        return data

    def echo_bounding_box(self, box: BoundingBox) -> BoundingBox:
        return box

    def inspect_point(self, point: Point) -> str:
        return f"Point({point.x}, {point.y})"

    # annotated / wide types: the codec does the work, the method only echoes
    def echo_int32(self, value: int) -> int:
        return value

    def echo_float32(self, value: float) -> float:
        return value

    def echo_int8(self, value: int) -> int:
        return value

    def echo_int16(self, value: int) -> int:
        return value

    def echo_uint8(self, value: int) -> int:
        return value

    def echo_uint16(self, value: int) -> int:
        return value

    def echo_uint32(self, value: int) -> int:
        return value

    def echo_uint64(self, value: int) -> int:
        return value

    def echo_date(self, value: Any) -> Any:
        return value

    def echo_timestamp(self, value: Any) -> Any:
        return value

    def echo_timestamp_utc(self, value: Any) -> Any:
        return value

    def echo_time(self, value: Any) -> Any:
        return value

    def echo_duration(self, value: Any) -> Any:
        return value

    def echo_decimal(self, value: Any) -> Any:
        return value

    def echo_large_string(self, value: str) -> str:
        return value

    def echo_large_binary(self, value: bytes) -> bytes:
        return value

    def echo_fixed_binary(self, value: bytes) -> bytes:
        return value

    def echo_wide_types(self, data: WideTypes) -> WideTypes:
        return data

    def echo_container_wide_types(self, data: ContainerWideTypes) -> ContainerWideTypes:
        return data

    def echo_embedded_arrow(self, data: EmbeddedArrow) -> EmbeddedArrow:
        return data

    def echo_deep_nested(self, data: DeepNested) -> DeepNested:
        return data

    def pack_nested_containers(
        self, statuses: list[Status], points: list[Point], status_by_name: dict[str, Status]
    ) -> NestedContainers:
        if not all(isinstance(s, Status) for s in [*statuses, *status_by_name.values()]):
            raise TypeError("enum arguments were not rebuilt as Status members")
        if not all(isinstance(p, Point) for p in points):
            raise TypeError("points were not rebuilt as Point instances")
        return NestedContainers(
            statuses=statuses,
            points=points,
            status_by_name=status_by_name,
            frozen_statuses=frozenset(statuses),
            tagged_status=statuses[0] if statuses else None,
            tagged_point=points[0] if points else None,
            tagged_batch=pa.RecordBatch.from_pydict({"value": [1, 2]}),
        )

    def echo_status_list(self, statuses: list[Status]) -> list[Status]:
        if not all(isinstance(s, Status) for s in statuses):
            raise TypeError("statuses were not rebuilt as Status members")
        return statuses

    def echo_dict_encoded_string(self, value: str) -> str:
        return value

    # parameters and defaults
    def add_floats(self, a: float, b: float) -> float:
        return a + b

    def concatenate(self, prefix: str, suffix: str, separator: str = "-") -> str:
        return prefix + separator + suffix

    def with_defaults(self, required: int, optional_str: str = "default", optional_int: int = 42) -> str:
        return f"required={required}, optional_str={optional_str}, optional_int={optional_int}"

    # errors
    def raise_value_error(self, message: str) -> str:
        raise ValueError(message)

    def raise_runtime_error(self, message: str) -> str:
        raise RuntimeError(message)

    def raise_type_error(self, message: str) -> str:
        raise TypeError(message)

    # logs
    def echo_with_info_log(self, value: str, ctx: CallContext) -> str:
        ctx.log("INFO", f"info: {value}")
        return value

    def echo_with_multi_logs(self, value: str, ctx: CallContext) -> str:
        for level in ("DEBUG", "INFO", "WARN"):
            ctx.log(level, f"{level.lower()}: {value}")
        return value

    def echo_with_log_extras(self, value: str, ctx: CallContext) -> str:
        ctx.log("INFO", f"info: {value}", source="conformance", detail=value)
        return value

    def echo_with_all_log_levels(self, value: str, ctx: CallContext) -> str:
        for level in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR"):
            ctx.log(level, f"{level.lower()}: {value}")
        return value

    # producers
    def produce_n(self, count: int) -> Stream[CountingProducer]:
        return Stream(_COUNTER, CountingProducer(count=count))

    def produce_tick_metadata(self, count: int) -> Stream[TickMetadataProducer]:
        return Stream(_TICK_OUT, TickMetadataProducer(count=count))

    def produce_empty(self) -> Stream[CountingProducer]:
        return Stream(_COUNTER, CountingProducer(count=0))

    def produce_single(self) -> Stream[CountingProducer]:
        return Stream(_COUNTER, CountingProducer(count=1))

    def produce_large_batches(self, rows_per_batch: int, batch_count: int) -> Stream[BlockProducer]:
        return Stream(_COUNTER, BlockProducer(rows=rows_per_batch, batch_count=batch_count))

    def produce_annotated_batches(self, count: int, rows_per_batch: int) -> Stream[AnnotatedProducer]:
        return Stream(_VALUE_I64, AnnotatedProducer(count=count, rows=rows_per_batch))

    def produce_with_logs(self, count: int) -> Stream[CountingProducer]:
        return Stream(_COUNTER, CountingProducer(count=count, log_each=True))

    def produce_error_mid_stream(self, emit_before_error: int) -> Stream[FailingProducer]:
        return Stream(_COUNTER, FailingProducer(good=emit_before_error))

    def produce_error_on_init(self) -> Stream[CountingProducer]:
        raise RuntimeError("intentional init error")

    def produce_oversized_batch(self, rows_per_batch: int) -> Stream[BlockProducer]:
        return Stream(_COUNTER, BlockProducer(rows=rows_per_batch, batch_count=1))

    # exchanges
    def exchange_scale(self, factor: float) -> Stream[Scale]:
        return Stream(_VALUE_F64, Scale(factor=factor), input_schema=_VALUE_F64)

    def exchange_accumulate(self) -> Stream[Accumulate]:
        return Stream(_ACCUM_OUT, Accumulate(), input_schema=_VALUE_F64)

    def exchange_with_logs(self) -> Stream[LoggingEcho]:
        return Stream(_VALUE_F64, LoggingEcho(), input_schema=_VALUE_F64)

    def exchange_error_on_nth(self, fail_on: int) -> Stream[FailOnNth]:
        return Stream(_VALUE_F64, FailOnNth(fail_on=fail_on), input_schema=_VALUE_F64)

    def exchange_zero_columns(self) -> Stream[ZeroColumns]:
        # A zero-column input schema is indistinguishable from "no input" in our
        # Stream, so this one would be served as a producer; see docs/conformance.md.
        return Stream(_EMPTY, ZeroColumns(), input_schema=_EMPTY)

    def exchange_input_metadata(self) -> Stream[ReportInputMetadata]:
        return Stream(_INPUT_MD_OUT, ReportInputMetadata(), input_schema=_VALUE_F64)

    def exchange_error_on_init(self) -> Stream[Scale]:
        raise RuntimeError("intentional exchange init error")

    def exchange_oversized(self, rows_per_batch: int) -> Stream[BigAnswer]:
        return Stream(_COUNTER, BigAnswer(rows=rows_per_batch), input_schema=_VALUE_F64)

    def exchange_cast_compatible(self) -> Stream[Scale]:
        return Stream(_VALUE_F64, Scale(factor=1.0), input_schema=_VALUE_F64)

    # cancellation
    def cancellable_producer(self) -> Stream[EndlessProducer]:
        return Stream(_COUNTER, EndlessProducer())

    def cancellable_exchange(self) -> Stream[CountingEcho]:
        return Stream(_VALUE_F64, CountingEcho(), input_schema=_VALUE_F64)

    def cancel_probe_counters(self) -> list[int]:
        return _Probe.snapshot()

    def reset_cancel_probe(self) -> None:
        _Probe.reset()

    # stream headers (Stream[S, H])
    def produce_with_header(self, count: int) -> Stream[CountingProducer, ConformanceHeader]:
        header = ConformanceHeader(total_expected=count, description=f"producing {count} batches")
        return Stream(_COUNTER, CountingProducer(count), header=header)

    def produce_with_header_and_logs(
        self, count: int, ctx: CallContext
    ) -> Stream[CountingProducer, ConformanceHeader]:
        ctx.log("INFO", "stream init log")
        header = ConformanceHeader(total_expected=count, description=f"producing {count} with logs")
        return Stream(_COUNTER, CountingProducer(count), header=header)

    def exchange_with_header(self, factor: float) -> Stream[Scale, ConformanceHeader]:
        header = ConformanceHeader(total_expected=0, description=f"scale by {factor}")
        return Stream(_VALUE_F64, Scale(factor), input_schema=_VALUE_F64, header=header)

    def produce_with_rich_header(self, seed: int, count: int) -> Stream[CountingProducer, RichHeader]:
        return Stream(_COUNTER, CountingProducer(count), header=build_rich_header(seed))

    def produce_dynamic_schema(
        self, seed: int, count: int, include_strings: bool, include_floats: bool
    ) -> Stream[DynamicColumns, RichHeader]:
        fields = [pa.field("index", pa.int64())]
        if include_strings:
            fields.append(pa.field("label", pa.utf8()))
        if include_floats:
            fields.append(pa.field("score", pa.float64()))
        state = DynamicColumns(count, include_strings, include_floats)
        return Stream(pa.schema(fields), state, header=build_rich_header(seed))

    def exchange_with_rich_header(self, seed: int, factor: float) -> Stream[Scale, RichHeader]:
        return Stream(_VALUE_F64, Scale(factor), input_schema=_VALUE_F64, header=build_rich_header(seed))

    def open_counter(self, initial: int) -> int:
        raise NotImplementedError(_NO_STICKY)

    def increment_counter(self, by: int) -> int:
        raise NotImplementedError(_NO_STICKY)

    def close_counter(self) -> int:
        raise NotImplementedError(_NO_STICKY)

    def stream_session_counter(self, count: int) -> Stream[CountingProducer]:
        raise NotImplementedError(_NO_STICKY)

    def exchange_session_counter(self) -> Stream[Scale]:
        raise NotImplementedError(_NO_STICKY)
