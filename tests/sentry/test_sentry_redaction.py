"""Redaction hides the secret and nothing else (B4, B6).

A redacted param value (the default redactor drops ``api_key``, ``password``...)
must never reach an envelope, and hiding it must never damage the event: ids,
dict and tag keys, the method and service names and exception types stay intact,
and the one error event still arrives whatever the secret's value.

The first three tests are the failures the issue reported: a one-letter secret
used to be replaced inside every string of the event, keys included, so
``checkout`` became ``chec[Filtered]out``, the key ``event_id`` was rewritten
(the SDK then dropped the event with ``KeyError: 'event_id'``) and hex ids were
corrupted.
"""

from __future__ import annotations

import inspect
import keyword
import logging
import re
from typing import Any, Protocol

import pytest
import sentry_sdk
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sentry_sdk.integrations.logging import LoggingIntegration
from support.services import Calculator, CalculatorImpl

from vgi_rpc import RpcError, RpcServer, serve_pipe
from vgi_rpc.sentry import MIN_SCRUB_CHARS, SentryConfig, default_redactor, instrument_server_sentry
from vgi_rpc.testing import SentryCapture
from vgi_rpc.testing.snapshots import normalize

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


class CheckoutDeclined(Exception):
    pass


class Store(Protocol):
    def checkout(self, order_id: str, api_key: str) -> int: ...
    def pay(self, amount: int, password: str) -> int: ...


class StoreImpl:
    def checkout(self, order_id: str, api_key: str) -> int:
        raise CheckoutDeclined(f"order {order_id} declined")

    def pay(self, amount: int, password: str) -> int:
        raise PermissionError(f"payment of {amount} refused")


def store(config: SentryConfig) -> RpcServer:
    return instrument_server_sentry(RpcServer(Store, StoreImpl()), config)


def assert_ids_intact(payload: dict[str, Any]) -> None:
    assert HEX32.fullmatch(payload["event_id"]), payload["event_id"]
    trace = payload["contexts"]["trace"]
    assert HEX32.fullmatch(trace["trace_id"]), trace
    assert HEX16.fullmatch(trace["span_id"]), trace


@pytest.mark.parametrize(
    "config",
    [SentryConfig(tag_params=("order_id",)), SentryConfig(record_params=True, enable_performance=True)],
    ids=["tag_params", "record_params"],
)
def test_a_one_letter_secret_inside_the_method_name_leaves_names_and_types_intact(
    sentry_capture: SentryCapture, config: SentryConfig
) -> None:
    """B6 B4 S8 S10 S18: api_key="k" does not turn 'checkout' into 'chec[Filtered]out' anywhere."""
    server = store(config)
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.checkout(order_id="o", api_key="k")
    event = sentry_capture.event()
    assert event["tags"]["rpc.method"] == "checkout"
    assert event["transaction"] == "rpc checkout"
    assert event["contexts"]["rpc"] == {
        "method": "checkout",
        "method_type": "unary",
        "service": "Store",
        "server_id": server.server_id,
    }
    (exc,) = event["exception"]["values"]
    assert exc["type"] == "CheckoutDeclined"
    assert exc["value"] == "order o declined"  # free text: a one-letter secret is not cut out of prose
    frames = exc["stacktrace"]["frames"]
    impl = next(f for f in frames if f["function"] == "checkout" and f.get("vars"))
    assert impl["vars"]["api_key"] == "[Filtered]"  # the variable named like the param: filtered
    assert impl["vars"]["order_id"] == "'o'"  # everything else as the SDK sent it
    assert_ids_intact(event)
    for txn in sentry_capture.transactions:
        assert txn["transaction"] == "vgi_rpc/checkout"
        assert txn["contexts"]["trace"]["data"]["rpc.method"] == "checkout"


def test_a_secret_that_is_a_letter_of_event_id_does_not_drop_the_event(sentry_capture: SentryCapture) -> None:
    """B1 B6: api_key="e" used to rewrite the key 'event_id' and the SDK dropped the event (KeyError)."""
    with serve_pipe(store(SentryConfig(tag_params=("order_id",)))) as proxy, pytest.raises(RpcError):
        proxy.checkout(order_id="o", api_key="e")
    event = sentry_capture.event()  # exactly one
    assert sentry_capture.lost_events == []
    assert_ids_intact(event)
    assert event["tags"]["rpc.param.order_id"] == "o"
    assert event["level"] == "error"


