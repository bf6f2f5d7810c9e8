"""The snapshot normaliser's structural passes, and the stored-calls view.

Run by :func:`vgi_rpc.testing.snapshots.normalize` around syrupy's walk with
the :mod:`vgi_rpc.testing._snapshot_rules` normaliser as its matcher: before
it, runs of stack frames inside ``vgi_rpc`` collapse into one placeholder frame
(their ``_meta`` notes go with them) and envelopes whose position is the SDK
threads' timing move after the others (span envelopes regrouped one per
segment); after it, ``sessions`` buckets that became equal are summed.
:func:`stored_calls` is what :func:`vgi_rpc.testing.snapshots.normalize_calls`
reduces a capture to. The rules and what each form keeps: docs/testing.md
("Snapshots of what Sentry stores", "The normalisation rules").
"""

from __future__ import annotations

import json
from typing import Any

from vgi_rpc.testing._payloads import epoch_seconds, session_totals, span_attributes, span_items, tags
from vgi_rpc.testing._snapshot_rules import SnapshotFormatError

__all__ = ["collapse_library_frames", "merge_session_aggregates", "order_envelopes", "stored_calls"]

# The placeholder that stands for a run of vgi_rpc's own stack frames.
_LIBRARY_FRAME = {"function": "<vgi_rpc frames>", "module": "vgi_rpc", "in_app": False}
_LIBRARY_PACKAGE = "vgi_rpc"


def _is_library_frame(frame: Any) -> bool:
    if not isinstance(frame, dict):
        return False
    module = frame.get("module")
    if isinstance(module, str):
        return module == _LIBRARY_PACKAGE or module.startswith(_LIBRARY_PACKAGE + ".")
    filename = frame.get("filename")
    return isinstance(filename, str) and filename.replace("\\", "/").startswith(_LIBRARY_PACKAGE + "/")


def _collapse_frames(frames: list[Any]) -> tuple[list[Any], dict[int, int | None]]:
    """Each run of vgi_rpc frames -> one placeholder; returns the frames and old index -> new index."""
    out: list[Any] = []
    where: dict[int, int | None] = {}
    for index, frame in enumerate(frames):
        if _is_library_frame(frame):
            if not (out and out[-1] is _LIBRARY_FRAME):
                out.append(_LIBRARY_FRAME)
            where[index] = None  # its notes go with it
        else:
            where[index] = len(out)
            out.append(frame)
    return [dict(f) if f is _LIBRARY_FRAME else f for f in out], where


def _meta_node(meta: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(meta, dict):
            return None
        meta = meta.get(key)
    return meta


def _collapse_stacktrace(stacktrace: dict[str, Any], notes: Any) -> None:
    """In place: collapse the frames, and re-index (or drop) the ``_meta`` notes about them."""
    frames, where = _collapse_frames(stacktrace["frames"])
    if None not in where.values():
        return  # none of ours
    stacktrace["frames"] = frames
    if isinstance(notes, dict):
        # "3" -> the frame's new index, or gone with a collapsed frame; a note on the
        # list itself ("": its length) counted our frames too, so it goes as well.
        moved = {
            str(where[int(k)]): v for k, v in notes.items() if k.isdigit() and where.get(int(k)) is not None
        }
        notes.clear()
        notes.update(moved)


def collapse_library_frames(node: Any, meta: Any = None, path: tuple[str, ...] = ()) -> None:
    """In place: collapse vgi_rpc frames everywhere under ``node``, moving ``_meta`` notes along.

    A payload's ``_meta`` mirrors the payload's shape, frames by index
    (``_meta.exception.values.0.stacktrace.frames.3.vars``); ``meta`` is the
    nearest enclosing payload's ``_meta`` and ``path`` the way from that payload
    to ``node``.
    """
    if isinstance(node, list):
        for index, value in enumerate(node):
            collapse_library_frames(value, meta, (*path, str(index)))
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("_meta"), dict):
        meta, path = node["_meta"], ()
    for key, value in node.items():
        if key == "_meta":
            continue
        if key == "stacktrace" and isinstance(value, dict) and isinstance(value.get("frames"), list):
            _collapse_stacktrace(value, _meta_node(meta, (*path, key, "frames")))
        else:
            collapse_library_frames(value, meta, (*path, str(key)))


