"""``python -m vgi_rpc.demo`` (``make demo``): runs by itself, exits 0, prints what Sentry received.

The demo is run as a user runs it -- a subprocess, the real SDK with the
in-memory transport, a real waitress server on 127.0.0.1, a real signed JWT --
and both its printed table and its ``--json`` envelopes are checked.  The
envelopes are read back through the testing kit's views
(:meth:`vgi_rpc.testing.SentryCapture.from_envelopes`), so every check holds on
whichever SDK generation the venv has: sentry-sdk 2.x sends ``transaction``
items, 3.x streams spans (``span`` items, each request's segment span read as
a transaction).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from support.sentry import span_status

from vgi_rpc.demo import explain, render_envelopes
from vgi_rpc.testing import SentryCapture

METHODS = ("add", "greet", "countdown", "scale", "divide")
ROWS = [
    ("transaction", "rpc add"),
    ("transaction", "rpc greet"),
    *[("transaction", "rpc countdown")] * 4,  # /init + 3 turns (the last one finishes)
    *[("transaction", "rpc scale")] * 3,  # /init + 2 exchanges
    ("transaction", "rpc divide"),
    ("event", "rpc divide"),
    ("sessions", "(release health)"),
]
"""The table's rows (kind, name), in order: the same on both SDK generations."""


class DemoRun(NamedTuple):
    stdout: str
    dumped: str  # the --json file, as written
    capture: SentryCapture  # the same envelopes, read through the kit's views


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One run of the demo: its stdout and the envelopes it wrote with --json."""
    out = tmp_path_factory.mktemp("demo") / "envelopes.json"
    env = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    proc = subprocess.run(
        [sys.executable, "-m", "vgi_rpc.demo", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (
        f"demo exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    dumped = Path(out).read_text()
    return DemoRun(proc.stdout, dumped, SentryCapture.from_envelopes(json.loads(dumped)))


def _table(stdout: str) -> str:
    return stdout.split("what Sentry received", 1)[1].split("\n\n", 1)[0]


def _notes(stdout: str) -> list[str]:
    return stdout.split("reading the table:\n", 1)[1].split("\n\n", 1)[0].splitlines()


def _data(txn: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = txn["contexts"]["trace"]["data"]
    return data


def _path(txn: dict[str, Any]) -> str:
    """The request path: ``request.url`` on 2.x, the segment's ``url.path`` attribute on 3.x."""
    if "request" in txn:
        return urlsplit(txn["request"]["url"]).path
    return str(_data(txn)["url.path"])


def _http_status(txn: dict[str, Any]) -> tuple[str, Any]:
    """The HTTP status as the SDK sent it: the tag ``http.status_code`` on 2.x, an attribute on 3.x."""
    if txn.get("streamed"):
        assert "http.status_code" not in txn["tags"]  # span streaming has no such tag
        return "http.response.status_code", _data(txn)["http.response.status_code"]
    return "http.status_code", txn["tags"]["http.status_code"]


def _started(txn: dict[str, Any]) -> float:
    """Seconds (3.x) or ISO 8601 (2.x): the table lists transactions in start order."""
    started = txn["start_timestamp"]
    if isinstance(started, str):
        return datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    return float(started)


def test_table_has_a_transaction_row_per_method_and_the_error_event(demo_run: DemoRun) -> None:
    """S18, B1: the printed table names transactions ``rpc <method>`` and shows one error event for divide."""
    stdout, _, cap = demo_run
    assert "what Sentry received" in stdout
    for method in METHODS:
        assert re.search(rf"^\s*\d+\s+transaction\s+rpc {method}\s+\S+$", stdout, re.MULTILINE), method
    assert re.search(r"^\s*\d+\s+transaction\s+rpc add\s+ok$", stdout, re.MULTILINE)
    events = re.findall(r"^\s*\d+\s+event\s+rpc divide\s+error: ZeroDivisionError", stdout, re.MULTILINE)
    assert len(events) == 1, stdout
    # a failed call's status is what the SDK sent: internal_error (2.x), error (3.x)
    failed = cap.transactions_for("divide")[0]["contexts"]["trace"]["status"]
    assert failed in ("internal_error", "error")
    assert re.search(rf"^\s*\d+\s+transaction\s+rpc divide\s+{failed}$", stdout, re.MULTILINE)
    assert re.search(rf"child spans:\s+rpc.server vgi_rpc/divide \({failed}\)$", stdout, re.MULTILINE)
    assert "contexts.rpc:" in stdout and "rpc.* span data:" in stdout


