"""``import vgi_rpc`` stays light: no Sentry, no OpenTelemetry, no Falcon until asked for.

Each check runs in a fresh interpreter (this pytest process may have imported
anything).  The time it takes is benchmarked in ``benchmarks/test_import.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("sentry_sdk", "opentelemetry", "falcon")

_PROBE = textwrap.dedent(
    """
    import json, sys
    {code}
    heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
    print(json.dumps(heavy))
    """
)

_SERVER = """
from typing import Protocol
import pyarrow as pa
import vgi_rpc
from vgi_rpc import CallContext, OutputCollector, ProducerState, RpcServer, Stream

class Svc(Protocol):
    def add(self, a: int, b: int) -> int: ...
    def count(self, n: int) -> Stream[ProducerState]: ...

class Count(ProducerState):
    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        out.finish()

class Impl:
    def add(self, a: int, b: int) -> int:
        return a + b
    def count(self, n: int) -> Stream[ProducerState]:
        return Stream(output_schema=pa.schema([("i", pa.int64())]), state=Count())

server = RpcServer(Svc, Impl())
assert server.hooks == ()
assert server.dispatch("add", a=1, b=2) == 3
"""


def heavy_modules_after(code: str) -> list[str]:
    """Run *code* in a fresh interpreter; return which of ``HEAVY`` it left in ``sys.modules``."""
    probe = _PROBE.format(code=textwrap.indent(textwrap.dedent(code), ""), heavy=HEAVY)
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import vgi_rpc", id="import vgi_rpc"),
        pytest.param(_SERVER, id="construct a server and dispatch"),
        pytest.param(
            _SERVER + "\nwith vgi_rpc.serve_pipe(server) as p:\n    assert p.add(a=1, b=2) == 3\n",
            id="serve_pipe call",
        ),
        pytest.param("import vgi_rpc.testing", id="import vgi_rpc.testing (the pytest plugin's import)"),
    ],
)
def test_core_imports_no_heavy_dependency(code: str) -> None:
    """``import vgi_rpc``, building a server and serving it import no optional heavy dependency."""
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize(
    ("module", "expected"),
    [("vgi_rpc.sentry", "sentry_sdk"), ("vgi_rpc.otel", "opentelemetry"), ("vgi_rpc.http", "falcon")],
)
def test_the_probe_sees_heavy_imports(module: str, expected: str) -> None:
    """The probe is not blind: importing the optional modules does show their dependency."""
    assert expected in heavy_modules_after(f"import {module}")
