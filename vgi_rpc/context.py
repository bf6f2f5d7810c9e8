"""The per-call :class:`CallContext` handed to implementations that accept ``ctx``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vgi_rpc.auth import AuthContext

__all__ = ["LOG_LEVELS", "CallContext", "LogItem", "LogSink", "normalize_level"]

LOG_LEVELS = frozenset({"EXCEPTION", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"})
"""Log levels the wire (and the official client) accepts."""

_ALIASES = {"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}

LogSink = Callable[[str, str, Mapping[str, Any]], None]
"""Where a call's log messages go: ``sink(level, message, extra)`` (level already normalised)."""

LogItem = tuple[str, str, Mapping[str, Any]]
"""One buffered log message, ``(level, message, extra)``: what a :data:`LogSink` received."""


def normalize_level(level: str) -> str:
    """Map a level name to its wire spelling (``"warning"`` -> ``"WARN"``); reject unknown ones."""
    up = level.upper()
    up = _ALIASES.get(up, up)
    if up not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(LOG_LEVELS)}")
    return up


class CallContext:
    """Facts about the current call, and a way to send log messages to the client.

    An implementation method receives one when its signature has a ``ctx``
    parameter. Stream states receive one on every ``process``/``produce`` call.

    Attributes:
        auth: The caller's :class:`~vgi_rpc.auth.AuthContext`.
        server_id: The serving ``RpcServer.server_id``.
        method: The RPC method name.
        protocol_name: The Protocol's wire name.
        request_id: 16-hex id of this dispatch (one per HTTP turn).
        stream_id: 32-hex id shared by all turns of a stream call; ``None`` for unary.
        transport_metadata: HTTP headers (lower-case) or pipe request metadata.
    """

    __slots__ = (
        "_sink",
        "auth",
        "method",
        "protocol_name",
        "request_id",
        "server_id",
        "stream_id",
        "transport_metadata",
    )

    def __init__(
        self,
        *,
        auth: AuthContext,
        server_id: str,
        method: str,
        protocol_name: str,
        request_id: str,
        sink: LogSink,
        stream_id: str | None = None,
        transport_metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.auth = auth
        self.server_id = server_id
        self.method = method
        self.protocol_name = protocol_name
        self.request_id = request_id
        self.stream_id = stream_id
        self.transport_metadata: Mapping[str, str] = transport_metadata or {}
        self._sink = sink

    def log(self, level: str, message: str, **extra: Any) -> None:
        """Send a log message to the client (delivered before the call's result).

        ``level`` is one of ``EXCEPTION ERROR WARN INFO DEBUG TRACE`` (``WARNING`` is
        accepted as ``WARN``); ``extra`` values are sent as JSON.
        """
        self._sink(normalize_level(level), message, extra)

    client_log = log
