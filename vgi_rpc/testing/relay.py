"""What Sentry would *store*: captured payloads run through Relay's own normaliser.

What the SDK sends is not what Sentry keeps.  Sentry's ingestion (Relay)
normalises every event: it trims values over its length limits, marks
values of the wrong shape invalid and removes them, drops attributes its
schema does not know, and records each change in the event's ``_meta``.
``sentry-relay`` (extra ``vgi-rpc[relay]``) ships that normaliser -- the
Rust code Sentry runs -- as Python bindings; this module drives it.

Most users never import this module: the methods on
:class:`~vgi_rpc.testing.SentryCapture` call it::

    def test_what_sentry_stores(sentry_capture):
        ...  # the code under test
        sentry_capture.assert_ingestible()           # nothing trimmed, dropped or invalid
        (stored,) = sentry_capture.ingested("event")  # the event as Sentry would store it
        scrubbed = sentry_capture.scrubbed("transaction")  # ... after server-side data scrubbing

Caveats:

* **One pinned Relay.** Relay's limits change between versions; the extra
  pins the ``sentry-relay`` version our own suite is tested against
  (:data:`TESTED_RELAY_VERSION`).  A different installed version works but
  may disagree with sentry.io at the margins.
* **Events and transactions only.** The bindings expose the event
  normaliser, which handles ``event`` and ``transaction`` items.  Logs,
  sessions, standalone spans, check-ins and attachments are not checked.
  sentry-sdk 3 sends every span as a ``span`` item (span streaming), so there
  only error events can be checked: :func:`assert_ingestible` warns
  (:class:`SpansNotCheckedWarning`) naming the span items it could not check,
  or fails with ``spans="fail"``, and asking :func:`ingest` for transactions
  when only span items were captured raises ``ValueError`` saying so -- never
  an empty, silent answer.
* **What is compared.** :func:`findings` reports every remark Relay adds to
  ``_meta`` (remarks the SDK itself sent, e.g. its ``[Filtered]``
  Authorization header, are not Relay's and are left out) *and* every value
  the SDK sent that is silently missing or different in the stored event.
  Relay's pure re-shaping is not a change: tags and headers become
  ``[key, value]`` pairs, ISO timestamps become numbers, ``null``/empty
  values vanish, ``server_name`` becomes a tag, unknown ``user`` keys move
  to ``user.data`` and a ``message`` without parameters becomes
  ``logentry.formatted``.  Additions (``project``, ``received``, context ``type``,
  a trace ``status``...) are never findings.
* **Ignored by default** (:data:`DEFAULT_IGNORE`): local variables of stack
  frames (reprs the SDK collects; Relay caps each frame's ``vars`` to a few
  kilobytes, so a long repr of any local is routinely clipped) and
  ``spans[].same_process_as_parent`` (an SDK 2.x field Relay's schema does
  not have).  Pass ``ignore=()`` to see them.
* **Relay's side effect.** Importing ``sentry_relay`` sets the process-wide
  ``RUST_BACKTRACE=1``; this module puts the previous value back right after
  the import.
* **Not the whole pipeline.** Rate limits, inbound filters, quotas, grouping
  and span extraction (the Trace Explorer's attribute store, with limits of
  its own) are not modelled.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from vgi_rpc._extras import require
from vgi_rpc.testing._ingest_diff import DEFAULT_IGNORE, Finding, findings, render

__all__ = [
    "DEFAULT_IGNORE",
    "NORMALIZER_OPTIONS",
    "SUPPORTED_ITEM_TYPES",
    "TESTED_RELAY_VERSION",
    "DataScrubbing",
    "Finding",
    "IngestionRejected",
    "ScrubbingOption",
    "SpansNotCheckedWarning",
    "assert_ingestible",
    "check_items",
    "findings",
    "ingest",
    "normalize",
    "render",
    "scrub",
    "scrubbing_of",
]

TESTED_RELAY_VERSION = "0.10.1"
"""The ``sentry-relay`` version the ``relay`` extra pins and our suite is tested against."""

SUPPORTED_ITEM_TYPES = ("event", "transaction")
"""Envelope item types Relay's event normaliser accepts."""

NORMALIZER_OPTIONS: Mapping[str, Any] = {
    "project_id": 1,
    "enable_trimming": True,
    "remove_other": True,
    "normalize_user_agent": True,
    "max_secs_in_past": 30 * 24 * 3600,
    "max_secs_in_future": 60,
}
"""``StoreNormalizer`` options, as Sentry's event store uses them.

Trimming on (Relay's length and depth limits), unknown attributes removed,
timestamps more than 30 days old or a minute in the future flagged (so a test
running under a frozen clock sees what Sentry would do to its timestamps).
"""

