"""The peer ``ConformanceService`` interface, ported to our API.

Method names, parameter names, annotations and defaults match the official
vgi-rpc 0.52.2 ``ConformanceService`` so the official runner (``vgi-rpc-test``)
can drive our server with its own client.  The wire name is the class name,
``ConformanceService`` (the official Protocol declares no ``protocol_name``);
``protocol_version`` is sent by the peer client on every request.

Unsupported features are *declared* (so the method set equals the official one)
but fail cleanly with ``NotImplementedError`` (stream methods: before the stream
starts), which keeps the transport in step; ``docs/conformance.md`` lists them:

* external storage: ``published_string``;
* sticky sessions: ``open_counter``, ``increment_counter``, ``close_counter``,
  ``stream_session_counter``, ``exchange_session_counter``.

One annotation differs: the official ``echo_outer_optional_non_null`` uses
``ArrowType(pa.int32(), nullable=False)``; our ``ArrowType`` has no ``nullable``
override, so ours is a plain optional int32 (same bytes for a non-null value).
"""

import datetime as dt
from decimal import Decimal
from typing import Annotated, ClassVar, Protocol

import pyarrow as pa

from tests.conformance._types import (
    DEC20_4,
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
)
from vgi_rpc import ArrowType, ExchangeState, ProducerState, Stream

__all__ = ["ConformanceService"]

_I8 = Annotated[int, ArrowType(pa.int8())]
_I16 = Annotated[int, ArrowType(pa.int16())]
_I32 = Annotated[int, ArrowType(pa.int32())]
_U8 = Annotated[int, ArrowType(pa.uint8())]
_U16 = Annotated[int, ArrowType(pa.uint16())]
_U32 = Annotated[int, ArrowType(pa.uint32())]
_U64 = Annotated[int, ArrowType(pa.uint64())]
_F32 = Annotated[float, ArrowType(pa.float32())]
_DATE = Annotated[dt.date, ArrowType(pa.date32())]
_TS = Annotated[dt.datetime, ArrowType(pa.timestamp("us"))]
_TS_UTC = Annotated[dt.datetime, ArrowType(pa.timestamp("us", tz="UTC"))]
_TIME = Annotated[dt.time, ArrowType(pa.time64("us"))]
_DUR = Annotated[dt.timedelta, ArrowType(pa.duration("us"))]
_DEC = Annotated[Decimal, ArrowType(DEC20_4)]
_LSTR = Annotated[str, ArrowType(pa.large_string())]
_LBIN = Annotated[bytes, ArrowType(pa.large_binary())]
_FBIN = Annotated[bytes, ArrowType(pa.binary(8))]
_DSTR = Annotated[str, ArrowType(pa.dictionary(pa.int16(), pa.string()))]
_OPT_I32 = Annotated[int | None, ArrowType(pa.int32())]
_NN_I32_OPT = Annotated[int, ArrowType(pa.int32())] | None  # official: ArrowType(..., nullable=False)


