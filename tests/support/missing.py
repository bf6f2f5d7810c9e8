"""Run code in a fresh interpreter where some packages cannot be imported -- as if not installed.

Shared by the suites that check the missing-extra messages
(``core/test_extras.py``, ``testing_kit/test_user_project_snapshots_and_extras.py``). An import blocker on ``sys.meta_path`` makes
``import falcon`` fail exactly as it fails where falcon is not installed
(``ModuleNotFoundError`` with ``name`` set), after dropping the package from
``sys.modules``. Nothing is mocked: the package is simply not importable.
``from support.missing import run_without``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping

__all__ = ["BLOCKER", "run_without"]

BLOCKER = """
import sys

class _NotInstalled:
    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled({blocked!r}))
for _loaded in [m for m in sys.modules if m.split(".")[0] in {blocked!r}]:
    del sys.modules[_loaded]
"""


def run_without(
    blocked: tuple[str, ...],
    code: str,
    *,
    python: str = sys.executable,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``python`` in a fresh interpreter where the ``blocked`` packages are absent."""
    script = BLOCKER.format(blocked=tuple(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [python, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=dict(env) if env is not None else None,
    )
