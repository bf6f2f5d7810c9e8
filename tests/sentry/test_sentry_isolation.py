"""Per-call isolation and transport failure: B2 and B5 (pipe and in-process; HTTP in test_sentry_http.py).

The ``mark`` method decorates the *current* Sentry scope the way application code
does (tag, user, context, breadcrumb) and optionally fails. If the hook did not fork
a scope per call, those would stick to the next call's events.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from support.http import TOKEN_KEY, http_proxy
from support.jwt import JWT_SECRET, bearer
from support.sentry import STREAMING, RaisingTransport, hook_user, sdk2_logging
from support.shop import Shop, call_with_auth, make_server

from vgi_rpc import AuthContext, RpcError, serve_pipe
from vgi_rpc.http import http_connect, jwt_authenticator, start_http_server
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import DEFAULT_DSN, SentryCapture

# sentry-sdk 3 does not enable the logging integration by default; B1 needs it on
pytestmark = pytest.mark.sentry_options(integrations=sdk2_logging())


def marker_of(event: dict[str, Any]) -> str | None:
    marker: str | None = event.get("tags", {}).get("app.marker")
    return marker


def crumbs_of(event: dict[str, Any]) -> list[str]:
    return [c.get("message") or "" for c in event.get("breadcrumbs", {}).get("values", [])]


def test_sequential_pipe_calls_do_not_leak_scope_data(sentry_capture: SentryCapture) -> None:
    """B2: a tag, user, context and breadcrumb set during one pipe call are absent from the next call's event."""
    config = SentryConfig(enable_performance=True, tag_params=("marker",))
    with serve_pipe(make_server(config)) as proxy:
        with pytest.raises(RpcError):
            proxy.mark(marker="first", fail=True)
        with pytest.raises(RpcError):
            proxy.fail(message="second")
        proxy.add(a=1, b=1)

    first, second = sentry_capture.events
    assert marker_of(first) == "first"
    assert first["user"] == {"id": "user-first"}
    assert first["contexts"]["app"] == {"marker": "first"}
    assert "crumb-first" in crumbs_of(first)
    assert first["tags"]["rpc.param.marker"] == "first"

    assert second["tags"]["rpc.method"] == "fail"
    assert marker_of(second) is None
    assert "rpc.param.marker" not in second["tags"]
    assert not second.get("user")
    assert "app" not in second["contexts"]
    assert "crumb-first" not in crumbs_of(second)
    # the next transaction is clean too
    add = sentry_capture.transaction("add")
    assert "app.marker" not in add["tags"] and "app" not in add["contexts"]
    assert not hook_user(add)


def test_authenticated_user_does_not_stick_to_the_next_anonymous_call(sentry_capture: SentryCapture) -> None:
    """B2 S9: the user and auth tags of one caller are not on the next caller's event (same thread)."""
    server = make_server(SentryConfig(claim_tags={"tenant": "auth.tenant"}))
    jwt_user = AuthContext(domain="jwt", authenticated=True, principal="u-1", claims={"tenant": "acme"})
    call_with_auth(server, "fail", jwt_user, message="first")
    call_with_auth(server, "fail", AuthContext(), message="second")
    first, second = sentry_capture.events
    assert first["user"] == {"id": "u-1", "username": "u-1"}  # S9: no preferred_username claim
    assert first["tags"]["auth.tenant"] == "acme"
    assert not second.get("user")
    assert "auth.tenant" not in second["tags"] and "auth.domain" not in second["tags"]
    assert second["tags"]["auth.authenticated"] == "false"


def test_nothing_leaks_back_into_the_callers_scope(sentry_capture: SentryCapture) -> None:
    """B2: after an in-process dispatch, the caller's own events carry none of the call's data."""
    server = make_server(SentryConfig(custom_tags={"env": "test"}))
    with pytest.raises(LookupError):
        server.dispatch("mark", marker="inside", fail=True)
    sentry_sdk.capture_message("after the call")
    inside, after = sentry_capture.events
    assert marker_of(inside) == "inside"
    assert after["message"] == "after the call"
    assert not any(k.startswith(("rpc.", "app.", "auth.")) or k == "env" for k in after.get("tags", {}))
    assert not after.get("user")
    assert "rpc" not in after["contexts"] and "app" not in after["contexts"]
    assert after.get("transaction") != "rpc mark"


