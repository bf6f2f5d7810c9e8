"""The Sentry dispatch hook: one call's facts, its forked scope, its events (internal).

:class:`_SentryDispatchHook` is what :func:`vgi_rpc.sentry.instrument_server_sentry`
attaches. Per dispatch it works out the call's facts from the config and the call
alone (tags, span data, the ``rpc`` context, the user, the redaction; values as
Sentry stores them, :mod:`vgi_rpc._sentry_values`), forks the call's isolation
scope and writes them there, and hands the root-span and own-span part to
:mod:`vgi_rpc._sentry_spans`. At dispatch end it captures the original exception
inside the call's scope, finishes the span and leaves the scope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from vgi_rpc import _sentry_sdk as sdk  # first: a missing SDK raises an ImportError naming the extra
from vgi_rpc import _sentry_spans as spans
from vgi_rpc._sentry_config import ParamRedactor, SentryConfig, default_redactor
from vgi_rpc._sentry_redaction import NO_REDACTION, OwnFacts, Redaction, redaction_of
from vgi_rpc._sentry_values import fits_user_field, span_value, stored_tag_text, tag_value
from vgi_rpc.auth import AuthContext
from vgi_rpc.hooks import DispatchInfo

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

__all__ = ["_SentryDispatchHook"]  # internal: vgi_rpc.sentry re-exports it under this name

_logger = logging.getLogger("vgi_rpc.sentry")


class _SentryDispatchHook:
    """The Sentry dispatch hook: one per instrumented server, shared by all its threads.

    Each dispatch is two steps: :meth:`_collect` works out the call's facts (names,
    tags, span data, context, user, redaction) from the config and the call alone,
    without touching the SDK; :meth:`_apply` writes them to the call's forked scope
    and, through :mod:`vgi_rpc._sentry_sdk`, to the root span and the hook's own span
    of whichever SDK generation is installed.
    """

    __slots__ = ("_config", "_processors", "_reads_params", "_redactor", "_server_id", "_service", "_static")

    def __init__(self, config: SentryConfig, service: str, server_id: str) -> None:
        self._config = config
        self._redactor: ParamRedactor = config.param_redactor or default_redactor
        self._reads_params = bool(config.record_params or config.tag_params)
        self._service = service
        self._server_id = server_id
        self._static: dict[tuple[str, str, str, str], _Facts] = {}
        self._processors: dict[tuple[str, str, str, str], Callable[[Event, Hint], Event]] = {}

    def __repr__(self) -> str:
        return f"_SentryDispatchHook(service={self._service!r}, config={self._config!r})"

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        """Fork the call's scope, record its context and (optionally) start its span."""
        facts = self._collect(info, auth, kwargs)
        call, ambient, outer = sdk.enter()
        try:
            self._apply(call, ambient, outer, facts)
        except BaseException:
            sdk.leave(call)
            raise
        return call

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        """Capture the original exception inside the call's scope, finish the span, leave the scope."""
        if not isinstance(token, sdk.Call):
            return
        cfg = self._config
        try:
            if (
                error is not None
                and cfg.enable_error_capture
                and not isinstance(error, cfg.ignored_exceptions)
            ):
                sdk.capture_exception(error)
        finally:
            try:
                spans.end(token, error is not None)
            finally:
                sdk.leave(token)

    # -- step 1: the call's facts (no SDK) --------------------------------------------------

    def _collect(self, info: DispatchInfo, auth: AuthContext, kwargs: Mapping[str, Any] | None) -> _Facts:
        """The call's facts; the part of them that depends on the method alone is built once.

        For a call of an anonymous caller (no domain, no claims) outside a
        stream, everything but the params comes from the config and the method:
        those facts are shared read-only (the SDK copies tags, data and the
        ``rpc`` context into its own objects). Recorded params without secrets
        and without ``tag_params`` tags only add span data to a copy of them.
        """
        params = self._params(kwargs) if kwargs is not None and self._reads_params else None
        if info.stream_id is None and not auth.authenticated and not auth.domain and not auth.claims:
            key = (info.name, info.method_type, info.service, info.server_id)
            facts = self._static.get(key)
            if facts is None:
                facts = self._collect_each_time(info, auth, None)
                if len(self._static) < _STATIC_FACTS_MAX:
                    self._static[key] = facts
            if params is None:
                return facts
            if not params.redaction and not params.tags:
                trace = facts.trace
                data = trace.data
                if params.data:
                    data = {**data, **params.data}
                return _Facts(
                    sdk.CallFacts(
                        name=trace.name,
                        span_name=trace.span_name,
                        op=trace.op,
                        tags=trace.tags,
                        data=data,
                        context=trace.context,
                        user=trace.user,
                        scrub=None,
                    ),
                    facts.processor,
                )
        return self._collect_each_time(info, auth, params)

    def _params(self, kwargs: Mapping[str, Any]) -> _Params:
        """The call's params as span data and tags, after the redactor, and what to hide."""
        cfg = self._config
        kept = self._redact(kwargs)
        redaction = redaction_of(kwargs, kept)
        data: dict[str, Any] = {}
        tags: dict[str, str] = {}
        if cfg.record_params:
            for key, value in kept.items():
                recorded = span_value(key, value, cfg.max_param_value_bytes)
                if recorded is not None:
                    data[f"rpc.param.{key}"] = redaction.value(recorded) if redaction else recorded
        for key in cfg.tag_params:
            if key in kept:
                text = tag_value(kept[key])
                if text is not None:
                    tags[f"rpc.param.{key}"] = redaction.text(text) if redaction else text
        return _Params(data, tags, redaction)

    def _collect_each_time(self, info: DispatchInfo, auth: AuthContext, params: _Params | None) -> _Facts:
        cfg = self._config
        method = info.name
        service = info.service or self._service

        tags: dict[str, str] = dict(cfg.custom_tags)
        span_data: dict[str, Any] = {
            "rpc.system": "vgi_rpc",
            "rpc.service": service,
            "rpc.method": method,
            "rpc.method_type": info.method_type,
        }
        if info.stream_id is not None:
            span_data["rpc.stream_id"] = info.stream_id

        redaction = NO_REDACTION
        if params is not None:
            redaction = params.redaction
            span_data.update(params.data)
            tags.update(params.tags)

        context: dict[str, str] | None = None
        user: dict[str, str] | None = None
        if cfg.record_request_context:
            server_id = info.server_id or self._server_id
            context = {
                "method": method,
                "method_type": info.method_type,
                "service": service,
                "server_id": server_id,
            }
            span_data["rpc.server_id"] = server_id  # the rest of the context is span data already
            user = _user_of(auth, cfg.user_claim_map)
            domain = stored_tag_text(auth.domain) if auth.domain else None
            if domain is not None:
                tags["auth.domain"] = domain
            tags["auth.authenticated"] = "true" if auth.authenticated else "false"
            for claim, tag in cfg.claim_tags.items():
                text = tag_value(auth.claims.get(claim))
                if text is not None:
                    tags[tag] = text
        tags["rpc.method"] = method
        tags["rpc.method_type"] = info.method_type

        own = OwnFacts(tags, user, context)
        rpc_name = f"rpc {method}" if cfg.set_transaction_name else None
        processor: Callable[[Event, Hint], Event] | None = None
        if redaction:
            processor = _event_processor(rpc_name, redaction, own)
        elif rpc_name is not None or context is not None:
            # without secrets the processor depends on the method alone: one per method
            method_key = (method, info.method_type, service, info.server_id)
            processor = self._processors.get(method_key)
            if processor is None:
                processor = _event_processor(rpc_name, redaction, own)
                if len(self._processors) < _STATIC_FACTS_MAX:
                    self._processors[method_key] = processor
        scrub: Callable[[dict[str, Any]], None] | None = None
        if redaction:

            def scrub(event: dict[str, Any]) -> None:
                redaction.event(event, own)

        trace = sdk.CallFacts(
            name=rpc_name,
            span_name=f"vgi_rpc/{method}",
            op=cfg.op_name,
            tags=tags,
            data=span_data,
            context=context,
            user=user,
            scrub=scrub,
        )
        return _Facts(trace, processor)

    # -- step 2: applying them ------------------------------------------------------------------

    def _apply(self, call: sdk.Call, ambient: Any, outer: Any, facts: _Facts) -> None:
        trace = facts.trace
        # The call's own scope: everything captured during the call sees it.
        scope = call.scope
        scope.set_tags(trace.tags)
        if trace.user is not None:
            scope.set_user(trace.user)
        if facts.processor is not None:
            scope.add_event_processor(facts.processor)
        # The ambient root (HTTP: the WSGI transaction or segment) is sent after this
        # call's scope is gone, so it gets the same facts directly; then the hook's span.
        spans.begin(call, ambient, outer, trace, self._config.enable_performance)

    def _redact(self, kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
        """The kwargs the redactor lets through; ``{}`` (fail closed, one WARNING) if it misbehaves."""
        try:
            kept = self._redactor(kwargs)
        except Exception:
            _logger.warning("param_redactor %r failed; no params recorded", self._redactor, exc_info=True)
            return {}
        if not isinstance(kept, Mapping):
            _logger.warning(
                "param_redactor %r returned %s, not a mapping; no params recorded",
                self._redactor,
                type(kept).__name__,
            )
            return {}
        unknown = [key for key in kept if key not in kwargs]
        if unknown:
            _logger.warning(
                "param_redactor %r returned keys that are not params of the call (%s); no params recorded",
                self._redactor,
                ", ".join(sorted(map(repr, unknown))[:5]),
            )
            return {}
        return kept


_STATIC_FACTS_MAX = 4096
"""At most this many (method, service, server) facts are kept per hook (one per method in practice)."""


@dataclass(frozen=True, slots=True)
class _Params:
    """One call's params as the hook records them: span data, tags, and the redaction they imply."""

    data: dict[str, Any]
    tags: dict[str, str]
    redaction: Redaction


@dataclass(frozen=True, slots=True)
class _Facts:
    """One call's facts: what goes to the SDK, and the processor for the call's scope."""

    trace: sdk.CallFacts
    processor: Callable[[Event, Hint], Event] | None


def _user_of(auth: AuthContext, claim_map: Mapping[str, str]) -> dict[str, str] | None:
    """The Sentry user of an authenticated caller (``None`` for anonymous ones).

    ``id`` is the principal; each field of *claim_map* is its claim when that is a
    non-empty string; ``username`` falls back to the principal when its claim
    gives nothing (absent, empty, not a string, or not mapped). A value longer
    than Relay keeps in its field (:data:`USER_FIELD_MAX_CHARS`) gives nothing
    too: a cut email or name is a wrong one (B8).
    """
    if not auth.authenticated:
        return None
    user: dict[str, str] = {}
    principal = auth.principal or ""
    if not fits_user_field("id", principal):
        principal = ""
    if principal:
        user["id"] = principal
    for sentry_field, claim in claim_map.items():
        value = auth.claims.get(claim)
        if isinstance(value, str) and value and fits_user_field(sentry_field, value):
            user[sentry_field] = value
    if "username" not in user and principal:
        user["username"] = principal
    return user or None


def _event_processor(
    rpc_name: str | None, redaction: Redaction, own: OwnFacts
) -> Callable[[Event, Hint], Event]:
    """Processor on the call's own scope: hides redacted values, adds the ``rpc`` context, names events.

    It is appended after every processor the call's scope inherited (Falcon's
    route-template naming included), so its name wins. The ``rpc`` context is
    added here, to events only, rather than on the scope: a transaction carries
    the same facts as span data (``rpc.*``, ``rpc.server_id``), and every field
    a transaction carries twice is serialised twice. Transactions are redacted
    but not renamed: the hook's own is named ``vgi_rpc/<method>``; the ambient
    one is handled by the adapter (:mod:`vgi_rpc._sentry_sdk`).
    """
    context = own.context

    def process(event: Event, hint: Hint) -> Event:
        if redaction:
            sdk.attach_stack_like_the_sdk(cast("dict[str, Any]", event))  # else added after us, unredacted
            redaction.event(cast("dict[str, Any]", event), own)
        if event.get("type") == "transaction":
            return event
        if context is not None:
            contexts = event.get("contexts")
            if contexts is None:
                event["contexts"] = contexts = {}
            contexts["rpc"] = dict(context)
        if rpc_name is not None:
            event["transaction"] = rpc_name
            event["transaction_info"] = {"source": "custom"}
        return event

    return process
