"""One OpenTelemetry trace from the caller into the worker, through our own clients (issue 20, item 3).

The caller opens a span with a tracer of the capture's provider and calls through
``serve_pipe`` (in-process; its server thread starts from an empty context, so the
request metadata is the only link) or ``http_connect`` to a real waitress server. The
server's OTel hook reads the ``traceparent`` our client now sends: the server span is
a child of the caller's span, with no hand-wired propagation. Read through
``otel_capture.trace()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support.http import TOKEN_KEY
from support.services import Calculator, CalculatorImpl

from vgi_rpc import RpcServer, serve_pipe
from vgi_rpc.http import http_connect, start_http_server
from vgi_rpc.otel import instrument_server
from vgi_rpc.testing.otel import OtelCapture


@contextmanager
def _proxy(transport: str, server: RpcServer, propagate: bool) -> Iterator[Any]:
    if transport == "pipe":
        with serve_pipe(server, propagate_trace=propagate) as proxy:
            yield proxy
        return
    with (
        start_http_server(server, token_key=TOKEN_KEY) as handle,
        http_connect(Calculator, handle.base_url, propagate_trace=propagate) as proxy,
    ):
        yield proxy


@pytest.mark.parametrize("transport", ["pipe", "http"])
def test_the_server_span_is_a_child_of_the_callers_span(otel_capture: OtelCapture, transport: str) -> None:
    """Issue 20: our client carries the caller's OTel context; the worker's span joins it, stream turns too."""
    server = instrument_server(RpcServer(Calculator, CalculatorImpl()), otel_capture.config)
    tracer = otel_capture.tracer_provider.get_tracer("caller")
    with _proxy(transport, server, True) as proxy, tracer.start_as_current_span("checkout") as root:
        assert proxy.add(a=1, b=2) == 3
        assert [b.batch.num_rows for b in proxy.countdown(n=2)] == [1, 1]
    trace = otel_capture.trace(root.get_span_context().trace_id)
    assert [s.name for s in trace.roots] == ["checkout"], trace.describe()
    served = trace.find("vgi_rpc/add")
    assert trace.chain(served) == ["checkout", "vgi_rpc/add"]
    assert served.parent is not None and served.parent.is_remote
    turns = [s for s in trace.spans if s.name == "vgi_rpc/countdown"]
    # the pipe stream is one span; over HTTP /init and each /exchange turn are spans of their own
    assert len(turns) == (1 if transport == "pipe" else 3), trace.describe()
    assert all(trace.chain(s) == ["checkout", "vgi_rpc/countdown"] for s in turns)


@pytest.mark.parametrize("transport", ["pipe", "http"])
def test_propagate_trace_false_leaves_the_worker_in_its_own_trace(
    otel_capture: OtelCapture, transport: str
) -> None:
    """Issue 20: the switch: without it the server span starts a trace of its own."""
    server = instrument_server(RpcServer(Calculator, CalculatorImpl()), otel_capture.config)
    tracer = otel_capture.tracer_provider.get_tracer("caller")
    with _proxy(transport, server, False) as proxy, tracer.start_as_current_span("checkout") as root:
        assert proxy.add(a=1, b=2) == 3
    served = otel_capture.span("add")
    assert served.parent is None
    assert served.trace_id != otel_capture.trace(root.get_span_context().trace_id).trace_id
