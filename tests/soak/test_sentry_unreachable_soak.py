"""Memory stays flat while Sentry is unreachable, on the pipe and over HTTP (issue 22).

Each case starts ``tests/workers/soak_worker.py``: the real sentry-sdk with its default
integrations, ``traces_sample_rate=1.0`` and ``SentryConfig(enable_performance=True,
record_params=True)``, whose DSN either refuses connections (a closed port) or accepts
them and never answers. The test drives :data:`WARM_UP` calls, then :data:`CALLS` more in
:data:`CHECKPOINTS` steps (one in ten fails, so error events are sent as well as spans);
every result is checked. At each checkpoint the worker reports its RSS and glibc's
``mallinfo2`` figures (``SIGUSR1``, see tests/workers/soak_worker.py), and the test prints
them through ``capsys.disabled()`` so the CI log shows them. It asserts that live malloc
memory grows by less than :data:`HEAP_BOUND_MIB` and RSS by less than :data:`BOUND_MIB`.

One thing is open (:data:`_OPEN`): over HTTP on a busy machine, RSS creeps while live
malloc memory stays flat; the growth is freed heap glibc keeps (``fordblks``), the same
worker with no DSN creeps the same way, and it had not levelled off by 28,000 calls (with
a DSN that never answers: 6-9 MiB over 20,000 calls). On an idle machine it levels off.
Over HTTP, when RSS passes the bound, the test requires the excess to be that freed heap
(anything else still fails: the 3.0.0 span chain below is live memory) and reports the
case as an expected failure.

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
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
CHECKPOINTS = 4
"""How many times the worker's memory is read (and printed) after the warm-up."""
MIB = 1024 * 1024
BOUND_MIB = 8.0
"""Most RSS growth allowed over :data:`CALLS` calls after the warm-up."""
HEAP_BOUND_MIB = 2.0
"""Most growth of live malloc memory (glibc ``mallinfo2().uordblks``) over :data:`CALLS` calls."""


