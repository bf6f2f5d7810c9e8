"""Sentry instrumentation over HTTP: a real waitress server on 127.0.0.1, the real client,
real JWTs, and the real SDK with its default integrations (Falcon, WSGI, logging,
threading, dedupe) reporting to the in-memory transport.

Falcon's integration renames every event to the route template when it is sent;
these tests show the documented ``rpc {method}`` survives it, that every failure is
exactly one event, and that a stream's HTTP turns share ``rpc.stream_id``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations.falcon import FalconIntegration
from support.http import TOKEN_KEY, http_proxy, wsgi_client
from support.jwt import bearer
from support.sentry import (
    FAILED,
    HEX32,
    STREAMING,
    RaisingTransport,
    has_rpc_context,
    hook_user,
    http_status,
    request_url,
    root_server_id,
    rpc_data,
    sdk2_logging,
    span_status,
    trace_data,
)
from support.shop import Shop, ShopImpl, make_server, xs

from vgi_rpc import RpcError, RpcServer
from vgi_rpc.http import http_connect
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
from vgi_rpc.testing import SentryCapture

ROUTE = "/{protocol}/{method}"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# sentry-sdk 3 does not enable the logging integration by default; B1 needs it on
pytestmark = pytest.mark.sentry_options(integrations=sdk2_logging())


def txns_for(cap: SentryCapture, method: str) -> list[dict[str, Any]]:
    return [t for t in cap.transactions if trace_data(t).get("rpc.method") == method]


def test_falcon_integration_is_active(sentry_capture: SentryCapture) -> None:
    """S18: the premise of the naming tests: Sentry's Falcon integration is on (a default integration)."""
    assert sentry_capture.client is not None
    assert sentry_capture.client.get_integration(FalconIntegration) is not None


def test_unary_error_over_http_is_one_event_with_full_context(sentry_capture: SentryCapture) -> None:
    """S8 S9 S11 S12 S16 S18 B1: JWT caller, Falcon on: one event, original exception, rpc {method}, user, tags."""
    server = make_server(
        SentryConfig(
            claim_tags={"tenant": "auth.tenant"}, custom_tags={"env": "test"}, tag_params=("message",)
        )
    )
    headers = bearer("sub-7", preferred_username="ada", email="ada@example.org", name=["not", "a", "string"])
    with http_proxy(server, headers) as proxy, pytest.raises(RpcError, match="kaboom"):
        proxy.fail(message="kaboom")

    event = sentry_capture.event()
    (exc,) = event["exception"]["values"]
    assert (exc["type"], exc["value"]) == ("ValueError", "kaboom")
    assert event["transaction"] == "rpc fail"
    assert event["transaction_info"] == {"source": "custom"}
    assert hook_user(event) == {"id": "sub-7", "username": "ada", "email": "ada@example.org"}
    assert event["contexts"]["rpc"] == {
        "method": "fail",
        "method_type": "unary",
        "service": "Shop",
        "server_id": server.server_id,
    }
    tags = event["tags"]
    assert (tags["rpc.method"], tags["rpc.method_type"]) == ("fail", "unary")
    assert (tags["auth.domain"], tags["auth.authenticated"]) == ("jwt", "true")
    assert "auth.tenant" not in tags  # the token has no tenant claim
    assert (tags["env"], tags["rpc.param.message"]) == ("test", "kaboom")
    assert event["request"]["url"].endswith("/Shop/fail")  # the WSGI integration's request data is kept


def test_http_transaction_is_renamed_and_carries_rpc_span_data(sentry_capture: SentryCapture) -> None:
    """S13 S18 S20 S27: the WSGI transaction is 'rpc {method}' (source custom) with rpc.* data; no extra spans."""
    server = make_server(SentryConfig(record_params=True))
    with http_proxy(server, bearer("sub-1", preferred_username="bo", tenant="acme")) as proxy:
        assert proxy.add(a=4, b=5) == 9
    (txn,) = sentry_capture.transactions
    assert txn["transaction"] == "rpc add"
    assert txn["transaction_info"] == {"source": "custom"}
    assert txn["contexts"]["trace"]["op"] == "http.server"
    assert rpc_data(txn) == {
        "rpc.system": "vgi_rpc",
        "rpc.service": "Shop",
        "rpc.method": "add",
        "rpc.method_type": "unary",
        "rpc.param.a": 4,
        "rpc.param.b": 5,
    }
    assert txn["spans"] == []  # S27: performance off: the hook starts no span
    user = hook_user(txn)
    assert user["id"] == "sub-1" and user["username"] == "bo"
    assert txn["tags"]["rpc.method"] == "add"
    assert root_server_id(txn) == server.server_id