def merge_session_aggregates(node: Any) -> Any:
    """In place, after the walk: a ``sessions`` payload's buckets that became equal are summed.

    The SDK buckets request sessions by the minute they started; once ``started``
    is ``<timestamp>``, a test that ran across a minute boundary would otherwise
    show two buckets where another run shows one.
    """
    if isinstance(node, list):
        for value in node:
            merge_session_aggregates(value)
    elif isinstance(node, dict):
        aggregates = node.get("aggregates")
        if "attrs" in node and isinstance(aggregates, list) and all(isinstance(a, dict) for a in aggregates):
            merged: dict[str, dict[str, Any]] = {}
            for bucket in aggregates:
                counts = {k: v for k, v in bucket.items() if isinstance(v, int) and not isinstance(v, bool)}
                key = repr(sorted((k, v) for k, v in bucket.items() if k not in counts))
                into = merged.setdefault(key, {k: v for k, v in bucket.items() if k not in counts})
                for name, count in counts.items():
                    into[name] = into.get(name, 0) + count
            node["aggregates"] = [dict(sorted(bucket.items())) for bucket in merged.values()]
        for value in node.values():
            merge_session_aggregates(value)
    return node


# Envelopes of these item types leave from SDK worker threads (the session flusher, the
# log and metric batchers) or at flush time: where they land among the others is timing.
_BATCHED_TYPES = ("client_report", "log", "sessions", "trace_metric")


def order_envelopes(data: Any) -> Any:
    """A list of envelopes in an order that is not the SDK threads' timing; anything else is returned as is.

    Envelopes the SDK sends as it goes (events, transactions) keep their order.
    Then the streamed spans (sentry-sdk 3, 2.x with span streaming): the span
    batcher's thread sends them whenever it runs and, under load, merges the
    spans of two calls of one trace into one envelope; they are regrouped as one
    envelope per segment (its root span and children, ``item_count`` to match),
    in the order the segments started. Last, those holding only batched
    aggregates (sessions, logs, client reports, metrics), by item type (stable).
    """
    if not (isinstance(data, list) and data and all(_is_envelope(e) for e in data)):
        return data
    spans = [e for e in data if set(_item_types(e)) == {"span"}]
    rest = [e for e in data if not _batched(e) and e not in spans]
    batched = sorted((e for e in data if _batched(e)), key=lambda e: _item_types(e))
    return rest + _per_segment(spans) + batched


def _per_segment(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Span envelopes regrouped: one envelope per segment, ordered by the segment's start."""
    containers = [i.get("payload") for e in envelopes for i in e["items"]]
    if not all(isinstance(p, dict) and isinstance(p.get("items"), list) for p in containers):
        return envelopes  # not the batcher's ``{"version": 2, "items": [...]}``: nothing to regroup
    groups: dict[Any, dict[str, Any]] = {}
    for envelope in envelopes:
        for item in envelope["items"]:
            payload = item.get("payload")
            for span in span_items([payload]):
                attributes = span_attributes(span)
                key = span.get("span_id") if span.get("is_segment") else attributes.get("sentry.segment.id")
                group = groups.setdefault(key, {"envelope": envelope, "item": item, "spans": []})
                group["spans"].append(span)
    out: list[tuple[Any, dict[str, Any]]] = []
    for group in groups.values():
        spans = group["spans"]
        roots = [s for s in spans if s.get("is_segment")] or spans
        start = min(_epoch(s.get("start_timestamp"), "start_timestamp") for s in roots)
        headers = dict(group["item"].get("headers") or {})
        if "item_count" in headers:
            headers["item_count"] = len(spans)
        item = {**group["item"], "headers": headers, "payload": {**group["item"]["payload"], "items": spans}}
        out.append((start, {**group["envelope"], "items": [item]}))
    out.sort(key=lambda pair: pair[0])
    return [envelope for _, envelope in out]


def _is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("items"), list) and "headers" in value


def _item_types(envelope: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(item.get("type")) if isinstance(item, dict) else "" for item in envelope["items"])


def _batched(envelope: dict[str, Any]) -> bool:
    types = _item_types(envelope)
    return bool(types) and all(t in _BATCHED_TYPES for t in types)


# -- the generation-neutral view: what Sentry stores about each call ------------------------------------

_FAILED = "error"  # sentry-sdk 3's one failure status; 2.x's internal_error, cancelled... read as it
_USER_FIELDS = ("id", "username", "email", "name")


def stored_calls(envelopes: list[Any]) -> dict[str, Any]:
    """The calls in ``envelopes``, independent of envelope boundaries, item order and item format.

    One entry per root span (a 2.x ``transaction`` item, or a streamed segment
    span), in the order the calls started, holding its ``root``, its child
    ``spans`` and the ``errors`` captured while one of its spans was active;
    an error event with no span of the capture is a call of its own. Then the
    summed ``sessions`` counts. What is kept, and why: docs/testing.md, "Snapshots
    of what Sentry stores".
    """
    items = [i for e in envelopes if isinstance(e, dict) for i in e.get("items") or [] if isinstance(i, dict)]
    payloads: dict[str, list[Any]] = {}
    for item in items:
        payloads.setdefault(str(item.get("type")), []).append(item.get("payload"))
    calls = _roots(payloads.get("transaction", []), payloads.get("span", []))
    owner = {s["span_id"]: call for call in calls for s in [call.get("root"), *call["spans"]] if s}
    for event in payloads.get("event", []):
        if not isinstance(event, dict):
            continue
        span_id = ((event.get("contexts") or {}).get("trace") or {}).get("span_id")
        call, error = owner.get(span_id), _error(event)
        if call is None:  # no span of the capture: the call of its own, its span id says nothing
            del error["span_id"]
            call = {"start": _epoch(event.get("timestamp"), "event.timestamp")}
            calls.append(call)
        call.setdefault("errors", []).append(error)
    calls.sort(key=lambda c: (c["start"], json.dumps(c, sort_keys=True, default=str)))
    view: dict[str, Any] = {"calls": [{k: v for k, v in c.items() if k != "start"} for c in calls]}
    totals = session_totals(payloads.get("sessions", []))
    if totals:
        view["sessions"] = totals
    return view


