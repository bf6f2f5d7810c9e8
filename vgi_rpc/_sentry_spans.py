"""The call's spans on each generation of the Sentry SDK (internal).

``vgi_rpc._sentry_hook`` decides *what* a call records; this module writes the
root-span and own-span part of it, for whichever generation is installed
(:mod:`vgi_rpc._sentry_sdk` holds what is the same on both, and which SDK it is):

============================  ======================================  ==========================================
                              transactions (sentry-sdk 2.x default)   span streaming (3.x; 2.x with
                                                                      ``trace_lifecycle="stream"``)
============================  ======================================  ==========================================
the call's root               the ambient ``Transaction``             the ambient span's *segment*
rpc data and tags             ``update_data`` / ``set_tag`` on the    span attributes (tags never overwrite an
                              transaction                             attribute already set)
root name ``rpc {method}``    an event processor on the outer scope   ``segment.name`` + ``sentry.segment.name.source``
                              (Falcon renames events when they are    (the integrations name the segment before
                              sent)                                   the call starts)
root user                     the same processor                      ``user.*`` attributes (if the SDK's
                                                                      ``data_collection.user_info`` allows)
failed call on the root       ``internal_error`` (processor)          ``error``, re-applied after the WSGI
                                                                      integration sets the HTTP-derived status
the hook's own span           ``start_transaction`` / ``start_child``  ``sentry_sdk.traces.start_span``
failure status                ``internal_error``                      ``error`` (the only failure status there)
============================  ======================================  ==========================================

The HTTP app calls :func:`after_start_response` (looked up in ``sys.modules``,
so ``vgi_rpc.http`` never imports Sentry) after each ``start_response``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk

from vgi_rpc._sentry_sdk import GENERATION, OK, PROBLEM, Call, CallFacts

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

__all__ = ["after_start_response", "begin", "end"]

_SCOPE = sentry_sdk.Scope


def _streamed_span_type() -> type | None:
    try:
        from sentry_sdk.traces import StreamedSpan
    except ImportError:  # sentry-sdk 2.x before span streaming existed
        return None
    return StreamedSpan


_STREAMED_SPAN = _streamed_span_type() if PROBLEM is None else None


_streaming_for: tuple[Any, bool] = (None, False)  # (client, whether it streams): options are fixed at init


def _streaming_enabled() -> bool:
    """Whether the active client streams spans (3.x always; 2.x with ``trace_lifecycle="stream"``)."""
    global _streaming_for
    if GENERATION == 3:
        return True
    if _STREAMED_SPAN is None:
        return False
    client = sentry_sdk.get_client()
    cached_client, streams = _streaming_for
    if client is not cached_client:
        # 2.x only (3.x always streams): typed so mypy passes against either generation
        from sentry_sdk.tracing_utils import (  # type: ignore[attr-defined,unused-ignore]
            has_span_streaming_enabled,
        )

        streams = bool(has_span_streaming_enabled(client.options))
        _streaming_for = (client, streams)
    return streams


def begin(call: Call, ambient: Any, outer: Any, facts: CallFacts, performance: bool) -> None:
    """Write *facts* on the call's root span and (with *performance*) start the hook's own span."""
    if _STREAMED_SPAN is not None and isinstance(ambient, _STREAMED_SPAN):
        _stream_root(call, ambient, facts)
    elif ambient is not None:
        _transaction_root(call, ambient, outer, facts)
    if performance:
        if ambient is not None:
            streaming = _STREAMED_SPAN is not None and isinstance(ambient, _STREAMED_SPAN)
        else:
            streaming = _streaming_enabled()
        if streaming:
            _stream_span(call, ambient, facts)
        else:
            _transaction_span(call, ambient, facts)


def end(call: Call, failed: bool) -> None:
    """Record the outcome on the root and finish the hook's own span (never raises)."""
    if failed and call._root_failed is not None:
        call._root_failed()
    span = call._span
    if span is None:
        return
    if call._stream:
        span.status = "error" if failed else OK
        span.end()
    else:
        span.set_status("internal_error" if failed else OK)
        span.__exit__(None, None, None)  # finishes and sends; never raises


# -- sentry-sdk 2.x transactions --------------------------------------------------------------------------


@dataclass(slots=True)
class _RootPatch:
    """What to apply to an ambient transaction's event when it is sent."""

    name: str | None
    user: dict[str, str] | None
    scrub: Callable[[dict[str, Any]], None] | None
    failed: bool = False
    """Set at dispatch end when the call raised: the transaction reports ``internal_error``."""


_PENDING_MAX = 1024
_pending: dict[str, _RootPatch] = {}  # root span id -> patch; consumed by _apply_root_patch
_pending_lock = threading.Lock()


def _apply_root_patch(event: Event, hint: Hint) -> Event:
    """Event processor: name (and add the user to) the ambient transaction of an RPC call.

    Registered on the scope that was current when the call started (over HTTP, the
    WSGI request's scope). The SDK runs current-scope processors after
    isolation-scope ones, so this runs after the Falcon integration's processor,
    which sets the route template as the name.
    """
    if event.get("type") != "transaction":
        return event
    span_id = (event.get("contexts") or {}).get("trace", {}).get("span_id")
    if not isinstance(span_id, str):
        return event
    with _pending_lock:
        patch = _pending.pop(span_id, None)
    if patch is None:
        return event
    if patch.scrub is not None:  # e.g. a span the implementation started with a secret in its description
        patch.scrub(cast("dict[str, Any]", event))
    if patch.name is not None:
        event["transaction"] = patch.name
        event["transaction_info"] = {"source": "custom"}
    if patch.user is not None:
        event["user"] = {**(event.get("user") or {}), **patch.user}
    if patch.failed:
        # An RPC error travels as HTTP 200 (+ X-VGI-RPC-Error), so the WSGI integration
        # reports "ok"; the transaction is the RPC's and must show that it failed.
        event["contexts"]["trace"]["status"] = "internal_error"
    return event


