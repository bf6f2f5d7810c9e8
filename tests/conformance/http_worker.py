"""HTTP worker for the official runner: serves our ``ConformanceService`` with ``serve_http``.

``python tests/conformance/http_worker.py --port N [--prefix /vgi] [--max-request-bytes B]`` binds
127.0.0.1 only and runs until killed.  ``scripts/conformance.py`` starts it,
waits for ``{prefix}/health`` and points ``vgi-rpc-test --url`` at it.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conformance._impl import ConformanceServiceImpl  # noqa: E402
from tests.conformance._protocol import ConformanceService  # noqa: E402
from vgi_rpc import RpcServer  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Parse ``--port``/``--prefix`` and serve until the process is stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port, announced as PORT:<n>")
    parser.add_argument("--prefix", default="/vgi")
    parser.add_argument("--max-request-bytes", type=int, help="make_wsgi_app(max_request_bytes=...)")
    args = parser.parse_args(argv)

    from vgi_rpc.http import serve_http

    server = RpcServer(ConformanceService, ConformanceServiceImpl())
    print(
        f"serving {server.protocol_name} on http://127.0.0.1:{args.port}{args.prefix}",
        file=sys.stderr,
        flush=True,
    )
    serve_http(
        server,
        host="127.0.0.1",
        port=args.port,
        prefix=args.prefix,
        max_request_bytes=args.max_request_bytes,
    )


if __name__ == "__main__":
    main()
