"""Running the app under waitress: :func:`serve_http` (blocking) and :func:`start_http_server` (a thread)."""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import Mapping
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from vgi_rpc.http._app import VgiFalconApp, make_wsgi_app
from vgi_rpc.http._common import normalise_prefix
from vgi_rpc.server import RpcServer

__all__ = ["HttpServerHandle", "serve_http", "start_http_server"]

_logger = logging.getLogger("vgi_rpc.http")

_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

# waitress's defaults suit small web pages: request bodies above 512 KiB are spooled
# to a temporary file and sockets are read 8 KiB at a time. Arrow bodies are often
# megabytes, so read in bigger chunks and keep bodies up to 64 MiB in memory.
# poll() instead of select(): select() cannot watch file descriptors above 1023, so
# a server holding hundreds of connections would break on it.
_WAITRESS_DEFAULTS: dict[str, Any] = {
    "recv_bytes": 256 * 1024,
    "inbuf_overflow": 64 << 20,
    "outbuf_overflow": 64 << 20,
    "ident": "vgi_rpc",
    "asyncore_use_poll": True,
}

CONNECTIONS_PER_THREAD = 64
"""Default ``connection_limit`` per worker thread (512 for the default 8 threads)."""

DEFAULT_IDLE_TIMEOUT = 30.0
"""Default seconds an idle connection (no request in progress) stays open."""

_FD_HEADROOM = 64  # descriptors kept free for everything else the process opens
_OWN_CHANNELS = 2  # waitress's listening socket and trigger, which it counts against the limit


def default_connection_limit(threads: int) -> int:
    """``CONNECTIONS_PER_THREAD * threads``, kept below this process's open-file limit."""
    limit = CONNECTIONS_PER_THREAD * max(1, threads)
    try:
        import resource
    except ImportError:  # not a POSIX system: no such limit to respect
        return limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, max(16, soft - _FD_HEADROOM))
    return limit


