"""The testing kit: in-memory transport, sentry_capture (fixture + context manager), pytest plugin.

Everything here runs the real ``sentry_sdk``; nothing in it is patched.  The
fresh-project tests run pytest in a subprocess (``runpytest_subprocess``) in a
temporary directory with no conftest, so the fixture they use can only come
from the installed ``pytest11`` entry point.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import warnings
from typing import Any

import pytest
import sentry_sdk
from support.sentry import STREAMING, TRACE_ITEM, set_span_data, user_root, user_span

from vgi_rpc.testing import DEFAULT_DSN, SentryCapture, sentry_capture
from vgi_rpc.testing.fake_transport import InMemoryTransport

pytest_plugins = ["pytester"]


def _boom() -> None:
    raise ZeroDivisionError("boom")


def _capture_boom() -> None:
    try:
        _boom()
    except ZeroDivisionError:
        sentry_sdk.capture_exception()


# -- InMemoryTransport -------------------------------------------------------------------


def test_transport_records_plain_envelopes() -> None:
    transport = InMemoryTransport()
    with sentry_sdk.Client(dsn=DEFAULT_DSN, transport=transport, default_integrations=False) as client:
        client.capture_event({"message": "hello", "level": "info"})
    (envelope,) = transport.envelopes
    assert set(envelope) == {"headers", "items"}
    (item,) = envelope["items"]
    assert item["type"] == "event"
    assert item["headers"]["type"] == "event"
    assert item["payload"]["message"] == "hello"
    assert re.fullmatch(r"[0-9a-f]{32}", item["payload"]["event_id"])
    assert envelope["headers"]["event_id"] == item["payload"]["event_id"]
    # The wire bytes are kept too, and say the same thing.
    (raw,) = transport.raw_envelopes
    assert b'"message":"hello"' in raw


def test_transport_returns_copies() -> None:
    transport = InMemoryTransport()
    with sentry_sdk.Client(dsn=DEFAULT_DSN, transport=transport, default_integrations=False) as client:
        client.capture_event({"message": "hello", "level": "info"})
    transport.envelopes[0]["items"].clear()
    assert len(transport.envelopes[0]["items"]) == 1


def test_transport_is_thread_safe() -> None:
    transport = InMemoryTransport()
    n_threads, per_thread = 8, 25
    with sentry_sdk.Client(dsn=DEFAULT_DSN, transport=transport, default_integrations=False) as client:
        barrier = threading.Barrier(n_threads)

        def work(t: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                client.capture_event({"message": f"{t}-{i}", "level": "info"})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    messages = sorted(e["items"][0]["payload"]["message"] for e in transport.envelopes)
    assert messages == sorted(f"{t}-{i}" for t in range(n_threads) for i in range(per_thread))
    assert len(transport.raw_envelopes) == n_threads * per_thread


def test_transport_never_blocks_the_sending_thread() -> None:
    """B5, B10: the SDK's rule "a transport must not block" holds for the kit's own transport.

    A reader holds the transport's lock (as while it converts a large capture); a send
    from another thread still returns, and what it sent is read once the lock is free.
    """
    transport = InMemoryTransport()
    with sentry_sdk.Client(dsn=DEFAULT_DSN, transport=transport, default_integrations=False) as client:
        sent = threading.Event()

        def send() -> None:
            client.capture_event({"message": "while a reader holds the lock", "level": "info"})
            transport.record_lost_event("queue_overflow", data_category="span")
            sent.set()

        with transport._lock:  # what a reader holds while it converts
            sender = threading.Thread(target=send)
            sender.start()
            returned = sent.wait(timeout=30)  # a blocked send would wait for the lock forever
        sender.join()
        assert returned, "capture_envelope or record_lost_event waited for the reader's lock"
    assert [e["items"][0]["payload"]["message"] for e in transport.envelopes] == [
        "while a reader holds the lock"
    ]
    assert {"reason": "queue_overflow", "data_category": "span", "quantity": 1} in transport.lost_events


def test_transport_flush_and_kill_are_honoured() -> None:
    transport = InMemoryTransport()
    client = sentry_sdk.Client(dsn=DEFAULT_DSN, transport=transport, default_integrations=False)
    client.capture_event({"message": "before", "level": "info"})
    client.flush(timeout=1.0)
    assert transport.flush_count >= 1
    assert [e["items"][0]["payload"]["message"] for e in transport.envelopes] == ["before"]
    transport.kill()
    assert transport.killed
    client.capture_event({"message": "after kill", "level": "info"})
    assert len(transport.envelopes) == 1
    assert transport.dropped_after_kill == 1
    client.close()


def test_transport_records_what_the_sdk_discarded() -> None:
    """before_send dropping an event: nothing reaches the transport, the loss is recorded."""
    with sentry_capture(before_send=lambda event, hint: None) as cap:
        sentry_sdk.capture_message("dropped")
        assert cap.envelopes == []
        assert {"reason": "before_send", "data_category": "error", "quantity": 1} in cap.lost_events
        assert "discarded by the SDK before the transport: error:before_send" in cap.describe()


def test_transport_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with sentry_capture() as cap:
        _capture_boom()
        with user_root("t", "test"):
            pass
        logging.getLogger("kit").error("logged error")
        cap.flush()
    assert len(cap.events) == (1 if STREAMING else 2)  # 3.x: logging is not a default integration
    assert len(cap.transactions) == 1
    assert attempts == []


# -- sentry_capture: the data it gives -----------------------------------------------------


def test_capture_events_transactions_and_flattened_spans() -> None:
    with sentry_capture() as cap:
        with user_root("rpc add", "rpc.server"):
            sentry_sdk.set_tag("rpc.method", "add")
            with user_span("query", "db"):
                pass
            _capture_boom()
        events, transactions, spans = cap.events, cap.transactions, cap.spans
    (event,) = events
    assert event["exception"]["values"][-1]["type"] == "ZeroDivisionError"
    (txn,) = transactions
    assert txn["transaction"] == "rpc add"
    # (span items arrive as they end: the child first)
    root, child = sorted(spans, key=lambda s: not s["is_root"])
    assert [(s["op"], s["is_root"], s["transaction"]) for s in (root, child)] == [
        ("rpc.server", True, "rpc add"),
        ("db", False, "rpc add"),
    ]
    assert child["parent_span_id"] == root["span_id"]
    assert root["description"] == "rpc add"
    assert root["trace_id"] == child["trace_id"] == event["contexts"]["trace"]["trace_id"]
    assert [item["type"] for item in cap.items()] == ["event", TRACE_ITEM]


def test_streamed_spans_are_flattened_too() -> None:
    """With trace_lifecycle="stream" spans arrive as `span` items, not inside a transaction."""
    traces = pytest.importorskip("sentry_sdk.traces", reason="span streaming is newer than this sentry-sdk")

    with sentry_capture(trace_lifecycle="stream") as cap:
        with traces.start_span(name="root"), traces.start_span(name="child"):
            pass
        spans = cap.spans
        (view,) = cap.transactions  # the segment, shown in the shape of a transaction
    assert sorted((s["name"], s["is_root"], s["transaction"]) for s in spans) == [
        ("child", False, "root"),
        ("root", True, "root"),
    ]
    assert view["streamed"] is True and view["transaction"] == "root"
    assert view["contexts"]["trace"]["span_id"] == next(s["span_id"] for s in spans if s["is_root"])
    (child,) = view["spans"]
    assert child["description"] == "child"
    assert child["parent_span_id"] == view["contexts"]["trace"]["span_id"]
    assert cap.transaction()["transaction"] == "root"


def test_a_streamed_segment_is_listed_as_informatively_as_a_transaction() -> None:
    """The report line of a ``span`` item: per span its name, ``rpc.method``, op and status; the root marked.

    Runs on 2.x with ``trace_lifecycle="stream"`` and on 3.x (which always streams):
    the same item, the same line.
    """
    traces = pytest.importorskip("sentry_sdk.traces", reason="span streaming is newer than this sentry-sdk")
    options = {} if STREAMING else {"trace_lifecycle": "stream"}
    with sentry_capture(**options) as cap:
        with traces.start_span(name="rpc pay", attributes={"sentry.op": "rpc.server"}) as root:
            root.set_attribute("rpc.method", "pay")
            with traces.start_span(name="db", attributes={"sentry.op": "db.query"}):
                pass
            root.status = "error"
        text = cap.describe()
    (line,) = text.splitlines()
    assert line.endswith(
        "span (2): 'db' op=db.query status=ok; segment 'rpc pay' rpc.method='pay' op=rpc.server status=error"
    ), text
    assert cap.transaction(method="pay")["contexts"]["trace"]["status"] == "error"


class _SlowTransport(InMemoryTransport):
    """Takes 20 ms per envelope: the SDK's batcher thread is then mid-send when a test reads."""

    def capture_envelope(self, envelope: Any) -> None:
        time.sleep(0.02)
        super().capture_envelope(envelope)


