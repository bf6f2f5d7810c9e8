"""The ratio gate's pytest plugin (entry point ``vgi_rpc_bench``): ``ratio_benchmark`` and the gate item.

``--ratio-baseline FILE`` adds a test item, ``ratio-gate``, run last: it compares the measured ratios
with *FILE*, re-runs the test of a failing ratio once to confirm it, and passes or fails like a test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vgi_rpc.testing.bench import _gate as gate
from vgi_rpc.testing.bench._overhead import ServerSource, overhead_pair
from vgi_rpc.testing.bench._sampler import Clock, Interleaved, Ratio

_RATIOS = pytest.StashKey[list[tuple[Ratio, dict[str, Any]]]]()
_REPORT = pytest.StashKey[str]()


def _repeat(call: Callable[[], object]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            call()

    return run


class RatioBenchmark:
    """Interleaved ratios timed by pytest-benchmark (one round per benchmark round), one measurement per test.

    Ratios go to ``benchmark.extra_info["ratios"]`` (``--benchmark-json``), the table and the gate.
    """

    def __init__(self, benchmark: Any, nodeid: str, sink: Callable[[Ratio, dict[str, Any]], object]) -> None:
        """Bind to the test's pytest-benchmark fixture (the ``ratio_benchmark`` fixture does this)."""
        self.benchmark, self.nodeid, self._sink = benchmark, nodeid, sink
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
        clock: Clock = "both",
        labels: tuple[str, str] = ("baseline", "subject"),
        between: Callable[[], object] | None = None,
    ) -> Ratio:
        """Time *baseline* and *subject* (one operation each, *ops* per round); record the ratio.

        *clock*: :data:`~vgi_rpc.testing.bench.Clock` (``"both"`` sees work and waiting).
        """
        variants = {labels[0]: _repeat(baseline), labels[1]: _repeat(subject)}
        sampler = Interleaved(variants, ops=ops, between=between, clock=clock)
        self.run(sampler, rounds=rounds, warmup=warmup)
        return self.record(sampler.ratio(key, f"{labels[1]} / {labels[0]}", labels[0], labels[1]))

    def run(self, sampler: Interleaved, *, rounds: int, warmup: int = 0) -> None:
        """Run *sampler*: *warmup* discarded rounds, then *rounds* timed ones; ``RuntimeError`` the second time."""
        if self._measured:
            raise RuntimeError(
                "ratio_benchmark measures once per test: record several ratios of one Interleaved"
            )
        self._measured = True
        sampler.run(0, warmup=warmup)
        self.benchmark.pedantic(sampler.round, rounds=rounds, iterations=1, warmup_rounds=0)

    def record(self, ratio: Ratio) -> Ratio:
        """Register *ratio* (its ``test`` becomes this test) for the JSON, the table and the gate."""
        ratio.test = self.nodeid
        extra: dict[str, Any] = self.benchmark.extra_info.setdefault("ratios", {})
        extra[ratio.key] = dataclasses.asdict(ratio)
        self._sink(ratio, extra)
        return ratio

    def overhead(
        self, key: str, server: ServerSource, call: Callable[[Any], object], **options: Any
    ) -> Ratio:
        """What a hook costs *your* call: ``call(proxy)`` with the hook / without it, made once on each first.

        ``clock``, ``ops``, ``rounds``, ``warmup`` as for ``__call__``; ``instrument``, ``config``, ``transport``,
        ``sentry_options``, ``http_options`` go to :func:`~vgi_rpc.testing.bench.overhead_pair`.
        """
        timing = {k: options.pop(k) for k in ("clock", "ops", "rounds", "warmup") if k in options}
        with overhead_pair(server, **options) as pair:
            for proxy, which in ((pair.baseline, "baseline"), (pair.subject, "instrumented")):
                try:
                    call(proxy)
                except Exception as exc:
                    raise AssertionError(f"the call failed on the {which} server: {exc!r}") from exc
            pair.between()
            sides: dict[str, Any] = {
                "baseline": lambda: call(pair.baseline),
                "subject": lambda: call(pair.subject),
            }
            labels = (pair.baseline_label, pair.subject_label)
            return self(key, **sides, **timing, labels=labels, between=pair.between)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The gate's options."""
    group = parser.getgroup("vgi_rpc ratio gate")
    group.addoption("--ratio-baseline", type=Path, help="gate the measured ratios on this baseline file")
    group.addoption("--ratio-update", action="store_true", help="write the medians into --ratio-baseline")
    group.addoption("--ratio-tolerance", type=float, default=gate.DEFAULT_TOLERANCE, help="default 0.2")
    group.addoption("--ratio-no-retry", action="store_true", help="do not re-measure a failing ratio")
    group.addoption("--ratios-json", type=Path, help="deprecated alias of --benchmark-json")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Start the ratio registry; ``--ratios-json`` becomes ``--benchmark-json`` (deprecated)."""
    config.stash[_RATIOS] = []
    if config.getoption("--ratio-update") and config.getoption("--ratio-baseline") is None:
        raise pytest.UsageError("--ratio-update needs --ratio-baseline FILE (the file to write)")
    if (old := config.getoption("--ratios-json")) is not None:
        config.issue_config_time_warning(pytest.PytestDeprecationWarning("use --benchmark-json"), 2)
        config.option.benchmark_json = getattr(config.option, "benchmark_json", None) or old


@pytest.fixture
def ratio_benchmark(request: pytest.FixtureRequest) -> RatioBenchmark:
    """Interleaved ratio benchmarks under pytest-benchmark (see ``vgi_rpc.testing.bench``)."""
    from vgi_rpc._extras import require

    require("the ratio_benchmark fixture", "testing", only=("pytest_benchmark",))
    benchmark = request.getfixturevalue("benchmark")  # pytest-benchmark's plugin
    sink = request.config.stash[_RATIOS].append
    return RatioBenchmark(benchmark, request.node.nodeid, lambda r, extra: sink((r, extra)))


def measured(config: pytest.Config) -> dict[str, Ratio]:
    """The ratios recorded so far in this session, by key (the last measurement wins)."""
    return {r.key: r for r, _ in config.stash.get(_RATIOS, [])}


class RatioGate(pytest.Item):
    """``--ratio-baseline``'s test item: fails, in pytest's own summary, when a gated ratio regressed."""

    outcome = (False, "ratio gate: not run")

    def judge(self) -> None:
        """Compare with (or ``--ratio-update``) the baseline; called before the item's setup, so tests can re-run."""
        opt = self.config.getoption
        path, tolerance = opt("--ratio-baseline"), opt("--ratio-tolerance")
        try:
            if opt("--ratio-update"):
                gate.update_baseline(path, measured(self.config), tolerance)
                self.outcome = (True, f"ratio gate: wrote {len(measured(self.config))} ratio(s) to {path}")
                return
            entries = gate.load_baseline(path, tolerance)[1]
            failed, text = gate.judge(path, entries, measured(self.config))
            if (first := failed) and not opt("--ratio-no-retry"):
                failed, text = gate.judge(path, entries, self._remeasure(first))
                text += f"\n(re-measured to confirm: {', '.join(first)})"
            self.outcome = (not failed, text)
        except gate.BaselineError as exc:
            self.outcome = (False, f"ratio gate: {exc}")

    def runtest(self) -> None:
        """Fail with the gate's report, or keep it for the end of the run."""
        passed, self.config.stash[_REPORT] = self.outcome
        if not passed:
            del self.config.stash[_REPORT]
            pytest.fail(self.outcome[1], pytrace=False)

    def _remeasure(self, keys: list[str]) -> dict[str, Ratio]:
        """Re-run the tests of *keys*; those ratios alone take the new values (in the JSON too)."""
        from _pytest.runner import runtestprotocol

        registry = self.config.stash[_RATIOS]
        tests = {r.test for r, _ in registry if r.key in keys}
        bench = getattr(self.config, "_benchmarksession", None)
        size, stats = len(registry), len(bench.benchmarks) if bench is not None else 0
        for item in [i for i in self.session.items if i.nodeid in tests]:
            getattr(item, "_initrequest", lambda: None)()  # fresh fixtures, as pytest-rerunfailures does
            runtestprotocol(item, nextitem=self, log=False)
        again = [(r, extra) for r, extra in registry[size:] if r.key in keys]
        del registry[size:]
        if bench is not None:
            del bench.benchmarks[stats:]  # the JSON keeps one entry per test, the first, updated below
        for r, _ in again:
            extra = next(extra for old, extra in registry if old.key == r.key)
            extra[r.key] = dataclasses.asdict(r) | {"remeasured": True}
            registry.append((r, extra))
        return measured(self.config)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[Any]) -> None:
    """With ``--ratio-baseline``, the gate item runs last."""
    if config.getoption("--ratio-baseline") is not None:
        item = RatioGate.from_parent(session, name="ratio-gate", nodeid="ratio-gate")
        item.location = ("", None, "ratio-gate")  # how pytest's headers and summary name it
        items.append(item)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Judge before the gate item's setup: re-measuring runs other tests."""
    if isinstance(item, RatioGate):
        item.judge()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The ratio table, then the gate's report if it passed (a failure is in the failures section)."""
    if ratios := measured(config):
        terminalreporter.write_sep("=", "ratios (median of per-round ratios; IQR = their spread)")
        terminalreporter.write_line(gate.render_table(ratios.values()))
    if (text := config.stash.get(_REPORT, None)) is not None:
        terminalreporter.write_line(text)
