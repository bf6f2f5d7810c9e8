"""Reading the kit's ``otel_capture`` the way the OTel suites compare calls.

The recorder itself is the public kit (``vgi_rpc.testing.otel``, the
``otel_capture`` fixture): the suites test the instrumentation with the same
capture users get.
"""

from __future__ import annotations

from vgi_rpc.testing.otel import OtelCapture


def request_counts(cap: OtelCapture) -> dict[tuple[str, str], int]:
    """``(method, status) -> count`` from ``rpc.server.requests``."""
    return {
        (str(p.attributes["rpc.method"]), str(p.attributes["rpc.vgi_rpc.status"])): int(p.value)
        for p in cap.points("rpc.server.requests")
    }
