"""Running the app under waitress: :func:`serve_http` (blocking) and :func:`start_http_server` (a thread)."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from vgi_rpc._stopping import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_SENTRY_FLUSH_TIMEOUT,
    check_stop_options,
    flush_sentry,
)
from vgi_rpc.http._app import VgiFalconApp, make_wsgi_app
from vgi_rpc.http._common import normalise_prefix
from vgi_rpc.server import RpcServer

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_SENTRY_FLUSH_TIMEOUT",
    "HttpServerHandle",
    "serve_http",
    "start_http_server",
]

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


def _map_of(w: Any) -> dict[Any, Any]:
    return w._map if hasattr(w, "_map") else w.map  # type: ignore[no-any-return]


def _serve_until(w: Any, stop: threading.Event) -> None:
    """Run waitress's event loop until *stop* is set (a signal or ``stop()`` pulls the trigger)."""
    m = _map_of(w)
    while not stop.is_set():
        wasyncore.loop(timeout=0.5, map=m, use_poll=w.adj.asyncore_use_poll, count=1)


def _busy(channel: Any) -> bool:
    """Whether *channel* has a request being received, served or answered (not idle keep-alive)."""
    return bool(
        channel.requests
        or channel.request is not None
        or channel.total_outbufs_len
        or channel.close_when_flushed
    )


def _drain(w: Any, grace: float, forced: threading.Event) -> int:
    """Stop accepting, then let busy connections finish for up to *grace* seconds.

    The listening socket is closed first, so a new connection is refused by the
    kernel instead of accepted and dropped. Idle keep-alive connections are closed
    as soon as they are seen idle (a finished call's connection too, once its answer
    is sent). Returns how many connections were still busy when the grace ended
    (or *forced* was set); the caller closes them.
    """
    if w.accepting or w.socket is not None:
        w.accepting = False
        wasyncore.dispatcher.close(w)  # the listener only: the trigger stays for the loop below
    m = _map_of(w)
    deadline = time.monotonic() + max(0.0, grace)
    while True:
        busy = 0
        for channel in list(w.active_channels.values()):
            if _busy(channel):
                busy += 1
            elif not channel.will_close:
                channel.will_close = True  # the loop closes it on its next pass
        left = deadline - time.monotonic()
        if not busy or forced.is_set() or left <= 0:
            return busy
        wasyncore.loop(timeout=min(0.1, left), map=m, use_poll=w.adj.asyncore_use_poll, count=1)


def _close(w: Any, abandoned: int) -> None:
    """Close every connection and the trigger, and stop the worker threads.

    With *abandoned* calls still running, their connections are closed under them
    (the client sees the connection drop, never a partial answer it could take for
    a whole one) and the threads are not waited for (waitress's are daemons).
    """
    m = _map_of(w)
    if abandoned:
        _logger.warning(
            "vgi_rpc.http: grace period over with %d call(s) still running; closing their connections",
            abandoned,
        )
    for channel in list(w.active_channels.values()):
        with contextlib.suppress(Exception):
            channel.handle_close()
    w.task_dispatcher.shutdown(timeout=0.2 if abandoned else 5)
    wasyncore.close_all(m)


