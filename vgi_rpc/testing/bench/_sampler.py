"""The interleaved same-run ratio sampler and the :class:`Ratio` record.

Why interleave: on a small, shared machine the speed of the CPU changes from
second to second (other processes, frequency scaling, a GC pause).  Timing all
baseline rounds and then all subject rounds turns that drift into a fake
difference.  :class:`Interleaved` instead runs *one round of every variant* back
to back (rotating which goes first, so neither always pays for the other's
garbage), and a ratio is computed **per round**; the reported value is the
median of those per-round ratios and the spread is their interquartile range.

A "variant" is a callable ``run(n)`` that performs ``n`` operations; the loop
lives inside it so the sampler adds one timer read per ``n`` operations.  A
variant that measures itself (e.g. a subprocess reporting ``-X importtime``)
returns the total nanoseconds for its ``n`` operations instead of ``None``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Variant = Callable[[int], object]
"""``run(n)``: perform *n* operations (optionally return the nanoseconds they took)."""

__all__ = ["Interleaved", "Ratio", "Variant", "one_cpu", "quartiles"]


@contextlib.contextmanager
def one_cpu() -> Iterator[int | None]:
    """Run the calling thread -- and every thread it starts meanwhile -- on one CPU.

    A ``serve_pipe`` round trip is two threads in lockstep.  Left to the
    scheduler, they sometimes share a CPU and sometimes wake each other across
    CPUs, which on the project's VM roughly doubles a round trip (about 170 us
    vs 330 us) and sticks for a while, so two identical servers measured side by
    side differed by 1.6x.  On one CPU the placement lottery is gone (identical
    servers: 1.00x, IQR 0.96-1.06).  Yields the CPU, or ``None`` where affinity
    cannot be set (non-Linux); the thread's previous affinity is restored.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Ratio:
    """One reported ratio: ``subject / baseline`` (or a rate ratio for the peer comparison).

    Attributes:
        key: Stable identifier (the key in a baseline file), e.g. ``checkout.sentry``.
        title: What is compared, for the table.
        baseline: Label of the baseline variant.
        subject: Label of the subject variant.
        median: Median of the per-round ratios.
        q1: First quartile of the per-round ratios.
        q3: Third quartile of the per-round ratios.
        baseline_value: Median of the baseline's per-round values (``unit``).
        subject_value: Median of the subject's per-round values (``unit``).
        unit: ``"ns/op"`` for times, ``"calls/s"`` for rates.
        rounds: Number of paired rounds.
        ops: Operations per variant per round.
        target: A target to show in the table (informational; the gate uses the baseline file).
        better: ``"lower"`` (a time ratio: the target is a maximum) or ``"higher"`` (a rate
            ratio: the target is a minimum).
        note: Free text shown under the table.
        test: The pytest node id that measured it (a gate can re-run it to confirm a failure).
        clock: What was timed: ``"wall"`` (elapsed), ``"thread"`` (CPU time of the measuring
            thread), ``"importtime"`` or ``"client wall"`` (see the benchmark).
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
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"
    note: str = ""
    test: str = ""
    clock: str = "wall"

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median, ``(q3 - q1) / median``."""
        return (self.q3 - self.q1) / self.median if self.median else float("inf")

    @property
    def meets_target(self) -> bool | None:
        """Whether the median meets the target (``None`` when there is no target)."""
        if self.target is None:
            return None
        return self.median <= self.target if self.better == "lower" else self.median >= self.target

    def to_json(self) -> dict[str, Any]:
        """Plain data for the ratios file."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ratio:
        """Inverse of :meth:`to_json` (unknown keys are ignored)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of *values*; a single value is its own spread."""
    if not values:
        raise ValueError("no samples")
    med = statistics.median(values)
    if len(values) < 2:
        return med, med, med
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


@dataclass
class Interleaved:
    """Times several variants round by round, interleaved, and derives ratios.

    Args:
        variants: Label -> ``run(n)``; the first one is the natural baseline.
        ops: Operations per variant per round (each round times ``run(ops)`` once per variant).
        between: Called after each round, untimed (e.g. to clear captured envelopes).
        clock: The primary clock. ``"wall"`` (``perf_counter_ns``: elapsed time, what a
            caller waits); ``"thread"`` (``thread_time_ns``: CPU time of the measuring
            thread, blind to time it spends descheduled -- for single-threaded,
            in-process work); ``"process"`` (``process_time_ns``: CPU time of every
            thread of the process -- for a client and an in-process server thread
            in lockstep, e.g. ``serve_pipe``).  CPU clocks make ratios far steadier
            on a shared machine.  Wall time is always recorded too
            (``ratio(..., clock="wall")``).
    """

    variants: Mapping[str, Variant]
    ops: int
    between: Callable[[], object] | None = None
    clock: Literal["wall", "thread", "process"] = "wall"
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
        k = self._round % len(names)
        self._round += 1
        wall = time.perf_counter_ns
        cpu = {"wall": wall, "thread": time.thread_time_ns, "process": time.process_time_ns}[self.clock]
        ops = self.ops
        for name in names[k:] + names[:k]:
            run = self.variants[name]
            start_cpu = cpu()
            start = wall()
            measured = run(ops)
            elapsed: float = wall() - start
            elapsed_cpu: float = cpu() - start_cpu
            if isinstance(measured, int | float) and not isinstance(measured, bool):
                elapsed = elapsed_cpu = measured
            self.samples[name].append(elapsed_cpu / ops)
            self.wall[name].append(elapsed / ops)
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
        self,
        key: str,
        title: str,
        baseline: str,
        subject: str,
        *,
        target: float | None = None,
        note: str = "",
        clock: str | None = None,
    ) -> Ratio:
        """The ``subject / baseline`` time ratio over the rounds run so far.

        ``clock="wall"`` uses the wall-clock samples; the default is the primary clock.
        """
        use_wall = clock == "wall" and self.clock != "wall"
        samples = self.wall if use_wall else self.samples
        base = samples[baseline]
        subj = samples[subject]
        if not base or len(base) != len(subj):
            raise RuntimeError(f"no paired samples for {subject!r} vs {baseline!r}")
        per_round = [s / b for s, b in zip(subj, base, strict=True)]
        q1, med, q3 = quartiles(per_round)
        return Ratio(
            key=key,
            title=title,
            baseline=baseline,
            subject=subject,
            median=med,
            q1=q1,
            q3=q3,
            baseline_value=statistics.median(base),
            subject_value=statistics.median(subj),
            rounds=len(per_round),
            ops=self.ops,
            target=target,
            note=note,
            clock="wall" if use_wall else self.clock,
        )