class ConformanceService(Protocol):
    """Every capability the official conformance runner exercises (minus the omissions above)."""

    protocol_version: ClassVar[str] = "2.0.0"

    # --- scalar echo -----------------------------------------------------
    def echo_string(self, value: str) -> str:
        """Return *value*."""
        ...

    def echo_bytes(self, data: bytes) -> bytes:
        """Return *data*."""
        ...

    def oversized_unary(self, target_bytes: int) -> bytes:
        """Return ``target_bytes`` zero bytes (used to trip HTTP response caps)."""
        ...

    def published_string(self, value: str, include_sha256: bool) -> str:
        """Unsupported (needs external storage): raises."""
        ...

    def echo_int(self, value: int) -> int:
        """Return *value*."""
        ...

    def echo_float(self, value: float) -> float:
        """Return *value*."""
        ...

    def echo_bool(self, value: bool) -> bool:
        """Return *value*."""
        ...

    # --- void --------------------------------------------------------------
    def void_noop(self) -> None:
        """Do nothing."""
        ...

    def void_with_param(self, value: int) -> None:
        """Take one argument, return nothing."""
        ...

    # --- containers and enums --------------------------------------------
    def echo_enum(self, status: Status) -> Status:
        """Return *status*."""
        ...

    def echo_list(self, values: list[str]) -> list[str]:
        """Return *values*."""
        ...

    def echo_dict(self, mapping: dict[str, int]) -> dict[str, int]:
        """Return *mapping*."""
        ...

    def echo_nested_list(self, matrix: list[list[int]]) -> list[list[int]]:
        """Return *matrix*."""
        ...

    # --- optional ------------------------------------------------------------
    def echo_optional_string(self, value: str | None) -> str | None:
        """Return *value* (``None`` included)."""
        ...

    def echo_optional_int(self, value: int | None) -> int | None:
        """Return *value* (``None`` included)."""
        ...

    def echo_optional_point(self, point: Point | None) -> Point | None:
        """Return *point* (``None`` included)."""
        ...

    def echo_annotated_optional_int(self, value: _OPT_I32) -> _OPT_I32:
        """Return *value*; ``Annotated`` is the outer wrapper of an optional int32."""
        ...

    def echo_outer_optional_non_null(self, value: _NN_I32_OPT) -> _NN_I32_OPT:
        """Return *value*; the non-null override sits inside ``Optional``."""
        ...

    # --- dataclasses -----------------------------------------------------------
    def echo_point(self, point: Point) -> Point:
        """Return *point*."""
        ...

    def echo_all_types(self, data: AllTypes) -> AllTypes:
        """Return *data*."""
        ...

    def echo_bounding_box(self, box: BoundingBox) -> BoundingBox:
        """Return *box*."""
        ...

    def inspect_point(self, point: Point) -> str:
        """Format *point* as ``Point(x, y)``."""
        ...

    # --- annotated and wide Arrow types ----------------------------------------
    def echo_int32(self, value: _I32) -> _I32:
        """Return *value* (int32)."""
        ...

    def echo_float32(self, value: _F32) -> _F32:
        """Return *value* (float32)."""
        ...

    def echo_int8(self, value: _I8) -> _I8:
        """Return *value* (int8)."""
        ...

    def echo_int16(self, value: _I16) -> _I16:
        """Return *value* (int16)."""
        ...

    def echo_uint8(self, value: _U8) -> _U8:
        """Return *value* (uint8)."""
        ...

    def echo_uint16(self, value: _U16) -> _U16:
        """Return *value* (uint16)."""
        ...

    def echo_uint32(self, value: _U32) -> _U32:
        """Return *value* (uint32)."""
        ...

    def echo_uint64(self, value: _U64) -> _U64:
        """Return *value* (uint64, may exceed the int64 range)."""
        ...

    def echo_date(self, value: _DATE) -> _DATE:
        """Return *value* (date32)."""
        ...

    def echo_timestamp(self, value: _TS) -> _TS:
        """Return *value* (naive timestamp[us])."""
        ...

    def echo_timestamp_utc(self, value: _TS_UTC) -> _TS_UTC:
        """Return *value* (timestamp[us, UTC])."""
        ...

    def echo_time(self, value: _TIME) -> _TIME:
        """Return *value* (time64[us])."""
        ...

    def echo_duration(self, value: _DUR) -> _DUR:
        """Return *value* (duration[us])."""
        ...

    def echo_decimal(self, value: _DEC) -> _DEC:
        """Return *value* (decimal128(20, 4))."""
        ...

    def echo_large_string(self, value: _LSTR) -> _LSTR:
        """Return *value* (large_string)."""
        ...

    def echo_large_binary(self, value: _LBIN) -> _LBIN:
        """Return *value* (large_binary; the runner sends 4 MiB and 2 GiB + 1 here)."""
        ...

    def echo_fixed_binary(self, value: _FBIN) -> _FBIN:
        """Return *value* (fixed_size_binary(8))."""
        ...

    def echo_wide_types(self, data: WideTypes) -> WideTypes:
        """Return *data*."""
        ...

    def echo_container_wide_types(self, data: ContainerWideTypes) -> ContainerWideTypes:
        """Return *data*."""
        ...

    def echo_embedded_arrow(self, data: EmbeddedArrow) -> EmbeddedArrow:
        """Return *data*."""
        ...

    def echo_deep_nested(self, data: DeepNested) -> DeepNested:
        """Return *data*."""
        ...

    def pack_nested_containers(
        self,
        statuses: list[Status],
        points: list[Point],
        status_by_name: dict[str, Status],
    ) -> NestedContainers:
        """Check the arguments were rebuilt as enums/points, then pack them into one record."""
        ...

    def echo_status_list(self, statuses: list[Status]) -> list[Status]:
        """Return *statuses* (checked to be enum members)."""
        ...

    def echo_dict_encoded_string(self, value: _DSTR) -> _DSTR:
        """Return *value* (dictionary<int16, utf8>)."""
        ...

    # --- parameters and defaults ------------------------------------------------
    def add_floats(self, a: float, b: float) -> float:
        """Return ``a + b``."""
        ...

    def concatenate(self, prefix: str, suffix: str, separator: str = "-") -> str:
        """Return ``prefix + separator + suffix``."""
        ...

    def with_defaults(self, required: int, optional_str: str = "default", optional_int: int = 42) -> str:
        """Describe the three arguments as ``required=.., optional_str=.., optional_int=..``."""
        ...

    # --- errors -------------------------------------------------------------------
    def raise_value_error(self, message: str) -> str:
        """Raise ``ValueError(message)``."""
        ...

    def raise_runtime_error(self, message: str) -> str:
        """Raise ``RuntimeError(message)``."""
        ...

    def raise_type_error(self, message: str) -> str:
        """Raise ``TypeError(message)``."""
        ...

    # --- client-directed logs ------------------------------------------------------
    def echo_with_info_log(self, value: str) -> str:
        """Return *value* after one INFO log."""
        ...

    def echo_with_multi_logs(self, value: str) -> str:
        """Return *value* after DEBUG, INFO and WARN logs, in that order."""
        ...

    def echo_with_log_extras(self, value: str) -> str:
        """Return *value* after one INFO log carrying ``source`` and ``detail`` extras."""
        ...

    def echo_with_all_log_levels(self, value: str) -> str:
        """Return *value* after one log at each of TRACE, DEBUG, INFO, WARN, ERROR."""
        ...

    # --- producer streams ------------------------------------------------------------
    def produce_n(self, count: int) -> Stream[ProducerState]:
        """Produce *count* one-row batches ``{index: i, value: 10 i}``."""
        ...

    def produce_tick_metadata(self, count: int) -> Stream[ProducerState]:
        """Per tick, report the ``vgi.conformance.tick`` metadata value the tick carried."""
        ...

    def produce_empty(self) -> Stream[ProducerState]:
        """Produce no batches."""
        ...

    def produce_single(self) -> Stream[ProducerState]:
        """Produce one batch ``{index: 0, value: 0}``."""
        ...

    def produce_large_batches(self, rows_per_batch: int, batch_count: int) -> Stream[ProducerState]:
        """Produce *batch_count* batches of *rows_per_batch* rows."""
        ...

    def produce_annotated_batches(self, count: int, rows_per_batch: int) -> Stream[ProducerState]:
        """Produce *count* batches, each with its own custom metadata."""
        ...

    def produce_with_logs(self, count: int) -> Stream[ProducerState]:
        """Like ``produce_n``, with an INFO log before each batch."""
        ...

    def produce_error_mid_stream(self, emit_before_error: int) -> Stream[ProducerState]:
        """Produce *emit_before_error* batches, then raise ``RuntimeError``."""
        ...

    def produce_error_on_init(self) -> Stream[ProducerState]:
        """Raise ``RuntimeError`` before the stream starts."""
        ...

    def produce_oversized_batch(self, rows_per_batch: int) -> Stream[ProducerState]:
        """Produce one batch of *rows_per_batch* rows (used to trip HTTP response caps)."""
        ...

    # --- stream headers ------------------------------------------------------------------
    def produce_with_header(self, count: int) -> Stream[ProducerState, ConformanceHeader]:
        """Like ``produce_n``, with a ``ConformanceHeader`` ahead of the batches."""
        ...

    def produce_with_header_and_logs(self, count: int) -> Stream[ProducerState, ConformanceHeader]:
        """Like ``produce_with_header``, with an INFO log at init (it rides in the header stream)."""
        ...

    # --- exchange streams ---------------------------------------------------------------
    def exchange_scale(self, factor: float) -> Stream[ExchangeState]:
        """Multiply the ``value`` column of every input by *factor*."""
        ...

    def exchange_accumulate(self) -> Stream[ExchangeState]:
        """Emit the running sum of ``value`` and the number of exchanges so far."""
        ...

    def exchange_with_logs(self) -> Stream[ExchangeState]:
        """Echo each input after an INFO and a DEBUG log."""
        ...

    def exchange_error_on_nth(self, fail_on: int) -> Stream[ExchangeState]:
        """Echo inputs; raise ``RuntimeError`` on exchange number *fail_on* (1-based)."""
        ...

    def exchange_zero_columns(self) -> Stream[ExchangeState]:
        """Exchange zero-column batches."""
        ...

    def exchange_input_metadata(self) -> Stream[ExchangeState]:
        """Report the custom metadata each input reached the state with."""
        ...

    def exchange_error_on_init(self) -> Stream[ExchangeState]:
        """Raise ``RuntimeError`` before the stream starts."""
        ...

    def exchange_oversized(self, rows_per_batch: int) -> Stream[ExchangeState]:
        """Answer every input with *rows_per_batch* rows (used to trip HTTP response caps)."""
        ...

    def exchange_with_header(self, factor: float) -> Stream[ExchangeState, ConformanceHeader]:
        """Like ``exchange_scale``, with a ``ConformanceHeader``."""
        ...

    # --- cancellation ---------------------------------------------------------------------
    def cancellable_producer(self) -> Stream[ProducerState]:
        """Produce forever; counts produce and on_cancel calls."""
        ...

    def cancellable_exchange(self) -> Stream[ExchangeState]:
        """Echo forever; counts exchange and on_cancel calls."""
        ...

    def cancel_probe_counters(self) -> list[int]:
        """Return ``[produce_calls, exchange_calls, on_cancel_calls]``."""
        ...

    def reset_cancel_probe(self) -> None:
        """Zero the cancel-probe counters."""
        ...

    def exchange_cast_compatible(self) -> Stream[ExchangeState]:
        """Echo a float64 ``value`` column; compatible inputs (int32, float32...) are cast first."""
        ...

    # --- rich headers and dynamic schemas --------------------------------------------------
    def produce_with_rich_header(self, seed: int, count: int) -> Stream[ProducerState, RichHeader]:
        """Like ``produce_with_header``, with ``build_rich_header(seed)``."""
        ...

    def produce_dynamic_schema(
        self, seed: int, count: int, include_strings: bool, include_floats: bool
    ) -> Stream[ProducerState, RichHeader]:
        """Output schema chosen per call: ``index`` plus optional ``label``/``score`` columns."""
        ...

    def exchange_with_rich_header(self, seed: int, factor: float) -> Stream[ExchangeState, RichHeader]:
        """Like ``exchange_with_header``, with ``build_rich_header(seed)``."""
        ...

    # --- sticky sessions (unsupported: raise) --------------------------------------------
    def open_counter(self, initial: int) -> int:
        """Unsupported (needs sticky HTTP sessions): raises."""
        ...

    def increment_counter(self, by: int) -> int:
        """Unsupported (needs sticky HTTP sessions): raises."""
        ...

    def close_counter(self) -> int:
        """Unsupported (needs sticky HTTP sessions): raises."""
        ...

    def stream_session_counter(self, count: int) -> Stream[ProducerState]:
        """Unsupported (needs sticky HTTP sessions): raises at init."""
        ...

    def exchange_session_counter(self) -> Stream[ExchangeState]:
        """Unsupported (needs sticky HTTP sessions): raises at init."""
        ...
