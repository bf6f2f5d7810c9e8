"""One dispatch in the Sentry SDK: its forked scope, its root span, its own span, on both generations (internal).

The SDK adapter of the hook. :meth:`DispatchScope.enter` forks the call's
isolation scope and writes the call's facts (:class:`~vgi_rpc._sentry_facts.CallFacts`,
assembled by :mod:`vgi_rpc._sentry_hook`) to it, to the call's root span and to
the hook's own span; :meth:`DispatchScope.end` records the outcome and
:meth:`DispatchScope.leave` restores the scopes the call started in. The
:class:`DispatchScope` is the hook's token and the only owner of that state.
What differs between the SDK generations is here (:mod:`vgi_rpc._sentry_sdk`
says which one is installed):

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

Importing this module registers :func:`after_start_response` with
:func:`vgi_rpc._telemetry.after_status_line`: the HTTP app runs it after each
``start_response`` without importing Sentry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import sentry_sdk
import sentry_sdk.scope
import sentry_sdk.tracing_utils

from vgi_rpc._sentry_facts import CallFacts
from vgi_rpc._sentry_sdk import GENERATION, OK, PROBLEM, start_sdk_threads_outside_calls
from vgi_rpc._sentry_values import USER_ATTRIBUTES
from vgi_rpc._telemetry import after_status_line, reset_context_var
from vgi_rpc._trace_in import BAGGAGE, SENTRY_TRACE, incoming_trace

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

__all__ = ["DispatchScope", "after_start_response"]

_Scope = sentry_sdk.Scope
# where both generations keep the current and the isolation scope (None: use isolation_scope())
_CURRENT = getattr(sentry_sdk.scope, "_current_scope", None)
_ISOLATION = getattr(sentry_sdk.scope, "_isolation_scope", None)


def _streamed_span_type() -> type | None:
    try:
        from sentry_sdk.traces import StreamedSpan
    except ImportError:  # sentry-sdk 2.x before span streaming existed
        return None
    return StreamedSpan


_STREAMED_SPAN = _streamed_span_type() if PROBLEM is None else None
_PROPAGATION_CONTEXT: Any = getattr(sentry_sdk.tracing_utils, "PropagationContext", None)
_BAGGAGE_TYPE: Any = getattr(sentry_sdk.tracing_utils, "Baggage", None)


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


class DispatchScope:
    """One dispatch's Sentry state, and the hook's token: its forked scope, the root it annotated, its own span.

    Made by :meth:`enter`, finished by :meth:`end` then :meth:`leave`, in the
    dispatch's context. Only this class reads or writes its fields.
    """

    __slots__ = ("_current_token", "_isolation_token", "_root_failed", "_span", "_stream", "scope")

    def __init__(self, current_token: Any, isolation_token: Any, scope: Any) -> None:
        self._current_token = current_token
        self._isolation_token = isolation_token
        self.scope = scope
        """The call's forked isolation scope."""
        self._root_failed: Callable[[], None] | None = None
        self._span: Any = None
        self._stream = False

    @classmethod
    def enter(cls, facts: CallFacts, performance: bool, metadata: Mapping[str, str]) -> DispatchScope:
        """Fork the call's scope, write *facts* to it and to the root, and (*performance*) start its span.

        With no ambient span (the pipe; HTTP without Sentry's WSGI integration), the
        caller's trace context in *metadata* (see :mod:`vgi_rpc._trace_in`) is
        continued on the forks: the call's span joins the caller's trace and
        inherits its sampling decision, and its error events carry the trace id.
        With an ambient span, the integration that started it already continued it.

        What ``sentry_sdk.isolation_scope()`` does on both generations (fork the
        current scope and the isolation scope, make the forks current), without the
        generator-based context manager around it: the fork is the one part of the
        hook that isolation (B2) requires, so nothing else is spent on it. The
        ambient span and the outer scope are read *before* the fork: the root lives
        on the outer scope and outlives the call. On failure the fork is left.
        """
        start_sdk_threads_outside_calls()  # before anything of this call can start them (issue 22)
        outer = _Scope.get_current_scope()
        ambient = getattr(outer, "_span", None)  # 2.x's Scope.span hides a streamed span: read the slot
        isolation = _Scope.get_isolation_scope()
        if _CURRENT is None or _ISOLATION is None:  # pragma: no cover - an SDK without the two context vars
            cm = sentry_sdk.isolation_scope()
            call = cls(cm, None, cm.__enter__())
        else:
            current_token = _CURRENT.set(outer.fork())
            scope = isolation.fork()
            call = cls(current_token, _ISOLATION.set(scope), scope)
        try:
            call._write(facts, ambient, outer, performance, metadata)
        except BaseException:
            call.leave()
            raise
        return call

    def _write(
        self, facts: CallFacts, ambient: Any, outer: Any, performance: bool, metadata: Mapping[str, str]
    ) -> None:
        # The call's own scope: everything captured during the call sees it.
        scope = self.scope
        scope.set_tags(facts.tags)
        if facts.user is not None:
            scope.set_user(facts.user)
        if facts.processor is not None:
            scope.add_event_processor(facts.processor)
        # The ambient root (HTTP: the WSGI transaction or segment) is sent after this
        # call's scope is gone, so it gets the same facts directly; then the hook's span.
        incoming: dict[str, str] | None = None
        if ambient is None:
            streaming = _streaming_enabled()
            incoming = incoming_trace(metadata) if metadata else None
            if incoming is not None:
                _continue_trace(incoming, streaming, scope)
        else:
            streaming = _STREAMED_SPAN is not None and isinstance(ambient, _STREAMED_SPAN)
            if streaming:
                self._root_failed = _stream_root(ambient, facts)
            else:
                self._root_failed = _transaction_root(ambient, outer, facts)
        if performance:
            if streaming:
                self._span = _stream_span(ambient, facts, continued=incoming is not None)
                self._stream = True
            else:
                self._span = _transaction_span(ambient, facts, incoming)

    def end(self, failed: bool) -> None:
        """Record the outcome on the root and finish the hook's own span (never raises)."""
        if failed and self._root_failed is not None:
            self._root_failed()
        span = self._span
        if span is None:
            return
        if self._stream:
            span.status = "error" if failed else OK
            span.end()
        else:
            span.set_status("internal_error" if failed else OK)
            span.__exit__(None, None, None)  # finishes and sends; never raises

    def leave(self) -> None:
        """Leave the call's scope (after :meth:`end`); restores the scopes the call started in."""
        if self._isolation_token is None:  # pragma: no cover - see enter()
            self._current_token.__exit__(None, None, None)
            return
        reset_context_var(_CURRENT, self._current_token)  # type: ignore[arg-type]
        reset_context_var(_ISOLATION, self._isolation_token)  # type: ignore[arg-type]


