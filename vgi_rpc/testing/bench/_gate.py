"""The gate: recorded ratios against a committed baseline file, one readable line per verdict.

A baseline file (JSON, committed next to the benchmarks)::

    {"ratios": {
        "checkout.sentry": {"value": 1.12, "max_regression": 0.2},
        "checkout.otel":   {"value": 1.30},
        "import.cost":     {"value": 1.9, "gated": false}
    }}

``value`` is the median ratio the gate expects; ``max_regression`` the allowed
relative worsening (default: the gate's tolerance, 0.2 unless told otherwise);
``gated: false`` shows a ratio without enforcing it.  Other keys are kept
untouched by ``--update``.

Exit statuses (the CLI and the pytest option): **0** every gated ratio within
its limit, **1** a regression (or, with ``require_all``, a gated ratio not
measured), **2** the baseline file is missing, unreadable or for other
benchmarks, or nothing was measured -- a problem with the gate, not a verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from vgi_rpc.testing.bench._report import load_ratios
from vgi_rpc.testing.bench._sampler import Ratio

__all__ = [
    "DEFAULT_TOLERANCE",
    "Baseline",
    "BaselineEntry",
    "BaselineError",
    "Verdict",
    "compare",
    "exit_status",
    "load_baseline",
    "main",
    "remeasured",
    "update_baseline",
]

DEFAULT_TOLERANCE = 0.2
"""Allowed relative regression for an entry without ``max_regression`` (20 %)."""


class BaselineError(Exception):
    """The baseline cannot be used: missing, unreadable, for other benchmarks, or nothing measured.

    The message is one line, meant to be printed as is; the gate exits with status 2.
    """


@dataclass(frozen=True)
class BaselineEntry:
    """One ratio the gate expects: its median, allowed regression and whether it is enforced."""

    value: float
    max_regression: float
    gated: bool = True

    def limit(self, better: str) -> float:
        """The worst acceptable median (a maximum for "lower is better", a minimum otherwise)."""
        if better == "lower":
            return self.value * (1 + self.max_regression)
        return self.value * (1 - self.max_regression)


@dataclass(frozen=True)
class Baseline:
    """A parsed baseline file (``doc`` keeps everything it held, for ``--update``)."""

    path: Path
    entries: dict[str, BaselineEntry]
    doc: dict[str, Any]


def load_baseline(path: Path, *, tolerance: float = DEFAULT_TOLERANCE) -> Baseline:
    """Read *path*; entries without ``max_regression`` get *tolerance*.

    Raises:
        BaselineError: the file is missing, is not JSON, or is not a baseline
            (no ``"ratios"`` mapping, an entry without a numeric ``value``...).
    """
    if not path.exists():
        raise BaselineError(f"ratio baseline {path} does not exist (write it with --update)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BaselineError(f"ratio baseline {path} is unreadable: {exc}") from None
    ratios = doc.get("ratios") if isinstance(doc, dict) else None
    if not isinstance(ratios, dict):
        raise BaselineError(f'ratio baseline {path} is not a baseline file: no "ratios" mapping')
    entries: dict[str, BaselineEntry] = {}
    for key, raw in ratios.items():
        value = raw.get("value") if isinstance(raw, dict) else None
        slack = raw.get("max_regression", tolerance) if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not _number(value) or not _number(slack) or value <= 0 or slack < 0:
            raise BaselineError(
                f"ratio baseline {path}: entry {key!r} needs a positive numeric 'value' "
                f"and a non-negative 'max_regression', got {raw!r}"
            )
        entries[key] = BaselineEntry(float(value), float(slack), bool(raw.get("gated", True)))
    return Baseline(path, entries, doc)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


Status = Literal["pass", "REGRESSION", "NOISY", "MISSING", "info", "new"]


@dataclass(frozen=True)
class Verdict:
    """The gate's verdict on one ratio; ``str()`` is its one-line report.

    Attributes:
        key: The ratio.
        status: ``pass``; ``REGRESSION`` (fails the gate); ``NOISY`` (within its
            limit, but the rounds spread wider than the tolerance band, so the
            pass is weak evidence -- said, never silent); ``MISSING`` (a gated
            ratio not measured, fails with ``require_all``); ``info`` (not gated);
            ``new`` (measured, not in the baseline).
        line: The report line, without the status.
    """

    key: str
    status: Status
    line: str

    @property
    def failed(self) -> bool:
        """Whether this verdict fails the gate."""
        return self.status in ("REGRESSION", "MISSING")

    def __str__(self) -> str:
        """``STATUS  line``."""
        return f"{self.status:<10} {self.line}"


def _line(key: str, entry: BaselineEntry, r: Ratio) -> str:
    sign = "<=" if r.better == "lower" else ">="
    plus = "+" if r.better == "lower" else "-"
    return (
        f"{key}: baseline {entry.value:.3f}x, measured {r.median:.3f}x, "
        f"allowed {sign}{entry.limit(r.better):.3f}x ({plus}{entry.max_regression:.0%}) "
        f"[IQR {r.q1:.3f}-{r.q3:.3f}, {r.rounds} rounds]"
    )


def compare(baseline: Baseline, measured: Mapping[str, Ratio], *, require_all: bool = False) -> list[Verdict]:
    """One :class:`Verdict` per baseline entry (in file order), then one per new ratio.

    A ratio is **noisy** when the interquartile range of its per-round ratios,
    relative to its median, is wider than the tolerance band
    (``2 * max_regression``): half its rounds disagree by more than the gate
    allows either way.

    Raises:
        BaselineError: nothing was measured, or no measured ratio is in the
            baseline although both have entries (a baseline for other benchmarks).
    """
    if not measured:
        raise BaselineError("no ratio was measured in this run: nothing to compare with the baseline")
    if baseline.entries and not set(measured) & set(baseline.entries):
        listed = ", ".join(sorted(baseline.entries)[:6])
        got = ", ".join(sorted(measured)[:6])
        raise BaselineError(
            f"ratio baseline {baseline.path} is for other benchmarks: it lists {listed}; "
            f"this run measured {got} (write a baseline for these with --update)"
        )
    out: list[Verdict] = []
    for key, entry in baseline.entries.items():
        r = measured.get(key)
        if r is None:
            if entry.gated:
                status: Status = "MISSING" if require_all else "info"
                out.append(Verdict(key, status, f"{key}: in the baseline, not measured in this run"))
            continue
        limit = entry.limit(r.better)
        ok = r.median <= limit if r.better == "lower" else r.median >= limit
        noisy = r.spread > 2 * entry.max_regression
        line = _line(key, entry, r)
        if not entry.gated:
            out.append(Verdict(key, "info", f"{line} (not gated)"))
        elif not ok:
            note = " -- its rounds are noisy too (IQR wider than the tolerance band)" if noisy else ""
            out.append(Verdict(key, "REGRESSION", line + note))
        elif noisy:
            out.append(
                Verdict(
                    key,
                    "NOISY",
                    f"{line} -- the IQR is {r.spread:.0%} of the median, wider than the "
                    f"tolerance band (+-{entry.max_regression:.0%}): too noisy to judge, passing on "
                    "its median; measure more operations per round or on a quieter machine",
                )
            )
        else:
            out.append(Verdict(key, "pass", line))
    for key, r in measured.items():
        if key not in baseline.entries:
            out.append(
                Verdict(
                    key, "new", f"{key}: measured {r.median:.3f}x, not in the baseline (add it with --update)"
                )
            )
    return out


def remeasured(
    first: Mapping[str, Ratio], again: Mapping[str, Ratio], keys: Iterable[str]
) -> dict[str, Ratio]:
    """*first* with the ratios named by *keys* replaced by their measurement in *again*.

    For a gate that confirms a failure by measuring it once more: re-running the
    failing ratio's test measures every ratio that test records, and only the one
    being confirmed may change -- a ratio that passed in the first run keeps its
    first measurement (a second, noisier one must neither fail nor pass the
    gate for it).  A key *again* did not measure keeps its first value.
    """
    wanted = set(keys)
    out = dict(first)
    out.update({key: ratio for key, ratio in again.items() if key in wanted})
    return out


def exit_status(verdicts: Sequence[Verdict]) -> int:
    """``1`` if any verdict failed, else ``0``."""
    return 1 if any(v.failed for v in verdicts) else 0


def update_baseline(
    path: Path, measured: Mapping[str, Ratio], *, tolerance: float = DEFAULT_TOLERANCE, add_new: bool = True
) -> None:
    """Write this run's medians into *path* (created if missing; other entries and keys kept).

    Ratios not in the baseline yet are added (gated, with *tolerance*) unless
    *add_new* is false.

    Raises:
        BaselineError: *path* exists but is not a readable baseline (it is not
            overwritten).
    """
    if not measured:
        raise BaselineError("no ratio was measured in this run: nothing to write to the baseline")
    if path.exists():
        doc = load_baseline(path, tolerance=tolerance).doc
    else:
        doc = {
            "comment": "Ratio gate baseline (vgi_rpc.testing.bench): value = expected median ratio; "
            "max_regression = allowed relative worsening; gated = false shows without enforcing.",
            "ratios": {},
        }
    for key, r in measured.items():
        if key not in doc["ratios"] and not add_new:
            continue
        entry = doc["ratios"].setdefault(key, {"max_regression": tolerance})
        entry["value"] = round(r.median, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def report(verdicts: Sequence[Verdict], *, baseline: Path) -> str:
    """The gate's report: one line per verdict, then the outcome."""
    lines = [f"== ratio gate: measured ratios vs {baseline} =="]
    lines += [f"  {v}" for v in verdicts]
    failed = [v.key for v in verdicts if v.failed]
    if failed:
        lines.append(f"ratio gate: FAILED: {', '.join(failed)}")
    else:
        gated = sum(v.status in ("pass", "NOISY") for v in verdicts)
        lines.append(f"ratio gate: OK ({gated} gated ratio(s) within their limits)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vgi_rpc.testing.bench RATIOS... --baseline FILE [--update]``: compare, print, exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m vgi_rpc.testing.bench",
        description="Compare recorded ratios (--ratios-json files of a pytest run) with a baseline file. "
        "Exit status: 0 pass, 1 regression, 2 baseline missing/unreadable/for other benchmarks.",
    )
    parser.add_argument("ratios", nargs="+", type=Path, help="ratio files written by a run (--ratios-json)")
    parser.add_argument("--baseline", type=Path, required=True, help="the committed baseline file")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="allowed relative regression where an entry has no max_regression (default 0.2)",
    )
    parser.add_argument("--update", action="store_true", help="write the measured medians into the baseline")
    parser.add_argument("--require-all", action="store_true", help="a gated ratio not measured fails")
    args = parser.parse_args(argv)
    try:
        missing = [str(p) for p in args.ratios if not p.exists()]
        if missing:
            raise BaselineError(f"no ratio file at {', '.join(missing)}")
        try:
            measured = load_ratios(*args.ratios)
        except ValueError as exc:
            raise BaselineError(str(exc)) from None
        if args.update:
            update_baseline(args.baseline, measured, tolerance=args.tolerance)
            print(f"ratio gate: wrote {len(measured)} ratio(s) to {args.baseline}")
            return 0
        verdicts = compare(
            load_baseline(args.baseline, tolerance=args.tolerance), measured, require_all=args.require_all
        )
    except BaselineError as exc:
        print(f"ratio gate: {exc}", file=sys.stderr)
        return 2
    print(report(verdicts, baseline=args.baseline))
    return exit_status(verdicts)