def test_set_transaction_name_false_keeps_the_route_template(sentry_capture: SentryCapture) -> None:
    """S19: the integration's own name (Falcon's route template) is left alone, on events and transactions."""
    server = make_server(SentryConfig(set_transaction_name=False))
    with http_proxy(server) as proxy:
        proxy.add(a=1, b=1)
        with pytest.raises(RpcError):
            proxy.fail(message="x")
    names = {(p["transaction"], p["transaction_info"]["source"]) for p in sentry_capture.transactions}
    assert names == {(ROUTE, "route")}
    event = sentry_capture.event()
    assert (event["transaction"], event["transaction_info"]["source"]) == (ROUTE, "route")
    assert event["tags"]["rpc.method"] == "fail"  # context is still recorded


def test_performance_adds_a_child_span_never_a_second_root(sentry_capture: SentryCapture) -> None:
    """S28 S20: under the WSGI transaction the hook starts a child span (op_name, vgi_rpc/<method>, status)."""
    server = make_server(SentryConfig(enable_performance=True, op_name="rpc.server", record_params=True))
    with http_proxy(server) as proxy:
        proxy.add(a=1, b=2)
        with pytest.raises(RpcError):
            proxy.fail(message="x")
    txns = sentry_capture.transactions
    assert sorted(t["transaction"] for t in txns) == ["rpc add", "rpc fail"]  # one root per request
    for txn in txns:
        method = trace_data(txn)["rpc.method"]
        (span,) = txn["spans"]
        assert (span["op"], span["description"]) == ("rpc.server", f"vgi_rpc/{method}")
        assert span_status(span) == ("ok" if method == "add" else FAILED)
        assert span["parent_span_id"] == txn["contexts"]["trace"]["span_id"]
        assert rpc_data(span["data"])["rpc.method"] == method
        # params on the root span and on the rpc.server span, so one span matches both filters
        params = {k: v for k, v in span["data"].items() if k.startswith("rpc.param.")}
        assert params == {k: v for k, v in trace_data(txn).items() if k.startswith("rpc.param.")} != {}
    event = sentry_capture.event()
    failed = next(t for t in txns if t["transaction"] == "rpc fail")
    assert event["contexts"]["trace"]["span_id"] == failed["spans"][0]["span_id"]  # linked to the hook's span


def test_producer_stream_turns_share_stream_id_and_only_init_has_params(
    sentry_capture: SentryCapture,
) -> None:
    """S14 S22 S20: /init and every /exchange turn share rpc.stream_id; rpc.param.* only on /init."""
    server = make_server(SentryConfig(record_params=True, tag_params=("n",)))
    with http_proxy(server) as proxy:
        assert [b.to_pydict()["n"] for b in proxy.countdown(n=3)] == [[3], [2], [1]]
    txns = txns_for(sentry_capture, "countdown")
    assert len(txns) >= 3  # /init + at least two /exchange turns
    ids = {trace_data(t)["rpc.stream_id"] for t in txns}
    assert len(ids) == 1 and HEX32.match(ids.pop())
    assert all(t["transaction"] == "rpc countdown" for t in txns)
    assert all(trace_data(t)["rpc.method_type"] == "stream" for t in txns)
    with_params = [t for t in txns if any(k.startswith("rpc.param.") for k in trace_data(t))]
    (init,) = with_params
    assert rpc_data(init)["rpc.param.n"] == 3
    assert request_url(init).endswith("/init")
    assert all(request_url(t).endswith("/exchange") for t in txns if t is not init)
    # the tag_params tag lives where the params do: the /init turn only
    # (3.x: one attribute holds the tag and the span data; with record_params the typed value wins)
    assert [t["tags"].get("rpc.param.n") for t in txns].count("3") == (0 if STREAMING else 1)
    assert [trace_data(t).get("rpc.param.n") for t in txns].count(3) == 1
    assert not any("stream_id" in k for t in txns for k in t["tags"])  # span data only


