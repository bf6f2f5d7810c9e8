"""A ``run_server`` worker whose calls take as long as asked, for the pipe timeout tests.

``python tests/workers/slow_worker.py`` serves :class:`support.sleepy.Sleepy` on
stdin/stdout. ``$VGI_PID_FILE``, when set, receives the worker's pid first.
"""

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.sleepy import Sleepy, SleepyImpl  # noqa: E402

from vgi_rpc import RpcServer, run_server  # noqa: E402

if __name__ == "__main__":
    if os.environ.get("VGI_PID_FILE"):
        Path(os.environ["VGI_PID_FILE"]).write_text(str(os.getpid()))
    run_server(RpcServer(Sleepy, SleepyImpl()))
