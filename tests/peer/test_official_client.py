"""The official vgi-rpc 0.52.2 client against our ``serve_http`` (``make conformance``).

Unary calls with every parameter kind, logs, errors, a producer, an exchange with
cancel, init and mid-stream errors, a 4 MiB payload, a compressed response and a
stream header; every test runs with the official client's default (zstd request
bodies) and uncompressed. The servers and proxies are in ``conftest.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pytest
from peer_services import Banner, Color, Point

from vgi_rpc import AnnotatedBatch, RpcError


def x_batch(*xs: float) -> AnnotatedBatch:
    """An input batch for ``scale`` / ``fail_process``: one float64 column ``x``."""
    return AnnotatedBatch(batch=pa.RecordBatch.from_pydict({"x": pa.array(list(xs), type=pa.float64())}))


def check_error(caught: pytest.ExceptionInfo[RpcError], error_type: str, message: str) -> None:
    """The error's type and message came through, and no server traceback did."""
    assert caught.value.error_type == error_type
    assert message in caught.value.error_message
    assert not caught.value.remote_traceback, "server traceback leaked to the client"


def test_unary_add(calc: Any) -> None:
    """Two ints in, an int out."""
    assert calc.add(a=40, b=2) == 42


def test_unary_float(calc: Any) -> None:
    """Floats both ways."""
    assert calc.divide(a=1.0, b=4.0) == 0.25


def test_defaults(calc: Any) -> None:
    """Parameters the client leaves out take their declared defaults."""
    assert calc.greet(name="Ada") == "Hello, Ada!"


def test_long_result_compressed_response(calc: Any) -> None:
    """A 20 kB result: our Calculator server (``compress_responses="zstd"``) compresses it and the official client decodes it."""
    assert len(calc.greet(name="x" * 20000)) == 20008


def test_void(calc: Any) -> None:
    """A method without a result returns ``None``."""
    assert calc.noop() is None


def test_error(calc: Any) -> None:
    """A ``ValueError`` in the implementation is an ``RpcError`` with type and message."""
    with pytest.raises(RpcError) as caught:
        calc.fail(message="kaboom")
    check_error(caught, "ValueError", "kaboom")


def test_error_type(calc: Any) -> None:
    """The error type is the implementation's own, not a generic one."""
    with pytest.raises(RpcError) as caught:
        calc.fail(message="nope", error_type="PermissionError")
    check_error(caught, "PermissionError", "nope")


def test_logs(calc: Any, logs: list[Any]) -> None:
    """The call's log messages reach ``on_log`` in order, with their levels."""
    logs.clear()
    assert calc.log_and_add(a=1, b=2) == 3
    got = [(str(m.level.value if hasattr(m.level, "value") else m.level), m.message) for m in logs][:2]
    assert got == [("INFO", "adding 1 and 2"), ("WARN", "numbers are small")]


def test_producer(calc: Any) -> None:
    """A producer yields its batches in order; one that finishes at once yields none."""
    assert [ab.batch.column("i").to_pylist() for ab in calc.countdown(n=3)] == [[2], [1], [0]]
    assert list(calc.countdown(n=0)) == []


def test_exchange_and_cancel(calc: Any) -> None:
    """An exchange casts its input, keeps batch metadata, and the server sees each turn and the cancel."""
    tag = f"peer-exchange-{uuid.uuid4().hex}"
    with calc.scale(factor=2.0, tag=tag) as session:
        assert session.exchange(x_batch(1.0, 2.0)).batch.column("y").to_pylist() == [2.0, 4.0]
        out = session.exchange(
            AnnotatedBatch(
                batch=pa.RecordBatch.from_pydict({"x": pa.array([3], type=pa.int32())}),
                custom_metadata=pa.KeyValueMetadata({b"k": b"v"}),
            )
        )
        assert out.batch.column("y").to_pylist() == [6.0]
        assert out.custom_metadata is not None and out.custom_metadata.get(b"k") == b"v"
        session.cancel()
    assert calc.stream_events(tag=tag) == ["process", "process", "cancel"]


def test_init_error(calc: Any) -> None:
    """A stream whose init raises fails at the call, with the init's error."""
    with pytest.raises(RpcError) as caught:
        calc.fail_init(message="no init")
    check_error(caught, "ValueError", "no init")


def test_producer_error_mid_stream(calc: Any) -> None:
    """The batches produced before the error arrive, then the error."""
    seen: list[Any] = []
    with pytest.raises(RpcError) as caught:
        for ab in calc.fail_produce(n=2, message="mid-stream boom"):
            seen.append(ab.batch.column("i").to_pylist())
    assert caught.value.error_type == "RuntimeError"
    assert seen == [[1], [2]]


def test_exchange_error_then_continue(calc: Any) -> None:
    """An error in one exchange turn leaves the session usable for the next turn."""
    with calc.fail_process(message="negative input") as session:
        with pytest.raises(RpcError) as caught:
            session.exchange(x_batch(-1.0))
        check_error(caught, "ValueError", "negative input")
        assert session.exchange(x_batch(5.0)).batch.column("y").to_pylist() == [5.0]


def test_optional(types: Any) -> None:
    """An optional int: null and a value."""
    assert types.echo_opt_int(value=None) is None
    assert types.echo_opt_int(value=7) == 7


def test_list(types: Any) -> None:
    """A list of ints."""
    assert types.echo_list_int(value=[1, 2, 3]) == [1, 2, 3]


def test_dict(types: Any) -> None:
    """A map of str to int."""
    assert types.echo_dict_str_int(value={"a": 1}) == {"a": 1}


def test_enum(types: Any) -> None:
    """An enum member."""
    assert types.echo_color(value=Color.BLUE) == Color.BLUE


def test_dataclass(types: Any) -> None:
    """A dataclass as a struct."""
    assert types.echo_point(value=Point(x=1.5, y=-2.0)) == Point(x=1.5, y=-2.0)


def test_4_mib_bytes(types: Any) -> None:
    """A 4 MiB binary value both ways."""
    assert types.echo_bytes(value=b"\xa5" * (4 << 20)) == b"\xa5" * (4 << 20)


def test_stream_header(headed: Any) -> None:
    """A producer's header arrives before its batches."""
    session = headed.titled(n=3)
    assert session.header == Banner(title="3 rows", total=3)
    assert [ab.batch.column("i").to_pylist() for ab in session] == [[2], [1], [0]]
