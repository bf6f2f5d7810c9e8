"""Construction cost of the auto-attach seam (measured in fresh interpreters).

``RpcServer(...)`` vs the same construction with the seam removed (see
``benchmarks/_construct_worker.py`` for how the baseline is built and why it
runs in a subprocess):

* ``construction.seam``: ``sentry_sdk`` never imported -- the seam is one
  ``sys.modules`` lookup; target <= 1.05x;
* ``construction.auto_attach``: ``sentry_sdk`` initialised -- the seam attaches
  the default Sentry hook on each construction (informational).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.conftest import ROOT, Profile
from vgi_rpc.testing.bench import Interleaved, Ratio


def _measure(rounds: int, ops: int, *, sentry: bool) -> Interleaved:
    cmd = [sys.executable, "-m", "benchmarks._construct_worker", "--rounds", str(rounds), "--ops", str(ops)]
    if sentry:
        cmd.append("--sentry")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"construction worker failed ({proc.returncode}):\n{proc.stderr}")
    result = json.loads(proc.stdout)
    assert result["sentry_imported"] is sentry
    assert result["hook_attached"] is sentry
    sampler = Interleaved(
        {name: lambda n: None for name in result["samples"]}, ops=result["ops"], clock="thread"
    )
    sampler.samples = result["samples"]
    return sampler


@pytest.mark.gated
@pytest.mark.benchmark(group="construction (fresh interpreter)")
def test_construction_seam(benchmark: Any, profile: Profile, record_ratio: Callable[[Ratio], Ratio]) -> None:
    rounds = profile.rounds(300)
    sampler = benchmark.pedantic(_measure, args=(rounds, 5), kwargs={"sentry": False}, rounds=1)
    record_ratio(
        sampler.ratio(
            "construction.seam",
            "RpcServer(...) with the auto-attach seam vs seam removed, sentry_sdk not imported",
            "seam disabled",
            "RpcServer",
        )
    )


@pytest.mark.benchmark(group="construction (fresh interpreter)")
def test_construction_auto_attach(
    benchmark: Any, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    rounds = profile.rounds(150)
    sampler = benchmark.pedantic(_measure, args=(rounds, 5), kwargs={"sentry": True}, rounds=1)
    record_ratio(
        sampler.ratio(
            "construction.auto_attach",
            "RpcServer(...) with Sentry initialised (auto-attach) vs seam removed",
            "seam disabled",
            "RpcServer",
            note="informational: the price of auto-attaching the default Sentry hook",
        )
    )
