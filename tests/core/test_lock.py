"""Our environments install what ``uv.lock`` holds, and a stale lock says how to refresh it (issue 17).

``make test`` syncs ``.venv`` with ``uv sync --locked``; before that, ``make
lock-check`` compares the lock with ``pyproject.toml``. Run against a copy of the
project's ``pyproject.toml``, ``uv.lock`` and ``Makefile`` with the uv that make
bootstrapped into ``.venv-tools`` (uv asks the package index, as make does).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".venv-tools" / "bin" / "uv"

pytestmark = pytest.mark.skipif(
    not UV.exists() or shutil.which("make") is None,
    reason="needs make and the uv that make bootstraps into .venv-tools (run the suite with make test)",
)


def _lock_check(project: Path) -> subprocess.CompletedProcess[str]:
    for name in ("pyproject.toml", "uv.lock", "Makefile"):
        if not (project / name).exists():
            shutil.copy(ROOT / name, project / name)
    return subprocess.run(
        ["make", "--no-print-directory", "lock-check", f"UV={UV}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_committed_lock_matches_pyproject(tmp_path: Path) -> None:
    result = _lock_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stale_lock_fails_saying_how_to_refresh_it(tmp_path: Path) -> None:
    """Bad input: a requirement changed without ``make lock``: make stops and names the fix."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"pyarrow>=15",' in pyproject
    (tmp_path / "pyproject.toml").write_text(
        pyproject.replace('"pyarrow>=15",', '"pyarrow>=16",'), encoding="utf-8"
    )
    result = _lock_check(tmp_path)
    assert result.returncode != 0
    assert (
        "uv.lock is out of date with pyproject.toml: run 'make lock' (uv lock) and commit uv.lock."
        in result.stderr
    )
