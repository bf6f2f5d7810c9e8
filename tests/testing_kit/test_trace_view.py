"""The kit shows traces: ``SentryCapture.trace()`` / ``trace_ids`` and ``OtelCapture.trace()``.

Every trace here is built by the real SDK (no patched Sentry): a caller's root
span with child spans and an error event inside it; a worker's ``rpc add``
segment over HTTP (a real waitress server, the caller's trace carried by
Sentry's own httpx integration); the in-process WSGI app continuing a
``sentry-trace`` header the test sends by hand; a caller and a worker recorded
by two captures and read together through ``SentryCapture.from_envelopes``.
Each runs on sentry-sdk 2.x (transactions) and 3.x (span streaming) alike.
The OpenTelemetry half uses the capture's own tracer and a ``traceparent``
header into the WSGI app. The last test runs a user's failing test in pytester
and reads the tree in pytest's report.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import sentry_sdk
from support.http import ARROW, TOKEN_KEY, call_body, http_proxy, read_stream
from support.sentry import STREAMING, user_root, user_span
from support.shop import make_server

from vgi_rpc import RpcError
from vgi_rpc.http import make_wsgi_app
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import CapturedTrace, SentryCapture
from vgi_rpc.testing import sentry_capture as new_capture

pytest_plugins = ["pytester"]

PERF = SentryConfig(enable_performance=True)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _wsgi_call(app: Any, method: str, columns: Mapping[str, Any], headers: Mapping[str, str]) -> list[Any]:
    """One unary request straight into the WSGI app: only the headers the test gives (no HTTP client)."""
    body = call_body(method, columns, protocol="Shop")
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD="POST",
        PATH_INFO=f"/Shop/{method}",
        CONTENT_TYPE=ARROW,
        CONTENT_LENGTH=str(len(body)),
    )
    environ["wsgi.input"] = io.BytesIO(body)
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    statuses: list[str] = []
    chunks = app(environ, lambda status, _headers, _exc=None: statuses.append(status))
    try:
        out = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    assert statuses == ["200 OK"]
    return [batch for batch, _ in read_stream(out)[1]]


def _checkout_with_a_failure() -> str:
    """A caller root ``checkout`` > ``load cart`` > ``query`` with an error event in ``query``; its trace id."""
    with user_root("checkout", op="task") as root:
        with user_span("load cart", "function"), user_span("query", "db.query"):
            try:
                raise LookupError("no cart")
            except LookupError:
                sentry_sdk.capture_exception()
        with user_span("pay", "function"):
            pass
    trace_id: str = root.trace_id
    return trace_id


def _new_trace() -> None:
    """The next root span starts a trace of its own (3.x: roots in one scope share its trace; 2.x: always)."""
    if STREAMING:
        from sentry_sdk.traces import new_trace

        new_trace()


# -- one trace of a caller: parent links, chains, events, lookups ----------------------------------


def test_a_callers_trace_has_its_spans_linked_and_its_event_in_the_span_it_was_captured_in(
    sentry_capture: SentryCapture,
) -> None:
    trace_id = _checkout_with_a_failure()
    _new_trace()
    with user_root("other"):
        pass
    trace = sentry_capture.trace(trace_id)
    assert isinstance(trace, CapturedTrace) and trace.trace_id == trace_id
    assert [s["description"] for s in trace.spans] == ["checkout", "load cart", "query", "pay"]  # start order
    (root,) = trace.roots
    assert root["description"] == "checkout" and trace.parent(root) is None
    load, query, pay = (trace.find(description=d) for d in ("load cart", "query", "pay"))
    assert trace.parent(query) is load and trace.parent(load) is root and trace.parent(pay) is root
    assert [c["description"] for c in trace.children(root)] == ["load cart", "pay"]
    assert trace.children(query) == []
    assert trace.chain(query) == ["checkout", "load cart", "query"]
    assert trace.find(op="db.query") is query
    assert all(s["trace_id"] == trace_id for s in trace.spans)
    (event,) = trace.events
    assert event["exception"]["values"][-1]["value"] == "no cart"
    assert event["contexts"]["trace"]["span_id"] == query["span_id"]
    assert repr(trace) == f"<CapturedTrace {trace_id}: 4 span(s), 1 event(s)>"


def test_describe_is_an_indented_tree_with_the_event_under_its_span(sentry_capture: SentryCapture) -> None:
    trace = sentry_capture.trace(_checkout_with_a_failure())
    ids = {s["description"]: s["span_id"] for s in trace.spans}
    lines = trace.describe().splitlines()
    assert lines[0] == f"trace {trace.trace_id}: 4 span(s), 1 event(s)"
    assert lines[1:4] == [
        f"  checkout [task] {ids['checkout']}",
        f"    load cart [function] {ids['load cart']}",
        f"      query [db.query] {ids['query']}",
    ]
    assert lines[4].startswith("        ! event ") and "LookupError: no cart" in lines[4]
    assert lines[5:] == [f"    pay [function] {ids['pay']}"]


def test_trace_ids_are_distinct_in_first_seen_order(sentry_capture: SentryCapture) -> None:
    first = _checkout_with_a_failure()
    _new_trace()
    with user_root("second") as second:
        pass
    assert sentry_capture.trace_ids == [first, second.trace_id]
    assert sentry_capture.trace(first.upper()).trace_id == first  # the id's case does not matter


def test_a_lookup_that_is_not_exactly_one_fails_showing_the_tree(sentry_capture: SentryCapture) -> None:
    trace = sentry_capture.trace(_checkout_with_a_failure())
    with pytest.raises(AssertionError, match="exactly one span with description 'rpc add', found 0") as none:
        trace.find(description="rpc add")
    assert trace.describe() in str(none.value)
    with pytest.raises(AssertionError, match="exactly one span with op 'function', found 2"):
        trace.find(op="function")
    with pytest.raises(AssertionError, match="found 4"):
        trace.find()


def test_an_unknown_trace_is_empty_and_its_find_names_the_traces_there_are(
    sentry_capture: SentryCapture,
) -> None:
    known = _checkout_with_a_failure()
    trace = sentry_capture.trace(TRACE)
    assert (trace.spans, trace.events, trace.roots) == ((), (), [])
    assert trace.describe() == f"trace {TRACE}: 0 span(s), 0 event(s)\n  (no span of this trace was captured)"
    with pytest.raises(AssertionError, match=f"no span of that trace \\(traces it holds: {known}\\)"):
        trace.find(description="rpc add")
    with pytest.raises(TypeError, match="must be a str"):
        sentry_capture.trace(int(TRACE, 16))  # type: ignore[arg-type]


def test_events_whose_span_was_not_captured_are_listed_at_the_end(sentry_capture: SentryCapture) -> None:
    """A worker's error event arrived, its spans did not (2.x sends them when the transaction ends)."""
    trace_id = _checkout_with_a_failure()
    only_events = [e for e in sentry_capture.envelopes if all(i["type"] == "event" for i in e["items"])]
    trace = SentryCapture.from_envelopes(only_events).trace(trace_id)
    assert trace.spans == () and len(trace.events) == 1
    lines = trace.describe().splitlines()
    assert lines[1:3] == [
        "  (no span of this trace was captured)",
        "  events in no captured span of this trace:",
    ]
    assert lines[3].startswith("    ! event ") and "LookupError: no cart" in lines[3]


