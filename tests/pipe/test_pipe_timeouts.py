"""Pipe client timeouts: ``connect(..., timeout=)`` and ``serve_pipe(..., timeout=)``.

A worker that neither answers nor exits, stops reading, or writes bytes that are not
Arrow IPC must cost the caller a clean ``RpcError``, not a hang: on a timeout the
worker is killed (subprocess) or the pipes closed (in-process), and the proxy refuses
every later call at once. Workers are real subprocesses (``tests/workers/``); each
test is bounded by a 1-2 s timeout (pytest-timeout guards the rest).
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from support.sleepy import Sleepy

from vgi_rpc import RpcError, connect, serve_pipe
from vgi_rpc.pipe import DEFAULT_TIMEOUT

WORKERS = Path(__file__).resolve().parents[1] / "workers"
SLOW = [sys.executable, str(WORKERS / "slow_worker.py")]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pid"
    yield path


def worker_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.02)
    return int(pid_file.read_text())


def is_dead(pid: int) -> bool:
    """True once *pid* is gone or a zombie (killed, not yet reaped by connect's exit)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def assert_timed_out(exc: RpcError, what: str) -> None:
    assert exc.error_type == "TransportError"
    assert exc.error_kind == "transport"
    assert exc.error_code == "DEADLINE_EXCEEDED"
    assert what in exc.error_message
    assert "within 1 s" in exc.error_message


def test_the_default_timeout_is_documented() -> None:
    assert DEFAULT_TIMEOUT == 60.0
    for entry in (connect, serve_pipe):
        assert inspect.signature(entry).parameters["timeout"].default == DEFAULT_TIMEOUT
        assert "DEFAULT_TIMEOUT" in (entry.__doc__ or "")


def test_a_call_past_its_timeout_kills_the_worker(pid_file: Path) -> None:
    env = {**os.environ, "VGI_PID_FILE": str(pid_file)}
    with connect(Sleepy, SLOW, env=env, timeout=1) as proxy:
        assert proxy.nap(seconds=0.1) == 0.1  # within the timeout: fine
        pid = worker_pid(pid_file)
        with pytest.raises(RpcError) as info:
            proxy.nap(seconds=30)
        assert_timed_out(info.value, "call to 'nap'")
        assert "the worker was killed" in info.value.error_message
        deadline = time.monotonic() + 10
        while not is_dead(pid):
            assert time.monotonic() < deadline, "the worker is still running"
            time.sleep(0.05)
        with pytest.raises(RpcError, match="the pipe connection is closed: call to 'nap' got no answer"):
            proxy.nap(seconds=0)


def test_the_timeout_is_per_call_not_per_connection() -> None:
    with connect(Sleepy, SLOW, timeout=1) as proxy:
        for _ in range(4):  # 4 x 0.4 s is longer than the timeout, each call is not
            assert proxy.nap(seconds=0.4) == 0.4


def test_a_slow_stream_turn_times_out() -> None:
    with connect(Sleepy, SLOW, timeout=1) as proxy:
        rows = []
        with pytest.raises(RpcError) as info:
            for batch in proxy.slow_count(n=5, nap_at=2, seconds=30):
                rows += batch.batch.column("i").to_pylist()
        assert rows == [0, 1]
        assert_timed_out(info.value, "a turn of stream 'slow_count'")
        with pytest.raises(RpcError, match="the pipe connection is closed"):
            proxy.nap(seconds=0)


def test_a_worker_that_stops_reading_times_out_the_write() -> None:
    """8 MiB into a worker that reads nothing: the pipe fills and the write must give up."""
    deaf = [sys.executable, "-c", "import time; time.sleep(600)"]
    with connect(Sleepy, deaf, timeout=1) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.size(data=b"x" * (8 << 20))
        assert_timed_out(info.value, "call to 'size'")


def test_a_worker_that_writes_garbage_gets_a_clean_error_at_once() -> None:
    """A stray print on stdout, then silence: named at once, even with no timeout at all."""
    chatty = [
        sys.executable,
        "-c",
        "import os, sys, time; sys.stdin.buffer.read(1); os.write(1, b'hello from a stray print\\n'); time.sleep(600)",
    ]
    with connect(Sleepy, chatty, timeout=None) as proxy:
        with pytest.raises(RpcError) as info:
            proxy.nap(seconds=0)
        message = info.value.error_message
        assert info.value.error_kind == "transport"
        assert "bytes that are not Arrow IPC" in message
        assert "b'hello from a stray print\\n'" in message
        assert "print to stderr" in message
        with pytest.raises(RpcError, match="the pipe connection is closed"):
            proxy.nap(seconds=0)


class Stuck(Protocol):
    def wait(self) -> int: ...

    def ping(self) -> int: ...


class StuckImpl:
    def __init__(self) -> None:
        self.release = threading.Event()

    def wait(self) -> int:
        self.release.wait(30)
        return 1

    def ping(self) -> int:
        return 2


def test_serve_pipe_closes_the_pipes_on_a_timeout() -> None:
    impl = StuckImpl()
    started = time.monotonic()
    try:
        with serve_pipe(Stuck, impl, timeout=1) as proxy:
            assert proxy.ping() == 2
            with pytest.raises(RpcError) as info:
                proxy.wait()
            assert_timed_out(info.value, "call to 'wait'")
            assert "the pipes were closed" in info.value.error_message
            with pytest.raises(RpcError, match="the pipe connection is closed"):
                proxy.ping()
        assert time.monotonic() - started < 25, "leaving serve_pipe waited for the stuck call"
    finally:
        impl.release.set()
