"""The Sentry dispatch hook: assembles one call's facts and hands them to the SDK adapter (internal).

:class:`_SentryDispatchHook` is what :func:`vgi_rpc.sentry.instrument_server_sentry`
attaches. Per dispatch it assembles the call's :class:`~vgi_rpc._sentry_facts.CallFacts`
from the config and the call alone: names, tags, span data, the ``rpc``
context, the user (values as Sentry stores them, :mod:`vgi_rpc._sentry_values`),
the params and what must be hidden (:mod:`vgi_rpc._sentry_facts`) and the event
processor of the call's scope. :class:`~vgi_rpc._sentry_dispatch.DispatchScope`
writes them to the SDK. At dispatch end the hook captures the original exception
inside the call's scope, then the adapter finishes the span and leaves the scope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from vgi_rpc import _sentry_sdk as sdk  # first: a missing SDK raises an ImportError naming the extra
from vgi_rpc._sentry_config import SentryConfig
from vgi_rpc._sentry_dispatch import DispatchScope
from vgi_rpc._sentry_facts import NO_REDACTION, CallFacts, ParamRecorder, RecordedParams
from vgi_rpc._sentry_values import fits_user_field, stored_tag_text, tag_value
from vgi_rpc._telemetry import METHOD, METHOD_TYPE, SERVER_ID, STREAM_ID, rpc_attributes
from vgi_rpc.auth import AuthContext
from vgi_rpc.hooks import DispatchInfo

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

__all__ = ["_SentryDispatchHook"]  # internal: vgi_rpc.sentry re-exports it under this name

_logger = logging.getLogger("vgi_rpc.sentry")

_STATIC_FACTS_MAX = 4096
"""At most this many (method, service, server) facts are kept per hook (one per method in practice)."""

_MethodKey = tuple[str, str, str, str]
"""``(method, method type, service, server id)``: what the facts of an anonymous unary call depend on."""


class _SentryDispatchHook:
    """The Sentry dispatch hook: one per instrumented server, shared by all its threads.

    Each dispatch is two steps: :meth:`_collect` assembles the call's facts from the
    config and the call alone, without touching the SDK; ``DispatchScope.enter``
    writes them to the call's forked scope, its root span and the hook's own span,
    on whichever SDK generation is installed.
    """

    __slots__ = ("_config", "_params", "_processors", "_reads_params", "_server_id", "_service", "_static")

    def __init__(self, config: SentryConfig, service: str, server_id: str) -> None:
        self._config = config
        self._params = ParamRecorder(config)
        self._reads_params = bool(config.record_params or config.tag_params)
        self._service = service
        self._server_id = server_id
        self._static: dict[_MethodKey, CallFacts] = {}
        self._processors: dict[_MethodKey, Callable[[Event, Hint], Event]] = {}

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
        return DispatchScope.enter(
            self._collect(info, auth, kwargs), self._config.enable_performance, transport_metadata
        )

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        """Capture the original exception inside the call's scope, finish the span, leave the scope."""
        if not isinstance(token, DispatchScope):
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
                token.end(error is not None)
            finally:
                token.leave()

    # -- the call's facts (no SDK) ---------------------------------------------------------------------

    def _collect(self, info: DispatchInfo, auth: AuthContext, kwargs: Mapping[str, Any] | None) -> CallFacts:
        """The call's facts; the part of them that depends on the method alone is built once.

        For a call of an anonymous caller (no domain, no claims) outside a
        stream, everything but the params comes from the config and the method:
        those facts are shared read-only (the SDK copies tags, data and the
        ``rpc`` context into its own objects). Recorded params without secrets
        and without ``tag_params`` tags only add span data to a copy of them.
        """
        params = self._params.record(kwargs) if kwargs is not None and self._reads_params else None
        if info.stream_id is None and not auth.authenticated and not auth.domain and not auth.claims:
            key = (info.name, info.method_type, info.service, info.server_id)
            facts = self._static.get(key)
            if facts is None:
                facts = self._assemble(info, auth, None)
                if len(self._static) < _STATIC_FACTS_MAX:
                    self._static[key] = facts
            if params is None:
                return facts
            data, tags, redaction = params
            if not redaction and not tags:
                return replace(facts, data={**facts.data, **data}) if data else facts
        return self._assemble(info, auth, params)

    def _assemble(self, info: DispatchInfo, auth: AuthContext, params: RecordedParams | None) -> CallFacts:
        """The call's facts, built from the config, the call and its recorded params."""
        cfg = self._config
        method = info.name
        service = info.service or self._service
        data = rpc_attributes(info, service=service)
        if info.stream_id is not None:
            data[STREAM_ID] = info.stream_id
        tags: dict[str, str] = dict(cfg.custom_tags)
        redaction = NO_REDACTION
        if params is not None:
            params_data, params_tags, redaction = params
            data.update(params_data)
            tags.update(params_tags)
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
            data[SERVER_ID] = server_id  # the rest of the context is span data already
            user = _user_of(auth, cfg.user_claim_map)
            _add_auth_tags(tags, auth, cfg.claim_tags)
        tags[METHOD] = method  # on every call, whatever record_request_context says
        tags[METHOD_TYPE] = info.method_type
        facts = CallFacts(
            name=f"rpc {method}" if cfg.set_transaction_name else None,
            span_name=f"vgi_rpc/{method}",
            op=cfg.op_name,
            tags=tags,
            data=data,
            context=context,
            user=user,
            redaction=redaction,
        )
        facts.processor = self._processor(facts, info, service)
        return facts

    def _processor(
        self, facts: CallFacts, info: DispatchInfo, service: str
    ) -> Callable[[Event, Hint], Event] | None:
        """The event processor of the call's scope: one per call with secrets, else one per method."""
        if facts.redaction:
            return _event_processor(facts)
        if facts.name is None and facts.context is None:
            return None
        # without secrets the processor depends on the method alone (its name and context)
        method_key = (info.name, info.method_type, service, info.server_id)
        processor = self._processors.get(method_key)
        if processor is None:
            processor = _event_processor(facts)
            if len(self._processors) < _STATIC_FACTS_MAX:
                self._processors[method_key] = processor
        return processor