def _worker_env(stats: Path) -> dict[str, str]:
    """The worker's environment: Arrow's system pool, and where it writes its memory figures."""
    return {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system", "VGI_RPC_SOAK_STATS": str(stats)}


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


_OPEN = (
    "open (issue 22): over HTTP the worker's live malloc memory stays flat, but on a busy machine "
    "the freed heap glibc keeps (mallinfo2 fordblks) creeps by about 0.3 MiB per 1,000 calls, with "
    "or without a DSN (no DSN: +3 MiB over 10,000 calls), not levelled off by 28,000 calls; on an "
    "idle machine the same worker levels off (a DSN that never answers, 60,000 calls: RSS +1 MiB on "
    "3.0.0, +3 MiB on 2.76.0, flat after 24,000). MALLOC_ARENA_MAX=1 or 2 and a 1 s SDK transport "
    "timeout leave the creep unchanged"
)


@dataclass
class _Sample:
    """The worker's memory at one checkpoint (bytes; the heap figures ``None`` off glibc)."""

    calls: int
    rss: int
    heap_used: int | None
    heap_free: int | None

    def line(self) -> str:
        heap = (
            ""
            if self.heap_used is None or self.heap_free is None
            else f", malloc in use {self.heap_used / MIB:.1f}, malloc free {self.heap_free / MIB:.1f}"
        )
        return f"{self.calls:>6} calls: RSS {self.rss / MIB:.1f}{heap} MiB"


def _sample(pid: int, stats: Path, calls: int) -> _Sample:
    """Ask the worker for its memory figures (``SIGUSR1``: tests/workers/soak_worker.py) and read them."""
    lines = len(stats.read_text().splitlines()) if stats.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        written = stats.read_text().splitlines() if stats.exists() else []
        if len(written) > lines and written[-1].endswith("}"):
            got = json.loads(written[-1])
            return _Sample(calls, got["rss"], got["heap_used"], got["heap_free"])
        time.sleep(0.05)
    raise AssertionError(f"the worker wrote no memory figures to {stats} within 10 s")


def _soak(
    proxy: object,
    pid: int,
    stats: Path,
    label: str,
    capsys: pytest.CaptureFixture[str],
    *,
    retains: bool = False,
) -> None:
    """Warm up, then drive :data:`CALLS` calls in :data:`CHECKPOINTS` steps; print and check the memory."""
    _drive(proxy, WARM_UP, 0)
    time.sleep(1)  # the SDK's first failed sends settle
    samples = [_sample(pid, stats, WARM_UP)]
    started = time.monotonic()
    step = max(1, CALLS // CHECKPOINTS)
    done = 0
    while done < CALLS:
        n = min(step, CALLS - done)
        _drive(proxy, n, WARM_UP + done)
        done += n
        samples.append(_sample(pid, stats, WARM_UP + done))
    seconds = time.monotonic() - started
    first, last = samples[0], samples[-1]
    with capsys.disabled():  # pytest's capture would hide these from the CI log
        print(f"\n[soak] {label}: {CALLS} calls after a {WARM_UP}-call warm-up, {seconds:.0f} s", flush=True)
        for sample in samples:
            print(f"[soak]   {sample.line()}", flush=True)
        print(f"[soak]   RSS +{(last.rss - first.rss) / MIB:.1f} MiB", flush=True)
    if first.heap_used is not None and last.heap_used is not None:
        grown = (last.heap_used - first.heap_used) / MIB
        assert grown < HEAP_BOUND_MIB, f"{label}: live malloc memory grew {grown:.1f} MiB over {CALLS} calls"
    grown = (last.rss - first.rss) / MIB
    if retains and grown >= BOUND_MIB and last.heap_free is not None and first.heap_free is not None:
        kept = (last.heap_free - first.heap_free) / MIB
        # The RSS beyond the bound must be freed memory glibc keeps, not memory anyone holds.
        assert grown - kept < BOUND_MIB, f"{label}: RSS grew {grown:.1f} MiB, {kept:.1f} of it malloc free"
        pytest.xfail(f"{label}: RSS +{grown:.1f} MiB, of which glibc keeps {kept:.1f} MiB freed: {_OPEN}")
    assert grown < BOUND_MIB, f"{label}: RSS grew {grown:.1f} MiB over {CALLS} calls"


@pytest.mark.parametrize("sentry", ["refused", "never_answers"])
def test_http_worker_memory_stays_flat_while_sentry_is_unreachable(
    sentry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """B10, B5: 20,000 HTTP calls with Sentry unreachable: live memory flat, RSS under 8 MiB.

    The RSS bound is still open over HTTP (:data:`_OPEN`): past it, the test requires the
    excess to be freed heap glibc keeps, and reports the case as an expected failure.
    """
    import sentry_sdk

    stats = tmp_path / "stats"
    with (
        _unreachable_sentry(sentry) as dsn,
        PortWorker([sys.executable, str(WORKER), "http", dsn], env=_worker_env(stats)) as worker,
        http_connect(Calculator, worker.url) as proxy,
    ):
        label = f"http, {sentry}, sentry-sdk {sentry_sdk.VERSION}"
        _soak(proxy, worker.proc.pid, stats, label, capsys, retains=True)


@pytest.mark.parametrize("sentry", ["refused", "never_answers"])
def test_pipe_worker_memory_stays_flat_while_sentry_is_unreachable(
    sentry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """B10, B5: 20,000 pipe calls with Sentry unreachable: live memory flat, RSS under 8 MiB."""
    import sentry_sdk

    pidfile = tmp_path / "pid"
    with (
        _unreachable_sentry(sentry) as dsn,
        connect(
            Calculator,
            [sys.executable, str(WORKER), "pipe", dsn, str(pidfile)],
            env=_worker_env(tmp_path / "stats"),
        ) as proxy,
    ):
        assert proxy.add(a=1, b=2) == 3  # the worker is serving, so its pid is written
        pid = int(pidfile.read_text())
        _soak(proxy, pid, tmp_path / "stats", f"pipe, {sentry}, sentry-sdk {sentry_sdk.VERSION}", capsys)


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
