"""docs/testing.md is a contract: every example in it runs, as a user would run it.

Each ```python block is a complete test module. A block whose first line names
a file (``# conftest.py``, ``# pytest.ini`` for an ```ini block,
``# test_project_options.py``) belongs to the page's one multi-file example and
is written under that name into a project of its own; every other block is a
module of a second project. Both run in a fresh pytest subprocess with only the
installed package (no conftest of ours). The snapshot examples are run three
times -- ``--snapshot-update``, then two plain runs, each on a new free port --
and must pass on what the first run wrote. The ```text sample of the failure
report is checked against the report of a real failing run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sentry_sdk
from support.sentry import STREAMING

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
RUN = ("-p", "no:cacheprovider")
_NAMED = re.compile(r"# ([\w/.-]+\.(?:py|ini|toml|cfg))\n")


def _blocks(lang: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _named_and_plain() -> tuple[dict[str, str], list[str]]:
    named: dict[str, str] = {}
    plain: list[str] = []
    for block in _blocks("python") + _blocks("ini"):
        match = _NAMED.match(block)
        if match:
            assert match[1] not in named, f"docs/testing.md names {match[1]} twice"
            named[match[1]] = block
        else:
            assert not block.startswith("[pytest]"), "an ini example must name its file"
            plain.append(block)
    return named, plain


def _assert_green(result: pytest.RunResult, at_least: int) -> None:
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) >= at_least, result.stdout.str()


_TRANSACTIONS_ONLY = '@pytest.mark.skipif(\n    not sentry_sdk.VERSION.startswith("2."),'


def _skipped_here(plain: list[str]) -> int:
    """How many examples skip themselves on this SDK: those that hand Relay transactions, on sentry-sdk 3.

    vgi_rpc.testing.relay normalises event and transaction items (what the pinned
    sentry-relay's Python normaliser takes); sentry-sdk 3 sends span items instead,
    and the page's example says so with a ``skipif`` a user can copy.
    """
    return sum(block.count(_TRANSACTIONS_ONLY) for block in plain) if STREAMING else 0


def test_every_python_block_is_a_test_module() -> None:
    named, plain = _named_and_plain()
    assert len(plain) >= 5, "docs/testing.md lost an example"
    assert {"pytest.ini", "conftest.py"} <= set(named)
    for block in [*plain, *(b for n, b in named.items() if n.startswith("test_"))]:
        assert "def test_" in block, block[:200]


@pytest.mark.timeout(360)  # three whole runs of every example, each its own pytest process
def test_the_examples_pass_as_a_users_test_modules(pytester: pytest.Pytester) -> None:
    _, plain = _named_and_plain()
    for index, block in enumerate(plain):
        pytester.makepyfile(**{f"test_doc_example_{index}": block})
    n_tests = sum(block.count("\ndef test_") + block.startswith("def test_") for block in plain)
    skipped = _skipped_here(plain)
    assert sum(block.count(_TRANSACTIONS_ONLY) for block in plain) == 1, (
        "the Relay scrubbing example's skipif"
    )
    for args in (["--snapshot-update"], [], []):  # a new port and new ids on every run
        result = pytester.runpytest_subprocess(*RUN, *args)
        _assert_green(result, n_tests - skipped)
        assert result.parseoutcomes().get("skipped", 0) == skipped, result.stdout.str()
    written = sorted(p.relative_to(pytester.path).as_posix() for p in pytester.path.rglob("*.json"))
    assert written and all(name.endswith(".sentry.json") for name in written), written
    http = [p for p in written if "test_orders_envelopes" in p]
    assert len(http) == 1, written
    text = (pytester.path / http[0]).read_text()
    # what the page says the HTTP snapshot shows
    for shown in (
        '"url": "http://127.0.0.1:<port>/vgi/Orders/place"',
        '"Host": "127.0.0.1:<port>"',
        '"User-Agent": "python-httpx/<version>"',
        '"Content-Length": "<size>"',
        '"name": "sentry.python"',
        '"function": "<vgi_rpc frames>"',
    ):
        assert shown in text, shown
    assert '"filename": "vgi_rpc/' not in text and '"vgi_rpc.' not in text
    items = [item for envelope in json.loads(text) for item in envelope["items"]]
    frames = [
        i["payload"]["exception"]["values"][-1]["stacktrace"]["frames"] for i in items if i["type"] == "event"
    ]
    assert [[f["function"] for f in fs] for fs in frames] == [["<vgi_rpc frames>", "place"]]
    # one session per HTTP request: the /health probe and the good call exited, the failed one errored
    (sessions,) = [i["payload"] for i in items if i["type"] == "sessions"]
    assert sessions["aggregates"] == [{"errored": 1, "exited": 2, "started": "<timestamp>"}]
    _the_stored_calls_are_what_the_page_shows(pytester.path, written)


def _the_stored_calls_are_what_the_page_shows(project: Path, written: list[str]) -> None:
    """The sentry_snapshot sample is the file the example writes; the HTTP calls are as the page describes them."""
    (sample,) = _blocks("json")
    (pipe,) = [p for p in written if p.endswith("/test_reserve_calls.sentry.json")]
    assert json.loads((project / pipe).read_text()) == json.loads(sample)
    (http,) = [p for p in written if p.endswith("/test_orders_calls.sentry.json")]
    stored = json.loads((project / http).read_text())
    assert stored["sessions"] == {"errored": 1, "exited": 2}
    ok, failed = stored["calls"]
    # sentry-sdk 2.36.0 (the floor) sends this child span of the WSGI transaction without a status
    floor = sentry_sdk.VERSION == "2.36.0"
    for call, status in ((ok, "ok"), (failed, "error")):
        (child,) = call["spans"]
        if floor:
            assert child["status"] is None
            child = {**child, "status": status}
        assert (call["root"]["name"], call["root"]["op"], call["root"]["status"]) == (
            "rpc place",
            "http.server",
            status,
        )
        assert (child["name"], child["op"], child["status"]) == ("vgi_rpc/place", "rpc.server", status)
        assert child["parent_span_id"] == call["root"]["span_id"]
        assert {"rpc.param.sku", "rpc.param.quantity"} <= set(call["root"]["data"]) & set(child["data"])
    assert "errors" not in ok
    assert [e["span_id"] for e in failed["errors"]] == [failed["spans"][0]["span_id"]]


def test_the_project_options_example_passes(pytester: pytest.Pytester) -> None:
    named, _ = _named_and_plain()
    for name, block in named.items():
        (pytester.path / name).write_text(block, encoding="utf-8")
    tests = sum(b.count("\ndef test_") for n, b in named.items() if n.startswith("test_"))
    _assert_green(pytester.runpytest_subprocess(*RUN), tests)


def test_the_sample_failure_report_is_what_pytest_prints(pytester: pytest.Pytester) -> None:
    """The page's sample: the complete example with one assertion changed, as the page says."""
    _, plain = _named_and_plain()
    (complete,) = [b for b in plain if "def test_a_failed_call_sends_one_event_with_rpc_context" in b]
    original = 'assert event["transaction"] == "rpc pay"'
    assert original in complete
    pytester.makepyfile(
        test_checkout=complete.replace(original, 'assert event["transaction"] == "rpc refund"')
    )
    result = pytester.runpytest_subprocess(*RUN)
    result.assert_outcomes(failed=1, passed=2)
    (sample,) = [b for b in _blocks("text") if "Captured Sentry envelopes" in b]
    header, *lines = sample.strip().splitlines()
    assert "Captured Sentry envelopes" in header
    output = [line.rstrip() for line in result.stdout.lines]
    section = output.index(next(line for line in output if "Captured Sentry envelopes" in line))
    assert output[section + 1 : section + 1 + len(lines)] == lines, "\n".join(output[section:])
