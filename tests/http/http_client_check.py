"""Drive OUR HTTP server with the OFFICIAL vgi-rpc 0.52.2 client (run with ``.venv-peer/bin/python``).

    .venv-peer/bin/python tests/http/http_client_check.py CALCULATOR_URL TYPES_URL HEADED_URL [--no-compression]

The URLs include the prefix (``http://127.0.0.1:PORT/vgi``). The Protocols below
mirror ``tests/support/services.py`` (same wire names, method names and annotations),
written against the official package's API; this file never imports our
``vgi_rpc`` (in the peer venv that name is the official package). Prints one
line per check and ``ALL OK`` when every check passed; exits 1 otherwise.
"""

from __future__ import annotations

import enum
import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from vgi_rpc import AnnotatedBatch, ArrowSerializableDataclass, ExchangeState, ProducerState, RpcError, Stream
from vgi_rpc.http import http_connect


class Color(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = 3


@dataclass(frozen=True)
class Point(ArrowSerializableDataclass):
    x: float
    y: float


@dataclass
class Countdown(ProducerState):
    n: int
    tag: str = ""


@dataclass
class Scaler(ExchangeState):
    factor: float
    tag: str = ""


@dataclass
class FailingProducer(ProducerState):
    n: int
    message: str
    error_type: str = "RuntimeError"
    emitted: int = 0


@dataclass
class FailingExchange(ExchangeState):
    message: str
    error_type: str = "ValueError"


class Calculator(Protocol):
    def add(self, a: int, b: int) -> int: ...
    def divide(self, a: float, b: float) -> float: ...
    def greet(self, name: str, greeting: str = "Hello", punctuation: str = "!") -> str: ...
    def noop(self) -> None: ...
    def fail(self, message: str, error_type: str = "ValueError") -> int: ...
    def log_and_add(self, a: int, b: int) -> int: ...
    def stream_events(self, tag: str) -> list[str]: ...
    def countdown(self, n: int, tag: str = "") -> Stream[Countdown]: ...
    def scale(self, factor: float, tag: str = "") -> Stream[Scaler]: ...
    def fail_init(self, message: str, error_type: str = "ValueError") -> Stream[Countdown]: ...
    def fail_produce(
        self, n: int, message: str, error_type: str = "RuntimeError"
    ) -> Stream[FailingProducer]: ...
    def fail_process(self, message: str, error_type: str = "ValueError") -> Stream[FailingExchange]: ...


@dataclass(frozen=True)
class Banner(ArrowSerializableDataclass):
    title: str
    total: int


class Headed(Protocol):
    def titled(self, n: int) -> Stream[Countdown, Banner]: ...  # type: ignore[type-arg]


class TypesService(Protocol):
    protocol_name: ClassVar[str] = "vgi.test.Types"

    def echo_opt_int(self, value: int | None) -> int | None: ...
    def echo_list_int(self, value: list[int]) -> list[int]: ...
    def echo_dict_str_int(self, value: dict[str, int]) -> dict[str, int]: ...
    def echo_color(self, value: Color) -> Color: ...
    def echo_point(self, value: Point) -> Point: ...
    def echo_bytes(self, value: bytes) -> bytes: ...


def x_batch(*xs: float) -> AnnotatedBatch:
    return AnnotatedBatch(batch=pa.RecordBatch.from_pydict({"x": pa.array(list(xs), type=pa.float64())}))


def expect_error(fn: Callable[[], Any], error_type: str, message: str) -> None:
    try:
        fn()
    except RpcError as exc:
        assert exc.error_type == error_type, (exc.error_type, error_type)
        assert message in exc.error_message, (exc.error_message, message)
        assert not exc.remote_traceback, "server traceback leaked to the client"
        return
    raise AssertionError(f"expected RpcError {error_type}")


def main(argv: list[str]) -> int:
    calc_url, types_url, headed_url = argv[0], argv[1], argv[2]
    compression: int | None = None if "--no-compression" in argv else 1
    logs: list[Any] = []
    failures: list[str] = []

    def check(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            print(f"ok   {name}")
        except Exception:
            failures.append(name)
            print(f"FAIL {name}\n{traceback.format_exc()}")

    with http_connect(Calculator, calc_url, on_log=logs.append, compression_level=compression) as c:  # type: ignore[type-abstract]
        check("unary add", lambda: _eq(c.add(a=40, b=2), 42))
        check("unary float", lambda: _eq(c.divide(a=1.0, b=4.0), 0.25))
        check("defaults", lambda: _eq(c.greet(name="Ada"), "Hello, Ada!"))
        check("long result (compressed response)", lambda: _eq(len(c.greet(name="x" * 20000)), 20008))
        check("void", lambda: _eq(c.noop(), None))
        check("error", lambda: expect_error(lambda: c.fail(message="kaboom"), "ValueError", "kaboom"))
        check(
            "error type",
            lambda: expect_error(
                lambda: c.fail(message="nope", error_type="PermissionError"), "PermissionError", "nope"
            ),
        )

        def logged() -> None:
            logs.clear()
            _eq(c.log_and_add(a=1, b=2), 3)
            _eq(
                [(str(m.level.value if hasattr(m.level, "value") else m.level), m.message) for m in logs][:2],
                [("INFO", "adding 1 and 2"), ("WARN", "numbers are small")],
            )

        check("logs", logged)

        def producer() -> None:
            got = [ab.batch.column("i").to_pylist() for ab in c.countdown(n=3)]
            _eq(got, [[2], [1], [0]])
            _eq(list(c.countdown(n=0)), [])

        check("producer", producer)

        def exchange() -> None:
            tag = f"peer-exchange-{uuid.uuid4().hex}"
            with c.scale(factor=2.0, tag=tag) as s:
                _eq(s.exchange(x_batch(1.0, 2.0)).batch.column("y").to_pylist(), [2.0, 4.0])
                out = s.exchange(
                    AnnotatedBatch(
                        batch=pa.RecordBatch.from_pydict({"x": pa.array([3], type=pa.int32())}),
                        custom_metadata=pa.KeyValueMetadata({b"k": b"v"}),
                    )
                )
                _eq(out.batch.column("y").to_pylist(), [6.0])
                md = out.custom_metadata
                _eq(md is not None and md.get(b"k") == b"v", True)
                s.cancel()
            _eq(c.stream_events(tag=tag), ["process", "process", "cancel"])

        check("exchange + cancel", exchange)
        check(
            "init error",
            lambda: expect_error(lambda: c.fail_init(message="no init"), "ValueError", "no init"),
        )

        def mid_stream() -> None:
            seen: list[Any] = []
            try:
                for ab in c.fail_produce(n=2, message="mid-stream boom"):
                    seen.append(ab.batch.column("i").to_pylist())
            except RpcError as exc:
                _eq(exc.error_type, "RuntimeError")
                _eq(seen, [[1], [2]])
                return
            raise AssertionError("expected RpcError")

        check("producer error mid-stream", mid_stream)

        def exchange_error_then_continue() -> None:
            with c.fail_process(message="negative input") as s:
                expect_error(lambda: s.exchange(x_batch(-1.0)), "ValueError", "negative input")
                _eq(s.exchange(x_batch(5.0)).batch.column("y").to_pylist(), [5.0])

        check("exchange error, then continue", exchange_error_then_continue)

    with http_connect(TypesService, types_url, compression_level=compression) as t:  # type: ignore[type-abstract]
        check("optional", lambda: (_eq(t.echo_opt_int(value=None), None), _eq(t.echo_opt_int(value=7), 7)))
        check("list", lambda: _eq(t.echo_list_int(value=[1, 2, 3]), [1, 2, 3]))
        check("dict", lambda: _eq(t.echo_dict_str_int(value={"a": 1}), {"a": 1}))
        check("enum", lambda: _eq(t.echo_color(value=Color.BLUE), Color.BLUE))
        check("dataclass", lambda: _eq(t.echo_point(value=Point(x=1.5, y=-2.0)), Point(x=1.5, y=-2.0)))
        check("4 MiB bytes", lambda: _eq(t.echo_bytes(value=b"\xa5" * (4 << 20)), b"\xa5" * (4 << 20)))

    with http_connect(Headed, headed_url, compression_level=compression) as h:  # type: ignore[type-abstract]

        def headed() -> None:
            session = h.titled(n=3)
            _eq(session.header, Banner(title="3 rows", total=3))
            _eq([ab.batch.column("i").to_pylist() for ab in session], [[2], [1], [0]])

        check("stream header", headed)

    if failures:
        print(f"FAILED: {', '.join(failures)}")
        return 1
    print("ALL OK")
    return 0


def _eq(got: Any, want: Any) -> None:
    assert got == want, f"got {got!r}, want {want!r}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
