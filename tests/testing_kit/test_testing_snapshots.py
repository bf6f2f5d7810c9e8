"""The snapshot normaliser and the syrupy extension (vgi_rpc.testing.snapshots).

Each placeholder rule is shown replacing a well-formed value and *failing* on a
malformed one; the syrupy behaviour the project relies on (snapshot directory,
mismatch, unused snapshot, malformed value under --snapshot-update) is checked
in a fresh pytest subprocess.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any, Protocol

import pytest
import sentry_sdk
from support.sentry import set_span_data, user_root, user_span

from vgi_rpc.testing import sentry_capture
from vgi_rpc.testing.snapshots import (
    SentryEnvelopeExtension,
    SnapshotFormatError,
    normalize,
    normalize_calls,
    sdk_folder,
)

pytest_plugins = ["pytester"]

HEX32 = "0123456789abcdef0123456789abcdef"
HEX32_B = "fedcba9876543210fedcba9876543210"
HEX16 = "0123456789abcdef"
HEX16_B = "fedcba9876543210"
HEX12 = "0123456789ab"


# -- one rule at a time -----------------------------------------------------------------------

GOOD = [
    ("event_id", HEX32, "<event_id:1>"),
    ("trace_id", HEX32, "<trace_id:1>"),
    ("span_id", HEX16, "<span_id:1>"),
    ("parent_span_id", HEX16, "<span_id:1>"),
    ("parent_span_id", None, None),
    ("server_id", HEX12, "<server_id:1>"),
    ("rpc.server_id", HEX12, "<server_id:1>"),
    ("stream_id", HEX32, "<stream_id:1>"),
    ("rpc.stream_id", HEX32, "<stream_id:1>"),
    ("request_id", HEX16, "<request_id:1>"),
    ("rpc.request_id", HEX16, "<request_id:1>"),
    ("timestamp", "2024-05-01T12:34:56.123456Z", "<timestamp>"),
    ("timestamp", "2024-05-01T12:34:56+00:00", "<timestamp>"),
    ("timestamp", 1714566896.123, "<timestamp>"),
    ("start_timestamp", "2024-05-01T12:34:56.1Z", "<timestamp>"),
    ("end_timestamp", 1714566896.5, "<timestamp>"),
    ("sentry.segment.id", HEX16, "<span_id:1>"),
    ("process.command_args", ["pytest"], "<argv>"),
    ("sentry.sdk.integrations", ["argv", "logging"], "<integrations>"),
    ("process.runtime.version", "3.11.7", "<runtime_version>"),
    ("sent_at", "2024-05-01T12:34:56.123456Z", "<timestamp>"),
    ("started", "2024-05-01T12:34:00Z", "<timestamp>"),
    ("duration", 12.5, "<duration>"),
    ("rpc.duration_ms", 0, "<duration>"),
    ("elapsed", 3, "<duration>"),
    ("thread.id", "140258680149696", "<thread_id>"),
    ("thread_id", 1402586, "<thread_id>"),
    ("thread.name", "Thread-12 (worker)", "Thread-<n> (worker)"),
    ("thread.name", "MainThread", "MainThread"),
    ("sample_rand", "0.472895", "<sample_rand>"),
    ("sample_rand", 0.0, "<sample_rand>"),
    ("sentry.sdk.version", "2.75.0", "<sdk_version>"),
    ("abs_path", "/work/main/vgi_rpc/server.py", "<path>"),
    ("filename", "vgi_rpc/server.py", "vgi_rpc/server.py"),
    ("filename", "/tmp/x/test_app.py", "<path>/test_app.py"),
    ("lineno", 419, "<lineno>"),
    ("colno", 0, "<lineno>"),
    ("server_name", "build-host-7", "<server_name>"),
    ("server.address", "build-host-7", "<server_name>"),
    ("release", "3ccdbbf", "<release>"),
    ("sentry.release", "3ccdbbf", "<release>"),
    ("environment", "production", "<environment>"),
    ("sentry.environment", "staging", "<environment>"),
    ("sentry.sdk.name", "sentry.python.falcon", "sentry.python"),
    ("sentry.sdk.name", "sentry.python", "sentry.python"),
    ("SERVER_PORT", "37205", "<port>"),
    ("server.port", 443, "<port>"),
    ("client.port", 53122, "<port>"),
    ("SERVER_NAME", "waitress.invalid", "<server_name>"),
    ("SERVER_SOFTWARE", "gunicorn/23.0.0", "gunicorn/<version>"),
    ("SERVER_SOFTWARE", "waitress", "waitress"),
    ("user_agent.original", "python-httpx/0.28.1", "python-httpx/<version>"),
    ("CONTENT_LENGTH", "560", "<size>"),
    ("http.response.body.size", 0, "<size>"),
    ("url.full", "http://127.0.0.1:39271/vgi/Orders/place", "http://127.0.0.1:<port>/vgi/Orders/place"),
    ("url.full", "https://example.com/x", "https://example.com/x"),
    ("os.name", "Linux", "<os>"),
    ("os.version", "6.1.0-18-amd64", "<os_version>"),
    ("process.runtime.description", "3.11.7 (main) [GCC 12.2.0]", "<runtime_version>"),
    ("modules", {"pyarrow": "26.0.1"}, "<modules>"),
    ("sys.argv", ["pytest", "-q"], "<argv>"),
]

BAD = [
    ("event_id", HEX32[:-1], "32 lower-case hex"),
    ("event_id", HEX32.upper(), "32 lower-case hex"),
    ("trace_id", 123, "32 lower-case hex"),
    ("span_id", HEX16 + "0", "16 lower-case hex"),
    ("span_id", None, "16 lower-case hex"),
    ("parent_span_id", "xyz", "16 lower-case hex"),
    ("server_id", HEX16, "12 lower-case hex"),
    ("rpc.server_id", "not-an-id", "12 lower-case hex"),
    ("stream_id", "0123-4567", "32 lower-case hex"),
    ("rpc.stream_id", None, "32 lower-case hex"),
    ("request_id", HEX32, "16 lower-case hex"),
    ("timestamp", "yesterday", "ISO 8601"),
    ("timestamp", -1.0, "ISO 8601"),
    ("timestamp", True, "ISO 8601"),
    ("start_timestamp", "2024-05-01 12:34:56", "ISO 8601"),
    ("duration", -0.5, "non-negative number"),
    ("rpc.duration_ms", "12ms", "non-negative number"),
    ("elapsed", float("nan"), "non-negative number"),
    ("thread.id", "0x7f", "decimal thread id"),
    ("thread_id", -4, "decimal thread id"),
    ("thread.name", 7, "a string"),
    ("sample_rand", "1.5", r"\[0, 1\)"),
    ("sample_rand", "abc", r"\[0, 1\)"),
    ("sentry.sdk.version", "latest", "X.Y.Z"),
    ("abs_path", None, "a string"),
    ("filename", 3, "a string"),
    ("lineno", "12", "a line number"),
    ("lineno", -1, "a line number"),
    ("server_name", 1, "a string"),
    ("release", None, "a string"),
    ("modules", ["pyarrow"], "package versions"),
    ("sys.argv", "pytest -q", "a list of strings"),
    ("end_timestamp", "soon", "ISO 8601"),
    ("sentry.segment.id", HEX32, "16 lower-case hex"),
    ("sentry.sdk.integrations", "logging", "a list of strings"),
    ("sdk", {"version": "2.0.0"}, "an sdk dict"),
    ("sdk", {"name": "sentry.python", "version": "dev"}, "X.Y.Z"),
    ("sdk", {"name": "raven-python", "version": "6.0.0"}, "an SDK name"),
    ("sentry.sdk.name", "python", "an SDK name"),
    ("environment", None, "a string"),
    ("SERVER_PORT", "0", r"a TCP port \(1-65535\)"),
    ("SERVER_PORT", "70000", "a TCP port"),
    ("SERVER_PORT", "http", "a TCP port"),
    ("server.port", True, "a TCP port"),
    ("SERVER_SOFTWARE", 3, "a product/version string"),
    ("CONTENT_LENGTH", "-1", "a size in bytes"),
    ("http.request.body.size", 1.5, "a size in bytes"),
    ("url.full", "not a url", "a URL"),
    ("url.full", "http://host:99999/", "a URL"),
    ("os.version", 6, "a string"),
]


@pytest.mark.parametrize(("key", "value", "expected"), GOOD, ids=[f"{k}={v!r}"[:40] for k, v, _ in GOOD])
def test_rule_replaces_a_well_formed_value(key: str, value: Any, expected: Any) -> None:
    assert normalize({key: value}) == {key: expected}


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_rule_fails_on_a_malformed_value(key: str, value: Any, message: str) -> None:
    with pytest.raises(SnapshotFormatError, match=message) as excinfo:
        normalize({"payload": {key: value}})
    assert f"payload.{key}" in str(excinfo.value)  # the failure says where
    assert isinstance(excinfo.value, AssertionError)  # a failed test, not an error


def test_sdk_name_loses_its_integration_suffix_and_what_follows_the_environment_is_dropped() -> None:
    """With falcon installed a pipe test reports sentry.python.falcon, without it sentry.python."""
    sdk = {
        "name": "sentry.python.falcon",
        "version": "2.75.0",
        "packages": [{"name": "pypi:sentry-sdk", "version": "2.75.0"}],
        "integrations": ["argv", "logging"],
    }
    assert normalize({"sdk": sdk}) == {"sdk": {"name": "sentry.python", "version": "<sdk_version>"}}
    assert normalize({"sdk": {**sdk, "name": "sentry.python"}}) == normalize({"sdk": sdk})


# -- HTTP: ports, software versions, sizes ------------------------------------------------------------

REQUEST = {
    "url": "http://127.0.0.1:39271/vgi/Orders/place?x=1",
    "env": {"SERVER_NAME": "waitress.invalid", "SERVER_PORT": "39271"},
    "headers": {
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Content-Length": "560",
        "Host": "127.0.0.1:39271",
        "User-Agent": "python-httpx/0.28.1",
        "Sentry-Trace": f"{HEX32}-{HEX16}-1",
        "Baggage": f"sentry-trace_id={HEX32},sentry-sample_rand=0.472895,sentry-environment=prod,"
        "sentry-release=3ccdbbf,sentry-public_key=public,other=kept",
        "X-Custom": "kept:1234",
    },
    "method": "POST",
}


def test_http_request_fields_lose_ports_versions_and_sizes() -> None:
    out = normalize({"request": REQUEST, "trace_id": HEX32})
    assert out == {
        "request": {
            "url": "http://127.0.0.1:<port>/vgi/Orders/place?x=1",
            "env": {"SERVER_NAME": "<server_name>", "SERVER_PORT": "<port>"},
            "headers": {
                "Accept-Encoding": "<accept_encoding>",
                "Baggage": "sentry-trace_id=<trace_id:1>,sentry-sample_rand=<sample_rand>,"
                "sentry-environment=<environment>,sentry-release=<release>,sentry-public_key=public,other=kept",
                "Content-Length": "<size>",
                "Host": "127.0.0.1:<port>",
                "Sentry-Trace": "<trace_id:1>-<span_id:1>-1",
                "User-Agent": "python-httpx/<version>",
                "X-Custom": "kept:1234",
            },
            "method": "POST",
        },
        "trace_id": "<trace_id:1>",  # the header's trace id is the same placeholder
    }


def test_header_rules_ignore_case_and_apply_only_to_headers() -> None:
    assert normalize({"headers": {"host": "localhost:8000", "user-agent": "vgi-rpc/0.52.2 (x)"}}) == {
        "headers": {"host": "localhost:<port>", "user-agent": "vgi-rpc/<version> (x)"}
    }
    assert normalize({"headers": {"Host": "example.com"}}) == {"headers": {"Host": "example.com"}}
    assert normalize({"tags": {"host": "db:5432", "content-length": "7"}}) == {
        "tags": {"host": "db:5432", "content-length": "7"}
    }


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("Host", "a b:1", r"headers\.Host = 'a b:1' is not a host\[:port\]"),
        ("Host", "h:123456", "host"),
        ("Content-Length", "12 bytes", "a size in bytes"),
        ("Accept-Encoding", "gzip;;", "a list of content codings"),
        ("Sentry-Trace", "abc-def", "a sentry-trace header"),
        ("Baggage", "no-equals-sign", "a baggage header"),
        ("Baggage", "sentry-trace_id=short", "32 lower-case hex"),
        ("User-Agent", None, "a product/version string"),
    ],
)
def test_a_malformed_header_fails(header: str, value: Any, message: str) -> None:
    with pytest.raises(SnapshotFormatError, match=message):
        normalize({"request": {"headers": {header: value}}})


def test_request_url_is_checked() -> None:
    with pytest.raises(SnapshotFormatError, match=r"request\.url = '/relative' is not a URL"):
        normalize({"request": {"url": "/relative"}})
    assert normalize({"tags": {"url": "/relative"}}) == {"tags": {"url": "/relative"}}  # a user's tag


def test_urls_in_any_string_lose_their_port() -> None:
    text = "POST http://127.0.0.1:39271/vgi/x failed; retry https://[::1]:8443/y or ws://u:p@h:9/z at 12:30"
    assert normalize({"message": text}) == {
        "message": "POST http://127.0.0.1:<port>/vgi/x failed; retry https://[::1]:<port>/y or "
        "ws://u:p@h:<port>/z at 12:30"
    }


# -- release and environment: replaced unless you set them -------------------------------------------


def test_release_and_environment_are_kept_when_named() -> None:
    data = {"release": "shop@1.2", "environment": "staging", "trace": {"environment": "staging"}}
    assert normalize(data) == {
        "environment": "<environment>",
        "release": "<release>",
        "trace": {"environment": "<environment>"},
    }
    assert normalize(data, keep={"release", "environment"}) == data
    assert normalize(data, keep={"release"})["environment"] == "<environment>"
    with pytest.raises(ValueError, match="accepts"):
        normalize(data, keep={"server_name"})


def test_a_capture_keeps_what_it_was_given() -> None:
    with sentry_capture(environment="staging") as cap:
        sentry_sdk.capture_message("m")
    (event,) = normalize(cap.events)
    assert event["environment"] == "<environment>"  # a list of payloads: nothing says it was explicit
    (envelope,) = normalize(cap)
    payload = envelope["items"][0]["payload"]
    assert payload["environment"] == "staging"  # the capture itself: it was
    assert payload["release"] == "<release>"  # the capture's default, not the user's
    assert envelope["headers"]["trace"]["environment"] == "staging"
    with sentry_capture(release="shop@1.2") as cap:
        sentry_sdk.capture_message("m")
    assert normalize(cap)[0]["items"][0]["payload"]["release"] == "shop@1.2"


# -- vgi_rpc's own frames -----------------------------------------------------------------------------


def _frame(module: str, function: str, **extra: Any) -> dict[str, Any]:
    return {"module": module, "function": function, "filename": module.replace(".", "/") + ".py", **extra}


def test_runs_of_vgi_rpc_frames_become_one_placeholder_each() -> None:
    frames = [
        _frame("vgi_rpc.server", "handle_unary", in_app=True),
        _frame("vgi_rpc.server", "invoke", in_app=True),
        _frame("shop.orders", "place", in_app=True, lineno=12),
        _frame("vgi_rpc.streams", "run_turn"),
        _frame("shop.orders", "produce", in_app=True),
        _frame("vgi_rpc_contrib.x", "not_ours"),  # a package that merely starts with the name
    ]
    out = normalize({"exception": {"values": [{"stacktrace": {"frames": frames}}]}})
    placeholder = {"function": "<vgi_rpc frames>", "in_app": False, "module": "vgi_rpc"}
    assert out["exception"]["values"][0]["stacktrace"]["frames"] == [
        placeholder,
        {
            "filename": "shop/orders.py",
            "function": "place",
            "in_app": True,
            "lineno": "<lineno>",
            "module": "shop.orders",
        },
        placeholder,
        {"filename": "shop/orders.py", "function": "produce", "in_app": True, "module": "shop.orders"},
        {"filename": "vgi_rpc_contrib/x.py", "function": "not_ours", "module": "vgi_rpc_contrib.x"},
    ]


def test_frames_without_a_module_are_recognised_by_file_name() -> None:
    frames = [{"function": "f", "filename": "vgi_rpc/pipe.py"}, {"function": "g", "filename": "app.py"}]
    out = normalize({"stacktrace": {"frames": frames}})
    assert [f["function"] for f in out["stacktrace"]["frames"]] == ["<vgi_rpc frames>", "g"]


def test_meta_notes_of_collapsed_frames_go_and_the_users_follow_their_frames() -> None:
    """The SDK's note that our frame's local 'auth' was filtered goes; the user's note moves to index 1."""
    auth_note = {"vars": {"auth": {"": {"rem": [["!config", "s"]]}}}}
    user_note = {"vars": {"token": {"": {"rem": [["!config", "s"]]}}}}
    event = {
        "exception": {
            "values": [
                {
                    "stacktrace": {
                        "frames": [
                            _frame("vgi_rpc.server", "handle_unary"),
                            _frame("vgi_rpc.server", "invoke"),
                            _frame("shop.orders", "place"),
                        ]
                    }
                }
            ]
        },
        "_meta": {
            "exception": {"values": {"0": {"stacktrace": {"frames": {"0": auth_note, "2": user_note}}}}},
            "request": {"data": {"": {"rem": [["!raw", "x"]]}}},
        },
    }
    out = normalize([{"items": [{"payload": event}]}])  # at any depth, e.g. inside an envelope
    meta = out[0]["items"][0]["payload"]["_meta"]
    assert meta == {
        "exception": {"values": {"0": {"stacktrace": {"frames": {"1": user_note}}}}},
        "request": {"data": {"": {"rem": [["!raw", "x"]]}}},
    }
    only_ours = copy.deepcopy(event)
    del only_ours["_meta"]["exception"]["values"]["0"]["stacktrace"]["frames"]["2"]
    assert "exception" not in normalize(only_ours)["_meta"]  # no empty husk of the note is left


