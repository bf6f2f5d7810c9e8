"""The Falcon WSGI app: routes, body handling, status codes and the safety net.

Routes (``P`` is the prefix, ``{protocol}`` the server's ``protocol_name``):

=========================  ======================================================
``OPTIONS/GET/HEAD P/health``  capability probe (no authentication)
``POST P/{protocol}/{method}``          unary call
``POST P/{protocol}/{method}/init``     open a stream
``POST P/{protocol}/{method}/exchange`` one stream turn (or cancel)
=========================  ======================================================

Every response carries exactly one ``VGI-Accept-Max-Response-Bytes-Support: true``
(the official client checks it before anything else). Bodies are Arrow IPC streams
except 401 (JSON). Errors never leak the server's Python traceback unless the
``RpcServer`` was built with ``include_tracebacks=True``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import falcon

from vgi_rpc.auth import ANONYMOUS, AuthContext
from vgi_rpc.errors import ProtocolError, clip
from vgi_rpc.http._auth import AuthenticationError, Authenticator
from vgi_rpc.http._common import (
    ARROW_CONTENT_TYPE,
    BUDGET_HEADER,
    BUDGET_SUPPORT_HEADER,
    ENCODINGS_HEADER,
    ERROR_HEADER,
    EXTERNALIZATION_HEADER,
    HEALTH_PATH,
    MAX_REQUEST_HEADER,
    SUPPORTED_ENCODINGS,
    BodyError,
    decode_body,
    encode_body,
    normalise_prefix,
    pick_coding,
)
from vgi_rpc.http._tokens import TokenKey, TokenSealer
from vgi_rpc.http._turns import Turns
from vgi_rpc.server import RpcServer, as_server
from vgi_rpc.wire import error_stream_bytes, new_request_id

__all__ = ["ResponseTooLargeError", "VgiFalconApp", "make_wsgi_app"]

_logger = logging.getLogger("vgi_rpc.http")

DEFAULT_MAX_DECODED_BYTES = 1 << 30
"""Cap on a decompressed request body when ``max_request_bytes`` is not set (zip-bomb guard)."""

_COMPRESS_MIN = 4096  # responses smaller than this go uncompressed
_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_ENCODINGS_VALUE = ", ".join(SUPPORTED_ENCODINGS)

StartResponse = Callable[..., Any]


class ResponseTooLargeError(Exception):
    """The encoded response exceeds the client's ``VGI-Accept-Max-Response-Bytes`` budget."""


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
        sentry = sys.modules.get("vgi_rpc._sentry_spans")
        if sentry is not None:  # Sentry's WSGI integration sets the span status from the HTTP one
            start_response = _then(start_response, sentry.after_start_response)
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


def _internal_error_body(server: RpcServer, exc: BaseException, request_id: str | None = None) -> bytes:
    shown: BaseException = exc if server.include_tracebacks else RuntimeError("internal server error")
    return error_stream_bytes(
        shown,
        server_id=server.server_id,
        request_id=request_id,
        include_traceback=server.include_tracebacks,
    )


def _headers_of(env: Mapping[str, Any]) -> dict[str, str]:
    """Request headers with lower-case names, credentials left out."""
    out: dict[str, str] = {}
    names = _HEADER_NAMES
    for key, value in env.items():
        name = names.get(key)
        if name is None:
            name = _header_name(key)
            if len(names) < _HEADER_NAMES_MAX:
                names[key] = name
        if name and value and name not in _HIDDEN_HEADERS:
            out[name] = value
    return out


def _header_name(key: str) -> str:
    """The header name an environ key stands for (``HTTP_X_FOO`` -> ``x-foo``), ``""`` for other keys."""
    if key.startswith("HTTP_"):
        return key[5:].replace("_", "-").lower()
    if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
        return key.replace("_", "-").lower()
    return ""


# Each environ has the same two dozen keys; translating them anew per request was the app
# layer's largest cost. Capped (_HEADER_NAMES_MAX): clients choose the header names.
_HEADER_NAMES: dict[str, str] = {}
_HEADER_NAMES_MAX = 1024


