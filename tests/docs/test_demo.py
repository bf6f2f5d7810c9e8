"""``python -m vgi_rpc.demo`` (``make demo``): runs by itself, exits 0, prints what Sentry received.

The demo is run as a user runs it -- a subprocess, the real SDK with the
in-memory transport, a real waitress server on 127.0.0.1, a real signed JWT --
and both its printed table and its ``--json`` envelopes are checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vgi_rpc.demo import render_envelopes

METHODS = ("add", "greet", "countdown", "scale", "divide")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    """One run of the demo: (stdout, the envelopes it wrote with --json)."""
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
    envelopes: list[dict[str, Any]] = json.loads(Path(out).read_text())
    return proc.stdout, envelopes


def _payloads(envelopes: list[dict[str, Any]], item_type: str) -> list[dict[str, Any]]:
    return [i["payload"] for e in envelopes for i in e["items"] if i["type"] == item_type]


def test_table_has_a_transaction_row_per_method_and_the_error_event(
    demo_run: tuple[str, list[dict[str, Any]]],
) -> None:
    """S18, B1: the printed table names transactions ``rpc <method>`` and shows one error event for divide."""
    stdout, _ = demo_run
    assert "what Sentry received" in stdout
    for method in METHODS:
        assert re.search(rf"^\s*\d+\s+transaction\s+rpc {method}\s+\S+$", stdout, re.MULTILINE), method
    assert re.search(r"^\s*\d+\s+transaction\s+rpc add\s+ok$", stdout, re.MULTILINE)
    events = re.findall(r"^\s*\d+\s+event\s+rpc divide\s+error: ZeroDivisionError", stdout, re.MULTILINE)
    assert len(events) == 1, stdout
    assert re.search(r"child spans:\s+rpc.server vgi_rpc/divide \(internal_error\)", stdout)
    assert "contexts.rpc:" in stdout and "rpc.* span data:" in stdout


def test_envelopes_carry_the_documented_fields(demo_run: tuple[str, list[dict[str, Any]]]) -> None:
    """S8, S9, S11, S12, S13, S18, S20, S22, S28, B1: what the JSON dump holds."""
    _, envelopes = demo_run
    (event,) = _payloads(envelopes, "event")  # B1: exactly one error event
    assert event["transaction"] == "rpc divide"
    assert event["tags"]["rpc.method"] == "divide"
    assert event["tags"]["auth.tenant"] == "acme"  # claim_tags
    assert event["user"]["id"] == "user-42" and event["user"]["username"] == "alice"
    assert event["contexts"]["rpc"]["service"] == "DemoService"
    txns = _payloads(envelopes, "transaction")
    assert {t["transaction"] for t in txns} == {f"rpc {m}" for m in METHODS}
    add = next(t for t in txns if t["transaction"] == "rpc add")
    data = add["contexts"]["trace"]["data"]
    assert data["rpc.system"] == "vgi_rpc" and data["rpc.param.a"] == 2 and data["rpc.param.b"] == 3
    countdown = [t for t in txns if t["transaction"] == "rpc countdown"]
    assert len(countdown) >= 2  # /init and its /exchange turns
    with_params = [t for t in countdown if "rpc.param.n" in t["contexts"]["trace"]["data"]]
    assert len(with_params) == 1  # only /init carries kwargs
    divide = next(t for t in txns if t["transaction"] == "rpc divide")
    assert [s["status"] for s in divide["spans"] if s["op"] == "rpc.server"] == ["internal_error"]


def test_secret_parameter_never_reaches_sentry(demo_run: tuple[str, list[dict[str, Any]]]) -> None:
    """S23, B4: greet's ``api_token`` value appears nowhere in what Sentry received."""
    stdout, envelopes = demo_run
    dumped = json.dumps(envelopes)
    assert "s3cr3t-t0ken" not in dumped and "s3cr3t-t0ken" not in stdout
    greet = next(t for t in _payloads(envelopes, "transaction") if t["transaction"] == "rpc greet")
    assert greet["contexts"]["trace"]["data"]["rpc.param.name"] == "Ada"
    assert "rpc.param.api_token" not in greet["contexts"]["trace"]["data"]


