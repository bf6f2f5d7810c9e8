"""``import vgi_rpc`` (and building and using an ``RpcServer``) stays light.

Each check runs in a fresh interpreter and inspects ``sys.modules``: the core
must not import ``sentry_sdk``, ``opentelemetry`` or ``falcon`` (nor our own
modules that wrap them). A positive control shows the probe does see those
packages when they are imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
HEAVY = ("sentry_sdk", "opentelemetry", "falcon")
OURS_HEAVY = ("vgi_rpc.sentry", "vgi_rpc.otel", "vgi_rpc.http")

PROBE = """
import json, sys
{body}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r} or m.startswith({ours!r}))
print(json.dumps(loaded))
"""


def loaded_after(body: str) -> list[str]:
    """Run *body* in a fresh interpreter; return the heavy modules it left in ``sys.modules``."""
    code = PROBE.format(body=body, heavy=HEAVY, ours=OURS_HEAVY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SENTRY", "OTEL"))}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=str(TESTS),
    )
    assert proc.returncode == 0, proc.stderr
    result: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_import_vgi_rpc_imports_no_heavy_dependency() -> None:
    assert loaded_after("import vgi_rpc") == []


def test_building_and_using_a_server_imports_no_heavy_dependency() -> None:
    body = f"""
sys.path.insert(0, {str(TESTS)!r})
import vgi_rpc
from vgi_rpc import RpcServer, serve_pipe, AnnotatedBatch
from support.services import Calculator, CalculatorImpl
server = RpcServer(Calculator, CalculatorImpl())
assert server.dispatch("add", a=1, b=2) == 3
with serve_pipe(server) as proxy:
    assert proxy.add(a=1, b=2) == 3
    assert len(list(proxy.countdown(n=2))) == 2
    with proxy.scale(factor=2.0) as s:
        s.exchange(AnnotatedBatch.from_pydict({{"x": [1.0]}}))
"""
    assert loaded_after(body) == []


@pytest.mark.parametrize(
    "module",
    [
        "vgi_rpc._types",
        "vgi_rpc.methods",
        "vgi_rpc.wire",
        "vgi_rpc.call",
        "vgi_rpc.server",
        "vgi_rpc.client",
        "vgi_rpc.pipe",
        "vgi_rpc.pipe.server",
        "vgi_rpc.pipe.client",
        "vgi_rpc.hooks",
        "vgi_rpc.streams",
        "vgi_rpc.context",
        "vgi_rpc.auth",
        "vgi_rpc.errors",
    ],
)
def test_core_modules_import_no_heavy_dependency(module: str) -> None:
    assert loaded_after(f"import {module}") == []


def test_the_probe_sees_heavy_modules_when_they_are_imported() -> None:
    """Positive control: the check above would fail if the core imported them."""
    loaded = loaded_after("import sentry_sdk, opentelemetry.trace, falcon")
    for name in ("sentry_sdk", "opentelemetry", "falcon"):
        assert name in loaded
