"""The interleaved sampler and the :class:`Ratio` it reports."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Clock = Literal["both", "wall", "process", "thread"]
"""CPU time (``"process"``, ``"thread"``) sees work; ``"wall"`` waiting and locks too; ``"both"``: the higher."""


@contextlib.contextmanager
def one_cpu() -> Iterator[int | None]:
    """Pin this thread and those it starts meanwhile to one CPU (steadier round trips); yield it or ``None``."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(before)})
    try:
        yield max(before)
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Ratio:
    """``subject / baseline``: the median, q1, q3 of the per-round ratios; each side's median value in ``unit``.

    ``better="higher"`` is a rate ratio; ``test`` is the node id that measured it (the gate re-runs it).
    """

    key: str
    title: str
    baseline: str
    subject: str
    median: float
    q1: float
    q3: float
    baseline_value: float
    subject_value: float
    unit: str = "ns/op"
    rounds: int = 0
    ops: int = 0
    better: Literal["lower", "higher"] = "lower"
    note: str = ""
    test: str = ""
    clock: str = "wall"


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of *values*; a single value is its own spread."""
    if len(values) < 2:
        med = statistics.median(values)
        return med, med, med
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


@dataclass
class Interleaved:
    """Times *variants* (label -> ``run(n)``: *n* operations, or returns their nanoseconds) in interleaved rounds.

    Each round runs every variant once (*ops* operations), rotating which goes first, then *between*
    untimed; a ratio is the median of the per-round ratios, so what slows a round slows both sides.
    """

    variants: Mapping[str, Callable[[int], object]]
    ops: int
    between: Callable[[], object] | None = None
    clock: Clock = "wall"
    samples: dict[str, list[float]] = field(default_factory=dict)
    wall: dict[str, list[float]] = field(default_factory=dict)
    _round: int = 0

    def __post_init__(self) -> None:
        if len(self.variants) < 2:
            raise ValueError("need a baseline and at least one subject")
        self.reset()

    def reset(self) -> None:
        """Forget all samples (e.g. after warm-up)."""
        self.samples = {name: [] for name in self.variants}
        self.wall = {name: [] for name in self.variants}

    def round(self) -> None:
        """Run one round: every variant once, starting with a different one each round."""
        names = list(self.variants)
        k, self._round = self._round % len(names), self._round + 1
        wall = time.perf_counter_ns
        cpu = {"wall": wall, "thread": time.thread_time_ns}.get(self.clock, time.process_time_ns)
        for name in names[k:] + names[:k]:
            start_cpu, start = cpu(), wall()
            measured = self.variants[name](self.ops)
            elapsed, elapsed_cpu = wall() - start, cpu() - start_cpu
            if isinstance(measured, int | float) and not isinstance(measured, bool):
                elapsed = elapsed_cpu = int(measured)
            self.samples[name].append(elapsed_cpu / self.ops)
            self.wall[name].append(elapsed / self.ops)
        if self.between is not None:
            self.between()

    def run(self, rounds: int, *, warmup: int = 0) -> None:
        """Warm up (samples discarded), then run *rounds* rounds."""
        for _ in range(warmup):
            self.round()
        self.reset()
        for _ in range(rounds):
            self.round()

    def ratio(
        self, key: str, title: str, baseline: str, subject: str, *, note: str = "", clock: str = ""
    ) -> Ratio:
        """The ``subject / baseline`` ratio so far, on the primary clock, or on the wall clock with ``clock="wall"``."""
        kinds = ["wall"] if clock == "wall" else ["process", "wall"] if self.clock == "both" else [self.clock]
        out = []
        for kind in kinds:
            samples = self.wall if kind == "wall" else self.samples
            base, subj = samples[baseline], samples[subject]
            if not base or len(base) != len(subj):
                raise RuntimeError(f"no paired samples for {subject!r} vs {baseline!r}")
            q1, med, q3 = quartiles([s / b for s, b in zip(subj, base, strict=True)])
            values = statistics.median(base), statistics.median(subj)
            out.append(
                Ratio(key, title, baseline, subject, med, q1, q3, *values, rounds=len(base), ops=self.ops)
            )
            out[-1].note, out[-1].clock = note, f"both:{kind}" if len(kinds) == 2 else kind
        return max(out, key=lambda r: r.median)
