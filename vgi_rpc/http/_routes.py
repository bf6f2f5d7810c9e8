"""The Falcon resources behind the app's routes: the health probe and the three RPC routes.

Each RPC route is one resource (:class:`RpcRoute`) that knows its turn -- the unary
call, a stream's ``/init`` or its ``/exchange`` -- and the method kind it serves. A
request is authenticated, its response budget read and its URL routed through the
server's :class:`~vgi_rpc.server.Admission` (protocol, method, kind: all before the
body is read); then the turn runs on the body. Every failure is answered by one
except chain, :meth:`RpcRoute.on_post`'s, shared by the three routes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import falcon
import pyarrow as pa

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
    RESPONSE_COMPRESS_MIN,
    SUPPORTED_ENCODINGS,
    BodyError,
    ResponseBody,
    accepts,
    decode_body,
    encode_body,
    response_coding,
)
from vgi_rpc.http._turns import TurnResult, Turns
from vgi_rpc.methods import MethodSpec
from vgi_rpc.server import ExpectedKind, RpcServer
from vgi_rpc.wire import error_stream_bytes, new_request_id

__all__ = ["ResponseTooLargeError", "RpcRoute", "add_routes", "internal_error_body"]

_logger = logging.getLogger("vgi_rpc.http")

DEFAULT_MAX_DECODED_BYTES = 1 << 30
"""Cap on a decompressed request body when ``max_request_bytes`` is not set (zip-bomb guard)."""

_WAITRESS_KEY = "waitress.client_disconnected"  # in the environ only when waitress serves the request
_HIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_ENCODINGS_VALUE = ", ".join(SUPPORTED_ENCODINGS)

Turn = Callable[[MethodSpec, bytes | bytearray, AuthContext, Mapping[str, str]], TurnResult]
"""One of :class:`~vgi_rpc.http._turns.Turns`' turns: ``unary``, ``init`` or ``exchange``."""


class ResponseTooLargeError(Exception):
    """The encoded response exceeds the client's ``VGI-Accept-Max-Response-Bytes`` budget."""


def internal_error_body(server: RpcServer, exc: BaseException, request_id: str | None = None) -> bytes:
    """The error stream of a 500: *exc* itself only if the server sends tracebacks."""
    shown: BaseException = exc if server.include_tracebacks else RuntimeError("internal server error")
    return error_stream_bytes(
        shown,
        server_id=server.server_id,
        request_id=request_id,
        include_traceback=server.include_tracebacks,
    )


# ---------------------------------------------------------------------------- the kinds the routes serve


def _instead_of(turn: str) -> Callable[[str], str]:
    def redirect(path: str) -> str:
        return f"POST {clip(path.rsplit('/', 1)[0])} instead of /{turn}"

    return redirect


UNARY = ExpectedKind(stream=False, redirect=lambda path: f"POST {clip(path)}/init to open it, then /exchange")
INIT = ExpectedKind(stream=True, redirect=_instead_of("init"))
EXCHANGE = ExpectedKind(stream=True, redirect=_instead_of("exchange"))


def add_routes(
    app: falcon.App[falcon.Request, falcon.Response],
    base: str,
    turns: Turns,
    authenticate: Authenticator | None,
    max_request_bytes: int | None,
    compress_responses: bool | str,
) -> None:
    """Mount ``base/health`` and the three RPC routes of *turns*' server on *app*."""
    server = turns.server
    app.add_route(base + HEALTH_PATH, _Health(server, max_request_bytes))
    options = (authenticate, max_request_bytes, compress_responses)
    app.add_route(base + "/{protocol}/{method}", RpcRoute(turns, turns.unary, UNARY, *options))
    app.add_route(base + "/{protocol}/{method}/init", RpcRoute(turns, turns.init, INIT, *options))
    app.add_route(base + "/{protocol}/{method}/exchange", RpcRoute(turns, turns.exchange, EXCHANGE, *options))


# ---------------------------------------------------------------------------- the resources


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


