"""``serve_http`` in its own process, default configuration, for the limit tests.

``python tests/workers/http_limits_worker.py [--idle-timeout S] [--connection-limit N]``
serves :class:`Sink` on 127.0.0.1 (port announced as ``PORT:<n>``) until killed, so
that a test can read this process's own peak memory (``VmHWM``) and count its
connections.
"""

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vgi_rpc import RpcServer  # noqa: E402


class Sink(Protocol):
    """Takes bodies of any size and answers with something small."""

    def digest(self, data: bytes) -> str:
        """``"<len>:<sha256 hex>"`` of *data*."""
        ...

    def ping(self) -> int:
        """1."""
        ...


class SinkImpl:
    """The implementation."""

    def digest(self, data: bytes) -> str:
        """Hash the body."""
        return f"{len(data)}:{hashlib.sha256(data).hexdigest()}"

    def ping(self) -> int:
        """Answer."""
        return 1


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; options beyond the defaults only when given."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-timeout", type=float)
    parser.add_argument("--connection-limit", type=int)
    args = parser.parse_args(argv)

    from vgi_rpc.http import serve_http

    options: dict[str, Any] = {}
    if args.idle_timeout is not None:
        options["idle_timeout"] = args.idle_timeout
    if args.connection_limit is not None:
        options["connection_limit"] = args.connection_limit
    serve_http(RpcServer(Sink, SinkImpl()), host="127.0.0.1", port=0, token_key=b"k" * 32, **options)


if __name__ == "__main__":
    main()
