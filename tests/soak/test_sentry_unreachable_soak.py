"""Memory stays flat while Sentry is unreachable, on the pipe and over HTTP (issue 22).

Each case starts ``tests/workers/soak_worker.py``: the real sentry-sdk with its default
integrations, ``traces_sample_rate=1.0`` and ``SentryConfig(enable_performance=True,
record_params=True)``, whose DSN either refuses connections (a closed port) or accepts
them and never answers. The test drives :data:`WARM_UP` calls, reads the worker's RSS
from ``/proc``, drives :data:`CALLS` more (one in ten fails, so error events are sent as
well as spans), and reads it again. Every result is checked.

Before the fix, sentry-sdk 3.0.0 over HTTP with a refused DSN grew by about 5 KiB per
call without levelling off (its transport worker, started inside a request, kept every
unfinished ``http.client`` span of its failed POSTs: docs/sentry.md "When Sentry itself
fails"); 20,000 calls then grow by about 100 MiB, so :data:`BOUND_MIB` separates the two.
Run by ``make test`` (3.x) and ``make test-sdk2`` (2.76.0).

The workers use Arrow's system memory pool (``ARROW_DEFAULT_MEMORY_POOL=system``).
pyarrow's default pool (mimalloc in the wheels) grows a threaded HTTP worker by about
0.3 MiB per 1,000 calls with no Sentry at all, which would drown what this test is
about (measured, and the operator's remedy: docs/http.md "Memory"); under the system
pool the same worker levels off.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.services import Calculator
from support.worker_process import PortWorker

from vgi_rpc import RpcError, connect
from vgi_rpc.http import http_connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

WORKER = Path(__file__).resolve().parents[1] / "workers" / "soak_worker.py"
WARM_UP = 2_000
CALLS = int(os.environ.get("VGI_RPC_SOAK_CALLS", "20000"))  # fewer only while developing
BOUND_MIB = 8.0
"""Most RSS growth allowed over :data:`CALLS` calls after the warm-up."""


WORKER_ENV = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None, status
    return int(match[1]) / 1024


@contextlib.contextmanager
def _unreachable_sentry(kind: str) -> Iterator[str]:
    """A DSN whose port refuses connections, or one whose server accepts and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if kind == "refused":
        listener.close()  # nothing listens there now: connections are refused
        yield f"http://public@127.0.0.1:{port}/1"
        return
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])  # accepted, never read, never answered

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield f"http://public@127.0.0.1:{port}/1"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def _drive(proxy: object, n: int, start: int) -> None:
    """*n* calls; every tenth fails. Every result is checked."""
    for i in range(start, start + n):
        if i % 10 == 0:
            with pytest.raises(RpcError) as info:
                proxy.fail(message=f"boom {i}")  # type: ignore[attr-defined]
            assert info.value.error_type == "ValueError" and f"boom {i}" in str(info.value)
        else:
            assert proxy.add(a=i, b=1) == i + 1  # type: ignore[attr-defined]


def _soak(proxy: object, pid: int, label: str) -> None:
    _drive(proxy, WARM_UP, 0)
    time.sleep(1)  # the SDK's first failed sends settle
    before = _rss_mib(pid)
    started = time.monotonic()
    _drive(proxy, CALLS, WARM_UP)
    seconds = time.monotonic() - started
    after = _rss_mib(pid)
    print(
        f"\n[soak] {label}: RSS {before:.1f} -> {after:.1f} MiB (+{after - before:.1f}) over "
        f"{CALLS} calls, {seconds:.0f} s",
        file=sys.__stderr__,
        flush=True,
    )
    assert after - before < BOUND_MIB, f"{label}: RSS grew {after - before:.1f} MiB over {CALLS} calls"


_OPEN_CASE = pytest.mark.xfail(
    reason="open (issue 22): with a DSN that never answers the HTTP worker grew +9.0 MiB (2.76.0, CI) "
    "and +7.0 MiB (3.0.0) over 20,000 calls, on the system pool too; the cause is not found yet",
    strict=False,
)


@pytest.mark.parametrize("sentry", ["refused", pytest.param("never_answers", marks=_OPEN_CASE)])
def test_http_worker_memory_stays_flat_while_sentry_is_unreachable(sentry: str) -> None:
    """B10, B5: 20,000 HTTP calls with Sentry unreachable grow the server by less than 8 MiB."""
    import sentry_sdk

    with (
        _unreachable_sentry(sentry) as dsn,
        PortWorker([sys.executable, str(WORKER), "http", dsn], env=WORKER_ENV) as worker,
        http_connect(Calculator, worker.url) as proxy,
    ):
        _soak(proxy, worker.proc.pid, f"http, {sentry}, sentry-sdk {sentry_sdk.VERSION}")


@pytest.mark.parametrize("sentry", ["refused", "never_answers"])
def test_pipe_worker_memory_stays_flat_while_sentry_is_unreachable(sentry: str, tmp_path: Path) -> None:
    """B10, B5: 20,000 pipe calls with Sentry unreachable grow the worker by less than 8 MiB."""
    import sentry_sdk

    pidfile = tmp_path / "pid"
    with (
        _unreachable_sentry(sentry) as dsn,
        connect(
            Calculator, [sys.executable, str(WORKER), "pipe", dsn, str(pidfile)], env=WORKER_ENV
        ) as proxy,
    ):
        assert proxy.add(a=1, b=2) == 3  # the worker is serving, so its pid is written
        pid = int(pidfile.read_text())
        _soak(proxy, pid, f"pipe, {sentry}, sentry-sdk {sentry_sdk.VERSION}")


def test_the_documented_sdk_only_reproduction_shows_the_sdk_bug(tmp_path: Path) -> None:
    """B10: the reproduction in docs/sentry.md is true of the SDK it names (3.0.0), without vgi-rpc.

    It is what the worker is protected from: unfinished ``http.client`` spans of the
    SDK's own refused POSTs. On another SDK the workaround may be unneeded: the test
    then says so instead of asserting the bug.
    """
    import subprocess

    import sentry_sdk

    if sentry_sdk.VERSION != "3.0.0":
        pytest.skip(f"the reproduction is for sentry-sdk 3.0.0; this is {sentry_sdk.VERSION}")
    page = (Path(__file__).resolve().parents[2] / "docs" / "sentry.md").read_text()
    code = page.split("import gc, socket, time\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "repro.py"
    script.write_text("import gc, socket, time\n" + code)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    )
    count, names = out.stdout.strip().split(" ", 1)
    assert int(count) > 0 and "POST http://127.0.0.1:" in names, out.stdout
    assert "vgi_rpc" not in script.read_text()  # the SDK alone
