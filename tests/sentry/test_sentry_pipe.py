"""Sentry instrumentation over the pipe transport, asserted on real envelopes.

Every test runs the real ``sentry_sdk`` (default integrations on: logging,
threading, dedupe, ...) with the in-memory transport from ``vgi_rpc.testing``
and a real ``serve_pipe`` server thread. No part of ``sentry_sdk`` is mocked.

The ``Shop`` service lives in ``support/shop.py`` (shared by every ``test_sentry_*`` module).
"""

from __future__ import annotations

from typing import Any

import pytest
from support.sentry import (
    FAILED,
    HEX32,
    has_rpc_context,
    root_server_id,
    rpc_data,
    sdk2_logging,
    trace_data,
    user_root,
)
from support.shop import call_with_auth, make_server, xs

from vgi_rpc import AuthContext, RpcError, serve_pipe
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import SentryCapture

# sentry-sdk 3 does not enable the logging integration by default; B1 needs it on
pytestmark = pytest.mark.sentry_options(integrations=sdk2_logging())


def test_unary_error_event_carries_rpc_context(sentry_capture: SentryCapture) -> None:
    """S8 S10 S11 S16 S18 B1: one event, the original exception, the rpc context and tags, named rpc {method}."""
    server = make_server()
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.fail(message="kaboom")

    event = sentry_capture.event()  # exactly one, with logging/threading/dedupe integrations on
    (exc,) = event["exception"]["values"]
    assert (exc["type"], exc["value"]) == ("ValueError", "kaboom")  # the original, not a wrapper
    assert event["contexts"]["rpc"] == {
        "method": "fail",
        "method_type": "unary",
        "service": "Shop",
        "server_id": server.server_id,
    }
    assert event["tags"]["rpc.method"] == "fail"
    assert event["tags"]["rpc.method_type"] == "unary"
    assert event["tags"]["auth.authenticated"] == "false"
    assert "auth.domain" not in event["tags"]  # the pipe caller has no domain
    assert "user" not in event or not event["user"]  # anonymous caller: no user
    assert event["transaction"] == "rpc fail"
    assert event["transaction_info"] == {"source": "custom"}
    assert sentry_capture.transactions == []  # S27: performance is off by default


def test_successful_calls_send_nothing_by_default(sentry_capture: SentryCapture) -> None:
    """S27: enable_performance=False by default: no transaction or span from the hook, even when sampling 100%."""
    with serve_pipe(make_server()) as proxy:
        assert proxy.add(a=2, b=3) == 5
        assert [b.to_pydict()["n"] for b in proxy.countdown(n=2)] == [[2], [1]]
    assert sentry_capture.envelopes == []


def test_performance_transaction_per_dispatch(sentry_capture: SentryCapture) -> None:
    """S13 S28: vgi_rpc/<method>, op rpc.server, status ok/internal_error, rpc.* span data on the pipe."""
    server = make_server(SentryConfig(enable_performance=True))
    with serve_pipe(server) as proxy:
        proxy.add(a=1, b=2)
        with pytest.raises(RpcError):
            proxy.fail(message="x")

    ok = sentry_capture.transaction("add")
    failed = sentry_capture.transaction("fail")
    for txn, method, status in ((ok, "add", "ok"), (failed, "fail", FAILED)):
        assert txn["transaction"] == f"vgi_rpc/{method}"
        assert txn["transaction_info"] == {"source": "custom"}
        assert txn["contexts"]["trace"]["op"] == "rpc.server"
        assert txn["contexts"]["trace"]["status"] == status
        assert rpc_data(trace_data(txn)) == {
            "rpc.system": "vgi_rpc",
            "rpc.service": "Shop",
            "rpc.method": method,
            "rpc.method_type": "unary",
        }
        assert txn["tags"]["rpc.method"] == method
        assert root_server_id(txn) == server.server_id
    # the error event belongs to the failed call's trace, and is still named rpc {method}
    event = sentry_capture.event()
    assert event["contexts"]["trace"]["trace_id"] == failed["contexts"]["trace"]["trace_id"]
    assert event["transaction"] == "rpc fail"