def test_exchange_stream_turns_share_stream_id(sentry_capture: SentryCapture) -> None:
    """S14 S22: an exchange session's turns (one transaction each) carry one stream id; params on /init only."""
    server = make_server(SentryConfig(record_params=True))
    with http_proxy(server) as proxy:
        session = proxy.scale(factor=2.0)
        assert session.exchange(xs(1.0)).to_pydict() == {"x": [2.0]}
        assert session.exchange(xs(2.0, 3.0)).to_pydict() == {"x": [4.0, 6.0]}
        session.close()
    txns = txns_for(sentry_capture, "scale")
    assert len(txns) >= 3
    assert len({trace_data(t)["rpc.stream_id"] for t in txns}) == 1
    assert [("rpc.param.factor" in trace_data(t)) for t in txns].count(True) == 1


def test_a_big_answer_arrives_whole_when_sentry_wraps_the_response(sentry_capture: SentryCapture) -> None:
    """B: from 256 KiB our app hands waitress its file wrapper over the Arrow buffer; Sentry's
    WSGI middleware wraps the response, so waitress iterates it in 1 MiB pieces instead. Every value
    arrives, in order, and each turn is still one ``rpc scale`` transaction with its status."""
    server = make_server(SentryConfig())
    values = [float(i) for i in range(200_000)]  # 1.6 MB of float64 each way: two 1 MiB pieces
    with http_proxy(server) as proxy:
        session = proxy.scale(factor=2.0)
        for _ in range(2):
            assert session.exchange(xs(*values)).to_pydict() == {"x": [2 * v for v in values]}
        session.close()
    txns = txns_for(sentry_capture, "scale")
    assert len(txns) == 3  # /init and two /exchange turns
    assert all(t["transaction"] == "rpc scale" for t in txns)
    assert [http_status(t) for t in txns] == ["200", "200", "200"]


def test_another_stream_gets_another_stream_id(sentry_capture: SentryCapture) -> None:
    """S14: the id is per logical stream call."""
    with http_proxy(make_server()) as proxy:
        list(proxy.countdown(n=1))
        list(proxy.countdown(n=1))
    assert len({trace_data(t)["rpc.stream_id"] for t in txns_for(sentry_capture, "countdown")}) == 2


@pytest.mark.parametrize("performance", [False, True], ids=["default", "performance"])
def test_the_rpc_transaction_reports_the_calls_outcome(
    sentry_capture: SentryCapture, performance: bool
) -> None:
    """S18 S28: an RPC error is HTTP 200 on the wire, yet its ``rpc {method}`` transaction says internal_error.

    The WSGI integration derives the status from the HTTP status (200 -> ok); the
    transaction stands for the RPC call, so the hook reports the call's outcome.
    Per turn for streams: only the failing /exchange turn is marked.
    """
    with http_proxy(make_server(SentryConfig(enable_performance=performance))) as proxy:
        proxy.add(a=1, b=2)
        with pytest.raises(RpcError):
            proxy.fail(message="x")
        with pytest.raises(RpcError):
            list(proxy.countdown(n=3, fail_at=1))
    by_name: dict[str, list[str]] = {}
    for txn in sentry_capture.transactions:
        by_name.setdefault(txn["transaction"], []).append(txn["contexts"]["trace"]["status"])
        assert http_status(txn) == "200"  # the wire status is untouched
    assert by_name["rpc add"] == ["ok"]
    assert by_name["rpc fail"] == [FAILED]
    *good_turns, failed_turn = by_name["rpc countdown"]  # /init and the turns before the failure: ok
    assert good_turns and set(good_turns) == {"ok"} and failed_turn == FAILED


