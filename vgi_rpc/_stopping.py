"""What stopping a server means on every transport: the defaults, their check, the Sentry flush (internal).

``serve_http``/``HttpServerHandle.stop()`` (:mod:`vgi_rpc.http`) and ``run_server``
(:mod:`vgi_rpc.pipe`) stop the same way: calls in progress get
:data:`DEFAULT_GRACE_PERIOD` seconds, then Sentry is flushed for at most
:data:`DEFAULT_SENTRY_FLUSH_TIMEOUT` seconds. The rules they share live here.

Core layer: nothing is imported from a transport or an instrumentation, and
``sentry_sdk`` is never imported (it is flushed only when something else loaded it).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["DEFAULT_GRACE_PERIOD", "DEFAULT_SENTRY_FLUSH_TIMEOUT", "check_stop_options", "flush_sentry"]

_logger = logging.getLogger("vgi_rpc")

DEFAULT_GRACE_PERIOD = 30.0
"""Default seconds a stopping server lets calls in progress finish."""

DEFAULT_SENTRY_FLUSH_TIMEOUT = 2.0
"""Default seconds a stopping server waits for Sentry to send what it queued (the SDK's own default)."""


def check_stop_options(grace_period: float, sentry_flush_timeout: float) -> None:
    """Raise ``ValueError`` naming the option unless both are 0 or more seconds (NaN is refused)."""
    if not grace_period >= 0:
        raise ValueError("grace_period must be 0 or more seconds")
    if not sentry_flush_timeout >= 0:
        raise ValueError("sentry_flush_timeout must be 0 or more seconds")


def flush_sentry(timeout: float, who: str) -> None:
    """Send what the Sentry SDK queued, waiting at most *timeout* seconds (``0``: skip).

    Never imports ``sentry_sdk``: when nothing imported it there is no client to flush.
    A failure is logged as *who*'s warning, never raised: stopping must not depend on
    Sentry.
    """
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None or not timeout > 0:
        return
    try:
        if sdk.get_client().is_active():
            sdk.flush(timeout=timeout)
    except Exception:
        _logger.warning("%s: flushing Sentry failed", who, exc_info=True)