def test_hostile_parent_ids_do_not_loop() -> None:
    """Recorded envelopes are data: a span that is its own parent, two spans each other's parent."""
    spans = [
        {
            "trace_id": TRACE,
            "span_id": "a" * 16,
            "parent_span_id": "a" * 16,
            "name": "self",
            "is_segment": True,
        },
        {"trace_id": TRACE, "span_id": "b" * 16, "parent_span_id": "c" * 16, "name": "b", "is_segment": True},
        {"trace_id": TRACE, "span_id": "c" * 16, "parent_span_id": "b" * 16, "name": "c", "is_segment": True},
    ]
    item = {"type": "span", "headers": {}, "payload": {"version": 2, "items": spans}}
    trace = SentryCapture.from_envelopes([{"items": [item]}]).trace(TRACE)
    by_name = {s["description"]: s for s in trace.spans}
    assert trace.roots == [by_name["self"]] and trace.parent(by_name["self"]) is None
    assert trace.chain(by_name["b"]) == ["c", "b"]
    assert [line.split()[0] for line in trace.describe().splitlines()[1:]] == ["self", "b", "c"]


def test_a_trace_thousands_of_spans_deep_is_described_and_chained() -> None:
    """No recursion limit: 3000 spans, each the parent of the next."""
    spans = [
        {
            "trace_id": TRACE,
            "span_id": f"{i + 1:016x}",
            "parent_span_id": f"{i:016x}" if i else None,
            "name": f"s{i}",
            "is_segment": i == 0,
            "start_timestamp": 1_700_000_000.0 + i,
        }
        for i in range(3000)
    ]
    item = {"type": "span", "headers": {}, "payload": {"version": 2, "items": spans[::-1]}}
    trace = SentryCapture.from_envelopes([{"items": [item]}]).trace(TRACE)
    assert [s["description"] for s in trace.spans[:2]] == ["s0", "s1"]  # start order, not the order sent
    last = trace.find(description="s2999")
    assert trace.chain(last) == [f"s{i}" for i in range(3000)]
    lines = trace.describe().splitlines()
    assert len(lines) == 3001 and lines[-1] == "  " * 3000 + f"s2999 [None] {last['span_id']}"