def test_a_real_error_event_keeps_only_the_users_frames() -> None:
    """A failed call over serve_pipe: the handler's frames stay, vgi_rpc's become one placeholder."""
    from vgi_rpc import RpcError, RpcServer, serve_pipe
    from vgi_rpc.sentry import SentryConfig, instrument_server_sentry

    with sentry_capture() as cap:
        server = instrument_server_sentry(RpcServer(Shop, ShopImpl()), SentryConfig())
        with serve_pipe(server) as proxy, pytest.raises(RpcError):
            proxy.buy(sku="x")
    assert any(f["module"].startswith("vgi_rpc.") for f in _frames(cap.event()))  # the raw event has ours
    (event,) = [i["payload"] for e in normalize(cap) for i in e["items"] if i["type"] == "event"]
    frames = _frames(event)
    assert frames[0] == {"function": "<vgi_rpc frames>", "in_app": False, "module": "vgi_rpc"}
    assert [(f["function"], f["module"]) for f in frames[1:]] == [
        ("buy", __name__),
        ("_check_stock", __name__),
    ]
    text = json.dumps(event)
    assert '"filename": "vgi_rpc/' not in text and '"vgi_rpc.' not in text


class Shop(Protocol):
    def buy(self, sku: str) -> str: ...


class ShopImpl:
    def buy(self, sku: str) -> str:
        return _check_stock(sku)