# -- sentry-sdk 2.x transactions --------------------------------------------------------------------------


@dataclass(slots=True)
class _RootPatch:
    """What to apply to an ambient transaction's event when it is sent."""

    facts: CallFacts
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
    facts = patch.facts
    if facts.redaction:  # e.g. a span the implementation started with a secret in its description
        facts.redaction.event(cast("dict[str, Any]", event), facts)
    if facts.name is not None:
        event["transaction"] = facts.name
        event["transaction_info"] = {"source": "custom"}
    if facts.user is not None:
        event["user"] = {**(event.get("user") or {}), **facts.user}
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


def _transaction_root(ambient: Any, outer: Any, facts: CallFacts) -> Callable[[], None] | None:
    """Write *facts* on the ambient transaction; returns what marks it failed (``None``: nothing to mark)."""
    root = ambient.containing_transaction
    if root is None:
        return None
    _update_data(root, facts.data)
    for key, value in facts.tags.items():
        root.set_tag(key, value)
    if facts.name is not None:
        root.name = facts.name
        root.source = "custom"
    if not root.sampled:
        return None
    patch = _RootPatch(facts)
    with _pending_lock:
        if len(_pending) >= _PENDING_MAX:  # transactions dropped before our processor ran
            _pending.pop(next(iter(_pending)))
        _pending[root.span_id] = patch
    # one registration per scope: the scope may outlive this call (pipe + user transaction)
    if _apply_root_patch not in getattr(outer, "_event_processors", ()):
        outer.add_event_processor(_apply_root_patch)

    def failed() -> None:
        patch.failed = True

    return failed