def test_concurrent_pipe_calls_keep_their_own_data(sentry_capture: SentryCapture) -> None:
    """B2: 8 threads, each with its own pipe connection to one server: every event carries only its own marker."""
    server = make_server(SentryConfig(enable_performance=True, tag_params=("marker",)))
    rounds = 6
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with serve_pipe(server) as proxy:
                barrier.wait(timeout=30)
                for r in range(rounds):
                    marker = f"t{index}-r{r}"
                    if r % 2:
                        assert proxy.mark(marker=marker, fail=False) == len(marker)
                    else:
                        with pytest.raises(RpcError, match=marker):
                            proxy.mark(marker=marker, fail=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors

    events = sentry_capture.events
    assert len(events) == 8 * rounds // 2
    for event in events:
        marker = event["exception"]["values"][0]["value"].removeprefix("failed ")
        assert marker_of(event) == marker
        assert event["tags"]["rpc.param.marker"] == marker
        assert event["user"] == {"id": f"user-{marker}"}
        assert [c for c in crumbs_of(event) if c.startswith("crumb-")] == [f"crumb-{marker}"]
    transactions = sentry_capture.transactions
    assert len(transactions) == 8 * rounds
    for txn in transactions:
        marker = txn["tags"]["rpc.param.marker"]
        assert hook_user(txn) == {"id": f"user-{marker}"}  # what the app set, in this call only
        if not STREAMING:  # 3.x: scope tags do not reach spans (only scope attributes do)
            assert txn["tags"]["app.marker"] == marker


# -- B5: a broken or stuck transport never breaks a call ------------------------------------------


def test_a_raising_transport_never_fails_a_call(sentry_capture: SentryCapture) -> None:
    """B5: every envelope send raises; calls still return their results and errors unchanged."""
    transport = RaisingTransport()
    sentry_sdk.init(dsn=DEFAULT_DSN, transport=transport, traces_sample_rate=1.0)  # replaces the capture's
    config = SentryConfig(enable_performance=True, record_params=True)
    with serve_pipe(make_server(config)) as proxy:
        assert proxy.add(a=20, b=22) == 42
        with pytest.raises(RpcError, match="still reported to the client"):
            proxy.fail(message="still reported to the client")
        assert [b.to_pydict()["n"] for b in proxy.countdown(n=2)] == [[2], [1]]
        assert proxy.add(a=1, b=1) == 2
    # 2.x: 4 transactions + 1 error event, one envelope each. 3.x: the error event, and
    # the 4 segments in 1-4 span envelopes (spans of one trace share one), sent by the
    # SDK's batcher thread, maybe still sending
    expected = 2 if STREAMING else 5
    deadline = time.monotonic() + 10
    while transport.attempts < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    transport.broken = False
    assert transport.attempts >= expected


@pytest.fixture
def hanging_sentry() -> Iterator[tuple[str, threading.Event]]:
    """A TCP server on 127.0.0.1 that accepts Sentry's HTTP request and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    got_request = threading.Event()
    release = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not release.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            conn.recv(65536)
            got_request.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    yield f"http://public@127.0.0.1:{port}/1", got_request
    release.set()
    listener.close()
    for conn in conns:
        conn.close()
    thread.join(timeout=5)


def test_a_stuck_sentry_server_never_blocks_calls(
    sentry_capture: SentryCapture, hanging_sentry: tuple[str, threading.Event]
) -> None:
    """B5: with the SDK's own HTTP transport stuck on an unresponsive server, calls keep completing."""
    dsn, got_request = hanging_sentry
    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0, shutdown_timeout=0)
    config = SentryConfig(enable_performance=True)
    with serve_pipe(make_server(config)) as proxy:
        with pytest.raises(RpcError):
            proxy.fail(message="first")
        assert got_request.wait(timeout=30), "the SDK never tried to send"
        # the SDK's worker is now blocked on a server that never answers; calls go on regardless
        results = [proxy.add(a=i, b=i) for i in range(50)]
        with pytest.raises(RpcError):
            proxy.fail(message="again")
    assert results == [2 * i for i in range(50)]
    assert json.dumps(sentry_capture.envelopes) == "[]"  # the capture's client was replaced: nothing here


