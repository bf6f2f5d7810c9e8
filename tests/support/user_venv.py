"""Temporary venvs with this checkout installed the way a user installs it: from a wheel, non-editable.

Shared by the two user-project suites (``testing_kit/test_user_project_snapshots_and_extras.py``,
``testing_kit/test_user_project_relay_otel_ratios.py``) through the session fixtures of
``testing_kit/conftest.py``, so one session builds one wheel and installs its
dependencies once:

* :func:`build_wheel` -- a wheel of a copy of ``pyproject.toml``, ``README.md``
  and ``vgi_rpc/`` (the build leaves nothing in the checkout);
* :func:`make_venv` -- a fresh venv with ``<wheel>[extras]`` installed, plus the
  ``sentry-sdk`` version the running suite uses (``make test-sdk3`` runs the
  users' projects on sentry-sdk 3, ``make test-sdk-floor`` on the floor);
  given ``on_top_of``, the new venv reaches that venv's packages through a
  ``.pth`` file and pip installs only what the extra extras add -- the base
  venv itself is left as it was (a package missing there stays missing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["UserEnv", "build_wheel", "make_venv"]

ROOT = Path(__file__).resolve().parents[2]
_PIP = ("-m", "pip", "--disable-pip-version-check", "-q")


@dataclass(frozen=True)
class UserEnv:
    """A user's venv: its interpreter and its ``site-packages``."""

    python: Path
    site_packages: Path


def build_wheel(where: Path) -> Path:
    """A wheel of this checkout, built from a copy in *where* (nothing is written to the checkout)."""
    source = where / "src"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "vgi_rpc", source / "vgi_rpc", ignore=shutil.ignore_patterns("__pycache__"))
    dist = where / "dist"
    _run([sys.executable, *_PIP, "wheel", "--no-deps", "-w", str(dist), str(source)], timeout=600)
    (wheel,) = dist.glob("vgi_rpc-*.whl")
    return wheel


def make_venv(where: Path, wheel: Path, extras: str, *, on_top_of: UserEnv | None = None) -> UserEnv:
    """A new venv in *where* with ``wheel[extras]`` and the suite's ``sentry-sdk`` installed."""
    import sentry_sdk

    _run([sys.executable, "-m", "venv", str(where)], timeout=120)
    python = where / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], timeout=60
        ).strip()
    )
    if on_top_of is not None:
        (site / "_user_base.pth").write_text(f"{on_top_of.site_packages}\n")
    _run(
        [str(python), *_PIP, "install", f"{wheel}[{extras}]", f"sentry-sdk=={sentry_sdk.VERSION}"],
        timeout=900,
    )
    return UserEnv(python, site)


def _run(cmd: list[str], *, timeout: float) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
    return proc.stdout
