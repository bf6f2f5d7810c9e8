"""Stopping an HTTP server gracefully: ``serve_http`` on SIGTERM/SIGINT, ``HttpServerHandle.stop()``.

Real processes, real signals, real waitress on 127.0.0.1 (``support.shutdown``'s
worker). What ``docs/http.md`` "Stopping" promises:

* a call in flight when the signal arrives finishes and its client gets the answer;
  the process then exits 0;
* from the signal on, new connections are refused (the listening socket is closed),
  never accepted and dropped;
* idle keep-alive connections do not hold the stop;
* past the grace period a call still running loses its connection: its client gets
  ``RpcError(error_kind="transport")``, never a cut-short answer; a slowloris
  connection (a request that never completes) is closed then too, and the process
  still exits 0;
* ``start_http_server(...).stop()`` drains the same way, in this process.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.shutdown import Drowsy, DrowsyImpl, wait_started
from support.worker_process import PortWorker

from vgi_rpc import RpcError
from vgi_rpc.http import http_connect, start_http_server

TESTS = Path(__file__).resolve().parents[1]
CODE = "from support.shutdown import main; main()"
KEY = b"a token key for the shutdown tests!"


class Worker(PortWorker):
    """``support.shutdown``'s ``serve_http`` worker with *grace* seconds of grace."""

    def __init__(self, grace: float, started: Path, **env: str) -> None:
        self.started = started
        super().__init__(
            [sys.executable, "-c", CODE, "http", str(grace)],
            env={**os.environ, "PYTHONPATH": str(TESTS), "VGI_STARTED": str(started), **env},
        )

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return str(self.stderr.read().decode(errors="replace"))


@pytest.fixture
def started(tmp_path: Path) -> Path:
    return tmp_path / "started"


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for w in made:
        if w.proc.poll() is None:
            w.proc.kill()
        w.stop()


class InFlight:
    """One call running on its own thread; ``result()`` is its value or the exception it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._value = call()
        except BaseException as exc:
            self._error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 30) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the call never returned"
        if self._error is not None:
            raise self._error
        return self._value


def call_on(url: str, method: str, **kwargs: Any) -> InFlight:
    def run() -> Any:
        with http_connect(Drowsy, url) as proxy:
            return getattr(proxy, method)(**kwargs)

    return InFlight(run)


def refused(port: int) -> bool:
    """Whether a connection to *port* is refused now.

    A reset during connect means the listener closed with this attempt still in
    its backlog: not yet refused, so the caller polls again.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False


