"""A failing call in flight at SIGTERM: its Sentry error event leaves the process before it exits.

Real processes and the real SDK with its own HTTP transport, sending to a real
endpoint in this process (``support.sentry_endpoint``). The worker turns the SDK's
own exit flush off (``shutdown_timeout=0``), so the event arriving is the server's
stop-time flush (``sentry_flush_timeout``) at work, for ``serve_http`` and for
``run_server``. The endpoint ingests slowly (1 s before it records an envelope),
and it is read right after the process is reaped: nothing that arrives later
counts. The ``no-flush`` control (``sentry_flush_timeout=0``) finds no event then,
which shows the test can fail. Runs on both SDK generations (``tests/sentry`` runs
under ``.venv`` and ``.venv-sdk2``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.sentry_endpoint import SentryEndpoint
from support.shutdown import Drowsy, wait_started
from support.worker_process import PortWorker

from vgi_rpc import RpcError, connect
from vgi_rpc.http import http_connect

TESTS = Path(__file__).resolve().parents[1]
CODE = "from support.shutdown import main; main()"
MESSAGE = "failed while the server was stopping"


# "flush": the server's default stop-time flush; "no-flush": the control, sentry_flush_timeout=0,
# which must lose the event (it shows the test can fail).
FLUSH = pytest.mark.parametrize("flush", ["2", "0"], ids=["flush", "no-flush"])


@pytest.fixture
def endpoint() -> Iterator[SentryEndpoint]:
    # A slow ingest (1 s from reading an envelope to recording it): an event is recorded in
    # time only if its sender waits for the answer, as the stop-time flush does.
    with SentryEndpoint(ingest_delay=1.0) as e:
        yield e


def worker_env(tmp_path: Path, endpoint: SentryEndpoint, flush: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "VGI_STARTED": str(tmp_path / "started"),
        "VGI_PID_FILE": str(tmp_path / "pid"),
        "VGI_SENTRY_DSN": endpoint.dsn,
        "VGI_SENTRY_FLUSH_TIMEOUT": flush,
    }


def failing_call(proxy: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = proxy.nap_then_fail(seconds=2.0, message=MESSAGE)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def assert_completed_with_its_error(out: dict[str, Any]) -> None:
    error = out.get("error")
    assert isinstance(error, RpcError), out
    assert error.error_type == "ValueError" and MESSAGE in str(error), error  # the call's own answer


def assert_one_event(endpoint: SentryEndpoint, flush: str) -> None:
    events = endpoint.capture().events  # read now: the process has exited
    if flush == "0":
        assert events == []  # the control: without the stop-time flush the event is not in yet
        return
    assert len(events) == 1, events
    (event,) = events
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert event["exception"]["values"][-1]["value"] == MESSAGE
    assert event["transaction"] == "rpc nap_then_fail"


@FLUSH
@pytest.mark.parametrize("server", ["http", "embedded"], ids=["serve_http", "start_http_server"])
def test_an_http_server_sends_the_in_flight_calls_event_before_exiting(
    server: str, flush: str, tmp_path: Path, endpoint: SentryEndpoint
) -> None:
    """B10: SIGTERM to ``serve_http`` (or a program that stops its ``start_http_server`` handle on it).

    The failing call in flight completes with its own error, the process exits 0, and
    the call's error event has reached a real Sentry endpoint by then.
    """
    env = worker_env(tmp_path, endpoint, flush)
    worker = PortWorker([sys.executable, "-c", CODE, server, "30"], env=env)
    try:
        with http_connect(Drowsy, worker.url) as proxy:
            t, out = failing_call(proxy)
            wait_started(tmp_path / "started", "nap_then_fail")
            worker.proc.send_signal(signal.SIGTERM)
            t.join(30)
        assert_completed_with_its_error(out)
        assert worker.proc.wait(timeout=30) == 0
        assert_one_event(endpoint, flush)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.stop()


@FLUSH
def test_run_server_sends_the_in_flight_calls_event_before_exiting(
    flush: str, tmp_path: Path, endpoint: SentryEndpoint
) -> None:
    """B10: SIGTERM to a pipe worker mid-call: the call completes, exit 0, its event has arrived."""
    status = tmp_path / "status"
    # sh runs the worker and writes its exit status once it has exited (connect keeps its Popen).
    cmd = ["sh", "-c", '"$0" -c "$1" pipe 30; echo $? > "$2"', sys.executable, CODE, str(status)]
    with connect(Drowsy, cmd, env=worker_env(tmp_path, endpoint, flush)) as proxy:
        t, out = failing_call(proxy)
        wait_started(tmp_path / "started", "nap_then_fail")
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGTERM)
        t.join(30)
        assert_completed_with_its_error(out)
        deadline = time.monotonic() + 30
        while not (status.exists() and status.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert status.read_text().strip() == "0"  # written by sh after the worker exited
        assert_one_event(endpoint, flush)


def test_the_endpoint_reads_what_a_real_sdk_sends() -> None:
    """Control: the endpoint parses a real SDK's (compressed) envelopes in this SDK generation."""
    with SentryEndpoint() as endpoint:
        code = (
            f"import sentry_sdk; sentry_sdk.init(dsn={endpoint.dsn!r}); "
            "sentry_sdk.capture_message('hello endpoint'); sentry_sdk.flush(timeout=10)"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        events = endpoint.capture().events
    assert [e.get("message") or e.get("logentry", {}).get("message") for e in events] == ["hello endpoint"]
