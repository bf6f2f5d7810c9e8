"""One call's facts, and what of its params may be recorded and what must be hidden (internal).

:class:`CallFacts` is everything the Sentry hook records for one call; the hook
(:mod:`vgi_rpc._sentry_hook`) assembles it and the SDK adapter
(:mod:`vgi_rpc._sentry_dispatch`) writes it. The params part is decided here,
in one pass over a call's kwargs (:class:`ParamRecorder`): the user's
``param_redactor`` runs (failing closed), what it let through becomes
``rpc.param.*`` span data and ``tag_params`` tags (values as Sentry stores
them, :mod:`vgi_rpc._sentry_values`), and what it removed or replaced becomes
the call's :class:`Redaction`. That redaction hides those secrets in every
event captured during the call -- whole values equal to a secret, secrets of at
least :data:`MIN_SCRUB_CHARS` characters inside free text, frame variables
named like a redacted param -- and never rewrites structure (ids, keys, names,
exception types, SDK contexts, what the hook itself wrote): claims B4 and B6.
No SDK is used here: events are plain dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vgi_rpc._sentry_config import ParamRedactor, SentryConfig, default_redactor
from vgi_rpc._sentry_values import span_value, tag_value
from vgi_rpc._telemetry import PARAM_PREFIX

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

__all__ = [
    "FILTERED",
    "MIN_SCRUB_CHARS",
    "NO_REDACTION",
    "CallFacts",
    "ParamRecorder",
    "Redaction",
    "redaction_of",
]

_logger = logging.getLogger("vgi_rpc.sentry")

FILTERED = "[Filtered]"

MIN_SCRUB_CHARS = 6
"""Secrets at least this many characters long are also cut out of free text.

