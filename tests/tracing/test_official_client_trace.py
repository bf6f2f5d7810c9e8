"""The official vgi-rpc 0.52.2 client's ``traceparent`` trace continues in our pipe worker's Sentry.

The official client (``.venv-peer``, Python 3.13: ``tests/workers/trace_official_client.py``)
opens an OpenTelemetry span and calls our pipe worker (``tests/workers/trace_worker.py``,
run by *this* interpreter, so on sentry-sdk 3.x under ``.venv`` and 2.x under
``.venv-sdk2``) through its own ``connect``: ``add``, then ``fail``. Inside a span
the official client writes the W3C ``traceparent`` into each request batch's
custom metadata. Our worker has Sentry with the in-memory transport (performance
on) and writes its envelopes as JSON when it exits; they are read here with
``SentryCapture.from_envelopes``.

Promise checked: the Sentry error event and the worker's segments join the
official client's trace (same trace id; the segments' parent span id is the
client's span id).

The peer venv holds the official ``vgi-rpc[http,otel]`` (``make peer-venv``): its
client injects ``traceparent`` only when ``opentelemetry`` imports. Skipped, saying
why, when ``.venv-peer`` is missing or has no OpenTelemetry; under ``CI`` a peer venv
without OpenTelemetry fails instead (CI builds it, so it must be complete).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.tracing import WorkerEnvelopes, ids, worker_cmd

ROOT = Path(__file__).resolve().parents[2]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
CLIENT = ROOT / "tests" / "workers" / "trace_official_client.py"

pytestmark = pytest.mark.skipif(
    not PEER_PYTHON.exists(),
    reason="the peer venv .venv-peer (official vgi-rpc 0.52.2 on Python 3.13) is missing: run `make peer-venv`",
)


def peer_has_otel(cwd: Path) -> bool:
    """Whether the peer venv imports the OpenTelemetry SDK by itself."""
    probe = "import importlib.util as u; print(u.find_spec('opentelemetry') is not None and u.find_spec('opentelemetry.sdk') is not None)"
    out = subprocess.run([str(PEER_PYTHON), "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=60)
    return out.stdout.strip() == "True"


def run_official_client(tmp_path: Path, out: Path) -> dict[str, object]:
    """Run the official client against a trace worker writing to *out*; its JSON report."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    if not peer_has_otel(tmp_path):
        why = "the peer venv has no OpenTelemetry: rebuild it with `make peer-venv` (vgi-rpc[http,otel])"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    proc = subprocess.run(
        [str(PEER_PYTHON), str(CLIENT), json.dumps(worker_cmd(out))],
        cwd=tmp_path,  # not the checkout: its vgi_rpc/ would shadow the official package
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"official client failed ({proc.returncode}):\n{proc.stderr}"
    report: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def test_the_official_clients_otel_trace_continues_in_our_workers_sentry(tmp_path: Path) -> None:
    """Sentry event and worker segments join the official client's ``traceparent`` trace."""
    out = tmp_path / "worker-envelopes.json"
    report = run_official_client(tmp_path, out)
    assert report["add"] == 3
    error_type, message = report["error"]  # type: ignore[misc]
    assert error_type == "ValueError" and "boom" in message
    trace_id, span_id = str(report["trace_id"]), str(report["span_id"])
    seen = WorkerEnvelopes(out).capture
    event = seen.event("fail")
    assert event["contexts"]["trace"]["trace_id"] == trace_id, seen.describe()
    for method in ("add", "fail"):
        assert ids(seen.transaction(method)) == (trace_id, span_id), seen.describe()
