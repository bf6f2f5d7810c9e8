"""B8: what Sentry *stores* -- every envelope run through Relay's own normaliser (``sentry-relay``).

The SDK's envelopes are captured as usual (real SDK, default integrations,
in-memory transport); ``SentryCapture.ingested`` / ``assert_ingestible`` /
``scrubbed`` hand them to the ``sentry_relay`` bindings -- the Rust normaliser
and PII scrubber Sentry runs -- and report what it would trim, drop or mark
invalid.  Nothing in Relay or the SDK is mocked.

Proved here: every documented field survives ingestion unchanged (HTTP and
pipe, unary and streams); the 200-character clip on ``tag_params`` is exactly
Relay's tag-value limit; the hook's type filter on tags drops exactly what Relay
would mark invalid; what Sentry's server-side scrubbing does and does not do to
a free-text param (the docs' caveat); and the kit's own failure modes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Protocol

import pytest
import sentry_sdk
from support.http import http_proxy
from support.jwt import bearer
from support.sentry import STREAMING
from support.services import Calculator, CalculatorImpl, xs

from vgi_rpc import RpcError, RpcServer, serve_pipe
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry, noop_redactor
from vgi_rpc.testing import SentryCapture, sentry_capture
from vgi_rpc.testing.relay import DEFAULT_IGNORE, TESTED_RELAY_VERSION, DataScrubbing, IngestionRejected


class Catalog(Protocol):
    def search(self, table: str, predicate: str) -> int: ...
    def fail(self, table: str, message: str) -> int: ...


class CatalogImpl:
    def search(self, table: str, predicate: str) -> int:
        return len(predicate)

    def fail(self, table: str, message: str) -> int:
        raise LookupError(message)


@dataclasses.dataclass
class Point:
    x: int


class Probe(Protocol):
    def record(
        self, s: str, i: int, u: int, f: float, b: bool, ls: list[str], li: list[int], lf: list[float],
        lb: list[bool], d: dict[str, int], raw: bytes, dc: Point, mixed: list[int], nan: float,
    ) -> int: ...  # fmt: skip


class ProbeImpl:
    def record(self, **values: Any) -> int:
        return len(values)


needs_transaction_items = pytest.mark.skipif(
    STREAMING,
    reason="sentry-relay's Python normaliser takes event and transaction items; sentry-sdk 3 sends "
    "span items (its events are checked by the other tests of this module)",
)

FULL = SentryConfig(
    enable_performance=True,
    record_params=True,
    tag_params=("table",),
    claim_tags={"tenant": "auth.tenant"},
    custom_tags={"env": "test", "region": "eu-1"},
)


# -- reading the documented fields out of either shape ------------------------------------------


def tag_map(payload: dict[str, Any]) -> dict[str, Any]:
    """Tags as a dict: the SDK sends a dict, Relay stores ``[key, value]`` pairs."""
    tags = payload.get("tags") or {}
    return dict(tags)


DOCUMENTED_TAGS = ("rpc.method", "rpc.method_type", "auth.domain", "auth.authenticated", "auth.tenant")


def documented(payload: dict[str, Any]) -> dict[str, Any]:
    """Every field the Sentry page documents, by the page's name for it (absent ones left out)."""
    out: dict[str, Any] = {}
    contexts = payload.get("contexts") or {}
    for key in ("method", "method_type", "service", "server_id"):
        if key in (contexts.get("rpc") or {}):
            out[f"contexts.rpc.{key}"] = contexts["rpc"][key]
    for key in ("id", "username", "email", "name"):
        if key in (payload.get("user") or {}):
            out[f"user.{key}"] = payload["user"][key]
    tags = tag_map(payload)
    for key, value in tags.items():
        if key in DOCUMENTED_TAGS or key in FULL.custom_tags or key.startswith("rpc.param."):
            out[f"tags[{key}]"] = value
    spans = [contexts.get("trace") or {}, *(payload.get("spans") or [])]
    for index, span in enumerate(spans):
        for key, value in (span.get("data") or {}).items():
            if key.startswith("rpc."):
                out[f"span {index} data {key}"] = value
        if index:
            out[f"span {index} op/description/status"] = (
                span.get("op"),
                span.get("description"),
                span.get("status"),
            )
    if payload.get("type") == "transaction" or "transaction" in payload:
        out["transaction"] = payload.get("transaction")
        out["transaction_info.source"] = (payload.get("transaction_info") or {}).get("source")
    return out