def test_each_pipe_call_is_its_own_trace(sentry_capture: SentryCapture) -> None:
    """B2 S28: calls on one pipe connection (one serving thread) are separate traces; each event is in its call's.

    The client sends no trace context here: with it, the calls would all continue the
    caller's (tests/tracing), which is the caller's choice, not the serving thread's.
    """
    with serve_pipe(make_server(SentryConfig(enable_performance=True)), propagate_trace=False) as proxy:
        for message in ("one", "two", "three"):
            with pytest.raises(RpcError):
                proxy.fail(message=message)
    traces = [t["contexts"]["trace"]["trace_id"] for t in sentry_capture.transactions]
    assert len(traces) == len(set(traces)) == 3
    for event in sentry_capture.events:
        (txn,) = [
            t
            for t in sentry_capture.transactions
            if t["contexts"]["trace"]["trace_id"] == event["contexts"]["trace"]["trace_id"]
        ]
        assert event["contexts"]["trace"]["span_id"] == txn["contexts"]["trace"]["span_id"]


def test_custom_op_name(sentry_capture: SentryCapture) -> None:
    """S28: the transaction's op is SentryConfig.op_name."""
    with serve_pipe(make_server(SentryConfig(enable_performance=True, op_name="rpc.custom"))) as proxy:
        proxy.add(a=1, b=1)
    assert sentry_capture.transaction()["contexts"]["trace"]["op"] == "rpc.custom"


def test_stream_calls_carry_stream_id_in_span_data_only(sentry_capture: SentryCapture) -> None:
    """S14 S13: stream dispatches carry rpc.stream_id (span data only); unary ones do not."""
    with serve_pipe(make_server(SentryConfig(enable_performance=True))) as proxy:
        list(proxy.countdown(n=2))
        with proxy.scale(factor=2.0) as session:
            assert session.exchange(xs(1.5)).to_pydict() == {"x": [3.0]}
        proxy.add(a=1, b=1)

    producer = sentry_capture.transaction("countdown")
    exchange = sentry_capture.transaction("scale")
    unary = sentry_capture.transaction("add")
    for txn in (producer, exchange):
        data = trace_data(txn)
        assert data["rpc.method_type"] == "stream"
        assert HEX32.match(data["rpc.stream_id"])
        assert not any("stream_id" in key for key in txn["tags"])  # never a tag
        assert txn["tags"]["rpc.method_type"] == "stream"
    assert trace_data(producer)["rpc.stream_id"] != trace_data(exchange)["rpc.stream_id"]
    assert "rpc.stream_id" not in trace_data(unary)


@pytest.mark.parametrize(
    ("call", "exc_type", "message"),
    [
        (lambda p: list(p.countdown(n=-1)), "ValueError", "n must be >= 0"),  # fails on open
        (lambda p: list(p.countdown(n=3, fail_at=2)), "RuntimeError", "producer failed at 2"),  # in a turn
        (lambda p: p.scale(factor=0.0).exchange(xs(1.0)), "ZeroDivisionError", "factor must not be 0"),
        (lambda p: p.scale(factor=2.0).exchange(xs(-1.0)), "ArithmeticError", "negative input"),
    ],
    ids=["producer-open", "producer-turn", "exchange-open", "exchange-turn"],
)
def test_stream_errors_are_captured_once_with_original_exception(
    sentry_capture: SentryCapture, call: Any, exc_type: str, message: str
) -> None:
    """S16 B1: an error opening a stream or inside a producer/exchange turn is one event with the original type."""
    with serve_pipe(make_server(SentryConfig(enable_performance=True))) as proxy, pytest.raises(RpcError):
        call(proxy)

    event = sentry_capture.event()
    (exc,) = event["exception"]["values"]
    assert (exc["type"], exc["value"]) == (exc_type, message)
    assert event["tags"]["rpc.method_type"] == "stream"
    assert event["contexts"]["rpc"]["method_type"] == "stream"
    assert event["transaction"] in ("rpc countdown", "rpc scale")
    (txn,) = sentry_capture.transactions
    assert txn["contexts"]["trace"]["status"] == FAILED


def test_ignored_exceptions_use_isinstance(sentry_capture: SentryCapture) -> None:
    """S16: types in ignored_exceptions (and their subclasses) are not reported; others still are."""
    # LookupError is ignored, so KeyError (a subclass) is too; ValueError is not.
    server = make_server(SentryConfig(ignored_exceptions=(PermissionError, LookupError)))
    with serve_pipe(server) as proxy:
        for call in (lambda: proxy.deny(), lambda: proxy.search(table="t", fail=True)):
            with pytest.raises(RpcError):
                call()
        with pytest.raises(RpcError):
            proxy.fail(message="reported")
    (event,) = sentry_capture.events
    assert event["exception"]["values"][0]["type"] == "ValueError"


