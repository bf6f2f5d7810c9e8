"""Server-side Sentry instrumentation: error capture, request context, optional tracing.

Requires ``pip install 'vgi-rpc[sentry]'`` (sentry-sdk 2.x from 2.36, or 3.x); without
it, importing this module raises an ``ImportError`` that names the extra, and with
an SDK it cannot instrument, instrumenting raises :class:`SentrySdkUnsupportedError`
(auto-attach logs a WARNING). ``import vgi_rpc`` never imports this module;
importing it imports ``sentry_sdk``. What differs between the SDK's generations
(transactions vs streamed span items) lives in :mod:`vgi_rpc._sentry_sdk`; this
module reads the same for both. vgi-rpc never calls
``sentry_sdk.init()`` and never reads ``SENTRY_DSN``: initialise the SDK yourself,
*before* constructing the ``RpcServer`` if you want auto-attach.

Usage::

    import sentry_sdk
    sentry_sdk.init()                                  # your DSN, your options
    server = RpcServer(MyService, MyServiceImpl())     # default hook auto-attached
    instrument_server_sentry(server, SentryConfig(record_params=True))  # replaces it

What one dispatch does (``docs/sentry.md`` has the full table and the tests that pin it):

* it runs in its **own forked isolation scope**, entered at dispatch start and left
  at dispatch end, so tags, user and context never reach another call (on the pipe
  nothing else forks the scope; over HTTP the WSGI integration forks per request
  and this fork nests inside it);
* scope tags ``rpc.method``/``rpc.method_type`` (always), the user and the auth
  tags (``record_request_context``), ``custom_tags`` and the ``tag_params``
  whitelist; the ``rpc`` context on every event captured during the call;
* span data ``rpc.*`` (and ``rpc.param.*`` with ``record_params``) on the root span
  of the call's transaction: the ambient one (HTTP: the WSGI transaction or
  segment) or, on the pipe with ``enable_performance``, the hook's own
  ``vgi_rpc/<method>``;
* redaction of the params the redactor removed, in every event of the call
  (:data:`MIN_SCRUB_CHARS`);
* ``capture_exception`` of the *original* exception at dispatch end, inside the
  call's scope, so the one error event carries the RPC context;
* transaction and event names ``rpc {method}`` (source ``custom``) that survive
  Sentry's Falcon integration, which otherwise renames events to the route
  template when they are sent.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from vgi_rpc import _sentry_sdk as sdk  # first: a missing SDK raises an ImportError naming the extra
from vgi_rpc.auth import AuthContext
from vgi_rpc.hooks import DispatchInfo

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

    from vgi_rpc.server import RpcServer

__all__ = [
    "MIN_SCRUB_CHARS",
    "ParamRedactor",
    "SentryConfig",
    "SentrySdkUnsupportedError",
    "default_redactor",
    "instrument_server_sentry",
    "noop_redactor",
]

_logger = logging.getLogger("vgi_rpc.sentry")

ParamRedactor: TypeAlias = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""A callable that returns the kwargs that may be recorded (see ``SentryConfig.param_redactor``)."""

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

_SECRET_KEY = re.compile(r"password|token|secret|key|authorization", re.IGNORECASE)
_FILTERED = "[Filtered]"
_PRIMITIVES: tuple[type, ...] = (str, bool, int, float)


