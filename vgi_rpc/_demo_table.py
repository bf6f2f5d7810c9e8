"""The demo's table: what Sentry received, read through the testing kit's views (internal).

:func:`render_envelopes` and :func:`explain` are public as ``vgi_rpc.demo.render_envelopes``
and ``vgi_rpc.demo.explain`` (see :mod:`vgi_rpc.demo`); this module holds them so the
demo's service and its table each stay one readable module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from vgi_rpc.testing import SentryCapture
from vgi_rpc.testing._payloads import session_totals
from vgi_rpc.testing._payloads import tags as tags_of

__all__ = ["explain", "item_counts", "render_envelopes"]

#
# Everything below reads what Sentry received through the testing kit's views
# (SentryCapture.transactions / .events / .payloads("sessions")), which give the
# same shapes on sentry-sdk 2.x (transaction items) and 3.x (span streaming).

_USER_FIELDS = ("id", "username", "email", "name")
_SESSION_COUNTS = ("exited", "errored", "crashed", "abnormal")
_READ_ITEMS = frozenset({"transaction", "span", "event", "sessions"})
"""Item types the table reads through the capture's views; any other type gets a bare row."""


def _capture(envelopes: SentryCapture | Iterable[Mapping[str, Any]]) -> SentryCapture:
    return envelopes if isinstance(envelopes, SentryCapture) else SentryCapture.from_envelopes(envelopes)


