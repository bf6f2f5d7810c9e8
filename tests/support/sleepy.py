"""The Sleepy service: calls that take as long as asked (the pipe timeout tests and their worker)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from vgi_rpc import CallContext, OutputCollector, ProducerState, Stream

COUNT = pa.schema([pa.field("i", pa.int64(), False)])


@dataclass
class SlowCount(ProducerState):
    """``0 .. n-1``; the turn that would emit ``nap_at`` sleeps ``seconds`` first."""

    n: int
    nap_at: int
    seconds: float
    i: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        """One row per turn."""
        if self.i >= self.n:
            out.finish()
            return
        if self.i == self.nap_at:
            time.sleep(self.seconds)
        out.emit_pydict({"i": [self.i]})
        self.i += 1


class Sleepy(Protocol):
    """Calls that take their time."""

    def nap(self, seconds: float) -> float:
        """Sleep, then return *seconds*."""
        ...

    def size(self, data: bytes) -> int:
        """``len(data)``."""
        ...

    def slow_count(self, n: int, nap_at: int, seconds: float) -> Stream[SlowCount]:
        """Producer of ``0 .. n-1`` with one slow turn."""
        ...


class SleepyImpl:
    """The implementation."""

    def nap(self, seconds: float) -> float:
        """Sleep."""
        time.sleep(seconds)
        return seconds

    def size(self, data: bytes) -> int:
        """Measure."""
        return len(data)

    def slow_count(self, n: int, nap_at: int, seconds: float) -> Stream[SlowCount]:
        """Open the producer."""
        return Stream(output_schema=COUNT, state=SlowCount(n=n, nap_at=nap_at, seconds=seconds))