def _continue_trace(incoming: dict[str, str], streaming: bool, isolation: Any) -> None:
    """Make *incoming* the propagation context of the call's two forked scopes (both generations).

    What ``continue_trace`` does (2.x: on the isolation scope; 3.x: on both), but
    parsed once per distinct header pair rather than twice per call: the SDK's
    parse (baggage, a seeded ``random.Random`` for ``sample_rand``) cost about 100
    us a call, and every call a caller makes inside one span sends the same pair.
    """
    context = _propagation_context(incoming)
    if context is None:  # pragma: no cover - an SDK without the parser we use: its own way
        if streaming:
            from sentry_sdk.traces import continue_trace

            continue_trace(incoming)
        else:
            isolation.generate_propagation_context(incoming)
            _Scope.get_current_scope().generate_propagation_context(incoming)
        return
    isolation._propagation_context = context
    _Scope.get_current_scope()._propagation_context = context


_parsed: dict[tuple[int, str, str | None], Any] = {}  # (client, sentry-trace, baggage) -> the SDK's parse
_PARSED_MAX = 256


def _propagation_context(incoming: dict[str, str]) -> Any:
    """A fresh ``PropagationContext`` for *incoming*: a copy of the SDK's own parse, cached by value.

    The parse depends only on the two header values (``sample_rand`` is seeded by
    the trace id), so a new context from the parsed values is what parsing again
    would give; it has its own span id and baggage, so no call reaches another's.
    ``None`` when this SDK has no ``PropagationContext.from_incoming_data``.
    """
    sentry_trace = incoming[SENTRY_TRACE]
    key = (id(sentry_sdk.get_client()), sentry_trace, incoming.get(BAGGAGE))  # options decide too
    template = _parsed.get(key)
    if template is None:
        parse = getattr(_PROPAGATION_CONTEXT, "from_incoming_data", None)
        template = parse(incoming) if parse is not None else None
        if template is None:
            return None
        if template.trace_id != sentry_trace[:32]:
            return template  # the SDK declined to continue it (strict_trace_continuation): a fresh trace each call
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[key] = template
    # A new context from the parsed values (cheaper than copy.copy of a slotted object)
    if _BAGGAGE_TYPE is not None and hasattr(template, "baggage"):  # 2.4x+ and 3.x
        parsed = template.baggage
        baggage = (
            None
            if parsed is None
            else _BAGGAGE_TYPE(dict(parsed.sentry_items), parsed.third_party_items, parsed.mutable)
        )
        context = _PROPAGATION_CONTEXT(
            trace_id=template.trace_id,
            parent_span_id=template.parent_span_id,
            parent_sampled=template.parent_sampled,
            baggage=baggage,
        )
    else:  # older 2.x: the dynamic sampling context is a plain dict
        dsc = template.dynamic_sampling_context
        context = _PROPAGATION_CONTEXT(
            trace_id=template.trace_id,
            parent_span_id=template.parent_span_id,
            parent_sampled=template.parent_sampled,
            dynamic_sampling_context=None if dsc is None else dict(dsc),
        )
    return context


