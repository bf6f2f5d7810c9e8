"""Example Protocols and implementations shared by the core test suites.

Other suites may import these; keep names and behaviour stable (add, don't change).
Under pytest, ``tests/`` is on ``sys.path`` (rootdir-relative "prepend" import
mode, no ``tests/__init__.py``), so import it as ``from support.services import ...``;
scripts in ``tests/workers/`` put ``tests/`` on ``sys.path`` themselves.

* :class:`Calculator`: unary calls (defaults, ``ctx``, client logs, errors, a
  method that prints to stdout), a producer (``countdown``), an exchange
  (``scale``) and streams that fail at init, in ``produce`` or in ``process``.
* :class:`TypesService`: one echo method per supported annotation (with
  ``protocol_name`` set, so the wire name differs from the class name).

The stream states live in ``support.streams`` (re-exported here). Cancellation
and processing are recorded there in module-level registries keyed by a
caller-chosen ``tag``, readable remotely through ``Calculator.stream_events``,
so subprocess tests can observe them too.
"""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass
from typing import Annotated, ClassVar, Optional, Protocol

import pyarrow as pa

from support.streams import (  # re-exported: suites import them from here too
    COUNT_SCHEMA,
    ERROR_TYPES,
    X_SCHEMA,
    Y_SCHEMA,
    Countdown,
    FailingExchange,
    FailingProducer,
    Scaler,
    raise_named,
    record,
    stream_events,
    xs,
)
from vgi_rpc import (
    ArrowType,
    CallContext,
    Stream,
)

__all__ = [
    "COUNT_SCHEMA",
    "ERROR_TYPES",
    "F32",
    "I32",
    "LARGE_STR",
    "X_SCHEMA",
    "Y_SCHEMA",
    "Calculator",
    "CalculatorImpl",
    "Color",
    "Countdown",
    "FailingExchange",
    "FailingProducer",
    "Point",
    "Scaler",
    "Shape",
    "TypesService",
    "TypesServiceImpl",
    "record",
    "stream_events",
    "xs",
]


# --------------------------------------------------------------------------- value types


class Color(enum.Enum):
    """An enum: travels as its member *name* (dictionary<int16, utf8>)."""

    RED = 1
    GREEN = 2
    BLUE = 3


@dataclass(frozen=True)
class Point:
    """A flat dataclass."""

    x: float
    y: float


@dataclass(frozen=True)
class Shape:
    """A dataclass nesting a dataclass list, an enum, an Optional and a map."""

    name: str
    color: Color
    corners: list[Point]
    origin: Point
    label: str | None = None
    weights: dict[str, int] | None = None


# --------------------------------------------------------------------------- Calculator


class Calculator(Protocol):
    """Unary calls, a producer, an exchange, and failures of every kind."""

    def add(self, a: int, b: int) -> int:
        """``a + b``."""
        ...

    def divide(self, a: float, b: float) -> float:
        """``a / b`` (``ZeroDivisionError`` for ``b == 0``)."""
        ...

    def greet(self, name: str, greeting: str = "Hello", punctuation: str = "!") -> str:
        """``"{greeting}, {name}{punctuation}"`` (defaults on two parameters)."""
        ...

    def noop(self) -> None:
        """Parameterless and void."""
        ...

    def fail(self, message: str, error_type: str = "ValueError") -> int:
        """Raise ``ERROR_TYPES[error_type](message)``."""
        ...

    def whoami(self) -> dict[str, str]:
        """What the injected ``CallContext`` says (method, protocol, ids, auth)."""
        ...

    def log_and_add(self, a: int, b: int) -> int:
        """``a + b``, sending an INFO and a WARN log message to the client first."""
        ...

    def shout(self, text: str) -> str:
        """Upper-cases *text*; also prints to stdout (stdout purity on the pipe)."""
        ...

    def log_then_fail(self, message: str) -> int:
        """Sends an INFO log message, then raises ``ValueError(message)``."""
        ...

    def stream_events(self, tag: str) -> list[str]:
        """Events recorded by stream states for *tag* (process/produce/cancel)."""
        ...

    def countdown(self, n: int, tag: str = "") -> Stream[Countdown]:
        """Producer: ``n-1 .. 0``, one row per batch."""
        ...

    def scale(self, factor: float, tag: str = "") -> Stream[Scaler]:
        """Exchange: ``y = x * factor``."""
        ...

    def fail_init(self, message: str, error_type: str = "ValueError") -> Stream[Countdown]:
        """Stream that raises before returning its ``Stream``."""
        ...

    def fail_produce(self, n: int, message: str, error_type: str = "RuntimeError") -> Stream[FailingProducer]:
        """Producer that emits *n* rows and then raises."""
        ...

    def fail_process(self, message: str, error_type: str = "ValueError") -> Stream[FailingExchange]:
        """Exchange that raises on negative input."""
        ...