def test_the_table_has_the_same_rows_on_either_sdk_generation(demo_run: DemoRun) -> None:
    """One row per transaction (per HTTP request), error event and sessions item -- not per envelope item.

    On sentry-sdk 3 the spans travel in ``span`` items (however the SDK batches
    them); the table still has a ``rpc <method>`` row per request, with its
    request, tags, user and the hook's ``rpc.server`` span under it.
    """
    stdout, _, cap = demo_run
    rows = re.findall(r"^\s*\d+  (\S+)\s+(rpc \w+|\(release health\))  ", _table(stdout), re.MULTILINE)
    assert rows == ROWS, _table(stdout)
    assert len(cap.transactions) == 10 and len(cap.events) == 1
    requests = re.findall(r"^\s+request:\s+POST (/vgi/DemoService/\S+) -> 200$", stdout, re.MULTILINE)
    assert requests == [_path(t) for t in sorted(cap.transactions, key=_started)]
    assert requests[2:6] == ["/vgi/DemoService/countdown/init", *["/vgi/DemoService/countdown/exchange"] * 3]
    users = re.findall(r"^\s+user:\s+(.*)$", stdout, re.MULTILINE)
    assert users == ["id=user-42  username=alice  email=alice@example.com"] * 11  # 10 transactions, 1 event
    tags = re.findall(r"^\s+tags:\s+(.*)$", stdout, re.MULTILINE)
    assert len(tags) == 11 and all("auth.tenant=acme" in t for t in tags), tags
    spans = re.findall(r"^\s+child spans:\s+rpc.server vgi_rpc/(\w+) \(\w+\)$", stdout, re.MULTILINE)
    assert spans == ["add", "greet", *["countdown"] * 4, *["scale"] * 3, "divide"]
    assert re.search(r"^\s*\d+\s+sessions\s+\(release health\)\s+10 exited, 1 errored$", stdout, re.MULTILINE)


def test_the_table_is_what_the_json_envelopes_say(demo_run: DemoRun) -> None:
    """The printed table is ``render_envelopes`` of the envelopes ``--json`` wrote, and the notes ``explain``'s."""
    stdout, dumped, cap = demo_run
    envelopes = json.loads(dumped)
    table = render_envelopes(cap)
    assert table == render_envelopes(envelopes)  # a capture, or envelopes in its shape
    assert f"\n{table}\n" in stdout
    assert [f"  * {note}" for note in explain(envelopes)] == _notes(stdout)
    counts = re.search(r"^what Sentry received \((\d+) envelopes: (.*) items\):$", stdout, re.MULTILINE)
    assert counts is not None and int(counts[1]) == len(envelopes)
    kind = "span" if cap.transactions[0].get("streamed") else "transaction"
    assert counts[2].startswith(f"{len(cap.items(kind))} {kind}, ")


def test_envelopes_carry_the_documented_fields(demo_run: DemoRun) -> None:
    """S8, S9, S11, S12, S13, S18, S20, S22, S28, B1: what the JSON dump holds."""
    cap = demo_run.capture
    (event,) = cap.events  # B1: exactly one error event
    assert event["transaction"] == "rpc divide"
    assert event["tags"]["rpc.method"] == "divide"
    assert event["tags"]["auth.tenant"] == "acme"  # claim_tags
    assert event["user"]["id"] == "user-42" and event["user"]["username"] == "alice"
    assert event["contexts"]["rpc"]["service"] == "DemoService"
    txns = cap.transactions
    assert {t["transaction"] for t in txns} == {f"rpc {m}" for m in METHODS}
    for txn in txns:  # every request: its method, the claim tag and the JWT's user (2.x tags; 3.x attributes)
        method = txn["transaction"].removeprefix("rpc ")
        assert txn in cap.transactions_for(method)
        assert txn["tags"]["rpc.method"] == method and txn["tags"]["auth.tenant"] == "acme"
        assert txn["user"]["id"] == "user-42" and txn["user"]["username"] == "alice"
    (add,) = cap.transactions_for("add")
    data = _data(add)
    assert data["rpc.system"] == "vgi_rpc" and data["rpc.param.a"] == 2 and data["rpc.param.b"] == 3
    assert [(s["op"], s["description"], span_status(s)) for s in add["spans"]] == [
        ("rpc.server", "vgi_rpc/add", "ok")
    ]
    countdown = cap.transactions_for("countdown")
    assert len(countdown) >= 2  # /init and its /exchange turns
    with_params = [t for t in countdown if "rpc.param.n" in _data(t)]
    assert len(with_params) == 1  # only /init carries kwargs
    (divide,) = cap.transactions_for("divide")
    failed = divide["contexts"]["trace"]["status"]
    assert failed == ("error" if divide.get("streamed") else "internal_error")
    assert [span_status(s) for s in divide["spans"] if s["op"] == "rpc.server"] == [failed]