def _status(value: Any) -> Any:
    return value if value in (None, "ok") else _FAILED


def _span(span_id: Any, name: Any, op: Any, status: Any, data: Any, parent: Any = None) -> dict[str, Any]:
    fact = {"span_id": span_id, "name": name, "op": op, "status": _status(status)}
    fact["data"] = {k: v for k, v in (data or {}).items() if str(k).startswith("rpc.")}
    if parent is not None:
        fact["parent_span_id"] = parent
    return fact


def _roots(transactions: list[Any], span_payloads: list[Any]) -> list[dict[str, Any]]:
    """One call per 2.x transaction and per streamed segment, its children attached by ``parent_span_id``."""
    calls: list[dict[str, Any]] = []
    for txn in (t for t in transactions if isinstance(t, dict)):
        trace = (txn.get("contexts") or {}).get("trace") or {}
        root = _span(
            trace.get("span_id"),
            txn.get("transaction"),
            trace.get("op"),
            trace.get("status"),
            trace.get("data"),
        )
        children = [
            _span(
                s.get("span_id"),
                s.get("description"),
                s.get("op"),
                s.get("status"),
                s.get("data"),
                s.get("parent_span_id"),
            )
            for s in txn.get("spans") or []
            if isinstance(s, dict)
        ]
        calls.append(
            {"start": _epoch(txn.get("start_timestamp"), "start_timestamp"), "root": root, "spans": children}
        )
    streamed = span_items(span_payloads)
    by_segment: dict[Any, list[dict[str, Any]]] = {}
    for span in streamed:
        attributes = span_attributes(span)
        fact = _span(
            span.get("span_id"), span.get("name"), attributes.get("sentry.op"), span.get("status"), attributes
        )
        start = _epoch(span.get("start_timestamp"), "start_timestamp")
        if span.get("is_segment"):
            calls.append({"start": start, "root": fact, "spans": [], "id": span.get("span_id")})
        else:
            fact["parent_span_id"] = span.get("parent_span_id")
            by_segment.setdefault(attributes.get("sentry.segment.id"), []).append({**fact, "start": start})
    for call in calls:
        call["spans"] += _in_order(by_segment.pop(call.pop("id", None), []))
    for orphans in by_segment.values():  # a segment the capture does not hold: its spans, shown all the same
        calls.append({"start": min(s["start"] for s in orphans), "spans": _in_order(orphans)})
    return calls


def _in_order(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ordered = sorted(spans, key=lambda s: (s["start"], str(s["name"])))
    return [{k: v for k, v in s.items() if k != "start"} for s in ordered]


def _error(event: dict[str, Any]) -> dict[str, Any]:
    """An error event's stored facts: exception chain, level, tags, ``contexts.rpc``, user, transaction."""
    values = (event.get("exception") or {}).get("values") or []
    fact: dict[str, Any] = {
        "exception": [
            {"type": v.get("type"), "value": v.get("value")} for v in values if isinstance(v, dict)
        ],
        "level": event.get("level"),
        "tags": tags(event),
        "transaction": event.get("transaction"),
        "span_id": ((event.get("contexts") or {}).get("trace") or {}).get("span_id"),
    }
    message = event.get("message") or (event.get("logentry") or {}).get("message")
    if message:
        fact["message"] = message
    rpc = (event.get("contexts") or {}).get("rpc")
    if rpc is not None:
        fact["rpc"] = rpc
    user = {k: v for k, v in (event.get("user") or {}).items() if k in _USER_FIELDS}
    if user:
        fact["user"] = user
    return fact


def _epoch(value: Any, field: str) -> float:
    """A timestamp as epoch seconds (it only orders the calls): ISO 8601 or a positive number, else SnapshotFormatError."""
    seconds = epoch_seconds(value)
    if seconds is None or (not isinstance(value, str) and seconds <= 0):
        raise SnapshotFormatError(
            f"snapshot normaliser: {field} = {value!r} is not an ISO 8601 timestamp or a positive epoch number"
        )
    return seconds
