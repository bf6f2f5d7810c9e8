"""Wire types of the peer ``ConformanceService``, written against our own API.

These mirror, field for field, the enums and dataclasses the official
conformance runner (vgi-rpc 0.52.2) sends and expects: same names, same field
order, same Arrow types.  The official package builds them on its
``ArrowSerializableDataclass`` base; here they are plain frozen dataclasses,
which our codec maps to Arrow the same way (a top-level dataclass travels as a
binary cell holding a nested IPC stream, a nested one as a struct).

Module-level annotations are deliberately *not* postponed (no
``from __future__ import annotations``) so the codec sees real types.

The stream-header types (``ConformanceHeader``, ``RichHeader``) travel as a
separate one-row IPC stream ahead of a stream's output (``Stream[S, H]``).
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Annotated

import pyarrow as pa

from vgi_rpc import ArrowType

__all__ = [
    "DEC20_4",
    "AllTypes",
    "BoundingBox",
    "ConformanceHeader",
    "ContainerWideTypes",
    "DeepNested",
    "EmbeddedArrow",
    "NestedContainers",
    "Point",
    "RichHeader",
    "Status",
    "WideTypes",
    "build_rich_header",
]

DEC20_4 = pa.decimal128(20, 4)
"""The decimal type every decimal field of the conformance service uses."""

_DICT_STR = pa.dictionary(pa.int16(), pa.string())


class Status(Enum):
    """A three-member enum; travels as ``dictionary<int16, utf8>`` holding the member *name*."""

    PENDING = "pending"
    ACTIVE = "active"
    CLOSED = "closed"


@dataclass(frozen=True)
class Point:
    """A 2-D point (``struct<x: double, y: double>`` when nested)."""

    x: float
    y: float


@dataclass(frozen=True)
class BoundingBox:
    """Two nested points and a label."""

    top_left: Point
    bottom_right: Point
    label: str


@dataclass(frozen=True)
class AllTypes:
    """One field per container/scalar shape the runner round-trips."""

    str_field: str
    bytes_field: bytes
    int_field: int
    float_field: float
    bool_field: bool
    list_of_int: list[int]
    list_of_str: list[str]
    dict_field: dict[str, int]
    enum_field: Status
    nested_point: Point
    optional_str: str | None
    optional_int: int | None
    optional_nested: Point | None
    list_of_nested: list[Point]
    annotated_int32: Annotated[int, ArrowType(pa.int32())]
    annotated_float32: Annotated[float, ArrowType(pa.float32())]
    nested_list: list[list[int]]
    dict_str_str: dict[str, str]


@dataclass(frozen=True)
class WideTypes:
    """Every Arrow primitive width reachable through ``Annotated[T, ArrowType(...)]``."""

    int8_field: Annotated[int, ArrowType(pa.int8())]
    int16_field: Annotated[int, ArrowType(pa.int16())]
    int32_field: Annotated[int, ArrowType(pa.int32())]
    uint8_field: Annotated[int, ArrowType(pa.uint8())]
    uint16_field: Annotated[int, ArrowType(pa.uint16())]
    uint32_field: Annotated[int, ArrowType(pa.uint32())]
    uint64_field: Annotated[int, ArrowType(pa.uint64())]
    float32_field: Annotated[float, ArrowType(pa.float32())]
    date_field: Annotated[dt.date, ArrowType(pa.date32())]
    timestamp_field: Annotated[dt.datetime, ArrowType(pa.timestamp("us"))]
    timestamp_utc_field: Annotated[dt.datetime, ArrowType(pa.timestamp("us", tz="UTC"))]
    time_field: Annotated[dt.time, ArrowType(pa.time64("us"))]
    duration_field: Annotated[dt.timedelta, ArrowType(pa.duration("us"))]
    decimal_field: Annotated[Decimal, ArrowType(DEC20_4)]
    large_string_field: Annotated[str, ArrowType(pa.large_string())]
    large_binary_field: Annotated[bytes, ArrowType(pa.large_binary())]
    fixed_binary_field: Annotated[bytes, ArrowType(pa.binary(8))]


@dataclass(frozen=True)
class ContainerWideTypes:
    """Wide Arrow types inside list, map and optional positions."""

    list_decimal: Annotated[list[Decimal], ArrowType(pa.list_(DEC20_4))]
    list_date: Annotated[list[dt.date], ArrowType(pa.list_(pa.date32()))]
    list_timestamp: Annotated[list[dt.datetime], ArrowType(pa.list_(pa.timestamp("us")))]
    optional_date: Annotated[dt.date | None, ArrowType(pa.date32())]
    optional_decimal: Annotated[Decimal | None, ArrowType(DEC20_4)]
    optional_timestamp: Annotated[dt.datetime | None, ArrowType(pa.timestamp("us"))]
    dict_str_decimal: Annotated[dict[str, Decimal], ArrowType(pa.map_(pa.string(), DEC20_4))]
    frozenset_int: frozenset[int]
    list_optional_int: list[int | None]


@dataclass(frozen=True)
class DeepNested:
    """Two-level lists of decimals, an optional list, and dictionary-encoded strings."""

    list_of_lists_decimal: Annotated[list[list[Decimal]], ArrowType(pa.list_(pa.list_(DEC20_4)))]
    optional_list_date: Annotated[list[dt.date] | None, ArrowType(pa.list_(pa.date32()))]
    dict_encoded_string: Annotated[str, ArrowType(_DICT_STR)]
    list_of_dict_encoded: Annotated[list[str], ArrowType(pa.list_(_DICT_STR))]


@dataclass(frozen=True)
class EmbeddedArrow:
    """A record batch and a schema, each carried as a binary cell of nested IPC."""

    batch: pa.RecordBatch
    schema: pa.Schema


@dataclass(frozen=True)
class NestedContainers:
    """Enums and dataclasses inside containers and ``Annotated`` wrappers.

    ``tagged_batch`` is a record batch sent as a binary cell holding a complete
    IPC stream (schema, the batch, end-of-stream).
    """

    statuses: list[Status]
    points: list[Point]
    status_by_name: dict[str, Status]
    frozen_statuses: frozenset[Status]
    tagged_status: Annotated[Status, "conformance-tag"] | None
    tagged_point: Annotated[Point, "conformance-tag"] | None
    tagged_batch: Annotated[pa.RecordBatch, ArrowType(pa.binary())] | None


@dataclass(frozen=True)
class ConformanceHeader:
    """The plain stream header of ``produce_with_header`` / ``exchange_with_header``."""

    total_expected: int
    description: str


@dataclass(frozen=True)
class RichHeader:
    """A stream header exercising every type mapping (field order as the peers declare it)."""

    str_field: str
    bytes_field: bytes
    int_field: int
    float_field: float
    bool_field: bool
    list_of_int: list[int]
    list_of_str: list[str]
    dict_field: dict[str, int]
    enum_field: Status
    nested_point: Point
    optional_str: str | None
    optional_int: int | None
    optional_nested: Point | None
    list_of_nested: list[Point]
    nested_list: list[list[int]]
    annotated_int32: Annotated[int, ArrowType(pa.int32())]
    annotated_float32: Annotated[float, ArrowType(pa.float32())]
    dict_str_str: dict[str, str]


_STATUS_ORDER = (Status.PENDING, Status.ACTIVE, Status.CLOSED)


def build_rich_header(seed: int) -> RichHeader:
    """The header the runner expects for *seed* (the values are the peers' specification)."""
    odd = seed % 2 == 1
    return RichHeader(
        str_field=f"seed-{seed}",
        bytes_field=bytes((seed + i) % 256 for i in range(3)),
        int_field=7 * seed,
        float_field=1.5 * seed,
        bool_field=not odd,
        list_of_int=list(range(seed, seed + 3)),
        list_of_str=[f"item-{seed}", f"item-{seed + 1}"],
        dict_field={"a": seed, "b": seed + 1},
        enum_field=_STATUS_ORDER[seed % 3],
        nested_point=Point(x=float(seed), y=float(2 * seed)),
        optional_str=None if odd else f"opt-{seed}",
        optional_int=3 * seed if odd else None,
        optional_nested=Point(x=float(seed), y=0.0) if seed % 3 == 0 else None,
        list_of_nested=[Point(x=float(seed), y=float(seed + 1))],
        nested_list=[[seed, seed + 1], [seed + 2]],
        annotated_int32=seed % 1000,
        annotated_float32=seed / 3.0,
        dict_str_str={"key": f"val-{seed}"},
    )