# -- caller and worker in one trace ---------------------------------------------------------------


def test_over_http_the_workers_segment_and_event_are_in_the_callers_trace(
    sentry_capture: SentryCapture,
) -> None:
    """The user's story: caller span > (HTTP client span) > worker segment ``rpc add`` > its child."""
    with http_proxy(make_server(PERF)) as proxy, user_root("checkout") as root:
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError):
            proxy.fail(message="boom")
    # the server is stopped: every request's spans were sent
    trace = sentry_capture.trace(root.trace_id)
    seg = trace.find(description="rpc add")
    assert seg["op"] == "http.server" and seg["trace_id"] == root.trace_id
    assert trace.chain(seg)[0] == "checkout"
    (caller,) = trace.roots
    assert caller["span_id"] == root.span_id
    (child,) = trace.children(seg)
    assert (child["description"], child["op"]) == ("vgi_rpc/add", "rpc.server")
    assert trace.chain(child)[-2:] == ["rpc add", "vgi_rpc/add"]
    failed = trace.find(description="vgi_rpc/fail")
    (event,) = trace.events
    assert event["contexts"]["trace"]["span_id"] == failed["span_id"]
    assert trace.chain(failed)[0] == "checkout"
    assert sentry_capture.trace_ids == [root.trace_id]


def test_the_wsgi_app_continues_a_sentry_trace_header_sent_by_hand(sentry_capture: SentryCapture) -> None:
    """No caller span here: the worker's roots hang off a parent this capture never saw."""
    app = make_wsgi_app(make_server(PERF), token_key=TOKEN_KEY)
    header = {"sentry-trace": f"{TRACE}-{PARENT}-1"}
    (batch,) = _wsgi_call(app, "add", {"a": 1, "b": 2}, header)
    assert batch.to_pydict() == {"result": [3]}
    _wsgi_call(app, "fail", {"message": "boom"}, header)
    trace = sentry_capture.trace(TRACE)
    assert [r["description"] for r in trace.roots] == ["rpc add", "rpc fail"]
    assert all(r["parent_span_id"] == PARENT for r in trace.roots)
    seg = trace.find(description="rpc fail")
    assert f"rpc fail [http.server] {seg['span_id']} (parent {PARENT} not captured)" in trace.describe()
    assert trace.chain(trace.find(description="vgi_rpc/fail")) == ["rpc fail", "vgi_rpc/fail"]
    (event,) = trace.events
    assert event["contexts"]["trace"]["trace_id"] == TRACE
    assert sentry_capture.trace_ids == [TRACE]


def test_a_caller_and_a_worker_recorded_apart_read_as_one_trace(sentry_capture: SentryCapture) -> None:
    """What a worker in another process needs: its envelopes brought back, read with the caller's."""
    with user_root("checkout") as root, user_span("call backend", "http.client") as span:
        header = {"sentry-trace": f"{root.trace_id}-{span.span_id}-1"}
    with new_capture() as worker:  # the worker's own capture, as another process would have
        _wsgi_call(make_wsgi_app(make_server(PERF), token_key=TOKEN_KEY), "add", {"a": 2, "b": 3}, header)
    caller_alone = sentry_capture.trace(root.trace_id)
    assert [s["description"] for s in caller_alone.spans] == ["checkout", "call backend"]
    worker_alone = worker.trace(root.trace_id)
    assert [r["description"] for r in worker_alone.roots] == ["rpc add"]  # its parent is elsewhere
    # the worker's first, as a file would carry them: the trace puts spans in start order
    recorded = json.loads(json.dumps(worker.envelopes + sentry_capture.envelopes))
    trace = SentryCapture.from_envelopes(recorded).trace(root.trace_id)
    assert [s["description"] for s in trace.spans] == ["checkout", "call backend", "rpc add", "vgi_rpc/add"]
    child = trace.find(description="vgi_rpc/add")
    assert trace.chain(child) == ["checkout", "call backend", "rpc add", "vgi_rpc/add"]
    assert [r["description"] for r in trace.roots] == ["checkout"]
    assert trace.parent(trace.find(description="rpc add")) == trace.find(description="call backend")