def test_secret_parameter_never_reaches_sentry(demo_run: DemoRun) -> None:
    """S23, B4: greet's ``api_token`` value appears nowhere in what Sentry received."""
    stdout, dumped, cap = demo_run
    assert "s3cr3t-t0ken" not in dumped and "s3cr3t-t0ken" not in stdout
    (greet,) = cap.transactions_for("greet")
    assert _data(greet)["rpc.param.name"] == "Ada"
    assert "rpc.param.api_token" not in _data(greet)
    assert not any("api_token" in key for key in greet["tags"])
    assert not any("api_token" in key for span in cap.spans for key in span.get("data") or {})


def test_render_envelopes_handles_other_items() -> None:
    """The table survives items it does not know and non-JSON payloads."""
    envelopes = [
        {"items": [{"type": "attachment", "payload": b"\x00\x01"}]},
        {"items": [{"type": "client_report", "payload": {"discarded_events": []}}]},
        {"items": [{"type": "sessions", "payload": "not json"}]},
    ]
    table = render_envelopes(SentryCapture.from_envelopes(envelopes))
    assert "attachment" in table and "client_report" in table and "sessions" in table
    assert table == render_envelopes(envelopes)
    assert render_envelopes([]).endswith("(nothing reached the transport)")
    assert explain([]) == []


def test_each_log_record_is_printed_under_the_call_that_produced_it(demo_run: DemoRun) -> None:
    """The server's WARNING for the failed divide follows the divide line, and nothing else logs."""
    lines = demo_run.stdout.splitlines()
    (divide,) = [i for i, line in enumerate(lines) if line.strip().startswith("divide(a=1.0, b=0.0)")]
    assert re.fullmatch(
        r"\s+\[log\] WARNING vgi_rpc: DemoService\.divide raised ZeroDivisionError: float division by zero",
        lines[divide + 1],
    )
    assert sum("[log]" in line for line in lines) == 1


def test_the_config_is_printed_compactly(demo_run: DemoRun) -> None:
    """Only what differs from SentryConfig's defaults (docs/sentry.md lists them)."""
    (line,) = [line for line in demo_run.stdout.splitlines() if line.startswith("config: ")]
    assert line == (
        "config: SentryConfig(enable_performance=True, claim_tags={'tenant': 'auth.tenant'}, "
        "record_params=True) (the rest: defaults)"
    )


def test_the_table_explains_itself_and_every_note_matches_the_envelopes(demo_run: DemoRun) -> None:
    """One line each: span streaming (3.x only), stream turns, the sessions item, a failed call's 200 + status."""
    stdout, _, cap = demo_run
    notes = _notes(stdout)
    streamed = all(t.get("streamed") for t in cap.transactions)
    assert streamed or not any(t.get("streamed") for t in cap.transactions)  # one generation or the other
    assert len(notes) == 3 + streamed and all(n.startswith("  * ") for n in notes), notes
    if streamed:  # sentry-sdk 3: the rows are segment spans, say so
        spans, *notes = notes
        assert not cap.items("transaction")
        assert spans.startswith(
            f"  * transaction rows: this SDK streams spans -- no transaction items but {len(cap.spans)} spans "
            f"in {len(cap.items('span'))} span items; a row is one HTTP request's segment span"
        )
    streams, sessions, failed = notes
    # streams: one transaction per HTTP turn, all turns of a call with one stream_id (docs/http.md, S14)
    by_stream: dict[str, list[str]] = {}
    for txn in cap.transactions:
        stream_id = _data(txn).get("rpc.stream_id")
        if stream_id:
            by_stream.setdefault(stream_id, []).append(_path(txn).rsplit("/", 1)[1])
    assert sorted(by_stream.values()) == [
        ["init", "exchange", "exchange"],
        ["init", "exchange", "exchange", "exchange"],
    ]
    assert streams.startswith(
        "  * rpc countdown x4, rpc scale x3: over HTTP a stream call is one request per turn"
    )
    assert "share one rpc.stream_id" in streams
    # sessions: one per HTTP request -- 10 RPC turns and the client's /health probe; divide errored
    (aggregates,) = [p["aggregates"] for p in cap.payloads("sessions")]  # sent on both generations
    assert sum(a.get("exited", 0) for a in aggregates) == 10
    assert sum(a.get("errored", 0) for a in aggregates) == 1
    assert "one session per HTTP request (10 exited, 1 errored;" in sessions
    # the failed call: HTTP 200 (the error travels in the Arrow stream), status internal_error/error (docs/sentry.md)
    (divide,) = cap.transactions_for("divide")
    field, value = _http_status(divide)
    assert str(value) == "200"
    status = divide["contexts"]["trace"]["status"]
    assert status == ("error" if streamed else "internal_error")
    assert failed.startswith(f"  * rpc divide: {field}=200 because")
    assert f"status {status} because the call itself failed" in failed