def test_a_one_digit_password_keeps_ids_intact(sentry_capture: SentryCapture) -> None:
    """B6: password="1" used to corrupt the hex of event_id, trace_id and span_id."""
    config = SentryConfig(record_params=True, enable_performance=True)
    with serve_pipe(store(config)) as proxy, pytest.raises(RpcError):
        proxy.pay(amount=11, password="1")
    event = sentry_capture.event()
    assert_ids_intact(event)
    txn = sentry_capture.transaction()
    assert HEX32.fullmatch(txn["event_id"] if "event_id" in txn else txn["span_item"]["trace_id"])
    assert HEX16.fullmatch(txn["contexts"]["trace"]["span_id"])
    assert event["contexts"]["trace"]["trace_id"] == txn["contexts"]["trace"]["trace_id"]
    assert txn["contexts"]["trace"]["data"]["rpc.param.amount"] == 11  # not a secret, an int: untouched
    assert event["exception"]["values"][0]["value"] == "payment of 11 refused"


# -- the rule, field by field -----------------------------------------------------------------------

LONG_SECRET = "tok-9f2c71"  # >= MIN_SCRUB_CHARS: cut out of free text too


class Vault(Protocol):
    def open(self, door: str, token: str, note: str = "") -> int: ...
    def log_and_fail(self, door: str, token: str) -> int: ...


class VaultImpl:
    def open(self, door: str, token: str, note: str = "") -> int:
        sentry_sdk.set_tag("app.echo", token)  # user code copying the secret into a tag
        sentry_sdk.set_extra("app.extra", {"nested": [token, "kept"]})
        sentry_sdk.add_breadcrumb(message=f"opening {door} with {token}", data={"t": token})
        bag = {"token": token, "other": note}  # a dict local holding the secret
        raise LookupError(f"door {door} refused {token}; bag has {len(bag)} entries")

    def log_and_fail(self, door: str, token: str) -> int:
        import logging

        logging.getLogger("app.vault").error("cannot open %s with %s", door, token)
        raise RuntimeError(f"failed with {token}")


def vault(config: SentryConfig | None = None) -> RpcServer:
    return instrument_server_sentry(RpcServer(Vault, VaultImpl()), config or SentryConfig(record_params=True))