class CalculatorImpl:
    """Implementation of :class:`Calculator`; remembers the last ``CallContext`` it saw."""

    def __init__(self) -> None:
        self.last_ctx: CallContext | None = None

    def add(self, a: int, b: int) -> int:
        return a + b

    def divide(self, a: float, b: float) -> float:
        return a / b

    def greet(self, name: str, greeting: str = "Hello", punctuation: str = "!") -> str:
        return f"{greeting}, {name}{punctuation}"

    def noop(self) -> None:
        return None

    def fail(self, message: str, error_type: str = "ValueError") -> int:
        raise_named(error_type, message)
        raise AssertionError("unreachable")

    def whoami(self, ctx: CallContext) -> dict[str, str]:
        self.last_ctx = ctx
        return {
            "method": ctx.method,
            "protocol_name": ctx.protocol_name,
            "server_id": ctx.server_id,
            "request_id": ctx.request_id,
            "stream_id": str(ctx.stream_id),
            "auth_domain": str(ctx.auth.domain),
            "authenticated": str(ctx.auth.authenticated),
            "metadata_method": ctx.transport_metadata.get("vgi_rpc.method", ""),
        }

    def log_and_add(self, a: int, b: int, ctx: CallContext) -> int:
        self.last_ctx = ctx
        ctx.log("INFO", f"adding {a} and {b}", a=a, b=b)
        ctx.log("warning", "numbers are small")
        return a + b

    def shout(self, text: str) -> str:
        print(f"shout printed {text}")  # must never reach the protocol stream
        sys.stdout.flush()
        os.write(1, f"shout wrote fd1 {text}\n".encode())
        return text.upper()

    def log_then_fail(self, message: str, ctx: CallContext) -> int:
        ctx.log("INFO", "about to fail", reason=message)
        raise ValueError(message)

    def stream_events(self, tag: str) -> list[str]:
        return stream_events(tag)

    def countdown(self, n: int, tag: str = "") -> Stream[Countdown]:
        return Stream(output_schema=COUNT_SCHEMA, state=Countdown(n=n, tag=tag))

    def scale(self, factor: float, tag: str = "", ctx: CallContext | None = None) -> Stream[Scaler]:
        if ctx is not None:
            self.last_ctx = ctx
            ctx.log("INFO", "scale opened", factor=factor)
        return Stream(output_schema=Y_SCHEMA, state=Scaler(factor=factor, tag=tag), input_schema=X_SCHEMA)

    def fail_init(self, message: str, error_type: str = "ValueError") -> Stream[Countdown]:
        raise_named(error_type, message)
        raise AssertionError("unreachable")

    def fail_produce(self, n: int, message: str, error_type: str = "RuntimeError") -> Stream[FailingProducer]:
        state = FailingProducer(n=n, message=message, error_type=error_type)
        return Stream(output_schema=COUNT_SCHEMA, state=state)

    def fail_process(self, message: str, error_type: str = "ValueError") -> Stream[FailingExchange]:
        state = FailingExchange(message=message, error_type=error_type)
        return Stream(output_schema=Y_SCHEMA, state=state, input_schema=X_SCHEMA)


# --------------------------------------------------------------------------- TypesService

I32 = Annotated[int, ArrowType(pa.int32())]
F32 = Annotated[float, ArrowType(pa.float32())]
LARGE_STR = Annotated[str, ArrowType(pa.large_string())]


class TypesService(Protocol):
    """One echo method per supported annotation; the wire name is ``vgi.test.Types``."""

    protocol_name: ClassVar[str] = "vgi.test.Types"

    def echo_int(self, value: int) -> int: ...
    def echo_float(self, value: float) -> float: ...
    def echo_str(self, value: str) -> str: ...
    def echo_bool(self, value: bool) -> bool: ...
    def echo_bytes(self, value: bytes) -> bytes: ...
    def echo_opt_int(self, value: int | None) -> int | None: ...
    def echo_opt_str(self, value: Optional[str]) -> Optional[str]: ...  # noqa: UP045 (the typing spelling is supported too)
    def echo_list_int(self, value: list[int]) -> list[int]: ...
    def echo_list_opt_str(self, value: list[str | None]) -> list[str | None]: ...
    def echo_list_list_float(self, value: list[list[float]]) -> list[list[float]]: ...
    def echo_frozenset_int(self, value: frozenset[int]) -> frozenset[int]: ...
    def echo_dict_str_int(self, value: dict[str, int]) -> dict[str, int]: ...
    def echo_dict_int_list_str(self, value: dict[int, list[str]]) -> dict[int, list[str]]: ...
    def echo_color(self, value: Color) -> Color: ...
    def echo_opt_color(self, value: Color | None) -> Color | None: ...
    def echo_list_color(self, value: list[Color]) -> list[Color]: ...
    def echo_point(self, value: Point) -> Point: ...
    def echo_opt_point(self, value: Point | None) -> Point | None: ...
    def echo_shape(self, value: Shape) -> Shape: ...
    def echo_i32(self, value: I32) -> I32: ...
    def echo_f32(self, value: F32) -> F32: ...
    def echo_large_str(self, value: LARGE_STR) -> LARGE_STR: ...

    def defaults(
        self,
        a: int = 1,
        s: str = "x",
        xs: list[int] | None = None,
        c: Color = Color.GREEN,
        f: float = 0.5,
    ) -> str:
        """``repr`` of what arrived, to check defaults are applied."""
        ...


def _echo(value: object) -> object:
    return value


class TypesServiceImpl:
    """Echoes everything back."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("echo_"):
            return _echo
        raise AttributeError(name)

    def defaults(
        self,
        a: int = 1,
        s: str = "x",
        xs: list[int] | None = None,
        c: Color = Color.GREEN,
        f: float = 0.5,
    ) -> str:
        return repr((a, s, xs, c, f))


# -- a protocol with a version (the admission's version rule) -------------------------------------


class Versioned(Protocol):
    """A one-method protocol that declares ``protocol_version`` 2.1.0."""

    protocol_version: ClassVar[str] = "2.1.0"

    def ping(self) -> str: ...


class VersionedImpl:
    def ping(self) -> str:
        return "pong"