_SPANS_UNCHECKABLE = (
    "sentry-sdk 3 (span streaming) sends spans as 'span' items, which Relay's Python "
    "normaliser does not take, so their attributes are not checked against Relay"
)

SpansPolicy = Literal["warn", "fail", "ignore"]
"""What :func:`assert_ingestible` does about ``span`` items it cannot check."""


class SpansNotCheckedWarning(UserWarning):
    """:func:`assert_ingestible` passed on what it could check, but ``span`` items went unchecked.

    Relay's Python normaliser takes ``event`` and ``transaction`` items; with
    span streaming (sentry-sdk 3, or 2.x with ``trace_lifecycle="stream"``) the
    spans travel as ``span`` items instead.  Pass ``spans="fail"`` to make that
    a failure, ``spans="ignore"`` to accept it silently.
    """


def _relay() -> ModuleType:
    """``sentry_relay``, imported on first use, with its ``RUST_BACKTRACE`` side effect undone."""
    before = os.environ.get("RUST_BACKTRACE")
    try:
        require("checking what Sentry would store (Relay's normaliser)", "relay")
        import sentry_relay
    finally:
        if before is None:
            os.environ.pop("RUST_BACKTRACE", None)
        else:
            os.environ["RUST_BACKTRACE"] = before
    return sentry_relay


def _relay_message(exc: BaseException) -> str:
    """Relay's own message, without the Rust backtrace the bindings append."""
    message = getattr(exc, "message", None)
    return str(message) if message is not None else str(exc).split("\n\nstacktrace:", 1)[0]


class IngestionRejected(AssertionError):
    """Relay rejects a payload outright (it would not be stored at all).

    The message is Relay's own (e.g. ``invalid transaction event: start_timestamp
    hard-required for transaction events``); :attr:`relay_error` is the error
    type's name in ``sentry_relay``.  Raised from ``None``: the bindings' frames
    are not part of the story.
    """

    def __init__(self, where: str, relay_error: str, message: str) -> None:
        """Build the error for the item described by *where*."""
        super().__init__(f"Relay rejects {where} outright: {message} ({relay_error})")
        self.where = where
        self.relay_error = relay_error
        self.relay_message = message


# -- normalising and scrubbing -----------------------------------------------------------


_normalizer_cache: dict[str, Any] = {}


def _normalizer(options: Mapping[str, Any] | None) -> Any:
    key = json.dumps(dict(options if options is not None else NORMALIZER_OPTIONS), sort_keys=True)
    normalizer = _normalizer_cache.get(key)
    if normalizer is None:
        relay = _relay()
        try:
            normalizer = relay.StoreNormalizer(**json.loads(key))
        except relay.RelayError as exc:
            raise ValueError(f"Relay refuses these normaliser options: {_relay_message(exc)}") from None
        _normalizer_cache[key] = normalizer
    return normalizer