def assert_documented_fields_survive(cap: SentryCapture, expected_items: int) -> None:
    """Each event and transaction: its documented fields, as stored, equal what the SDK sent."""
    cap.assert_ingestible()
    compared = 0
    for item_type in ("event", "transaction"):
        sent = cap.payloads(item_type)
        stored = cap.ingested(item_type)
        assert len(stored) == len(sent)
        for before, after in zip(sent, stored, strict=True):
            fields = documented(before)
            # events carry the rpc context; transactions its facts as span data (docs/sentry.md)
            rpc_service = "contexts.rpc.service" if item_type == "event" else "span 0 data rpc.service"
            assert "tags[rpc.method]" in fields and rpc_service in fields, fields
            assert documented(after) == fields
            compared += 1
    assert compared == expected_items


# -- B8: documented fields survive ingestion --------------------------------------------------


@needs_transaction_items
def test_documented_fields_survive_ingestion_over_http(sentry_capture: SentryCapture) -> None:
    """B8 S8 S9 S11 S12 S13 S14 S18 S20 S21 S28: real waitress + JWT; unary, failing and stream calls."""
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()), FULL)
    calc = instrument_server_sentry(RpcServer(Calculator, CalculatorImpl()), FULL)
    claims = {"preferred_username": "ada", "email": "ada@example.org", "name": "Ada L.", "tenant": "acme"}
    with http_proxy(server, bearer("sub-7", **claims)) as proxy:
        assert proxy.search(table="orders", predicate="status = 'open'") == 15
        with pytest.raises(RpcError, match="no such table"):
            proxy.fail(table="missing", message="no such table")
    with http_proxy(calc, bearer("sub-8", **claims)) as proxy:
        assert [b.to_pydict()["i"] for b in proxy.countdown(n=2)] == [[1], [0]]
        session = proxy.scale(factor=2.0)
        assert session.exchange(xs(1.0)).to_pydict() == {"y": [2.0]}
        session.close()
    txns = sentry_capture.transactions
    stream_ids = {t["contexts"]["trace"]["data"].get("rpc.stream_id") for t in txns} - {None}
    assert len(stream_ids) == 2  # the stream id (S14) is among the fields compared
    event = sentry_capture.event()
    assert documented(event)["user.username"] == "ada"
    assert documented(event)["tags[auth.tenant]"] == "acme"
    assert_documented_fields_survive(sentry_capture, expected_items=1 + len(txns))


@needs_transaction_items
def test_documented_fields_survive_ingestion_over_the_pipe(sentry_capture: SentryCapture) -> None:
    """B8: the same over serve_pipe (no WSGI transaction: the hook's own vgi_rpc/<method> transactions)."""
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()), FULL)
    with serve_pipe(server) as proxy:
        proxy.search(table="orders", predicate="x > 1")
        with pytest.raises(RpcError):
            proxy.fail(table="t", message="boom")
    with serve_pipe(instrument_server_sentry(RpcServer(Calculator, CalculatorImpl()), FULL)) as proxy:
        list(proxy.countdown(n=2))
    txns = sentry_capture.transactions
    assert {t["transaction"] for t in txns} == {"vgi_rpc/search", "vgi_rpc/fail", "vgi_rpc/countdown"}
    assert_documented_fields_survive(sentry_capture, expected_items=1 + len(txns))


# -- S26: tag_params clipping is exactly Relay's limit ------------------------------------------


