"""A pipe worker with Sentry, for the trace tests: ``python tests/workers/trace_worker.py OUT [RATE]``.

Serves :class:`support.shop.Shop` (the Sentry hook on, ``enable_performance=True``)
on stdin/stdout until stdin closes, under the real ``sentry_sdk`` with the
in-memory transport (``vgi_rpc.testing.sentry_capture``, default integrations,
``traces_sample_rate=RATE``, default 1.0). At exit, after the capture's flush,
it writes every envelope it sent as JSON to OUT (atomically: a reader sees the
whole file or none), for ``SentryCapture.from_envelopes`` in the test process.
Runs as a script, so it puts ``tests/`` on ``sys.path``.
"""

import json
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support.shop import make_server  # noqa: E402

from vgi_rpc import run_server  # noqa: E402
from vgi_rpc.sentry import SentryConfig  # noqa: E402
from vgi_rpc.testing import sentry_capture  # noqa: E402


def main(argv: list[str]) -> None:
    """Serve Shop with Sentry until stdin ends, then write the envelopes to ``argv[0]``."""
    out = Path(argv[0])
    rate = float(argv[1]) if len(argv) > 1 else 1.0
    with sentry_capture(traces_sample_rate=rate) as cap:
        run_server(make_server(SentryConfig(enable_performance=True)))
    part = out.with_name(out.name + ".part")
    part.write_text(json.dumps(cap.envelopes, default=repr))
    os.replace(part, out)


if __name__ == "__main__":
    main(sys.argv[1:])