def _check_stock(sku: str) -> str:
    raise LookupError(f"no stock for {sku}")


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = event["exception"]["values"][-1]["stacktrace"]["frames"]
    return frames


def test_ids_are_numbered_by_first_appearance_so_links_stay_pinned() -> None:
    data = {
        "a_root": {"span_id": HEX16, "trace_id": HEX32},
        "b_child": {"span_id": HEX16_B, "parent_span_id": HEX16, "trace_id": HEX32},
        "c_other_trace": {"trace_id": HEX32_B},
        "d_turns": [{"rpc.stream_id": HEX32}, {"rpc.stream_id": HEX32}],
    }
    assert normalize(data) == {
        "a_root": {"span_id": "<span_id:1>", "trace_id": "<trace_id:1>"},
        "b_child": {"parent_span_id": "<span_id:1>", "span_id": "<span_id:2>", "trace_id": "<trace_id:1>"},
        "c_other_trace": {"trace_id": "<trace_id:2>"},
        "d_turns": [{"rpc.stream_id": "<stream_id:1>"}, {"rpc.stream_id": "<stream_id:1>"}],
    }


def test_numbering_restarts_for_each_snapshot() -> None:
    assert normalize({"span_id": HEX16_B}) == normalize({"span_id": HEX16}) == {"span_id": "<span_id:1>"}


