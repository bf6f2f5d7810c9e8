"""Which Sentry SDK is installed, and the SDK calls that are the same on sentry-sdk 2.x and 3.x (internal).

The hook (``vgi_rpc._sentry_hook``) reaches the SDK only through this module and
the per-call adapter :mod:`vgi_rpc._sentry_dispatch` (the call's forked scope and
its spans: what differs between the generations, transactions on 2.x and
streamed span items on 3.x). Here: the version check and the calls that are the
same on both generations (``capture_exception``, ``is_initialized``, the stack
the SDK attaches to a message).

:data:`PROBLEM` says why the installed SDK cannot be instrumented (``None``
when it can): an unknown major version, a 2.x older than :data:`MINIMUM`, or a
missing API the adapter relies on. Nothing here raises at import time except
when ``sentry_sdk`` is not installed at all (an ``ImportError`` that names the
extra).
"""

from __future__ import annotations

import contextvars
import os
import re
from typing import Any

from vgi_rpc._extras import require

require("vgi_rpc.sentry", "sentry")  # a missing sentry_sdk names the extra to install

import sentry_sdk  # noqa: E402

__all__ = [
    "MINIMUM",
    "PROBLEM",
    "SUPPORTED",
    "VERSION",
    "attach_stack_like_the_sdk",
    "capture_exception",
    "is_initialized",
    "start_sdk_threads_outside_calls",
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


# -- the SDK's own threads start outside any call (issue 22) ---------------------------------------------

_threads_started_for: Any = None  # the client whose threads were started, in this process


def _forget_started_threads() -> None:
    global _threads_started_for
    _threads_started_for = None


os.register_at_fork(after_in_child=_forget_started_threads)  # a forked worker starts its own threads


def _start_threads(client: Any) -> None:
    """Start *client*'s transport worker and batcher threads now (private SDK parts: each one guarded)."""
    parts = [getattr(getattr(client, "transport", None), "_worker", None)]
    parts += [getattr(client, name, None) for name in ("span_batcher", "log_batcher", "metrics_batcher")]
    for part in parts:
        ensure = getattr(part, "_ensure_thread", None)
        if callable(ensure):
            try:
                ensure()
            except Exception:  # pragma: no cover - defensive: the SDK changed under us
                continue


def start_sdk_threads_outside_calls() -> None:
    """Start the global client's sending threads from an empty context, once per client and process.

    Why: the SDK starts its transport worker (and 3.x its span batcher) lazily,
    the first time something is sent, and ``ThreadingIntegration``
    (``propagate_scope=True``, a default integration) hands a new thread a copy of
    the starting thread's scope. Started inside an HTTP call, the worker inherits
    the request's open span; on sentry-sdk 3.0.0 every envelope POST to a DSN
    with an explicit port that refuses connections then leaves an unfinished
    ``http.client`` span chained to the previous one on that scope (the SDK's
    stdlib integration does not recognise its own request when the DSN has a
    port, and a refused connect never reaches ``getresponse``), so memory grows
    by about 5 KiB per call while Sentry is down. Started here, from an empty
    ``contextvars.Context``, the threads hold no call's scope. The reproduction
    without vgi_rpc is in docs/sentry.md "When Sentry itself fails".

    Costs one global-scope lookup per call; does nothing for a client without
    these parts (a custom transport such as the kit's in-memory one). Never raises.
    """
    global _threads_started_for
    client = sentry_sdk.Scope.get_global_scope().client
    if client is _threads_started_for:
        return
    _threads_started_for = client
    if client is not None and getattr(client, "transport", None) is not None:
        contextvars.Context().run(_start_threads, client)
