"""vgi_rpc: typed Protocol services over Apache Arrow IPC (pipe and HTTP).

``import vgi_rpc`` is cheap: it imports neither ``sentry_sdk``, ``opentelemetry``
nor ``falcon``. HTTP, Sentry and OpenTelemetry live in ``vgi_rpc.http``,
``vgi_rpc.sentry`` and ``vgi_rpc.otel``.

The package logs on the ``vgi_rpc`` logger (and its children ``vgi_rpc.http``,
``vgi_rpc.sentry``), which carries a :class:`logging.NullHandler`, as a library's
logger should: with no logging configured nothing is printed; configure logging
(``logging.basicConfig()``, a handler on ``vgi_rpc``) and every record reaches it.
"""

from __future__ import annotations

import logging

from vgi_rpc._types import ArrowType
from vgi_rpc.auth import AuthContext
from vgi_rpc.context import CallContext
from vgi_rpc.errors import ProtocolError, RpcError
from vgi_rpc.hooks import DispatchHook, DispatchInfo, register_dispatch_hook, strip_dispatch_hooks
from vgi_rpc.pipe import connect, run_server, serve_pipe
from vgi_rpc.server import RpcServer
from vgi_rpc.streams import (
    AnnotatedBatch,
    ExchangeState,
    OutputCollector,
    ProducerState,
    Stream,
    StreamState,
)

logging.getLogger("vgi_rpc").addHandler(logging.NullHandler())

__all__ = [
    "AnnotatedBatch",
    "ArrowType",
    "AuthContext",
    "CallContext",
    "DispatchHook",
    "DispatchInfo",
    "ExchangeState",
    "OutputCollector",
    "ProducerState",
    "ProtocolError",
    "RpcError",
    "RpcServer",
    "Stream",
    "StreamState",
    "connect",
    "register_dispatch_hook",
    "run_server",
    "serve_pipe",
    "strip_dispatch_hooks",
]
