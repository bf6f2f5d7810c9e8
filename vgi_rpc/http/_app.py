"""The Falcon WSGI app: its routes, Falcon's own errors and the safety net.

Routes (``P`` is the prefix, ``{protocol}`` the server's ``protocol_name``):

=========================  ======================================================
``OPTIONS/GET/HEAD P/health``  capability probe (no authentication)
``POST P/{protocol}/{method}``          unary call
``POST P/{protocol}/{method}/init``     open a stream
``POST P/{protocol}/{method}/exchange`` one stream turn (or cancel)
=========================  ======================================================

The resources behind the routes (body handling, status codes, the one error path of
an RPC request) are in ``vgi_rpc.http._routes``.

Every response carries exactly one ``VGI-Accept-Max-Response-Bytes-Support: true``
(the official client checks it before anything else). Bodies are Arrow IPC streams
except 401 (JSON). Errors never leak the server's Python traceback unless the
``RpcServer`` was built with ``include_tracebacks=True``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import falcon

from vgi_rpc._telemetry import has_status_line_callbacks, status_line_decided
from vgi_rpc._trace_in import sanitise_environ
from vgi_rpc.errors import ProtocolError, clip
from vgi_rpc.http._auth import Authenticator
from vgi_rpc.http._common import ARROW_CONTENT_TYPE, BUDGET_SUPPORT_HEADER, normalise_prefix
from vgi_rpc.http._routes import ResponseTooLargeError, add_routes
from vgi_rpc.http._routes import internal_error_body as _internal_error_body
from vgi_rpc.http._tokens import TokenKey, TokenSealer
from vgi_rpc.http._turns import ProducerTurnBytes, Turns
from vgi_rpc.server import RpcServer, as_server
from vgi_rpc.wire import error_stream_bytes, new_request_id

__all__ = ["ResponseTooLargeError", "VgiFalconApp", "make_wsgi_app"]

_logger = logging.getLogger("vgi_rpc.http")

StartResponse = Callable[..., Any]


class _BudgetHeader:
    """Falcon middleware: stamp the capability header on every response, errors included."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, ok: bool
    ) -> None:
        resp.set_header(BUDGET_SUPPORT_HEADER, "true")


class VgiFalconApp(falcon.App[falcon.Request, falcon.Response]):
    """A ``falcon.App`` whose ``__call__`` never lets an exception escape.

    Whatever goes wrong below (even a bug in Falcon middleware), the client gets a 500
    with the capability header and an Arrow error stream, never a bare server page.
    """

    vgi_server: RpcServer

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # before Sentry's WSGI integration (inside falcon.App.__call__) reads the trace headers
        sanitise_environ(environ)
        if has_status_line_callbacks():  # e.g. Sentry's: re-applies a failed call's span status
            start_response = _then(start_response, status_line_decided)
        try:
            return super().__call__(environ, start_response)
        except Exception as exc:
            _logger.error("vgi_rpc.http: unhandled error outside any responder", exc_info=True)
            body = _internal_error_body(self.vgi_server, exc)
            start_response(
                "500 Internal Server Error",
                [
                    ("Content-Type", ARROW_CONTENT_TYPE),
                    ("Content-Length", str(len(body))),
                    (BUDGET_SUPPORT_HEADER, "true"),
                ],
                sys.exc_info(),
            )
            return [body]


def _then(start_response: StartResponse, after: Callable[[], None]) -> StartResponse:
    """*start_response*, then *after()* (in the request's context, once the status line is decided)."""

    def wrapped(*args: Any) -> Any:
        result = start_response(*args)
        after()
        return result

    return wrapped


def _http_error_handler(server: RpcServer) -> Callable[..., None]:
    """Falcon's own errors (no route, wrong verb...) as Arrow error streams."""

    def handle(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: Any) -> None:
        status = ex.status_code
        detail = ex.description or ex.title or "HTTP error"
        if status == 404:
            detail = f"no vgi-rpc route for {req.method} {clip(req.path)}"
            kind = "method_not_implemented"
        elif status == 405:
            detail = f"{req.method} is not allowed on {clip(req.path)}"
            kind = "method_not_allowed"
        else:
            kind = "bad_request"
        resp.status = status
        resp.content_type = ARROW_CONTENT_TYPE
        if ex.headers:
            resp.set_headers(ex.headers)
        resp.data = error_stream_bytes(
            ProtocolError(detail, error_kind=kind, status=status), server_id=server.server_id
        )

    return handle