def hand_tag(value: Any) -> SentryCapture:
    """A message event carrying ``tags["rpc.param.table"] = value``, set by hand (no hook)."""
    with sentry_capture() as cap, sentry_sdk.new_scope() as scope:
        scope.set_tag("rpc.param.table", value)
        sentry_sdk.capture_message("by hand")
    return cap


def test_tag_params_clip_is_exactly_relays_tag_value_limit(sentry_capture: SentryCapture) -> None:
    """S26 B8: a 250-char param is sent clipped to 200 and stored unchanged; by hand, 201 is already trimmed."""
    long = "t" * 250
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()), SentryConfig(tag_params=("table",)))
    with pytest.raises(LookupError):
        server.dispatch("fail", table=long, message="x")
    assert tag_map(sentry_capture.event())["rpc.param.table"] == "t" * 200
    sentry_capture.assert_ingestible()
    (stored,) = sentry_capture.ingested("event")
    assert tag_map(stored)["rpc.param.table"] == "t" * 200

    # The same value by hand: Relay cuts it to 197 characters and an ellipsis.
    raw = hand_tag(long)
    with pytest.raises(AssertionError) as failure:
        raw.assert_ingestible()
    message = str(failure.value)
    assert 'envelope 0, event: tags["rpc.param.table"]: trimmed' in message
    assert '["!limit", "s", 197, 200]' in message
    assert "250 characters sent, 200 stored" in message
    (stored,) = raw.ingested("event")
    assert tag_map(stored)["rpc.param.table"] == "t" * 197 + "..."
    # Exactly the limit: 200 characters are kept, 201 are not (so a 200 clip is the largest safe one).
    hand_tag("t" * 200).assert_ingestible()
    with pytest.raises(AssertionError, match="trimmed"):
        hand_tag("t" * 201).assert_ingestible()


# -- S25 B8: type filtering -------------------------------------------------------------------

CLAIM_VALUES: dict[str, Any] = {
    "text": "acme",
    "number": 7,
    "flag": True,
    "empty": "",
    "items": ["a", "b"],
    "numbers": [1, 2],
    "object": {"k": "v"},
    "nothing": None,
}


def test_claim_tag_filter_drops_exactly_what_relay_marks_invalid() -> None:
    """S25 B8: a real JWT with every JSON claim type; sent by hand, Relay rejects exactly the dropped ones."""
    claim_tags = {name: f"claim.{name}" for name in CLAIM_VALUES}
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()), SentryConfig(claim_tags=claim_tags))
    with (
        sentry_capture() as cap,
        http_proxy(server, bearer("p", **CLAIM_VALUES)) as proxy,
        pytest.raises(RpcError),
    ):
        proxy.fail(table="t", message="m")
    sent = tag_map(cap.event())
    kept = {name for name in CLAIM_VALUES if f"claim.{name}" in sent}
    assert kept == {"text", "number", "flag"}
    cap.assert_ingestible()

    with sentry_capture() as raw, sentry_sdk.new_scope() as scope:
        for name, value in CLAIM_VALUES.items():
            scope.set_tag(f"claim.{name}", value)
        sentry_sdk.capture_message("by hand")
    with pytest.raises(AssertionError) as failure:
        raw.assert_ingestible()
    invalid = {name for name in CLAIM_VALUES if f'tags["claim.{name}"]: invalid' in str(failure.value)}
    # What the filter drops (None is simply absent either way) is what Relay would throw away.
    assert invalid == set(CLAIM_VALUES) - kept - {"nothing"} == {"empty", "items", "numbers", "object"}