def test_enable_error_capture_false_sends_no_error_events(sentry_capture: SentryCapture) -> None:
    """S17: no error event at all, while transactions (performance on) still report the failure."""
    server = make_server(SentryConfig(enable_error_capture=False, enable_performance=True))
    with serve_pipe(server) as proxy:
        with pytest.raises(RpcError):
            proxy.fail(message="silent")
        with pytest.raises(RpcError):
            list(proxy.countdown(n=2, fail_at=1))
    sentry_capture.assert_no_events()
    assert {t["contexts"]["trace"]["status"] for t in sentry_capture.transactions} == {FAILED}


def test_record_request_context_false_removes_exactly_context_user_and_auth_tags(
    sentry_capture: SentryCapture,
) -> None:
    """S15 S10 S12: no rpc context, user, auth.* or claim tags; method tags, custom tags, span data stay."""
    config = SentryConfig(
        record_request_context=False,
        enable_performance=True,
        custom_tags={"env": "test"},
        claim_tags={"tenant": "auth.tenant"},
        tag_params=("table",),
    )
    server = make_server(config)
    auth = AuthContext(domain="jwt", authenticated=True, principal="u-1", claims={"tenant": "acme"})
    call_with_auth(server, "search", auth, table="orders", fail=True)

    event = sentry_capture.event()
    assert "rpc" not in event.get("contexts", {})
    assert not event.get("user")
    assert event["tags"] == {
        "rpc.method": "search",
        "rpc.method_type": "unary",
        "env": "test",
        "rpc.param.table": "orders",
    }
    assert event["transaction"] == "rpc search"
    txn = sentry_capture.transaction()
    assert not has_rpc_context(txn)
    assert txn["tags"] == event["tags"]
    assert rpc_data(txn)["rpc.method"] == "search"


def test_authenticated_caller_user_auth_and_claim_tags(sentry_capture: SentryCapture) -> None:
    """S9 S11 S12: user.id = principal, user fields via user_claim_map (bad claims skipped), auth/claim/custom tags."""
    config = SentryConfig(
        custom_tags={"env": "prod", "region": "eu"},
        claim_tags={
            "tenant_id": "auth.tenant_id",
            "org": "auth.org",
            "absent": "auth.absent",
            "big": "auth.big",
        },
        user_claim_map={"username": "preferred_username", "email": "email", "name": "name", "nick": "nick"},
    )
    server = make_server(config)
    auth = AuthContext(
        domain="jwt",
        authenticated=True,
        principal="sub-42",
        claims={
            "preferred_username": "ada",
            "email": "",  # empty: skipped
            "name": 7,  # not a string: skipped
            "tenant_id": "acme",
            "org": 17,  # a number is stringified for a tag
            "big": "x" * 500,  # clipped to 200 characters
        },
    )
    call_with_auth(server, "fail", auth, message="m")

    event = sentry_capture.event()
    assert event["user"] == {"id": "sub-42", "username": "ada"}
    tags = event["tags"]
    assert tags["auth.domain"] == "jwt"
    assert tags["auth.authenticated"] == "true"
    assert tags["auth.tenant_id"] == "acme"
    assert tags["auth.org"] == "17"
    assert tags["auth.big"] == "x" * 200
    assert "auth.absent" not in tags
    assert (tags["env"], tags["region"]) == ("prod", "eu")


@pytest.mark.parametrize(
    ("claims", "claim_map"),
    [
        ({}, None),  # a token without preferred_username
        ({"preferred_username": ""}, None),  # empty: skipped
        ({"preferred_username": ["ada"]}, None),  # not a string: skipped
        ({"preferred_username": "ada"}, {"email": "email"}),  # username not mapped at all
    ],
    ids=["absent", "empty", "not-a-string", "not-mapped"],
)
def test_username_falls_back_to_the_principal(
    sentry_capture: SentryCapture, claims: dict[str, Any], claim_map: dict[str, str] | None
) -> None:
    """S9: user.id is the principal; user.username is the mapped claim, else the principal (the page's table)."""
    config = SentryConfig() if claim_map is None else SentryConfig(user_claim_map=claim_map)
    auth = AuthContext(domain="jwt", authenticated=True, principal="sub-9", claims=claims)
    call_with_auth(make_server(config), "fail", auth, message="m")
    assert sentry_capture.event()["user"] == {"id": "sub-9", "username": "sub-9"}


