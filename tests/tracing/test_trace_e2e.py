"""One trace from caller to worker (issue 20), end to end, on sentry-sdk 2.x and 3.x.

The caller opens its own root span (2.x ``start_transaction``, 3.x
``sentry_sdk.traces.start_span``) and calls ``Shop`` through each transport:

* ``pipe``: ``serve_pipe`` in this process (the server thread is started *before*
  the caller's root, so nothing reaches it through the threading integration);
* ``worker``: ``connect`` to a subprocess (``tests/workers/trace_worker.py``) with
  its own Sentry and in-memory transport, whose envelopes come back as JSON when it
  exits (``SentryCapture.from_envelopes``);
* ``http``: ``http_connect`` to a real waitress server on 127.0.0.1 in this process.

Default integrations on, ``traces_sample_rate=1.0`` on both sides (the capture's
default), the Sentry hook with ``enable_performance=True``. Nothing is mocked: the
trace ids and parent links are read from the envelopes through the kit's
generation-neutral views (``transactions``, ``spans``, ``events``).

Over HTTP Sentry's httpx integration adds its own ``http.client`` span between the
caller's root and the worker's segment: the parent is then that span, which
belongs to the caller's transaction. On the pipe the parent is the caller's span
current at the call. With that integration off, ``http_connect`` sends the trace
itself and the parent is the caller's root.

Also here: trace headers sent by hand with no caller SDK (``sentry-trace`` and the
W3C ``traceparent``, sampled or not, over HTTP and in raw pipe request metadata),
and the ``propagate_trace=False`` switch on the pipe.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.http import call_body, http_proxy, read_stream
from support.jwt import bearer
from support.shop import Shop, make_server, xs
from support.tracing import (
    CALLER,
    caller_root,
    caller_span_ids,
    honour_parent_sampler,
    ids,
    pipe_worker,
)

from vgi_rpc import RpcError, serve_pipe
from vgi_rpc.pipe.server import serve_streams
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import SentryCapture

PERF = SentryConfig(enable_performance=True)
TRANSPORTS = pytest.mark.parametrize("transport", ["pipe", "worker", "http"])
# A caller's trace sent by hand (no caller SDK): Sentry's header or the W3C one, sampled there or not.
HAND_TRACE, HAND_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
HAND_SENT = pytest.mark.parametrize(
    ("key", "value", "sampled"),
    [
        ("sentry-trace", f"{HAND_TRACE}-{HAND_SPAN}-0", False),
        ("sentry-trace", f"{HAND_TRACE}-{HAND_SPAN}-1", True),
        ("traceparent", f"00-{HAND_TRACE}-{HAND_SPAN}-00", False),
        ("traceparent", f"00-{HAND_TRACE}-{HAND_SPAN}-01", True),
    ],
    ids=["sentry-trace-0", "sentry-trace-1", "traceparent-00", "traceparent-01"],
)


@contextlib.contextmanager
def connection(
    transport: str, cap: SentryCapture, tmp_path: Path, **client: Any
) -> Iterator[tuple[Any, Callable[[], SentryCapture]]]:
    """A proxy to a Shop worker over *transport*, and what reads the worker's envelopes (after the block)."""
    if transport == "pipe":
        with serve_pipe(make_server(PERF), **client) as proxy:
            yield proxy, lambda: cap
    elif transport == "http":
        with http_proxy(make_server(PERF), client_options=client) as proxy:
            yield proxy, lambda: cap
    else:
        with pipe_worker(Shop, tmp_path, **client) as (proxy, envelopes):
            yield proxy, lambda: envelopes.capture


def assert_child_of_caller(
    txn: dict[str, Any], trace_id: str, caller: dict[str, dict[str, Any]], root: str
) -> None:
    """*txn* is in the caller's trace and its parent is a span of the caller's transaction."""
    __tracebackhide__ = True
    got_trace, parent = ids(txn)
    assert got_trace == trace_id, (
        f"{txn['transaction']!r} is in trace {got_trace}, not the caller's {trace_id}"
    )
    assert parent in caller, (
        f"{txn['transaction']!r}: parent {parent} is no span of the caller's ({sorted(caller)})"
    )
    if parent != root:  # only Sentry's httpx span may sit in between (over HTTP)
        assert caller[parent]["op"] == "http.client", caller[parent]


