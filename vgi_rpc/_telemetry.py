"""What the core offers the instrumentations: shared ``rpc.*`` names, the status-line seam, a safe reset (internal).

Three small rules that Sentry (:mod:`vgi_rpc.sentry`), OpenTelemetry
(:mod:`vgi_rpc.otel`), the HTTP app and the testing kit each need, written once
and importable from all of them without importing any of them:

* the ``rpc.*`` attribute vocabulary (:func:`rpc_attributes`): ``rpc.system``,
  ``rpc.service``, ``rpc.method`` and the method type, under the key each
  instrumentation documents (``rpc.method_type`` for Sentry,
  ``rpc.vgi_rpc.method_type`` for OpenTelemetry);
* the callbacks a transport runs once a response's status line is decided
  (:func:`after_status_line`): an instrumentation registers one when it is
  imported, the HTTP app runs them (:func:`status_line_decided`), and neither
  imports the other;
* resetting a :class:`~contextvars.ContextVar` that may be reset from another
  context (:func:`reset_context_var`).

Core layer: no transport, no instrumentation and no optional package is imported here.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vgi_rpc.hooks import DispatchInfo

__all__ = [
    "METHOD",
    "METHOD_TYPE",
    "PARAM_PREFIX",
    "SERVER_ID",
    "SERVICE",
    "STREAM_ID",
    "SYSTEM",
    "SYSTEM_NAME",
    "after_status_line",
    "has_status_line_callbacks",
    "reset_context_var",
    "rpc_attributes",
    "status_line_decided",
]

_logger = logging.getLogger("vgi_rpc")

# -- the rpc.* vocabulary -------------------------------------------------------------------------

SYSTEM = "rpc.system"
"""OpenTelemetry's RPC convention: the RPC system, always :data:`SYSTEM_NAME`."""
SYSTEM_NAME = "vgi_rpc"
SERVICE = "rpc.service"
"""The Protocol's wire name."""
METHOD = "rpc.method"
"""The method name."""
METHOD_TYPE = "rpc.method_type"
"""``"unary"`` or ``"stream"`` (Sentry's key; OpenTelemetry uses ``rpc.vgi_rpc.method_type``)."""
STREAM_ID = "rpc.stream_id"
"""Sentry span data: shared by every turn of one stream call."""
SERVER_ID = "rpc.server_id"
"""Sentry span data: the serving ``RpcServer.server_id``."""
PARAM_PREFIX = "rpc.param."
"""Sentry: a recorded param (span data) or a ``tag_params`` tag is ``rpc.param.<name>``."""


def rpc_attributes(
    info: DispatchInfo, *, method_type_key: str = METHOD_TYPE, service: str | None = None
) -> dict[str, Any]:
    """A new dict of the four attributes every instrumentation records for one dispatch.

    ``rpc.system``, ``rpc.service`` (*service* if given, else ``info.service``),
    ``rpc.method`` and the method type under *method_type_key*, in that order.
    """
    return {
        SYSTEM: SYSTEM_NAME,
        SERVICE: info.service if service is None else service,
        METHOD: info.name,
        method_type_key: info.method_type,
    }


# -- the status-line seam ---------------------------------------------------------------------------

_after_status_line: list[Callable[[], None]] = []


def after_status_line(callback: Callable[[], None]) -> None:
    """Register *callback* to run after each HTTP response's ``start_response`` (once; idempotent).

    It runs in the request's context, once the status line is decided (Sentry's
    WSGI integration sets a span's status from it there). It must be cheap; an
    exception it raises is logged and never reaches the response.
    """
    if callback not in _after_status_line:
        _after_status_line.append(callback)


def has_status_line_callbacks() -> bool:
    """Whether any callback is registered (the HTTP app wraps ``start_response`` only then)."""
    return bool(_after_status_line)


def status_line_decided() -> None:
    """Run the registered callbacks (the HTTP app calls this after ``start_response``)."""
    for callback in _after_status_line:
        try:
            callback()
        except Exception:  # a broken instrumentation never breaks the response
            _logger.warning("after-status-line callback %r failed", callback, exc_info=True)


# -- a ContextVar reset that survives another context --------------------------------------------------


def reset_context_var(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    """``var.reset(token)``; from another context, set the value the token replaced instead.

    ``ContextVar.reset`` raises ``ValueError`` when *token* was created in another
    context (a scope entered in one thread or task and left in another). The
    previous value is put back anyway, so what *token* replaced is never left
    installed; a variable that had no value gets ``None`` (the default of the
    variables this is used for: the Sentry SDK's scopes).
    """
    try:
        var.reset(token)
    except ValueError:
        var.set(None if token.old_value is contextvars.Token.MISSING else token.old_value)