@pytest.mark.parametrize(
    ("call", "exc_type", "message", "turn"),
    [
        (lambda p: list(p.countdown(n=-1)), "ValueError", "n must be >= 0", "init"),
        (lambda p: list(p.countdown(n=3, fail_at=3)), "RuntimeError", "producer failed at 3", "init"),
        (lambda p: list(p.countdown(n=3, fail_at=1)), "RuntimeError", "producer failed at 1", "exchange"),
        (lambda p: p.scale(factor=0.0), "ZeroDivisionError", "factor must not be 0", "init"),
        (lambda p: p.scale(factor=1.0).exchange(xs(-2.0)), "ArithmeticError", "negative input", "exchange"),
    ],
    ids=["producer-open", "producer-first-turn", "producer-later-turn", "exchange-open", "exchange-turn"],
)
def test_stream_errors_over_http_are_one_event_each(
    sentry_capture: SentryCapture, call: Any, exc_type: str, message: str, turn: str
) -> None:
    """S16 B1 S18 S14: errors in /init, producer turns and /exchange: one event, original exception, context."""
    with http_proxy(make_server(SentryConfig(enable_performance=True))) as proxy, pytest.raises(RpcError):
        call(proxy)
    event = sentry_capture.event()
    (exc,) = event["exception"]["values"]
    assert (exc["type"], exc["value"]) == (exc_type, message)  # not an HTTP wrapper type
    assert event["transaction"].startswith("rpc ")
    assert event["transaction_info"] == {"source": "custom"}
    assert event["tags"]["rpc.method_type"] == "stream"
    assert event["contexts"]["rpc"]["method_type"] == "stream"
    assert event["request"]["url"].endswith(f"/{turn}")  # an error event: request data on both generations
    failed = [t for t in sentry_capture.transactions if t["spans"] and span_status(t["spans"][0]) != "ok"]
    (txn,) = failed
    assert trace_data(txn)["rpc.stream_id"] == next(iter(txn["spans"]))["data"]["rpc.stream_id"]


def test_ignored_and_disabled_error_capture_over_http(sentry_capture: SentryCapture) -> None:
    """S16 S17: ignored_exceptions and enable_error_capture=False hold with the Falcon integration on."""
    with (
        http_proxy(make_server(SentryConfig(ignored_exceptions=(PermissionError,)))) as proxy,
        pytest.raises(RpcError),
    ):
        proxy.deny()
    with http_proxy(make_server(SentryConfig(enable_error_capture=False))) as proxy:
        with pytest.raises(RpcError):
            proxy.fail(message="quiet")
        with pytest.raises(RpcError):
            list(proxy.countdown(n=2, fail_at=1))
    sentry_capture.assert_no_events()
    assert len(sentry_capture.transactions) >= 4  # the calls did happen and were traced


def test_record_request_context_false_over_http(sentry_capture: SentryCapture) -> None:
    """S15: no rpc context, user or auth tags on events or transactions; method tags and span data stay."""
    server = make_server(SentryConfig(record_request_context=False, claim_tags={"tenant": "auth.tenant"}))
    with (
        http_proxy(server, bearer("sub-1", preferred_username="ada", tenant="acme")) as proxy,
        pytest.raises(RpcError),
    ):
        proxy.fail(message="x")
    event = sentry_capture.event()
    txn = sentry_capture.transaction()
    assert "rpc" not in event["contexts"] and not hook_user(event)
    assert not any(k.startswith("auth.") for k in event["tags"])
    assert event["tags"]["rpc.method"] == "fail"
    assert not has_rpc_context(txn) and not hook_user(txn)
    assert not any(k.startswith("auth.") for k in txn["tags"])
    assert txn["tags"]["rpc.method"] == "fail"
    for payload in (event, txn):
        assert payload["transaction"] == "rpc fail"
    assert rpc_data(txn)["rpc.method"] == "fail"


def test_make_wsgi_app_sentry_config_replaces_the_auto_attached_hook(sentry_capture: SentryCapture) -> None:
    """S6 S5 S7: sentry_config= replaces the auto-attached hook (one Sentry hook), next to an OTel hook."""
    from opentelemetry.sdk.trace import TracerProvider

    from vgi_rpc.otel import OtelConfig

    server = RpcServer(Shop, ShopImpl())  # auto-attached default
    instrument_server_sentry(server, SentryConfig(custom_tags={"env": "explicit-before"}))
    otel = OtelConfig(tracer_provider=TracerProvider(), enable_metrics=False)
    config = SentryConfig(custom_tags={"env": "from-make_wsgi_app"})
    with http_proxy(server, sentry_config=config, otel_config=otel) as proxy, pytest.raises(RpcError):
        proxy.fail(message="x")
    hooks = [type(h).__name__ for h in server.hooks]
    assert hooks.count("_SentryDispatchHook") == 1 and "_OtelDispatchHook" in hooks
    assert sentry_capture.event()["tags"]["env"] == "from-make_wsgi_app"