@TRANSPORTS
def test_the_workers_segment_and_error_event_join_the_callers_trace(
    transport: str, sentry_capture: SentryCapture, tmp_path: Path
) -> None:
    """A caller transaction calls ``add`` and a failing method: both segments and the event are in its trace."""
    with (
        connection(transport, sentry_capture, tmp_path) as (proxy, worker),
        caller_root() as (trace_id, root_id),
    ):
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError, match="boom"):
            proxy.fail(message="boom")
    caller = caller_span_ids(sentry_capture)
    assert root_id in caller  # the caller's own transaction was sent (it is sampled)
    seen = worker()
    assert_child_of_caller(seen.transaction("add"), trace_id, caller, root_id)
    assert_child_of_caller(seen.transaction("fail"), trace_id, caller, root_id)
    event = seen.event("fail")
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    assert event["exception"]["values"][-1]["type"] == "ValueError"


@TRANSPORTS
@pytest.mark.skipif(not hasattr(SentryCapture, "trace"), reason="SentryCapture.trace() is not in this tree")
def test_the_kits_trace_view_reads_caller_to_worker_as_one_tree(
    transport: str, sentry_capture: SentryCapture, tmp_path: Path
) -> None:
    """Through ``SentryCapture.trace()``: caller root -> worker segment ``add`` (-> its spans), the error event in it.

    For the subprocess worker the caller's and the worker's envelopes are read as one
    capture (``from_envelopes`` over both), as a user would join two processes.
    """
    with (
        connection(transport, sentry_capture, tmp_path) as (proxy, worker),
        caller_root() as (trace_id, root_id),
    ):
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError, match="boom"):
            proxy.fail(message="boom")
    both = worker()
    if both is not sentry_capture:
        both = SentryCapture.from_envelopes(sentry_capture.envelopes + both.envelopes)
    trace = both.trace(trace_id)
    assert [r["span_id"] for r in trace.roots] == [root_id], (
        trace.describe()
    )  # one tree, the caller's root on top
    (add,) = [s for s in trace.spans if s["is_root"] and s["data"].get("rpc.method") == "add"]
    assert trace.chain(add)[0] == CALLER
    assert [e["contexts"]["trace"]["trace_id"] for e in trace.events] == [trace_id]
    assert trace.events[0]["tags"]["rpc.method"] == "fail"


@TRANSPORTS
def test_every_turn_of_a_stream_is_in_the_callers_trace(
    transport: str, sentry_capture: SentryCapture, tmp_path: Path
) -> None:
    """A producer and an exchange (two turns) opened inside the caller's root: every worker segment joins it."""
    with (
        connection(transport, sentry_capture, tmp_path) as (proxy, worker),
        caller_root() as (trace_id, root_id),
    ):
        assert [b.to_pydict()["n"] for b in proxy.countdown(n=2)] == [[2], [1]]
        session = proxy.scale(factor=2.0)
        try:
            assert session.exchange(xs(1.0)).to_pydict() == {"x": [2.0]}
            assert session.exchange(xs(2.0)).to_pydict() == {"x": [4.0]}
        finally:
            session.close()
    caller = caller_span_ids(sentry_capture)
    seen = worker()
    for method in ("countdown", "scale"):
        txns = seen.transactions_for(method)
        assert txns, f"no worker segment for {method}:\n{seen.describe()}"
        for txn in txns:
            assert_child_of_caller(txn, trace_id, caller, root_id)
    if transport == "http":  # one request per turn: /init and each /exchange
        assert len(seen.transactions_for("scale")) >= 3


# Not disabled_integrations: the SDK keeps an integration an earlier client of the process set up.
@pytest.mark.sentry_options(auto_enabling_integrations=False)  # httpx is one (Falcon too; WSGI is ours)
def test_without_sentrys_httpx_integration_our_http_client_carries_the_trace(
    sentry_capture: SentryCapture, tmp_path: Path
) -> None:
    """Sentry's httpx integration off: ``http_connect`` itself sends the trace, on every request and turn.

    Nothing sits between the caller's root and the worker's segments then (no
    ``http.client`` span): each segment's parent is the caller's root itself.
    """
    with (
        connection("http", sentry_capture, tmp_path) as (proxy, worker),
        caller_root() as (trace_id, root_id),
    ):
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError, match="boom"):
            proxy.fail(message="boom")
        assert [b.to_pydict()["n"] for b in proxy.countdown(n=2)] == [[2], [1]]
        session = proxy.scale(factor=2.0)
        try:
            assert session.exchange(xs(1.0)).to_pydict() == {"x": [2.0]}
        finally:
            session.close()
    seen = worker()
    segments = [t for m in ("add", "fail", "countdown", "scale") for t in seen.transactions_for(m)]
    assert len(segments) >= 5, seen.describe()  # add, fail, countdown, scale /init and /exchange
    assert {ids(t) for t in segments} == {(trace_id, root_id)}, seen.describe()
    assert seen.event("fail")["contexts"]["trace"]["trace_id"] == trace_id