@needs_transaction_items
def test_span_data_filter_keeps_only_values_the_normaliser_stores_unchanged(
    sentry_capture: SentryCapture,
) -> None:
    """S25 B8: every recorded param type is stored unchanged; what is dropped would not have been stored as sent.

    A fact for the docs' reader: the event normaliser itself stores dicts and
    mixed lists in span data as sent (the SDK turns bytes and dataclasses into
    repr strings first), so there the filter guards Trace Explorer's
    attribute store (primitives only), not this normaliser.
    """
    values: dict[str, Any] = {
        "s": "text", "i": -(2**63), "u": 2**64 - 1, "f": 1.5, "b": False,
        "ls": ["a", "b"], "li": [1, 2], "lf": [0.5], "lb": [True],
        "d": {"k": 1}, "raw": b"\x01", "dc": Point(1), "mixed": [1, "a"], "nan": float("nan"),
    }  # fmt: skip
    server = instrument_server_sentry(
        RpcServer(Probe, ProbeImpl()),
        SentryConfig(record_params=True, enable_performance=True, param_redactor=noop_redactor),
    )
    server.dispatch("record", **values)  # in-process: no Arrow, so any Python value reaches the hook
    (txn,) = sentry_capture.transactions
    data = txn["contexts"]["trace"]["data"]
    recorded = {k.removeprefix("rpc.param."): v for k, v in data.items() if k.startswith("rpc.param.")}
    assert set(recorded) == {"s", "i", "u", "f", "b", "ls", "li", "lf", "lb"}
    sentry_capture.assert_ingestible()


@needs_transaction_items
def test_relay_zeroes_integers_beyond_64_bits_without_a_remark() -> None:
    """B8 (a Relay fact the kit catches): an int outside [-2**63, 2**64) is stored as 0 -- no ``_meta`` remark."""
    with sentry_capture() as cap, sentry_sdk.start_transaction(name="t", op="o") as txn:
        txn.set_data("rpc.param.n", 2**70)
    with pytest.raises(AssertionError) as failure:
        cap.assert_ingestible()
    assert 'contexts.trace.data["rpc.param.n"]: changed (sent 1180591620717411303424, stored 0)' in str(
        failure.value
    )


def test_recorded_params_beyond_64_bits_are_not_sent(sentry_capture: SentryCapture) -> None:
    """B8 S25: in-process ``dispatch`` passes Python ints through; one Relay would store as 0 is not sent."""
    server = instrument_server_sentry(
        RpcServer(Calculator, CalculatorImpl()), SentryConfig(record_params=True, enable_performance=True)
    )
    assert server.dispatch("add", a=2**70, b=1) == 2**70 + 1
    (txn,) = sentry_capture.transactions
    data = txn["contexts"]["trace"]["data"]
    assert "rpc.param.a" not in data and data["rpc.param.b"] == 1
    if not STREAMING:  # span items (sentry-sdk 3) are beyond the event normaliser: the rule is the same
        sentry_capture.assert_ingestible()