def test_reading_waits_for_a_send_in_progress_on_the_batcher_thread() -> None:
    """Span items leave from the SDK's batcher thread: a flush that finds its buffer empty must still wait.

    The thread takes its buffer under a lock and sends after releasing it; reading
    in that window used to miss the envelope being sent.
    """
    from vgi_rpc.testing._capture import _wait_for_batcher_threads

    traces = pytest.importorskip("sentry_sdk.traces", reason="span streaming is newer than this sentry-sdk")
    options = {} if sentry_sdk.VERSION.startswith("3.") else {"trace_lifecycle": "stream"}
    with sentry_capture():
        transport = _SlowTransport()
        sentry_sdk.init(dsn=DEFAULT_DSN, transport=transport, traces_sample_rate=1.0, **options)
        client = sentry_sdk.get_client()
        for i in range(5):
            with traces.start_span(name=f"segment-{i}"):
                pass
            time.sleep(0.005)  # the batcher thread wakes and starts sending
            client.flush(timeout=2.0)
            _wait_for_batcher_threads(client, 2.0)
            assert len(transport.envelopes) == i + 1, f"segment {i} ended but was not readable"


def test_capture_defaults_traces_sampled_and_fake_dsn() -> None:
    with sentry_capture() as cap:
        assert cap.client is not None
        assert cap.client.options["traces_sample_rate"] == 1.0
        assert cap.client.options["dsn"] == DEFAULT_DSN
        assert ".invalid/" in DEFAULT_DSN
        with user_root("sampled"):
            pass
        assert cap.transaction()["transaction"] == "sampled"


