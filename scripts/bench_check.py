#!/usr/bin/env python3
"""Regression gate: measure the gated ratios and compare them with ``benchmarks/baseline.json``.

    python scripts/bench_check.py                  # make bench-check: run the gated benchmarks, compare
    python scripts/bench_check.py --ratios FILE    # compare an existing ratio file (no run)
    python scripts/bench_check.py --update         # run, then store this run's medians as the baseline

A gated ratio fails when its median exceeds ``baseline * (1 + max_regression)``
(for a "higher is better" ratio: falls below ``baseline * (1 - max_regression)``).
On a shared 2-core machine a single bad stretch can spoil one measurement, so a
failing ratio is measured once more (its test alone) and fails the check only if
it fails again.  Ratios the baseline lists as not gated are shown, never enforced.
Exit status: 0 pass, 1 a gated ratio regressed (or was not measured), 2 usage/run error.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import Ratio, load_ratios  # noqa: E402

BASELINE = ROOT / "benchmarks" / "baseline.json"


def run_benchmarks(out: Path, *, selectors: list[str], profile: str) -> None:
    """Run pytest on *selectors* (node ids, or the whole gated set), writing ratios to *out*."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        f"--bench-profile={profile}",
        f"--ratios-json={out}",
        "--benchmark-columns=median,iqr,rounds",
        *(selectors or ["benchmarks", "-m", "gated"]),
    ]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench-check: the benchmark run failed (pytest exit {proc.returncode})")


def limit_of(entry: dict[str, Any], better: str) -> float:
    """The worst acceptable median for a baseline entry."""
    value = float(entry["value"])
    slack = float(entry["max_regression"])
    return value * (1 + slack) if better == "lower" else value * (1 - slack)


def verdicts(baseline: dict[str, Any], measured: dict[str, Ratio]) -> list[tuple[str, str, str]]:
    """(key, status, line) per baseline entry; status is ``pass``, ``FAIL``, ``info`` or ``missing``."""
    out: list[tuple[str, str, str]] = []
    for key, entry in baseline["ratios"].items():
        gated = bool(entry.get("gated"))
        r = measured.get(key)
        if r is None:
            if gated:
                out.append((key, "FAIL", f"{key:<28} not measured"))
            continue
        limit = limit_of(entry, r.better)
        ok = r.median <= limit if r.better == "lower" else r.median >= limit
        sign = "<=" if r.better == "lower" else ">="
        status = ("pass" if ok else "FAIL") if gated else "info"
        line = (
            f"{key:<28} {r.median:8.3f}x (IQR {r.q1:.3f}-{r.q3:.3f})  baseline {float(entry['value']):.3f}x"
            f"  limit {sign}{limit:.3f}x (+{float(entry['max_regression']):.0%})"
        )
        out.append((key, status, line))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run (or read) the measurements, compare, print, return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ratios", type=Path, help="compare this ratio file instead of running")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--profile", choices=("quick", "full"), default="full")
    parser.add_argument("--no-retry", action="store_true", help="do not re-measure a failing ratio")
    parser.add_argument(
        "--update", action="store_true", help="store the measured medians as the new baseline"
    )
    args = parser.parse_args(argv)

    baseline = json.loads(args.baseline.read_text())
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        if args.ratios is not None:
            measured = load_ratios(args.ratios)
            if not measured:
                print(f"bench-check: no ratios in {args.ratios}", file=sys.stderr)
                return 2
        else:
            first = Path(tmp) / "ratios.json"
            run_benchmarks(first, selectors=[], profile=args.profile)
            measured = load_ratios(first)

        if args.update:
            for key, entry in baseline["ratios"].items():
                if key in measured:
                    entry["value"] = round(measured[key].median, 4)
            args.baseline.write_text(json.dumps(baseline, indent=2) + "\n")
            print(f"bench-check: baseline values updated in {args.baseline}")

        results = verdicts(baseline, measured)
        failing = [k for k, status, _ in results if status == "FAIL"]
        retried: set[str] = set()
        if failing and args.ratios is None and not args.no_retry:
            tests = sorted({measured[k].test for k in failing if k in measured and measured[k].test})
            if tests:
                print(f"\nbench-check: {', '.join(failing)} over the limit; measuring once more to confirm\n")
                second = Path(tmp) / "retry.json"
                run_benchmarks(second, selectors=tests, profile=args.profile)
                measured.update(load_ratios(second))
                retried = set(failing)
                results = verdicts(baseline, measured)

    print("\n== bench-check: gated ratios vs benchmarks/baseline.json ==")
    for key, status, line in results:
        again = " (re-measured)" if key in retried else ""
        print(f"  {status:<7} {line}{again}")
    failed = [k for k, status, _ in results if status == "FAIL"]
    if failed:
        print(f"\nbench-check: FAILED: {', '.join(failed)} regressed beyond the allowed threshold")
        return 1
    print("\nbench-check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