A shorter secret (``api_key="e"``) is replaced only where a whole value equals
it: cutting one letter out of every message would destroy the event's text
without hiding anything. See ``docs/sentry.md`` ("Redaction").
"""

_STRUCTURAL_CONTEXTS = frozenset({"trace", "runtime", "os", "device"})
"""Contexts the SDK fills from the process itself (never rewritten)."""


class Redaction:
    """What to hide from one call's events: the redacted params' names and values.

    Built from the kwargs and what the redactor kept. Values (strings, and
    strings inside lists) the redactor removed or replaced are secrets:

    * a string value *equal* to a secret (or to its ``repr``, as the SDK writes
      string locals) is replaced whole, wherever data can hold it;
    * in free text (exception messages, log messages, breadcrumbs, frame
      variables, recorded values) a secret of at least :data:`MIN_SCRUB_CHARS`
      characters is also cut out where it occurs inside a longer string;
    * frame variables (and keys inside them) named like a redacted param are
      replaced whatever their value.

    Structure is never rewritten: dict keys, ids, names, types, levels, the SDK's
    own contexts, and what the hook itself wrote from the server and the caller
    (the ``rpc`` context, its tags, the user).
    """

    __slots__ = ("names", "parts", "whole")

    def __init__(self, names: frozenset[str], secrets: set[str]) -> None:
        self.names = names
        whole: set[str] = set()
        parts: set[str] = set()
        for secret in secrets:
            if not secret:  # the empty string hides nothing and is inside every string
                continue
            quoted = repr(secret)
            whole.add(secret)
            whole.add(quoted)
            if len(secret) >= MIN_SCRUB_CHARS:
                parts.add(secret)
                parts.add(quoted[1:-1])  # the escaped form a repr() of a container shows
        self.whole = frozenset(whole)
        # longest first, so a secret containing another one is replaced whole
        self.parts = tuple(sorted(parts, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self.names or self.whole)

    def text(self, value: str) -> str:
        """*value* with the secrets replaced (whole value, then long secrets inside it)."""
        if value in self.whole:
            return FILTERED
        out = value
        for part in self.parts:
            if part in out:
                out = out.replace(part, FILTERED)
        if out is not value and any(part in out for part in self.parts):
            return FILTERED  # a replacement joined its neighbours into a secret again
        return out

    def data(self, node: Any) -> Any:
        """Strings anywhere inside *node* (dict values, list items) through :meth:`text`; keys untouched."""
        kind = type(node)
        if kind is str:
            return self.text(node)
        if kind is dict:
            return {key: self.data(value) for key, value in node.items()}
        if kind is list or kind is tuple:
            return [self.data(value) for value in node]
        return node

    def frame_vars(self, node: Any) -> Any:
        """Like :meth:`data`, and entries named like a redacted param are filtered whatever they hold."""
        kind = type(node)
        if kind is dict:
            names = self.names
            return {key: FILTERED if key in names else self.frame_vars(value) for key, value in node.items()}
        if kind is list or kind is tuple:
            return [self.frame_vars(value) for value in node]
        if kind is str:
            return self.text(node)
        return node

    def value(self, value: Any) -> Any:
        """A recorded param value (span data / tag) with the secrets hidden."""
        if type(value) is str:
            return self.text(value)
        if type(value) is list and value and type(value[0]) is str:
            return [self.text(v) for v in value]
        return value

    def event(self, event: dict[str, Any], own: CallFacts) -> None:
        """Hide the secrets in *event* (in place); *own* is what the hook itself set."""
        for exc in _values(event.get("exception")):
            if type(exc.get("value")) is str:
                exc["value"] = self.text(exc["value"])
            self._stacktrace(exc.get("stacktrace"))
        for thread in _values(event.get("threads")):
            self._stacktrace(thread.get("stacktrace"))
        self._stacktrace(event.get("stacktrace"))
        message = event.get("message")
        if type(message) is str:
            event["message"] = self.text(message)
        logentry = event.get("logentry")
        if type(logentry) is dict:
            for key in ("message", "formatted"):
                if type(logentry.get(key)) is str:
                    logentry[key] = self.text(logentry[key])
            if "params" in logentry:
                logentry["params"] = self.data(logentry["params"])
        for crumb in _values(event.get("breadcrumbs")):
            if type(crumb.get("message")) is str:
                crumb["message"] = self.text(crumb["message"])
            if "data" in crumb:
                crumb["data"] = self.data(crumb["data"])
        if "extra" in event:
            event["extra"] = self.data(event["extra"])
        tags = event.get("tags")
        if type(tags) is dict:
            event["tags"] = {
                key: value if own.tags.get(key, _MISSING) == value else self.data(value)
                for key, value in tags.items()
            }
        user = event.get("user")
        if user is not None and user != own.user:
            event["user"] = self.data(user)
        contexts = event.get("contexts")
        if type(contexts) is dict:
            for name, ctx in contexts.items():
                if name in _STRUCTURAL_CONTEXTS or (name == "rpc" and ctx == own.context):
                    continue
                contexts[name] = self.data(ctx)
        request = event.get("request")
        if type(request) is dict:
            for key, value in request.items():
                if key not in ("url", "method"):
                    request[key] = self.data(value)
        for span in event.get("spans") or ():
            if type(span) is not dict:
                continue
            if type(span.get("description")) is str:
                span["description"] = self.text(span["description"])
            for key in ("data", "tags"):
                if key in span:
                    span[key] = self.data(span[key])

    def _stacktrace(self, stacktrace: Any) -> None:
        if type(stacktrace) is not dict:
            return
        for frame in stacktrace.get("frames") or ():
            if type(frame) is dict and "vars" in frame:
                frame["vars"] = self.frame_vars(frame["vars"])


_MISSING = object()
NO_REDACTION = Redaction(frozenset(), set())


def _values(section: Any) -> list[dict[str, Any]]:
    """The dict entries of an event section shaped ``{"values": [...]}`` (or a bare list)."""
    if type(section) is dict:
        section = section.get("values")
    if type(section) is not list:
        return []
    return [entry for entry in section if type(entry) is dict]


def _unchanged(original: Any, kept: Any) -> bool:
    return kept is original or (type(original) is str and type(kept) is str and kept == original)


def redaction_of(original: Mapping[str, Any], kept: Mapping[str, Any]) -> Redaction:
    """The names and string values the redactor removed or replaced."""
    names: set[str] = set()
    secrets: set[str] = set()
    for key, value in original.items():
        if key in kept and _unchanged(value, kept[key]):
            continue
        names.add(key)
        if type(value) is str:
            secrets.add(value)
        elif isinstance(value, list | tuple):
            secrets.update(v for v in value if type(v) is str)
    if not names:
        return NO_REDACTION
    return Redaction(frozenset(names), secrets)


@dataclass(slots=True)
class CallFacts:
    """Everything the hook records for one call.

    Built by the hook (the processor, which closes over the facts, is set last)
    and read-only from then on: the hook shares one per method between calls, and
    a variant is a ``dataclasses.replace`` copy.

    The tags, the user and the ``rpc`` context are also what the hook itself put
    on the call's events: :meth:`Redaction.event` never rewrites them.
    """

    name: str | None
    """``rpc {method}`` for the call's events and the ambient root, or ``None`` to keep the integration's name."""
    span_name: str
    """The hook's own span: ``vgi_rpc/<method>``."""
    op: str
    tags: dict[str, str]
    data: dict[str, Any]
    """Span data ``rpc.*`` (and ``rpc.param.*``) for the root span and the hook's own span."""
    context: dict[str, str] | None
    """The ``rpc`` context of the call's events (``record_request_context``), or ``None``."""
    user: dict[str, str] | None
    redaction: Redaction
    """What to hide in the call's events (:data:`NO_REDACTION` when the redactor removed nothing)."""
    processor: Callable[[Event, Hint], Event] | None = None
    """The event processor for the call's scope (naming, ``rpc`` context, redaction), if any."""


