"""``scripts/import_graph.py``: this checkout's graph passes, and each rule fails when broken.

The broken cases are small fake ``vgi_rpc`` trees written to a temporary
directory (the script reads source with ``ast``, it imports nothing).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "import_graph.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"vgi_rpc/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_this_checkout_passes_and_the_graph_shows_every_layer() -> None:
    proc = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for layer in ("[core]", "[transport]", "[instrumentation]", "[facade]"):
        assert layer in proc.stdout
    assert "vgi_rpc.server: " in proc.stdout and "~> vgi_rpc.sentry" in proc.stdout  # the seam, lazy
    assert proc.stdout.rstrip().splitlines()[-1].startswith("import-graph: ok")


def test_a_cycle_and_a_core_to_transport_edge_fail(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "vgi_rpc/server.py": "from vgi_rpc.pipe import serve_streams\n",
            "vgi_rpc/pipe/__init__.py": "from vgi_rpc.pipe.server import serve_streams\n",
            "vgi_rpc/pipe/server.py": "import vgi_rpc.server\n\ndef serve_streams(): ...\n",
        },
    )
    proc = run("--check", "--root", str(root))
    assert proc.returncode == 1
    assert "FAIL  import cycle: vgi_rpc.pipe <-> vgi_rpc.pipe.server <-> vgi_rpc.server" in proc.stdout
    assert (
        "FAIL  core -> transport: vgi_rpc.server imports vgi_rpc.pipe (top, vgi_rpc/server.py:1)"
        in proc.stdout
    )


def test_only_the_lazy_seam_may_reach_an_instrumentation(tmp_path: Path) -> None:
    seam = "def _auto_attach(server):\n    from vgi_rpc.sentry import _auto_attach\n"
    ok = tree(tmp_path / "ok", {"vgi_rpc/server.py": seam, "vgi_rpc/sentry.py": ""})
    assert run("--check", "--root", str(ok)).returncode == 0
    eager = tree(
        tmp_path / "eager", {"vgi_rpc/server.py": "import vgi_rpc.sentry\n", "vgi_rpc/sentry.py": ""}
    )
    proc = run("--check", "--root", str(eager))
    assert proc.returncode == 1
    assert "core -> instrumentation: vgi_rpc.server imports vgi_rpc.sentry (top" in proc.stdout
    other = tree(tmp_path / "other", {"vgi_rpc/call.py": seam, "vgi_rpc/sentry.py": ""})
    assert (
        "core -> instrumentation: vgi_rpc.call imports vgi_rpc.sentry (lazy"
        in run("--check", "--root", str(other)).stdout
    )


def test_typing_only_imports_are_drawn_but_not_checked(tmp_path: Path) -> None:
    typing_only = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vgi_rpc.pipe import serve_streams\n"
    )
    root = tree(
        tmp_path, {"vgi_rpc/server.py": typing_only, "vgi_rpc/pipe/__init__.py": "import vgi_rpc.server\n"}
    )
    proc = run("--root", str(root))
    assert proc.returncode == 0, proc.stdout
    assert "vgi_rpc.server: ..> vgi_rpc.pipe" in proc.stdout


def test_transports_stay_apart_and_load_instrumentation_lazily(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "vgi_rpc/http/__init__.py": "import vgi_rpc.pipe\nimport vgi_rpc.otel\n",
            "vgi_rpc/pipe/__init__.py": "",
            "vgi_rpc/otel.py": "",
        },
    )
    out = run("--check", "--root", str(root)).stdout
    assert "transport -> transport: vgi_rpc.http imports vgi_rpc.pipe" in out
    assert "transport -> instrumentation: vgi_rpc.http imports vgi_rpc.otel (top" in out


def test_a_module_in_no_layer_fails(tmp_path: Path) -> None:
    root = tree(tmp_path, {"vgi_rpc/newthing.py": ""})
    proc = run("--check", "--root", str(root))
    assert proc.returncode == 1
    assert "vgi_rpc.newthing: in no layer (add it to LAYERS in scripts/import_graph.py)" in proc.stdout
