"""Test your Sentry instrumentation against the real SDK, with nothing sent anywhere.

The public face is :func:`sentry_capture`, available two ways:

* as a **pytest fixture** (registered automatically by the ``pytest11`` entry
  point when ``vgi_rpc`` is installed -- no ``conftest.py`` needed)::

      def test_checkout_reports_errors(sentry_capture):
          client.call_that_fails()
          event = sentry_capture.event(method="checkout")
          assert event["tags"]["rpc.method"] == "checkout"

* as a **context manager**, taking any ``sentry_sdk.init`` option::

      with sentry_capture(environment="staging", attach_stacktrace=True) as cap:
          ...
      assert cap.events == []

Inside, the real ``sentry_sdk`` is initialised with an
:class:`~vgi_rpc.testing.fake_transport.InMemoryTransport`
(``traces_sample_rate=1.0``, default integrations on, a fixed fake DSN on the
reserved ``.invalid`` domain, a fixed ``release``) against a *fresh* global, isolation and current
scope.  On exit the capture's client is flushed and closed, and the scopes and
client that were active before are put back, so a test using it changes
nothing for the next test -- and a client some earlier test installed with
``sentry_sdk.init`` receives nothing from this one.

Everything read from a :class:`SentryCapture` is plain JSON data (dicts, lists,
strings, numbers) and is read *after* a flush.

Caveats:

* **Threads.** Threads started inside the capture report to it while it is
  active; join them before you read (a flush cannot wait for your threads).
  A thread still running after the capture exits reports to whatever client
  was restored (usually none).
* **The SDK's background machinery.** The in-memory transport is synchronous,
  so error events and transactions are recorded before the SDK call returns.
  Logs, metrics and session aggregates are batched by SDK worker threads;
  every accessor calls :meth:`SentryCapture.flush` first, which drains them.
* **``before_send`` / ``before_send_transaction``** (pass them as options) run
  before the transport: an event they drop is *not* in ``envelopes``; the
  SDK reports it in :attr:`SentryCapture.lost_events` instead.  What you see is
  what would have been sent.
* **Calling ``sentry_sdk.init`` inside a capture** replaces its client: later
  events go to the new client, not to the capture (the failure messages say
  so).  The extra client is closed when the capture exits.
* **Integrations** are installed process-wide by the SDK, once, and stay
  installed after the capture; with no active client they do nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    import sentry_sdk

    from vgi_rpc.testing.fake_transport import InMemoryTransport, envelope_to_dict
    from vgi_rpc.testing.relay import ScrubbingOption, SpansPolicy

__all__ = [
    "DEFAULT_DSN",
    "DEFAULT_RELEASE",
    "InMemoryTransport",
    "SentryCapture",
    "envelope_to_dict",
    "sentry_capture",
]

#: The DSN a capture uses unless told otherwise.  ``.invalid`` is reserved
#: (RFC 2606) and never resolves; the in-memory transport never connects anyway.
DEFAULT_DSN = "https://public@sentry.invalid/1"

#: The ``release`` a capture uses unless told otherwise.  Left unset, the SDK
#: derives one from the machine -- ``SENTRY_RELEASE``, the git commit of the
#: checkout, CI variables -- and sends session updates only where it finds one,
#: so the same test would send different envelopes in a git checkout and in an
#: unpacked package.
DEFAULT_RELEASE = "sentry-capture"

_FLUSH_TIMEOUT = 2.0


def __getattr__(name: str) -> Any:
    # ``sentry_sdk`` is imported only when a capture is used: the pytest plugin
    # imports this package in every test session, and importing Sentry there
    # would change what ``"sentry_sdk" in sys.modules`` means for the code under test.
    if name in ("InMemoryTransport", "envelope_to_dict"):
        from vgi_rpc.testing import fake_transport

        return getattr(fake_transport, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SentryCapture:
    """What one :func:`sentry_capture` recorded; every accessor returns plain data.

    While the capture is active each accessor flushes the SDK first; after it
    exits, the recorded data stays readable.  Returned lists are copies:
    mutating them does not change the capture.
    """

    def __init__(self, transport: InMemoryTransport, init_options: Mapping[str, Any] | None = None) -> None:
        """Wrap ``transport``; :func:`sentry_capture` builds this, you normally don't."""
        self.transport = transport
        self.client: sentry_sdk.Client | None = None
        #: The ``sentry_sdk.init`` options the capture was *given* (marker, ini option,
        #: ``sentry_options`` fixture, keyword arguments) -- not the capture's defaults.
        self.init_options: Mapping[str, Any] = MappingProxyType(dict(init_options or {}))
        self._active = False

    # -- lifecycle -------------------------------------------------------------------

    def flush(self, timeout: float = _FLUSH_TIMEOUT) -> None:
        """Drain the SDK's batchers into the transport (no-op once the capture has exited)."""
        if self._active and self.client is not None:
            self.client.flush(timeout=timeout)
            _wait_for_batcher_threads(self.client, timeout)

    def clear(self) -> None:
        """Flush, then forget everything captured so far (the capture stays active)."""
        self.flush()
        self.transport.clear()

    @property
    def active(self) -> bool:
        """Whether the capture's client is still installed."""
        return self._active

    # -- raw data --------------------------------------------------------------------

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        """Every envelope: ``{"headers": {...}, "items": [{"type", "headers", "payload"}]}``."""
        self.flush()
        return self.transport.envelopes

    def items(self, item_type: str | None = None) -> list[dict[str, Any]]:
        """Every envelope item (optionally only those of ``item_type``), in order."""
        return [
            item
            for envelope in self.envelopes
            for item in envelope["items"]
            if item_type is None or item["type"] == item_type
        ]

    def payloads(self, item_type: str) -> list[Any]:
        """The payloads of every item of ``item_type`` (e.g. ``"log"``, ``"sessions"``)."""
        return [item["payload"] for item in self.items(item_type)]

    @property
    def lost_events(self) -> list[dict[str, Any]]:
        """Events the SDK discarded before the transport (``before_send``, sampling...)."""
        self.flush()
        return self.transport.lost_events

    # -- events and transactions -----------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        """Error (and message) events: payloads of ``event`` items, in capture order."""
        return self.payloads("event")

    @property
    def transactions(self) -> list[dict[str, Any]]:
        """Transactions, in capture order: ``transaction`` items, then streamed segments.

        With span streaming (sentry-sdk 3, or 2.x with ``trace_lifecycle="stream"``)
        there are no transaction events: spans travel as ``span`` items. Each
        *segment* span (``is_segment``) then appears here as a **view** shaped like a
        transaction event, so the same assertions work on both generations:
        ``transaction`` is the segment's name, ``transaction_info.source`` its
        ``sentry.segment.name.source``, ``contexts.trace`` holds its ids, ``op``
        (``sentry.op``), ``status``, ``origin`` and ``data`` (every attribute,
        unwrapped from ``{"value", "type"}``), and ``spans`` its child spans in the
        same shape (``description`` is the name). The view also carries
        ``"streamed": True`` and the segment item as sent under ``"span_item"``.
        What streaming does not have is not invented: a view has no ``tags``,
        ``user`` or ``request`` (those are attributes there), and failed spans
        have the status ``"error"``.
        """
        return self.payloads("transaction") + _segment_views(self.payloads("span"))

    @property
    def spans(self) -> list[dict[str, Any]]:
        """Every span of every transaction, flattened, root spans included.

        Each entry is the span's own dict plus ``"transaction"`` (the name of
        the transaction it belongs to) and ``"is_root"``.  The root span is
        rebuilt from the transaction's ``contexts.trace`` (``op``,
        ``span_id``, ``parent_span_id``, ``trace_id``, ``status``, ``data``,
        ``origin``), with ``description`` set to the transaction name and the
        transaction's timestamps.  Spans sent as standalone ``span`` items
        (span streaming) follow, as sent, with ``"transaction"`` taken from
        their ``sentry.segment.name`` attribute and ``"is_root"`` from
        ``is_segment``; ``op``, ``description`` and ``data`` are added when
        absent (from ``sentry.op``, the name and the unwrapped attributes), so
        ``span["data"]["rpc.method"]`` reads the same on both generations.
        """
        out: list[dict[str, Any]] = []
        for txn in self.payloads("transaction"):
            name = txn.get("transaction")
            trace = dict((txn.get("contexts") or {}).get("trace") or {})
            root = {k: v for k, v in trace.items() if k != "type"}
            root["description"] = name
            for key in ("start_timestamp", "timestamp"):
                if key in txn:
                    root[key] = txn[key]
            root["transaction"] = name
            root["is_root"] = True
            out.append(root)
            for span in txn.get("spans") or []:
                out.append({**span, "transaction": name, "is_root": False})
        for span in _span_items(self.payloads("span")):
            attributes = _attributes(span)
            entry = {
                **span,
                "transaction": attributes.get("sentry.segment.name"),
                "is_root": bool(span.get("is_segment")),
            }
            entry.setdefault("op", attributes.get("sentry.op"))
            entry.setdefault("description", span.get("name"))
            entry.setdefault("data", attributes)
            out.append(entry)
        return out

    def events_for(self, method: str) -> list[dict[str, Any]]:
        """Error events whose ``tags["rpc.method"]`` is ``method``."""
        return [e for e in self.events if _tag(e, "rpc.method") == method]

    def transactions_for(self, method: str) -> list[dict[str, Any]]:
        """Transactions whose ``tags["rpc.method"]`` or root span data ``rpc.method`` is ``method``."""
        return [t for t in self.transactions if _method_of_transaction(t) == method]

    def event(self, method: str | None = None) -> dict[str, Any]:
        """The single error event (for ``method``, if given).

        Raises:
            AssertionError: if there is not exactly one; the message lists
                everything that was captured.
        """
        __tracebackhide__ = True  # pytest: show the caller's line, not ours
        found = self.events if method is None else self.events_for(method)
        return self._single(found, "error event", method)

    def transaction(self, method: str | None = None) -> dict[str, Any]:
        """The single transaction (for ``method``, if given).

        Raises:
            AssertionError: if there is not exactly one; the message lists
                everything that was captured.
        """
        __tracebackhide__ = True  # pytest: show the caller's line, not ours
        found = self.transactions if method is None else self.transactions_for(method)
        return self._single(found, "transaction", method)

    def assert_no_events(self) -> None:
        """Fail (listing what was captured) if any error event was captured."""
        __tracebackhide__ = True  # pytest: show the caller's line, not ours
        if self.events:
            raise AssertionError(f"expected no error events, but captured:\n{self.describe()}")

    # -- what Sentry would store (Relay; extra ``relay``) ------------------------------

    def ingested(
        self, item_type: str = "event", *, data_scrubbing: ScrubbingOption = None
    ) -> list[dict[str, Any]]:
        """Payloads of ``item_type`` as Sentry's ingestion (Relay's normaliser) would store them.

        ``item_type`` is ``"event"`` or ``"transaction"`` (on sentry-sdk 3, which
        sends spans as ``span`` items Relay's bindings cannot take, asking for
        transactions raises ``ValueError`` saying so).  The payloads are in
        Relay's shape (tags as ``[key, value]`` pairs, ``_meta`` listing every
        change).  ``data_scrubbing=True`` also applies Sentry's default
        server-side data scrubbing; a :class:`~vgi_rpc.testing.relay.DataScrubbing`
        or an Advanced Data Scrubbing rules mapping applies those.  Needs the
        ``relay`` extra; see :mod:`vgi_rpc.testing.relay` for the caveats.

        Raises:
            IngestionRejected: Relay would reject a payload outright (Relay's message).
        """
        __tracebackhide__ = True
        from vgi_rpc.testing import relay

        return relay.ingest(self._located(None), item_type, data_scrubbing)

    def scrubbed(self, item_type: str = "event", scrubbing: ScrubbingOption = True) -> list[dict[str, Any]]:
        """:meth:`ingested` after server-side data scrubbing (Sentry's defaults unless told otherwise)."""
        __tracebackhide__ = True
        return self.ingested(item_type, data_scrubbing=scrubbing)

    def assert_ingestible(self, *, ignore: Iterable[str] | None = None, spans: SpansPolicy = "warn") -> None:
        """Fail unless Relay would store every event and transaction exactly as sent.

        The failure lists, per field, the item, the field path, what Relay does
        (trimmed, invalid, dropped...) and Relay's remark.  ``ignore`` (field
        paths) replaces :data:`vgi_rpc.testing.relay.DEFAULT_IGNORE`.  Also fails
        when nothing checkable was captured.  Needs the ``relay`` extra.

        Relay's Python normaliser cannot check ``span`` items (span streaming,
        the only tracing mode of sentry-sdk 3): ``spans="warn"`` passes on the
        rest with a :class:`~vgi_rpc.testing.relay.SpansNotCheckedWarning`
        naming them, ``spans="fail"`` fails, ``spans="ignore"`` says nothing.
        """
        __tracebackhide__ = True
        from vgi_rpc.testing import relay

        relay.assert_ingestible(self._located(None), ignore=ignore, describe=self.describe, spans=spans)

    def _located(self, item_type: str | None) -> list[tuple[str, str, Any]]:
        return [
            (f"envelope {index}, {item['type']}", item["type"], item["payload"])
            for index, envelope in enumerate(self.envelopes)
            for item in envelope["items"]
            if item_type is None or item["type"] == item_type
        ]

    # -- diagnostics -----------------------------------------------------------------

    def describe(self) -> str:
        """A short human-readable listing of everything captured (used in failures)."""
        lines: list[str] = []
        for index, envelope in enumerate(self.envelopes):
            for item in envelope["items"]:
                lines.append(f"  [{index}] {_describe_item(item)}")
        if not lines:
            lines.append("  (nothing: no envelope reached the transport)")
        lost = self.transport.lost_events
        if lost:
            reasons = ", ".join(f"{x['data_category']}:{x['reason']}" for x in lost)
            lines.append(f"  discarded by the SDK before the transport: {reasons}")
        if self._active and self.client is not None and _sentry().get_client() is not self.client:
            lines.append(
                "  note: the active Sentry client is not this capture's "
                "(did the code under test call sentry_sdk.init?)"
            )
        return "\n".join(lines)

    def _single(self, found: list[dict[str, Any]], what: str, method: str | None) -> dict[str, Any]:
        __tracebackhide__ = True
        if len(found) == 1:
            return found[0]
        where = f" for method {method!r}" if method is not None else ""
        raise AssertionError(
            f"expected exactly one {what}{where}, found {len(found)}; captured:\n{self.describe()}"
        )

    def __repr__(self) -> str:
        state = "active" if self._active else "closed"
        return f"<SentryCapture {state}: {len(self.transport.envelopes)} envelope(s)>"


