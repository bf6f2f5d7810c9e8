"""vgi_rpc: typed Protocol services over Apache Arrow IPC (pipe and HTTP).

``import vgi_rpc`` is cheap: it imports neither ``sentry_sdk``, ``opentelemetry``
nor ``falcon``. HTTP, Sentry and OpenTelemetry live in ``vgi_rpc.http``,
``vgi_rpc.sentry`` and ``vgi_rpc.otel``.
"""

from __future__ import annotations

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
