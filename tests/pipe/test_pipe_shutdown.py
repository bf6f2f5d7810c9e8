"""Stopping a ``run_server`` worker gracefully on SIGTERM/SIGINT (real processes, real signals).

The worker is ``support.shutdown``'s, started by ``connect`` through ``sh``, which
writes the worker's exit status to a file once it exits (``connect`` keeps its
``Popen`` to itself). What the pipe paragraph of the docs promises:

* a call in flight at the signal finishes, its answer reaches the client, and the
  worker then exits 0 (the next call finds the pipe closed: a transport error);
* a signal while waiting for a request stops the worker at once, exit 0;
* past the grace period the call is interrupted and nothing more is written: the
  client gets ``RpcError(error_kind="transport")``, never a cut-short answer; the
  worker still exits 0; so does a second signal, at once;
* ``handle_signals=False`` and an ignored SIGTERM leave the signal alone; the
  previous handlers are put back when ``run_server`` returns.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.shutdown import Drowsy, wait_started

from vgi_rpc import RpcError, connect

TESTS = Path(__file__).resolve().parents[1]
CODE = "from support.shutdown import main; main()"
# sh runs the worker, then writes its exit status: "$0" is python, "$1" the code, "$2" the grace,
# "$3" the status file, "$4" the file the worker's stderr goes to.
SHELL = '"$0" -c "$1" pipe "$2" 2> "$4"; echo $? > "$3"'


@dataclass
class PipeWorker:
    """A running worker: its proxy, pid, and where its start marks and exit status go."""

    proxy: Any
    pid: int
    started: Path
    status_file: Path
    stderr_file: Path

    def status(self, timeout: float = 30) -> int:
        """The worker's exit status, once ``sh`` wrote it (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.status_file.read_text().strip() if self.status_file.exists() else ""
            if text:
                return int(text)
            time.sleep(0.05)
        raise TimeoutError("the worker never exited")

    def stderr(self) -> str:
        return self.stderr_file.read_text() if self.stderr_file.exists() else ""


@contextmanager
def pipe_worker(tmp: Path, grace: float, **env: str) -> Iterator[PipeWorker]:
    pid_file, started, status_file, stderr_file = tmp / "pid", tmp / "started", tmp / "status", tmp / "stderr"
    cmd = ["sh", "-c", SHELL, sys.executable, CODE, str(grace), str(status_file), str(stderr_file)]
    full_env = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "VGI_PID_FILE": str(pid_file),
        "VGI_STARTED": str(started),
        **env,
    }
    with connect(Drowsy, cmd, env=full_env, timeout=60) as proxy:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield PipeWorker(proxy, int(pid_file.read_text()), started, status_file, stderr_file)


def in_thread(fn: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn(**kwargs)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_call_in_flight_at_the_signal_completes_then_the_worker_exits_0(
    sig: signal.Signals, tmp_path: Path
) -> None:
    with pipe_worker(tmp_path, 30) as w:
        t, out = in_thread(w.proxy.nap, seconds=2.0)
        wait_started(w.started, "nap")
        os.kill(w.pid, sig)
        t.join(30)
        assert out == {"value": 2.0}
        assert w.status() == 0
        assert "RETURNED RESTORED" in w.stderr()  # returned normally, the previous handlers put back
        with pytest.raises(RpcError) as info:  # the worker is gone: the next call cannot be served
            w.proxy.nap(seconds=0.0)
        assert (info.value.error_kind, info.value.error_code) == ("transport", "UNAVAILABLE")


def test_a_signal_while_idle_stops_the_worker_at_once(tmp_path: Path) -> None:
    with pipe_worker(tmp_path, 30) as w:
        assert w.proxy.nap(seconds=0.0) == 0.0  # served; now waiting for the next request
        os.kill(w.pid, signal.SIGTERM)
        assert w.status(timeout=15) == 0  # well under the 30 s grace: nothing was waited for


def test_past_the_grace_period_the_call_fails_with_a_transport_error(tmp_path: Path) -> None:
    with pipe_worker(tmp_path, 1) as w:
        t, out = in_thread(w.proxy.nap, seconds=5.0)
        wait_started(w.started, "nap")
        os.kill(w.pid, signal.SIGTERM)
        t.join(30)
        assert set(out) == {"error"}, out
        assert isinstance(out["error"], RpcError), out
        assert (out["error"].error_kind, out["error"].error_code) == ("transport", "UNAVAILABLE"), out
        assert w.status(timeout=15) == 0


def test_a_second_signal_ends_the_grace_period_at_once(tmp_path: Path) -> None:
    with pipe_worker(tmp_path, 30) as w:
        t, out = in_thread(w.proxy.nap, seconds=20.0)
        wait_started(w.started, "nap")
        os.kill(w.pid, signal.SIGTERM)
        time.sleep(0.2)
        os.kill(w.pid, signal.SIGTERM)
        t.join(30)
        assert isinstance(out.get("error"), RpcError), out
        assert (out["error"].error_kind, out["error"].error_code) == ("transport", "UNAVAILABLE"), out
        assert w.status(timeout=15) == 0


def test_without_handle_signals_sigterm_is_left_alone(tmp_path: Path) -> None:
    with pipe_worker(tmp_path, 30, VGI_HANDLE_SIGNALS="0") as w:
        t, out = in_thread(w.proxy.nap, seconds=5.0)
        wait_started(w.started, "nap")
        os.kill(w.pid, signal.SIGTERM)
        t.join(30)
        assert isinstance(out.get("error"), RpcError), out
        assert w.status() == 128 + signal.SIGTERM  # killed by the signal's default action, as sh reports it


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    with pipe_worker(tmp_path, 30, VGI_IGNORE_SIGTERM="1") as w:
        assert w.proxy.nap(seconds=0.0) == 0.0
        os.kill(w.pid, signal.SIGTERM)
        time.sleep(0.3)  # a handled SIGTERM would stop an idle worker at once
        assert w.proxy.nap(seconds=0.0) == 0.0  # still serving
        os.kill(w.pid, signal.SIGINT)
        assert w.status(timeout=15) == 0
        assert "RETURNED RESTORED" in w.stderr()