def _tag(event: dict[str, Any], name: str) -> Any:
    tags = event.get("tags")
    if isinstance(tags, dict):
        return tags.get(name)
    if isinstance(tags, list):  # the SDK may send tags as [[k, v], ...]
        for pair in tags:
            if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] == name:
                return pair[1]
    return None


def _method_of_transaction(txn: dict[str, Any]) -> Any:
    method = _tag(txn, "rpc.method")
    if method is not None:
        return method
    data = ((txn.get("contexts") or {}).get("trace") or {}).get("data") or {}
    return data.get("rpc.method")


_BATCHERS = ("span_batcher", "log_batcher", "metrics_batcher")


def _wait_for_batcher_threads(client: Any, timeout: float) -> None:
    """Wait until no SDK batcher thread is half-way through sending (bounded by *timeout*).

    A batcher's thread takes its buffer under a lock, then builds and sends the
    envelopes after releasing it; a ``client.flush()`` in that window finds an
    empty buffer and returns before those envelopes reach the transport. Span
    streaming (sentry-sdk 3) sends every span that way, and Sentry Logs on 2.x
    too. Waiting for the thread to be out of the batcher's ``_flush`` closes
    the window.
    """
    deadline = time.monotonic() + timeout
    for name in _BATCHERS:
        thread = getattr(getattr(client, name, None), "_flusher", None)
        if not isinstance(thread, threading.Thread) or thread is threading.current_thread():
            continue
        while thread.is_alive() and _is_flushing(thread) and time.monotonic() < deadline:
            time.sleep(0.0005)