def test_capture_passes_init_options() -> None:
    with sentry_capture(environment="qa", release="r1", traces_sample_rate=0.0) as cap:
        with user_root("not sampled"):
            pass
        sentry_sdk.capture_message("m")
        assert cap.transactions == []
        assert cap.event()["environment"] == "qa"
        assert cap.event()["release"] == "r1"


def test_an_option_of_the_other_sdk_generation_fails_with_the_sdks_message() -> None:
    """docs/testing.md: sentry-sdk 3 has no ``send_default_pii`` (``data_collection`` replaces it); 2.x has it."""
    if STREAMING:
        with (
            pytest.raises(TypeError, match="Unknown option 'send_default_pii'"),
            sentry_capture(send_default_pii=True),
        ):
            pass
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # recent 2.x: "Use data_collection instead"
            with sentry_capture(send_default_pii=True) as cap:
                assert cap.client is not None and cap.client.options["send_default_pii"] is True


def test_capture_rejects_a_transport_option() -> None:
    with pytest.raises(TypeError, match="own transport"), sentry_capture(transport=InMemoryTransport()):
        pass


def test_default_integrations_on_unless_disabled() -> None:
    """The SDK's default integrations are on; on 2.x logging is one (an ERROR log becomes an event)."""
    with sentry_capture() as cap:
        logging.getLogger("kit").error("from logging")
        assert cap.client is not None and "dedupe" in cap.client.integrations
        assert [e.get("logger") for e in cap.events] == ([] if STREAMING else ["kit"])  # 3.x: not a default
    with sentry_capture(default_integrations=False) as cap:
        logging.getLogger("kit").error("from logging")
        assert cap.client is not None and "dedupe" not in cap.client.integrations
        assert cap.events == []