def _add_auth_tags(tags: dict[str, str], auth: AuthContext, claim_tags: Mapping[str, str]) -> None:
    """``auth.domain``, ``auth.authenticated`` and the ``claim_tags`` of the caller, as Sentry stores them."""
    domain = stored_tag_text(auth.domain) if auth.domain else None
    if domain is not None:
        tags["auth.domain"] = domain
    tags["auth.authenticated"] = "true" if auth.authenticated else "false"
    for claim, tag in claim_tags.items():
        text = tag_value(auth.claims.get(claim))
        if text is not None:
            tags[tag] = text


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


def _event_processor(facts: CallFacts) -> Callable[[Event, Hint], Event]:
    """Processor on the call's own scope: hides redacted values, adds the ``rpc`` context, names events.

    It is appended after every processor the call's scope inherited (Falcon's
    route-template naming included), so its name wins. The ``rpc`` context is
    added here, to events only, rather than on the scope: a transaction carries
    the same facts as span data (``rpc.*``, ``rpc.server_id``), and every field
    a transaction carries twice is serialised twice. Transactions are redacted
    but not renamed: the hook's own is named ``vgi_rpc/<method>``; the ambient
    one is handled by the adapter (:mod:`vgi_rpc._sentry_dispatch`).
    """
    rpc_name = facts.name
    context = facts.context
    redaction = facts.redaction

    def process(event: Event, hint: Hint) -> Event:
        if redaction:
            sdk.attach_stack_like_the_sdk(cast("dict[str, Any]", event))  # else added after us, unredacted
            redaction.event(cast("dict[str, Any]", event), facts)
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
