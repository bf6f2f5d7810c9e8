"""Ratio files (what a run measured) and the ratio table.

A ratio file is ``{"generated", "profile", "environment", "ratios": {key: Ratio}}``
(JSON).  :func:`save_ratios` writes one, :func:`load_ratios` reads one or more.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vgi_rpc.testing.bench._sampler import Interleaved, Ratio

__all__ = ["environment", "load_ratios", "render_table", "run_with_benchmark", "save_ratios"]


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cpus": os.cpu_count(),
        "executable": sys.executable,
    }


def save_ratios(path: Path, ratios: Iterable[Ratio], *, profile: str, merge: bool = False) -> None:
    """Write *ratios* to *path* (``{"ratios": {key: ...}}``); with *merge*, keep other keys already there."""
    existing: dict[str, Any] = {}
    if merge and path.exists():
        existing = json.loads(path.read_text()).get("ratios", {})
    for r in ratios:
        existing[r.key] = r.to_json()
    doc = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profile": profile,
        "environment": environment(),
        "ratios": existing,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def load_ratios(*paths: Path) -> dict[str, Ratio]:
    """Ratios from one or more ratio files (later files win on equal keys), in file order.

    Missing files are skipped; a file that is not a ratio file raises ``ValueError``
    naming it.
    """
    out: dict[str, Ratio] = {}
    for path in paths:
        if not path.exists():
            continue
        try:
            doc = json.loads(path.read_text())
            entries = doc["ratios"]
            for key, data in entries.items():
                out[key] = Ratio.from_json(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path} is not a ratio file ({type(exc).__name__}: {exc})") from None
    return out


def _fmt_value(value: float, unit: str) -> str:
    if unit == "ns/op":
        if value >= 1e6:
            return f"{value / 1e6:.2f} ms"
        if value >= 1e3:
            return f"{value / 1e3:.1f} us"
        return f"{value:.0f} ns"
    if unit == "calls/s":
        return f"{value:,.0f}/s"
    return f"{value:.3g} {unit}"


def render_table(ratios: Iterable[Ratio], *, markdown: bool = False) -> str:
    """A short table: one line per ratio, median and interquartile spread, target and verdict."""
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for r in ratios:
        verdict = {None: "", True: "ok", False: "MISSED"}[r.meets_target]
        target = "" if r.target is None else f"{'<=' if r.better == 'lower' else '>='}{r.target:.2f}x"
        rows.append(
            (
                r.key,
                f"{r.subject} / {r.baseline}" if r.better == "lower" else f"{r.subject} vs {r.baseline}",
                _fmt_value(r.subject_value, r.unit),
                _fmt_value(r.baseline_value, r.unit),
                f"{r.median:.3f}x",
                f"{r.q1:.3f}-{r.q3:.3f}",
                str(r.rounds),
                r.clock,
                f"{target} {verdict}".strip(),
            )
        )
        if r.note:
            notes.append(f"{r.key}: {r.note}")
    header = (
        "ratio",
        "subject / baseline",
        "subject",
        "baseline",
        "median",
        "IQR",
        "rounds",
        "clock",
        "target",
    )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if notes:
        lines.append("")
        lines += [f"  * {n}" for n in notes]
    return "\n".join(lines)


def run_with_benchmark(benchmark: Any, sampler: Interleaved, *, rounds: int, warmup: int) -> None:
    """Run *sampler* under pytest-benchmark: each benchmark round is one interleaved round.

    pytest-benchmark's own statistics then describe one whole round (every
    variant once); the ratios come from the sampler.  With
    ``--benchmark-disable`` pytest-benchmark runs a single round.
    """
    for _ in range(warmup):
        sampler.round()
    sampler.reset()
    benchmark.pedantic(sampler.round, rounds=rounds, iterations=1, warmup_rounds=0)
