"""Reading Sentry envelopes on either SDK generation, and a transport that fails on purpose.

For the tests that run the real ``sentry_sdk`` with ``vgi_rpc.testing``'s capture;
nothing here patches the SDK.

The suites run on sentry-sdk 3.x (``make test``) and 2.x (``make test-sdk2``, ``make test-sdk-floor``).
Error events are the same on both; what the SDK does with *spans* is not:

* 2.x sends transactions: the root span's data is ``contexts.trace.data``, and
  the transaction has its own ``tags``, ``user`` and ``request``;
  a failed span's status is ``internal_error``.
* 3.x streams spans (``span`` items, ``version: 2``); ``sentry_capture.transactions``
  shows each segment as a transaction-shaped view whose ``contexts.trace.data`` is
  the span's attributes, and whose ``tags`` and ``user`` the kit reads from them
  (the request is attributes only); a failed span's status is ``error``.

On both, a root carries the ``rpc`` context's facts as span data (``rpc.*``,
``rpc.server_id``); ``contexts.rpc`` is on events only.

The helpers below read those facts from either shape, so a test states each
promise once. None of them hides a difference the docs do not describe.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from vgi_rpc import _sentry_sdk

HEX32 = re.compile(r"^[0-9a-f]{32}$")


class RaisingTransport(Transport):
    """A real Transport whose every send fails while ``broken`` is set.

    Tests clear ``broken`` before the SDK shuts down: the SDK's own ``close()`` (not
    an RPC call) flushes session updates without guarding the transport.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.broken = True

    def capture_envelope(self, envelope: Envelope) -> None:
        if self.broken:
            self.attempts += 1
            raise ConnectionError("sentry is down")


STREAMING = _sentry_sdk.GENERATION == 3
"""Whether the default ``sentry_capture`` streams spans (sentry-sdk 3)."""

FAILED = "error" if STREAMING else "internal_error"
"""The status of a failed call's span."""

GENERATION = _sentry_sdk.GENERATION


def trace_data(txn: dict[str, Any]) -> dict[str, Any]:
    """The root span's data (2.x) or attributes (3.x) of a transaction (view)."""
    data: dict[str, Any] = txn["contexts"]["trace"].get("data", {})
    return data


def rpc_data(txn_or_data: dict[str, Any], *, server_id: bool = False) -> dict[str, Any]:
    """The ``rpc.*`` span data, without ``rpc.server_id`` (unless *server_id*)."""
    data = trace_data(txn_or_data) if "contexts" in txn_or_data else txn_or_data
    return {k: v for k, v in data.items() if k.startswith("rpc.") and (server_id or k != "rpc.server_id")}


def root_server_id(txn: dict[str, Any]) -> str | None:
    """The ``rpc`` context's server id on a root: span data ``rpc.server_id`` (events carry ``contexts.rpc``)."""
    server_id: str | None = trace_data(txn).get("rpc.server_id")
    return server_id


def has_rpc_context(txn: dict[str, Any]) -> bool:
    """Whether the root carries the ``rpc`` context's facts: span data ``rpc.server_id``, no ``contexts.rpc``."""
    assert "rpc" not in (txn.get("contexts") or {}), "transactions carry span data, not contexts.rpc"
    return "rpc.server_id" in trace_data(txn)


def request_url(txn: dict[str, Any]) -> str:
    """The HTTP request URL of a WSGI root: 2.x ``request.url``; 3.x the ``url.full`` attribute."""
    if not txn.get("streamed"):
        url: str = txn["request"]["url"]
        return url
    full: str = trace_data(txn)["url.full"]
    return full


def http_status(txn: dict[str, Any]) -> str:
    """The HTTP status the WSGI integration recorded (2.x tag ``http.status_code``; 3.x attribute)."""
    if not txn.get("streamed"):
        status: str = txn["tags"]["http.status_code"]
        return status
    return str(trace_data(txn)["http.response.status_code"])


@contextlib.contextmanager
def user_root(name: str, op: str = "test") -> Iterator[Any]:
    """A root span the *user* starts around calls: ``start_transaction`` (2.x), ``start_span`` (3.x)."""
    if STREAMING:
        from sentry_sdk.traces import start_span

        with start_span(name=name, attributes={"sentry.op": op}) as span:
            yield span
    else:
        with sentry_sdk.start_transaction(name=name, op=op) as txn:  # type: ignore[attr-defined,unused-ignore]
            yield txn


def hook_user(event: dict[str, Any]) -> dict[str, str]:
    """An event's user without ``ip_address``: the WSGI integration adds that one itself.

    sentry-sdk 3 collects the client IP by default (``data_collection.user_info``),
    2.x only with ``send_default_pii``; the hook never sets it.
    """
    return {k: v for k, v in (event.get("user") or {}).items() if k != "ip_address"}


def span_status(span: dict[str, Any]) -> str | None:
    """A child span's status: ``status``, or the ``status`` tag where sentry-sdk before 2.4x put it."""
    status: str | None = span.get("status", (span.get("tags") or {}).get("status"))
    return status


def sdk2_logging() -> list[Any]:
    """Sentry's logging integration as sentry-sdk 2 enables it by default, on either generation.

    Breadcrumbs from INFO, an error event from ERROR, no Sentry Logs. sentry-sdk 3
    no longer enables it by default (and its ``level`` now means Sentry Logs), so
    the suites add it there: "exactly one error event per failed call" (B1) is only
    worth proving with the integration that could send a second one.
    Returns ``[]`` on 2.x, where it already is a default integration.
    """
    import logging

    from sentry_sdk.integrations.logging import LoggingIntegration

    if not STREAMING:
        return []
    return [LoggingIntegration(level=None, event_level=logging.ERROR, breadcrumb_level=logging.INFO)]


@contextlib.contextmanager
def user_span(name: str, op: str) -> Iterator[Any]:
    """A child span the user starts: ``start_span(op=, name=)`` (2.x), ``traces.start_span`` (3.x)."""
    if STREAMING:
        from sentry_sdk.traces import start_span

        with start_span(name=name, attributes={"sentry.op": op}) as span:
            yield span
    else:
        with sentry_sdk.start_span(op=op, name=name) as span:
            yield span


def set_span_data(span: Any, key: str, value: Any) -> None:
    """``span.set_data`` (2.x) or ``span.set_attribute`` (3.x)."""
    if STREAMING:
        span.set_attribute(key, value)
    else:
        span.set_data(key, value)


TRACE_ITEM = "span" if STREAMING else "transaction"
"""The envelope item type a finished root span travels in."""
