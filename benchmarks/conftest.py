"""pytest wiring for the benchmarks: profile option, the ratio registry and the final table.

Options (``pytest benchmarks ...``):

* ``--bench-profile quick|full`` -- ``quick`` (``make bench-check``) runs a third
  of the rounds; ``full`` (``make bench``) all of them.
* ``--ratios-json PATH`` -- where the measured ratios are written
  (default ``.benchmarks/ratios.json``; ``scripts/bench_check.py`` reads it).

Tests marked ``gated`` measure the ratios ``make bench-check`` compares with
``benchmarks/baseline.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks._harness import Ratio, render_table, save_ratios

ROOT = Path(__file__).resolve().parents[1]
_RATIOS: list[Ratio] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vgi_rpc benchmarks")
    group.addoption("--bench-profile", choices=("quick", "full"), default="full")
    group.addoption("--ratios-json", default=str(ROOT / ".benchmarks" / "ratios.json"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gated: measures a ratio that make bench-check gates on")


@dataclass(frozen=True)
class Profile:
    """How long to measure: ``rounds(n)`` scales a full-profile round count."""

    name: str

    def rounds(self, full: int) -> int:
        """Rounds for this profile (a third of *full* for ``quick``, at least 15)."""
        return full if self.name == "full" else max(15, full // 3)


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> Profile:
    """The measuring profile chosen with ``--bench-profile``."""
    return Profile(pytestconfig.getoption("--bench-profile"))


@pytest.fixture
def record_ratio(benchmark: Any, request: pytest.FixtureRequest) -> Callable[[Ratio], Ratio]:
    """Register a ratio for the final table and the ratios file, and attach it to the benchmark's JSON."""

    def record(ratio: Ratio) -> Ratio:
        ratio.test = request.node.nodeid
        _RATIOS.append(ratio)
        benchmark.extra_info.setdefault("ratios", {})[ratio.key] = ratio.to_json()
        return ratio

    return record


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not _RATIOS:
        return
    path = Path(config.getoption("--ratios-json"))
    save_ratios(path, _RATIOS, profile=config.getoption("--bench-profile"))
    terminalreporter.write_sep("=", "vgi_rpc ratios (median of per-round ratios; IQR = spread)")
    terminalreporter.write_line(render_table(_RATIOS))
    terminalreporter.write_line(f"(written to {path})")