def test_render_envelopes_handles_other_items() -> None:
    """The table survives items it does not know and non-JSON payloads."""
    table = render_envelopes(
        [
            {"items": [{"type": "attachment", "payload": b"\x00\x01"}]},
            {"items": [{"type": "client_report", "payload": {"discarded_events": []}}]},
        ]
    )
    assert "attachment" in table and "client_report" in table
    assert render_envelopes([]).endswith("(nothing reached the transport)")


def test_each_log_record_is_printed_under_the_call_that_produced_it(
    demo_run: tuple[str, list[dict[str, Any]]],
) -> None:
    """The server's WARNING for the failed divide follows the divide line, and nothing else logs."""
    stdout, _ = demo_run
    lines = stdout.splitlines()
    (divide,) = [i for i, line in enumerate(lines) if line.strip().startswith("divide(a=1.0, b=0.0)")]
    assert re.fullmatch(
        r"\s+\[log\] WARNING vgi_rpc: DemoService\.divide raised ZeroDivisionError: float division by zero",
        lines[divide + 1],
    )
    assert sum("[log]" in line for line in lines) == 1


def test_the_config_is_printed_compactly(demo_run: tuple[str, list[dict[str, Any]]]) -> None:
    """Only what differs from SentryConfig's defaults (docs/sentry.md lists them)."""
    stdout, _ = demo_run
    (line,) = [line for line in stdout.splitlines() if line.startswith("config: ")]
    assert line == (
        "config: SentryConfig(enable_performance=True, claim_tags={'tenant': 'auth.tenant'}, "
        "record_params=True) (the rest: defaults)"
    )


def test_the_table_explains_itself_and_every_note_matches_the_envelopes(
    demo_run: tuple[str, list[dict[str, Any]]],
) -> None:
    """One line each: stream turns, the sessions item, a failed call's 200 + internal_error."""
    stdout, envelopes = demo_run
    notes = stdout.split("reading the table:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(notes) == 3 and all(n.startswith("  * ") for n in notes), notes
    streams, sessions, failed = notes
    # streams: one transaction per HTTP turn, all turns of a call with one stream_id (docs/http.md, S14)
    by_stream: dict[str, list[str]] = {}
    for txn in _payloads(envelopes, "transaction"):
        stream_id = txn["contexts"]["trace"]["data"].get("rpc.stream_id")
        if stream_id:
            by_stream.setdefault(stream_id, []).append(txn["request"]["url"].rsplit("/", 1)[1])
    assert sorted(by_stream.values()) == [["init", "exchange", "exchange"], ["init", "exchange", "exchange", "exchange"]]
    assert streams.startswith("  * rpc countdown x4, rpc scale x3: over HTTP a stream call is one request per turn")
    assert "share one rpc.stream_id" in streams
    # sessions: one per HTTP request -- 10 RPC turns and the client's /health probe; divide errored
    (aggregates,) = [p["aggregates"] for p in _payloads(envelopes, "sessions")]
    assert sum(a.get("exited", 0) for a in aggregates) == 10
    assert sum(a.get("errored", 0) for a in aggregates) == 1
    assert "one session per HTTP request (10 exited, 1 errored;" in sessions
    # the failed call: HTTP 200 (the error travels in the Arrow stream), status internal_error (docs/sentry.md)
    divide = next(t for t in _payloads(envelopes, "transaction") if t["transaction"] == "rpc divide")
    assert divide["tags"]["http.status_code"] == "200"
    assert divide["contexts"]["trace"]["status"] == "internal_error"
    assert failed.startswith("  * rpc divide: http.status_code=200 because")
    assert "status internal_error because the call itself failed" in failed
