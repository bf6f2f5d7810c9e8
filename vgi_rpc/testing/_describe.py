"""One line per captured envelope item: what failure messages and the pytest report section show.

:func:`describe_item` gives type, transaction or event name, ``rpc.method``,
level, exception type and message, status -- for a ``span`` item, each span's
name, ``rpc.method``, op and status, the segment marked.  Used by
:meth:`vgi_rpc.testing.SentryCapture.describe`, hence by the "Captured Sentry
envelopes" report section of the pytest plugin.
"""

from __future__ import annotations

from typing import Any

from vgi_rpc.testing._payloads import method_of_transaction, session_totals, span_attributes, span_items, tag

__all__ = ["describe_item"]


_REPORT_TEXT = 160  # longest message/exception text on one report line
_SHOWN_SPANS = 5  # spans listed per span item on one report line


def _clip(text: Any) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= _REPORT_TEXT else value[: _REPORT_TEXT - 3] + "..."


def describe_item(item: dict[str, Any]) -> str:
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
    method = tag(payload, "rpc.method")
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
    method = method_of_transaction(payload)
    if method is not None:
        parts.append(f"rpc.method={method!r}")
    parts.append(f"op={trace.get('op')} status={trace.get('status')} spans={len(payload.get('spans') or [])}")
    return " ".join(parts)


def _describe_spans(payload: dict[str, Any]) -> str:
    """A ``span`` item (span streaming): each span as informative as a transaction line."""
    spans = span_items([payload])
    shown = "; ".join(_describe_span(span) for span in spans[:_SHOWN_SPANS])
    more = f" (+{len(spans) - _SHOWN_SPANS} more)" if len(spans) > _SHOWN_SPANS else ""
    return f"({len(spans)}): {shown}{more}"


def _describe_span(span: dict[str, Any]) -> str:
    """``segment 'name' rpc.method='m' op=rpc.server status=error`` (``segment``: a root, a view in ``transactions``)."""
    attrs = span_attributes(span)
    parts = ["segment"] if span.get("is_segment") else []
    parts.append(repr(span.get("name") or span.get("description")))
    method = attrs.get("rpc.method")
    if method is not None:
        parts.append(f"rpc.method={method!r}")
    op = attrs.get("sentry.op") or span.get("op")
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
    totals = session_totals([payload])
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