RecordedParams = tuple[dict[str, Any], dict[str, str], Redaction]
"""What :meth:`ParamRecorder.record` gives: ``(span data, tags, redaction)``, keys ``rpc.param.<name>``."""


class ParamRecorder:
    """What a hook records of a call's kwargs: built once from the config, shared by all calls.

    ``record_params`` makes span data of every kwarg the redactor keeps,
    ``tag_params`` makes tags of the listed ones; the kwargs the redactor removed
    or replaced make the call's :class:`Redaction`, and are also hidden inside the
    recorded values (a secret passed in two params).
    """

    __slots__ = ("_data", "_max_bytes", "_redactor", "_tag_params")

    def __init__(self, config: SentryConfig) -> None:
        self._redactor: ParamRedactor = config.param_redactor or default_redactor
        self._data = config.record_params
        self._tag_params = tuple(config.tag_params)
        self._max_bytes = config.max_param_value_bytes

    def record(self, kwargs: Mapping[str, Any]) -> RecordedParams:
        """The call's params as ``(span data, tags, redaction)``, after the redactor."""
        kept = self._kept(kwargs)
        redaction = redaction_of(kwargs, kept)
        data: dict[str, Any] = {}
        tags: dict[str, str] = {}
        if self._data:
            for key, value in kept.items():
                recorded = span_value(key, value, self._max_bytes)
                if recorded is not None:
                    data[PARAM_PREFIX + key] = redaction.value(recorded) if redaction else recorded
        for key in self._tag_params:
            if key in kept:
                text = tag_value(kept[key])
                if text is not None:
                    tags[PARAM_PREFIX + key] = redaction.text(text) if redaction else text
        return data, tags, redaction

    def _kept(self, kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
        """The kwargs the redactor lets through; ``{}`` (fail closed, one WARNING) if it misbehaves."""
        redactor = self._redactor
        try:
            kept = redactor(kwargs)
        except Exception:
            _logger.warning("param_redactor %r failed; no params recorded", redactor, exc_info=True)
            return {}
        if not isinstance(kept, Mapping):
            _logger.warning(
                "param_redactor %r returned %s, not a mapping; no params recorded",
                redactor,
                type(kept).__name__,
            )
            return {}
        unknown = [key for key in kept if key not in kwargs]
        if unknown:
            _logger.warning(
                "param_redactor %r returned keys that are not params of the call (%s); no params recorded",
                redactor,
                ", ".join(sorted(map(repr, unknown))[:5]),
            )
            return {}
        return kept
