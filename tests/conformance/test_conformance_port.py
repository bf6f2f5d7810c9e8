"""Fast sanity checks of our ``ConformanceService`` port (no peer venv needed).

The official runner (``make conformance``) is the real check; these keep
``make test`` honest about the same ground: the port builds, a handful of
methods round-trip through ``serve_pipe`` with our own proxy, and the codec
fixes the conformance run needed stay fixed:

* ``Annotated[T, ArrowType(t)]`` needs only ``t`` to be mappable (``date``,
  ``Decimal``, ``datetime``... inside lists and maps too);
* dataclasses inside containers travel as ``struct`` (``list[Point]``), as the
  official client sends them;
* ``pa.RecordBatch`` / ``pa.Schema`` values travel as binary nested IPC.

One test compares our method set with the official Protocol; it runs only
when the peer venv (``.venv-peer``) exists.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conformance._impl import ConformanceServiceImpl  # noqa: E402
from tests.conformance._protocol import ConformanceService  # noqa: E402
from tests.conformance._types import (  # noqa: E402
    AllTypes,
    ContainerWideTypes,
    DeepNested,
    EmbeddedArrow,
    NestedContainers,
    Point,
    Status,
    WideTypes,
)
from vgi_rpc import AnnotatedBatch, RpcError, RpcServer, serve_pipe  # noqa: E402

PEER_PY = ROOT / ".venv-peer" / "bin" / "python"


@pytest.fixture(scope="module")
def logs() -> list[Any]:
    return []


@pytest.fixture(scope="module")
def proxy(logs: list[Any]) -> Iterator[Any]:
    with serve_pipe(ConformanceService, ConformanceServiceImpl(), on_log=logs.append) as p:
        yield p


def test_port_builds_with_the_official_wire_name() -> None:
    server = RpcServer(ConformanceService, ConformanceServiceImpl())
    assert server.protocol_name == "ConformanceService"
    assert server.protocol_version == "2.0.0"


@pytest.mark.skipif(not PEER_PY.exists(), reason="peer venv (.venv-peer) not built")
def test_method_set_matches_the_official_protocol() -> None:
    code = (
        "import json, inspect\n"
        "from vgi_rpc.conformance._protocol import ConformanceService as C\n"
        "print(json.dumps(sorted(n for n, f in vars(C).items() if inspect.isfunction(f) and not n.startswith('_'))))"
    )
    # -I: isolated, so our own vgi_rpc (cwd) cannot shadow the official package
    out = subprocess.run(
        [str(PEER_PY), "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    official = set(json.loads(out.stdout))
    ours = set(RpcServer(ConformanceService, ConformanceServiceImpl()).methods)
    assert ours == official, {"missing": sorted(official - ours), "extra": sorted(ours - official)}


def test_scalars_defaults_and_enums(proxy: Any) -> None:
    assert proxy.echo_string(value="a\x00b") == "a\x00b"
    assert proxy.echo_int(value=-(2**63)) == -(2**63)
    assert proxy.echo_uint64(value=2**64 - 1) == 2**64 - 1
    assert proxy.echo_enum(status=Status.CLOSED) is Status.CLOSED
    assert proxy.with_defaults(required=1) == "required=1, optional_str=default, optional_int=42"
    assert proxy.echo_optional_point(point=None) is None
    assert proxy.void_noop() is None


def test_annotated_override_needs_no_mappable_base(proxy: Any) -> None:
    """``Annotated[date, ArrowType(date32)]`` and friends: the override alone decides the wire type."""
    when = dt.datetime(2024, 2, 29, 23, 59, 59, 123456)
    assert proxy.echo_date(value=dt.date(2024, 2, 29)) == dt.date(2024, 2, 29)
    assert proxy.echo_timestamp(value=when) == when
    utc = when.replace(tzinfo=dt.UTC)
    assert proxy.echo_timestamp_utc(value=utc) == utc
    assert proxy.echo_decimal(value=Decimal("-12345.6789")) == Decimal("-12345.6789")
    assert proxy.echo_dict_encoded_string(value="red") == "red"
    wide = ContainerWideTypes(
        list_decimal=[Decimal("1.0000"), Decimal("-2.5000")],
        list_date=[dt.date(2000, 1, 1)],
        list_timestamp=[when],
        optional_date=None,
        optional_decimal=Decimal("3.1416"),
        optional_timestamp=None,
        dict_str_decimal={"pi": Decimal("3.1416")},
        frozenset_int=frozenset({3, 1}),
        list_optional_int=[1, None, 3],
    )
    assert proxy.echo_container_wide_types(data=wide) == wide
    deep = DeepNested(
        list_of_lists_decimal=[[Decimal("1.5000")], []],
        optional_list_date=None,
        dict_encoded_string="x",
        list_of_dict_encoded=["a", "b", "a"],
    )
    assert proxy.echo_deep_nested(data=deep) == deep


def test_wide_types_round_trip(proxy: Any) -> None:
    data = WideTypes(
        int8_field=-128,
        int16_field=32767,
        int32_field=-(2**31),
        uint8_field=255,
        uint16_field=65535,
        uint32_field=2**32 - 1,
        uint64_field=2**64 - 1,
        float32_field=1.5,
        date_field=dt.date(1970, 1, 1),
        timestamp_field=dt.datetime(2020, 1, 1, 0, 0, 0, 1),
        timestamp_utc_field=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        time_field=dt.time(23, 59, 59, 999999),
        duration_field=dt.timedelta(days=-1, microseconds=5),
        decimal_field=Decimal("0.0001"),
        large_string_field="big",
        large_binary_field=b"\x00\xff",
        fixed_binary_field=b"12345678",
    )
    assert proxy.echo_wide_types(data=data) == data


def test_dataclasses_in_containers_are_structs(proxy: Any) -> None:
    """A top-level ``list[Point]`` is ``list<struct>`` on the wire (the official client sends that)."""
    spec = RpcServer(ConformanceService, ConformanceServiceImpl()).methods["pack_nested_containers"]
    assert spec.params_schema.field("points").type == pa.list_(
        pa.struct([pa.field("x", pa.float64(), nullable=False), pa.field("y", pa.float64(), nullable=False)])
    )
    statuses = [Status.ACTIVE, Status.CLOSED]
    points = [Point(1.0, 2.0), Point(3.0, 4.0)]
    got = proxy.pack_nested_containers(statuses=statuses, points=points, status_by_name={"a": Status.ACTIVE})
    assert isinstance(got, NestedContainers)
    assert got.points == points
    assert got.frozen_statuses == frozenset(statuses)
    assert got.tagged_status is Status.ACTIVE
    assert got.tagged_batch is not None
    assert got.tagged_batch.equals(pa.RecordBatch.from_pydict({"value": [1, 2]}))


def test_record_batch_and_schema_values(proxy: Any) -> None:
    batch = pa.RecordBatch.from_pydict({"a": [1, 2, 3], "b": ["x", None, "z"]})
    schema = pa.schema([pa.field("k", pa.int32(), nullable=False)], metadata={"m": "1"})
    got = proxy.echo_embedded_arrow(data=EmbeddedArrow(batch=batch, schema=schema))
    assert got.batch.equals(batch)
    assert got.schema.equals(schema, check_metadata=True)


def test_all_types_with_nulls(proxy: Any) -> None:
    data = AllTypes(
        str_field="",
        bytes_field=b"",
        int_field=0,
        float_field=-0.0,
        bool_field=False,
        list_of_int=[],
        list_of_str=[],
        dict_field={},
        enum_field=Status.PENDING,
        nested_point=Point(0.0, 0.0),
        optional_str=None,
        optional_int=None,
        optional_nested=None,
        list_of_nested=[],
        annotated_int32=0,
        annotated_float32=0.0,
        nested_list=[[]],
        dict_str_str={},
    )
    assert proxy.echo_all_types(data=data) == data


def test_errors_and_logs(proxy: Any, logs: list[Any]) -> None:
    with pytest.raises(RpcError) as info:
        proxy.raise_value_error(message="test error")
    assert info.value.error_type == "ValueError"
    assert "test error" in info.value.error_message
    logs.clear()
    assert proxy.echo_with_multi_logs(value="m") == "m"
    assert [m.level for m in logs] == ["DEBUG", "INFO", "WARN"]
    logs.clear()
    proxy.echo_with_log_extras(value="e")
    assert logs[0].extra["source"] == "conformance"


def test_producers(proxy: Any) -> None:
    assert [b.batch.column("value")[0].as_py() for b in proxy.produce_n(count=3)] == [0, 10, 20]
    assert list(proxy.produce_empty()) == []
    seen = []
    with pytest.raises(RpcError, match="intentional error"):
        for b in proxy.produce_error_mid_stream(emit_before_error=2):
            seen.append(b)
    assert len(seen) == 2
    batches = list(proxy.produce_annotated_batches(count=2, rows_per_batch=1))
    assert [dict(b.custom_metadata or {}).get("conformance.batch_index") for b in batches] == ["0", "1"]


def test_exchanges_and_cast(proxy: Any) -> None:
    with proxy.exchange_accumulate() as session:
        session.exchange(AnnotatedBatch.from_pydict({"value": [1.0, 2.0]}))
        out = session.exchange(AnnotatedBatch.from_pydict({"value": [10.0]}))
    assert out.batch.to_pydict() == {"running_sum": [13.0], "exchange_count": [2]}
    with proxy.exchange_cast_compatible() as session:
        int32 = pa.RecordBatch.from_arrays([pa.array([1, 2], pa.int32())], names=["value"])
        out = session.exchange(AnnotatedBatch(int32))
    assert out.batch.schema.field("value").type == pa.float64()
    assert out.batch.column("value").to_pylist() == [1.0, 2.0]


def test_cancel_runs_on_cancel_once(proxy: Any) -> None:
    proxy.reset_cancel_probe()
    session = proxy.cancellable_exchange()
    session.exchange(AnnotatedBatch.from_pydict({"value": [1.0]}))
    session.cancel()
    assert proxy.cancel_probe_counters() == [0, 1, 1]


def test_unsupported_features_fail_cleanly(proxy: Any) -> None:
    """Sticky sessions are not supported: a clean RpcError, and the connection stays usable."""
    with pytest.raises(RpcError):
        proxy.open_counter(initial=1)
    assert proxy.echo_string(value="still here") == "still here"


def test_stream_headers_arrive_before_the_batches(proxy: Any) -> None:
    """Stream[S, H]: the header is decoded on the session; init logs ride ahead of it."""
    from tests.conformance._types import ConformanceHeader

    session = proxy.produce_with_header(count=2)
    assert session.header == ConformanceHeader(total_expected=2, description="producing 2 batches")
    assert [b.batch.to_pydict() for b in session] == [
        {"index": [0], "value": [0]},
        {"index": [1], "value": [10]},
    ]
    with proxy.exchange_with_header(factor=3.0) as exchange:
        assert exchange.header.description == "scale by 3.0"
        out = exchange.exchange(AnnotatedBatch.from_pydict({"value": [2.0]}))
    assert out.batch.column("value").to_pylist() == [6.0]


def test_rich_header_and_dynamic_schema(proxy: Any) -> None:
    """Every type mapping survives in a header; the output schema is chosen per call."""
    from tests.conformance._types import build_rich_header

    session = proxy.produce_dynamic_schema(seed=3, count=2, include_strings=True, include_floats=False)
    expected = build_rich_header(3)
    header = session.header
    # float32 travels with float32 precision
    assert header.annotated_float32 == pytest.approx(expected.annotated_float32, rel=1e-6)
    assert {**header.__dict__, "annotated_float32": 0} == {**expected.__dict__, "annotated_float32": 0}
    rows = [b.batch.to_pydict() for b in session]
    assert rows == [{"index": [0], "label": ["row-0"]}, {"index": [1], "label": ["row-1"]}]


def test_stream_header_logs_reach_the_client() -> None:
    """An INFO log emitted at init travels in the header stream, before the header row."""
    from tests.conformance._impl import ConformanceServiceImpl
    from tests.conformance._protocol import ConformanceService
    from vgi_rpc.wire import LogMessage

    logs: list[LogMessage] = []
    with serve_pipe(ConformanceService, ConformanceServiceImpl(), on_log=logs.append) as p:
        session = p.produce_with_header_and_logs(count=1)
        assert [m.message for m in logs] == ["stream init log"]
        assert session.header.total_expected == 1
        assert len(list(session)) == 1


# --- the codec fixes, one by one (independent of the whole port building) ---------------
def test_codec_annotated_override_alone_decides() -> None:
    from typing import Annotated

    from vgi_rpc import ArrowType
    from vgi_rpc._types import codec_for

    codec = codec_for(Annotated[dict[str, Decimal], ArrowType(pa.map_(pa.string(), pa.decimal128(20, 4)))])
    assert codec.arrow_type == pa.map_(pa.string(), pa.decimal128(20, 4))
    assert codec.decode(codec.to_array([{"a": Decimal("1.5")}])[0].as_py()) == {"a": Decimal("1.5000")}
    optional = codec_for(Annotated[dt.date | None, ArrowType(pa.date32())])
    assert (optional.arrow_type, optional.nullable) == (pa.date32(), True)


def test_codec_container_items_are_nested() -> None:
    from vgi_rpc._types import codec_for

    assert pa.types.is_struct(codec_for(list[Point]).arrow_type.value_type)
    assert pa.types.is_struct(codec_for(dict[str, Point]).arrow_type.item_type)
    assert codec_for(Point).arrow_type == pa.binary()  # a top-level dataclass stays nested IPC


def test_codec_record_batch_and_schema() -> None:
    from vgi_rpc._types import codec_for

    batch = pa.RecordBatch.from_pydict({"v": [1, 2]})
    codec = codec_for(pa.RecordBatch)
    assert codec.arrow_type == pa.binary()
    assert codec.decode(codec.encode(batch)).equals(batch)
    schema_codec = codec_for(pa.Schema)
    assert schema_codec.decode(schema_codec.encode(batch.schema)).equals(batch.schema)