def test_an_authenticated_pipe_caller_gets_the_principal_as_username(sentry_capture: SentryCapture) -> None:
    """S9: on the pipe (serve_pipe(auth=...) or the pipe request path) the rule is the same."""
    auth = AuthContext(domain="pipe", authenticated=True, principal="svc-batch", claims={})
    call_with_auth(make_server(SentryConfig(enable_performance=True)), "fail", auth, message="m")
    assert sentry_capture.event()["user"] == {"id": "svc-batch", "username": "svc-batch"}
    assert sentry_capture.transaction().get("user", {}) == {"id": "svc-batch", "username": "svc-batch"}


def test_unauthenticated_caller_has_no_user_even_with_principal(sentry_capture: SentryCapture) -> None:
    """S9 S11: users are set for authenticated callers only; auth.authenticated is "false"."""
    server = make_server()
    auth = AuthContext(domain="pipe", authenticated=False, principal="someone", claims={"email": "a@b.c"})
    call_with_auth(server, "fail", auth, message="m")
    event = sentry_capture.event()
    assert not event.get("user")
    assert event["tags"]["auth.authenticated"] == "false"
    assert event["tags"]["auth.domain"] == "pipe"


def test_set_transaction_name_false_keeps_the_scope_name(sentry_capture: SentryCapture) -> None:
    """S19: with set_transaction_name=False the hook does not rename events (here: the hook's own transaction)."""
    server = make_server(SentryConfig(set_transaction_name=False, enable_performance=True))
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.fail(message="m")
    event = sentry_capture.event()
    assert event["transaction"] == "vgi_rpc/fail"  # what the SDK derives from the active transaction
    assert sentry_capture.transaction()["transaction"] == "vgi_rpc/fail"


def test_inproc_dispatch_is_instrumented_too(sentry_capture: SentryCapture) -> None:
    """S16 B1: RpcServer.dispatch (in-process) reports the original exception once, then re-raises it."""
    server = make_server()
    with pytest.raises(ValueError, match="direct"):
        server.dispatch("fail", message="direct")
    event = sentry_capture.event()
    assert event["exception"]["values"][0]["value"] == "direct"
    assert event["tags"]["rpc.method"] == "fail"


def test_builtin_tags_win_over_colliding_custom_tags(sentry_capture: SentryCapture) -> None:
    """S10 S12: custom_tags cannot overwrite the tags the hook sets; other custom tags are kept."""
    config = SentryConfig(custom_tags={"rpc.method": "spoofed", "auth.authenticated": "true", "team": "a"})
    with serve_pipe(make_server(config)) as proxy, pytest.raises(RpcError):
        proxy.fail(message="m")
    tags = sentry_capture.event()["tags"]
    assert (tags["rpc.method"], tags["auth.authenticated"], tags["team"]) == ("fail", "false", "a")


@pytest.mark.parametrize("propagate", [True, False], ids=["propagating", "not-propagating"])
def test_serve_pipe_opened_inside_a_transaction_leaves_it_alone(
    sentry_capture: SentryCapture, propagate: bool
) -> None:
    """B2 S18 S28: serve_pipe's server thread starts from an empty context, like a worker process.

    Sentry's threading integration hands a new thread its parent's scope, so without
    that the caller's transaction was the ambient root of every call: renamed
    ``rpc add`` and given the calls as child spans. The caller's trace reaches the
    worker only in the requests (``propagate_trace``).
    """
    server = make_server(SentryConfig(enable_performance=True))
    with user_root("checkout") as root, serve_pipe(server, propagate_trace=propagate) as proxy:
        assert proxy.add(a=1, b=2) == 3
    (caller,) = [t for t in sentry_capture.transactions if t["contexts"]["trace"]["span_id"] == root.span_id]
    assert caller["transaction"] == "checkout"
    assert caller["spans"] == []
    worker = sentry_capture.transaction("add")
    assert worker["transaction"] == "vgi_rpc/add"
    trace = worker["contexts"]["trace"]
    if propagate:
        assert (trace["trace_id"], trace["parent_span_id"]) == (root.trace_id, root.span_id)
    else:
        assert trace["trace_id"] != root.trace_id
        assert trace.get("parent_span_id") is None
