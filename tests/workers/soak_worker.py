"""A Sentry-instrumented worker for the soak tests: ``python tests/workers/soak_worker.py http|pipe DSN [PIDFILE]``.

Initialises the real sentry-sdk with *DSN* (a Sentry that refuses or never answers),
``traces_sample_rate=1.0`` and its default integrations, and serves
:class:`support.services.Calculator` with ``SentryConfig(enable_performance=True,
record_params=True)``: over HTTP with ``serve_http`` on a free port (announced as
``PORT:n``), or over this process's stdin/stdout with ``run_server``. The pipe worker
writes its pid to *PIDFILE* (the test reads its RSS from ``/proc``).

With ``VGI_RPC_SOAK_STATS=path`` in the environment, each ``SIGUSR1`` appends one JSON
line to *path*: ``rss`` (``VmRSS``), and from glibc's ``mallinfo2()`` (summed over all
malloc arenas) ``heap_used`` (bytes in live allocations) and ``heap_free`` (freed bytes
malloc keeps in its heaps and has not returned to the system); the two are ``null``
where ``mallinfo2`` does not exist (not glibc, or glibc older than 2.33). All in bytes.
It tells memory the process still holds apart from memory its allocator keeps.
"""

import ctypes
import ctypes.util
import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import sentry_sdk  # noqa: E402
from support.services import Calculator, CalculatorImpl  # noqa: E402

from vgi_rpc import RpcServer, run_server  # noqa: E402
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
        )
    ]  # fmt: skip


def _mallinfo2() -> Any:
    """glibc's ``mallinfo2`` function, or ``None`` where it does not exist."""
    name = ctypes.util.find_library("c")
    fn = getattr(ctypes.CDLL(name), "mallinfo2", None) if name else None
    if fn is not None:
        fn.restype = _MallInfo2
    return fn


def _install_stats(path: str) -> None:
    """On ``SIGUSR1`` append this process's memory figures to *path* (see the module docstring)."""
    mallinfo2 = _mallinfo2()

    def dump(signum: int, frame: object) -> None:
        status = Path("/proc/self/status").read_text()
        rss = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
        info = mallinfo2() if mallinfo2 is not None else None
        line = {
            "rss": rss,
            "heap_used": info.uordblks if info is not None else None,
            "heap_free": info.fordblks if info is not None else None,
        }
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")

    signal.signal(signal.SIGUSR1, dump)


def main(transport: str, dsn: str, pidfile: str = "") -> None:
    """Serve the instrumented Calculator over *transport* with Sentry at *dsn*."""
    warnings.simplefilter("ignore")  # the per-process token key warning is expected here
    if os.environ.get("VGI_RPC_SOAK_STATS"):
        _install_stats(os.environ["VGI_RPC_SOAK_STATS"])
    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0)
    server = instrument_server_sentry(
        RpcServer(Calculator, CalculatorImpl()),
        SentryConfig(enable_performance=True, record_params=True),
    )
    if transport == "http":
        from vgi_rpc.http import serve_http

        serve_http(server, port=0, threads=4)
    else:
        Path(pidfile).write_text(str(os.getpid()))
        run_server(server)


if __name__ == "__main__":
    main(*sys.argv[1:])