def wait_refused(port: int, timeout: float = 10) -> bool:
    """Whether connecting to *port* is refused within *timeout* s (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if refused(port):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_call_in_flight_at_the_signal_completes_and_the_process_exits_0(
    sig: signal.Signals, started: Path, workers: list[Worker]
) -> None:
    w = Worker(30, started)
    workers.append(w)
    call = call_on(w.url, "nap", seconds=2.0)
    wait_started(started, "nap")
    w.proc.send_signal(sig)
    # During the grace period a new connection is refused by the kernel, not accepted and dropped.
    assert wait_refused(w.port)
    still_running = not call.done  # ... while the call is still running
    assert call.result() == 2.0
    assert still_running
    assert w.proc.wait(timeout=30) == 0, w.stderr_text()
    assert "RETURNED RESTORED" in w.stderr_text()  # returned normally, the previous handlers put back


def test_idle_keep_alive_connections_do_not_hold_the_stop(started: Path, workers: list[Worker]) -> None:
    """An idle keep-alive connection is closed at once: the process exits well before its 30 s grace."""
    w = Worker(30, started)
    workers.append(w)
    idle = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    idle.request("GET", "/health")
    answer = idle.getresponse()
    assert answer.status == 200
    answer.read()  # the whole answer; the keep-alive connection stays open, idle
    assert idle.sock is not None
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=15) == 0  # < the 30 s grace: nothing was waited for
    assert idle.sock.recv(65536) == b""  # closed by the server, cleanly
    idle.close()


def test_past_the_grace_period_the_call_fails_with_a_transport_error(
    started: Path, workers: list[Worker]
) -> None:
    w = Worker(1, started)
    workers.append(w)
    call = call_on(w.url, "nap", seconds=5.0)
    wait_started(started, "nap")
    w.proc.send_signal(signal.SIGTERM)
    with pytest.raises(RpcError) as info:
        call.result()
    assert (info.value.error_kind, info.value.error_code) == ("transport", "UNAVAILABLE"), info.value
    assert w.proc.wait(timeout=15) == 0  # the abandoned call's thread does not keep the process alive
    assert "grace period over with 1 call(s) still running" in w.stderr_text()


def test_a_slowloris_connection_is_closed_at_the_end_of_the_grace_period(
    started: Path, workers: list[Worker]
) -> None:
    w = Worker(1, started)
    workers.append(w)
    slow = socket.create_connection(("127.0.0.1", w.port), timeout=20)
    slow.sendall(b"POST /Drowsy/nap HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")  # never finished
    time.sleep(0.2)  # let the server read the partial request (it is then busy, not idle)
    w.proc.send_signal(signal.SIGTERM)
    assert wait_refused(w.port)
    assert w.proc.wait(timeout=15) == 0
    try:
        rest = slow.recv(65536)
    except ConnectionResetError:
        rest = b""
    assert rest == b""  # closed without an answer
    slow.close()


def test_a_request_being_received_at_the_signal_may_finish_within_the_grace(
    started: Path, workers: list[Worker]
) -> None:
    w = Worker(30, started)
    workers.append(w)
    upload = socket.create_connection(("127.0.0.1", w.port), timeout=20)
    upload.sendall(b"POST /Drowsy/nap HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
    time.sleep(0.2)  # the server has read the first half
    w.proc.send_signal(signal.SIGTERM)
    assert wait_refused(w.port)  # stopping: no new connections ...
    upload.sendall(b"def")  # ... but the request under way is finished and answered
    answer = upload.recv(65536)
    assert answer.startswith(b"HTTP/1.1 "), answer  # (an error answer: "abcdef" is no Arrow request)
    upload.close()
    assert w.proc.wait(timeout=15) == 0


def test_a_second_signal_ends_the_grace_period_at_once(started: Path, workers: list[Worker]) -> None:
    w = Worker(30, started)
    workers.append(w)
    call = call_on(w.url, "nap", seconds=20.0)
    wait_started(started, "nap")
    w.proc.send_signal(signal.SIGTERM)
    assert wait_refused(w.port)
    w.proc.send_signal(signal.SIGTERM)
    with pytest.raises(RpcError) as info:
        call.result()
    assert (info.value.error_kind, info.value.error_code) == ("transport", "UNAVAILABLE"), info.value
    assert w.proc.wait(timeout=15) == 0  # long before the 20 s call or the 30 s grace


def test_without_handle_signals_a_keyboard_interrupt_still_stops_gracefully(
    started: Path, workers: list[Worker]
) -> None:
    w = Worker(30, started, VGI_HANDLE_SIGNALS="0")
    workers.append(w)
    call = call_on(w.url, "nap", seconds=2.0)
    wait_started(started, "nap")
    w.proc.send_signal(signal.SIGINT)  # Python's own handler: KeyboardInterrupt in serve_http
    assert call.result() == 2.0
    assert w.proc.wait(timeout=30) == 0


def test_an_ignored_sigterm_stays_ignored(started: Path, workers: list[Worker]) -> None:
    w = Worker(30, started, VGI_IGNORE_SIGTERM="1")
    workers.append(w)
    w.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # a handled SIGTERM would have closed the listener within milliseconds
    with contextlib.closing(http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)) as still:
        still.request("GET", "/health")
        assert still.getresponse().status == 200
    w.proc.send_signal(signal.SIGINT)
    assert w.proc.wait(timeout=15) == 0
    assert "RETURNED RESTORED" in w.stderr_text()


# --------------------------------------------------------------------------- start_http_server


@pytest.fixture
def started_env(started: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VGI_STARTED", str(started))
    return started


def test_stop_drains_a_call_in_flight(started_env: Path) -> None:
    handle = start_http_server(Drowsy, DrowsyImpl(), grace_period=30, token_key=KEY)
    try:
        call = call_on(handle.base_url, "nap", seconds=2.0)
        wait_started(started_env, "nap")
        stopper = threading.Thread(target=handle.stop)
        stopper.start()
        assert wait_refused(handle.port)
        assert not call.done
        assert call.result() == 2.0
        stopper.join(30)
        assert not stopper.is_alive()
    finally:
        handle.stop()


def test_stop_past_its_grace_period_fails_the_call_with_a_transport_error(started_env: Path) -> None:
    handle = start_http_server(Drowsy, DrowsyImpl(), token_key=KEY)
    call = call_on(handle.base_url, "nap", seconds=3.0)
    wait_started(started_env, "nap")
    handle.stop(grace_period=0.5)
    with pytest.raises(RpcError) as info:
        call.result()
    assert (info.value.error_kind, info.value.error_code) == ("transport", "UNAVAILABLE"), info.value
    assert refused(handle.port)


def test_bad_stop_options_are_refused() -> None:
    with pytest.raises(ValueError, match="grace_period"):
        start_http_server(Drowsy, DrowsyImpl(), grace_period=-1, token_key=KEY)
