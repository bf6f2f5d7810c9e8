"""The official vgi-rpc 0.52.2 client in an OTel span, for the trace tests; runs under ``.venv-peer``.

``python trace_official_client.py CMD_JSON``: starts the pipe worker *CMD_JSON* (a
JSON list: our ``tests/workers/trace_worker.py`` under our interpreter) with the
official ``connect``, opens an OpenTelemetry span (SDK ``TracerProvider``, nothing
exported) and, inside it, calls ``add`` and the failing ``fail``. The official
client puts the span's W3C ``traceparent`` into each request batch's custom
metadata. Prints one JSON line: the span's ``trace_id``/``span_id`` (hex), the
``add`` result and the ``fail`` error's type and message.

Run it from a directory that holds no ``vgi_rpc`` (the test uses its tmp dir), so
the official package is the one imported.
"""

import json
import sys
from typing import Protocol

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from vgi_rpc import RpcError, connect


class Shop(Protocol):
    """The two ``support.shop.Shop`` methods this client calls (same names and types)."""

    def add(self, a: int, b: int) -> int: ...
    def fail(self, message: str) -> int: ...


def main(argv: list[str]) -> None:
    """Call the worker in *argv[0]* inside one OTel span and print what happened as JSON."""
    cmd = json.loads(argv[0])
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("vgi_rpc.tests.official_client")
    out: dict[str, object] = {}
    with connect(Shop, cmd) as proxy, tracer.start_as_current_span("official-caller") as span:
        ctx = span.get_span_context()
        out["trace_id"] = format(ctx.trace_id, "032x")
        out["span_id"] = format(ctx.span_id, "016x")
        out["add"] = proxy.add(a=1, b=2)
        try:
            proxy.fail(message="boom")
        except RpcError as exc:
            out["error"] = [exc.error_type, exc.error_message]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
