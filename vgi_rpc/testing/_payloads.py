"""Reading captured envelope payloads on either SDK generation.

Tags (a dict, or ``[key, value]`` pairs), a transaction's ``rpc.method``, session counts, the
spans of ``span`` items (span streaming: ``{"version": 2, "items": [...]}``,
attributes wrapped as ``{"value", "type"}``), a segment's tags and user (from
its attributes) and the transaction-shaped view of each streamed segment that :attr:`vgi_rpc.testing.SentryCapture.transactions`
returns.  Plain functions on plain data; no SDK import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from vgi_rpc._sentry_values import USER_ATTRIBUTES
from vgi_rpc._telemetry import SERVER_ID, SERVICE, STREAM_ID, SYSTEM

__all__ = [
    "method_of_transaction",
    "segment_tags",
    "segment_user",
    "segment_views",
    "session_totals",
    "span_attributes",
    "span_items",
    "tag",
    "tags",
]

_NOT_TAGS = (
    "sentry.",  # the SDK's own
    "user.",  # the user: the view's ``user``
    # what the SDK's integrations record (OpenTelemetry's semantic conventions)
    "http.",
    "url.",
    "server.",
    "client.",
    "network.",
    "thread.",
    "process.",
    "user_agent.",
)
_RPC_SPAN_DATA = frozenset({SYSTEM, SERVICE, STREAM_ID, SERVER_ID})
"""vgi_rpc's span data that is never a tag (the Sentry page's "span data" rows, and the rpc context's server id)."""

_USER_ATTRIBUTES = (*USER_ATTRIBUTES, ("user.ip_address", "ip_address"))
"""How sentry-sdk 3 writes a scope user onto span attributes (``username`` travels as ``user.name``)."""


def tags(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload's (or view's) tags as a dict: the SDK sends a dict or ``[[k, v], ...]`` pairs."""
    raw = payload.get("tags")
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, list):
        return {str(p[0]): p[1] for p in raw if isinstance(p, list | tuple) and len(p) == 2}
    return {}


def tag(event: Mapping[str, Any], name: str) -> Any:
    """One tag of a payload (see :func:`tags`), or ``None``."""
    return tags(event).get(name)


def session_totals(payloads: Iterable[Any]) -> dict[str, int]:
    """The counts (``exited``, ``errored``...) of ``sessions`` payloads, summed over their aggregates."""
    totals: dict[str, int] = {}
    for payload in payloads:
        aggregates = payload.get("aggregates") if isinstance(payload, Mapping) else None
        for aggregate in aggregates or []:
            for key, value in aggregate.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    totals[key] = totals.get(key, 0) + value
    return totals


def method_of_transaction(txn: dict[str, Any]) -> Any:
    method = tag(txn, "rpc.method")
    if method is not None:
        return method
    data = ((txn.get("contexts") or {}).get("trace") or {}).get("data") or {}
    return data.get("rpc.method")


def span_items(payloads: list[Any]) -> list[dict[str, Any]]:
    """The spans of ``span`` item payloads (``{"version": 2, "items": [...]}``, or one bare span)."""
    spans: list[dict[str, Any]] = []
    for payload in payloads:
        if not isinstance(payload, dict):
            continue
        items = payload.get("items", [payload])
        spans.extend(span for span in items if isinstance(span, dict))
    return spans


def span_attributes(span: dict[str, Any]) -> dict[str, Any]:
    """A streamed span's attributes, unwrapped from ``{"value": v, "type": t}``."""
    attributes = span.get("attributes") or {}
    return {
        key: value["value"] if isinstance(value, dict) and "value" in value else value
        for key, value in attributes.items()
    }


def segment_tags(attributes: dict[str, Any]) -> dict[str, str]:
    """The tags of a streamed segment: its string attributes that are neither the SDK's nor span data.

    Span streaming has no tags: what the hook sets as scope tags on 2.x travels
    as attributes, among the SDK's own (``sentry.*``), those of its integrations
    (``http.*``, ``url.*``...) and vgi_rpc's span data (``rpc.system``,
    ``rpc.service``, ``rpc.stream_id``, ``rpc.server_id``). ``rpc.method`` and
    ``rpc.method_type`` are both a tag and span data; a ``tag_params`` tag and a
    recorded param share one attribute (``rpc.param.<k>``), listed while it is a
    string. A string attribute the application set itself is listed too.
    """
    return {
        key: value
        for key, value in attributes.items()
        if isinstance(value, str) and not key.startswith(_NOT_TAGS) and key not in _RPC_SPAN_DATA
    }


def segment_user(attributes: dict[str, Any]) -> dict[str, Any]:
    """The user of a streamed segment, from the SDK's ``user.*`` attributes (``user.name`` is ``username``)."""
    return {field: attributes[key] for key, field in _USER_ATTRIBUTES if key in attributes}


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


def segment_views(payloads: list[Any]) -> list[dict[str, Any]]:
    """One transaction-shaped view per streamed segment, its children as its ``spans``."""
    spans = span_items(payloads)
    children: dict[Any, list[dict[str, Any]]] = {}
    for span in spans:
        if not span.get("is_segment"):
            segment_id = span_attributes(span).get("sentry.segment.id")
            children.setdefault(segment_id, []).append(span)
    views: list[dict[str, Any]] = []
    for span in spans:
        if not span.get("is_segment"):
            continue
        attributes = span_attributes(span)
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
                "spans": [_span_view(c, span_attributes(c)) for c in children.get(span.get("span_id"), [])],
                "tags": segment_tags(attributes),
                "user": segment_user(attributes),
                "streamed": True,
                "span_item": span,
            }
        )
    return views


def epoch_seconds(value: Any) -> float | None:
    """A payload timestamp as epoch seconds: 2.x sends ISO 8601 strings, span streaming numbers.

    ``None`` for anything else (a missing or malformed value, a boolean).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
