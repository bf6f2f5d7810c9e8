"""The pipe client's failures use the HTTP client's codes (docs/http.md, the client).

``RpcError("TransportError", error_kind="transport")`` with gRPC's codes:
``UNAVAILABLE`` when the worker is gone (exited, killed mid-call) or the connection
was given up earlier, ``DATA_LOSS`` when the worker writes bytes that are not Arrow
IPC, ``DEADLINE_EXCEEDED`` past the timeout. Real worker processes; every wait is
bounded.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from support.sleepy import Sleepy, SleepyImpl

from vgi_rpc import RpcError, connect, serve_pipe

pytestmark = pytest.mark.timeout(60)

SLOW = [sys.executable, str(Path(__file__).resolve().parents[1] / "workers" / "slow_worker.py")]


def assert_transport(exc: RpcError, code: str, *fragments: str) -> None:
    assert exc.error_type == "TransportError", exc
    assert exc.error_kind == "transport"
    assert exc.error_code == code, exc
    assert str(exc).startswith("TransportError: pipe transport "), str(exc)
    for fragment in fragments:
        assert fragment in str(exc), str(exc)


def worker_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.02)
    return int(pid_file.read_text())


def test_a_worker_that_exits_is_unavailable() -> None:
    with connect(Sleepy, [sys.executable, "-c", "import sys; sys.exit(3)"]) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.nap(seconds=0.0)
        assert_transport(info.value, "UNAVAILABLE", "during call to 'nap'")


def test_a_worker_writing_garbage_is_data_loss_then_unavailable() -> None:
    script = "import sys; sys.stdin.buffer.read(8); sys.stdout.write('this is not arrow'); sys.stdout.flush()"
    with connect(Sleepy, [sys.executable, "-c", script]) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.nap(seconds=0.0)
        assert_transport(info.value, "DATA_LOSS", "this is not arrow", "the worker was killed")
        with pytest.raises(RpcError) as later:
            proxy.nap(seconds=0.0)
    assert later.value.error_kind == "transport"
    assert later.value.error_code == "UNAVAILABLE"
    assert str(later.value).startswith("TransportError: the pipe connection is closed: ")


def test_a_worker_killed_mid_call_is_unavailable(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with connect(Sleepy, SLOW, env={**os.environ, "VGI_PID_FILE": str(pid_file)}) as proxy:
        assert proxy.nap(seconds=0.0) == 0.0
        caught: list[BaseException] = []

        def call() -> None:
            try:
                proxy.nap(seconds=30.0)
            except BaseException as exc:
                caught.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.2)  # let the request reach the worker (either way the call must fail)
        os.kill(worker_pid(pid_file), signal.SIGKILL)
        caller.join(timeout=30)
        assert not caller.is_alive(), "the call hung after the worker died"
        assert len(caught) == 1 and isinstance(caught[0], RpcError), caught
        assert_transport(caught[0], "UNAVAILABLE", "during call to 'nap'")
        with pytest.raises(RpcError) as later:
            proxy.nap(seconds=0.0)
        assert_transport(later.value, "UNAVAILABLE")


def test_a_worker_killed_mid_stream_is_unavailable_not_a_short_stream(tmp_path: Path) -> None:
    """The producer's second turn sleeps; SIGKILL then: the iteration raises, it does not just end."""
    pid_file = tmp_path / "pid"
    with connect(Sleepy, SLOW, env={**os.environ, "VGI_PID_FILE": str(pid_file)}) as proxy:
        rows: list[int] = []
        stream = iter(proxy.slow_count(n=3, nap_at=1, seconds=30.0))
        rows.append(next(stream).batch.column("i")[0].as_py())
        killer = threading.Timer(0.3, lambda: os.kill(worker_pid(pid_file), signal.SIGKILL))
        killer.start()
        try:
            with pytest.raises(RpcError) as info:
                rows.extend(b.batch.column("i")[0].as_py() for b in stream)
        finally:
            killer.join(timeout=10)
        assert rows == [0]
        assert_transport(info.value, "UNAVAILABLE", "'slow_count'")


def test_a_call_past_its_timeout_is_deadline_exceeded() -> None:
    with serve_pipe(Sleepy, SleepyImpl(), timeout=0.5) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.nap(seconds=3.0)
        assert_transport(info.value, "DEADLINE_EXCEEDED", "within 0.5 s")
        with pytest.raises(RpcError) as later:
            proxy.nap(seconds=0.0)
        assert later.value.error_code == "UNAVAILABLE"