def strings_in(node: Any) -> list[str]:
    """Every string (keys and values) inside parsed envelopes."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*strings_in(k), *strings_in(v))]
    if isinstance(node, list):
        return [s for v in node for s in strings_in(v)]
    return []


def test_a_long_secret_is_cut_out_of_free_text_everywhere(sentry_capture: SentryCapture) -> None:
    """B4 B6: exception message, breadcrumbs, tags, extra, frame locals: the secret is gone, the rest stays."""
    with serve_pipe(vault()) as proxy, pytest.raises(RpcError):
        proxy.open(door="front", token=LONG_SECRET, note="n")
    event = sentry_capture.event()
    assert event["exception"]["values"][0]["value"] == "door front refused [Filtered]; bag has 2 entries"
    assert event["exception"]["values"][0]["type"] == "LookupError"
    assert event["tags"]["app.echo"] == "[Filtered]"
    assert event["extra"]["app.extra"] == {"nested": ["[Filtered]", "kept"]}
    crumb = next(c for c in event["breadcrumbs"]["values"] if c.get("message", "").startswith("opening"))
    assert crumb["message"] == "opening front with [Filtered]"
    assert crumb["data"] == {"t": "[Filtered]"}
    # the server's own WARNING breadcrumb quotes the exception message: scrubbed too
    assert not any(LONG_SECRET in s for s in strings_in(sentry_capture.envelopes))
    frame = next(
        f for f in event["exception"]["values"][0]["stacktrace"]["frames"] if f["function"] == "open"
    )
    assert frame["vars"]["token"] == "[Filtered]"
    assert frame["vars"]["bag"] == {"token": "[Filtered]", "other": "'n'"}  # keys stay, the named entry goes
    assert frame["vars"]["door"] == "'front'"
    assert event["tags"]["rpc.method"] == "open"


def test_a_short_secret_is_replaced_only_where_a_whole_value_equals_it(sentry_capture: SentryCapture) -> None:
    """B6: token="ab" (below MIN_SCRUB_CHARS) is not cut out of prose; whole values equal to it are replaced."""
    with serve_pipe(vault()) as proxy, pytest.raises(RpcError):
        proxy.open(door="lab", token="ab", note="ab")  # note equals the secret: a recorded value, replaced
    event = sentry_capture.event()
    assert event["exception"]["values"][0]["value"] == "door lab refused ab; bag has 2 entries"
    assert event["tags"]["app.echo"] == "[Filtered]"
    assert event["extra"]["app.extra"] == {"nested": ["[Filtered]", "kept"]}
    frame = next(
        f for f in event["exception"]["values"][0]["stacktrace"]["frames"] if f["function"] == "open"
    )
    assert frame["vars"]["note"] == "[Filtered]"  # its value is "'ab'": the repr of the secret
    assert frame["vars"]["door"] == "'lab'"  # contains the secret, but is not equal to it


# attach_stacktrace (on by default in sentry-sdk 3) adds a stack after event processors ran:
# see test_a_stack_attached_after_the_processors_needs_redact_event
@pytest.mark.sentry_options(
    integrations=[LoggingIntegration(event_level=logging.ERROR)], attach_stacktrace=False
)
def test_a_secret_in_a_logged_error_is_scrubbed_from_the_logging_event(sentry_capture: SentryCapture) -> None:
    """B4: the implementation logs the secret at ERROR (its own event): the params and message are scrubbed."""
    with serve_pipe(vault()) as proxy, pytest.raises(RpcError):
        proxy.log_and_fail(door="d", token=LONG_SECRET)
    log_event = next(e for e in sentry_capture.events if e.get("logger") == "app.vault")
    assert log_event["logentry"]["params"] == ["d", "[Filtered]"]
    assert LONG_SECRET not in str(log_event.get("logentry"))
    # events and spans; not Sentry Logs ("log" items, on by default with this integration
    # on sentry-sdk 3): telemetry has no event processors, the docs say so
    assert not any(LONG_SECRET in s for s in strings_in(sentry_capture.events + sentry_capture.transactions))


def test_a_frame_variable_named_like_a_redacted_param_is_filtered_whatever_its_value(
    sentry_capture: SentryCapture,
) -> None:
    """B4: a local called like the redacted param is filtered even when it holds something else."""

    class Locker(Protocol):
        def unlock(self, api_key: str) -> int: ...

    class LockerImpl:
        def unlock(self, api_key: str) -> int:
            def inner() -> int:
                api_key = "derived-value"  # same name, another value
                raise ValueError(f"cannot unlock ({len(api_key)})")

            return inner()

    server = instrument_server_sentry(RpcServer(Locker, LockerImpl()), SentryConfig(tag_params=("x",)))
    with pytest.raises(ValueError):
        server.dispatch("unlock", api_key="k-1")
    frames = sentry_capture.event()["exception"]["values"][0]["stacktrace"]["frames"]
    inner = next(f for f in frames if f["function"] == "inner")
    assert inner["vars"]["api_key"] == "[Filtered]"


# -- bad input ----------------------------------------------------------------------------------------


def _returns_a_list(kwargs: Any) -> Any:
    return list(kwargs)


def _invents_a_key(kwargs: Any) -> Any:
    return {**kwargs, "injected": "x"}


def _raises(kwargs: Any) -> Any:
    raise RuntimeError("redactor bug")


@pytest.mark.parametrize(
    ("redactor", "complaint"),
    [
        (_raises, "failed"),
        (_returns_a_list, "not a mapping"),
        (_invents_a_key, "'injected'"),
    ],
    ids=["raises", "non-mapping", "unknown-keys"],
)
def test_a_misbehaving_redactor_fails_closed(
    sentry_capture: SentryCapture, caplog: pytest.LogCaptureFixture, redactor: Any, complaint: str
) -> None:
    """S23 B4 B1: nothing recorded for the call, one WARNING, the result and the one error event unchanged."""
    config = SentryConfig(
        record_params=True, tag_params=("door",), enable_performance=True, param_redactor=redactor
    )
    with (
        caplog.at_level("WARNING", logger="vgi_rpc.sentry"),
        serve_pipe(vault(config)) as proxy,
        pytest.raises(RpcError, match="refused"),
    ):
        proxy.open(door="frontdoor", token=LONG_SECRET)
    warnings = [r for r in caplog.records if r.name == "vgi_rpc.sentry"]
    assert len(warnings) == 1 and warnings[0].levelno == 30, warnings
    assert "param_redactor" in warnings[0].getMessage() and complaint in warnings[0].getMessage()
    event = sentry_capture.event()
    assert event["exception"]["values"][0]["type"] == "LookupError"
    assert "rpc.param.door" not in event["tags"]
    txn = sentry_capture.transaction()
    assert not any(k.startswith("rpc.param.") for k in txn["contexts"]["trace"]["data"])
    # fail closed: every param value counts as a secret
    assert not any(LONG_SECRET in s for s in strings_in(sentry_capture.envelopes))
    assert event["exception"]["values"][0]["value"] == "door [Filtered] refused [Filtered]; bag has 2 entries"


@pytest.mark.parametrize(
    "redactor", [_raises, _returns_a_list, _invents_a_key], ids=["raises", "non-mapping", "unknown-keys"]
)
def test_a_misbehaving_redactor_changes_no_result_and_no_event_but_the_params(
    sentry_capture: SentryCapture, caplog: pytest.LogCaptureFixture, redactor: Any
) -> None:
    """S23 B1 B6 (bad input): a successful call returns what it returns without the hook; a failed one's
    single event equals, but for the params, the event of the same call whose redactor behaves."""
    config = SentryConfig(
        record_params=True, tag_params=("a",), enable_performance=True, param_redactor=redactor
    )
    plain = RpcServer(Calculator, CalculatorImpl())
    server = instrument_server_sentry(RpcServer(Calculator, CalculatorImpl()), config)
    with caplog.at_level("WARNING", logger="vgi_rpc.sentry"), serve_pipe(server) as proxy:
        with serve_pipe(plain) as bare:
            assert proxy.add(a=2, b=40) == bare.add(a=2, b=40) == 42
        with pytest.raises(RpcError) as failed:
            proxy.divide(a=1.0, b=0.0)
    assert failed.value.error_type == "ZeroDivisionError"
    warnings = [r for r in caplog.records if r.name == "vgi_rpc.sentry"]
    assert [r.levelname for r in warnings] == ["WARNING", "WARNING"]  # one per call
    for txn in sentry_capture.transactions:
        assert not any(k.startswith("rpc.param.") for k in txn["contexts"]["trace"]["data"])
    event = sentry_capture.event()  # exactly one error event

    sentry_capture.clear()
    good = SentryConfig(record_params=True, tag_params=("a",), enable_performance=True)
    with (
        serve_pipe(instrument_server_sentry(RpcServer(Calculator, CalculatorImpl()), good)) as proxy,
        pytest.raises(RpcError),
    ):
        proxy.divide(a=1.0, b=0.0)
    baseline = sentry_capture.event()

    def shape(e: dict[str, Any]) -> dict[str, Any]:
        (exc,) = e["exception"]["values"]
        return {
            "type": exc["type"],
            "value": exc["value"],
            "transaction": e["transaction"],
            "rpc": {k: v for k, v in e["contexts"]["rpc"].items() if k != "server_id"},  # another server
            "tags": {k: v for k, v in e["tags"].items() if not k.startswith("rpc.param.")},
            "level": e["level"],
        }

    assert "rpc.param.a" in baseline["tags"] and "rpc.param.a" not in event["tags"]
    assert shape(event) == shape(baseline)
    assert event["contexts"]["rpc"]["server_id"] == server.server_id


def test_an_empty_secret_hides_nothing_and_damages_nothing(sentry_capture: SentryCapture) -> None:
    """B6: api_key="" is not recorded, and the empty string (inside every string) is never 'replaced'."""
    server = store(SentryConfig(record_params=True, tag_params=("order_id",), enable_performance=True))
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.checkout(order_id="o-1", api_key="")
    event = sentry_capture.event()
    assert event["exception"]["values"][0]["value"] == "order o-1 declined"
    assert "[Filtered]" not in event["exception"]["values"][0]["value"]
    assert event["tags"]["rpc.param.order_id"] == "o-1"
    data = sentry_capture.transaction()["contexts"]["trace"]["data"]
    assert "rpc.param.api_key" not in data and data["rpc.param.order_id"] == "o-1"
    impl = next(
        f for f in event["exception"]["values"][0]["stacktrace"]["frames"] if f["function"] == "checkout"
    )
    assert impl["vars"]["api_key"] == "[Filtered]"  # named like the param


def test_a_secret_equal_to_the_method_name_stays_in_the_names(sentry_capture: SentryCapture) -> None:
    """B6 (documented): the method name is structure; a secret spelling it is still cut out of free text."""
    server = store(SentryConfig(record_params=True, enable_performance=True))
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.checkout(order_id="checkout-7", api_key="checkout")
    event = sentry_capture.event()
    assert event["tags"]["rpc.method"] == "checkout"
    assert event["contexts"]["rpc"]["method"] == "checkout"
    assert event["transaction"] == "rpc checkout"
    assert event["exception"]["values"][0]["type"] == "CheckoutDeclined"
    assert event["exception"]["values"][0]["value"] == "order [Filtered]-7 declined"
    txn = sentry_capture.transaction()
    assert txn["transaction"] == "vgi_rpc/checkout"
    assert txn["contexts"]["trace"]["data"]["rpc.method"] == "checkout"
    assert txn["contexts"]["trace"]["data"]["rpc.param.order_id"] == "[Filtered]-7"  # a recorded value


# -- the property: any secret, any names ---------------------------------------------------------------

NEUTRAL = "\u24dd\u24d4\u24e4\u24e3\u24e1\u24d0\u24db-secret"  # a secret that occurs nowhere else
_REDACTED_WORDS = ("password", "token", "secret", "key", "authorization")
_ID_CHARS = st.characters(categories=("Ll", "Lu", "Lo", "Nd"))


def _is_name(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text) and not text.startswith("_")


def _is_tag_name(param: str) -> bool:
    return param.isascii()  # identifiers: then only A-Z a-z 0-9 _, which a tag key may hold


names = st.text(_ID_CHARS, min_size=1, max_size=12).filter(_is_name)
plain_names = names.filter(lambda n: default_redactor({n: 1}) != {} and n not in ("ctx", "self"))
secret_names = st.builds(
    lambda pre, word, upper, post: pre + (word.upper() if upper else word) + post,
    st.text(_ID_CHARS, max_size=5).filter(lambda t: t == "" or _is_name(t)),
    st.sampled_from(_REDACTED_WORDS),
    st.booleans(),
    st.text(_ID_CHARS, max_size=5).filter(lambda t: t == "" or t.isidentifier()),
)


def _service(method: str, secret_param: str, other_param: str, exc_name: str) -> RpcServer:
    """A Protocol built at run time: ``method(other_param: str, secret_param: str) -> int``, always failing."""
    error = type(exc_name, (Exception,), {})
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
        for p in (other_param, secret_param)
    ]

    def declared(self: Any, **kwargs: Any) -> int: ...

    declared.__signature__ = inspect.Signature(params, return_annotation=int)  # type: ignore[attr-defined]
    declared.__annotations__ = {other_param: str, secret_param: str, "return": int}

    def implementation(self: Any, **kwargs: Any) -> int:
        secret = kwargs[secret_param]
        held = {"value": secret, "other": kwargs[other_param]}  # locals holding the secret, in a dict
        logging.getLogger("app.generated").warning("about to fail with %s", secret)  # a breadcrumb
        sentry_sdk.set_tag("app.echo", secret)
        raise error(f"declined {kwargs[other_param]} with {secret} ({len(held)})")

    protocol = type("Generated", (Protocol,), {method: declared})
    impl = type("GeneratedImpl", (), {method: implementation})()
    # tag keys Sentry stores are ASCII (B8): a non-ASCII name in tag_params is a config error
    tagged = tuple(p for p in (other_param, secret_param) if _is_tag_name(p))
    config = SentryConfig(record_params=True, tag_params=tagged, enable_performance=True)
    return instrument_server_sentry(RpcServer(protocol, impl), config)


def _occurrences(data: Any, secret: str) -> int:
    forms = {secret, repr(secret)[1:-1]}
    return sum(s.count(form) for s in strings_in(data) for form in forms)


def _run(cap: SentryCapture, server: RpcServer, method: str, kwargs: dict[str, str]) -> list[dict[str, Any]]:
    cap.clear()
    with pytest.raises(Exception) as raised:
        server.dispatch(method, **kwargs)
    assert type(raised.value).__name__ != "RpcError"  # the implementation's own exception, unchanged
    envelopes = cap.envelopes
    assert cap.lost_events == [], cap.lost_events
    return envelopes


# sentry-sdk 3's span batcher thread draws jitter from the global `random` while
# hypothesis generates data, which hypothesis reports as a strategy using `random`
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    secret=st.text(min_size=1, max_size=64),
    method=names,
    secret_param=secret_names,
    other_param=plain_names,
    # no whitespace or control characters: which of those a tag keeps is test_sentry_relay.py's (B8)
    other_value=st.text(st.characters(exclude_categories=("Zs", "Zl", "Zp", "Cc")), max_size=12),
    exc_name=names,
)
def test_redaction_hides_any_secret_and_nothing_else(
    sentry_capture: SentryCapture,
    secret: str,
    method: str,
    secret_param: str,
    other_param: str,
    other_value: str,
    exc_name: str,
) -> None:
    """B6 B4 B1 S8 S10: any secret (1-64 chars of any Unicode), any names: the event arrives intact, the secret nowhere.

    "Nowhere" is measured against a second run of the same call with a neutral
    secret: the secret may occur no more often than it does when it is not passed
    at all (where it then is a coincidence of structure: a name, an SDK string).
    Volatile values (ids, timestamps) are normalised first, which also checks
    that every id kept its format.
    """
    assume(secret_param != other_param)
    assume(NEUTRAL not in secret and secret not in NEUTRAL and NEUTRAL not in other_value)
    server = _service(method, secret_param, other_param, exc_name)
    sent = _run(sentry_capture, server, method, {other_param: other_value, secret_param: secret})
    (event,) = [i["payload"] for e in sent for i in e["items"] if i["type"] == "event"]

    # the one event, intact
    assert HEX32.fullmatch(event["event_id"]) and HEX32.fullmatch(event["contexts"]["trace"]["trace_id"])
    assert HEX16.fullmatch(event["contexts"]["trace"]["span_id"])
    assert event["tags"]["rpc.method"] == method
    assert event["transaction"] == f"rpc {method}"
    assert event["contexts"]["rpc"] == {
        "method": method,
        "method_type": "unary",
        "service": "Generated",
        "server_id": server.server_id,
    }
    (exc,) = event["exception"]["values"]
    assert exc["type"] == exc_name
    tag_sent = other_value != "" and _is_tag_name(other_param)  # empty values are no tags
    assert (f"rpc.param.{other_param}" in event["tags"]) == tag_sent
    assert f"rpc.param.{secret_param}" not in event["tags"]
    frame = next(f for f in exc["stacktrace"]["frames"] if f["function"] == "implementation")
    assert frame["vars"]["kwargs"][secret_param] == "[Filtered]"  # named like the param
    (txn,) = sentry_capture.transactions
    assert txn["transaction"] == f"vgi_rpc/{method}"
    assert txn["contexts"]["trace"]["data"]["rpc.method"] == method
    assert f"rpc.param.{secret_param}" not in txn["contexts"]["trace"]["data"]
    assert f"rpc.param.{other_param}" in txn["contexts"]["trace"]["data"]

    if len(secret) >= MIN_SCRUB_CHARS:
        normalised = normalize(sent)
        baseline = normalize(
            _run(sentry_capture, server, method, {other_param: other_value, secret_param: NEUTRAL})
        )
        assert _occurrences(normalised, secret) <= _occurrences(baseline, secret), secret
        assert _occurrences(baseline, NEUTRAL) == 0  # the baseline's own secret is hidden too


@pytest.mark.sentry_options(attach_stacktrace=True)  # sentry-sdk 3's default; 2.x's is False
def test_a_stack_the_sdk_attaches_to_a_message_is_redacted_too(sentry_capture: SentryCapture) -> None:
    """B4: with attach_stacktrace, a message event captured during the call gets the stack's locals scrubbed.

    The SDK attaches that stack *after* event processors run, so the hook attaches
    it itself (the SDK then keeps it) and redacts it like any other.
    """

    class Notes(Protocol):
        def note(self, api_key: str, body: str) -> int: ...

    class NotesImpl:
        def note(self, api_key: str, body: str) -> int:
            held = [api_key]  # the secret in a local the name filter does not know
            sentry_sdk.capture_message(f"noted {body} ({len(held)})")
            return 1

    server = instrument_server_sentry(RpcServer(Notes, NotesImpl()), SentryConfig(tag_params=("body",)))
    assert server.dispatch("note", api_key=LONG_SECRET, body="b") == 1
    (event,) = sentry_capture.events
    frames = event["threads"]["values"][0]["stacktrace"]["frames"]
    impl = next(f for f in frames if f["function"] == "note" and "held" in (f.get("vars") or {}))
    assert impl["vars"]["api_key"] == "[Filtered]" and impl["vars"]["held"] == ["[Filtered]"]
    assert not any(LONG_SECRET in s for s in strings_in(sentry_capture.envelopes))
    assert event["tags"]["rpc.param.body"] == "b"