@needs_transaction_items
def test_span_data_integers_at_relays_bounds(sentry_capture: SentryCapture) -> None:
    """B8 S25: -2**63 and 2**64-1 (alone or in a list) are stored as sent; one past either bound is not sent."""
    server = instrument_server_sentry(
        RpcServer(Probe, ProbeImpl()),
        SentryConfig(record_params=True, enable_performance=True, param_redactor=noop_redactor),
    )
    values: dict[str, Any] = {
        "i": -(2**63), "u": 2**64 - 1, "li": [-(2**63), 2**64 - 1],
        "s": "x", "f": 0.5, "b": True, "ls": ["a"], "lf": [0.5], "lb": [True],
        "d": {}, "raw": b"", "dc": Point(0), "mixed": [2**64], "nan": -(2**63) - 1,
    }  # fmt: skip
    server.dispatch("record", **values)
    (txn,) = sentry_capture.transactions
    data = txn["contexts"]["trace"]["data"]
    assert data["rpc.param.i"] == -(2**63) and data["rpc.param.u"] == 2**64 - 1
    assert data["rpc.param.li"] == [-(2**63), 2**64 - 1]
    assert "rpc.param.mixed" not in data and "rpc.param.nan" not in data  # [2**64], -2**63-1
    sentry_capture.assert_ingestible()


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("line one\nline two", None),  # Relay: invalid character '\n'
        (" padded ", "padded"),  # Relay strips outer whitespace
        ("\tleading tab", "leading tab"),
        ("trailing newline\n", "trailing newline"),
        ("\u3000ideographic space\u2028", "ideographic space"),
        ("   ", None),  # empty once stripped: Relay: expected a non-empty value
        ("\x1cinfo separator", "\x1cinfo separator"),  # str.isspace, not Unicode White_Space: kept
        ("a\rb\tc", "a\rb\tc"),  # inner CR and tab are stored as sent
        ("t" * 199 + " u", "t" * 199),  # clipped to 200, then the clip's trailing space goes too
    ],
)
def test_tag_params_values_relay_would_change_are_sent_as_relay_stores_them(
    sentry_capture: SentryCapture, value: str, sent: str | None
) -> None:
    """B8 S21: Relay rejects a tag value with a newline and strips outer whitespace; the hook sends neither."""
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()), SentryConfig(tag_params=("table",)))
    with pytest.raises(LookupError):
        server.dispatch("fail", table=value, message="x")
    assert tag_map(sentry_capture.event()).get("rpc.param.table") == sent
    sentry_capture.assert_ingestible()
    (stored,) = sentry_capture.ingested("event")
    assert tag_map(stored).get("rpc.param.table") == sent


def test_claim_tags_and_the_auth_domain_are_sent_as_relay_stores_them(sentry_capture: SentryCapture) -> None:
    """B8 S20 S25: claim values with outer whitespace are stripped; one holding a newline is not sent."""
    claim_tags = {"padded": "claim.padded", "lines": "claim.lines", "big": "claim.big", "huge": "claim.huge"}
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()), SentryConfig(claim_tags=claim_tags))
    claims = {"padded": "  acme\t", "lines": "a\nb", "big": 2**70, "huge": 10**250}
    with http_proxy(server, bearer("p", **claims)) as proxy, pytest.raises(RpcError):
        proxy.fail(table="t", message="m")
    tags = tag_map(sentry_capture.event())
    assert tags["claim.padded"] == "acme" and tags["claim.big"] == str(2**70)
    assert "claim.lines" not in tags and "claim.huge" not in tags  # a 251-digit number is not clipped
    sentry_capture.assert_ingestible()


@pytest.mark.parametrize(
    ("option", "config"),
    [
        ("custom_tags", {"custom_tags": {"my env": "x"}}),
        ("custom_tags", {"custom_tags": {"env": " prod"}}),
        ("custom_tags", {"custom_tags": {"env": "a\nb"}}),
        ("custom_tags", {"custom_tags": {"env": "x" * 201}}),
        ("custom_tags", {"custom_tags": {"k" * 201: "x"}}),
        ("claim_tags", {"claim_tags": {"tenant": "auth/tenant"}}),
        ("tag_params", {"tag_params": ("\u00e9t\u00e9",)}),
    ],
)
def test_tags_sentry_would_not_store_as_configured_are_config_errors(
    option: str, config: dict[str, Any]
) -> None:
    """B8: a tag key or custom value Relay would drop, cut or change is a ValueError at config time.

    The keys and values above are exactly ones Relay changes (sent by hand here, each is a finding).
    """
    with pytest.raises(ValueError, match=rf"^{option}: "):
        SentryConfig(**config)
    ((key, value),) = (config.get("custom_tags") or {"": ""}).items()
    if option == "custom_tags":
        with sentry_capture() as raw, sentry_sdk.new_scope() as scope:
            scope.set_tag(key, value)
            sentry_sdk.capture_message("by hand")
        with pytest.raises(AssertionError):
            raw.assert_ingestible()


