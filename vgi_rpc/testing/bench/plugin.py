"""pytest plugin for the ratio gate (registered through the ``pytest11`` entry point ``vgi_rpc_bench``).

Fixture ``ratio_benchmark`` (a :class:`~vgi_rpc.testing.bench.RatioBenchmark`;
needs pytest-benchmark, the ``testing`` extra).  Options:

``--ratio-baseline FILE``
    After the run, compare every ratio measured with *FILE*: one line per
    ratio; exit status 1 on a regression, 2 when *FILE* is missing,
    unreadable or for other benchmarks (or nothing was measured).
``--ratio-tolerance X``
    Allowed relative regression for entries without ``max_regression`` (0.2).
``--ratio-update``
    Write this run's medians into ``--ratio-baseline`` instead of comparing.
``--ratios-json FILE``
    Write the measured ratios to *FILE* (for ``python -m vgi_rpc.testing.bench``).

Loading the plugin imports neither pytest-benchmark nor any instrumentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vgi_rpc.testing.bench._gate import (
    DEFAULT_TOLERANCE,
    BaselineError,
    compare,
    exit_status,
    load_baseline,
    report,
    update_baseline,
)
from vgi_rpc.testing.bench._report import render_table, save_ratios
from vgi_rpc.testing.bench._runner import RatioBenchmark
from vgi_rpc.testing.bench._sampler import Ratio

_RATIOS = pytest.StashKey[list[Ratio]]()
_GATE = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ratio gate's options."""
    group = parser.getgroup("vgi_rpc ratio gate")
    group.addoption(
        "--ratio-baseline", type=Path, default=None, help="compare measured ratios with this file"
    )
    group.addoption(
        "--ratio-tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="allowed relative regression where a baseline entry has none (default 0.2)",
    )
    group.addoption(
        "--ratio-update", action="store_true", help="write measured medians into --ratio-baseline"
    )
    group.addoption("--ratios-json", type=Path, default=None, help="write the measured ratios to this file")


def pytest_configure(config: pytest.Config) -> None:
    """Start an empty ratio registry; ``--ratio-update`` needs ``--ratio-baseline``."""
    config.stash[_RATIOS] = []
    if config.getoption("--ratio-update") and config.getoption("--ratio-baseline") is None:
        raise pytest.UsageError("--ratio-update needs --ratio-baseline FILE (the file to write)")


def _benchmark_fixture(request: pytest.FixtureRequest) -> Any:
    from vgi_rpc._extras import require

    require("the ratio_benchmark fixture", "testing", only=("pytest_benchmark",))
    try:
        return request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        raise RuntimeError(
            "the ratio_benchmark fixture needs pytest-benchmark's 'benchmark' fixture, "
            "but the plugin is disabled (-p no:benchmark?)"
        ) from None


@pytest.fixture
def ratio_benchmark(request: pytest.FixtureRequest) -> RatioBenchmark:
    """Interleaved ratio benchmarks under pytest-benchmark (see ``vgi_rpc.testing.bench``)."""
    benchmark = _benchmark_fixture(request)
    return RatioBenchmark(benchmark, request.node.nodeid, request.config.stash[_RATIOS].append)


def measured(config: pytest.Config) -> dict[str, Ratio]:
    """The ratios recorded so far in this session, by key (a key recorded twice: the last wins)."""
    return {r.key: r for r in config.stash.get(_RATIOS, [])}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write ``--ratios-json``; run the gate and set the exit status (tests that failed keep theirs)."""
    config = session.config
    ratios = measured(config)
    out = config.getoption("--ratios-json")
    if out is not None and ratios:
        save_ratios(out, ratios.values(), profile="pytest")
    path: Path | None = config.getoption("--ratio-baseline")
    if path is None:
        return
    tolerance: float = config.getoption("--ratio-tolerance")
    status = 0
    try:
        if config.getoption("--ratio-update"):
            update_baseline(path, ratios, tolerance=tolerance)
            text = f"ratio gate: wrote {len(ratios)} ratio(s) to {path}"
        else:
            verdicts = compare(load_baseline(path, tolerance=tolerance), ratios)
            text = report(verdicts, baseline=path)
            status = exit_status(verdicts)
    except BaselineError as exc:
        text, status = f"ratio gate: {exc}", 2
    config.stash[_GATE] = text
    if session.exitstatus == 0:
        session.exitstatus = status


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The ratio table, then the gate's report."""
    ratios = measured(config)
    if ratios:
        terminalreporter.write_sep("=", "ratios (median of per-round ratios; IQR = their spread)")
        terminalreporter.write_line(render_table(ratios.values()))
        out = config.getoption("--ratios-json")
        if out is not None:
            terminalreporter.write_line(f"(written to {out})")
    gate = config.stash.get(_GATE, None)
    if gate is not None:
        for line in gate.splitlines():
            terminalreporter.write_line(line)
