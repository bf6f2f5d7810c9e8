"""Our side of the peer comparison: ``ConformanceService`` under ``serve_http`` (run by bench_peer.py).

``python benchmarks/peer_server.py`` binds 127.0.0.1 on a free port, prints
``PORT:<n>`` once listening (as the reference server does) and serves until
killed: no prefix, default options, no Sentry -- the same setup as
``vgi-rpc-conformance --http``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    """Serve until killed."""
    from tests.conformance._impl import ConformanceServiceImpl
    from tests.conformance._protocol import ConformanceService
    from vgi_rpc import RpcServer
    from vgi_rpc.http import serve_http

    server = RpcServer(ConformanceService, ConformanceServiceImpl())
    serve_http(server, host="127.0.0.1", port=0, token_key=b"bench-peer-token-key-0123456789ab")


if __name__ == "__main__":
    main()