def test_serve_http_sentry_config_replaces_the_auto_attached_hook(tmp_path: Any) -> None:
    """S6 S2 B1: serve_http(..., sentry_config=) in a real process: the explicit config's tags, one event."""
    out = tmp_path / "events.json"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            """
import faulthandler, json, signal, sys
# Python leaves SIGINT ignored when it starts ignored (a background job of a shell without
# job control, as CI may run us): the test's SIGINT must raise KeyboardInterrupt here.
signal.signal(signal.SIGINT, signal.default_int_handler)
faulthandler.register(signal.SIGUSR1)  # the test asks for every thread's stack if we hang
from vgi_rpc.testing import sentry_capture
from support.shop import Shop, ShopImpl
from vgi_rpc import RpcServer
from vgi_rpc.http import serve_http
from vgi_rpc.sentry import SentryConfig
with sentry_capture() as cap:
    server = RpcServer(Shop, ShopImpl())  # auto-attached: the SDK is initialised
    try:
        serve_http(server, port=0, token_key=b"k" * 32, sentry_config=SentryConfig(custom_tags={"via": "serve_http"}))
    except KeyboardInterrupt:
        pass
    events = cap.events
with open(sys.argv[1], "w") as f:
    json.dump(events, f)
""",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.path.join(REPO, "tests")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("PORT:"), line
        with http_connect(Shop, f"http://127.0.0.1:{int(line[5:])}") as proxy, pytest.raises(RpcError):
            proxy.fail(message="via serve_http")
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # The child's stacks go to its stderr (ours), shown with the failure.
            child.send_signal(signal.SIGUSR1)
            time.sleep(1)
            child.kill()
            raise
    (event,) = json.loads(out.read_text())
    assert event["tags"]["via"] == "serve_http"
    assert event["transaction"] == "rpc fail"


def test_a_raising_transport_never_fails_an_http_call(sentry_capture: SentryCapture) -> None:
    """B5: over HTTP too (the WSGI transaction is sent inside the request), calls are unaffected."""
    from vgi_rpc.testing import DEFAULT_DSN

    transport = RaisingTransport()
    sentry_sdk.init(dsn=DEFAULT_DSN, transport=transport, traces_sample_rate=1.0)  # replaces the capture's
    with http_proxy(make_server(SentryConfig(enable_performance=True))) as proxy:
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError, match="still an RpcError"):
            proxy.fail(message="still an RpcError")
        assert [b.to_pydict()["n"] for b in proxy.countdown(n=2)] == [[2], [1]]
    deadline = time.monotonic() + 10  # 3.x: the SDK's batcher thread sends the spans, maybe still sending
    while transport.attempts < 4 and time.monotonic() < deadline:  # one trace per request: >= 4 on both
        time.sleep(0.01)
    transport.broken = False
    assert transport.attempts >= 4


def test_redacted_values_stay_out_of_http_envelopes(sentry_capture: SentryCapture) -> None:
    """B4: over HTTP, redacted values stay out of every envelope (JWT user, params recorded, call fails)."""
    server = make_server(SentryConfig(record_params=True, tag_params=("api_token", "user")))
    with http_proxy(server, bearer("sub-9")) as proxy, pytest.raises(RpcError):
        proxy.login(user="ada", api_token="tok-http-secret-1", db_password="pw-http-secret-2")
    dumped = json.dumps(sentry_capture.envelopes)
    assert "tok-http-secret-1" not in dumped and "pw-http-secret-2" not in dumped
    assert sentry_capture.event()["tags"]["rpc.param.user"] == "ada"


def test_in_process_wsgi_without_a_socket(sentry_capture: SentryCapture) -> None:
    """S18 B1 S13: the same promises when the app runs under httpx's in-process WSGI transport (no server)."""
    from vgi_rpc.http import make_wsgi_app

    app = make_wsgi_app(make_server(), token_key=TOKEN_KEY)
    client = wsgi_client(app)
    with client, http_connect(Shop, "http://testserver", client=client) as proxy:
        assert proxy.add(a=1, b=1) == 2
        with pytest.raises(RpcError):
            proxy.fail(message="in-process")
    event = sentry_capture.event()
    assert (event["transaction"], event["exception"]["values"][0]["value"]) == ("rpc fail", "in-process")
    assert sorted(t["transaction"] for t in sentry_capture.transactions) == ["rpc add", "rpc fail"]
    assert all(trace_data(t)["rpc.system"] == "vgi_rpc" for t in sentry_capture.transactions)