def test_attribute_wrappers_are_checked_inside() -> None:
    data = {"attributes": {"sentry.sdk.version": {"value": "2.75.0", "type": "string"}}}
    assert normalize(data) == {
        "attributes": {"sentry.sdk.version": {"type": "string", "value": "<sdk_version>"}}
    }
    with pytest.raises(SnapshotFormatError, match=r"sentry\.sdk\.version\.value"):
        normalize({"attributes": {"sentry.sdk.version": {"value": "x", "type": "string"}}})


def test_recorded_params_are_never_mistaken_for_durations() -> None:
    data = {"data": {"rpc.param.duration": "10 days", "rpc.param.elapsed_ms": -3}}
    assert normalize(data) == data


def test_runtime_os_device_contexts_become_placeholders_only_under_contexts() -> None:
    contexts = {"runtime": {"name": "CPython", "version": "3.11.7"}, "os": {"name": "Linux"}, "rpc": {"x": 1}}
    assert normalize({"contexts": contexts}) == {
        "contexts": {"os": "<os>", "runtime": "<runtime>", "rpc": {"x": 1}}
    }
    assert normalize({"tags": {"runtime": "kept"}}) == {"tags": {"runtime": "kept"}}
    with pytest.raises(SnapshotFormatError, match=r"contexts\.runtime"):
        normalize({"contexts": {"runtime": "CPython"}})


def test_source_lines_and_frame_locals_are_dropped() -> None:
    frame = {
        "function": "pay",
        "module": "shop",
        "in_app": True,
        "pre_context": ["a"],
        "context_line": "b",
        "post_context": ["c"],
        "vars": {"self": "<Shop object at 0x7f0011223344>"},
    }
    assert normalize({"frames": [frame]}) == {
        "frames": [{"function": "pay", "in_app": True, "module": "shop"}]
    }


