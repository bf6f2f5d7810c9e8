"""The gate: measured ratios against a baseline file, ``{"ratios": {key: {"value", "max_regression", "gated"}}}``.

A gated ratio fails when its median is beyond ``value * (1 + max_regression)`` (the only threshold).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vgi_rpc.testing.bench._sampler import Ratio

DEFAULT_TOLERANCE = 0.2


class BaselineError(Exception):
    """The gate cannot judge: the baseline is missing, unreadable or for other benchmarks, or nothing was measured."""


def load_baseline(path: Path, tolerance: float = DEFAULT_TOLERANCE) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the whole file, its entries with ``max_regression`` and ``gated`` filled in); or :class:`BaselineError`."""
    if not path.exists():
        raise BaselineError(f"ratio baseline {path} does not exist (write it with --ratio-update)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(f"ratio baseline {path} is unreadable: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("ratios"), dict):
        raise BaselineError(f'ratio baseline {path} is not a baseline file: no "ratios" mapping')
    entries = {}
    for key, raw in doc["ratios"].items():
        entry = {"max_regression": tolerance, "gated": True, **(raw if isinstance(raw, dict) else {})}
        value, slack = entry.get("value", 0), entry["max_regression"]
        numbers = all(type(x) in (int, float) and math.isfinite(x) for x in (value, slack))
        if not (numbers and value > 0 and slack >= 0):
            raise BaselineError(
                f"ratio baseline {path}: {key!r} needs a positive 'value', a non-negative 'max_regression'"
            )
        entries[key] = entry
    return doc, entries


def _line(key: str, entry: Mapping[str, Any], r: Ratio) -> tuple[str, str]:
    """(status, line) for one measured ratio."""
    low, slack = r.better == "lower", entry["max_regression"]
    limit = entry["value"] * (1 + slack if low else 1 - slack)
    line = (
        f"{key}: baseline {entry['value']:.3f}x, measured {r.median:.3f}x, allowed "
        f"{'<=' if low else '>='}{limit:.3f}x ({'+' if low else '-'}{slack:.0%}) "
        f"[IQR {r.q1:.3f}-{r.q3:.3f}, {r.rounds} rounds, {r.clock}]"
    )
    spread = (r.q3 - r.q1) / r.median if r.median else math.inf
    noisy = spread > 2 * slack  # half the rounds disagree by more than the gate allows either way
    if not entry["gated"]:
        return "info", f"{line} (not gated)"
    if (r.median > limit) if low else (r.median < limit):
        return "REGRESSION", line + (" -- its rounds are noisy too" if noisy else "")
    if noisy:
        return "NOISY", f"{line} -- IQR {spread:.0%} of the median: too noisy to judge, passing"
    return "pass", line


def judge(path: Path, entries: Mapping[str, Any], measured: Mapping[str, Ratio]) -> tuple[list[str], str]:
    """(the keys that fail, the report: one line per baseline entry; a gated one not measured is ``MISSING``)."""
    if not measured:
        raise BaselineError("no ratio was measured in this run: nothing to compare with the baseline")
    if entries and not set(measured) & set(entries):
        raise BaselineError(
            f"ratio baseline {path} is for other benchmarks: it lists {', '.join(sorted(entries)[:6])}; "
            f"this run measured {', '.join(sorted(measured)[:6])}"
        )
    lines = [
        _line(k, e, measured[k]) if k in measured else ("MISSING", f"{k}: in the baseline, not measured")
        for k, e in entries.items()
        if k in measured or e["gated"]
    ]
    failed = [line.split(":")[0] for status, line in lines if status in ("REGRESSION", "MISSING")]
    gated = sum(status in ("pass", "NOISY") for status, _ in lines)
    end = f"FAILED: {', '.join(failed)}" if failed else f"OK ({gated} gated ratio(s) within their limits)"
    return failed, "\n".join([f"ratio gate vs {path}: {end}", *(f"  {s:<10} {line}" for s, line in lines)])


def update_baseline(path: Path, measured: Mapping[str, Ratio], tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Write the medians into *path* (created if missing; thresholds and other keys kept; new ratios gated)."""
    if not measured:
        raise BaselineError("no ratio was measured in this run: nothing to write to the baseline")
    doc = load_baseline(path, tolerance)[0] if path.exists() else {"ratios": {}}
    for key, r in measured.items():
        doc["ratios"].setdefault(key, {"max_regression": tolerance})["value"] = round(r.median, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def render_table(ratios: Iterable[Ratio]) -> str:
    """The ratio table: median and IQR of the per-round ratios, the sides' medians, rounds, clock."""
    head = ("ratio", "subject / baseline", "median", "IQR", "subject", "baseline", "rounds", "clock")
    rows = [head] + [
        (r.key, f"{r.subject} / {r.baseline}", f"{r.median:.3f}x", f"{r.q1:.3f}-{r.q3:.3f}",
         f"{r.subject_value:.4g} {r.unit}", f"{r.baseline_value:.4g} {r.unit}", str(r.rounds), r.clock)
        for r in ratios
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