@TRANSPORTS
@pytest.mark.sentry_options(traces_sampler=honour_parent_sampler())
def test_an_unsampled_caller_gets_no_worker_segment_but_its_error_event(
    transport: str, sentry_capture: SentryCapture, tmp_path: Path
) -> None:
    """The caller decided not to sample: no transaction from the worker; the error event still carries the trace id.

    The caller's sampler leaves its root unsampled and follows the parent
    elsewhere; the subprocess worker has no sampler at all (``traces_sample_rate=1.0``),
    so there the SDK's own parent rule must decide.
    """
    with connection(transport, sentry_capture, tmp_path) as (proxy, worker), caller_root() as (trace_id, _):
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError, match="boom"):
            proxy.fail(message="boom")
    assert caller_span_ids(sentry_capture) == {}  # the control: the caller's root was not sampled
    seen = worker()
    assert seen.transactions == [], seen.describe()
    assert seen.event("fail")["contexts"]["trace"]["trace_id"] == trace_id


def assert_continued(cap: SentryCapture, sampled: bool) -> None:
    """The calls continued the hand-sent trace: the event in it; segments child of its span, or none if unsampled."""
    __tracebackhide__ = True
    assert cap.event("fail")["contexts"]["trace"]["trace_id"] == HAND_TRACE
    if not sampled:
        assert cap.transactions == [], cap.describe()
        return
    for method in ("add", "fail"):
        assert ids(cap.transaction(method)) == (HAND_TRACE, HAND_SPAN), cap.describe()


@HAND_SENT
@pytest.mark.sentry_options(trace_propagation_targets=[])  # neither the httpx integration nor we inject
def test_a_trace_header_sent_by_hand_over_http(
    sentry_capture: SentryCapture, key: str, value: str, sampled: bool
) -> None:
    """A lone ``sentry-trace`` or W3C ``traceparent`` request header is continued, its sampled flag honoured."""
    with http_proxy(make_server(PERF), headers={**bearer("anon"), key: value}) as proxy:
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError, match="boom"):
            proxy.fail(message="boom")
    assert_continued(sentry_capture, sampled)


@HAND_SENT
def test_a_trace_sent_by_hand_in_pipe_metadata(
    sentry_capture: SentryCapture, key: str, value: str, sampled: bool
) -> None:
    """Raw pipe requests whose metadata carries ``sentry-trace`` or ``traceparent``: continued, flag honoured."""
    requests = call_body("add", {"a": 1, "b": 2}, protocol="Shop", **{key: value})
    requests += call_body("fail", {"message": "boom"}, protocol="Shop", **{key: value})
    answers = io.BytesIO()
    serve_streams(make_server(PERF), io.BytesIO(requests), answers)
    assert b"boom" in answers.getvalue()  # both were answered (the failing call with its error)
    assert read_stream(answers.getvalue())[1]  # the first answer parses as an IPC stream
    assert_continued(sentry_capture, sampled)


@pytest.mark.parametrize("transport", ["pipe", "worker"])
def test_propagate_trace_false_sends_no_context_on_the_pipe(
    transport: str, sentry_capture: SentryCapture, tmp_path: Path
) -> None:
    """The switch: with ``propagate_trace=False`` the worker's segment starts a trace of its own."""
    with (
        connection(transport, sentry_capture, tmp_path, propagate_trace=False) as (proxy, worker),
        caller_root() as (trace_id, _),
    ):
        assert proxy.add(a=1, b=2) == 3
    got_trace, parent = ids(worker().transaction("add"))
    assert got_trace != trace_id
    assert parent not in caller_span_ids(sentry_capture, CALLER)