def _is_flushing(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "_flush":
            return True
        frame = frame.f_back
    return False


def _span_items(payloads: list[Any]) -> list[dict[str, Any]]:
    """The spans of ``span`` item payloads (``{"version": 2, "items": [...]}``, or one bare span)."""
    spans: list[dict[str, Any]] = []
    for payload in payloads:
        if not isinstance(payload, dict):
            continue
        items = payload.get("items", [payload])
        spans.extend(span for span in items if isinstance(span, dict))
    return spans


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    """A streamed span's attributes, unwrapped from ``{"value": v, "type": t}``."""
    attributes = span.get("attributes") or {}
    return {
        key: value["value"] if isinstance(value, dict) and "value" in value else value
        for key, value in attributes.items()
    }


def _span_view(span: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    """A streamed span in the shape of a transaction's span."""
    view: dict[str, Any] = {
        "trace_id": span.get("trace_id"),
        "span_id": span.get("span_id"),
        "op": attributes.get("sentry.op"),
        "description": span.get("name"),
        "status": span.get("status"),
        "origin": attributes.get("sentry.origin"),
        "data": attributes,
        "start_timestamp": span.get("start_timestamp"),
        "timestamp": span.get("end_timestamp"),
    }
    if span.get("parent_span_id"):
        view["parent_span_id"] = span["parent_span_id"]
    return view


def _segment_views(payloads: list[Any]) -> list[dict[str, Any]]:
    """One transaction-shaped view per streamed segment, its children as its ``spans``."""
    spans = _span_items(payloads)
    children: dict[Any, list[dict[str, Any]]] = {}
    for span in spans:
        if not span.get("is_segment"):
            segment_id = _attributes(span).get("sentry.segment.id")
            children.setdefault(segment_id, []).append(span)
    views: list[dict[str, Any]] = []
    for span in spans:
        if not span.get("is_segment"):
            continue
        attributes = _attributes(span)
        trace = {k: v for k, v in _span_view(span, attributes).items() if k not in ("description",)}
        for key in ("start_timestamp", "timestamp"):
            trace.pop(key, None)
        views.append(
            {
                "type": "transaction",
                "transaction": span.get("name"),
                "transaction_info": {"source": attributes.get("sentry.segment.name.source")},
                "start_timestamp": span.get("start_timestamp"),
                "timestamp": span.get("end_timestamp"),
                "contexts": {"trace": trace},
                "spans": [_span_view(c, _attributes(c)) for c in children.get(span.get("span_id"), [])],
                "streamed": True,
                "span_item": span,
            }
        )
    return views


_REPORT_TEXT = 160  # longest message/exception text on one report line
_SHOWN_SPANS = 5  # spans listed per span item on one report line


def _clip(text: Any) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= _REPORT_TEXT else value[: _REPORT_TEXT - 3] + "..."


def _describe_item(item: dict[str, Any]) -> str:
    """One line for one envelope item: type, name, rpc.method, level, exception, status."""
    item_type = item["type"]
    payload = item["payload"]
    if not isinstance(payload, dict):
        size = len(payload) if isinstance(payload, bytes | str | list) else "?"
        return f"{item_type} ({size} bytes/entries)"
    describe = _ITEM_DESCRIBERS.get(item_type)
    return f"{item_type} {describe(payload)}" if describe is not None else str(item_type)


def _describe_event(payload: dict[str, Any]) -> str:
    parts = [repr(payload["transaction"]) if payload.get("transaction") else "(no transaction)"]
    method = _tag(payload, "rpc.method")
    if method is not None:
        parts.append(f"rpc.method={method!r}")
    parts.append(f"level={payload.get('level')}")
    values = (payload.get("exception") or {}).get("values") or []
    if values:
        last = values[-1]
        parts.append(f"exception={last.get('type')}: {_clip(last.get('value'))}")
    message = payload.get("message") or (payload.get("logentry") or {}).get("message")
    if message:
        parts.append(f"message={_clip(message)!r}")
    if not payload.get("tags"):
        parts.append("(no tags)")
    logger = payload.get("logger")
    if logger:
        parts.append(f"logger={logger}")
    return " ".join(parts)


def _describe_transaction(payload: dict[str, Any]) -> str:
    trace = (payload.get("contexts") or {}).get("trace") or {}
    parts = [repr(payload.get("transaction"))]
    method = _method_of_transaction(payload)
    if method is not None:
        parts.append(f"rpc.method={method!r}")
    parts.append(f"op={trace.get('op')} status={trace.get('status')} spans={len(payload.get('spans') or [])}")
    return " ".join(parts)


def _describe_spans(payload: dict[str, Any]) -> str:
    """A ``span`` item (span streaming): each span as informative as a transaction line."""
    spans = _span_items([payload])
    shown = "; ".join(_describe_span(span) for span in spans[:_SHOWN_SPANS])
    more = f" (+{len(spans) - _SHOWN_SPANS} more)" if len(spans) > _SHOWN_SPANS else ""
    return f"({len(spans)}): {shown}{more}"


def _describe_span(span: dict[str, Any]) -> str:
    """``segment 'name' rpc.method='m' op=rpc.server status=error`` (``segment``: a root, a view in ``transactions``)."""
    attributes = _attributes(span)
    parts = ["segment"] if span.get("is_segment") else []
    parts.append(repr(span.get("name") or span.get("description")))
    method = attributes.get("rpc.method")
    if method is not None:
        parts.append(f"rpc.method={method!r}")
    op = attributes.get("sentry.op") or span.get("op")
    if op is not None:
        parts.append(f"op={op}")
    if span.get("status") is not None:
        parts.append(f"status={span['status']}")
    return " ".join(parts)


def _describe_logs(payload: dict[str, Any]) -> str:
    records = payload.get("items") or []
    shown = [f"[{r.get('level')}] {_clip(r.get('body'))}" for r in records[:3] if isinstance(r, dict)]
    more = f" (+{len(records) - 3} more)" if len(records) > 3 else ""
    return f"({len(records)}): " + "; ".join(shown) + more


def _describe_sessions(payload: dict[str, Any]) -> str:
    totals: dict[str, int] = {}
    for aggregate in payload.get("aggregates") or []:
        for key, value in aggregate.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return " ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "(empty)"


def _describe_client_report(payload: dict[str, Any]) -> str:
    discarded = payload.get("discarded_events") or []
    return "discarded: " + (
        ", ".join(f"{d.get('category')}:{d.get('reason')} x{d.get('quantity')}" for d in discarded) or "none"
    )


_ITEM_DESCRIBERS = {
    "event": _describe_event,
    "transaction": _describe_transaction,
    "span": _describe_spans,
    "log": _describe_logs,
    "sessions": _describe_sessions,
    "client_report": _describe_client_report,
}


@contextlib.contextmanager
def sentry_capture(**init_options: Any) -> Iterator[SentryCapture]:
    """Initialise the real Sentry SDK with an in-memory transport; yield a :class:`SentryCapture`.

    ``init_options`` go to ``sentry_sdk.init`` on top of these defaults:
    ``dsn=DEFAULT_DSN``, ``traces_sample_rate=1.0``, ``release=DEFAULT_RELEASE``
    (default integrations stay on unless you pass ``default_integrations=False``).
    ``transport`` may not be passed: the capture's transport is the point.
    Pass ``release=None`` to let the SDK derive a release from the machine.

    On exit (also on error) the capture's client is flushed and closed, and
    the previous global scope, isolation scope and current scope -- hence the
    previous client -- are restored.  Must be entered and exited in the same
    thread/context (pytest does that for fixtures).  See the module docstring
    for caveats (threads, SDK background workers, ``before_send``).

    Also available as the pytest fixture ``sentry_capture``.
    """
    from vgi_rpc._extras import require

    require("sentry_capture", "sentry")
    import sentry_sdk
    import sentry_sdk.scope as _sentry_scope

    from vgi_rpc.testing.fake_transport import InMemoryTransport

    if "transport" in init_options:
        raise TypeError("sentry_capture() provides its own transport; do not pass 'transport'")
    options: dict[str, Any] = {"dsn": DEFAULT_DSN, "traces_sample_rate": 1.0, "release": DEFAULT_RELEASE}
    options.update(init_options)
    transport = InMemoryTransport()
    options["transport"] = transport
    cap = SentryCapture(transport, init_options)

    saved_global = _sentry_scope._global_scope
    iso_token = _sentry_scope._isolation_scope.set(None)
    cur_token = _sentry_scope._current_scope.set(None)
    _sentry_scope._global_scope = None
    try:
        sentry_sdk.init(**options)
        client = sentry_sdk.get_client()
        if not isinstance(client, sentry_sdk.Client):  # pragma: no cover - SDK contract
            raise RuntimeError(f"sentry_sdk.init did not install a client (got {client!r})")
        cap.client = client
        cap._active = True
        yield cap
    finally:
        try:
            cap.flush()
        finally:
            cap._active = False
            fresh_global = _sentry_scope._global_scope
            final_client = fresh_global.client if fresh_global is not None else None
            if cap.client is not None:
                cap.client.close(timeout=_FLUSH_TIMEOUT)
            if isinstance(final_client, sentry_sdk.Client) and final_client is not cap.client:
                final_client.close(timeout=_FLUSH_TIMEOUT)
            _sentry_scope._global_scope = saved_global
            _reset(_sentry_scope._current_scope, cur_token)
            _reset(_sentry_scope._isolation_scope, iso_token)


def _sentry() -> Any:
    import sentry_sdk

    return sentry_sdk


def _reset(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    try:
        var.reset(token)
    except ValueError:  # exited in another context: put the old value back anyway
        var.set(None if token.old_value is contextvars.Token.MISSING else token.old_value)
