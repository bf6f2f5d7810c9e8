"""Annotations -> Arrow types (the interop table), value round-trips, and construction errors.

The table in ``shared/spec/interop.md`` is pinned three ways: on the codec, on the
request/result schemas an ``RpcServer`` builds, and on the bytes a real call puts
on the pipe. Round-trips go through ``serve_pipe`` (a real server thread, real
Arrow IPC), with hypothesis generating scalars, lists, nullables, maps, enums
and dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any, Optional, Protocol

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.services import (
    F32,
    I32,
    Color,
    Point,
    Shape,
    TypesService,
    TypesServiceImpl,
)

from vgi_rpc import ArrowType, RpcServer, serve_pipe
from vgi_rpc._types import codec_for, dataclass_schema

SETTINGS = settings(max_examples=50, deadline=None)

ENUM_TYPE = pa.dictionary(pa.int16(), pa.utf8())
POINT_STRUCT = pa.struct(
    [pa.field("x", pa.float64(), nullable=False), pa.field("y", pa.float64(), nullable=False)]
)


@pytest.fixture(scope="module")
def proxy() -> Any:
    with serve_pipe(TypesService, TypesServiceImpl()) as p:
        yield p


# --------------------------------------------------------------------------- the mapping table

TABLE: list[tuple[Any, pa.DataType, bool]] = [
    (int, pa.int64(), False),
    (float, pa.float64(), False),
    (str, pa.utf8(), False),
    (bool, pa.bool_(), False),
    (bytes, pa.binary(), False),
    (int | None, pa.int64(), True),
    (Optional[str], pa.utf8(), True),  # noqa: UP045 (typing.Optional must work too)
    (list[int], pa.list_(pa.field("item", pa.int64(), nullable=True)), False),
    (list[str | None], pa.list_(pa.utf8()), False),
    (list[int] | None, pa.list_(pa.int64()), True),
    (frozenset[int], pa.list_(pa.int64()), False),
    (list[list[float]], pa.list_(pa.list_(pa.float64())), False),
    (dict[str, int], pa.map_(pa.utf8(), pa.int64()), False),
    (dict[int, list[str]], pa.map_(pa.int64(), pa.list_(pa.utf8())), False),
    (Color, ENUM_TYPE, False),
    (Color | None, ENUM_TYPE, True),
    (list[Color], pa.list_(ENUM_TYPE), False),
    (Point, pa.binary(), False),
    (Point | None, pa.binary(), True),
    (list[Point], pa.list_(POINT_STRUCT), False),
    (I32, pa.int32(), False),
    (F32, pa.float32(), False),
    (Annotated[str, ArrowType(pa.large_string())], pa.large_string(), False),
    (Annotated[int, ArrowType(pa.int16())] | None, pa.int16(), True),
    (Annotated[int | None, ArrowType(pa.uint8())], pa.uint8(), True),
    (Annotated[bytes, "not an ArrowType marker"], pa.binary(), False),
]


@pytest.mark.parametrize(("annotation", "arrow_type", "nullable"), TABLE, ids=[repr(t[0]) for t in TABLE])
def test_codec_maps_annotation_as_the_interop_table_says(
    annotation: Any, arrow_type: pa.DataType, nullable: bool
) -> None:
    codec = codec_for(annotation)
    assert codec.arrow_type == arrow_type
    assert codec.nullable is nullable
    assert codec.field("v") == pa.field("v", arrow_type, nullable=nullable)


def test_list_items_are_nullable_and_named_item() -> None:
    field = codec_for(list[int]).arrow_type.value_field
    assert field.name == "item"
    assert field.nullable


def test_dataclass_schema_nests_dataclasses_as_struct_and_enums_as_dictionary() -> None:
    schema = dataclass_schema(Shape)
    assert schema == pa.schema(
        [
            pa.field("name", pa.utf8(), nullable=False),
            pa.field("color", ENUM_TYPE, nullable=False),
            pa.field("corners", pa.list_(POINT_STRUCT), nullable=False),
            pa.field("origin", POINT_STRUCT, nullable=False),
            pa.field("label", pa.utf8(), nullable=True),
            pa.field("weights", pa.map_(pa.utf8(), pa.int64()), nullable=True),
        ]
    )


def test_server_schemas_follow_the_table() -> None:
    server = RpcServer(TypesService, TypesServiceImpl())
    expected = {
        "echo_int": (pa.int64(), False),
        "echo_opt_str": (pa.utf8(), True),
        "echo_list_opt_str": (pa.list_(pa.utf8()), False),
        "echo_dict_str_int": (pa.map_(pa.utf8(), pa.int64()), False),
        "echo_color": (ENUM_TYPE, False),
        "echo_opt_point": (pa.binary(), True),
        "echo_shape": (pa.binary(), False),
        "echo_i32": (pa.int32(), False),
    }
    for name, (arrow_type, nullable) in expected.items():
        spec = server.methods[name]
        assert spec.method_type == "unary"
        assert spec.params_schema == pa.schema([pa.field("value", arrow_type, nullable=nullable)]), name
        assert spec.result_schema == pa.schema([pa.field("result", arrow_type, nullable=nullable)]), name


def test_parameter_schema_is_in_declaration_order_without_self_or_ctx() -> None:
    class P(Protocol):
        def m(self, z: int, a: str, m: float = 1.0) -> None: ...

    class Impl:
        def m(self, z: int, a: str, m: float = 1.0, ctx: Any = None) -> None:
            return None

    spec = RpcServer(P, Impl()).methods["m"]
    assert spec.params_schema.names == ["z", "a", "m"]
    assert spec.result_schema == pa.schema([])
    assert spec.wants_ctx


def test_request_bytes_on_the_pipe_carry_the_table_types() -> None:
    """The client puts the mapped types on the wire: decode the request IPC the server reads."""
    seen: list[pa.Schema] = []

    class Recording(TypesServiceImpl):
        def echo_shape(self, value: Shape) -> Shape:
            return value

    server = RpcServer(TypesService, Recording())
    real_decode = server.decode_kwargs

    def spy(spec: Any, batch: pa.RecordBatch) -> dict[str, Any]:
        seen.append(batch.schema)
        return real_decode(spec, batch)

    server.decode_kwargs = spy  # type: ignore[method-assign]
    with serve_pipe(server) as p:
        p.echo_color(value=Color.RED)
        p.echo_opt_int(value=None)
        p.echo_point(value=Point(1.0, 2.0))
    assert seen[0] == pa.schema([pa.field("value", ENUM_TYPE, nullable=False)])
    assert seen[1] == pa.schema([pa.field("value", pa.int64(), nullable=True)])
    assert seen[2] == pa.schema([pa.field("value", pa.binary(), nullable=False)])


def test_dataclass_travels_as_a_complete_nested_ipc_stream() -> None:
    codec = codec_for(Point)
    blob = codec.encode(Point(1.5, -2.0))
    reader = pa.ipc.open_stream(pa.py_buffer(blob))
    assert reader.schema == dataclass_schema(Point)
    table = reader.read_all()
    assert table.num_rows == 1
    assert table.to_pylist() == [{"x": 1.5, "y": -2.0}]
    assert codec.decode(blob) == Point(1.5, -2.0)


def test_enum_travels_as_member_name() -> None:
    codec = codec_for(Color)
    assert codec.to_array([Color.BLUE]).to_pylist() == ["BLUE"]
    assert codec.decode("GREEN") is Color.GREEN


# --------------------------------------------------------------------------- round trips (hypothesis)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False)
TEXT = st.text()
SMALL = {"max_size": 5}


@SETTINGS
@given(value=INT64)
def test_roundtrip_int(proxy: Any, value: int) -> None:
    assert proxy.echo_int(value=value) == value


@SETTINGS
@given(value=FLOATS)
def test_roundtrip_float(proxy: Any, value: float) -> None:
    out = proxy.echo_float(value=value)
    assert isinstance(out, float)
    assert out == value
    assert math.copysign(1.0, out) == math.copysign(1.0, value)  # -0.0 stays -0.0


def test_roundtrip_float_nan_and_infinities(proxy: Any) -> None:
    assert math.isnan(proxy.echo_float(value=math.nan))
    assert proxy.echo_float(value=math.inf) == math.inf
    assert proxy.echo_float(value=-math.inf) == -math.inf


@SETTINGS
@given(value=TEXT)
def test_roundtrip_str(proxy: Any, value: str) -> None:
    assert proxy.echo_str(value=value) == value


@SETTINGS
@given(value=st.booleans())
def test_roundtrip_bool(proxy: Any, value: bool) -> None:
    assert proxy.echo_bool(value=value) is value


@SETTINGS
@given(value=st.binary())
def test_roundtrip_bytes(proxy: Any, value: bytes) -> None:
    assert proxy.echo_bytes(value=value) == value


@SETTINGS
@given(value=st.none() | INT64)
def test_roundtrip_optional_int(proxy: Any, value: int | None) -> None:
    assert proxy.echo_opt_int(value=value) == value


@SETTINGS
@given(value=st.none() | TEXT)
def test_roundtrip_optional_str(proxy: Any, value: str | None) -> None:
    assert proxy.echo_opt_str(value=value) == value


@SETTINGS
@given(value=st.lists(INT64))
def test_roundtrip_list_int(proxy: Any, value: list[int]) -> None:
    assert proxy.echo_list_int(value=value) == value


@SETTINGS
@given(value=st.lists(st.none() | TEXT))
def test_roundtrip_list_of_optional_str(proxy: Any, value: list[str | None]) -> None:
    assert proxy.echo_list_opt_str(value=value) == value


@SETTINGS
@given(value=st.lists(st.lists(FLOATS, **SMALL), **SMALL))
def test_roundtrip_nested_lists(proxy: Any, value: list[list[float]]) -> None:
    assert proxy.echo_list_list_float(value=value) == value


@SETTINGS
@given(value=st.frozensets(INT64))
def test_roundtrip_frozenset(proxy: Any, value: frozenset[int]) -> None:
    out = proxy.echo_frozenset_int(value=value)
    assert isinstance(out, frozenset)
    assert out == value


@SETTINGS
@given(value=st.dictionaries(TEXT, INT64))
def test_roundtrip_dict_str_int(proxy: Any, value: dict[str, int]) -> None:
    out = proxy.echo_dict_str_int(value=value)
    assert isinstance(out, dict)
    assert out == value


@SETTINGS
@given(value=st.dictionaries(INT64, st.lists(TEXT, **SMALL), **SMALL))
def test_roundtrip_dict_int_list_str(proxy: Any, value: dict[int, list[str]]) -> None:
    assert proxy.echo_dict_int_list_str(value=value) == value


@SETTINGS
@given(value=st.sampled_from(Color))
def test_roundtrip_enum(proxy: Any, value: Color) -> None:
    assert proxy.echo_color(value=value) is value


@SETTINGS
@given(value=st.none() | st.sampled_from(Color))
def test_roundtrip_optional_enum(proxy: Any, value: Color | None) -> None:
    assert proxy.echo_opt_color(value=value) is value


@SETTINGS
@given(value=st.lists(st.sampled_from(Color)))
def test_roundtrip_list_of_enum(proxy: Any, value: list[Color]) -> None:
    assert proxy.echo_list_color(value=value) == value


POINTS = st.builds(Point, x=FLOATS, y=FLOATS)
SHAPES = st.builds(
    Shape,
    name=TEXT,
    color=st.sampled_from(Color),
    corners=st.lists(POINTS, **SMALL),
    origin=POINTS,
    label=st.none() | TEXT,
    weights=st.none() | st.dictionaries(TEXT, INT64, **SMALL),
)


@SETTINGS
@given(value=POINTS)
def test_roundtrip_dataclass(proxy: Any, value: Point) -> None:
    assert proxy.echo_point(value=value) == value


@SETTINGS
@given(value=st.none() | POINTS)
def test_roundtrip_optional_dataclass(proxy: Any, value: Point | None) -> None:
    assert proxy.echo_opt_point(value=value) == value


@SETTINGS
@given(value=SHAPES)
def test_roundtrip_nested_dataclass(proxy: Any, value: Shape) -> None:
    out = proxy.echo_shape(value=value)
    assert out == value
    assert out.color is value.color
    assert all(isinstance(c, Point) for c in out.corners)


@SETTINGS
@given(value=st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_roundtrip_annotated_int32(proxy: Any, value: int) -> None:
    assert proxy.echo_i32(value=value) == value


@SETTINGS
@given(value=st.floats(width=32, allow_nan=False))
def test_roundtrip_annotated_float32(proxy: Any, value: float) -> None:
    assert proxy.echo_f32(value=value) == value


@SETTINGS
@given(value=TEXT)
def test_roundtrip_annotated_large_string(proxy: Any, value: str) -> None:
    assert proxy.echo_large_str(value=value) == value


def test_annotated_override_rejects_values_that_do_not_fit(proxy: Any) -> None:
    with pytest.raises(TypeError, match="int32"):
        proxy.echo_i32(value=2**40)


def test_int_outside_int64_is_rejected_before_sending(proxy: Any) -> None:
    with pytest.raises(TypeError, match="echo_int"):
        proxy.echo_int(value=2**63)
    assert proxy.echo_int(value=1) == 1  # nothing half-sent


def test_none_for_a_non_optional_parameter_is_rejected_before_sending(proxy: Any) -> None:
    with pytest.raises(TypeError, match="may not be None"):
        proxy.echo_int(value=None)
    assert proxy.echo_opt_int(value=None) is None


# --------------------------------------------------------------------------- defaults


def test_defaults_apply_when_parameters_are_omitted(proxy: Any) -> None:
    assert proxy.defaults() == repr((1, "x", None, Color.GREEN, 0.5))
    assert proxy.defaults(s="y", c=Color.RED) == repr((1, "y", None, Color.RED, 0.5))
    assert proxy.defaults(xs=[1, 2], f=2.0, a=7) == repr((7, "x", [1, 2], Color.GREEN, 2.0))


def test_default_is_recorded_on_the_method_table() -> None:
    spec = RpcServer(TypesService, TypesServiceImpl()).methods["defaults"]
    assert {p.name: p.default for p in spec.params} == {
        "a": 1,
        "s": "x",
        "xs": None,
        "c": Color.GREEN,
        "f": 0.5,
    }
    assert all(p.has_default for p in spec.params)


# --------------------------------------------------------------------------- construction errors


class _Opaque:
    """A plain class: not a dataclass, not an enum."""


@dataclasses.dataclass
class _BadField:
    ok: int
    bad: complex


UNMAPPABLE: list[tuple[Any, str]] = [
    (complex, "complex"),
    (int | str, "int | str"),
    (tuple[int, str], "tuple"),
    (_Opaque, "_Opaque"),
    (list[complex], "complex"),
    (dict[str, object], "object"),
    (_BadField, "bad"),
    (Optional[_Opaque], "_Opaque"),  # noqa: UP045
]


@pytest.mark.parametrize(("annotation", "type_name"), UNMAPPABLE, ids=[t[1] for t in UNMAPPABLE])
def test_unmappable_parameter_fails_at_construction_naming_method_and_type(
    annotation: Any, type_name: str
) -> None:
    def method(self: Any, value: Any) -> int: ...

    method.__annotations__ = {"value": annotation, "return": int}
    proto = type("Weird", (Protocol,), {"frobnicate": method})

    class Impl:
        def frobnicate(self, value: Any) -> int:
            return 0

    with pytest.raises(TypeError) as info:
        RpcServer(proto, Impl())
    message = str(info.value)
    assert "frobnicate" in message
    assert type_name in message


@pytest.mark.parametrize(("annotation", "type_name"), UNMAPPABLE, ids=[t[1] for t in UNMAPPABLE])
def test_unmappable_return_type_fails_at_construction_naming_method_and_type(
    annotation: Any, type_name: str
) -> None:
    def method(self: Any) -> Any: ...

    method.__annotations__ = {"return": annotation}
    proto = type("Weird", (Protocol,), {"frobnicate": method})

    class Impl:
        def frobnicate(self) -> Any:
            return None

    with pytest.raises(TypeError) as info:
        RpcServer(proto, Impl())
    message = str(info.value)
    assert "frobnicate" in message
    assert "return" in message
    assert type_name in message


def test_missing_implementation_method_fails_at_construction_naming_it() -> None:
    class Partial:
        def add(self, a: int, b: int) -> int:
            return a + b

    class Two(Protocol):
        def add(self, a: int, b: int) -> int: ...
        def subtract(self, a: int, b: int) -> int: ...

    with pytest.raises(TypeError, match=r"Partial.*Two\.subtract"):
        RpcServer(Two, Partial())


def test_unannotated_parameter_and_missing_return_fail_at_construction() -> None:
    class NoAnn(Protocol):
        def m(self, x) -> int: ...  # type: ignore[no-untyped-def]

    class NoRet(Protocol):
        def m(self, x: int): ...  # type: ignore[no-untyped-def]

    class Impl:
        def m(self, x: Any) -> int:
            return 0

    with pytest.raises(TypeError, match=r"NoAnn\.m.*'x'"):
        RpcServer(NoAnn, Impl())
    with pytest.raises(TypeError, match=r"NoRet\.m.*return"):
        RpcServer(NoRet, Impl())


def test_star_args_are_rejected_at_construction() -> None:
    class Star(Protocol):
        def m(self, *values: int) -> int: ...

    class Impl:
        def m(self, *values: int) -> int:
            return 0

    with pytest.raises(TypeError, match=r"Star\.m"):
        RpcServer(Star, Impl())


SCALAR_VALUES = [
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**63) - 1,
    True,
    False,
    None,
    1.5,
    -0.0,
    math.inf,
    3,
]


@pytest.mark.parametrize("annotation", [int, float, int | None, float | None])
@pytest.mark.parametrize("value", SCALAR_VALUES, ids=repr)
def test_a_scalar_column_is_what_pyarrow_builds_or_fails_the_same_way(annotation: Any, value: Any) -> None:
    """``Codec.to_array`` builds one int64/float64 from its buffer: same array, same errors as ``pa.array``."""
    codec = codec_for(annotation)
    try:
        expected = pa.array([value], type=codec.arrow_type)
    except Exception as exc:
        with pytest.raises(type(exc)):
            codec.to_array([value])
        return
    got = codec.to_array([value])
    assert got.type == expected.type and got.null_count == expected.null_count
    assert got.to_pylist() == expected.to_pylist()
    assert got.equals(expected)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False))
def test_scalar_columns_round_trip(value: Any) -> None:
    codec = codec_for(type(value))
    assert codec.to_array([value]).to_pylist() == [value]