def test_events_for_and_transactions_for_filter_on_rpc_method() -> None:
    with sentry_capture() as cap:
        for method in ("add", "sub", "add"):
            with sentry_sdk.new_scope() as scope:
                scope.set_tag("rpc.method", method)
                sentry_sdk.capture_message(method)
            with user_root(f"rpc {method}") as txn:
                set_span_data(txn, "rpc.method", method)
        assert [e["message"] for e in cap.events_for("add")] == ["add", "add"]
        assert [e["message"] for e in cap.events_for("sub")] == ["sub"]
        assert cap.events_for("mul") == []
        assert [t["transaction"] for t in cap.transactions_for("sub")] == ["rpc sub"]
        assert cap.event("sub")["message"] == "sub"
        assert cap.transaction("sub")["transaction"] == "rpc sub"


def test_single_event_failure_lists_what_was_captured() -> None:
    with sentry_capture() as cap:
        with user_root("rpc add", "rpc.server"):
            sentry_sdk.set_tag("rpc.method", "add")
            _capture_boom()
        sentry_sdk.capture_message("something else")
        with pytest.raises(AssertionError) as excinfo:
            cap.event()
        text = str(excinfo.value)
        assert "expected exactly one error event, found 2" in text
        assert "ZeroDivisionError: boom" in text
        assert "rpc.method='add'" in text
        assert "message='something else'" in text
        if STREAMING:  # the root, as a streamed segment: its name, op and status (3.x keeps no tags on it)
            assert "span (1): segment 'rpc add' op=rpc.server status=ok" in text
        else:
            assert "transaction 'rpc add' rpc.method='add' op=rpc.server" in text
        with pytest.raises(AssertionError, match=r"for method 'mul', found 0"):
            cap.event("mul")
        with pytest.raises(AssertionError, match=r"exactly one transaction for method 'mul'"):
            cap.transaction("mul")


def test_failure_on_an_empty_capture_says_nothing_arrived() -> None:
    with sentry_capture() as cap, pytest.raises(AssertionError) as excinfo:
        cap.event()
    assert "found 0" in str(excinfo.value)
    assert "nothing: no envelope reached the transport" in str(excinfo.value)


def test_assert_no_events() -> None:
    with sentry_capture() as cap:
        cap.assert_no_events()
        sentry_sdk.capture_message("oops")
        with pytest.raises(AssertionError, match="expected no error events"):
            cap.assert_no_events()


def test_clear_forgets_and_keeps_capturing() -> None:
    with sentry_capture() as cap:
        sentry_sdk.capture_message("one")
        cap.clear()
        assert cap.envelopes == []
        sentry_sdk.capture_message("two")
        assert [e["message"] for e in cap.events] == ["two"]


def test_data_stays_readable_after_exit() -> None:
    with sentry_capture() as cap:
        sentry_sdk.capture_message("kept")
    assert not cap.active
    assert cap.event()["message"] == "kept"
    assert "closed" in repr(cap)


def test_logs_are_flushed_before_reading() -> None:
    """Sentry logs are batched by an SDK worker; reading flushes them into the capture."""
    with sentry_capture(**({} if STREAMING else {"enable_logs": True})) as cap:  # on by default on 3.x
        sentry_sdk.logger.info("structured log {n}", n=1)
        logs = cap.payloads("log")
    assert logs, cap.describe()
    bodies = [entry["body"] for payload in logs for entry in payload["items"]]
    assert "structured log 1" in bodies


def test_thread_started_inside_reports_to_the_capture() -> None:
    with sentry_capture() as cap:
        thread = threading.Thread(target=sentry_sdk.capture_message, args=("from a thread",))
        thread.start()
        thread.join()
        assert cap.event()["message"] == "from a thread"


# -- isolation and restore -----------------------------------------------------------------


def test_two_captures_in_a_row_share_nothing() -> None:
    with sentry_capture() as first:
        sentry_sdk.set_tag("leaky", "yes")
        sentry_sdk.set_user({"id": "alice"})
        sentry_sdk.get_global_scope().set_tag("global-leaky", "yes")
        sentry_sdk.capture_message("first")
    with sentry_capture() as second:
        assert second.envelopes == []
        sentry_sdk.capture_message("second")
        event = second.event()
    assert "leaky" not in event.get("tags", {})
    assert "global-leaky" not in event.get("tags", {})
    assert "user" not in event
    assert [e["message"] for e in first.events] == ["first"]
    assert first.transport.killed


