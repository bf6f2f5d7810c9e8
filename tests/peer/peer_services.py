"""Our test services' interfaces, written against the OFFICIAL vgi-rpc 0.52.2 API.

They mirror ``tests/support/services.py`` and ``tests/support/http.py`` (same wire
names, method names and annotations) so that the official client can call our
servers. Imported by the peer venv's pytest only: ``vgi_rpc`` here is the official
package.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Protocol

from vgi_rpc import ArrowSerializableDataclass, ExchangeState, ProducerState, Stream


class Color(enum.Enum):
    """``support.services.Color``."""

    RED = 1
    GREEN = 2
    BLUE = 3


@dataclass(frozen=True)
class Point(ArrowSerializableDataclass):
    """``support.services.Point``."""

    x: float
    y: float


@dataclass
class Countdown(ProducerState):
    """The producer state of ``Calculator.countdown`` (only its schema matters to a client)."""

    n: int
    tag: str = ""


@dataclass
class Scaler(ExchangeState):
    """The exchange state of ``Calculator.scale``."""

    factor: float
    tag: str = ""


@dataclass
class FailingProducer(ProducerState):
    """The producer state of ``Calculator.fail_produce``."""

    n: int
    message: str
    error_type: str = "RuntimeError"
    emitted: int = 0


@dataclass
class FailingExchange(ExchangeState):
    """The exchange state of ``Calculator.fail_process``."""

    message: str
    error_type: str = "ValueError"


class Calculator(Protocol):
    """``support.services.Calculator``."""

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
    """The stream header of ``Headed.titled``."""

    title: str
    total: int


class Headed(Protocol):
    """``support.http.Headed``: a producer with a stream header."""

    def titled(self, n: int) -> Stream[Countdown, Banner]: ...  # type: ignore[type-arg]


class TypesService(Protocol):
    """``support.services.TypesService``."""

    protocol_name: ClassVar[str] = "vgi.test.Types"

    def echo_opt_int(self, value: int | None) -> int | None: ...
    def echo_list_int(self, value: list[int]) -> list[int]: ...
    def echo_dict_str_int(self, value: dict[str, int]) -> dict[str, int]: ...
    def echo_color(self, value: Color) -> Color: ...
    def echo_point(self, value: Point) -> Point: ...
    def echo_bytes(self, value: bytes) -> bytes: ...