def _waitress_options(
    threads: int, connection_limit: int | None, idle_timeout: float, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    if connection_limit is not None and connection_limit < 1:
        raise ValueError("connection_limit must be at least 1")
    if not idle_timeout > 0:
        raise ValueError("idle_timeout must be positive")
    # waitress takes whole seconds and looks for idle connections every cleanup_interval
    timeout = max(1, math.ceil(idle_timeout))
    opts = dict(_WAITRESS_DEFAULTS)
    opts["threads"] = threads
    # waitress counts its listening socket and its wake-up trigger as connections too
    opts["connection_limit"] = (connection_limit or default_connection_limit(threads)) + _OWN_CHANNELS
    opts["channel_timeout"] = timeout
    opts["cleanup_interval"] = max(1, min(30, timeout // 2))
    if extra:
        opts.update(extra)
    return opts


def _create(
    app: VgiFalconApp,
    host: str,
    port: int,
    threads: int,
    connection_limit: int | None,
    idle_timeout: float,
    extra: Mapping[str, Any] | None,
) -> Any:
    """A waitress server for *app*, with ``TCP_NODELAY`` on every accepted connection."""
    opts = _waitress_options(threads, connection_limit, idle_timeout, extra)
    w = create_server(app, host=host, port=port, **opts)
    # Nagle's algorithm plus delayed ACKs turn a 1 ms call into a 40 ms one. waitress
    # applies ``adj.socket_options`` to each accepted socket and includes TCP_NODELAY by
    # default; make sure it stays there whatever version or options are in use.
    sockopts = list(w.adj.socket_options or [])
    if not any(tuple(o[:2]) == _NODELAY[:2] for o in sockopts):
        sockopts.append(_NODELAY)
        w.adj.socket_options = sockopts
    return w


class HttpServerHandle:
    """A waitress server running :func:`make_wsgi_app` on a background thread.

    Returned by :func:`start_http_server`; use it as a context manager (stops on exit)
    or call :meth:`stop`.

    Attributes:
        host: The bound address.
        port: The bound TCP port (the real one when 0 was asked for).
        prefix: The app's mount prefix.
        base_url: ``http://host:port`` (pass it with ``prefix`` to ``http_connect``).
        url: ``base_url + prefix``.
        app: The WSGI app.
        server: The :class:`~vgi_rpc.RpcServer` being served.
    """

    def __init__(
        self,
        app: VgiFalconApp,
        prefix: str,
        threads: int,
        waitress_options: Mapping[str, Any] | None,
        host: str,
        port: int,
        connection_limit: int | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.app = app
        self.server: RpcServer = app.vgi_server
        self.prefix = prefix
        self._waitress = _create(app, host, port, threads, connection_limit, idle_timeout, waitress_options)
        self.host = str(self._waitress.effective_host)
        self.port = int(self._waitress.effective_port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{shown}:{self.port}"
        self.url = self.base_url + prefix
        self._stop = threading.Event()
        # Held while the trigger is pulled and while the serving thread closes the sockets:
        # without it, a loop that sees _stop on its own can close the trigger between
        # stop()'s set() and its pull(), which then writes to a closed descriptor (EBADF).
        self._closing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"vgi_rpc-http-{self.port}", daemon=True)
        self._thread.start()

    def _map(self) -> dict[Any, Any]:
        w = self._waitress
        return w._map if hasattr(w, "_map") else w.map  # type: ignore[no-any-return]

    def _run(self) -> None:
        w = self._waitress
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.5, map=self._map(), use_poll=w.adj.asyncore_use_poll, count=1)
        finally:
            w.task_dispatcher.shutdown()
            with self._closing:
                self._closed = True
                wasyncore.close_all(self._map())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close connections and wait for the serving thread (idempotent)."""
        if self._stop.is_set():
            return
        with self._closing:
            self._stop.set()
            pull = getattr(self._waitress, "pull_trigger", None)
            if pull is not None and not self._closed:
                pull()
        self._thread.join(timeout)

    def __enter__(self) -> HttpServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<HttpServerHandle {self.url} serving {self.server.protocol_name}>"


def start_http_server(
    server: RpcServer | type,
    implementation: object | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = 8,
    connection_limit: int | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    waitress_options: Mapping[str, Any] | None = None,
    **app_options: Any,
) -> HttpServerHandle:
    """Serve on a background thread and return a running :class:`HttpServerHandle`.

    ``port=0`` (the default) picks a free port; read it from ``handle.port``. Takes
    the same server options as :func:`serve_http` and the same app options as
    :func:`make_wsgi_app`. Meant for tests and embedding::

        with start_http_server(server, prefix="/vgi") as h:
            with http_connect(Calculator, h.base_url, prefix="/vgi") as proxy: ...
    """
    app = make_wsgi_app(server, implementation, **app_options)
    prefix = _prefix_of(app_options)
    return HttpServerHandle(
        app, prefix, threads, waitress_options, host, port, connection_limit, idle_timeout
    )


def serve_http(
    server: RpcServer | type,
    implementation: object | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 8,
    connection_limit: int | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    waitress_options: Mapping[str, Any] | None = None,
    **app_options: Any,
) -> None:
    """Serve *server* over HTTP with waitress until interrupted (blocking).

    Args:
        server: A ready :class:`~vgi_rpc.RpcServer` (instrument it first), or a
            Protocol class followed by its *implementation*.
        implementation: The implementation when *server* is a Protocol class.
        host: Bind address (default loopback only).
        port: TCP port; ``0`` picks a free one, announced on stdout as ``PORT:<n>``.
        threads: waitress worker threads (concurrent requests).
        connection_limit: Most open connections (idle keep-alive ones included); past
            it new connections wait in the listen backlog until one closes. Default
            ``CONNECTIONS_PER_THREAD * threads`` (512 for 8 threads), kept 64 below
            the process's open-file limit.
        idle_timeout: Seconds a connection with no request in progress stays open
            (default 30; waitress counts whole seconds and checks every
            ``max(1, min(30, idle_timeout // 2))`` seconds, so one may live up to
            half as long again).
        waitress_options: Extra ``waitress`` adjustments (they win over the above);
            ``TCP_NODELAY`` is always set.
        **app_options: Passed to :func:`make_wsgi_app` (``prefix``, ``authenticate``,
            ``token_key``, ``token_ttl``, ``max_request_bytes``, ``sentry_config``,
            ``otel_config``...).

    Run several processes behind a load balancer with the same ``token_key``: any
    of them can serve any turn of any stream. The app also runs under gunicorn
    or any WSGI server (``make_wsgi_app``); waitress is simply the default here.
    """
    app = make_wsgi_app(server, implementation, **app_options)
    w = _create(app, host, port, threads, connection_limit, idle_timeout, waitress_options)
    bound = int(w.effective_port)
    prefix = _prefix_of(app_options)
    _logger.info(
        "vgi_rpc.http serving %s on http://%s:%d%s",
        app.vgi_server.protocol_name,
        w.effective_host,
        bound,
        prefix,
    )
    if port == 0:
        print(f"PORT:{bound}", flush=True)
    try:
        w.run()
    finally:
        w.task_dispatcher.shutdown()
        wasyncore.close_all(w._map if hasattr(w, "_map") else w.map)


def _prefix_of(app_options: Mapping[str, Any]) -> str:
    return normalise_prefix(str(app_options.get("prefix", "")))