class _Health:
    """``P/health``: the capability probe the official client sends before its first call."""

    def __init__(self, server: RpcServer, max_request_bytes: int | None) -> None:
        self._headers = {
            BUDGET_SUPPORT_HEADER: "true",
            ENCODINGS_HEADER: _ENCODINGS_VALUE,
            EXTERNALIZATION_HEADER: "false",
            "Cache-Control": "no-store",
        }
        if max_request_bytes is not None:
            self._headers[MAX_REQUEST_HEADER] = str(max_request_bytes)
        self._body = (
            f'{{"status": "ok", "protocol": "{server.protocol_name}", "server_id": "{server.server_id}"}}'
        ).encode()

    def on_options(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_headers(self._headers)
        resp.set_header("Allow", "OPTIONS, GET, HEAD")
        resp.status = falcon.HTTP_204

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.set_headers(self._headers)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body

    on_head = on_get


class _Rpc:
    """The three RPC routes: unary, ``/init`` and ``/exchange``."""

    def __init__(
        self,
        server: RpcServer,
        turns: Turns,
        authenticate: Authenticator | None,
        max_request_bytes: int | None,
        compress_responses: bool,
    ) -> None:
        self.server = server
        self.turns = turns
        self.authenticate = authenticate
        self.max_request_bytes = max_request_bytes
        self.max_decoded = max_request_bytes if max_request_bytes is not None else DEFAULT_MAX_DECODED_BYTES
        self.compress = compress_responses

    def on_post(self, req: falcon.Request, resp: falcon.Response, protocol: str, method: str) -> None:
        self._serve(req, resp, protocol, method, "call")

    def on_post_init(self, req: falcon.Request, resp: falcon.Response, protocol: str, method: str) -> None:
        self._serve(req, resp, protocol, method, "init")

    def on_post_exchange(
        self, req: falcon.Request, resp: falcon.Response, protocol: str, method: str
    ) -> None:
        self._serve(req, resp, protocol, method, "exchange")

    # ------------------------------------------------------------------ the one path

    def _serve(
        self, req: falcon.Request, resp: falcon.Response, protocol: str, method: str, turn: str
    ) -> None:
        server = self.server
        budget: int | None = None
        try:
            auth = self._auth(req)
            budget = _budget(req.get_header(BUDGET_HEADER))
            spec = server.lookup(method, protocol)
            if turn == "call":
                if spec.method_type == "stream":
                    raise ProtocolError(
                        f"{method} is a stream method: POST {clip(req.path)}/init to open it, then /exchange"
                    )
            elif spec.method_type == "unary":
                raise ProtocolError(
                    f"{method} is a unary method: POST {clip(req.path.rsplit('/', 1)[0])} instead of /{turn}"
                )
            body = self._body(req)
            headers = _headers_of(req.env)
            if turn == "call":
                data, failed = self.turns.unary(spec, body, auth, headers)
            elif turn == "init":
                data, failed = self.turns.init(spec, body, auth, headers)
            else:
                data, failed = self.turns.exchange(spec, body, auth, headers)
        except AuthenticationError as exc:
            resp.status = falcon.HTTP_401
            resp.content_type = falcon.MEDIA_JSON
            resp.set_header("WWW-Authenticate", exc.www_authenticate())
            resp.data = exc.body()
            return
        except falcon.HTTPError:
            raise  # e.g. an authenticator's HTTPForbidden: answered by the HTTPError handler
        except ProtocolError as exc:
            if exc.status == 415:
                resp.set_header(ENCODINGS_HEADER, _ENCODINGS_VALUE)
            self._send(
                req, resp, exc.status, error_stream_bytes(exc, server_id=server.server_id), True, budget
            )
            return
        except Exception as exc:
            # A bug in the transport or the server core (the implementation's own
            # exceptions never get here: the turn answers those itself).
            request_id = new_request_id()
            _logger.error(
                "vgi_rpc.http: internal error serving %s (request %s)", req.path, request_id, exc_info=True
            )
            self._send(req, resp, 500, _internal_error_body(server, exc, request_id), True, budget)
            return
        self._send(req, resp, 200, data, failed, budget)

    def _auth(self, req: falcon.Request) -> AuthContext:
        if self.authenticate is None:
            return ANONYMOUS
        try:
            auth = self.authenticate(req)
        except AuthenticationError:
            raise
        except falcon.HTTPUnauthorized as exc:
            raise AuthenticationError(
                str(exc.description or exc.title or "unauthorized"), reason="unauthorized"
            ) from None
        if not isinstance(auth, AuthContext):
            raise TypeError(f"authenticate() returned {type(auth).__name__}, expected AuthContext")
        return auth

    def _body(self, req: falcon.Request) -> bytes | bytearray:
        ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
        if ctype != ARROW_CONTENT_TYPE:
            raise BodyError(
                f"Content-Type must be {ARROW_CONTENT_TYPE} (got {clip(req.content_type or 'none')})",
                error_kind="unsupported_media_type",
                status=415,
            )
        coding = req.get_header("Content-Encoding")
        if coding and coding.strip().lower() not in ("identity", "zstd", "gzip", "x-gzip"):
            decode_body(b"", coding, None)  # raises the 415 with the supported list
        limit = self.max_request_bytes
        length = req.content_length
        if limit is not None and length is not None and length > limit:
            raise BodyError(
                f"request body of {length} bytes exceeds the server's limit of {limit} bytes",
                error_kind="request_too_large",
                status=413,
            )
        data = _read_all(req, length, limit)
        if limit is not None and len(data) > limit:
            raise BodyError(
                f"request body exceeds the server's limit of {limit} bytes",
                error_kind="request_too_large",
                status=413,
            )
        if length is not None and len(data) < length:
            raise BodyError(f"request body is truncated: got {len(data)} of {length} bytes")
        return decode_body(data, coding, self.max_decoded)

    def _send(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        status: int,
        data: bytes,
        error: bool,
        budget: int | None,
    ) -> None:
        big = self.compress and len(data) >= _COMPRESS_MIN  # smaller answers go as they are
        coding = pick_coding(req.get_header("Accept-Encoding")) if big else None
        if coding is not None:
            data = encode_body(data, coding)
            resp.set_header("Content-Encoding", coding)
        if budget is not None and len(data) > budget:
            resp.delete_header("Content-Encoding")
            exc = ResponseTooLargeError(
                f"response of {len(data)} bytes exceeds the client's budget of {budget} bytes "
                f"({BUDGET_HEADER}; the server has no max_response_bytes externalization)"
            )
            data = error_stream_bytes(exc, server_id=self.server.server_id)
            error = True
        resp.status = status
        resp.content_type = ARROW_CONTENT_TYPE
        if error:
            resp.set_header(ERROR_HEADER, "true")
        resp.data = data


def _read_all(req: falcon.Request, length: int | None, limit: int | None) -> bytes:
    """The raw body: ``Content-Length`` bytes, or a chunked body read to its end (at most limit + 1)."""
    cap = None if limit is None else limit + 1
    if length is not None:
        return req.bounded_stream.read(length if cap is None else min(length, cap))
    env = req.env
    if not (env.get("wsgi.input_terminated") or "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower()):
        return b""  # no length and no framing: there is no body
    stream = req.stream
    parts: list[bytes] = []
    size = 0
    while cap is None or size < cap:
        chunk = stream.read(1 << 16)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


MIN_RESPONSE_BUDGET = 1 << 16
"""Smallest ``VGI-Accept-Max-Response-Bytes`` a request may carry (the reference server's floor)."""
MAX_RESPONSE_BUDGET = (1 << 53) - 1


def _budget(value: str | None) -> int | None:
    """The request's response budget; a malformed one is a 400, as the reference server answers.

    One canonical positive decimal (no sign, spaces, leading zeros or repeated header),
    from 64 KiB to 2**53 - 1.
    """
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and value[0] != "0"):
        raise ProtocolError(
            f"{BUDGET_HEADER} must be one canonical positive decimal integer, got {clip(value)!r}"
        )
    n = int(value) if len(value) <= 17 else MAX_RESPONSE_BUDGET + 1
    if n < MIN_RESPONSE_BUDGET:
        raise ProtocolError(f"{BUDGET_HEADER} must be at least {MIN_RESPONSE_BUDGET}, got {n}")
    if n > MAX_RESPONSE_BUDGET:
        raise ProtocolError(f"{BUDGET_HEADER} exceeds {MAX_RESPONSE_BUDGET}")
    return n


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
    compress_responses: bool = True,
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
        compress_responses: Compress responses of 4 KiB or more with zstd (or gzip)
            when the request's ``Accept-Encoding`` allows it.
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
    if sentry_config is not None:
        from vgi_rpc.sentry import instrument_server_sentry

        instrument_server_sentry(rpc_server, sentry_config)
    if otel_config is not None:
        from vgi_rpc.otel import instrument_server

        instrument_server(rpc_server, otel_config)
    if max_request_bytes is not None and max_request_bytes <= 0:
        raise ValueError("max_request_bytes must be positive")
    sealer = TokenSealer(token_key, ttl=token_ttl)
    base = normalise_prefix(prefix)
    app = VgiFalconApp(middleware=[_BudgetHeader()])
    app.vgi_server = rpc_server
    app.req_options.auto_parse_form_urlencoded = False
    app.resp_options.secure_cookies_by_default = True
    rpc = _Rpc(rpc_server, Turns(rpc_server, sealer), authenticate, max_request_bytes, compress_responses)
    app.add_route(base + HEALTH_PATH, _Health(rpc_server, max_request_bytes))
    app.add_route(base + "/{protocol}/{method}", rpc)
    app.add_route(base + "/{protocol}/{method}/init", rpc, suffix="init")
    app.add_route(base + "/{protocol}/{method}/exchange", rpc, suffix="exchange")
    app.add_error_handler(Exception, _unexpected_handler(rpc_server))
    app.add_error_handler(falcon.HTTPError, _http_error_handler(rpc_server))
    return app
