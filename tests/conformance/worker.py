"""Pipe worker for the official runner: ``vgi-rpc-test --cmd "python tests/conformance/worker.py"``.

Serves our ``ConformanceService`` on stdin/stdout with ``run_server`` until the
client closes the pipe.  Runs as a script, so it puts the repository root on
``sys.path`` to import ``tests.conformance``.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conformance._impl import ConformanceServiceImpl  # noqa: E402
from tests.conformance._protocol import ConformanceService  # noqa: E402
from vgi_rpc import RpcServer, run_server  # noqa: E402


def main() -> None:
    """Serve until stdin reaches end-of-file."""
    run_server(RpcServer(ConformanceService, ConformanceServiceImpl()))


if __name__ == "__main__":
    main()
