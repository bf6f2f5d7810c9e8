"""`SentryCapture`: what one :func:`vgi_rpc.testing.sentry_capture` recorded, read as plain data.

The accessors (envelopes, events, transactions and their streamed views,
flattened spans, the exactly-one helpers and their failure listings, the Relay
methods) and the flush that makes them complete: a read drains the SDK's
batchers and waits for a batcher thread that is half-way through sending.
Importing this module does not import ``sentry_sdk``.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from vgi_rpc.testing._describe import describe_item
from vgi_rpc.testing._payloads import method_of_transaction, segment_views, span_attributes, span_items, tag
from vgi_rpc.testing._trace import CapturedTrace, build_sentry_trace, sentry_trace_id, sentry_trace_ids

if TYPE_CHECKING:
    import sentry_sdk

    from vgi_rpc.testing.fake_transport import InMemoryTransport
    from vgi_rpc.testing.relay import ScrubbingOption, SpansPolicy

__all__ = ["FLUSH_TIMEOUT", "SentryCapture"]

FLUSH_TIMEOUT = 2.0
"""Seconds a flush (and a capture's exit) waits for the SDK's batchers."""


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

    @classmethod
    def from_envelopes(cls, envelopes: Iterable[Mapping[str, Any]]) -> SentryCapture:
        """A capture over envelopes recorded elsewhere, read through the same views.

        ``envelopes`` are in the shape :attr:`envelopes` returns (``{"headers",
        "items": [{"type", "headers", "payload"}]}``), e.g. what another process's
        capture or :class:`~vgi_rpc.testing.InMemoryTransport` recorded, written
        as JSON and read back. The capture is closed from the start (flushing does
        nothing); ``events``, ``transactions`` (streamed segments as views),
        ``spans``, ``describe()``... work as on a live one, on either SDK
        generation. ``transport`` is then a plain record of those envelopes, not
        an SDK transport; ``lost_events`` is empty (the other side kept them).

        Raises:
            ValueError: an envelope or item is not in that shape (says which).
        """
        return cls(cast("InMemoryTransport", _Recorded(envelopes)))

    # -- lifecycle -------------------------------------------------------------------

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
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
        unwrapped from ``{"value", "type"}``), ``spans`` its child spans in the
        same shape (``description`` is the name), and ``tags`` and ``user`` read
        from its attributes (``user`` from the SDK's ``user.*`` attributes;
        ``tags`` its string attributes other than the SDK's, the integrations'
        and vgi_rpc's span data -- see docs/testing.md, "On sentry-sdk 3"). The
        view also carries ``"streamed": True`` and the segment item as sent under
        ``"span_item"``. What streaming does not have is not invented: a view has
        no ``request`` (the URL is an attribute), and failed spans have the
        status ``"error"``.
        """
        return self.payloads("transaction") + segment_views(self.payloads("span"))

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
        for span in span_items(self.payloads("span")):
            attributes = span_attributes(span)
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

    # -- traces ----------------------------------------------------------------------

    @property
    def trace_ids(self) -> list[str]:
        """The distinct trace ids captured: those of :attr:`spans` in their order, then events-only ones."""
        return sentry_trace_ids(self.spans, self.events)

    def trace(self, trace_id: str) -> CapturedTrace:
        """One trace: its spans (from :attr:`spans`, in start order) with parent links, and its error events.

        ``trace_id`` is the 32-hex id (``txn.trace_id`` on 2.x, ``span.trace_id``
        on 3.x; case does not matter). A trace this capture holds nothing of is
        an empty :class:`CapturedTrace`, not an error; its ``find`` fails naming
        the traces the capture does hold. Only what was flushed into this
        capture is there: 2.x sends a transaction's spans when it finishes, and
        a worker in another process needs its envelopes brought back with
        :meth:`from_envelopes`.

        Raises:
            TypeError: ``trace_id`` is not a string.
        """
        wanted = sentry_trace_id(trace_id)
        spans, events = self.spans, self.events
        return build_sentry_trace(wanted, spans, events, tuple(sentry_trace_ids(spans, events)))

    def events_for(self, method: str) -> list[dict[str, Any]]:
        """Error events whose ``tags["rpc.method"]`` is ``method``."""
        return [e for e in self.events if tag(e, "rpc.method") == method]

    def transactions_for(self, method: str) -> list[dict[str, Any]]:
        """Transactions whose ``tags["rpc.method"]`` or root span data ``rpc.method`` is ``method``."""
        return [t for t in self.transactions if method_of_transaction(t) == method]

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
                lines.append(f"  [{index}] {describe_item(item)}")
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


class _Recorded:
    """Envelopes recorded elsewhere: what :meth:`SentryCapture.from_envelopes` reads."""

    def __init__(self, envelopes: Iterable[Mapping[str, Any]]) -> None:
        if isinstance(envelopes, str | bytes | Mapping):
            raise ValueError(f"envelope 0 is {type(envelopes).__name__}: expected a list of envelopes")
        self._envelopes = [_checked(index, envelope) for index, envelope in enumerate(envelopes)]
        self.lost_events: list[dict[str, Any]] = []

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._envelopes)

    def clear(self) -> None:
        self._envelopes.clear()


def _checked(index: int, envelope: Any) -> dict[str, Any]:
    """A deep copy of *envelope*, if it has the shape the views read; else a ``ValueError`` saying where."""
    if not isinstance(envelope, Mapping):
        raise ValueError(f"envelope {index} is {type(envelope).__name__}: expected a mapping with 'items'")
    items = envelope.get("items")
    if not isinstance(items, list):
        raise ValueError(f"envelope {index} has no 'items' list")
    for position, item in enumerate(items):
        if not isinstance(item, Mapping) or "type" not in item or "payload" not in item:
            raise ValueError(f"envelope {index}, item {position} needs 'type' and 'payload'")
    return copy.deepcopy({"headers": {}, **envelope})


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


def _sentry() -> Any:
    import sentry_sdk

    return sentry_sdk
