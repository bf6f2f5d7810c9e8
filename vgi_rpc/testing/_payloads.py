"""Reading captured envelope payloads on either SDK generation.

Tags (a dict, or ``[key, value]`` pairs), a transaction's ``rpc.method``, the
spans of ``span`` items (span streaming: ``{"version": 2, "items": [...]}``,
attributes wrapped as ``{"value", "type"}``) and the transaction-shaped view of
each streamed segment that :attr:`vgi_rpc.testing.SentryCapture.transactions`
returns.  Plain functions on plain data; no SDK import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["method_of_transaction", "segment_views", "span_attributes", "span_items", "tag"]


def tag(event: dict[str, Any], name: str) -> Any:
    tags = event.get("tags")
    if isinstance(tags, dict):
        return tags.get(name)
    if isinstance(tags, list):  # the SDK may send tags as [[k, v], ...]
        for pair in tags:
            if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] == name:
                return pair[1]
    return None


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
                "streamed": True,
                "span_item": span,
            }
        )
    return views
