"""``import vgi_rpc`` (and building and using an ``RpcServer``) stays light.

Each check runs in a fresh interpreter and inspects ``sys.modules``: the core
must not import ``sentry_sdk``, ``opentelemetry`` or ``falcon`` (nor our own
modules that wrap them), and ``vgi_rpc.http`` imports neither instrumentation
until ``make_wsgi_app`` is given a config for it. This is the half of the import
rules that import-linter cannot see (``[tool.importlinter]`` in ``pyproject.toml``
allows the auto-attach seam ``vgi_rpc.server -> vgi_rpc.sentry`` and
``make_wsgi_app``'s two imports; only a real import shows they run inside a
function). A positive control shows the probe does see those packages when they
are imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
CORE_LAYER = tomllib.loads((TESTS.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]["contracts"][0]["layers"][-1]
CORE = sorted(f"vgi_rpc.{tail.strip()}" for tail in CORE_LAYER.split(":"))
"""The core layer of the import contracts: a new core module is checked here without being listed."""
HEAVY = ("sentry_sdk", "opentelemetry", "falcon")
OURS_HEAVY = ("vgi_rpc.sentry", "vgi_rpc._sentry", "vgi_rpc.otel", "vgi_rpc.http")

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
    "module", [*CORE, "vgi_rpc.pipe", "vgi_rpc.pipe.server", "vgi_rpc.pipe.client", "vgi_rpc._pipe_io"]
)
def test_core_modules_import_no_heavy_dependency(module: str) -> None:
    assert loaded_after(f"import {module}") == []


def test_the_core_layer_is_read_from_the_contracts() -> None:
    assert {"vgi_rpc.server", "vgi_rpc.call", "vgi_rpc.wire", "vgi_rpc.errors"} <= set(CORE)


def test_the_http_transport_imports_no_instrumentation_until_configured() -> None:
    """``make_wsgi_app`` imports ``vgi_rpc.sentry`` / ``vgi_rpc.otel`` only when given their config."""
    body = f"""
sys.path.insert(0, {str(TESTS)!r})
from vgi_rpc import RpcServer
from vgi_rpc.http import make_wsgi_app
from support.services import Calculator, CalculatorImpl
make_wsgi_app(RpcServer(Calculator, CalculatorImpl()))
"""
    loaded = loaded_after(body)
    assert "falcon" in loaded and "vgi_rpc.http" in loaded  # the probe saw the transport load
    instrumentation = [m for m in loaded if m.split(".")[0] in ("sentry_sdk", "opentelemetry")]
    assert instrumentation == [], instrumentation
    assert [m for m in loaded if m.startswith(("vgi_rpc.sentry", "vgi_rpc._sentry", "vgi_rpc.otel"))] == []


def test_the_probe_sees_heavy_modules_when_they_are_imported() -> None:
    """Positive control: the check above would fail if the core imported them."""
    loaded = loaded_after("import sentry_sdk, opentelemetry.trace, falcon")
    for name in ("sentry_sdk", "opentelemetry", "falcon"):
        assert name in loaded
