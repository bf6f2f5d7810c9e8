"""The caller's trace context, for the requests our clients send.

:func:`outgoing_trace_headers` is called by the pipe client (once per call, the
headers go into the request batch's custom metadata) and by the HTTP client
(on every request, the headers go onto the request). It never imports Sentry or
OpenTelemetry: it looks them up in ``sys.modules``, so a process that never
imported either pays two dict lookups and gets an empty dict.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["outgoing_trace_headers"]

_logger = logging.getLogger("vgi_rpc")
_modules = sys.modules

_SENTRY = "sentry_sdk"
_OTEL_TRACE = "opentelemetry.trace"
_BAGGAGE = "baggage"


def outgoing_trace_headers(transport: str, url: str | None = None) -> dict[str, str]:
    """The trace headers a request made now, from this thread, should carry.

    *transport* is ``"pipe"`` or ``"http"``. The keys, lower-case, are:

    * ``sentry-trace`` and ``baggage`` when a Sentry client is active
      (``sentry_sdk.get_client().is_active()``): the current span's, or the
      scope's propagation context outside a span, as Sentry's own integrations
      send them. Over HTTP nothing is added for Sentry when the active client
      has its httpx integration enabled (the default when httpx is installed):
      that integration puts them on the request itself; nor when *url* is not
      one of the client's ``trace_propagation_targets`` (as that integration
      decides).
    * ``traceparent`` (and ``tracestate``, and OTel ``baggage`` entries) from
      OpenTelemetry's global propagator, when the current OTel span context is
      valid. OTel and Sentry baggage members are merged into one ``baggage``.

    Returns a new, possibly empty dict. Never raises: a failure inside either
    SDK is logged at DEBUG on the ``vgi_rpc`` logger and that SDK's part is left out.
    """
    sentry = _modules.get(_SENTRY)
    otel = _modules.get(_OTEL_TRACE)
    if sentry is None and otel is None:
        return {}
    headers: dict[str, str] = {}
    if otel is not None:
        _add_otel(otel, headers)
    if sentry is not None:
        _add_sentry(sentry, transport, url, headers)
    return headers


def _add_otel(trace_api: Any, headers: dict[str, str]) -> None:
    """Inject the current OTel span's context through the global propagator, if it is valid."""
    try:
        if not trace_api.get_current_span().get_span_context().is_valid:
            return
        from opentelemetry import propagate

        propagate.inject(headers)
    except Exception:
        _logger.debug("vgi_rpc: OpenTelemetry trace propagation failed; not sent", exc_info=True)


def _add_sentry(sdk: Any, transport: str, url: str | None, headers: dict[str, str]) -> None:
    """Add ``sentry-trace``/``baggage`` when a Sentry client is active (see the caller)."""
    try:
        client = sdk.get_client()
        if not client.is_active():
            return
        if transport == "http":
            if client.get_integration("httpx") is not None:
                return  # Sentry's httpx integration injects on the request itself
            if url is not None and not sdk.tracing_utils.should_propagate_trace(client, url):
                return
        trace = sdk.get_traceparent()
        if not trace:
            return
        trace = str(trace)
        baggage = _sentry_baggage(sdk, client, trace)
    except Exception:
        _logger.debug("vgi_rpc: Sentry trace propagation failed; not sent", exc_info=True)
        return
    headers["sentry-trace"] = trace
    if baggage:
        headers[_BAGGAGE] = _merge_baggage(headers.get(_BAGGAGE), baggage)


_last_baggage: tuple[int, str, str] = (0, "", "")
"""(id of the Sentry client, trace id and sampled flag, its serialised baggage) of the last call."""


def _sentry_baggage(sdk: Any, client: object, trace: str) -> str:
    """``sentry_sdk.get_baggage()`` as a string, reused while the client and the trace stay the same.

    A trace's Sentry baggage (its dynamic sampling context) is frozen by the SDK the
    first time it is propagated and is the same for every request of that trace
    (with or without a sampling decision: the key has the flag of ``sentry-trace``);
    building and serialising it costs 20-50 us a call, about a fifth of a pipe
    round trip, so the last one is kept (one entry: a tuple swap, thread-safe).
    """
    global _last_baggage
    # the trace id and the sampled flag: sentry-sdk 3 keeps one trace id from outside a span to inside
    trace_id, _, rest = trace.partition("-")
    trace_id += rest[16:]
    client_id, cached_trace, cached = _last_baggage
    if client_id == id(client) and cached_trace == trace_id:
        return cached
    baggage = sdk.get_baggage()
    value = str(baggage) if baggage else ""
    _last_baggage = (id(client), trace_id, value)
    return value


def _merge_baggage(existing: str | None, sentry_baggage: str) -> str:
    """*existing* baggage without its ``sentry-`` members, then Sentry's (as Sentry's integrations do)."""
    if not existing:
        return sentry_baggage
    kept = [m for m in existing.split(",") if m.strip() and not m.strip().startswith("sentry-")]
    return ",".join([*kept, sentry_baggage])
