"""What the Sentry hook may send: the values Sentry's ingestion stores unchanged (internal).

Sentry's ingestion (Relay) normalises every event before storing it: it strips
and clips tag values, drops tags with a newline or an invalid key, stores span
data integers beyond 64 bits as 0 and cuts long user fields, without telling
the sender. The hook sends a value as Relay stores it, or not at all (claim B8;
each rule measured with ``sentry-relay`` in ``tests/sentry/test_sentry_relay.py``).
This module holds those rules, and the type filter and UTF-8 cap for recorded
params (``record_params``). It uses no SDK: pure functions of a value.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "TAG_VALUE_MAX_CHARS",
    "USER_ATTRIBUTES",
    "USER_FIELD_MAX_CHARS",
    "fits_user_field",
    "span_value",
    "stored_tag_text",
    "tag_key_problem",
    "tag_value",
    "truncate_utf8",
]

_logger = logging.getLogger("vgi_rpc.sentry")

TAG_VALUE_MAX_CHARS = 200
"""Sentry's cap on a tag value; longer values (``tag_params``, claim tags) are clipped."""

# What Sentry's ingestion (Relay) stores unchanged, measured with sentry-relay (B8,
# tests/sentry/test_sentry_relay.py): the hook sends a value as Relay stores it or not at all.
_RELAY_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)
"""Unicode ``White_Space``: what Relay strips from tag values (``str.isspace`` also has U+001C-U+001F)."""
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
_TAG_INT_LIMIT = 10**TAG_VALUE_MAX_CHARS
_SPAN_INT_MIN, _SPAN_INT_MAX = -(2**63), 2**64 - 1
"""Relay stores span data integers in this range; outside it, silently as 0."""
USER_FIELD_MAX_CHARS: Mapping[str, int] = MappingProxyType(
    {"id": 128, "username": 128, "email": 75, "name": 128}
)
"""Relay's limits on the user fields; a longer value is not sent (Relay would cut it)."""

USER_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("user.id", "id"),
    ("user.name", "username"),
    ("user.email", "email"),
)
"""The SDK's own mapping of a scope user onto span attributes (``username`` is ``user.name``):
what the hook writes on a streamed segment (the SDK also maps ``ip_address``; the hook writes these three)."""

_PRIMITIVES: tuple[type, ...] = (str, bool, int, float)


def truncate_utf8(value: str, max_bytes: int) -> str | None:
    """*value* cut so its UTF-8 encoding is at most *max_bytes*, at a character boundary.

    Returns ``value`` itself when it fits, ``None`` when it cannot be encoded
    (lone surrogates).
    """
    if len(value) * 4 <= max_bytes:  # fits whatever the characters are
        return value
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(encoded) <= max_bytes:
        return value
    end = max_bytes
    while end > 0 and (encoded[end] & 0xC0) == 0x80:  # encoded[end] starts the next char or continues one
        end -= 1
    return encoded[:end].decode("utf-8")


def _clip_string(key: str, value: str, max_bytes: int) -> str | None:
    clipped = truncate_utf8(value, max_bytes)
    if clipped is not None and clipped is not value:
        _logger.debug(
            "rpc.param.%s truncated from %d to %d UTF-8 bytes (max_param_value_bytes=%d)",
            key,
            len(value.encode("utf-8")),
            len(clipped.encode("utf-8")),
            max_bytes,
        )
    return clipped


def span_value(key: str, value: Any, max_bytes: int) -> Any:
    """The value recorded as span data, or ``None`` to drop it.

    Scalars must be exactly ``str``, ``bool``, ``int`` or ``float`` (subclasses such
    as enums are dropped; so are NaN and infinities, which JSON cannot carry as
    numbers). Lists and tuples must be non-empty and every element of
    the *same exact* type, so ``[1, True]`` is mixed (``bool`` is not ``int`` here)
    and dropped; ``[True, False]`` is a bool list.
    """
    kind = type(value)
    if kind is str:
        return _clip_string(key, value, max_bytes)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return value if _SPAN_INT_MIN <= value <= _SPAN_INT_MAX else None
    if kind is bool:
        return value
    if kind is list or kind is tuple:
        if not value:
            return None
        first = type(value[0])
        if first not in _PRIMITIVES or any(type(v) is not first for v in value):
            return None
        if first is str:
            items = [_clip_string(key, v, max_bytes) for v in value]
            return None if any(v is None for v in items) else items
        if first is float and not all(math.isfinite(v) for v in value):
            return None
        if first is int and not all(_SPAN_INT_MIN <= v <= _SPAN_INT_MAX for v in value):
            return None
        return list(value)
    return None


def tag_value(value: Any) -> str | None:
    """*value* as a tag value Sentry stores unchanged (B8), or ``None`` to leave the tag out.

    ``bool`` becomes ``"true"``/``"false"``; ``str``, ``int`` and ``float`` their
    ``str()``, then :func:`stored_tag_text`. An ``int`` of more than 200 digits is
    left out rather than clipped into a different number.
    """
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is str:
        return stored_tag_text(value)
    if kind is int:
        return stored_tag_text(str(value)) if -_TAG_INT_LIMIT < value < _TAG_INT_LIMIT else None
    if kind is float:
        return stored_tag_text(str(value))
    return None


def stored_tag_text(text: str) -> str | None:
    """*text* as Relay stores a tag value, or ``None`` where Relay would drop it (B8).

    Relay strips outer whitespace (Unicode ``White_Space``), keeps at most 200
    characters and marks a value that is then empty or holds a newline invalid.
    So: stripped, clipped to 200, stripped again (the clip may end on a space);
    empty or with a ``\\n`` inside: not sent.
    """
    stripped = text.strip(_RELAY_WHITESPACE)
    if len(stripped) > TAG_VALUE_MAX_CHARS:
        stripped = stripped[:TAG_VALUE_MAX_CHARS].rstrip(_RELAY_WHITESPACE)
    if not stripped or "\n" in stripped:
        return None
    return stripped


def tag_key_problem(key: str) -> str | None:
    """Why Relay would not store a tag named *key* (``None`` if it would): B8, checked at config time."""
    if _TAG_KEY.fullmatch(key) is None:
        return "Sentry keeps tag keys of 1-200 characters from A-Z a-z 0-9 _ . : - only"
    return None


def fits_user_field(sentry_field: str, value: str) -> bool:
    """Whether Relay stores *value* in *sentry_field* uncut (B8: ``USER_FIELD_MAX_CHARS``)."""
    limit = USER_FIELD_MAX_CHARS.get(sentry_field)
    return limit is None or len(value) <= limit