def normalize(
    payload: Any, *, where: str = "the payload", options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """*payload* (an ``event`` or ``transaction`` item's payload) as Relay's normaliser stores it.

    The result is Relay's shape: tags and headers as ``[key, value]`` pairs,
    timestamps as numbers, ``_meta`` holding every change Relay made (merged
    with the ``_meta`` the SDK sent).  *payload* is not modified.

    Args:
        payload: The JSON payload, as :class:`~vgi_rpc.testing.SentryCapture` holds it.
        where: How to name the payload in an :class:`IngestionRejected` message.
        options: ``StoreNormalizer`` options instead of :data:`NORMALIZER_OPTIONS`.

    Raises:
        IngestionRejected: Relay rejects the payload outright.
        ModuleNotFoundError: the ``relay`` extra is not installed (the message says so).
    """
    relay = _relay()
    normalizer = _normalizer(options)
    try:
        stored = normalizer.normalize_event(payload)
    except relay.RelayError as exc:
        raise IngestionRejected(where, type(exc).__name__, _relay_message(exc)) from None
    if not isinstance(stored, dict):  # pragma: no cover - Relay always answers with an object
        raise IngestionRejected(where, "unexpected answer", repr(stored)[:200])
    return stored


@dataclass(frozen=True)
class DataScrubbing:
    """A Sentry project's server-side data scrubbing settings, as on its "Security & Privacy" page.

    The defaults are Sentry's defaults for a new project: the data scrubber on,
    its default scrubbers on, IP addresses kept.

    Attributes:
        scrub_data: "Data Scrubber": apply the rules below at all.
        scrub_defaults: "Use Default Scrubbers": passwords, secrets, tokens,
            credit cards, social security numbers, IBANs... (what exactly is
            Relay's business; ``tests`` in this repository pin what it does to a
            free-text param).
        scrub_ip_addresses: "Prevent Storing of IP Addresses".
        sensitive_fields: "Additional Sensitive Fields": key names whose values
            are always scrubbed.
        safe_fields: "Safe Fields": key names never scrubbed.
        advanced: "Advanced Data Scrubbing" rules: a Relay PII config
            (``{"rules": {...}, "applications": {...}}``), applied before the
            settings above, as Relay does.  Validated by Relay; an invalid one
            raises ``ValueError`` with Relay's message.
    """

    scrub_data: bool = True
    scrub_defaults: bool = True
    scrub_ip_addresses: bool = False
    sensitive_fields: Sequence[str] = ()
    safe_fields: Sequence[str] = ()
    advanced: Mapping[str, Any] | None = None

    def pii_configs(self) -> list[dict[str, Any]]:
        """The Relay PII configs these settings amount to, in the order Relay applies them."""
        relay = _relay()
        configs: list[dict[str, Any]] = []
        if self.advanced is not None:
            text = json.dumps(dict(self.advanced))
            try:
                relay.validate_pii_config(text)
            except (ValueError, relay.RelayError) as exc:
                raise ValueError(
                    f"DataScrubbing.advanced is not a valid Sentry PII config: {_relay_message(exc)}"
                ) from None
            configs.append(json.loads(text))
        settings = {
            "scrubData": self.scrub_data,
            "scrubDefaults": self.scrub_defaults,
            "scrubIpAddresses": self.scrub_ip_addresses,
            "sensitiveFields": list(self.sensitive_fields),
            "excludeFields": list(self.safe_fields),
        }
        converted = relay.convert_datascrubbing_config(settings)
        if converted:
            configs.append(converted)
        return configs


ScrubbingOption = DataScrubbing | Mapping[str, Any] | bool | None
"""``data_scrubbing=``: ``None``/``False`` none, ``True`` Sentry's defaults, a
:class:`DataScrubbing`, or a mapping (Advanced Data Scrubbing rules on top of the defaults)."""


def scrubbing_of(option: ScrubbingOption) -> DataScrubbing | None:
    """The :class:`DataScrubbing` an option means (see :data:`ScrubbingOption`)."""
    if option is None or option is False:
        return None
    if option is True:
        return DataScrubbing()
    if isinstance(option, DataScrubbing):
        return option
    if isinstance(option, Mapping):
        return DataScrubbing(advanced=option)
    raise TypeError(
        f"data_scrubbing must be True, False/None, a DataScrubbing or a PII config mapping, got {option!r}"
    )


def scrub(stored: Mapping[str, Any], scrubbing: ScrubbingOption = True) -> dict[str, Any]:
    """*stored* (a :func:`normalize` result) after Sentry's server-side data scrubbing.

    Runs Relay's ``pii_strip_event`` with each of the settings' PII configs.
    Scrubbed values are replaced (``[Filtered]``, ``[email]``...) and each
    replacement is recorded in ``_meta`` with the rule that made it.
    """
    settings = scrubbing_of(scrubbing)
    result = dict(stored)
    if settings is None:
        return result
    relay = _relay()
    for config in settings.pii_configs():
        try:
            result = relay.pii_strip_event(config, result)
        except relay.RelayError as exc:
            raise ValueError(f"Relay could not apply the scrubbing config: {_relay_message(exc)}") from None
    return result


def check_items(
    items: Iterable[tuple[str, str, Any]], *, ignore: Iterable[str] | None = None
) -> tuple[int, list[Finding]]:
    """Normalise each ``(where, item_type, payload)`` and collect its findings.

    Items of types Relay's normaliser does not take (``span``, ``log``...) are
    skipped.  Returns how many were checked and every finding (a rejected
    payload is one ``rejected`` finding with Relay's message).
    """
    ignore_list = None if ignore is None else list(ignore)
    checked = 0
    out: list[Finding] = []
    for where, item_type, payload in items:
        if item_type not in SUPPORTED_ITEM_TYPES:
            continue
        checked += 1
        try:
            stored = normalize(payload, where=where)
        except IngestionRejected as exc:
            out.append(Finding(where, render(()), "rejected", exc.relay_message, exc.relay_error))
            continue
        out.extend(findings(payload, stored, where=where, ignore=ignore_list))
    return checked, out


def assert_ingestible(
    items: Iterable[tuple[str, str, Any]],
    *,
    ignore: Iterable[str] | None = None,
    describe: Callable[[], str] | None = None,
    spans: SpansPolicy = "warn",
) -> None:
    """Fail, one line per field, unless Relay would store every item exactly as sent.

    ``span`` items (span streaming) cannot be checked: with ``spans="warn"``
    (the default) a pass on the rest comes with a :class:`SpansNotCheckedWarning`
    naming how many went unchecked; ``spans="fail"`` fails instead;
    ``spans="ignore"`` says nothing.

    Raises:
        AssertionError: listing item, field path, what Relay does and Relay's
            remark for every :class:`Finding`; also when there was no
            ``event`` or ``transaction`` item to check at all (a vacuous pass
            hides a test that captured nothing), and, with ``spans="fail"``,
            when span items went unchecked.
        ValueError: *spans* is not ``"warn"``, ``"fail"`` or ``"ignore"``.
    """
    __tracebackhide__ = True
    _relay()  # a missing extra first, whatever was captured
    if spans not in ("warn", "fail", "ignore"):
        raise ValueError(f"assert_ingestible(spans=...) takes 'warn', 'fail' or 'ignore', not {spans!r}")
    listed = list(items)
    unchecked = sum(1 for _, item_type, _ in listed if item_type == "span")
    checked, found = check_items(listed, ignore=ignore)
    captured = f"\ncaptured:\n{describe()}" if describe is not None else ""
    if checked == 0:
        why = f" ({unchecked} 'span' item(s) were: {_SPANS_UNCHECKABLE})" if unchecked else ""
        raise AssertionError(
            "assert_ingestible(): nothing to check -- no 'event' or 'transaction' item was captured"
            f"{why}{captured}"
        )
    if found:
        lines = "\n".join(f"  {f}" for f in found)
        raise AssertionError(
            f"Sentry's ingestion (Relay {_relay_version()}) would not store {len(found)} field(s) as sent:\n"
            f"{lines}{captured}"
        )
    if unchecked and spans != "ignore":
        message = (
            f"assert_ingestible(): checked {checked} event/transaction item(s); "
            f"{unchecked} 'span' item(s) not checked: {_SPANS_UNCHECKABLE}"
        )
        if spans == "fail":
            raise AssertionError(f"{message}{captured}")
        warnings.warn(message, SpansNotCheckedWarning, stacklevel=3)


def _relay_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("sentry-relay")
    except metadata.PackageNotFoundError:  # pragma: no cover - imported, so installed
        return "?"


def ingest(
    items: Iterable[tuple[str, str, Any]], item_type: str, data_scrubbing: ScrubbingOption = None
) -> list[dict[str, Any]]:
    """What :meth:`SentryCapture.ingested <vgi_rpc.testing.SentryCapture.ingested>` returns.

    *items* are ``(where, item_type, payload)``; those of *item_type* are
    normalised (and scrubbed, when *data_scrubbing* says so), in order.

    Raises:
        ValueError: *item_type* is not one Relay's normaliser takes, or it is
            ``"transaction"`` and only ``span`` items (span streaming) carry
            the spans -- an empty list would read as "nothing was sent".
        IngestionRejected: Relay rejects one of the payloads outright.
    """
    __tracebackhide__ = True
    _relay()  # a missing extra first, whatever was captured
    if item_type not in SUPPORTED_ITEM_TYPES:
        why = f" ({_SPANS_UNCHECKABLE})" if item_type == "span" else ""
        raise ValueError(
            f"Relay's event normaliser takes {' and '.join(map(repr, SUPPORTED_ITEM_TYPES))} items, "
            f"not {item_type!r}{why}"
        )
    settings = scrubbing_of(data_scrubbing)
    listed = list(items)
    kinds = [kind for _, kind, _ in listed]
    if item_type == "transaction" and "span" in kinds and "transaction" not in kinds:
        raise ValueError(
            f"no 'transaction' item to normalise, but {kinds.count('span')} 'span' item(s) were captured: "
            f"{_SPANS_UNCHECKABLE}; only 'event' items can be checked here"
        )
    out: list[dict[str, Any]] = []
    for where, kind, payload in listed:
        if kind != item_type:
            continue
        stored = normalize(payload, where=where)
        out.append(scrub(stored, settings) if settings is not None else stored)
    return out