def test_capture_restores_the_previous_client_and_scopes() -> None:
    with sentry_capture() as outer:
        sentry_sdk.set_tag("outer", "1")
        outer_client = sentry_sdk.get_client()
        with sentry_capture() as inner:
            assert sentry_sdk.get_client() is inner.client is not outer_client
            sentry_sdk.capture_message("inner")
            assert "outer" not in inner.event().get("tags", {})
        assert sentry_sdk.get_client() is outer_client
        sentry_sdk.capture_message("outer")
        assert [e["message"] for e in outer.events] == ["outer"]
        assert outer.event()["tags"]["outer"] == "1"
    assert [e["message"] for e in inner.events] == ["inner"]


def _scope_ids() -> tuple[int, int, int]:
    return (
        id(sentry_sdk.get_global_scope()),
        id(sentry_sdk.get_isolation_scope()),
        id(sentry_sdk.get_current_scope()),
    )


def test_capture_restores_after_an_exception() -> None:
    before = _scope_ids()
    with pytest.raises(RuntimeError, match="inside"), sentry_capture() as cap:
        assert _scope_ids() != before
        raise RuntimeError("inside")
    assert not cap.active
    assert _scope_ids() == before


def test_a_client_the_test_installed_itself_receives_nothing() -> None:
    """A test that called sentry_sdk.init itself and never cleaned up (simulated, then undone)."""
    with sentry_capture() as sandbox:  # only so the simulated leak is undone at the end
        leaked_transport = InMemoryTransport()
        sentry_sdk.init(dsn=DEFAULT_DSN, transport=leaked_transport, default_integrations=False)
        sentry_sdk.set_tag("leaked", "yes")
        leaked_client = sentry_sdk.get_client()
        with sentry_capture() as cap:
            sentry_sdk.capture_message("mine")
            event = cap.event()
        assert "leaked" not in event.get("tags", {})
        assert leaked_transport.envelopes == []
        assert sentry_sdk.get_client() is leaked_client  # restored, as it was
    assert sandbox.envelopes == []


def test_init_inside_a_capture_is_reported_and_cleaned_up() -> None:
    stray = InMemoryTransport()
    with sentry_capture() as cap:
        sentry_sdk.init(dsn=DEFAULT_DSN, transport=stray, default_integrations=False)
        sentry_sdk.capture_message("to the stray client")
        assert cap.envelopes == []
        with pytest.raises(AssertionError, match=r"did the code under test call sentry_sdk\.init\?"):
            cap.event()
    assert stray.killed  # the stray client was closed with the capture
    assert sentry_sdk.get_client() is not stray


def test_fixture_is_a_sentry_capture(sentry_capture: SentryCapture) -> None:
    assert isinstance(sentry_capture, SentryCapture)
    assert sentry_capture.active
    sentry_sdk.capture_message("via fixture")
    assert sentry_capture.event()["message"] == "via fixture"


@pytest.mark.sentry_options(environment="marked", max_breadcrumbs=7)
def test_fixture_takes_options_from_the_marker(sentry_capture: SentryCapture) -> None:
    assert sentry_capture.client is not None
    assert sentry_capture.client.options["max_breadcrumbs"] == 7
    sentry_sdk.capture_message("m")
    assert sentry_capture.event()["environment"] == "marked"