def _update_data(span: Any, data: dict[str, Any]) -> None:
    update = getattr(span, "update_data", None)  # not on every supported 2.x; set_data is
    if update is not None:
        update(data)
    else:
        for key, value in data.items():
            span.set_data(key, value)


def _transaction_root(call: Call, ambient: Any, outer: Any, facts: CallFacts) -> None:
    root = ambient.containing_transaction
    if root is None:
        return
    _update_data(root, facts.data)
    for key, value in facts.tags.items():
        root.set_tag(key, value)
    if facts.name is not None:
        root.name = facts.name
        root.source = "custom"
    if not root.sampled:
        return
    patch = _RootPatch(facts.name, facts.user, facts.scrub)
    with _pending_lock:
        if len(_pending) >= _PENDING_MAX:  # transactions dropped before our processor ran
            _pending.pop(next(iter(_pending)))
        _pending[root.span_id] = patch
    # one registration per scope: the scope may outlive this call (pipe + user transaction)
    if _apply_root_patch not in getattr(outer, "_event_processors", ()):
        outer.add_event_processor(_apply_root_patch)

    def failed() -> None:
        patch.failed = True

    call._root_failed = failed


def _transaction_span(call: Call, ambient: Any, facts: CallFacts) -> None:
    if ambient is not None:
        span = ambient.start_child(op=facts.op, name=facts.span_name)
    else:
        span = sentry_sdk.start_transaction(op=facts.op, name=facts.span_name, source="custom")  # type: ignore[attr-defined,unused-ignore]
    _update_data(span, facts.data)
    span.__enter__()
    call._span = span


# -- span streaming (sentry-sdk 3.x, and 2.x with trace_lifecycle="stream") --------------------------------

_USER_ATTRIBUTES = (("user.id", "id"), ("user.name", "username"), ("user.email", "email"))
"""The SDK's own mapping of a scope user onto span attributes (``username`` is ``user.name``)."""


def _span_attributes(facts: CallFacts, existing: Mapping[str, Any]) -> dict[str, Any]:
    """Tags (never over an attribute already set), then the rpc span data."""
    attributes: dict[str, Any] = {k: v for k, v in facts.tags.items() if k not in existing}
    attributes.update(facts.data)
    return attributes


def _user_info_allowed() -> bool:
    options = sentry_sdk.get_client().options
    collection = options.get("data_collection")
    if isinstance(collection, Mapping) and "user_info" in collection:
        return bool(collection["user_info"])
    return True


def _stream_root(call: Call, ambient: Any, facts: CallFacts) -> None:
    root = getattr(ambient, "_segment", None) or ambient
    if root.sampled is not True:
        return
    root.set_attributes(_span_attributes(facts, root.get_attributes()))
    if facts.user is not None and _user_info_allowed():
        for attribute, field in _USER_ATTRIBUTES:
            if field in facts.user:
                root.set_attribute(attribute, facts.user[field])
    if facts.name is not None:
        root.name = facts.name
        root.set_attribute("sentry.segment.name.source", "custom")

    def failed() -> None:
        root.status = "error"
        if root.get_attributes().get("sentry.op") == "http.server":
            _mark_failed(root)  # the WSGI integration will set the HTTP-derived status later

    call._root_failed = failed


def _stream_span(call: Call, ambient: Any, facts: CallFacts) -> None:
    from sentry_sdk.traces import new_trace, start_span

    attributes = _span_attributes(facts, {})
    attributes["sentry.op"] = facts.op
    if ambient is None:
        attributes["sentry.segment.name.source"] = "custom"
        # A segment takes its trace from the scope's propagation context, which every
        # call's fork inherits from the serving thread: without this, all calls of a
        # pipe connection would be one trace (2.x's start_transaction starts a new one).
        # The forked scopes take the new context; the thread's own is left alone.
        new_trace()
    call._span = start_span(name=facts.span_name, attributes=attributes)
    call._stream = True


# The WSGI integration sets the segment's status from the HTTP status when the
# response starts, after the call has ended, and an RPC error is HTTP 200. The
# HTTP app calls after_start_response() once the status line is decided, in the
# request's context, and a segment whose call failed gets its "error" back.
_failed_segments: dict[str, Any] = {}  # span id -> segment
_failed_lock = threading.Lock()


def _mark_failed(root: Any) -> None:
    with _failed_lock:
        if len(_failed_segments) >= _PENDING_MAX:
            _failed_segments.pop(next(iter(_failed_segments)))
        _failed_segments[root.span_id] = root


def after_start_response() -> None:
    """Called by the HTTP app after ``start_response``: re-apply ``error`` to a failed call's segment.

    Never raises (it runs on every HTTP response while this module is imported).
    """
    if not _failed_segments:
        return
    try:
        current = getattr(_SCOPE.get_current_scope(), "_span", None)
        if current is None:
            return
        segment = getattr(current, "_segment", None) or current
        with _failed_lock:
            failed = _failed_segments.pop(segment.span_id, None)
        if failed is not None:
            failed.status = "error"
    except Exception:  # pragma: no cover - defensive: the SDK changed under us
        return
