"""Gate instrumentation overhead in CI with ratios measured in one run, on pytest-benchmark.

``ratio_benchmark`` (:class:`RatioBenchmark`) records ratios into pytest-benchmark's JSON;
``pytest --ratio-baseline FILE`` gates them in a test item, ``ratio-gate`` (:mod:`.plugin`).
docs/testing.md, "Gate instrumentation overhead in CI", is the walk-through.
"""

from __future__ import annotations

from vgi_rpc.testing.bench._gate import render_table
from vgi_rpc.testing.bench._overhead import OverheadPair, overhead_pair
from vgi_rpc.testing.bench._sampler import Clock, Interleaved, Ratio, one_cpu, quartiles
from vgi_rpc.testing.bench.plugin import RatioBenchmark

__all__ = ["Clock", "Interleaved", "OverheadPair", "Ratio", "RatioBenchmark", "one_cpu", "overhead_pair"]
__all__ += ["quartiles", "render_table"]