def test_loading_the_plugin_does_not_import_sentry(pytester: pytest.Pytester) -> None:
    """RpcServer's auto-attach looks at sys.modules: the plugin must not put sentry_sdk there."""
    pytester.makepyfile(
        """
        import sys

        def test_not_imported(request):
            assert request.config.pluginmanager.has_plugin("vgi_rpc")
            assert "sentry_sdk" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


# -- a fresh project: only the package installed, no conftest ---------------------------------

_FRESH_PROJECT = """
import logging

import sentry_sdk


def fail_like_a_handler():
    try:
        {{}}["missing"]
    except KeyError:
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("rpc.method", "checkout")
            sentry_sdk.capture_exception()


def test_expected_event_present(sentry_capture):
    fail_like_a_handler()
    event = sentry_capture.event(method="checkout")
    assert event["exception"]["values"][-1]["type"] == "KeyError"


def test_expected_event_absent(sentry_capture):
    logging.getLogger("app").warning("only a warning")
    {absent_assertion}
"""


def test_fresh_project_fixture_passes_without_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=_FRESH_PROJECT.format(absent_assertion="assert sentry_capture.events == []"))
    assert not list(pytester.path.glob("conftest.py"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_fresh_project_missing_event_fails_readably(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_app=_FRESH_PROJECT.format(absent_assertion='sentry_capture.event(method="checkout")')
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected exactly one error event for method 'checkout', found 0; captured:",
            "*(nothing: no envelope reached the transport)*",
        ]
    )


def test_fresh_project_no_cross_test_state(pytester: pytest.Pytester) -> None:
    """Fixture twice in a row, and after a test that called sentry_sdk.init itself (in order)."""
    pytester.makepyfile(
        test_order="""
        import sentry_sdk
        from vgi_rpc.testing import InMemoryTransport

        LEAKED = InMemoryTransport()

        def test_1_first_use(sentry_capture):
            sentry_sdk.set_tag("from-test-1", "x")
            sentry_sdk.set_user({"id": "u1"})
            sentry_sdk.capture_message("one")
            assert len(sentry_capture.events) == 1

        def test_2_second_use_starts_empty(sentry_capture):
            assert sentry_capture.envelopes == []
            sentry_sdk.capture_message("two")
            event = sentry_capture.event()
            assert "from-test-1" not in event.get("tags", {})
            assert "user" not in event

        def test_3_calls_init_itself_and_leaves_it():
            sentry_sdk.init(dsn="https://k@sentry.invalid/9", transport=LEAKED)
            sentry_sdk.set_tag("from-test-3", "x")

        def test_4_after_a_stray_init(sentry_capture):
            assert sentry_capture.envelopes == []
            sentry_sdk.capture_message("four")
            event = sentry_capture.event()
            assert "from-test-3" not in event.get("tags", {})
            assert LEAKED.envelopes == []

        def test_5_the_stray_client_is_back_untouched():
            assert sentry_sdk.get_client().transport is LEAKED
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=5)


# -- envelopes recorded elsewhere ------------------------------------------------------------------


def test_from_envelopes_reads_recorded_envelopes_through_the_same_views() -> None:
    """The kit's views over envelopes another process recorded and wrote as JSON (the deploy check's case)."""
    import json

    with sentry_capture() as live:
        with user_root("checkout") as root:
            set_span_data(root, "rpc.method", "pay")
        sentry_sdk.capture_message("boom")
    written = json.dumps(live.envelopes)  # what a worker writes, one process
    recorded = SentryCapture.from_envelopes(json.loads(written))  # what the check reads, another
    assert not recorded.active
    assert recorded.envelopes == live.envelopes
    assert recorded.events == live.events and recorded.transactions == live.transactions
    assert recorded.spans == live.spans and recorded.lost_events == []
    assert recorded.transaction(method="pay")["transaction"] == "checkout"
    assert recorded.describe() == live.describe()
    view = recorded.envelopes
    view.clear()  # a copy: the recording is not changed through it
    assert len(recorded.envelopes) == len(live.envelopes) > 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{}", "envelope 0 is str"),
        ([{"headers": {}}], "envelope 0 has no 'items' list"),
        ([{"items": [{"type": "event"}]}], "envelope 0, item 0 needs 'type' and 'payload'"),
        ([{"items": []}, 3], "envelope 1 is int"),
    ],
)
def test_from_envelopes_refuses_what_is_not_an_envelope(bad: Any, message: str) -> None:
    """Bad input: a clear error naming the envelope and what is wrong, not a KeyError later."""
    with pytest.raises(ValueError, match=re.escape(message)):
        SentryCapture.from_envelopes(bad)
