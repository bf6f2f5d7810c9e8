"""Server-side Sentry instrumentation: error capture, request context, optional tracing.

Requires ``pip install 'vgi-rpc[sentry]'`` (sentry-sdk 2.x from 2.36, or 3.x); without
it, importing this module raises an ``ImportError`` that names the extra, and with
an SDK it cannot instrument, instrumenting raises :class:`SentrySdkUnsupportedError`
(auto-attach logs a WARNING). ``import vgi_rpc`` never imports this module;
importing it imports ``sentry_sdk``.

This module is the public face: :func:`instrument_server_sentry`, the
auto-attach seam, and the names re-exported from the internal modules that do
the work, one per seam -- ``_sentry_config`` (:class:`SentryConfig`, the
redactors), ``_sentry_hook`` (the dispatch hook: assembles a call's facts),
``_sentry_facts`` (the facts type, and what of the params is recorded and what
is hidden, B4/B6), ``_sentry_values`` (what Sentry stores unchanged, B8),
``_sentry_sdk`` (which SDK is installed) and ``_sentry_dispatch`` (the SDK
adapter: a call's forked scope and spans; what differs between the
generations, transactions vs streamed span items, lives there). The hook reads
the same for both generations. vgi-rpc never calls
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
* every value sent as Sentry's ingestion (Relay) stores it, or not at all (B8:
  tag values stripped and clipped, tag keys checked when the config is built,
  user fields within Relay's limits, span integers within 64 bits);
* ``capture_exception`` of the *original* exception at dispatch end, inside the
  call's scope, so the one error event carries the RPC context;
* transaction and event names ``rpc {method}`` (source ``custom``) that survive
  Sentry's Falcon integration, which otherwise renames events to the route
  template when they are sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vgi_rpc import _sentry_sdk as sdk  # first: a missing SDK raises an ImportError naming the extra
from vgi_rpc._sentry_config import (
    ParamRedactor,
    SentryConfig,
    SentrySdkUnsupportedError,
    default_redactor,
    noop_redactor,
)
from vgi_rpc._sentry_facts import MIN_SCRUB_CHARS
from vgi_rpc._sentry_hook import _SentryDispatchHook as _SentryDispatchHook
from vgi_rpc._sentry_values import TAG_VALUE_MAX_CHARS, USER_FIELD_MAX_CHARS  # noqa: F401 - documented

if TYPE_CHECKING:
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