# -- B2 over HTTP: a real waitress server with 8 worker threads ----------------------------------


def test_sequential_http_calls_do_not_leak_scope_data(sentry_capture: SentryCapture) -> None:
    """B2: over HTTP, what one request's code put on the scope (and its JWT user) is absent from the next."""

    server = make_server()
    with http_proxy(server, bearer("sub-first")) as proxy, pytest.raises(RpcError):
        proxy.mark(marker="first", fail=True)
    with http_proxy(server, bearer("sub-second")) as proxy, pytest.raises(RpcError):
        proxy.fail(message="second")
    first, second = sentry_capture.events
    assert marker_of(first) == "first"
    assert hook_user(second) == {"id": "sub-second", "username": "sub-second"}
    assert marker_of(second) is None
    assert "app" not in second["contexts"]
    assert "crumb-first" not in crumbs_of(second)


def test_concurrent_http_calls_keep_their_own_user_and_data(sentry_capture: SentryCapture) -> None:
    """B2: 8 client threads with distinct JWT users against 8 waitress threads: no event or transaction mixes calls."""

    server = make_server(SentryConfig(enable_performance=True, tag_params=("marker", "message")))
    rounds = 6
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(index: int, proxy: Any) -> None:
        try:
            barrier.wait(timeout=30)
            for r in range(rounds):
                marker = f"t{index}-r{r}"
                if r % 3 == 0:
                    with pytest.raises(RpcError, match=marker):
                        proxy.fail(message=marker)
                elif r % 3 == 1:
                    with pytest.raises(RpcError, match=marker):
                        proxy.mark(marker=marker, fail=True)
                else:
                    assert [b.to_pydict()["n"] for b in proxy.countdown(n=2)] == [[2], [1]]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    with (
        start_http_server(
            server, token_key=TOKEN_KEY, authenticate=jwt_authenticator(key=JWT_SECRET)
        ) as handle,
        contextlib.ExitStack() as stack,
    ):
        proxies = [
            stack.enter_context(http_connect(Shop, handle.base_url, headers=bearer(f"sub-{i}")))
            for i in range(8)
        ]
        threads = [threading.Thread(target=worker, args=(i, p)) for i, p in enumerate(proxies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors

    events = sentry_capture.events
    assert len(events) == 8 * 4
    for event in events:
        marker = event["exception"]["values"][0]["value"].removeprefix("failed ")
        thread_index = marker.split("-")[0][1:]
        method = event["tags"]["rpc.method"]
        if method == "fail":
            assert hook_user(event) == {"id": f"sub-{thread_index}", "username": f"sub-{thread_index}"}
            assert event["tags"]["rpc.param.message"] == marker
            assert marker_of(event) is None
        else:
            assert hook_user(event) == {"id": f"user-{marker}"}  # what the app set, in this call only
            assert event["tags"]["rpc.param.marker"] == marker
            assert marker_of(event) == marker
    by_user: dict[str, set[str]] = {}
    for txn in sentry_capture.transactions:
        assert txn["transaction"] == f"rpc {txn['tags']['rpc.method']}"
        if txn["tags"]["rpc.method"] == "countdown":
            by_user.setdefault(txn["user"]["id"], set()).add(
                txn["contexts"]["trace"]["data"]["rpc.stream_id"]
            )
    # each user ran exactly 2 streams; no turn of one user's stream was attributed to another user
    assert sorted(by_user) == sorted(f"sub-{i}" for i in range(8))
    assert all(len(ids) == 2 for ids in by_user.values())
    all_ids = [i for ids in by_user.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 16