def test_sdk_notes_in_meta_are_kept() -> None:
    meta = {"_meta": {"frames": {"0": {"vars": {"auth": {"": {"rem": [["!config", "s"]]}}}}}}}
    assert normalize(meta) == meta


def test_memory_addresses_in_strings_are_masked() -> None:
    assert normalize({"message": "<Foo object at 0x7fb0551f5a50> and 0x7FB0551F5A50"}) == {
        "message": "<Foo object at 0x<addr>> and 0x<addr>"
    }
    assert normalize({"message": "error 0x1f"}) == {"message": "error 0x1f"}  # too short to be an address


def test_normalize_sorts_keys_and_does_not_mutate_its_input() -> None:
    data = {"b": 1, "a": {"event_id": HEX32, "z": [HEX16]}}
    before = copy.deepcopy(data)
    out = normalize(data)
    assert data == before
    assert list(out) == ["a", "b"]
    assert out["a"] == {"event_id": "<event_id:1>", "z": [HEX16]}  # ids are recognised by key, not by look


def test_normalizing_a_capture_is_deterministic() -> None:
    """The same scenario, captured twice (fresh ids, clocks and threads), normalises identically."""

    def scenario() -> Any:
        with sentry_capture() as cap, user_root("rpc add", "rpc.server") as txn:
            set_span_data(txn, "rpc.stream_id", "ab" * 16)
            with user_span("step", "child"):
                pass
            try:
                raise ValueError("boom")
            except ValueError:
                sentry_sdk.capture_exception()
        return cap

    first, second = scenario(), scenario()
    assert first.envelopes != second.envelopes  # the raw data really differs
    assert normalize(first) == normalize(second) == normalize(first.envelopes)
    text = json.dumps(normalize(first))
    for volatile in (first.event()["event_id"], first.transaction()["contexts"]["trace"]["trace_id"]):
        assert volatile not in text


def test_extension_serialises_normalised_json() -> None:
    text = SentryEnvelopeExtension().serialize({"event_id": HEX32, "b": [1, "x"]})
    assert json.loads(text) == {"b": [1, "x"], "event_id": "<event_id:1>"}


# -- syrupy behaviour in a fresh project ------------------------------------------------------------

_SNAPSHOT_TESTS = """
import sentry_sdk

EVENT_ID = "{event_id}"


def test_envelope(sentry_capture, sentry_snapshot):
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("rpc.method", "add")
        sentry_sdk.capture_message("{message}")
    assert sentry_capture.envelopes == sentry_snapshot


def test_payload(sentry_snapshot):
    assert {{"event_id": EVENT_ID, "level": "info"}} == sentry_snapshot
"""


def _project(pytester: pytest.Pytester, message: str = "hello", event_id: str = HEX32) -> None:
    pytester.makepyfile(test_snap=_SNAPSHOT_TESTS.format(message=message, event_id=event_id))


