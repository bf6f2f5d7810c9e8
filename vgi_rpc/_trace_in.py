"""The caller's trace context as it arrives: checked, clipped, and in Sentry's form (internal).

A call's trace context comes from the caller, so it is hostile input. This module
is the one place that decides what of it is kept:

* ``sentry-trace`` is kept when it is exactly ``<32 hex>-<16 hex>`` with an optional
  ``-0``/``-1`` sampled flag (lower-case hex, surrounding blanks allowed, as the
  SDK's own parser reads it), and neither id is all zeros;
* ``baggage`` is clipped to W3C's limits (180 list members, 8,192 bytes), whole
  members dropped from the end, and Sentry sees it only with a kept trace;
* otherwise a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex flags>``, or a later
  version with more fields after the flags; never version ``ff``) becomes a
  ``sentry-trace`` value: the same ids, and the W3C *sampled* flag as the caller's
  sampling decision (the official vgi-rpc client sends only ``traceparent``).

Anything else is ignored, so the call starts a fresh trace. No value is read past
:data:`MAX_VALUE_CHARS` (``baggage``: past :data:`MAX_BAGGAGE_BYTES` plus one member).
The pipe's metadata keys and the HTTP app's WSGI ``environ`` keys are both handled
here (:func:`incoming_trace`, :func:`sanitise_environ`). Imports no SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = [
    "BAGGAGE",
    "MAX_BAGGAGE_BYTES",
    "MAX_BAGGAGE_MEMBERS",
    "MAX_VALUE_CHARS",
    "SENTRY_TRACE",
    "TRACEPARENT",
    "incoming_trace",
    "sanitise_environ",
    "sentry_trace_value",
]

SENTRY_TRACE = "sentry-trace"
BAGGAGE = "baggage"
TRACEPARENT = "traceparent"

MAX_VALUE_CHARS = 256
"""A ``sentry-trace`` or ``traceparent`` longer than this is ignored without being parsed."""
MAX_BAGGAGE_MEMBERS = 180
MAX_BAGGAGE_BYTES = 8192
"""W3C Baggage's limits: what is kept of an incoming ``baggage``."""

_SENTRY_TRACE = re.compile(r"[ \t]*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?[ \t]*")
_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^ \t]*)?[ \t]*")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _ids_valid(trace_id: str, span_id: str) -> bool:
    return trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN


def sentry_trace_value(value: str | None) -> str | None:
    """*value* as a ``sentry-trace`` Sentry will continue, normalised; ``None`` to ignore it."""
    if not value or len(value) > MAX_VALUE_CHARS:
        return None
    match = _SENTRY_TRACE.fullmatch(value)
    if match is None or not _ids_valid(match[1], match[2]):
        return None
    return f"{match[1]}-{match[2]}" + (f"-{match[3]}" if match[3] else "")


def _from_traceparent(value: str | None) -> str | None:
    """A W3C ``traceparent`` as a ``sentry-trace`` value (``None``: not a valid one)."""
    if not value or len(value) > MAX_VALUE_CHARS:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or not _ids_valid(trace_id, span_id):
        return None
    return f"{trace_id}-{span_id}-{int(flags, 16) & 1}"


def _clip_baggage(value: str) -> str | None:
    """The leading members of *value* within W3C's limits (``None``: nothing is left)."""
    kept: list[str] = []
    size = 0
    members = value[: MAX_BAGGAGE_BYTES + 1].split(",")
    if len(value) > MAX_BAGGAGE_BYTES + 1:
        members.pop()  # cut mid-member
    for member in members:
        member = member.strip()
        if not member:
            continue
        size += len(member.encode("utf-8", "replace")) + (1 if kept else 0)
        if size > MAX_BAGGAGE_BYTES or len(kept) >= MAX_BAGGAGE_MEMBERS:
            break
        kept.append(member)
    return ",".join(kept) or None


def incoming_trace(metadata: Mapping[str, str]) -> dict[str, str] | None:
    """The caller's trace context from a request's metadata, in Sentry's form; ``None`` when there is none.

    *metadata* holds lower-case names (the pipe's request metadata, or HTTP
    headers as hooks see them). The result has ``sentry-trace`` and, when the
    caller sent one with it, a clipped ``baggage``.
    """
    sentry_trace = sentry_trace_value(metadata.get(SENTRY_TRACE)) or _from_traceparent(
        metadata.get(TRACEPARENT)
    )
    if sentry_trace is None:
        return None
    baggage = metadata.get(BAGGAGE)
    clipped = _clip_baggage(baggage) if baggage else None
    return {SENTRY_TRACE: sentry_trace, BAGGAGE: clipped} if clipped else {SENTRY_TRACE: sentry_trace}


_ENV_SENTRY_TRACE = "HTTP_SENTRY_TRACE"
_ENV_BAGGAGE = "HTTP_BAGGAGE"
_ENV_TRACEPARENT = "HTTP_TRACEPARENT"


def sanitise_environ(environ: MutableMapping[str, Any]) -> None:
    """Leave in a WSGI *environ* only trace headers Sentry's WSGI integration may continue.

    Run before that integration reads the request: an invalid ``sentry-trace``
    is removed, a valid one normalised; without one, a valid ``traceparent``
    supplies it. ``baggage`` is clipped (and kept for the application either
    way). ``traceparent`` is left as sent, for OpenTelemetry. A request without
    any of the three costs three dictionary lookups.
    """
    raw = environ.get(_ENV_SENTRY_TRACE)
    baggage = environ.get(_ENV_BAGGAGE)
    if raw is None and baggage is None and _ENV_TRACEPARENT not in environ:
        return
    if isinstance(baggage, str):
        clipped = _clip_baggage(baggage)
        if clipped is None:
            del environ[_ENV_BAGGAGE]
        else:
            environ[_ENV_BAGGAGE] = clipped
    traceparent = environ.get(_ENV_TRACEPARENT)
    value = sentry_trace_value(raw) if isinstance(raw, str) else None
    if value is None and isinstance(traceparent, str):
        value = _from_traceparent(traceparent)
    if value is None:
        environ.pop(_ENV_SENTRY_TRACE, None)
    else:
        environ[_ENV_SENTRY_TRACE] = value
