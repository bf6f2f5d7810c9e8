"""A Sentry-instrumented worker for the soak tests: ``python tests/workers/soak_worker.py http|pipe DSN [PIDFILE]``.

Initialises the real sentry-sdk with *DSN* (a Sentry that refuses or never answers),
``traces_sample_rate=1.0`` and its default integrations, and serves
:class:`support.services.Calculator` with ``SentryConfig(enable_performance=True,
record_params=True)``: over HTTP with ``serve_http`` on a free port (announced as
``PORT:n``), or over this process's stdin/stdout with ``run_server``. The pipe worker
writes its pid to *PIDFILE* (the test reads its RSS from ``/proc``).
"""

import os
import sys
import warnings
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import sentry_sdk  # noqa: E402
from support.services import Calculator, CalculatorImpl  # noqa: E402

from vgi_rpc import RpcServer, run_server  # noqa: E402
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry  # noqa: E402


def main(transport: str, dsn: str, pidfile: str = "") -> None:
    """Serve the instrumented Calculator over *transport* with Sentry at *dsn*."""
    warnings.simplefilter("ignore")  # the per-process token key warning is expected here
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