def test_snapshots_are_written_under_snapshots_dir_and_then_pass(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snapshot-update").assert_outcomes(passed=2)
    written = sorted(p.relative_to(pytester.path).as_posix() for p in pytester.path.rglob("*.json"))
    assert written == [
        "snapshots/test_snap/test_envelope.sentry.json",
        "snapshots/test_snap/test_payload.sentry.json",
    ]
    assert json.loads((pytester.path / written[1]).read_text()) == {
        "event_id": "<event_id:1>",
        "level": "info",
    }
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_changed_field_fails_the_snapshot(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snapshot-update").assert_outcomes(passed=2)
    _project(pytester, message="hello, changed")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*hello, changed*"])


def test_an_unused_snapshot_fails_a_plain_run(pytester: pytest.Pytester) -> None:
    """CI must fail on an unused snapshot: syrupy does so by default (no extra flag needed)."""
    _project(pytester)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snapshot-update").assert_outcomes(passed=2)
    orphan = pytester.path / "snapshots" / "test_snap" / "test_removed_long_ago.sentry.json"
    orphan.write_text('{"event_id": "<event_id:1>"}\n')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
    # --snapshot-update deletes it, after which a plain run passes again.
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snapshot-update")
    assert not orphan.exists()
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider").ret == 0


def test_a_malformed_value_fails_even_when_updating(pytester: pytest.Pytester) -> None:
    _project(pytester, event_id="not-a-hex-id")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snapshot-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*SnapshotFormatError*event_id = 'not-a-hex-id' is not 32 lower-case hex*"])
    assert not (pytester.path / "snapshots" / "test_snap" / "test_payload.sentry.json").exists()


_USER_FILES = {
    # the user's own data in the snapshot folders: none of it is the extension's
    "snapshots/other/keep.json": '{"mine": true}\n',
    "snapshots/test_snap/fixture_data.json": '{"orders": []}\n',
    "snapshots/test_snap/notes.txt": "mine\n",
    "snapshots/keep.json": "[]\n",
    "snapshots/test_snap/test_envelope.json": '{"an old-style name": "not ours any more"}\n',
}


def test_the_extension_owns_only_its_own_files(pytester: pytest.Pytester) -> None:
    """A user's JSON under snapshots/ is never read, reported unused, or deleted by --snapshot-update."""
    _project(pytester)
    for relative, text in _USER_FILES.items():
        path = pytester.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for args in (["--snapshot-update"], [], ["--snapshot-update"], []):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        assert result.ret == 0, result.stdout.str()
        result.assert_outcomes(passed=2)
        output = result.stdout.str()
        assert "unused" not in output and "Deleted" not in output, output
        for relative, text in _USER_FILES.items():
            assert (pytester.path / relative).read_text() == text, relative
    # ... while a stale file of its own is still reported and removed.
    stale = pytester.path / "snapshots" / "test_snap" / "test_gone.sentry.json"
    stale.write_text("{}\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--snapshot-update")
    result.stdout.fnmatch_lines(["*Deleted*test_gone*"])
    assert not stale.exists()
    assert all((pytester.path / relative).exists() for relative in _USER_FILES)


def test_meta_annotation_of_a_volatile_field_is_dropped() -> None:
    """Sentry trims a long sys.argv and notes it in _meta; the note comes and goes with argv: dropped."""
    event = {
        "extra": {"sys.argv": ["pytest"] * 40},
        "_meta": {"extra": {"sys.argv": {"": {"len": 40}}}, "tags": {"x": {"": {"len": 300}}}},
    }
    assert normalize(event) == {
        "extra": {"sys.argv": "<argv>"},
        "_meta": {"tags": {"x": {"": {"len": 300}}}},  # other notes are kept
    }
    with pytest.raises(SnapshotFormatError, match="_meta annotation"):
        normalize({"_meta": {"extra": {"sys.argv": "not-a-dict"}}})


def test_the_same_http_calls_on_two_servers_normalise_identically() -> None:
    """Two real servers on two free ports, one success and one failure each: same snapshot data."""
    from vgi_rpc import RpcError, RpcServer
    from vgi_rpc.http import http_connect, start_http_server
    from vgi_rpc.sentry import SentryConfig

    def scenario() -> tuple[int, Any]:
        with sentry_capture() as cap:
            server = RpcServer(Shop, ShopImpl())
            config = SentryConfig(enable_performance=True)
            with (
                pytest.warns(RuntimeWarning, match="no token_key"),
                start_http_server(server, host="127.0.0.1", port=0, sentry_config=config) as handle,
                http_connect(Shop, handle.base_url) as proxy,
                pytest.raises(RpcError),
            ):
                proxy.buy(sku="x")
        return handle.port, cap

    (port_a, first), (port_b, second) = scenario(), scenario()
    assert port_a != port_b
    assert str(port_a) in json.dumps(first.envelopes)  # the raw data pins the port...
    assert normalize(first) == normalize(second)  # ... the snapshot does not
    text = json.dumps(normalize(first))
    for volatile in (
        str(port_a),
        "python-httpx/0",
        "sentry.python.falcon",
        '"filename": "vgi_rpc/',
        '"vgi_rpc.',
    ):
        assert volatile not in text, volatile


def test_session_buckets_of_two_minutes_merge_into_one() -> None:
    """A test that ran across a minute boundary sends two buckets; another run sends one."""
    attrs = {"environment": "production", "release": "sentry-capture"}
    two = {
        "attrs": attrs,
        "aggregates": [
            {"started": "2026-12-01T20:17:00.000000Z", "exited": 2},
            {"started": "2026-12-01T20:18:00.000000Z", "exited": 1, "errored": 1},
        ],
    }
    one = {
        "attrs": attrs,
        "aggregates": [{"started": "2026-12-01T20:18:00.000000Z", "exited": 3, "errored": 1}],
    }
    assert normalize(two) == normalize(one)
    assert normalize(two)["aggregates"] == [{"errored": 1, "exited": 3, "started": "<timestamp>"}]
    with pytest.raises(SnapshotFormatError, match=r"aggregates\.0\.started"):
        normalize({"attrs": attrs, "aggregates": [{"started": "noon", "exited": 1}]})


def test_header_attributes_of_streamed_spans_follow_the_header_rules() -> None:
    """sentry-sdk 3 records request headers as span attributes (lists of values): same rules as headers."""
    trace, span = "ab" * 16, "cd" * 8
    item = {
        "trace_id": trace,
        "span_id": span,
        "attributes": {
            "http.request.header.sentry-trace": {"value": [f"{trace}-{span}-1"], "type": "array"},
            "http.request.header.baggage": {
                "value": [f"sentry-trace_id={trace},sentry-sample_rand=0.25"],
                "type": "array",
            },
            "http.request.header.host": {"value": ["127.0.0.1:37205"], "type": "array"},
            "http.request.header.x-custom": {"value": ["kept as is"], "type": "array"},
        },
    }
    attributes = normalize(item)["attributes"]
    assert attributes["http.request.header.sentry-trace"]["value"] == ["<trace_id:1>-<span_id:1>-1"]
    assert "ab" * 16 not in json.dumps(attributes["http.request.header.baggage"])
    assert attributes["http.request.header.host"]["value"] == ["127.0.0.1:<port>"]
    assert attributes["http.request.header.x-custom"]["value"] == ["kept as is"]
    bad = copy.deepcopy(item)
    bad["attributes"]["http.request.header.sentry-trace"]["value"] = ["not-a-trace"]
    with pytest.raises(SnapshotFormatError):
        normalize(bad)


def test_batched_envelopes_go_last_so_their_timing_is_not_pinned() -> None:
    """Span, sessions and log envelopes race the SDK's threads: listed after the events; the events keep their order."""

    def envelope(*types: str, trace: str = "ab" * 16) -> dict[str, Any]:
        return {
            "headers": {"trace": {"trace_id": trace}},
            "items": [{"type": t, "headers": {}, "payload": {}} for t in types],
        }

    span_a, event_b = envelope("span", trace="a" * 32), envelope("event", trace="b" * 32)
    sessions, logs = envelope("sessions"), envelope("log")
    one = normalize([span_a, sessions, event_b, logs])
    other = normalize([logs, span_a, event_b, sessions])
    assert one == other
    assert [e["items"][0]["type"] for e in one] == ["event", "span", "log", "sessions"]
    assert [e["headers"]["trace"]["trace_id"] for e in one[:2]] == ["<trace_id:1>", "<trace_id:2>"]
    event_c = {**envelope("event"), "items": [{"type": "event", "headers": {}, "payload": {"message": "c"}}]}
    in_sent_order = normalize([event_c, event_b])  # events: the order the SDK sent them in
    assert [e["items"][0]["payload"] for e in in_sent_order] == [{"message": "c"}, {}]
    assert normalize({"items": [], "headers": {}}) == {"headers": {}, "items": []}  # not a list: as is


# -- the same calls, however the SDK batched and shaped them -------------------------------------------

TRACE = "ab" * 16
ROOT_1, CHILD_1, ROOT_2, CHILD_2 = "1" * 16, "2" * 16, "3" * 16, "4" * 16


def _span(
    span_id: str, name: str, op: str, status: str, start: float, segment: str, parent: str | None
) -> dict[str, Any]:
    attributes = {
        "sentry.op": op,
        "sentry.segment.id": segment,
        "rpc.method": "place",
        "auth.authenticated": "false",  # a tag on 3.x's spans: not span data, not kept
        "thread.id": "140",
    }
    span = {
        "trace_id": TRACE,
        "span_id": span_id,
        "name": name,
        "status": status,
        "is_segment": parent is None or segment == span_id,
        "start_timestamp": start,
        "end_timestamp": start + 0.01,
        "attributes": {k: {"value": v, "type": "string"} for k, v in attributes.items()},
    }
    if parent is not None:
        span["parent_span_id"] = parent
    return span


def _call_spans(root: str, child: str, status: str, start: float) -> list[dict[str, Any]]:
    # the batcher's order: the child ends first
    return [
        _span(child, "vgi_rpc/place", "rpc.server", status, start + 0.001, root, root),
        _span(
            root, "rpc place", "http.server", status, start, root, "9" * 16
        ),  # parent: the client's, not captured
    ]


def _span_envelope(*spans: dict[str, Any]) -> dict[str, Any]:
    item = {
        "type": "span",
        "headers": {"type": "span", "item_count": len(spans)},
        "payload": {"version": 2, "items": list(spans)},
    }
    return {"headers": {"trace": {"trace_id": TRACE}, "sent_at": "2026-01-01T00:00:00Z"}, "items": [item]}


def _event(span_id: str, **extra: Any) -> dict[str, Any]:
    payload = {
        "event_id": HEX32,
        "level": "error",
        "timestamp": "2026-01-01T00:00:02.5Z",
        "transaction": "rpc place",
        "tags": {"rpc.method": "place"},
        "contexts": {"trace": {"trace_id": TRACE, "span_id": span_id}, "rpc": {"method": "place"}},
        "exception": {
            "values": [{"type": "ValueError", "value": "quantity must be positive", "stacktrace": {}}]
        },
        "breadcrumbs": {"values": [{"message": "differs between SDK generations"}]},
        **extra,
    }
    return {"headers": {"event_id": HEX32}, "items": [{"type": "event", "headers": {}, "payload": payload}]}


SESSIONS = {
    "headers": {},
    "items": [
        {
            "type": "sessions",
            "headers": {},
            "payload": {
                "attrs": {},
                "aggregates": [{"started": "2026-01-01T00:00:00Z", "exited": 1, "errored": 1}],
            },
        }
    ],
}
T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_a_batch_that_merges_two_calls_spans_normalises_like_two_envelopes() -> None:
    """Under load sentry-sdk 3's span batcher sends two calls' spans (one trace) in one envelope, after the event."""
    first, second = _call_spans(ROOT_1, CHILD_1, "ok", T0 + 1), _call_spans(ROOT_2, CHILD_2, "error", T0 + 2)
    as_sent_idle = [_span_envelope(*first), _event(CHILD_2), _span_envelope(*second), SESSIONS]
    as_sent_busy = [_event(CHILD_2), _span_envelope(*first, *second), SESSIONS]
    assert normalize(as_sent_idle) == normalize(as_sent_busy)
    regrouped = normalize(as_sent_busy)
    assert [e["items"][0]["type"] for e in regrouped] == ["event", "span", "span", "sessions"]
    assert [e["items"][0]["headers"]["item_count"] for e in regrouped[1:3]] == [2, 2]
    assert [s["name"] for s in regrouped[1]["items"][0]["payload"]["items"]] == ["vgi_rpc/place", "rpc place"]
    assert normalize_calls(as_sent_idle) == normalize_calls(as_sent_busy)


def _transaction(root: str, child: str, status: str, start: float) -> dict[str, Any]:
    """The 2.x form of :func:`_call_spans`: a transaction event with one child span."""
    iso = datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "type": "transaction",
        "transaction": "rpc place",
        "start_timestamp": iso,
        "timestamp": iso,
        "contexts": {
            "trace": {
                "trace_id": TRACE,
                "span_id": root,
                "op": "http.server",
                "status": status,
                "data": {"rpc.method": "place", "thread.id": "140"},
            }
        },
        "tags": {"auth.authenticated": "false"},
        "spans": [
            {
                "trace_id": TRACE,
                "span_id": child,
                "parent_span_id": root,
                "op": "rpc.server",
                "description": "vgi_rpc/place",
                "status": status,
                "start_timestamp": iso,
                "timestamp": iso,
                "data": {"rpc.method": "place"},
                "tags": {"status": status},
            }
        ],
    }
    return {
        "headers": {"trace": {"trace_id": TRACE}},
        "items": [{"type": "transaction", "headers": {}, "payload": payload}],
    }


def test_stored_calls_are_the_same_for_transactions_and_streamed_spans() -> None:
    """2.x's transactions and 3.x's span items of the same two calls: one stored form.

    2.x's ``internal_error`` reads as ``error``, like span streaming's status; the
    user's ``ip_address`` (3.x collects it by default, 2.x only with
    ``send_default_pii``) and the breadcrumbs are not kept; a root's parent that
    is not in the capture (the client's propagated span) is not shown.
    """
    streamed = [
        _span_envelope(*_call_spans(ROOT_1, CHILD_1, "ok", T0 + 1)),
        _event(CHILD_2, user={"ip_address": "127.0.0.1"}),
        _span_envelope(*_call_spans(ROOT_2, CHILD_2, "error", T0 + 2)),
        SESSIONS,
    ]
    transactions = [
        _transaction(ROOT_1, CHILD_1, "ok", T0 + 1),
        _event(CHILD_2),
        _transaction(ROOT_2, CHILD_2, "internal_error", T0 + 2),
        SESSIONS,
    ]
    stored = normalize_calls(streamed)
    assert stored == normalize_calls(transactions)
    first, second = stored["calls"]
    assert first == {
        "root": {
            "span_id": "<span_id:1>",
            "name": "rpc place",
            "op": "http.server",
            "status": "ok",
            "data": {"rpc.method": "place"},
        },
        "spans": [
            {
                "span_id": "<span_id:2>",
                "parent_span_id": "<span_id:1>",
                "name": "vgi_rpc/place",
                "op": "rpc.server",
                "status": "ok",
                "data": {"rpc.method": "place"},
            }
        ],
    }
    assert second["root"]["status"] == second["spans"][0]["status"] == "error"
    assert second["errors"] == [
        {
            "exception": [{"type": "ValueError", "value": "quantity must be positive"}],
            "level": "error",
            "rpc": {"method": "place"},
            "span_id": second["spans"][0]["span_id"],  # captured while the hook's span was active
            "tags": {"rpc.method": "place"},
            "transaction": "rpc place",
        }
    ]
    assert stored["sessions"] == {"errored": 1, "exited": 1}


def test_stored_calls_without_spans_and_their_format_checks() -> None:
    """Performance off: each error event is a call of its own, in the order they happened; ids and clocks are checked."""
    late = _event(CHILD_1, timestamp=T0 + 9, user={"id": "u-1", "ip_address": "10.0.0.1"})
    early = _event(CHILD_2, timestamp="2026-01-01T00:00:01Z", message="first")
    stored = normalize_calls([late, early])
    assert [call["errors"][0].get("message") for call in stored["calls"]] == ["first", None]
    assert stored["calls"][1]["errors"][0]["user"] == {"id": "u-1"}
    assert "span_id" not in stored["calls"][0]["errors"][0]  # no span of the capture: its id says nothing
    assert "sessions" not in stored
    with pytest.raises(SnapshotFormatError, match="timestamp"):
        normalize_calls([_event(CHILD_1, timestamp="yesterday")])
    with pytest.raises(SnapshotFormatError, match="span_id"):
        normalize_calls([_span_envelope(*_call_spans("not-hex", CHILD_1, "ok", T0))])
    with pytest.raises(TypeError):
        normalize_calls({"not": "envelopes"})


# -- the fixtures: the neutral default, whole envelopes per SDK generation -------------------------------

_GENERATION_TESTS = """
import pytest
import sentry_sdk

from vgi_rpc.testing.snapshots import PerSdkEnvelopeExtension, SentryEnvelopeExtension


def _message():
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("rpc.method", "add")
        sentry_sdk.capture_message("hello")


def test_calls(sentry_capture, sentry_snapshot):
    _message()
    assert sentry_capture == sentry_snapshot


def test_wire(sentry_capture, sentry_envelope_snapshot):
    _message()
    assert sentry_capture.envelopes == sentry_envelope_snapshot


@pytest.mark.sentry_options(environment="test")
def test_wire_through_use_extension(sentry_capture, sentry_snapshot):
    _message()
    assert sentry_capture.envelopes == sentry_snapshot.use_extension(PerSdkEnvelopeExtension)
"""


def test_each_generation_owns_only_its_own_envelope_folder(pytester: pytest.Pytester) -> None:
    """Another generation's set (here a made-up ``sdk9/``) is neither reported unused nor deleted; the neutral set is one."""
    pytester.makepyfile(test_snap=_GENERATION_TESTS)
    folder = pytester.path / "snapshots" / "test_snap"
    other = {
        folder / "sdk9" / "test_wire.sentry.json": "[]\n",
        folder / "sdk9" / "test_gone.sentry.json": "[]\n",
    }
    for path, text in other.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for args in (["--snapshot-update"], [], ["--snapshot-update"], []):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        assert result.ret == 0, result.stdout.str()
        result.assert_outcomes(passed=3)
        assert "unused" not in result.stdout.str() and "Deleted" not in result.stdout.str(), (
            result.stdout.str()
        )
        assert all(path.read_text() == text for path, text in other.items())
    mine = sdk_folder()
    written = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*.sentry.json") if p not in other
    )
    assert written == sorted(
        [
            "test_calls.sentry.json",
            f"{mine}/test_wire.sentry.json",
            f"{mine}/test_wire_through_use_extension.sentry.json",
        ]
    )
    calls = json.loads((folder / "test_calls.sentry.json").read_text())
    assert calls["calls"][0]["errors"][0]["message"] == "hello"
    # the environment given to the capture is pinned, also through sentry_snapshot.use_extension(...)
    wire = (folder / mine / "test_wire_through_use_extension.sentry.json").read_text()
    assert '"environment": "test"' in wire
    assert '"environment": "<environment>"' in (folder / mine / "test_wire.sentry.json").read_text()
    # a stale file in this generation's own folder is still reported
    (folder / mine / "test_gone.sentry.json").write_text("[]\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*1 snapshot unused*"])
