"""The snapshot normaliser and the syrupy extension (vgi_rpc.testing.snapshots).

Each placeholder rule is shown replacing a well-formed value and *failing* on a
malformed one; the syrupy behaviour the project relies on (snapshot directory,
mismatch, unused snapshot, malformed value under --snapshot-update) is checked
in a fresh pytest subprocess.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import sentry_sdk

from vgi_rpc.testing import sentry_capture
from vgi_rpc.testing.snapshots import SentryEnvelopeExtension, SnapshotFormatError, normalize

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


def test_sdk_keeps_its_name_and_drops_what_follows_the_environment() -> None:
    sdk = {
        "name": "sentry.python.falcon",
        "version": "2.75.0",
        "packages": [{"name": "pypi:sentry-sdk", "version": "2.75.0"}],
        "integrations": ["argv", "logging"],
    }
    assert normalize({"sdk": sdk}) == {"sdk": {"name": "sentry.python.falcon", "version": "<sdk_version>"}}


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
        with sentry_capture() as cap, sentry_sdk.start_transaction(name="rpc add", op="rpc.server") as txn:
            txn.set_data("rpc.stream_id", "ab" * 16)
            with sentry_sdk.start_span(op="child", name="step"):
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
    with sentry_sdk.start_transaction(name="rpc add", op="rpc.server"):
        sentry_sdk.set_tag("rpc.method", "add")
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
