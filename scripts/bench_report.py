#!/usr/bin/env python3
"""Print the ratio table from one or more ratio files (``make bench`` ends with it).

    python scripts/bench_report.py                       # .benchmarks/ratios.json + .benchmarks/peer.json
    python scripts/bench_report.py FILE [FILE ...]       # later files win on equal keys
    python scripts/bench_report.py --markdown            # for docs/benchmarks.md

Ratios are ``subject / baseline`` medians over interleaved rounds (IQR = the spread
of the per-round ratios); the peer comparison is a calls/s ratio (higher is better).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import load_ratios, render_table  # noqa: E402

DEFAULT_FILES = (ROOT / ".benchmarks" / "ratios.json", ROOT / ".benchmarks" / "peer.json")


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 1 when no ratio file exists."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "files", nargs="*", type=Path, help="ratio files (default: the ones make bench writes)"
    )
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    files = tuple(args.files) or DEFAULT_FILES
    ratios = load_ratios(*files)
    if not ratios:
        print(f"no ratios found in {', '.join(map(str, files))}; run `make bench` first", file=sys.stderr)
        return 1
    print(render_table(ratios.values(), markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
