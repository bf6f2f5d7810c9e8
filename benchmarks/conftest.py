"""pytest wiring for the benchmarks: the measuring profile and the ``gated`` marker.

Everything else is the kit's public plugin (``vgi_rpc.testing.bench``, entry
point ``vgi_rpc_bench``), the one our users run: ``ratio_benchmark``, the ratio
table, the ratios in ``--benchmark-json`` and the gate (``--ratio-baseline``,
with its re-measurement of a failing ratio).  Options added here:

* ``--bench-profile quick|full`` -- ``quick`` runs a third of the rounds; ``full``
  (the default, ``make bench`` and ``make bench-check``) all of them.

Tests marked ``gated`` measure the ratios ``make bench-check`` gates on
(``pytest benchmarks -m gated --ratio-baseline=benchmarks/baseline.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vgi_rpc.testing.bench import Ratio, RatioBenchmark

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vgi_rpc benchmarks")
    group.addoption("--bench-profile", choices=("quick", "full"), default="full")


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
def record_ratio(ratio_benchmark: RatioBenchmark) -> Callable[[Ratio], Ratio]:
    """Register a ratio (``ratio_benchmark.record``: the benchmark JSON, the table, the gate)."""
    return ratio_benchmark.record
