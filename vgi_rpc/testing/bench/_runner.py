""":class:`RatioBenchmark`, what the ``ratio_benchmark`` fixture gives a test."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from vgi_rpc.testing.bench._overhead import Instrument, ServerSource, overhead_pair
from vgi_rpc.testing.bench._report import run_with_benchmark
from vgi_rpc.testing.bench._sampler import Interleaved, Ratio

__all__ = ["RatioBenchmark"]

Clock = Literal["wall", "thread", "process"]


def _repeat(call: Callable[[], object]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            call()

    return run


class RatioBenchmark:
    """Measures ``subject / baseline`` in interleaved rounds under pytest-benchmark and records the ratio.

    Every recorded :class:`~vgi_rpc.testing.bench.Ratio` goes to the run's
    ratio table, to ``--ratios-json`` and to the ``--ratio-baseline`` gate, and
    into the benchmark's pytest-benchmark JSON (``extra_info["ratios"]``).
    pytest-benchmark drives the rounds (``benchmark.pedantic``: one interleaved
    round per benchmark round), so its own statistics describe one round of
    every variant; ``--benchmark-disable`` runs a single round,
    ``--benchmark-skip`` skips the test.  One measurement per test (as with
    pytest-benchmark's ``benchmark``); several ratios of one measurement are fine.
    """

    def __init__(self, benchmark: Any, nodeid: str, sink: Callable[[Ratio], None]) -> None:
        """Bind to the test's pytest-benchmark fixture; the ``ratio_benchmark`` fixture does this."""
        self.benchmark = benchmark
        self.nodeid = nodeid
        self._sink = sink
        self.ratios: list[Ratio] = []
        self._measured = False

    def __call__(
        self,
        key: str,
        *,
        baseline: Callable[[], object],
        subject: Callable[[], object],
        ops: int = 20,
        rounds: int = 30,
        warmup: int = 3,
        clock: Clock = "process",
        title: str = "",
        labels: tuple[str, str] = ("baseline", "subject"),
        between: Callable[[], object] | None = None,
    ) -> Ratio:
        """Time *baseline* and *subject* (one operation each) interleaved; record and return the ratio.

        Args:
            key: The ratio's name in the table and the baseline file.
            baseline: Performs one baseline operation.
            subject: Performs one subject operation.
            ops: Operations per variant per round (more: steadier, slower).
            rounds: Interleaved rounds after *warmup* discarded ones.
            clock: ``"process"`` (CPU time of the whole process: in-process
                servers included, blind to other processes -- the default),
                ``"thread"`` (this thread's CPU time) or ``"wall"``.
            title: What is compared, for the table.
            labels: Names of the two variants in the table.
            between: Called after each round, untimed (e.g. to clear captured data).

        For work of a few hundred nanoseconds the per-operation call of the
        loop matters: build :class:`~vgi_rpc.testing.bench.Interleaved` with
        ``run(n)`` variants yourself and use :meth:`run` and :meth:`record`.
        """
        sampler = Interleaved(
            {labels[0]: _repeat(baseline), labels[1]: _repeat(subject)},
            ops=ops,
            between=between,
            clock=clock,
        )
        self.run(sampler, rounds=rounds, warmup=warmup)
        return self.record(sampler.ratio(key, title or f"{labels[1]} / {labels[0]}", labels[0], labels[1]))

    def run(self, sampler: Interleaved, *, rounds: int, warmup: int = 0) -> None:
        """Run *sampler* under pytest-benchmark: *warmup* discarded rounds, then *rounds* timed ones.

        Raises:
            RuntimeError: a second measurement in the same test (pytest-benchmark
                times one thing per test: give each its own test, or put every
                variant in one :class:`~vgi_rpc.testing.bench.Interleaved` and
                :meth:`record` several of its ratios).
        """
        if self._measured:
            raise RuntimeError(
                "ratio_benchmark measures once per test (pytest-benchmark times one thing per test): "
                "split the measurements into separate tests, or run one Interleaved with every variant "
                "and record several of its ratios"
            )
        self._measured = True
        run_with_benchmark(self.benchmark, sampler, rounds=rounds, warmup=warmup)

    def record(self, ratio: Ratio) -> Ratio:
        """Register *ratio* for the table, ``--ratios-json`` and the gate (its ``test`` is set to this test)."""
        ratio.test = self.nodeid
        self.ratios.append(ratio)
        self._sink(ratio)
        extra = getattr(self.benchmark, "extra_info", None)
        if isinstance(extra, dict):
            extra.setdefault("ratios", {})[ratio.key] = ratio.to_json()
        return ratio

    def overhead(
        self,
        key: str,
        server: ServerSource,
        call: Callable[[Any], object],
        *,
        instrument: Instrument = "sentry",
        config: Any = None,
        transport: Literal["pipe", "http"] = "pipe",
        sentry_options: Mapping[str, Any] | None = None,
        http_options: Mapping[str, Any] | None = None,
        ops: int = 20,
        rounds: int = 30,
        warmup: int = 3,
    ) -> Ratio:
        """What an instrumentation hook costs *your* calls: ``call(proxy)`` with the hook / without it.

        Builds both servers from *server* (see
        :func:`~vgi_rpc.testing.bench.overhead_pair` for every option and its
        caveats), makes the call once on each (so a failing call fails here,
        not in the middle of the timing), then times them interleaved on the
        process CPU clock with the calling thread and both servers on one CPU.
        """
        with overhead_pair(
            server,
            instrument=instrument,
            config=config,
            transport=transport,
            sentry_options=sentry_options,
            http_options=http_options,
        ) as pair:
            for proxy, which in ((pair.baseline, "baseline"), (pair.subject, "instrumented")):
                try:
                    call(proxy)
                except Exception as exc:
                    raise AssertionError(f"the call failed on the {which} server: {exc!r}") from exc
            pair.between()
            sampler = Interleaved(
                {
                    pair.baseline_label: _repeat(lambda: call(pair.baseline)),
                    pair.subject_label: _repeat(lambda: call(pair.subject)),
                },
                ops=ops,
                between=pair.between,
                clock="process",
            )
            self.run(sampler, rounds=rounds, warmup=warmup)
        return self.record(
            sampler.ratio(
                key,
                f"{transport} call {pair.subject_label} / {pair.baseline_label}",
                pair.baseline_label,
                pair.subject_label,
            )
        )
