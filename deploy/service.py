"""The service ``make deploy-check`` calls (imported by the app and by the check's clients).

Every answer says which worker produced it: unary calls log ``pid=<n>``, stream
batches carry a ``pid`` column.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from vgi_rpc import AnnotatedBatch, CallContext, ExchangeState, OutputCollector, ProducerState, Stream

COUNT_SCHEMA = pa.schema([pa.field("i", pa.int64(), False), pa.field("pid", pa.int64(), False)])
X_SCHEMA = pa.schema([pa.field("x", pa.float64(), False)])
Y_SCHEMA = pa.schema([pa.field("y", pa.float64(), False), pa.field("pid", pa.int64(), False)])


@dataclass
class Counting(ProducerState):
    """Emits ``0 .. n-1``, one row per turn, then finishes."""

    n: int
    next: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        """One row (with this worker's pid) per turn."""
        if self.next >= self.n:
            out.finish()
            return
        out.emit_pydict({"i": [self.next], "pid": [os.getpid()]})
        self.next += 1


@dataclass
class Scaling(ExchangeState):
    """``y = x * factor`` for each input row."""

    factor: float

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        """Scale the batch; stamp it with this worker's pid."""
        xs = input.batch.column("x").to_pylist()
        out.emit_pydict({"y": [x * self.factor for x in xs], "pid": [os.getpid()] * len(xs)})


class Fleet(Protocol):
    """The service the deployment check calls."""

    def add(self, a: int, b: int) -> int:
        """``a + b``; logs ``pid=<worker pid>``."""
        ...

    def slow_add(self, a: int, b: int, seconds: float) -> int:
        """``a + b`` after sleeping *seconds* (a call that is still in flight when a worker dies)."""
        ...

    def count(self, n: int, tag: str) -> Stream[Counting]:
        """Producer of ``0 .. n-1``; *tag* names the stream in Sentry (``rpc.param.tag``)."""
        ...

    def scale(self, factor: float, tag: str) -> Stream[Scaling]:
        """Exchange ``y = x * factor``."""
        ...


class FleetImpl:
    """The implementation."""

    def add(self, a: int, b: int, ctx: CallContext) -> int:
        """Add and say who did."""
        ctx.log("INFO", f"pid={os.getpid()}")
        return a + b

    def slow_add(self, a: int, b: int, seconds: float, ctx: CallContext) -> int:
        """Sleep, then add and say who did.

        While it sleeps, ``$VGI_SENTRY_DIR/inflight-<pid>-<a>`` exists, so the check
        knows which worker holds which call when it kills one.
        """
        marker = out_dir() / f"inflight-{os.getpid()}-{a}"
        marker.touch()
        try:
            time.sleep(min(seconds, 30.0))
        finally:
            marker.unlink(missing_ok=True)
        ctx.log("INFO", f"pid={os.getpid()}")
        return a + b

    def count(self, n: int, tag: str) -> Stream[Counting]:
        """Open the producer."""
        return Stream(output_schema=COUNT_SCHEMA, state=Counting(n=n))

    def scale(self, factor: float, tag: str) -> Stream[Scaling]:
        """Open the exchange."""
        return Stream(output_schema=Y_SCHEMA, state=Scaling(factor=factor), input_schema=X_SCHEMA)


def out_dir() -> Path:
    """Where workers write their Sentry envelopes and in-flight markers (``$VGI_SENTRY_DIR``)."""
    return Path(os.environ.get("VGI_SENTRY_DIR", "."))