def test_relays_limits_on_user_fields() -> None:
    """B8 (a Relay fact): user.email is cut at 75 characters, user.id/username/name at 128 -- set by hand."""
    with sentry_capture() as cap, sentry_sdk.new_scope() as scope:
        scope.set_user({"id": "i" * 128, "username": "u" * 129, "email": "e" * 76, "name": "n" * 128})
        sentry_sdk.capture_message("by hand")
    with pytest.raises(AssertionError) as failure:
        cap.assert_ingestible()
    found = [line.split(": ")[1] for line in str(failure.value).splitlines() if "trimmed" in line]
    assert sorted(found) == ["user.email", "user.username"]


def user_of(event: dict[str, Any]) -> dict[str, Any]:
    """The event's user as the hook set it (sentry-sdk 3 adds the client's ``ip_address`` by default)."""
    return {k: v for k, v in event["user"].items() if k != "ip_address"}


def test_long_jwt_claims_in_user_fields_are_not_sent(sentry_capture: SentryCapture) -> None:
    """B8 S9: claims longer than Relay keeps (email 75, username 128) are not sent; username is the principal."""
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()))
    claims = {"preferred_username": "u" * 129, "email": f"{'e' * 70}@example.org", "name": "n" * 128}
    with http_proxy(server, bearer("sub-9", **claims)) as proxy, pytest.raises(RpcError):
        proxy.fail(table="t", message="m")
    assert user_of(sentry_capture.event()) == {"id": "sub-9", "username": "sub-9", "name": "n" * 128}
    sentry_capture.assert_ingestible()


def test_a_principal_longer_than_relay_keeps_is_not_sent(sentry_capture: SentryCapture) -> None:
    """B8 S9: a 129-character principal is neither user.id nor the username fallback; a fitting claim still is."""
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()))
    with http_proxy(server, bearer("p" * 129, email="ada@example.org")) as proxy, pytest.raises(RpcError):
        proxy.fail(table="t", message="m")
    assert user_of(sentry_capture.event()) == {"email": "ada@example.org"}
    sentry_capture.assert_ingestible()
    with http_proxy(server, bearer("p" * 128)) as proxy, pytest.raises(RpcError):
        proxy.fail(table="t", message="m")
    assert user_of(sentry_capture.events[-1]) == {"id": "p" * 128, "username": "p" * 128}
    sentry_capture.assert_ingestible()


# -- what server-side scrubbing does to a free-text param --------------------------------------

PREDICATE = "name = 'Ada Lovelace' AND email = 'ada@example.org' AND card = '4111 1111 1111 1111'"


@needs_transaction_items
def test_server_side_scrubbing_leaves_names_and_emails_in_a_free_text_param(
    sentry_capture: SentryCapture,
) -> None:
    """S23 (the caveat, proven): Sentry's default scrubbing masks the card number, keeps the name and email.

    Span data (``rpc.param.predicate``) is scrubbed by pattern only -- credit
    cards, SSNs, IBANs -- so personal names and email addresses are stored; the
    ``tag_params`` copy of the same value is not scrubbed at all.  Only a
    ``param_redactor`` or an Advanced Data Scrubbing rule removes them.
    """
    config = SentryConfig(record_params=True, enable_performance=True, tag_params=("predicate",))
    server = instrument_server_sentry(RpcServer(Catalog, CatalogImpl()), config)
    with serve_pipe(server) as proxy:
        proxy.search(table="people", predicate=PREDICATE)
    (stored,) = sentry_capture.scrubbed("transaction")
    data = stored["contexts"]["trace"]["data"]
    assert data["rpc.param.predicate"] == (
        "name = 'Ada Lovelace' AND email = 'ada@example.org' AND card = '[Filtered]'"
    )
    assert data["rpc.param.table"] == "people"
    assert tag_map(stored)["rpc.param.predicate"] == PREDICATE[:200]  # tags: not scrubbed
    remark = stored["_meta"]["contexts"]["trace"]["data"]["rpc.param.predicate"][""]["rem"][0]
    assert remark[:2] == ["@creditcard:filter", "s"]
    # unscrubbed, the normaliser alone keeps everything
    (plain,) = sentry_capture.ingested("transaction")
    assert plain["contexts"]["trace"]["data"]["rpc.param.predicate"] == PREDICATE


