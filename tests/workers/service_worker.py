"""A ``run_server`` worker for the core tests: ``python tests/workers/service_worker.py [calculator|types]``.

Serves :class:`support.services.Calculator` (default) or :class:`support.services.TypesService`
on stdin/stdout until stdin closes. Runs as a script, so it puts ``tests/`` on
``sys.path`` to import ``support.services``. ``--noisy`` binds a DEBUG logging handler
to ``sys.stdout`` before serving starts, so the server's own log records (and
``Calculator.shout``'s prints) try to reach stdout: none may reach the protocol
stream.
"""

import logging
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.services import Calculator, CalculatorImpl, TypesService, TypesServiceImpl  # noqa: E402

from vgi_rpc import RpcServer, run_server  # noqa: E402


def main(argv: list[str]) -> None:
    """Serve the service named in *argv* until stdin reaches end-of-file."""
    noisy = "--noisy" in argv
    names = [a for a in argv if not a.startswith("--")]
    name = names[0] if names else "calculator"
    if name == "calculator":
        server = RpcServer(Calculator, CalculatorImpl())
    elif name == "types":
        server = RpcServer(TypesService, TypesServiceImpl())
    else:
        raise SystemExit(f"unknown service {name!r}")
    if noisy:
        # A handler bound to stdout before serving starts: run_server must still keep
        # its output off the protocol stream.
        logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, force=True)
    run_server(server)


if __name__ == "__main__":
    main(sys.argv[1:])
