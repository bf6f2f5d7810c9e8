"""``connect`` to a real ``run_server`` worker subprocess (``tests/workers/service_worker.py``).

The same behaviours as the in-process pipe suite, across a process boundary:
unary / producer / exchange, defaults, ``ctx``, client-visible logs, errors with
type and message (unary, init, ``produce``, ``process``), cancel, and
implementations that print while serving.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.services import Calculator, Color, Countdown, Point, Shape, TypesService, xs

from vgi_rpc import AnnotatedBatch, RpcError, Stream, connect
from vgi_rpc.wire import LogMessage

WORKER = Path(__file__).resolve().parents[1] / "workers" / "service_worker.py"
HEX12 = re.compile(r"[0-9a-f]{12}")
HEX16 = re.compile(r"[0-9a-f]{16}")


def worker_cmd(service: str, *flags: str) -> list[str]:
    return [sys.executable, str(WORKER), service, *flags]


LOGS: list[LogMessage] = []


@pytest.fixture(scope="module")
def calc() -> Iterator[Any]:
    with connect(Calculator, worker_cmd("calculator"), on_log=LOGS.append) as proxy:
        yield proxy


@pytest.fixture
def logs() -> list[LogMessage]:
    LOGS.clear()
    return LOGS


@pytest.fixture(scope="module")
def types() -> Iterator[Any]:
    with connect(TypesService, worker_cmd("types")) as proxy:
        yield proxy


# --------------------------------------------------------------------------- unary


def test_unary_and_defaults(calc: Any) -> None:
    assert calc.add(a=20, b=22) == 42
    assert calc.divide(a=1.0, b=8.0) == 0.125
    assert calc.greet(name="Grace") == "Hello, Grace!"
    assert calc.greet(name="Grace", punctuation="?") == "Hello, Grace?"
    assert calc.noop() is None


def test_ctx_is_injected_in_the_worker(calc: Any) -> None:
    who = calc.whoami()
    assert who["method"] == "whoami"
    assert who["protocol_name"] == "Calculator"
    assert HEX12.fullmatch(who["server_id"])
    assert HEX16.fullmatch(who["request_id"])
    assert who["stream_id"] == "None"
    assert who["authenticated"] == "False"
    assert calc.whoami()["server_id"] == who["server_id"]  # one worker, one server id


def test_log_messages_cross_the_process_boundary(calc: Any, logs: list[LogMessage]) -> None:
    assert calc.log_and_add(a=1, b=2) == 3
    assert [(m.level, m.message, dict(m.extra)) for m in logs] == [
        ("INFO", "adding 1 and 2", {"a": 1, "b": 2}),
        ("WARN", "numbers are small", {}),
    ]
    assert logs[0].server_id == calc.whoami()["server_id"]


@pytest.mark.parametrize(
    "error_type", ["ValueError", "ZeroDivisionError", "FileNotFoundError", "ArrowInvalid"]
)
def test_errors_carry_type_and_message(calc: Any, error_type: str) -> None:
    with pytest.raises(RpcError) as info:
        calc.fail(message="worker says no", error_type=error_type)
    assert info.value.error_type == error_type
    assert info.value.error_message == f"{error_type}: worker says no"
    assert info.value.remote_traceback is None
    assert calc.add(a=1, b=1) == 2


def test_printing_implementation_does_not_corrupt_the_pipe(calc: Any) -> None:
    assert calc.shout(text="quiet please") == "QUIET PLEASE"
    assert calc.add(a=1, b=1) == 2


# --------------------------------------------------------------------------- streams


def test_producer(calc: Any, logs: list[LogMessage]) -> None:
    assert [b.batch.to_pydict()["i"][0] for b in calc.countdown(n=4)] == [3, 2, 1, 0]
    assert [m.message for m in logs] == ["tick 3", "tick 2", "tick 1", "tick 0"]
    assert list(calc.countdown(n=0)) == []


def test_exchange_with_casting(calc: Any) -> None:
    with calc.scale(factor=0.5) as s:
        assert s.exchange(xs(4.0, 8.0)).batch.to_pydict() == {"y": [2.0, 4.0]}
        assert s.exchange(AnnotatedBatch.from_pydict({"x": [2]})).batch.to_pydict() == {"y": [1.0]}
        out = s.exchange(AnnotatedBatch(xs(1.0).batch, {"k": "v"}))
        assert out.custom_metadata == {"k": "v"}


def test_cancel_runs_on_cancel_in_the_worker(calc: Any) -> None:
    tag = uuid.uuid4().hex
    s = calc.scale(factor=2.0, tag=tag)
    s.exchange(xs(1.0))
    s.exchange(xs(2.0))
    s.cancel()
    assert calc.stream_events(tag=tag) == ["process", "process", "cancel"]


def test_producer_cancel_and_close(calc: Any) -> None:
    tag = uuid.uuid4().hex
    s = calc.countdown(n=10, tag=tag)
    next(iter(s))
    s.cancel()
    t = calc.countdown(n=10, tag=tag)
    next(iter(t))
    t.close()
    assert calc.stream_events(tag=tag) == ["produce", "produce"]


@pytest.mark.parametrize("error_type", ["RuntimeError", "PermissionError", "ArrowInvalid"])
def test_error_in_produce(calc: Any, error_type: str) -> None:
    got = []
    with pytest.raises(RpcError) as info:
        for b in calc.fail_produce(n=3, message="ran out", error_type=error_type):
            got.append(b.batch.to_pydict()["i"][0])
    assert got == [1, 2, 3]
    assert (info.value.error_type, info.value.error_message) == (error_type, f"{error_type}: ran out")
    assert calc.add(a=1, b=1) == 2


@pytest.mark.parametrize("error_type", ["ValueError", "FileNotFoundError"])
def test_error_in_process(calc: Any, error_type: str) -> None:
    s = calc.fail_process(message="no negatives", error_type=error_type)
    assert s.exchange(xs(2.0)).batch.to_pydict() == {"y": [2.0]}
    with pytest.raises(RpcError) as info:
        s.exchange(xs(-2.0))
    assert (info.value.error_type, info.value.error_message) == (error_type, f"{error_type}: no negatives")
    assert calc.add(a=1, b=1) == 2


def test_error_at_init(calc: Any) -> None:
    with pytest.raises(RpcError) as info:
        list(calc.fail_init(message="cannot start", error_type="PermissionError"))
    assert (info.value.error_type, info.value.error_message) == (
        "PermissionError",
        "PermissionError: cannot start",
    )
    assert calc.add(a=1, b=1) == 2


# --------------------------------------------------------------------------- types across processes


def test_rich_types_round_trip_through_a_worker(types: Any) -> None:
    assert types.echo_color(value=Color.BLUE) is Color.BLUE
    assert types.echo_opt_color(value=None) is None
    assert types.echo_point(value=Point(0.5, -1.0)) == Point(0.5, -1.0)
    assert types.echo_dict_int_list_str(value={1: ["a"], 2: []}) == {1: ["a"], 2: []}
    assert types.echo_frozenset_int(value=frozenset({3, 1})) == frozenset({1, 3})
    assert types.echo_i32(value=-(2**31)) == -(2**31)
    assert types.defaults() == repr((1, "x", None, Color.GREEN, 0.5))
    assert types.defaults(c=Color.BLUE, xs=[]) == repr((1, "x", [], Color.BLUE, 0.5))


POINTS = st.builds(Point, x=st.floats(allow_nan=False), y=st.floats(allow_nan=False))
SHAPES = st.builds(
    Shape,
    name=st.text(),
    color=st.sampled_from(Color),
    corners=st.lists(POINTS, max_size=4),
    origin=POINTS,
    label=st.none() | st.text(),
    weights=st.none() | st.dictionaries(st.text(), st.integers(-(2**63), 2**63 - 1), max_size=4),
)


@settings(max_examples=25, deadline=None)
@given(value=SHAPES)
def test_nested_dataclasses_round_trip_through_a_worker(types: Any, value: Shape) -> None:
    assert types.echo_shape(value=value) == value


@settings(max_examples=25, deadline=None)
@given(value=st.lists(st.none() | st.text(), max_size=8))
def test_nullable_lists_round_trip_through_a_worker(types: Any, value: list[str | None]) -> None:
    assert types.echo_list_opt_str(value=value) == value


def test_two_workers_side_by_side() -> None:
    with (
        connect(Calculator, worker_cmd("calculator")) as one,
        connect(Calculator, worker_cmd("calculator")) as two,
    ):
        assert one.whoami()["server_id"] != two.whoami()["server_id"]
        s = one.countdown(n=2)
        assert two.add(a=1, b=2) == 3  # a stream open on one worker does not block the other
        assert [b.batch.to_pydict()["i"][0] for b in s] == [1, 0]


class NewerCalculator(Calculator, Protocol):
    """A client that believes the worker has methods it does not (version skew)."""

    protocol_name: ClassVar[str] = "Calculator"

    def ghost(self, n: int) -> int: ...
    def ghost_stream(self, n: int) -> Stream[Countdown]: ...


def test_methods_the_worker_lacks_fail_cleanly_and_the_pipe_stays_in_step() -> None:
    with connect(NewerCalculator, worker_cmd("calculator")) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.ghost(n=1)
        assert info.value.error_kind == "method_not_implemented"
        assert "'ghost'" in info.value.error_message
        assert proxy.add(a=1, b=2) == 3
        # a stream call: the client sends its input stream before it sees the error
        with pytest.raises(RpcError, match="ghost_stream"):
            list(proxy.ghost_stream(n=2))
        with pytest.raises(RpcError, match="ghost_stream"), proxy.ghost_stream(n=2) as session:
            session.exchange(xs(1.0))
        assert [proxy.add(a=10, b=i) for i in range(3)] == [10, 11, 12]
        assert [b.batch.to_pydict()["i"][0] for b in proxy.countdown(n=2)] == [1, 0]


class Thermostat(Protocol):
    """A client for a service the worker does not serve at all (wire name ``Thermostat``)."""

    def countdown(self, n: int, tag: str = "") -> Stream[Countdown]: ...
    def add(self, a: int, b: int) -> int: ...


def test_a_protocol_the_worker_does_not_serve_fails_cleanly() -> None:
    with connect(Thermostat, worker_cmd("calculator")) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.add(a=1, b=2)
        assert info.value.error_kind == "protocol_not_supported"
        assert "'Thermostat'" in info.value.error_message
        with pytest.raises(RpcError) as info:
            list(proxy.countdown(n=2))
        assert info.value.error_kind == "protocol_not_supported"
        with pytest.raises(RpcError, match="Thermostat"):
            proxy.add(a=1, b=2)  # still one answer per call: nothing left over in the pipe


# --------------------------------------------------------------------------- broken workers


@pytest.mark.parametrize(
    "script",
    [
        "import sys; sys.exit(3)",
        "import sys; sys.stdin.buffer.read(8); sys.stdout.write('this is not arrow'); sys.stdout.flush()",
    ],
    ids=["exits-at-once", "speaks-garbage"],
)
def test_a_broken_worker_is_a_transport_error_not_a_hang(script: str) -> None:
    with connect(Calculator, [sys.executable, "-c", script]) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.add(a=1, b=2)
        assert info.value.error_type == "TransportError"
        assert "'add'" in info.value.error_message
        with pytest.raises(RpcError) as info:
            list(proxy.countdown(n=2))
        assert info.value.error_type == "TransportError"


def test_a_worker_killed_mid_stream_is_a_transport_error(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    launcher = (
        "import os, runpy, sys; "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        f"sys.argv = [{str(WORKER)!r}, 'calculator']; "
        f"runpy.run_path({str(WORKER)!r}, run_name='__main__')"
    )
    with connect(Calculator, [sys.executable, "-c", launcher]) as proxy:
        assert proxy.add(a=1, b=2) == 3
        session = proxy.scale(factor=2.0)
        assert session.exchange(xs(1.0)).batch.to_pydict() == {"y": [2.0]}
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        with pytest.raises(RpcError) as info:
            for _ in range(100):  # the first write may still fit in the pipe buffer
                session.exchange(xs(1.0))
        # a broken pipe, or the output stream ending without an answer: either way an RpcError
        assert info.value.error_type in ("TransportError", "ProtocolError"), info.value
        with pytest.raises(RuntimeError, match="closed"):
            session.exchange(xs(1.0))
        with pytest.raises(RpcError, match="TransportError"):
            proxy.add(a=1, b=2)  # the connection is free again, and reports the dead worker