@contextlib.contextmanager
def _stop_on_signals(w: Any, stop: threading.Event, forced: threading.Event) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set *stop* (a second one sets *forced*); restored on exit.

    Only in the main thread (the only one Python lets set handlers); a signal that
    was ignored when we started stays ignored (``nohup``, a background job).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            forced.set()
        stop.set()
        w.pull_trigger()  # wake the event loop now rather than at its next timeout

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class HttpServerHandle:
    """A waitress server running :func:`make_wsgi_app` on a background thread.

    Returned by :func:`start_http_server`; use it as a context manager (stops on exit)
    or call :meth:`stop`. It installs no signal handlers (the embedding program owns
    them): call :meth:`stop` from your own shutdown path.

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
        grace_period: float = DEFAULT_GRACE_PERIOD,
        sentry_flush_timeout: float = DEFAULT_SENTRY_FLUSH_TIMEOUT,
    ) -> None:
        check_stop_options(grace_period, sentry_flush_timeout)
        self.app = app
        self.server: RpcServer = app.vgi_server
        self.prefix = prefix
        self._waitress = _create(app, host, port, threads, connection_limit, idle_timeout, waitress_options)
        self.host = str(self._waitress.effective_host)
        self.port = int(self._waitress.effective_port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{shown}:{self.port}"
        self.url = self.base_url + prefix
        self.grace_period = grace_period
        self.sentry_flush_timeout = sentry_flush_timeout
        self._stop = threading.Event()
        self._forced = threading.Event()
        # Held while the trigger is pulled and while the serving thread closes the sockets:
        # without it, a loop that sees _stop on its own can close the trigger between
        # stop()'s set() and its pull(), which then writes to a closed descriptor (EBADF).
        self._closing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"vgi_rpc-http-{self.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        w = self._waitress
        abandoned = 0
        try:
            _serve_until(w, self._stop)
            abandoned = _drain(w, self.grace_period, self._forced)
        finally:
            with self._closing:
                self._closed = True
                _close(w, abandoned)

    def stop(self, timeout: float | None = None, *, grace_period: float | None = None) -> None:
        """Stop gracefully and wait for it (idempotent; later calls return at once).

        New connections are refused at once (the listening socket is closed), idle
        connections are closed, and calls in progress get up to *grace_period*
        seconds (default: the handle's, :data:`DEFAULT_GRACE_PERIOD` unless
        ``start_http_server(grace_period=)`` said otherwise) to finish and send their
        answers. Calls still running then lose their connection: their clients get
        a transport error, never a cut-short answer. Then Sentry is flushed for up
        to the handle's ``sentry_flush_timeout`` (when a Sentry client is active).

        Args:
            timeout: Most seconds to wait for the serving thread; default the grace
                period plus 10.
            grace_period: This stop's grace period, overriding the handle's.
        """
        if self._stop.is_set():
            return
        if grace_period is not None:
            check_stop_options(grace_period, 0)
            self.grace_period = grace_period
        with self._closing:
            self._stop.set()
            pull = getattr(self._waitress, "pull_trigger", None)
            if pull is not None and not self._closed:
                pull()
        self._thread.join(self.grace_period + 10 if timeout is None else timeout)
        flush_sentry(self.sentry_flush_timeout, "vgi_rpc.http")

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
    grace_period: float = DEFAULT_GRACE_PERIOD,
    sentry_flush_timeout: float = DEFAULT_SENTRY_FLUSH_TIMEOUT,
    **app_options: Any,
) -> HttpServerHandle:
    """Serve on a background thread and return a running :class:`HttpServerHandle`.

    ``port=0`` (the default) picks a free port; read it from ``handle.port``. Takes
    the same server options as :func:`serve_http` and the same app options as
    :func:`make_wsgi_app`; *grace_period* and *sentry_flush_timeout* apply when the
    handle is stopped (:meth:`HttpServerHandle.stop`). No signal handler is
    installed. Meant for tests and embedding::

        with start_http_server(server, prefix="/vgi") as h:
            with http_connect(Calculator, h.base_url, prefix="/vgi") as proxy: ...
    """
    app = make_wsgi_app(server, implementation, **app_options)
    prefix = _prefix_of(app_options)
    return HttpServerHandle(
        app,
        prefix,
        threads,
        waitress_options,
        host,
        port,
        connection_limit,
        idle_timeout,
        grace_period,
        sentry_flush_timeout,
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
    grace_period: float = DEFAULT_GRACE_PERIOD,
    sentry_flush_timeout: float = DEFAULT_SENTRY_FLUSH_TIMEOUT,
    handle_signals: bool = True,
    **app_options: Any,
) -> None:
    """Serve *server* over HTTP with waitress until SIGTERM or SIGINT (blocking), then stop gracefully.

    On the first signal: new connections are refused, calls in progress get
    *grace_period* seconds to finish, the connections of calls still running then
    are closed (their clients get a transport error, never a cut-short answer),
    Sentry is flushed (when a client is active) and this returns normally, so a
    script ending with it exits 0. A second signal ends the grace period at once.
    Handlers only in the main thread, never for an ignored signal, and the previous
    ones are put back (docs/http.md, "Stopping").

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
            (default 30; checked every ``max(1, min(30, idle_timeout // 2))`` whole
            seconds, so one may live up to half as long again).
        waitress_options: Extra ``waitress`` adjustments (they win over the above);
            ``TCP_NODELAY`` is always set.
        grace_period: Seconds calls in progress get once stopping (default 30).
        sentry_flush_timeout: Most seconds spent flushing Sentry (default 2; ``0`` skips).
        handle_signals: ``False`` leaves SIGTERM and SIGINT alone (a
            ``KeyboardInterrupt`` still stops gracefully).
        **app_options: Passed to :func:`make_wsgi_app` (``prefix``, ``authenticate``,
            ``token_key``, ``token_ttl``, ``max_request_bytes``, ``sentry_config``,
            ``otel_config``...).

    Run several processes behind a load balancer with the same ``token_key``: any
    of them can serve any turn of any stream. The app also runs under gunicorn
    or any WSGI server (``make_wsgi_app``); waitress is simply the default here.
    """
    check_stop_options(grace_period, sentry_flush_timeout)
    app = make_wsgi_app(server, implementation, **app_options)
    w = _create(app, host, port, threads, connection_limit, idle_timeout, waitress_options)
    _announce(w, app, port == 0, _prefix_of(app_options))
    _serve_then_stop(w, grace_period, handle_signals)
    flush_sentry(sentry_flush_timeout, "vgi_rpc.http")


def _announce(w: Any, app: VgiFalconApp, print_port: bool, prefix: str) -> None:
    bound = int(w.effective_port)
    _logger.info(
        "vgi_rpc.http serving %s on http://%s:%d%s",
        app.vgi_server.protocol_name,
        w.effective_host,
        bound,
        prefix,
    )
    if print_port:
        print(f"PORT:{bound}", flush=True)


def _serve_then_stop(w: Any, grace_period: float, handle_signals: bool) -> None:
    """:func:`serve_http`'s loop: serve until a signal (or ``KeyboardInterrupt``), drain, close."""
    stop, forced = threading.Event(), threading.Event()
    abandoned = 0
    try:
        with _stop_on_signals(w, stop, forced) if handle_signals else contextlib.nullcontext():
            with contextlib.suppress(KeyboardInterrupt):
                _serve_until(w, stop)
            _logger.info("vgi_rpc.http stopping: waiting up to %gs for calls in progress", grace_period)
            abandoned = _drain(w, grace_period, forced)
    finally:
        _close(w, abandoned)


def _prefix_of(app_options: Mapping[str, Any]) -> str:
    return normalise_prefix(str(app_options.get("prefix", "")))
