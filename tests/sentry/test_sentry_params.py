"""RPC parameters in Sentry: recording, type filtering, truncation, redaction, tag_params.

Claims S20, S21, S23-S26, B3 and B4 (S22, exchange turns, is pinned over HTTP in
``test_sentry_http.py``). Envelope tests go through ``serve_pipe`` or
``RpcServer.dispatch`` (for values Arrow cannot carry, e.g. mixed lists) with the
real SDK and the in-memory transport.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.sentry import STREAMING, trace_data
from support.shop import Point, make_server

from vgi_rpc import RpcError, serve_pipe
from vgi_rpc._sentry_values import truncate_utf8 as _truncate_utf8
from vgi_rpc.sentry import SentryConfig, default_redactor, noop_redactor
from vgi_rpc.testing import SentryCapture

SECRET_TOKEN = "tok-3f9a1c7e-secret-value"
SECRET_PASSWORD = "pw-hunter2-Zq8x"


def params_of(txn: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trace_data(txn).items() if k.startswith("rpc.param.")}


def search_once(config: SentryConfig, **kwargs: Any) -> None:
    with serve_pipe(make_server(config)) as proxy:
        proxy.search(**kwargs)


# -- the default redactor and noop_redactor (pure) ------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        *("password", "db_password", "PASSWORD", "api_token", "AccessToken", "client_secret"),
        *("api_key", "KEY", "authorization", "Authorization", "monkey", "keyspace"),
    ],
)
def test_default_redactor_drops_matching_keys_case_insensitively(key: str) -> None:
    """S23: keys matching password|token|secret|key|authorization anywhere, any case, are dropped."""
    assert default_redactor({key: "v", "table": "orders"}) == {"table": "orders"}


def test_default_redactor_keeps_other_keys_and_values_untouched() -> None:
    """S23: the default redactor looks at key names only; values (free text) pass through."""
    kwargs = {"table": "orders", "predicate": "password = 'x'", "limit": 3}
    assert default_redactor(kwargs) == kwargs


def test_noop_redactor_returns_everything() -> None:
    """S23: noop_redactor disables filtering."""
    kwargs = {"password": "p", "table": "t"}
    assert noop_redactor(kwargs) == kwargs


# -- truncation (pure) -----------------------------------------------------------------------------


@given(st.text(), st.integers(min_value=1, max_value=64))
def test_truncation_never_splits_a_character_or_exceeds_the_cap(text: str, cap: int) -> None:
    """B3 S24: the result is the longest prefix of whole characters whose UTF-8 fits in the cap."""
    out = _truncate_utf8(text, cap)
    assert out is not None
    encoded = out.encode("utf-8")  # would raise on a split surrogate; never contains U+FFFD we did not get
    assert len(encoded) <= cap
    assert text.startswith(out)
    if out != text:  # maximal: the next character would not have fit
        assert len(encoded) + len(text[len(out)].encode("utf-8")) > cap
    assert out.count("\ufffd") == text[: len(out)].count("\ufffd")


@pytest.mark.parametrize(
    ("text", "cap", "expected"),
    [
        ("héllo", 2, "h"),  # é is 2 bytes and does not fit after h
        ("héllo", 3, "hé"),
        ("€uro", 2, ""),  # a 3-byte character never fits in 2 bytes
        ("😀x", 4, "😀"),
        ("😀x", 3, ""),
        ("short", 1024, "short"),
    ],
)
def test_truncation_examples(text: str, cap: int, expected: str) -> None:
    """B3: concrete boundaries for 1-, 2-, 3- and 4-byte characters."""
    assert _truncate_utf8(text, cap) == expected


def test_lone_surrogates_cannot_be_encoded_and_are_dropped() -> None:
    """S25: a str that is not valid Unicode cannot go on the wire: the value is dropped."""
    assert _truncate_utf8("a\ud800" * 400, 16) is None


# -- recording on the transaction -----------------------------------------------------------------


def test_params_are_off_by_default(sentry_capture: SentryCapture) -> None:
    """S20: without record_params no rpc.param.* is recorded anywhere."""
    search_once(SentryConfig(enable_performance=True), table="orders", limit=3)
    assert params_of(sentry_capture.transaction()) == {}
    assert "rpc.param." not in json.dumps(sentry_capture.envelopes)


def test_record_params_types_survive_or_are_dropped(sentry_capture: SentryCapture) -> None:
    """S20 S25: str/bool/int/float and non-empty homogeneous lists are recorded; the rest dropped silently."""
    search_once(
        SentryConfig(enable_performance=True, record_params=True),
        table="orders",
        predicate="amount > 10",
        limit=25,
        ratio=0.25,
        exact=True,
        columns=["id", "amount"],
        ids=[3, 1, 2],
        flags=[True, False],
        empty=[],  # empty: no type to index, dropped
        options={"a": "b"},  # dict: dropped
        blob=b"\x00\x01",  # bytes: dropped
        point=Point(1, 2),  # dataclass: dropped
    )
    assert params_of(sentry_capture.transaction()) == {
        "rpc.param.table": "orders",
        "rpc.param.predicate": "amount > 10",
        "rpc.param.limit": 25,
        "rpc.param.ratio": 0.25,
        "rpc.param.exact": True,
        "rpc.param.columns": ["id", "amount"],
        "rpc.param.ids": [3, 1, 2],
        "rpc.param.flags": [True, False],
        # None-valued optionals (the defaults) are dropped too
        "rpc.param.fail": False,
    }


class Colour(enum.Enum):
    RED = 1


class Name(str):
    pass


def test_mixed_lists_and_non_primitives_are_dropped(sentry_capture: SentryCapture) -> None:
    """S25: [1, True] is mixed (bool is not int) and dropped; tuples become lists; subclasses, NaN/inf dropped."""
    server = make_server(SentryConfig(enable_performance=True, record_params=True))
    # dispatch() runs the hooks on raw kwargs, so values Arrow could never carry reach the hook
    server.dispatch(
        "search",
        table="t",
        ints_and_bool=[1, True],
        int_and_str=[1, "a"],
        int_and_float=[1, 2.0],
        tuple_of_ints=(1, 2),
        nested=[[1], [2]],
        enum_value=Colour.RED,
        str_subclass=Name("x"),
        none_value=None,
        bool_list=[True],
        float_value=1.5,
        infinite=float("inf"),  # JSON has no infinity: the SDK would turn it into a string
        nan_list=[1.0, float("nan")],
    )
    assert params_of(sentry_capture.transaction()) == {
        "rpc.param.table": "t",
        "rpc.param.tuple_of_ints": [1, 2],
        "rpc.param.bool_list": [True],
        "rpc.param.float_value": 1.5,
    }


def test_long_strings_are_truncated_at_a_character_boundary_with_a_debug_record(
    sentry_capture: SentryCapture, caplog: pytest.LogCaptureFixture
) -> None:
    """S24 B3: a value over max_param_value_bytes is cut to fit (no split character) and a DEBUG line says so."""
    predicate = "é" * 10 + "x"  # 21 UTF-8 bytes
    config = SentryConfig(enable_performance=True, record_params=True, max_param_value_bytes=7)
    with caplog.at_level(logging.DEBUG, logger="vgi_rpc.sentry"):
        search_once(config, table="orders", predicate=predicate, columns=["ok", "ééééé"])
    params = params_of(sentry_capture.transaction())
    assert params["rpc.param.predicate"] == "ééé"  # 6 bytes: a 4th é would need 8
    assert params["rpc.param.table"] == "orders"  # 6 bytes: untouched
    assert params["rpc.param.columns"] == ["ok", "ééé"]
    records = [r for r in caplog.records if r.name == "vgi_rpc.sentry" and r.levelno == logging.DEBUG]
    messages = [r.getMessage() for r in records]
    assert any("rpc.param.predicate truncated from 21 to 6" in m for m in messages), messages
    assert any("rpc.param.columns truncated from 10 to 6" in m for m in messages), messages
    assert not any("table" in m for m in messages)


def test_default_max_param_value_bytes_is_1024(sentry_capture: SentryCapture) -> None:
    """S24: default cap 1024 bytes."""
    search_once(SentryConfig(enable_performance=True, record_params=True), table="t" * 5000)
    assert params_of(sentry_capture.transaction())["rpc.param.table"] == "t" * 1024


# -- tag_params ------------------------------------------------------------------------------------


def test_tag_params_copies_only_listed_params_into_tags(sentry_capture: SentryCapture) -> None:
    """S21 S26: listed params become rpc.param.<k> tags (stringified, clipped to 200); others never do."""
    config = SentryConfig(
        tag_params=("table", "limit", "exact", "columns", "missing"), enable_performance=True
    )
    with serve_pipe(make_server(config)) as proxy, pytest.raises(RpcError):
        proxy.search(table="t" * 300, limit=5, exact=True, columns=["a"], predicate="p", fail=True)
    expected = {"rpc.param.table": "t" * 200, "rpc.param.limit": "5", "rpc.param.exact": "true"}
    for tags in (sentry_capture.event()["tags"], sentry_capture.transaction()["tags"]):
        param_tags = {k: v for k, v in tags.items() if k.startswith("rpc.param.")}
        # lists are not tag values; predicate was not listed; missing was not passed
        assert param_tags == expected
    # tag_params works without record_params: no span data was recorded (3.x: the only
    # rpc.param.* attributes are the tags themselves, stringified and clipped)
    assert params_of(sentry_capture.transaction()) == (expected if STREAMING else {})


def test_tag_params_are_taken_after_the_redactor(sentry_capture: SentryCapture) -> None:
    """S21 S23 B4: a whitelisted param the redactor removes never becomes a tag."""
    config = SentryConfig(tag_params=("table", "api_token"), enable_performance=True)
    search_once(config, table="orders", api_token=SECRET_TOKEN)
    tags = sentry_capture.transaction()["tags"]
    assert tags["rpc.param.table"] == "orders"
    assert "rpc.param.api_token" not in tags
    assert SECRET_TOKEN not in json.dumps(sentry_capture.envelopes)


# -- redaction ------------------------------------------------------------------------------------


def test_default_redactor_applies_to_recorded_params(sentry_capture: SentryCapture) -> None:
    """S23: with param_redactor=None the default drops secret-looking keys before recording."""
    search_once(
        SentryConfig(enable_performance=True, record_params=True),
        table="orders",
        api_token=SECRET_TOKEN,
        db_password=SECRET_PASSWORD,
    )
    params = params_of(sentry_capture.transaction())
    assert params["rpc.param.table"] == "orders"
    assert "rpc.param.api_token" not in params and "rpc.param.db_password" not in params


def test_custom_redactor_replaces_the_default(sentry_capture: SentryCapture) -> None:
    """S23: a custom param_redactor replaces the default (it, not the default, decides)."""

    def only_drop_table(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: ("<masked>" if k == "predicate" else v) for k, v in kwargs.items() if k != "table"}

    search_once(
        SentryConfig(enable_performance=True, record_params=True, param_redactor=only_drop_table),
        table="orders",
        predicate="email = 'a@b.c'",
        api_token="not-secret-for-this-redactor",
    )
    params = params_of(sentry_capture.transaction())
    assert "rpc.param.table" not in params
    assert params["rpc.param.predicate"] == "<masked>"
    assert params["rpc.param.api_token"] == "not-secret-for-this-redactor"


def test_noop_redactor_records_everything(sentry_capture: SentryCapture) -> None:
    """S23: noop_redactor disables filtering."""
    search_once(
        SentryConfig(enable_performance=True, record_params=True, param_redactor=noop_redactor),
        table="orders",
        api_token="visible",
    )
    assert params_of(sentry_capture.transaction())["rpc.param.api_token"] == "visible"


def test_a_failing_redactor_records_no_params_and_keeps_the_call(
    sentry_capture: SentryCapture, caplog: pytest.LogCaptureFixture
) -> None:
    """S23: a redactor that raises fails closed: no params, a WARNING, the call and its event unaffected."""

    def broken(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
        raise RuntimeError("redactor bug")

    config = SentryConfig(
        enable_performance=True, record_params=True, tag_params=("table",), param_redactor=broken
    )
    with caplog.at_level(logging.WARNING, logger="vgi_rpc.sentry"), serve_pipe(make_server(config)) as proxy:
        with pytest.raises(RpcError, match="no table"):
            proxy.search(table="orders", fail=True)
        assert proxy.search(table="orders") == 1
    assert all(params_of(t) == {} for t in sentry_capture.transactions)
    assert "rpc.param.table" not in sentry_capture.event()["tags"]
    assert any("param_redactor" in r.getMessage() for r in caplog.records if r.name == "vgi_rpc.sentry")


@pytest.mark.parametrize("tag_params", [(), ("api_token", "db_password", "user")])
def test_redacted_values_appear_in_no_envelope_field(sentry_capture: SentryCapture, tag_params: Any) -> None:
    """B4 S23: a redacted value is in no field of any envelope (tags, span data, contexts, stack locals...)."""
    config = SentryConfig(enable_performance=True, record_params=True, tag_params=tag_params)
    with serve_pipe(make_server(config)) as proxy, pytest.raises(RpcError):
        # fails inside the implementation: stack frames hold the secrets as locals, in kwargs dicts
        # and in a tuple; Sentry's own scrubber knows neither "api_token" nor "db_password"
        proxy.login(user="ada", api_token=SECRET_TOKEN, db_password=SECRET_PASSWORD)
    event = sentry_capture.event()
    frames = event["exception"]["values"][0]["stacktrace"]["frames"]
    assert any(f.get("vars") for f in frames)  # local variables are on (the SDK default)
    assert "[Filtered]" in json.dumps(frames)  # ...and the secrets were there to be scrubbed
    assert params_of(sentry_capture.transaction())["rpc.param.user"] == "ada"
    dumped = json.dumps(sentry_capture.envelopes) + "".join(
        raw.decode("utf-8", "replace") for raw in sentry_capture.transport.raw_envelopes
    )
    assert SECRET_TOKEN not in dumped
    assert SECRET_PASSWORD not in dumped
    assert "ada" in dumped  # sanity: the search is not vacuous


def test_secrets_are_scrubbed_only_from_the_calls_own_events(sentry_capture: SentryCapture) -> None:
    """B4 B2: the scrubbing is per call: a later call's events are not rewritten with an earlier secret."""
    server = make_server(SentryConfig(record_params=True))
    with serve_pipe(server) as proxy:
        with pytest.raises(RpcError):
            proxy.login(user="ada", api_token="shared-word", db_password=SECRET_PASSWORD)
        with pytest.raises(RpcError):
            proxy.fail(message="message with shared-word in it")
    assert sentry_capture.events[1]["exception"]["values"][0]["value"] == "message with shared-word in it"