def _unexpected_handler(server: RpcServer) -> Callable[..., None]:
    def handle(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
        request_id = new_request_id()
        _logger.error(
            "vgi_rpc.http: unhandled error serving %s (request %s)", req.path, request_id, exc_info=ex
        )
        resp.status = 500
        resp.content_type = ARROW_CONTENT_TYPE
        resp.data = _internal_error_body(server, ex, request_id)

    return handle


def make_wsgi_app(
    server: RpcServer | type,
    implementation: object | None = None,
    *,
    prefix: str = "",
    authenticate: Authenticator | None = None,
    token_key: TokenKey | list[TokenKey] | tuple[TokenKey, ...] | None = None,
    token_ttl: float = 3600,
    max_request_bytes: int | None = None,
    compress_responses: bool | str = False,
    producer_turn_bytes: ProducerTurnBytes = None,
    sentry_config: Any = None,
    otel_config: Any = None,
) -> VgiFalconApp:
    """Build the Falcon WSGI app that serves *server* over HTTP.

    Args:
        server: A ready :class:`~vgi_rpc.RpcServer`, or a Protocol class followed by
            its *implementation*.
        implementation: The implementation when *server* is a Protocol class.
        prefix: Mount point, e.g. ``"/vgi"`` (default: none). Clients must use the same.
        authenticate: ``authenticate(req) -> AuthContext`` run on every RPC request
            (not on ``/health``); raise :class:`AuthenticationError` for a 401. ``None``:
            every call is anonymous (``AuthContext.authenticated`` is ``False``).
            See :func:`jwt_authenticator`.
        token_key: Secret (>= 16 bytes) sealing stream state between turns; every
            worker of a deployment must share it. A list rotates keys (the first seals,
            all open). ``None``: a random per-process key, with a warning — streams
            then only work when all their turns reach this process.
        token_ttl: Seconds a stream token stays valid after each turn.
        max_request_bytes: Refuse larger request bodies with 413, before and after
            decompression (advertised as ``VGI-Max-Request-Bytes``). ``None``: no
            limit on the wire, and decompressed bodies are capped at 1 GiB.
        compress_responses: ``False`` (default): never. ``True``/``"zstd"``: zstd level 1 for
            responses of 4 KiB or more whose request accepts zstd (else identity, never
            gzip); ``"zstd:N"``: level N (1-19).
        producer_turn_bytes: Bytes up to which a producer turn merges ``produce()`` calls into
            one batch (an int, or a dict per method name; docs/http.md: what callers see).
        sentry_config: A ``vgi_rpc.sentry.SentryConfig``: instrument *server* with
            Sentry (replacing any earlier Sentry hook) before serving.
        otel_config: A ``vgi_rpc.otel.OtelConfig``: instrument *server* with OpenTelemetry.

    Returns:
        A :class:`VgiFalconApp` (a ``falcon.App``): serve it with waitress
        (:func:`serve_http`), gunicorn or any WSGI server.

    Caveats:
        Hooks receive the request headers (lower-case names) as ``transport_metadata``,
        without ``Authorization``, ``Proxy-Authorization`` and ``Cookie``. Stream
        tokens are bearer state: a caller may replay one of its own tokens until it
        expires (the server keeps no per-stream state).
    """
    rpc_server = as_server(server, implementation)
    _instrument(rpc_server, sentry_config, otel_config)
    if max_request_bytes is not None and max_request_bytes <= 0:
        raise ValueError("max_request_bytes must be positive")
    turns = Turns(rpc_server, TokenSealer(token_key, ttl=token_ttl), producer_turn_bytes)
    app = _new_app(rpc_server)
    add_routes(app, normalise_prefix(prefix), turns, authenticate, max_request_bytes, compress_responses)
    return app


def _instrument(server: RpcServer, sentry_config: Any, otel_config: Any) -> None:
    """``make_wsgi_app``'s ``sentry_config=`` and ``otel_config=`` seams."""
    if sentry_config is not None:
        from vgi_rpc.sentry import instrument_server_sentry

        instrument_server_sentry(server, sentry_config)
    if otel_config is not None:
        from vgi_rpc.otel import instrument_server

        instrument_server(server, otel_config)


def _new_app(server: RpcServer) -> VgiFalconApp:
    """The app without routes: the capability-header middleware, options and error handlers."""
    app = VgiFalconApp(middleware=[_BudgetHeader()])
    app.vgi_server = server
    app.req_options.auto_parse_form_urlencoded = False
    app.resp_options.secure_cookies_by_default = True
    app.add_error_handler(Exception, _unexpected_handler(server))
    app.add_error_handler(falcon.HTTPError, _http_error_handler(server))
    return app
