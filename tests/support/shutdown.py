"""The shutdown tests' service and worker processes (``tests/*/test_*_shutdown.py``).

:class:`Drowsy` has calls that take as long as asked (one of them then fails, for
Sentry's error event). Each call appends its name to the file named by
``$VGI_STARTED`` when it starts, so a test knows a call is in flight before it
sends a signal, without guessing with sleeps.

Workers (run as ``python -c "from support.shutdown import main; main()" <transport>
<grace>`` with ``tests`` on ``PYTHONPATH``):

* ``http``: ``serve_http`` on 127.0.0.1, port 0 (``PORT:<n>`` on stdout);
* ``embedded``: ``start_http_server`` in a program whose own SIGTERM handler makes it
  call ``handle.stop()`` (the embedding recipe of docs/http.md "Stopping");
* ``pipe``: ``run_server`` on stdin/stdout; its pid goes to ``$VGI_PID_FILE``.

With ``$VGI_SENTRY_DSN`` set, the worker initialises the real Sentry SDK with that
DSN (its own HTTP transport) *before* building the server, so the Sentry hook is
auto-attached. ``shutdown_timeout=0`` turns off the SDK's own flush at exit: an
event that reaches the endpoint was sent by the server's flush when stopping.
``$VGI_SENTRY_FLUSH_TIMEOUT`` sets the server's ``sentry_flush_timeout`` (default 2;
``0``: the control without the stop-time flush); ``$VGI_HANDLE_SIGNALS=0`` passes
``handle_signals=False``; ``$VGI_IGNORE_SIGTERM=1`` ignores SIGTERM before serving.
When the serving function returns, the worker prints ``RETURNED`` to stderr, followed
by ``RESTORED`` when the signal handlers are back to what they were before serving.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Protocol


class Drowsy(Protocol):
    """Calls that take their time."""

    def nap(self, seconds: float) -> float:
        """Sleep, then return *seconds*."""
        ...

    def nap_then_fail(self, seconds: float, message: str) -> int:
        """Sleep, then raise ``ValueError(message)``."""
        ...


def _started(name: str) -> None:
    path = os.environ.get("VGI_STARTED")
    if path:
        with open(path, "a") as f:
            f.write(name + "\n")


class DrowsyImpl:
    """The implementation."""

    def nap(self, seconds: float) -> float:
        """Sleep."""
        _started("nap")
        time.sleep(seconds)
        return seconds

    def nap_then_fail(self, seconds: float, message: str) -> int:
        """Sleep, then fail."""
        _started("nap_then_fail")
        time.sleep(seconds)
        raise ValueError(message)


def wait_started(path: Path, name: str, timeout: float = 30.0) -> None:
    """Wait until the worker's *name* call has started (bounded); raise ``TimeoutError`` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and name in path.read_text().split():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{name} never started")


def _embedded(server: object, grace: float, flush: float) -> None:
    """The embedding recipe: ``start_http_server``, the program's own SIGTERM handler, ``stop()``."""
    import threading

    from vgi_rpc.http import start_http_server

    handle = start_http_server(
        server,
        threads=4,
        token_key=b"a token key for the shutdown tests!",
        grace_period=grace,
        sentry_flush_timeout=flush,
    )
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    print(f"PORT:{handle.port}", flush=True)
    stopping.wait()
    handle.stop()  # drains the call in flight, then flushes Sentry
    signal.signal(signal.SIGTERM, previous)


def main() -> None:
    """The worker: ``<http|pipe> <grace seconds>``."""
    # A child of a shell without job control starts with SIGINT ignored; the tests' SIGINT
    # must reach the server's handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("VGI_IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    logging.basicConfig(level=logging.WARNING)  # the servers' warnings on stderr, for the tests to read
    transport, grace = sys.argv[1], float(sys.argv[2])
    flush = float(os.environ.get("VGI_SENTRY_FLUSH_TIMEOUT", "2"))
    handle_signals = os.environ.get("VGI_HANDLE_SIGNALS", "1") == "1"
    dsn = os.environ.get("VGI_SENTRY_DSN")
    if dsn:
        import sentry_sdk

        sentry_sdk.init(dsn=dsn, shutdown_timeout=0)
    from vgi_rpc import RpcServer

    server = RpcServer(Drowsy, DrowsyImpl())
    stop = {"grace_period": grace, "sentry_flush_timeout": flush, "handle_signals": handle_signals}
    if transport == "http":
        from vgi_rpc.http import serve_http

        serve_http(server, port=0, threads=4, token_key=b"a token key for the shutdown tests!", **stop)
    elif transport == "embedded":
        _embedded(server, grace, flush)
    else:
        from vgi_rpc.pipe import run_server

        Path(os.environ["VGI_PID_FILE"]).write_text(str(os.getpid()))
        run_server(server, **stop)
    restored = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    print("RETURNED" + (" RESTORED" if restored else ""), file=sys.stderr, flush=True)
