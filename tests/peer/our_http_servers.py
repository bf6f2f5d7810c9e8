"""Our three HTTP test services in one process, for the official client in ``tests/peer``.

``<our python> tests/peer/our_http_servers.py`` serves ``support.services.Calculator``,
``support.services.TypesService`` and ``support.http.Headed`` with ``start_http_server``
(127.0.0.1, free ports, prefix ``/vgi``, the suite's token key; the Calculator
with ``compress_responses="zstd"``, the others uncompressed as by default), prints
``URLS: <calculator> <types> <headed>`` once all three listen, and serves until
its stdin closes. Runs with OUR interpreter (the peer venv's ``vgi_rpc`` is the
official package), as a script: it puts ``tests/`` on ``sys.path``.
"""

import sys
from contextlib import ExitStack
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.http import TOKEN_KEY, Headed, HeadedImpl  # noqa: E402
from support.services import Calculator, CalculatorImpl, TypesService, TypesServiceImpl  # noqa: E402

from vgi_rpc.http import start_http_server  # noqa: E402


def main() -> None:
    """Start the three servers, announce their URLs, serve until stdin reaches end-of-file."""
    with ExitStack() as stack:
        # the Calculator opts into zstd responses (off by default): the official client
        # decodes both our compressed and our uncompressed answers
        handles = [
            stack.enter_context(
                start_http_server(
                    protocol, impl, prefix="/vgi", token_key=TOKEN_KEY, compress_responses=coding
                )
            )
            for protocol, impl, coding in (
                (Calculator, CalculatorImpl(), "zstd"),
                (TypesService, TypesServiceImpl(), False),
                (Headed, HeadedImpl(), False),
            )
        ]
        print("URLS: " + " ".join(h.url for h in handles), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
