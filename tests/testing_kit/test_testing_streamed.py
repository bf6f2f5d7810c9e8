"""The kit on span items: sentry-sdk 3 always streams spans, 2.x does with ``trace_lifecycle="stream"``.

What a user reads from ``sentry_capture`` when spans travel as ``span`` items
(``version: 2``, attributes wrapped as ``{"value", "type"}``) instead of inside
transactions: the transaction views and flattened spans, the snapshot
normaliser on those items, and what the Relay methods say about items Relay's
Python normaliser cannot take. Every test runs on both generations (the
marker turns streaming on where it is optional), with the real SDK.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from support.http import http_proxy
from support.sentry import GENERATION
from support.shop import make_server

from vgi_rpc import RpcError, serve_pipe
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import SentryCapture
from vgi_rpc.testing.relay import SpansNotCheckedWarning
from vgi_rpc.testing.snapshots import normalize

pytest.importorskip("sentry_sdk.traces", reason="span streaming is newer than this sentry-sdk")
pytestmark = pytest.mark.sentry_options(trace_lifecycle="stream")

PERF = SentryConfig(enable_performance=True)


def _pipe_calls(cap: SentryCapture, *, fail: bool = True) -> None:
    with serve_pipe(make_server(PERF)) as proxy:
        assert proxy.add(a=1, b=2) == 3
        if fail:
            with pytest.raises(RpcError):
                proxy.fail(message="x")


# -- transactions, spans, transaction(method=), transactions_for() --------------------------------


def test_over_http_one_view_per_call_and_every_span_flattened(sentry_capture: SentryCapture) -> None:
    """S18 B7 (the kit's side): per call one segment view, its child inside; ``spans`` has both, by method."""
    with http_proxy(make_server(PERF)) as proxy:
        proxy.add(a=1, b=2)
        proxy.add(a=3, b=4)
        with pytest.raises(RpcError):
            proxy.fail(message="x")
    assert sentry_capture.payloads("transaction") == []  # nothing but span items carries the spans
    adds = sentry_capture.transactions_for("add")
    assert [t["transaction"] for t in adds] == ["rpc add", "rpc add"]  # segments only, not the children
    for view in adds:
        assert view["streamed"] is True and view["span_item"]["is_segment"] is True
        (child,) = view["spans"]
        assert (child["description"], child["op"], child["data"]["rpc.method"]) == (
            "vgi_rpc/add",
            "rpc.server",
            "add",
        )
        assert child["parent_span_id"] == view["contexts"]["trace"]["span_id"]
    fail = sentry_capture.transaction(method="fail")
    assert (fail["contexts"]["trace"]["op"], fail["contexts"]["trace"]["status"]) == ("http.server", "error")
    spans = [s for s in sentry_capture.spans if s["transaction"] == "rpc fail"]
    assert sorted((s["description"], s["is_root"], s["op"]) for s in spans) == [
        ("rpc fail", True, "http.server"),
        ("vgi_rpc/fail", False, "rpc.server"),
    ]
    assert {s["data"]["rpc.method"] for s in spans} == {"fail"}
    with pytest.raises(AssertionError, match=r"exactly one transaction for method 'add', found 2"):
        sentry_capture.transaction(method="add")


# -- the snapshot normaliser on v2 span items -------------------------------------------------------


def _streamed_span_items(cap: SentryCapture) -> list[dict[str, Any]]:
    items = [item for envelope in normalize(cap) for item in envelope["items"] if item["type"] == "span"]
    return [span for item in items for span in item["payload"]["items"]]


def test_the_normaliser_keeps_the_links_of_streamed_spans_and_nothing_volatile() -> None:
    """Two HTTP runs (new ports, ids, threads): equal snapshots; segment/child links stay pinned."""
    from vgi_rpc.testing import sentry_capture

    def scenario() -> SentryCapture:
        with (
            sentry_capture(trace_lifecycle="stream") as cap,
            http_proxy(make_server(PERF)) as proxy,
            pytest.raises(RpcError),
        ):
            proxy.fail(message="x")
        return cap

    first, second = scenario(), scenario()
    assert first.envelopes != second.envelopes
    assert normalize(first) == normalize(second)
    spans = _streamed_span_items(first)
    (segment,) = [s for s in spans if s["is_segment"]]
    (child,) = [s for s in spans if not s["is_segment"]]
    assert child["parent_span_id"] == segment["span_id"] == "<span_id:1>"
    for span in (segment, child):
        attributes = span["attributes"]
        assert attributes["sentry.segment.id"] == {"type": "string", "value": segment["span_id"]}
        assert attributes["sentry.sdk.name"]["value"] == "sentry.python"  # no integration suffix
        assert attributes["sentry.sdk.version"]["value"] == "<sdk_version>"
        assert attributes["thread.id"]["value"] == "<thread_id>"
        assert span["start_timestamp"] == span["end_timestamp"] == "<timestamp>"
        assert span["trace_id"] == "<trace_id:1>"
    event = first.event()
    text = json.dumps(normalize(first))
    for volatile in (
        event["event_id"],
        event["contexts"]["trace"]["trace_id"],
        event["contexts"]["trace"]["span_id"],
    ):
        assert volatile not in text


# -- Relay: what it cannot check is said, never passed silently -------------------------------------


def test_assert_ingestible_checks_the_event_and_warns_about_the_span_items(
    sentry_capture: SentryCapture,
) -> None:
    """B8 on span streaming: the error event is checked; the span items are named as unchecked."""
    _pipe_calls(sentry_capture)
    spans = len(sentry_capture.items("span"))
    assert spans >= 1 and len(sentry_capture.events) == 1
    with pytest.warns(SpansNotCheckedWarning) as record:
        sentry_capture.assert_ingestible()
    (warning,) = record
    assert f"checked 1 event/transaction item(s); {spans} 'span' item(s) not checked" in str(warning.message)
    assert "Relay's Python normaliser does not take" in str(warning.message)

    with pytest.raises(AssertionError, match=rf"{spans} 'span' item\(s\) not checked") as failure:
        sentry_capture.assert_ingestible(spans="fail")
    assert "captured:" in str(failure.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sentry_capture.assert_ingestible(spans="ignore")
    with pytest.raises(ValueError, match="takes 'warn', 'fail' or 'ignore'"):
        sentry_capture.assert_ingestible(spans="skip")  # type: ignore[arg-type]


def test_assert_ingestible_with_only_span_items_fails_saying_why(sentry_capture: SentryCapture) -> None:
    """A successful call sends only span items: nothing Relay can check, and the failure says why."""
    _pipe_calls(sentry_capture, fail=False)
    with pytest.raises(AssertionError) as failure:
        sentry_capture.assert_ingestible()
    message = str(failure.value)
    assert "nothing to check" in message
    assert "1 'span' item(s) were: sentry-sdk 3 (span streaming) sends spans as 'span' items" in message


def test_ingested_transactions_from_span_items_is_an_error_not_an_empty_list(
    sentry_capture: SentryCapture,
) -> None:
    """``ingested("transaction")`` / ``scrubbed("transaction")`` with only span items: a ValueError saying so."""
    _pipe_calls(sentry_capture)
    for call in (sentry_capture.ingested, sentry_capture.scrubbed):
        with pytest.raises(ValueError, match=r"no 'transaction' item to normalise, but \d+ 'span' item\(s\)"):
            call("transaction")
    with pytest.raises(ValueError, match=r"not 'span' \(sentry-sdk 3 \(span streaming\)"):
        sentry_capture.ingested("span")
    (stored,) = sentry_capture.ingested("event")  # events are checked as on 2.x
    assert dict(stored["tags"])["rpc.method"] == "fail"


# -- a view's tags and user ------------------------------------------------------------------------


def test_a_view_reads_the_hooks_tags_and_user_from_the_segments_attributes(
    sentry_capture: SentryCapture,
) -> None:
    """S9 S11 S12 B7 (the kit's side): a segment view's ``tags``/``user`` are the event's; nothing else is a tag."""
    from vgi_rpc import AuthContext

    config = SentryConfig(
        enable_performance=True, custom_tags={"env": "prod"}, claim_tags={"tenant": "auth.tenant"}
    )
    auth = AuthContext(
        domain="jwt", authenticated=True, principal="u-1", claims={"tenant": "acme", "email": "u@example.com"}
    )
    with serve_pipe(make_server(config), auth=auth) as proxy, pytest.raises(RpcError):
        proxy.fail(message="x")
    event = sentry_capture.event(method="fail")
    view = sentry_capture.transaction(method="fail")
    assert view["streamed"] is True
    assert view["tags"] == event["tags"]  # the hook's tags, read back from the attributes
    assert view["tags"]["env"] == "prod" and view["tags"]["auth.tenant"] == "acme"
    assert event["user"] == {"id": "u-1", "username": "u-1", "email": "u@example.com"}
    attributes = view["contexts"]["trace"]["data"]
    if GENERATION == 3 or "user.id" in attributes:
        assert view["user"] == event["user"]
        assert attributes["user.name"] == "u-1"  # the SDK's own mapping: username travels as user.name
    else:  # 2.x with trace_lifecycle="stream" puts no scope user on the hook's own segment here
        assert view["user"] == {}
    # span data and the SDK's own attributes are attributes, not tags
    for key in ("rpc.system", "rpc.service", "rpc.server_id", "sentry.op"):
        assert key in attributes and key not in view["tags"], key


def test_a_view_over_http_lists_no_integration_attribute_as_a_tag(sentry_capture: SentryCapture) -> None:
    """B7 (the kit's side): the WSGI integration's http.*/url.*/... attributes stay out of a view's tags and user."""
    with http_proxy(make_server(PERF)) as proxy:
        proxy.add(a=1, b=2)
    view = sentry_capture.transaction(method="add")
    attributes = view["contexts"]["trace"]["data"]
    assert any(key.startswith(("http.", "url.")) for key in attributes)
    assert set(view["tags"]) == {"rpc.method", "rpc.method_type", "auth.authenticated", "auth.domain"}
    assert view["tags"]["rpc.method"] == "add"
    # the caller (a JWT for "anon"), read from user.* attributes; the SDK may add the client's ip_address
    user = {k: v for k, v in view["user"].items() if k != "ip_address"}
    if GENERATION == 3 or "user.id" in attributes:
        assert user == {"id": "anon", "username": "anon"}
    else:  # 2.x with trace_lifecycle="stream" puts no user on the WSGI segment
        assert user == {}
