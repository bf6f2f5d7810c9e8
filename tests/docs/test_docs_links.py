"""The docs point only at things a reader of the repository can open.

docs/sentry.md once sent readers to a claims file that lives outside the
repository. Every relative Markdown link of README.md and docs/*.md must
resolve, and a file of the package, the scripts or the benchmarks named in
backticks must exist; nothing may point at the workspace around the checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
_CODE_PATH = re.compile(r"`((?:vgi_rpc|scripts|benchmarks)/[\w./-]+\.\w+)`")
_OUTSIDE = re.compile(r"(?<![\w.])(?:\.\./|shared/|/work/)[\w./-]+")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_and_named_files_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = [
        target
        for target in _LINK.findall(text)
        if "://" not in target and not target.startswith("mailto:") and not (page.parent / target).exists()
    ]
    missing += [path for path in _CODE_PATH.findall(text) if not (ROOT / path).exists()]
    assert missing == [], f"{page.name} points at files that are not in the repository: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_nothing_points_outside_the_repository(page: Path) -> None:
    outside = _OUTSIDE.findall(page.read_text(encoding="utf-8"))
    assert outside == [], f"{page.name} points outside the repository: {outside}"