@needs_transaction_items
def test_server_side_scrubbing_filters_a_whole_value_that_mentions_a_password(
    sentry_capture: SentryCapture,
) -> None:
    """S23: a free-text value containing a sensitive word ("password") is replaced as a whole."""
    server = instrument_server_sentry(
        RpcServer(Catalog, CatalogImpl()), SentryConfig(record_params=True, enable_performance=True)
    )
    server.dispatch("search", table="users", predicate="password = 'hunter2'")
    (stored,) = sentry_capture.scrubbed("transaction")
    assert stored["contexts"]["trace"]["data"]["rpc.param.predicate"] == "[Filtered]"


@needs_transaction_items
def test_advanced_data_scrubbing_rules_and_project_settings(sentry_capture: SentryCapture) -> None:
    """S23 (the docs' advice): an Advanced Data Scrubbing rule does remove the email; sensitive fields work too."""
    server = instrument_server_sentry(
        RpcServer(Catalog, CatalogImpl()), SentryConfig(record_params=True, enable_performance=True)
    )
    server.dispatch("search", table="people", predicate=PREDICATE)
    rules = {"applications": {"$string": ["@email:replace"]}}
    (stored,) = sentry_capture.scrubbed("transaction", rules)
    predicate = stored["contexts"]["trace"]["data"]["rpc.param.predicate"]
    assert "ada@example.org" not in predicate and "[email]" in predicate
    assert "Ada Lovelace" in predicate
    # project settings: "Additional Sensitive Fields" by key name
    (stored,) = sentry_capture.ingested(
        "transaction", data_scrubbing=DataScrubbing(sensitive_fields=["rpc.param.table"])
    )
    assert stored["contexts"]["trace"]["data"]["rpc.param.table"] == "[Filtered]"
    # the data scrubber switched off stores the value as sent
    (stored,) = sentry_capture.scrubbed("transaction", DataScrubbing(scrub_data=False))
    assert stored["contexts"]["trace"]["data"]["rpc.param.predicate"] == PREDICATE


# -- the kit's own behaviour -----------------------------------------------------------------


@needs_transaction_items
def test_a_payload_relay_rejects_is_reported_with_relays_error() -> None:
    """Bad input: a transaction Relay refuses outright: Relay's message, no traceback from the bindings."""

    def drop_start(event: dict[str, Any], hint: Any) -> dict[str, Any]:
        del event["start_timestamp"]
        return event

    with (
        sentry_capture(before_send_transaction=drop_start) as cap,
        sentry_sdk.start_transaction(name="t", op="o"),
    ):
        pass
    with pytest.raises(AssertionError) as failure:
        cap.assert_ingestible()
    message = str(failure.value)
    assert "envelope 0, transaction: (the whole payload): rejected" in message
    assert "start_timestamp hard-required for transaction events" in message
    assert "stacktrace" not in message and "relay_" not in message
    with pytest.raises(IngestionRejected) as rejected:
        cap.ingested("transaction")
    assert rejected.value.__cause__ is None and rejected.value.__suppress_context__
    assert str(rejected.value) == (
        "Relay rejects envelope 0, transaction outright: invalid transaction event: "
        "start_timestamp hard-required for transaction events (ProcessingErrorInvalidTransaction)"
    )


def test_the_sdks_own_remarks_are_not_reported_as_relays() -> None:
    """The SDK's own ``_meta`` (here: it sends 10 of 25 list entries) is not Relay's change, so no finding."""
    with sentry_capture() as cap, sentry_sdk.new_scope() as scope:
        scope.set_extra("rows", list(range(25)))
        sentry_sdk.capture_message("m")
    (sent,) = cap.events
    assert sent["extra"]["rows"] == list(range(10))
    assert sent["_meta"]["extra"]["rows"] == {"": {"len": 25}}
    cap.assert_ingestible()
    (stored,) = cap.ingested()
    assert stored["extra"]["rows"] == list(range(10))
    assert stored["_meta"]["extra"]["rows"] == {"": {"len": 25}}