def _mappings(payloads: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The payloads that are JSON objects (an item the SDK sent as bytes gets no row here)."""
    return [p for p in payloads if isinstance(p, Mapping)]


def _kv(mapping: Mapping[str, Any] | None) -> str:
    if not mapping:
        return "-"
    return "  ".join(f"{k}={v}" for k, v in mapping.items())


def _trace(txn: Mapping[str, Any]) -> Mapping[str, Any]:
    trace: Mapping[str, Any] = (txn.get("contexts") or {}).get("trace") or {}
    return trace


def _data(txn: Mapping[str, Any]) -> Mapping[str, Any]:
    data: Mapping[str, Any] = _trace(txn).get("data") or {}
    return data


def _http_status(txn: Mapping[str, Any]) -> tuple[str, Any] | None:
    """Which field of the transaction carries the HTTP status, and its value.

    sentry-sdk 2.x sends the tag ``http.status_code`` (a string); span streaming
    (3.x) has no tags, the status is the segment's ``http.response.status_code``
    attribute. The tag first: it is what Sentry's search and tag lists show.
    """
    tags = tags_of(txn)
    if "http.status_code" in tags:
        return "http.status_code", tags["http.status_code"]
    data = _data(txn)
    if "http.response.status_code" in data:
        return "http.response.status_code", data["http.response.status_code"]
    return None


def _request(txn: Mapping[str, Any]) -> str:
    """``POST /vgi/DemoService/add -> 200``, from ``request`` (2.x) or the ``http.*``/``url.*`` attributes (3.x)."""
    request = txn.get("request") or {}
    data = _data(txn)
    method = request.get("method") or data.get("http.request.method") or "?"
    path = urlsplit(str(request["url"])).path if request.get("url") else str(data.get("url.path") or "?")
    status = _http_status(txn)
    return f"{method} {path}" + (f" -> {status[1]}" if status else "")


def _span_status(span: Mapping[str, Any]) -> str:
    """A child span's status (sentry-sdk releases before 2.4x sent it as the span's ``status`` tag)."""
    return str(span.get("status") or (span.get("tags") or {}).get("status") or "-")


def _started(txn: Mapping[str, Any]) -> float:
    """When the transaction started, for the row order (span batches need not arrive in call order)."""
    started = txn.get("start_timestamp")
    if isinstance(started, int | float):  # span streaming: seconds
        return float(started)
    if isinstance(started, str):  # transaction items: ISO 8601
        return datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    return float("inf")


def _user(view: Mapping[str, Any]) -> str:
    user = view.get("user") or {}
    return _kv({k: user[k] for k in _USER_FIELDS if k in user})


def _event_status(event: Mapping[str, Any]) -> str:
    values = (event.get("exception") or {}).get("values") or []
    if values:
        last = values[-1]
        return f"{event.get('level', 'error')}: {last.get('type')}: {last.get('value')}"
    return str(event.get("level") or "-")


def _session_totals(payloads: Iterable[Any]) -> dict[str, int]:
    totals = session_totals(payloads)
    return {key: totals.get(key, 0) for key in _SESSION_COUNTS}


def _counted(totals: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in totals.items() if v) or "-"


def item_counts(capture: SentryCapture) -> str:
    """``12 envelopes: 10 span, 1 event, 1 sessions``: what reached the transport, by item type."""
    counts: dict[str, int] = {}
    for item in capture.items():
        counts[str(item["type"])] = counts.get(str(item["type"]), 0) + 1
    listed = ", ".join(f"{n} {t}" for t, n in counts.items())
    return f"{len(capture.envelopes)} envelopes" + (f": {listed} items" if listed else "")


def render_envelopes(envelopes: SentryCapture | Iterable[Mapping[str, Any]]) -> str:
    """A table of what Sentry stores: one row per transaction (a call's HTTP request), error event and sessions item.

    ``envelopes``: a :class:`~vgi_rpc.testing.SentryCapture`, or envelopes in its
    shape (read with :meth:`~vgi_rpc.testing.SentryCapture.from_envelopes`).
    Transactions are :attr:`~vgi_rpc.testing.SentryCapture.transactions`: on
    sentry-sdk 3 (span streaming) each call's *segment* span is a row and its
    child spans are listed under it, however the SDK batched the ``span`` items.
    Under each row: the request, tags, user, ``rpc.*`` span data and child spans
    (transactions); tags, ``contexts.rpc`` and user (events); the aggregates
    (sessions).  Status is what the SDK sent.  Item types the demo does not read
    (client reports, attachments...) get a bare row.
    """
    capture = _capture(envelopes)
    rows: list[tuple[_Row, _Details]] = []
    rows.extend(_transaction_row(txn) for txn in sorted(_mappings(capture.transactions), key=_started))
    rows.extend(_event_row(event) for event in _mappings(capture.events))
    for payload in capture.payloads("sessions"):
        aggregates = payload.get("aggregates") if isinstance(payload, Mapping) else None
        rows.append(
            (
                ("sessions", "(release health)", _counted(_session_totals([payload]))),
                [("aggregates", json.dumps(aggregates, sort_keys=True, default=str))],
            )
        )
    rows.extend(
        ((str(item["type"]), "-", "-"), []) for item in capture.items() if item["type"] not in _READ_ITEMS
    )
    return _table(rows) if rows else "(nothing reached the transport)"


_Row = tuple[str, str, str]
_Details = list[tuple[str, str]]


def _transaction_row(txn: Mapping[str, Any]) -> tuple[_Row, _Details]:
    """A transaction's row (name, status) and what is listed under it."""
    spans = [f"{s.get('op')} {s.get('description')} ({_span_status(s)})" for s in txn.get("spans") or []]
    rpc_data = {k: v for k, v in sorted(_data(txn).items()) if k.startswith("rpc.")}
    return (
        ("transaction", str(txn.get("transaction") or "-"), str(_trace(txn).get("status") or "-")),
        [
            ("request", _request(txn)),
            ("tags", _kv(dict(sorted(tags_of(txn).items())))),
            ("user", _user(txn)),
            ("rpc.* span data", _kv(rpc_data)),
            ("child spans", ", ".join(spans) or "-"),
        ],
    )


def _event_row(event: Mapping[str, Any]) -> tuple[_Row, _Details]:
    """An error event's row (transaction, status) and what is listed under it."""
    return (
        ("event", str(event.get("transaction") or "-"), _event_status(event)),
        [
            ("tags", _kv(dict(sorted(tags_of(event).items())))),
            ("contexts.rpc", _kv(dict(sorted(((event.get("contexts") or {}).get("rpc") or {}).items())))),
            ("user", _user(event)),
        ],
    )


def _table(rows: list[tuple[_Row, _Details]]) -> str:
    """The numbered table: one line per row, its details indented under it."""
    header = ("kind", "name", "status")
    num = len(str(len(rows)))
    kind, name = (max(len(r[i]) for r in [header, *(row for row, _ in rows)]) for i in range(2))

    def line(index: object, row: _Row) -> str:
        return f"{index!s:>{num}}  {row[0]:<{kind}}  {row[1]:<{name}}  {row[2]}"

    out = [line("#", header), "-" * (num + kind + name + 6 + max(len(row[2]) for row, _ in rows))]
    for index, (row, lines) in enumerate(rows, start=1):
        out.append(line(index, row))
        out.extend(f"{'':>{num}}      {label + ':':<17} {text}" for label, text in lines)
    return "\n".join(out)


def explain(envelopes: SentryCapture | Iterable[Mapping[str, Any]]) -> list[str]:
    """One line each on what the table shows that surprises a first reader (only what is there).

    Takes what :func:`render_envelopes` takes; reads the same views, so the notes
    are the same on sentry-sdk 2.x and 3.x (save the field names each sends).
    """
    capture = _capture(envelopes)
    txns = _mappings(capture.transactions)
    notes: list[str] = []
    streamed = [t for t in txns if t.get("streamed")]
    if streamed:
        spans = sum(1 + len(t.get("spans") or []) for t in streamed)
        batches = len(capture.items("span"))
        notes.append(
            f"transaction rows: this SDK streams spans -- no transaction items but {spans} spans in {batches} "
            "span items; a row is one HTTP request's segment span (the WSGI root, which the hook names "
            "rpc <method>) with its child spans, and its tags and user are attributes of that span."
        )
    turns: dict[str, list[str]] = {}
    for txn in txns:
        stream_id = _data(txn).get("rpc.stream_id")
        if stream_id:
            turns.setdefault(str(stream_id), []).append(str(txn.get("transaction")))
    if turns:
        counts = ", ".join(f"{names[0]} x{len(names)}" for names in turns.values())
        notes.append(
            f"{counts}: over HTTP a stream call is one request per turn (/init, then each /exchange), "
            "so one transaction per turn; all turns of one call share one rpc.stream_id."
        )
    sessions = capture.payloads("sessions")
    if sessions:
        notes.append(
            "sessions: not a call but the SDK's release health, one session per HTTP request "
            f"({_counted(_session_totals(sessions))}; errored = an error event was captured during it; "
            "the client's /health probe counts too)."
        )
    for txn in txns:
        status = _trace(txn).get("status")
        http = _http_status(txn)
        if status not in (None, "ok") and http is not None and str(http[1]) == "200":
            notes.append(
                f"{txn.get('transaction')}: {http[0]}=200 because vgi-rpc answers a failed call with a 200 "
                f"whose Arrow stream carries the error; status {status} because the call itself failed."
            )
            break
    return notes
