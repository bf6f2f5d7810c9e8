"""Which Sentry SDK is installed, and what the hook does the same way on sentry-sdk 2.x and 3.x (internal).

The hook (``vgi_rpc._sentry_hook``) reaches the SDK only through this module and
:mod:`vgi_rpc._sentry_spans`. Here: the version check, the objects one call
carries (:class:`CallFacts`, :class:`Call`), the SDK calls that are the same on
both generations (``capture_exception``, ``is_initialized``, the stack the SDK
attaches to a message) and the call's forked isolation scope (:func:`enter`,
:func:`leave`). Error events are events on both generations: scope tags,
contexts, users and event processors work the same, so the hook sets those
itself. What differs -- transactions on 2.x, streamed span items on 3.x -- is
:mod:`vgi_rpc._sentry_spans`.

:data:`PROBLEM` says why the installed SDK cannot be instrumented (``None``
when it can): an unknown major version, a 2.x older than :data:`MINIMUM`, or a
missing API the adapter relies on. Nothing here raises at import time except
when ``sentry_sdk`` is not installed at all (an ``ImportError`` that names the
extra).
"""

from __future__ import annotations

import contextvars
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

try:
    import sentry_sdk
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised in a subprocess test
    if _exc.name != "sentry_sdk":
        raise
    raise ImportError(
        "vgi_rpc.sentry needs the 'sentry' extra: pip install 'vgi-rpc[sentry]' (missing module: sentry_sdk)",
        name="sentry_sdk",
    ) from _exc

if TYPE_CHECKING:
    pass

__all__ = [
    "MINIMUM",
    "PROBLEM",
    "SUPPORTED",
    "VERSION",
    "Call",
    "CallFacts",
    "attach_stack_like_the_sdk",
    "capture_exception",
    "enter",
    "is_initialized",
    "leave",
]

MINIMUM = (2, 36)
"""The oldest sentry-sdk this module instruments (the oldest the suites pass on, ``make test-sdk-floor``)."""

SUPPORTED = ">=2.36,<4"
"""The sentry-sdk versions vgi_rpc.sentry is tested with, as a pip specifier."""


def _version() -> str:
    version = getattr(sentry_sdk, "VERSION", None)
    if not isinstance(version, str):
        version = getattr(getattr(sentry_sdk, "consts", None), "VERSION", None)
    return version if isinstance(version, str) else "unknown"


VERSION = _version()
"""The installed sentry-sdk version string."""


def _version_problem(version: str) -> str | None:
    """Why *version* is not one we instrument (``None`` if it is): the version check alone."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return "its version is unknown"
    major, minor = int(match[1]), int(match[2])
    if major not in (2, 3) or (major, minor) < MINIMUM:
        return "vgi_rpc.sentry supports the SDK's 2.x generation from 2.36 on, and 3.x"
    return None


def _api_problem() -> str | None:
    """The APIs this module relies on that the installed SDK lacks, if any."""
    missing = [
        name
        for name in ("isolation_scope", "get_current_span", "is_initialized")
        if not hasattr(sentry_sdk, name)
    ]
    if VERSION.startswith("2."):
        try:
            # 2.x only (3.x removed the module): typed so mypy passes against either generation
            from sentry_sdk.tracing import Transaction  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
        except ImportError:
            missing.append("sentry_sdk.tracing.Transaction")
    else:
        try:
            from sentry_sdk.traces import StreamedSpan

            if "_segment" not in getattr(StreamedSpan, "__slots__", ()):
                missing.append("sentry_sdk.traces.Span._segment")
        except ImportError:
            missing.append("sentry_sdk.traces")
    return "it lacks " + ", ".join(missing) if missing else None


_REASON = _version_problem(VERSION) or _api_problem()
PROBLEM: str | None = (
    None
    if _REASON is None
    else (
        f"sentry-sdk {VERSION} cannot be instrumented by vgi_rpc.sentry ({_REASON}); "
        f"install a supported version: pip install 'sentry-sdk{SUPPORTED}'"
    )
)
"""Why the installed SDK cannot be instrumented (names the version and what to do), or ``None``."""

GENERATION = 3 if VERSION.startswith("3.") else 2
"""The SDK's major version (3: span streaming only; 2: transactions, or streaming on request)."""

OK = "ok"


# -- what the hook hands over ---------------------------------------------------------------------


