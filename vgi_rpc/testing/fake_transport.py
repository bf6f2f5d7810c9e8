"""An in-memory Sentry transport that records every envelope and sends nothing.

:class:`InMemoryTransport` is a real :class:`sentry_sdk.transport.Transport`
subclass: pass an instance as ``sentry_sdk.init(transport=...)`` and the real
SDK (scopes, integrations, sampling, ``before_send``, serialisation) runs
unchanged; only the last step -- the HTTP request -- is replaced by an append
to a list.  Nothing ever touches the network.

When an envelope arrives, the transport only appends the SDK's ``Envelope``
object to a list (the calling thread pays one append, as it pays one queue put
with the SDK's HTTP transport).  The first read of any accessor converts what
arrived since the last read, in the reading thread, into plain JSON data and
into Sentry's wire bytes; from then on the recorded copy is independent of SDK
objects.  Each envelope reads as::

    {"headers": {...envelope headers...},
     "items": [{"type": "event", "headers": {...}, "payload": {...}}, ...]}

JSON item payloads are parsed to dicts/lists; any other payload (attachments,
profiles in binary form) is kept as ``bytes``.

Caveats:

* The transport is synchronous: an envelope is recorded (appended) in the
  thread that produced it, before the SDK call returns.  ``flush()`` therefore
  has nothing of its own to wait for; what it cannot do is wait for *your*
  threads -- join them before reading.
* Conversion is deferred to the first read.  That records what was sent
  because the SDK builds a new envelope (and new payload dicts) for every
  send and does not touch it after handing it to the transport.
* After :meth:`InMemoryTransport.kill` the transport records nothing more;
  envelopes arriving later are counted in :attr:`InMemoryTransport.dropped_after_kill`.
* Events dropped by the SDK itself (sampling, ``before_send`` returning
  ``None``, ...) never reach a transport; the SDK reports them through
  :meth:`record_lost_event`, which this class records in :attr:`lost_events`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from vgi_rpc._extras import require

require("vgi_rpc.testing.InMemoryTransport", "sentry")

from sentry_sdk.transport import Transport  # noqa: E402

if TYPE_CHECKING:
    from sentry_sdk.envelope import Envelope, Item

__all__ = ["InMemoryTransport", "envelope_to_dict"]

# Item types whose payload is JSON (per the Sentry envelope spec) even when the
# item header carries no explicit JSON content type.
_JSON_ITEM_TYPES = frozenset(
    {
        "event",
        "transaction",
        "span",
        "log",
        "trace_metric",
        "session",
        "sessions",
        "client_report",
        "check_in",
        "profile",
        "profile_chunk",
        "user_report",
        "feedback",
        "statsd",
    }
)


def _plain(value: Any) -> Any:
    """Round-trip ``value`` through JSON using the SDK's encoder (plain data out)."""
    from sentry_sdk.utils import json_dumps

    return json.loads(json_dumps(value))


def _item_to_dict(item: Item) -> dict[str, Any]:
    headers = _plain(item.headers)
    item_type = headers.get("type")
    payload: Any
    json_payload = item.payload.json
    if json_payload is not None:
        payload = _plain(json_payload)
    else:
        raw = item.get_bytes()
        content_type = str(headers.get("content_type") or "")
        if item_type in _JSON_ITEM_TYPES or content_type.endswith("json"):
            try:
                payload = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                payload = raw
        else:
            payload = raw
    return {"type": item_type, "headers": headers, "payload": payload}


def envelope_to_dict(envelope: Envelope) -> dict[str, Any]:
    """Convert a :class:`sentry_sdk.envelope.Envelope` to plain JSON data.

    Returns ``{"headers": dict, "items": [{"type", "headers", "payload"}]}``.
    The serialised ``length`` item header is not included (it is a property of
    the byte encoding, not of the data).
    """
    return {
        "headers": _plain(envelope.headers),
        "items": [_item_to_dict(item) for item in envelope.items],
    }