# -- OpenTelemetry --------------------------------------------------------------------------------


def test_otel_trace_links_a_callers_span_to_the_server_span_it_propagated_to() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import propagate, trace

    from vgi_rpc.testing.otel import OtelTrace, otel_capture

    with otel_capture() as cap:
        tracer = cap.tracer_provider.get_tracer("caller")
        carrier: dict[str, str] = {}
        with (
            tracer.start_as_current_span("checkout") as root,
            tracer.start_as_current_span("call backend", kind=trace.SpanKind.CLIENT),
        ):
            propagate.inject(carrier)
        server = make_server()
        app = make_wsgi_app(server, token_key=TOKEN_KEY, otel_config=cap.config)
        # the caller's spans have ended: only the traceparent header links the server span to them
        _wsgi_call(app, "add", {"a": 1, "b": 2}, carrier)
        _wsgi_call(app, "fail", {"message": "boom"}, {})  # another trace
        trace_id = format(root.get_span_context().trace_id, "032x")
        view = cap.trace(trace_id)
        assert isinstance(view, OtelTrace)
        assert cap.trace(root.get_span_context().trace_id).spans == view.spans  # the SDK's int works too
        assert [s.name for s in view.spans] == ["checkout", "call backend", "vgi_rpc/add"]
        served = view.find(method="add")
        assert served.kind == "SERVER" and served.parent is not None and served.parent.is_remote
        assert view.chain(served) == ["checkout", "call backend", "vgi_rpc/add"]
        assert [s.name for s in view.roots] == ["checkout"]
        assert view.children(view.find("call backend")) == [served]
        assert len(cap.trace_ids) == 2 and cap.trace_ids[0] == trace_id  # in the order spans ended


def test_otel_trace_describe_marks_a_remote_parent_and_lists_exceptions() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from vgi_rpc.testing.otel import otel_capture

    with otel_capture() as cap:
        app = make_wsgi_app(make_server(), token_key=TOKEN_KEY, otel_config=cap.config)
        _wsgi_call(app, "fail", {"message": "boom"}, {"traceparent": f"00-{TRACE}-{PARENT}-01"})
        view = cap.trace(TRACE.upper())
        (served,) = view.roots
        assert served.parent is not None and (served.parent.trace_id, served.parent.span_id) == (
            TRACE,
            PARENT,
        )
        assert view.describe().splitlines() == [
            f"trace {TRACE}: 1 span(s)",
            f"  vgi_rpc/fail [SERVER] {served.span_id} status=ERROR (parent {PARENT} remote)",
            "    ! exception ValueError: boom",
        ]
        empty = cap.trace("0" * 31 + "1")
        assert empty.spans == () and empty.roots == []
        with pytest.raises(AssertionError, match=f"traces it holds: {TRACE}"):
            empty.find("vgi_rpc/fail")
        with pytest.raises(AssertionError, match="exactly one span named 'nope', found 0"):
            view.find("nope")
        with pytest.raises(TypeError, match="32-hex str or an int"):
            cap.trace(1.5)  # type: ignore[arg-type]


# -- what a user sees ------------------------------------------------------------------------------

_USER_TEST = """
import sentry_sdk


def start_root(name):
    if sentry_sdk.VERSION.startswith("2."):
        return sentry_sdk.start_transaction(name=name, op="task")
    from sentry_sdk.traces import start_span

    return start_span(name=name, attributes={"sentry.op": "task"})


def test_checkout(sentry_capture):
    with start_root("checkout") as root:
        pass
    trace = sentry_capture.trace(root.trace_id)
    assert trace.chain(trace.find(description="checkout")) == ["checkout"]
    trace.find(description="rpc add")
"""


def test_a_users_failing_lookup_shows_the_trace_in_pytests_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=_USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [
            r".*AssertionError: expected exactly one span with description 'rpc add', found 0; the trace:",
            r".*trace [0-9a-f]{32}: 1 span\(s\), 0 event\(s\)",
            r".*  checkout \[task\] [0-9a-f]{16}",
        ],
        consecutive=False,
    )
    result.stdout.re_match_lines([r'^>\s+trace\.find\(description="rpc add"\)$'])  # the user's line
    assert "vgi_rpc/testing/_trace.py" not in result.stdout.str()  # not the kit's frames


def test_the_generation_under_test() -> None:
    """The suite's premise: the default capture streams spans on 3.x only."""
    assert (sentry_sdk.VERSION.split(".")[0] == "3") is STREAMING