def _transaction_span(ambient: Any, facts: CallFacts, incoming: dict[str, str] | None) -> Any:
    """Start the hook's own span: a child of the ambient one, else a transaction ``vgi_rpc/<method>``.

    The transaction continues *incoming* (the caller's trace and sampling decision) when given.
    """
    if ambient is not None:
        span = ambient.start_child(op=facts.op, name=facts.span_name)
    elif incoming is not None:
        continued = sentry_sdk.continue_trace(incoming, op=facts.op, name=facts.span_name, source="custom")  # type: ignore[call-arg,func-returns-value,unused-ignore]
        span = sentry_sdk.start_transaction(continued)  # type: ignore[attr-defined,unused-ignore]
    else:
        span = sentry_sdk.start_transaction(op=facts.op, name=facts.span_name, source="custom")  # type: ignore[attr-defined,unused-ignore]
    _update_data(span, facts.data)
    span.__enter__()
    return span


# -- span streaming (sentry-sdk 3.x, and 2.x with trace_lifecycle="stream") --------------------------------


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


def _stream_root(ambient: Any, facts: CallFacts) -> Callable[[], None] | None:
    """Write *facts* on the ambient span's segment; returns what marks it failed (``None``: nothing to mark)."""
    root = getattr(ambient, "_segment", None) or ambient
    if root.sampled is not True:
        return None
    root.set_attributes(_span_attributes(facts, root.get_attributes()))
    if facts.user is not None and _user_info_allowed():
        for attribute, field in USER_ATTRIBUTES:
            if field in facts.user:
                root.set_attribute(attribute, facts.user[field])
    if facts.name is not None:
        root.name = facts.name
        root.set_attribute("sentry.segment.name.source", "custom")

    def failed() -> None:
        root.status = "error"
        if root.get_attributes().get("sentry.op") == "http.server":
            _mark_failed(root)  # the WSGI integration will set the HTTP-derived status later

    return failed


def _stream_span(ambient: Any, facts: CallFacts, *, continued: bool) -> Any:
    """Start the hook's own streamed span (a segment when nothing is ambient: of the caller's trace if *continued*)."""
    from sentry_sdk.traces import new_trace, start_span

    attributes = _span_attributes(facts, {})
    attributes["sentry.op"] = facts.op
    if ambient is None:
        attributes["sentry.segment.name.source"] = "custom"
    if ambient is None and not continued:
        # A segment takes its trace from the scope's propagation context, which every
        # call's fork inherits from the serving thread: without this, all calls of a
        # pipe connection would be one trace (2.x's start_transaction starts a new one).
        # The forked scopes take the new context; the thread's own is left alone.
        new_trace()
    return start_span(name=facts.span_name, attributes=attributes)


# The WSGI integration sets the segment's status from the HTTP status when the
# response starts, after the call has ended, and an RPC error is HTTP 200. The
# HTTP app runs after_start_response() once the status line is decided, in the
# request's context (registered below), and a segment whose call failed gets its "error" back.
_failed_segments: dict[str, Any] = {}  # span id -> segment
_failed_lock = threading.Lock()


def _mark_failed(root: Any) -> None:
    with _failed_lock:
        if len(_failed_segments) >= _PENDING_MAX:
            _failed_segments.pop(next(iter(_failed_segments)))
        _failed_segments[root.span_id] = root


def after_start_response() -> None:
    """Called by the HTTP app after ``start_response``: re-apply ``error`` to a failed call's segment.

    Never raises (it runs on every HTTP response once this module is imported).
    """
    if not _failed_segments:
        return
    try:
        current = getattr(_Scope.get_current_scope(), "_span", None)
        if current is None:
            return
        segment = getattr(current, "_segment", None) or current
        with _failed_lock:
            failed = _failed_segments.pop(segment.span_id, None)
        if failed is not None:
            failed.status = "error"
    except Exception:  # pragma: no cover - defensive: the SDK changed under us
        return


after_status_line(after_start_response)  # the HTTP app's seam: vgi_rpc._telemetry, no import either way