class RpcRoute:
    """One RPC route: ``P/{protocol}/{method}`` (unary), ``.../init`` or ``.../exchange``.

    Args:
        turns: The server's turns (and its URL admission).
        run: The turn this route runs (``turns.unary``, ``turns.init`` or ``turns.exchange``).
        expected: The method kind this route serves.
        authenticate: Run on every request; ``None``: every call is anonymous.
        max_request_bytes: Refuse larger bodies (before and after decompression) with 413.
        compress_responses: ``make_wsgi_app``'s option (see
            :func:`~vgi_rpc.http._common.response_coding`): zstd for responses of
            4 KiB or more when the client accepts it, or never (the default).
    """

    def __init__(
        self,
        turns: Turns,
        run: Turn,
        expected: ExpectedKind,
        authenticate: Authenticator | None,
        max_request_bytes: int | None,
        compress_responses: bool | str,
    ) -> None:
        self.server = turns.server
        self.admission = turns.admission
        self.run = run
        self.expected = expected
        self.authenticate = authenticate
        self.max_request_bytes = max_request_bytes
        self.max_decoded = max_request_bytes if max_request_bytes is not None else DEFAULT_MAX_DECODED_BYTES
        self.coding = response_coding(compress_responses)

    def on_post(self, req: falcon.Request, resp: falcon.Response, protocol: str, method: str) -> None:
        """Serve one request: admission, then this route's turn; every failure is answered here."""
        server = self.server
        budget: int | None = None
        try:
            auth = self._auth(req)
            budget = _budget(req.get_header(BUDGET_HEADER))
            spec = self.admission.route(method, protocol, self.expected, req.path)
            data, failed = self.run(spec, self._body(req), auth, _headers_of(req.env))
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
            self._send(req, resp, 500, internal_error_body(server, exc, request_id), True, budget)
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
        data: ResponseBody,
        error: bool,
        budget: int | None,
    ) -> None:
        coding = self.coding
        if (
            coding is not None
            and len(data) >= RESPONSE_COMPRESS_MIN  # smaller answers go as they are
            and accepts(req.get_header("Accept-Encoding"), coding[0])  # else identity, never an error
        ):
            data = encode_body(data, *coding)
            resp.set_header("Content-Encoding", coding[0])
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
        if not isinstance(data, bytes):
            if _WAITRESS_KEY not in req.env:
                data = data.to_pybytes()  # PEP 3333 wants bytes; other servers (gunicorn) assert it
            elif len(data) >= _SEND_IN_PLACE_MIN:
                # waitress sends its own wsgi.file_wrapper's reads as they come: slices of
                # the sink's Buffer go to the socket, not through waitress's output buffer.
                # When middleware wraps the response (Sentry's WSGI middleware does), waitress
                # iterates it instead, in _IN_PLACE_BLOCK pieces (Falcon's own would be 8 KiB).
                resp.stream = req.env["wsgi.file_wrapper"](_BufferFile(data), _IN_PLACE_BLOCK)
                resp.content_length = len(data)
                return
        # a smaller Buffer goes out as it is too (no copy into bytes): Falcon takes its
        # len() as Content-Length and waitress slices and buffers it like bytes
        resp.data = data


_IN_PLACE_BLOCK = 1 << 20
_SEND_IN_PLACE_MIN = 256 * 1024
"""Responses from this size on are sent from the Arrow sink's buffer under waitress.

Below it, one copy into waitress's output buffer costs less than sending the
head and the body separately (``benchmarks.turn_cost``, wall per turn: 32 KiB
1.7 ms copied, 2.1 ms in place; 128 KiB 2.1 and 2.3 ms).
"""


class _BufferFile:
    """A read-only, seekable file over a buffer whose reads are zero-copy ``pyarrow.Buffer`` slices.

    Wrapped in waitress's ``wsgi.file_wrapper`` and handed to Falcon as ``resp.stream``:
    waitress sends each ``read()`` straight to the socket. Slices are Arrow buffers, not
    ``memoryview``s: waitress compares each piece it writes with what it was given, and a
    ``memoryview`` comparison walks every byte where an Arrow buffer's stops at its address.
    """

    def __init__(self, data: ResponseBody) -> None:
        self._buf: pa.Buffer | None = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
        self._size = self._buf.size
        self._pos = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        self._pos = min(max(0, base + offset), self._size)
        return self._pos

    def read(self, size: int = -1) -> pa.Buffer:
        buf = self._buf
        if buf is None:
            raise ValueError("read from a closed response body")
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        chunk = buf.slice(self._pos, end - self._pos)
        self._pos = end
        return chunk

    def close(self) -> None:
        self._buf = None


# ---------------------------------------------------------------------------- request pieces


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
