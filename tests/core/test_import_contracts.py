"""The import contracts in ``pyproject.toml`` (``[tool.importlinter]``) catch what they forbid.

``make imports`` runs ``lint-imports`` on this checkout. Here each rule is broken on
purpose in a temporary copy of ``vgi_rpc/`` (one import added to one module) and
the real ``lint-imports`` must name the contract that breaks; the unchanged copy
keeps them all, so a failure below comes from the added import and nothing else.
That the few exceptions (the auto-attach seam, ``make_wsgi_app``'s Sentry and
OpenTelemetry imports) happen only inside a function is proven by
``test_imports.py``, which import-linter cannot see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS: dict[str, str] = {
    c["id"]: c["name"]
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"][
        "contracts"
    ]
}

LAZY_SENTRY = "\n\ndef _attach() -> None:\n    import vgi_rpc.sentry  # noqa\n"
TYPING_ONLY = "\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import vgi_rpc.http  # noqa\n"


def lint_copy(tmp_path: Path, edits: dict[str, str]) -> str:
    """Copy ``vgi_rpc/`` and ``pyproject.toml`` to *tmp_path*, append *edits*, run ``lint-imports``.

    ``lint-imports`` puts its working directory first on ``sys.path``, so it reads the copy.
    """
    shutil.copytree(ROOT / "vgi_rpc", tmp_path / "vgi_rpc", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for name, text in edits.items():
        path = tmp_path / "vgi_rpc" / name
        path.write_text((path.read_text(encoding="utf-8") if path.exists() else "") + text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "pyproject.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == (0 if "BROKEN" not in out else 1), out
    return out


def broken(out: str) -> set[str]:
    """The ids of the contracts ``lint-imports`` reported broken."""
    return {cid for cid, name in CONTRACTS.items() if f"{name} BROKEN" in out}


def test_the_unchanged_copy_keeps_every_contract(tmp_path: Path) -> None:
    """The control: the copy alone breaks nothing, and the seam's exceptions are in use."""
    out = lint_copy(tmp_path, {})
    assert broken(out) == set(), out
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out
    assert "(3 ignored imports)" in out  # the auto-attach seam and make_wsgi_app's two


@pytest.mark.parametrize(
    ("edits", "contracts", "says"),
    [
        pytest.param(
            {"errors.py": "\nimport vgi_rpc.http  # noqa\n"},
            {"layers", "pipe-not-http", "acyclic"},
            "vgi_rpc.errors is not allowed to import vgi_rpc.http",
            id="core-imports-a-transport",
        ),
        pytest.param(
            {"call.py": LAZY_SENTRY},
            {"layers"},
            "vgi_rpc.call is not allowed to import vgi_rpc.sentry",
            id="only-the-server-seam-may-reach-sentry",
        ),
        pytest.param(
            {"http/_common.py": "\nimport vgi_rpc._pipe_io  # noqa\n"},
            {"http-not-pipe"},
            "vgi_rpc.http is not allowed to import vgi_rpc._pipe_io",
            id="http-imports-the-pipe",
        ),
        pytest.param(
            {"pipe/server.py": "\nimport vgi_rpc.testing  # noqa\n"},
            {"layers", "acyclic"},  # the kit's benchmarks import the pipe
            "vgi_rpc.pipe is not allowed to import vgi_rpc.testing",
            id="transport-imports-the-kit",
        ),
        pytest.param(
            {"hooks.py": "\nimport vgi_rpc  # noqa\n"},
            {"facade", "layers", "http-not-pipe"},  # the facade imports the pipe
            "vgi_rpc.hooks -> vgi_rpc",
            id="core-imports-the-facade",
        ),
        pytest.param(
            {"http/_tokens.py": "\nimport vgi_rpc.http._app  # noqa\n"},
            {"acyclic"},
            "No cycles are allowed in vgi_rpc.http",
            id="a-cycle",
        ),
        pytest.param(
            {"newthing.py": '"""A module nobody placed."""\n'},
            {"layers"},
            "- vgi_rpc.newthing",
            id="a-module-in-no-layer",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, edits: dict[str, str], contracts: set[str], says: str
) -> None:
    """Bad input: one added import (or module) breaks exactly the contracts that forbid it."""
    out = lint_copy(tmp_path, edits)
    assert broken(out) == contracts, out
    assert says in out, out


def test_an_import_that_only_type_checkers_see_is_allowed(tmp_path: Path) -> None:
    """``if TYPE_CHECKING:`` imports never run, so they may point anywhere."""
    out = lint_copy(tmp_path, {"errors.py": TYPING_ONLY})
    assert broken(out) == set(), out