def default_redactor(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Drop every kwarg whose name matches ``password|token|secret|key|authorization``.

    The match is a case-insensitive substring search on the key, so it is
    deliberately broad: ``api_key``, ``AccessToken`` and ``db_password`` are
    dropped, and so are innocent names such as ``monkey`` or ``keyspace``.
    Values are never inspected: a secret under an innocent name passes through
    (supply your own ``param_redactor`` if your kwargs carry free text).
    """
    return {k: v for k, v in kwargs.items() if not _SECRET_KEY.search(k)}


def noop_redactor(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Record every kwarg unchanged: pass as ``param_redactor`` to disable filtering."""
    return kwargs


class SentrySdkUnsupportedError(RuntimeError):
    """The installed sentry-sdk is not one this version of vgi_rpc can instrument.

    Raised by :func:`instrument_server_sentry` (and so by ``make_wsgi_app`` /
    ``serve_http`` with ``sentry_config=``). The message names the installed
    version and the supported range (``pip install 'sentry-sdk>=2.36,<4'``).
    Auto-attach logs the same text at WARNING on ``vgi_rpc.sentry`` instead.
    """


def _default_user_claim_map() -> Mapping[str, str]:
    return {"username": "preferred_username", "email": "email", "name": "name"}


@dataclass(frozen=True)
class SentryConfig:
    """Configuration for Sentry error reporting and optional performance monitoring.

    Immutable: mapping fields are copied into read-only views at construction.

    Attributes:
        enable_error_capture: Capture the original exception of a failed call with
            ``sentry_sdk.capture_exception`` (default ``True``).
        enable_performance: Start a Sentry transaction per dispatch (a child span
            when a transaction is already active, e.g. the WSGI one over HTTP).
            Opt-in to avoid duplicate tracing alongside OpenTelemetry and to
            conserve quota. The SDK's own sampling (``traces_sample_rate``) applies.
        record_request_context: Set the ``rpc`` context (method, method type,
            service, server id), the user and the auth tags (``auth.domain``,
            ``auth.authenticated`` and the ``claim_tags``). Default ``True``.
            ``False`` removes exactly those; ``rpc.method``/``rpc.method_type``
            tags, ``custom_tags``, ``tag_params``, span data and naming stay.
        custom_tags: Extra tags applied to every event of every call. Keys and
            values must be ones Sentry stores as given (keys: 1-200 characters
            from ``A-Z a-z 0-9 _ . : -``; values: 1-200 characters, no newline,
            no outer whitespace), else ``ValueError``.
        ignored_exceptions: Exception types (matched with ``isinstance``) that are
            not reported, e.g. ``(PermissionError,)``.
        op_name: Operation of the hook's transaction/span (default ``"rpc.server"``).
        claim_tags: Maps claim keys to tag names, e.g. ``{"tenant_id": "auth.tenant_id"}``.
            Values are stringified, stripped of outer whitespace and clipped to 200
            characters; absent, ``None``, empty, non-scalar claims and values
            holding a newline are skipped (Sentry would drop them).
        user_claim_map: Maps Sentry user fields to claim names (default: OIDC
            ``preferred_username`` -> ``username``, ``email``, ``name``). Claims that
            are absent, empty, not strings or longer than Sentry keeps in the
            field (:data:`USER_FIELD_MAX_CHARS`: email 75, the others 128
            characters) are skipped. ``user.id`` is always
            ``auth.principal`` (left out if longer than 128 characters) and is not
            configurable here; ``user.username`` is the mapped claim, or
            ``auth.principal`` when that claim gives nothing.
            Users are set only for authenticated callers.
        set_transaction_name: Name the call's transaction and its events
            ``rpc {method}`` (source ``custom``) instead of the WSGI/Falcon route
            template. Default ``True``. The hook's *own* transaction (pipe with
            ``enable_performance``) is always ``vgi_rpc/<method>``.
        record_params: Record kwargs as ``rpc.param.<k>`` span data on the root span
            (and on the hook's own span). Default ``False``: kwargs may carry user
            data and Sentry's scrubber matches key names only. Integers outside
            ``[-2**63, 2**64)`` are not recorded (Sentry would store 0).
        tag_params: Whitelist of param names also copied into scope tags
            ``rpc.param.<k>`` (independent of ``record_params``), after the
            redactor. Only ``str``/``bool``/``int``/``float`` values; stringified
            (``bool`` as ``"true"``/``"false"``), stripped of outer whitespace and
            clipped to 200 characters; a value that is then empty or holds a
            newline is not sent (Sentry would drop it).
        param_redactor: Applied to kwargs before anything is recorded. ``None``
            means :func:`default_redactor`; a callable replaces it;
            :func:`noop_redactor` disables filtering. If it raises, returns a
            non-mapping or returns keys that are not params of the call,
            nothing is recorded for that call (fail closed) and one WARNING
            is logged. The values it removed or replaced are also hidden from
            the call's events (see :data:`MIN_SCRUB_CHARS` and docs/sentry.md).
        max_param_value_bytes: Cap on the UTF-8 size of each recorded string value
            (default 1024). Longer strings are cut at a character boundary, never
            past the cap, with a DEBUG record on ``vgi_rpc.sentry``. Must be >= 1.
    """

    enable_error_capture: bool = True
    enable_performance: bool = False
    record_request_context: bool = True
    custom_tags: Mapping[str, str] = field(default_factory=dict)
    ignored_exceptions: tuple[type[BaseException], ...] = ()
    op_name: str = "rpc.server"
    claim_tags: Mapping[str, str] = field(default_factory=dict)
    user_claim_map: Mapping[str, str] = field(default_factory=_default_user_claim_map)
    set_transaction_name: bool = True
    record_params: bool = False
    tag_params: Sequence[str] = ()
    param_redactor: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    max_param_value_bytes: int = 1024

    def __post_init__(self) -> None:
        """Freeze the mappings and reject values that would fail at dispatch time."""
        for name in ("custom_tags", "claim_tags", "user_claim_map"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        if isinstance(self.tag_params, str):
            raise TypeError("tag_params must be a sequence of names, not a str (did you forget a comma?)")
        object.__setattr__(self, "tag_params", tuple(self.tag_params))
        object.__setattr__(self, "ignored_exceptions", tuple(self.ignored_exceptions))
        if type(self.max_param_value_bytes) is not int or self.max_param_value_bytes < 1:
            raise ValueError(
                f"max_param_value_bytes must be a positive int, got {self.max_param_value_bytes!r}"
            )
        self._check_tags()

    def _check_tags(self) -> None:
        """Tag keys and ``custom_tags`` values that Sentry would not store as given are errors (B8)."""
        keys = [
            *(("custom_tags", key) for key in self.custom_tags),
            *(("claim_tags", tag) for tag in self.claim_tags.values()),
            *(("tag_params", f"rpc.param.{name}") for name in self.tag_params),
        ]
        for option, key in keys:
            problem = _tag_key_problem(key) if type(key) is str else "a tag key must be a str"
            if problem is not None:
                raise ValueError(f"{option}: tag {key!r} would be dropped by Sentry ({problem})")
        for key, value in self.custom_tags.items():
            if type(value) is not str or _stored_tag_text(value) != value:
                raise ValueError(
                    f"custom_tags: the value of {key!r} ({value!r}) is not stored as given by Sentry "
                    "(a tag value is a str of 1-200 characters, no newline, no outer whitespace)"
                )


def instrument_server_sentry(server: RpcServer, config: SentryConfig | None = None) -> RpcServer:
    """Attach Sentry instrumentation to *server*, replacing any earlier Sentry hook.

    Must be called before the server starts serving: it swaps ``server``'s hook
    chain without locking and is **not thread-safe during dispatch**. Any Sentry
    hook already registered (the auto-attached default or an earlier explicit
    call) is removed first, so the explicit configuration wins whatever the
    order; every other hook (e.g. OpenTelemetry) keeps its place. The Sentry hook
    is placed outermost in the chain (its start runs before every other hook's,
    its end after them), so that anything another hook logs during a call,
    including its own failure, lands in that call's Sentry scope and never in
    the next call's.

    Args:
        server: The ``RpcServer`` to instrument.
        config: The configuration; ``None`` means ``SentryConfig()``.

    Returns:
        The same *server* (for chaining).

    Raises:
        SentrySdkUnsupportedError: the installed sentry-sdk cannot be instrumented
            (the message names its version and the supported range).
    """
    if sdk.PROBLEM is not None:
        raise SentrySdkUnsupportedError(sdk.PROBLEM)
    hook = _SentryDispatchHook(config or SentryConfig(), server.protocol_name, server.server_id)
    server.remove_hooks(_SentryDispatchHook)
    server.add_hook(hook, first=True)
    return server


def _auto_attach(server: RpcServer) -> None:
    """Attach a default-config hook if ``sentry_sdk`` is initialised; otherwise log why not.

    Called from ``RpcServer.__init__`` only when ``sentry_sdk`` is already in
    ``sys.modules``. Leaves an existing Sentry hook alone (explicit config wins).
    An initialised SDK this version cannot instrument is never a silent no-op:
    one WARNING on ``vgi_rpc.sentry`` names its version and what to do.
    """
    if not sdk.is_initialized():
        _logger.debug(
            "sentry_sdk is imported but not initialised: no Sentry hook attached to RpcServer(%s, "
            "server_id=%s); call sentry_sdk.init() before RpcServer(...) or use instrument_server_sentry()",
            server.protocol_name,
            server.server_id,
        )
        return
    if sdk.PROBLEM is not None:
        _logger.warning(
            "%s; no Sentry hook attached to RpcServer(%s, server_id=%s): its errors are not reported",
            sdk.PROBLEM,
            server.protocol_name,
            server.server_id,
        )
        return
    if any(isinstance(h, _SentryDispatchHook) for h in server.hooks):
        return
    instrument_server_sentry(server)


# -- parameter filtering ------------------------------------------------------------------


def _truncate_utf8(value: str, max_bytes: int) -> str | None:
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
    clipped = _truncate_utf8(value, max_bytes)
    if clipped is not None and clipped is not value:
        _logger.debug(
            "rpc.param.%s truncated from %d to %d UTF-8 bytes (max_param_value_bytes=%d)",
            key,
            len(value.encode("utf-8")),
            len(clipped.encode("utf-8")),
            max_bytes,
        )
    return clipped


def _span_value(key: str, value: Any, max_bytes: int) -> Any:
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


def _tag_value(value: Any) -> str | None:
    """*value* as a tag value Sentry stores unchanged (B8), or ``None`` to leave the tag out.

    ``bool`` becomes ``"true"``/``"false"``; ``str``, ``int`` and ``float`` their
    ``str()``, then :func:`_stored_tag_text`. An ``int`` of more than 200 digits is
    left out rather than clipped into a different number.
    """
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is str:
        return _stored_tag_text(value)
    if kind is int:
        return _stored_tag_text(str(value)) if -_TAG_INT_LIMIT < value < _TAG_INT_LIMIT else None
    if kind is float:
        return _stored_tag_text(str(value))
    return None


def _stored_tag_text(text: str) -> str | None:
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


def _tag_key_problem(key: str) -> str | None:
    """Why Relay would not store a tag named *key* (``None`` if it would): B8, checked at config time."""
    if _TAG_KEY.fullmatch(key) is None:
        return "Sentry keeps tag keys of 1-200 characters from A-Z a-z 0-9 _ . : - only"
    return None


MIN_SCRUB_CHARS = 6
"""Secrets at least this many characters long are also cut out of free text.

A shorter secret (``api_key="e"``) is replaced only where a whole value equals
it: cutting one letter out of every message would destroy the event's text
without hiding anything. See ``docs/sentry.md`` ("Redaction").
"""

_STRUCTURAL_CONTEXTS = frozenset({"trace", "runtime", "os", "device"})
"""Contexts the SDK fills from the process itself (never rewritten)."""


class _Redaction:
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
            return _FILTERED
        out = value
        for part in self.parts:
            if part in out:
                out = out.replace(part, _FILTERED)
        if out is not value and any(part in out for part in self.parts):
            return _FILTERED  # a replacement joined its neighbours into a secret again
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
            return {key: _FILTERED if key in names else self.frame_vars(value) for key, value in node.items()}
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

    def event(self, event: dict[str, Any], own: _OwnFacts) -> None:
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
_NO_REDACTION = _Redaction(frozenset(), set())


def _values(section: Any) -> list[dict[str, Any]]:
    """The dict entries of an event section shaped ``{"values": [...]}`` (or a bare list)."""
    if type(section) is dict:
        section = section.get("values")
    if type(section) is not list:
        return []
    return [entry for entry in section if type(entry) is dict]


def _unchanged(original: Any, kept: Any) -> bool:
    return kept is original or (type(original) is str and type(kept) is str and kept == original)


def _redaction_of(original: Mapping[str, Any], kept: Mapping[str, Any]) -> _Redaction:
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
        return _NO_REDACTION
    return _Redaction(frozenset(names), secrets)


@dataclass(frozen=True, slots=True)
class _OwnFacts:
    """What the hook itself put on the call's events (never rewritten by redaction)."""

    tags: Mapping[str, str]
    user: Mapping[str, str] | None
    context: Mapping[str, str] | None


# -- the hook ---------------------------------------------------------------------------------


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
                sdk.end(token, error is not None)
            finally:
                sdk.leave(token)

    # -- step 1: the call's facts (no SDK) --------------------------------------------------

    def _collect(self, info: DispatchInfo, auth: AuthContext, kwargs: Mapping[str, Any] | None) -> _Facts:
        """The call's facts; those of a call that depend on its method alone are built once.

        That is a call of an anonymous caller (no domain, no claims), outside a
        stream, whose params are not recorded: everything it records then comes
        from the config and the method, and the facts are shared read-only (the
        SDK copies tags, data and the ``rpc`` context into its own objects).
        """
        if (
            info.stream_id is None
            and (kwargs is None or not self._reads_params)
            and not auth.authenticated
            and not auth.domain
            and not auth.claims
        ):
            key = (info.name, info.method_type, info.service, info.server_id)
            facts = self._static.get(key)
            if facts is None:
                facts = self._collect_each_time(info, auth, None)
                if len(self._static) < _STATIC_FACTS_MAX:
                    self._static[key] = facts
            return facts
        return self._collect_each_time(info, auth, kwargs)

    def _collect_each_time(
        self, info: DispatchInfo, auth: AuthContext, kwargs: Mapping[str, Any] | None
    ) -> _Facts:
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

        redaction = _NO_REDACTION
        if kwargs is not None and self._reads_params:
            kept = self._redact(kwargs)
            redaction = _redaction_of(kwargs, kept)
            if cfg.record_params:
                for key, value in kept.items():
                    recorded = _span_value(key, value, cfg.max_param_value_bytes)
                    if recorded is not None:
                        span_data[f"rpc.param.{key}"] = redaction.value(recorded) if redaction else recorded
            for key in cfg.tag_params:
                if key in kept:
                    text = _tag_value(kept[key])
                    if text is not None:
                        tags[f"rpc.param.{key}"] = redaction.text(text) if redaction else text

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
            domain = _stored_tag_text(auth.domain) if auth.domain else None
            if domain is not None:
                tags["auth.domain"] = domain
            tags["auth.authenticated"] = "true" if auth.authenticated else "false"
            for claim, tag in cfg.claim_tags.items():
                text = _tag_value(auth.claims.get(claim))
                if text is not None:
                    tags[tag] = text
        tags["rpc.method"] = method
        tags["rpc.method_type"] = info.method_type

        own = _OwnFacts(tags, user, context)
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
        sdk.begin(call, ambient, outer, trace, self._config.enable_performance)

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
    if not _fits_user_field("id", principal):
        principal = ""
    if principal:
        user["id"] = principal
    for sentry_field, claim in claim_map.items():
        value = auth.claims.get(claim)
        if isinstance(value, str) and value and _fits_user_field(sentry_field, value):
            user[sentry_field] = value
    if "username" not in user and principal:
        user["username"] = principal
    return user or None


def _fits_user_field(sentry_field: str, value: str) -> bool:
    """Whether Relay stores *value* in *sentry_field* uncut (B8: ``USER_FIELD_MAX_CHARS``)."""
    limit = USER_FIELD_MAX_CHARS.get(sentry_field)
    return limit is None or len(value) <= limit


def _event_processor(
    rpc_name: str | None, redaction: _Redaction, own: _OwnFacts
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