class InMemoryTransport(Transport):
    """A Sentry transport that keeps every envelope in memory (thread-safe, and it never blocks).

    Use it directly (``sentry_sdk.init(transport=InMemoryTransport())``) or,
    more conveniently, through :func:`vgi_rpc.testing.sentry_capture`, which
    also isolates and restores the SDK's client and scopes.

    ``flush`` returns immediately (nothing is ever queued: the transport is
    synchronous); ``kill`` stops recording.  All accessors return copies, so
    reading while other threads capture is safe.

    When envelopes are turned into data: see the module docstring (one
    append when captured; parsed and serialised on the first read after).
    Code measured under this transport therefore pays on its own thread what
    it pays in production -- the SDK's event preparation -- and not the
    parsing.
    """

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        """Create an empty transport; ``options`` is the SDK's options dict (optional)."""
        super().__init__(options)
        self._lock = threading.Lock()
        self._pending: deque[Envelope] = deque()  # captured, not yet converted (appended lock-free)
        self._envelopes: list[dict[str, Any]] = []
        self._raw: list[bytes] = []
        self._lost: deque[dict[str, Any]] = deque()
        self._killed = False
        self._dropped_after_kill = 0
        self._flushes = 0

    # -- the Transport interface -------------------------------------------------

    def capture_envelope(self, envelope: Envelope) -> None:
        """Record ``envelope`` (converted to plain data and bytes when first read).

        Never blocks while recording: it takes no lock (one ``deque`` append), so a
        reader converting a large capture cannot hold up the SDK's sending thread or
        the thread that finished a call. (After :meth:`kill` the drop is counted
        under the lock.)
        """
        if self._killed:  # after kill() (the SDK is closing): counted under the lock
            with self._lock:
                self._dropped_after_kill += 1
            return
        self._pending.append(envelope)

    def _convert_pending(self) -> None:
        """Turn envelopes captured since the last read into plain data (call with the lock held)."""
        pending = self._pending
        while pending:
            envelope = pending.popleft()
            self._envelopes.append(envelope_to_dict(envelope))
            self._raw.append(envelope.serialize())

    def flush(self, timeout: float, callback: Any | None = None) -> None:
        """Nothing is ever pending, so this only counts the call.

        ``callback`` (the SDK's "pending events" notifier) is never invoked,
        because there is never anything pending.
        """
        with self._lock:
            self._flushes += 1

    def kill(self) -> None:
        """Stop recording; later envelopes are counted, not stored."""
        with self._lock:
            self._killed = True

    def record_lost_event(
        self,
        reason: str,
        data_category: Any | None = None,
        item: Item | None = None,
        *,
        quantity: int = 1,
    ) -> None:
        """Record an event the SDK discarded (e.g. ``before_send`` returned ``None``)."""
        entry: dict[str, Any] = {
            "reason": reason,
            "data_category": item.data_category if item is not None else data_category,
            "quantity": quantity,
        }
        self._lost.append(entry)  # one append, no lock: never blocks the SDK

    def is_healthy(self) -> bool:
        """Always healthy (there is no network to be unhealthy about)."""
        return True

    # -- inspection ----------------------------------------------------------------

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        """Copies of every recorded envelope as plain data, oldest first."""
        with self._lock:
            self._convert_pending()
            return _plain(self._envelopes)  # type: ignore[no-any-return]

    @property
    def raw_envelopes(self) -> list[bytes]:
        """Every recorded envelope in Sentry's wire encoding, oldest first."""
        with self._lock:
            self._convert_pending()
            return list(self._raw)

    @property
    def lost_events(self) -> list[dict[str, Any]]:
        """What the SDK reported as discarded: ``{"reason", "data_category", "quantity"}``."""
        return [dict(x) for x in list(self._lost)]

    @property
    def killed(self) -> bool:
        """Whether :meth:`kill` has been called."""
        with self._lock:
            return self._killed

    @property
    def dropped_after_kill(self) -> int:
        """How many envelopes arrived after :meth:`kill` (and were not stored)."""
        with self._lock:
            return self._dropped_after_kill

    @property
    def flush_count(self) -> int:
        """How many times the SDK asked this transport to flush."""
        with self._lock:
            return self._flushes

    def clear(self) -> None:
        """Forget everything recorded so far (the killed state is kept)."""
        with self._lock:
            self._pending.clear()
            self._envelopes.clear()
            self._raw.clear()
            self._lost.clear()
            self._dropped_after_kill = 0