def test_frame_locals_are_ignored_by_default_and_visible_on_request() -> None:
    """DEFAULT_IGNORE: Relay caps each frame's locals; clipped reprs are findings only with ``ignore=()``."""

    def fails() -> None:
        big = ["v" * 400] * 12  # noqa: F841 - a local with a long repr
        raise ValueError("x")

    with sentry_capture() as cap:
        try:
            fails()
        except ValueError as exc:
            sentry_sdk.capture_exception(exc)
    cap.assert_ingestible()
    with pytest.raises(AssertionError, match=r"\.stacktrace\.frames\[\d+\]\.vars"):
        cap.assert_ingestible(ignore=())
    assert "exception.values.*.stacktrace.frames.*.vars" in DEFAULT_IGNORE


def test_assert_ingestible_with_nothing_to_check_fails(sentry_capture: SentryCapture) -> None:
    """A vacuous pass would hide a test that captured nothing."""
    with pytest.raises(AssertionError, match="nothing to check"):
        sentry_capture.assert_ingestible()


def test_bad_arguments() -> None:
    """Unsupported item types, scrubbing options and invalid Advanced rules are clear errors."""
    with sentry_capture() as cap:
        sentry_sdk.capture_message("m")
    with pytest.raises(ValueError, match="'event' and 'transaction' items, not 'log'"):
        cap.ingested("log")
    with pytest.raises(TypeError, match="data_scrubbing must be"):
        cap.ingested(data_scrubbing="yes")
    with pytest.raises(ValueError, match="not a valid Sentry PII config") as invalid:
        cap.scrubbed("event", {"rules": {"r": {"type": "no-such-rule"}}})
    assert "stacktrace" not in str(invalid.value)


def test_relay_version_is_the_pinned_one_and_its_import_side_effect_is_undone() -> None:
    """The extra pins the tested Relay, imported only when used; the RUST_BACKTRACE it sets is restored."""
    from importlib import metadata

    assert metadata.version("sentry-relay") == TESTED_RELAY_VERSION
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert f'relay = ["sentry-relay=={TESTED_RELAY_VERSION}"]' in pyproject
    script = textwrap.dedent(
        """
        import os, sys
        import vgi_rpc.testing.pytest_plugin, vgi_rpc.testing.relay as relay
        assert "sentry_relay" not in sys.modules, "imported before use"
        relay.normalize({"message": "m"})
        print(os.environ.get("RUST_BACKTRACE"))
        """
    )
    for before, after in ((None, "None"), ("0", "0")):
        env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
        if before is not None:
            env["RUST_BACKTRACE"] = before
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == after


def test_without_the_relay_extra_the_methods_name_it() -> None:
    """Optional parts fail helpfully: each method says to install vgi-rpc[relay]."""
    script = textwrap.dedent(
        """
        import json, sys
        sys.modules["sentry_relay"] = None  # as if the extra were not installed
        import sentry_sdk
        from vgi_rpc.testing import sentry_capture
        with sentry_capture() as cap:
            sentry_sdk.capture_message("m")
        out = {}
        for name, call in [("ingested", cap.ingested), ("scrubbed", cap.scrubbed), ("assert_ingestible", cap.assert_ingestible)]:
            try:
                call()
            except ModuleNotFoundError as exc:
                out[name] = str(exc)
        print(json.dumps(out))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    messages = json.loads(proc.stdout)
    assert set(messages) == {"ingested", "scrubbed", "assert_ingestible"}
    assert all("pip install 'vgi-rpc[relay]'" in m for m in messages.values())
