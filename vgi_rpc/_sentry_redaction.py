"""Redaction of one call's events: hide the secrets the param redactor removed, and nothing else (internal).

The hook runs the user's ``param_redactor`` on a call's kwargs; the values it
removed or replaced are that call's secrets. :class:`Redaction` hides them in
every event captured during the call -- whole values equal to a secret, secrets
of at least :data:`MIN_SCRUB_CHARS` characters inside free text, frame variables
named like a redacted param -- and never rewrites structure (ids, keys, names,
exception types, SDK contexts, what the hook itself wrote): claims B4 and B6.
No SDK is used here: events are plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FILTERED", "MIN_SCRUB_CHARS", "NO_REDACTION", "OwnFacts", "Redaction", "redaction_of"]

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

    def event(self, event: dict[str, Any], own: OwnFacts) -> None:
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


@dataclass(frozen=True, slots=True)
class OwnFacts:
    """What the hook itself put on the call's events (never rewritten by redaction)."""

    tags: Mapping[str, str]
    user: Mapping[str, str] | None
    context: Mapping[str, str] | None
