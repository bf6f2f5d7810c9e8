"""The benchmarks' view of the public ratio harness (``vgi_rpc.testing.bench``).

The sampler, the :class:`Ratio` record, ratio files and the table are the
kit's public code -- the same our users gate their own services with; this
module re-exports them under the names the benchmarks have always used and
adds the one project-specific bit, the table order of our ratio groups.
"""

from __future__ import annotations

from pathlib import Path

from vgi_rpc.testing.bench import (
    Interleaved,
    Ratio,
    Variant,
    environment,
    one_cpu,
    quartiles,
    render_table,
    run_with_benchmark,
    save_ratios,
)
from vgi_rpc.testing.bench import load_ratios as _load_ratios

__all__ = [
    "GROUP_ORDER",
    "Interleaved",
    "Ratio",
    "Variant",
    "environment",
    "load_ratios",
    "one_cpu",
    "quartiles",
    "render_table",
    "run_with_benchmark",
    "save_ratios",
]

GROUP_ORDER = ("construction.", "dispatch.", "floor.", "sentry.", "http.", "import.", "peer.")
"""Table order: by group, then by key."""


def _order(key: str) -> tuple[int, str]:
    for index, prefix in enumerate(GROUP_ORDER):
        if key.startswith(prefix):
            return index, key
    return len(GROUP_ORDER), key


def load_ratios(*paths: Path) -> dict[str, Ratio]:
    """Ratios from one or more ratio files (later files win on equal keys), in table order."""
    out = _load_ratios(*paths)
    return {key: out[key] for key in sorted(out, key=_order)}
