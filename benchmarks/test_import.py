"""Import cost: ``python -X importtime -c "import vgi_rpc"`` vs the same for ``import pyarrow``.

pyarrow is vgi_rpc's one required dependency, so ``import pyarrow`` is the floor
``import vgi_rpc`` cannot go below; the ratio says what vgi_rpc adds on top.
Both are measured in fresh interpreters, alternately, and the value taken is
the ``cumulative`` column ``-X importtime`` reports for the top-level module
(interpreter start-up excluded).  ``tests/core/test_import_cost.py`` checks that no
heavy optional dependency is imported.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from benchmarks.conftest import ROOT, Profile
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark


def import_time_ns(module: str) -> int:
    """Cumulative import time of *module* in a fresh interpreter, in ns (from ``-X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for line in proc.stderr.splitlines():
        # "import time:      1404 |      90622 | vgi_rpc"  (top level: no indentation)
        if not line.startswith("import time:"):
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if name.rstrip() == f" {module}":
            return int(cumulative) * 1000
    raise AssertionError(f"-X importtime printed no top-level line for {module}:\n{proc.stderr[-2000:]}")


def _importer(module: str) -> Callable[[int], int]:
    def run(n: int) -> int:
        return sum(import_time_ns(module) for _ in range(n))

    return run


@pytest.mark.benchmark(group="import (fresh interpreter)")
def test_import_time(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    sampler = Interleaved(
        {"import pyarrow": _importer("pyarrow"), "import vgi_rpc": _importer("vgi_rpc")}, ops=2
    )
    ratio_benchmark.run(sampler, rounds=profile.rounds(20) if profile.name == "full" else 6, warmup=1)
    ratio = sampler.ratio(
        "import.vgi_rpc",
        "python -X importtime -c 'import vgi_rpc' vs 'import pyarrow' (cumulative)",
        "import pyarrow",
        "import vgi_rpc",
        note="values are -X importtime cumulative times, interpreter start-up excluded",
    )
    ratio.clock = "importtime"
    record_ratio(ratio)