@dataclass(slots=True)
class CallFacts:
    """What one call records on its root span and the hook's own span (built by ``vgi_rpc.sentry``)."""

    name: str | None
    """``rpc {method}`` for the ambient root, or ``None`` to keep the integration's name."""
    span_name: str
    """The hook's own span: ``vgi_rpc/<method>``."""
    op: str
    tags: dict[str, str]
    data: dict[str, Any]
    context: dict[str, str] | None
    user: dict[str, str] | None
    scrub: Callable[[dict[str, Any]], None] | None
    """Redaction for events sent outside the call's scope (the ambient transaction), or ``None``."""


class Call:
    """One dispatch's Sentry state: its forked scope, the root it annotated, its own span."""

    __slots__ = ("_current_token", "_isolation_token", "_root_failed", "_span", "_stream", "scope")

    def __init__(self, current_token: Any, isolation_token: Any, scope: Any) -> None:
        self._current_token = current_token
        self._isolation_token = isolation_token
        self.scope = scope
        self._root_failed: Callable[[], None] | None = None
        self._span: Any = None
        self._stream = False


# -- the SDK calls that are the same on both generations ------------------------------------------------

capture_exception = sentry_sdk.capture_exception


def is_initialized() -> bool:
    """Whether the SDK is initialised; also answers for SDKs we cannot instrument (1.x has no such call)."""
    check = getattr(sentry_sdk, "is_initialized", None)
    if check is not None:
        return bool(check())
    hub = getattr(sentry_sdk, "Hub", None)  # sentry-sdk 1.x
    client = getattr(getattr(hub, "current", None), "client", None)
    return client is not None and bool(
        getattr(client, "dsn", None) or getattr(client, "options", {}).get("dsn")
    )


def attach_stack_like_the_sdk(event: dict[str, Any]) -> None:
    """Attach the thread stack the SDK would attach to a message event, now.

    With ``attach_stacktrace`` (on by default in 3.x) the SDK adds the current
    stack, frame locals included, to an event with no exception and no stack --
    *after* event processors ran, where no redaction can reach it. Attached
    here (same options, same helper), the SDK keeps it and the caller can
    redact it. The stack then also shows the few SDK frames between the capture
    and the processor. Never raises.
    """
    if "exception" in event or "stacktrace" in event or "threads" in event or event.get("type"):
        return
    try:
        options = sentry_sdk.get_client().options
        if not options.get("attach_stacktrace"):
            return
        from sentry_sdk.utils import current_stacktrace

        kwargs: dict[str, Any] = {"max_value_length": options.get("max_value_length")}
        if GENERATION == 2:
            kwargs["include_local_variables"] = options.get("include_local_variables", True)
        event["threads"] = {
            "values": [{"stacktrace": current_stacktrace(**kwargs), "crashed": False, "current": True}]
        }
    except Exception:  # pragma: no cover - defensive: the SDK changed under us
        return


# -- scope --------------------------------------------------------------------------------------------


_Scope = sentry_sdk.Scope
_scope_module = sys.modules[_Scope.__module__]
_CURRENT = getattr(_scope_module, "_current_scope", None)
_ISOLATION = getattr(_scope_module, "_isolation_scope", None)


def enter() -> tuple[Call, Any, Any]:
    """Fork an isolation scope for one call; returns ``(call, ambient span, outer current scope)``.

    What ``sentry_sdk.isolation_scope()`` does on both generations (fork the
    current scope and the isolation scope, make the forks current), without the
    generator-based context manager around it: the fork is the one part of the
    hook that isolation (B2) requires, so nothing else is spent on it. The
    ambient span and the outer scope are read *before* the fork: the root lives
    on the outer scope and outlives the call.
    """
    outer = _Scope.get_current_scope()
    ambient = getattr(outer, "_span", None)  # 2.x's Scope.span hides a streamed span: read the slot
    isolation = _Scope.get_isolation_scope()
    if _CURRENT is None or _ISOLATION is None:  # pragma: no cover - an SDK without the two context vars
        cm = sentry_sdk.isolation_scope()
        scope = cm.__enter__()
        return Call(cm, None, scope), ambient, outer
    current_token = _CURRENT.set(outer.fork())
    scope = isolation.fork()
    return Call(current_token, _ISOLATION.set(scope), scope), ambient, outer


def leave(call: Call) -> None:
    """Leave the call's scope (after :func:`end`); restores the scopes the call started in."""
    if call._isolation_token is None:  # pragma: no cover - see enter()
        call._current_token.__exit__(None, None, None)
        return
    _reset(_CURRENT, call._current_token)  # type: ignore[arg-type]
    _reset(_ISOLATION, call._isolation_token)  # type: ignore[arg-type]


def _reset(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    try:
        var.reset(token)
    except (LookupError, ValueError):  # left in another context: never leave the fork installed
        var.set(None if token.old_value is contextvars.Token.MISSING else token.old_value)
