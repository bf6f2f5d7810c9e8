"""The HTTP client: :func:`http_connect` yields a typed proxy over httpx."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pyarrow as pa

from vgi_rpc._propagation import outgoing_trace_headers
from vgi_rpc._types import dataclass_from_ipc
from vgi_rpc.client import RpcProxy, StreamSession
from vgi_rpc.errors import ProtocolError, RpcError
from vgi_rpc.http._common import (
    ARROW_CONTENT_TYPE,
    ENCODINGS_HEADER,
    HEALTH_PATH,
    SUPPORTED_ENCODINGS,
    encode_body,
    normalise_prefix,
)
from vgi_rpc.http._transport import StdlibTransport
from vgi_rpc.methods import MethodSpec, protocol_names
from vgi_rpc.streams import EMPTY_SCHEMA, AnnotatedBatch, empty_batch
from vgi_rpc.wire import (
    CALL_STATE_KEY,
    CANCEL_KEY,
    STREAM_STATE_KEY,
    OnLog,
    iter_response,
    request_bytes,
)

__all__ = ["http_connect"]

_COMPRESS_MIN = 1024
"""Request bodies smaller than this are sent uncompressed; ticks and cancels never are (mostly token)."""
ACCEPT_ENCODING = "zstd, identity"
"""The ``Accept-Encoding`` every request states (never httpx's ``gzip, deflate, zstd`` default)."""
_TOKEN_KEYS = (STREAM_STATE_KEY, CALL_STATE_KEY)


class _HttpTransport:
    """Moves request/response bytes for :class:`~vgi_rpc.client.RpcProxy` over httpx."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        prefix: str,
        protocol: str,
        version: str | None,
        headers: Mapping[str, str] | None,
        on_log: OnLog | None,
        compression: str | None,
        propagate_trace: bool = True,
    ) -> None:
        self.client = client
        self.root = base_url.rstrip("/") + normalise_prefix(prefix)
        self.protocol = protocol
        self.version = version
        given = dict(headers or {})
        self._given = frozenset(k.lower() for k in given)
        if not any(k.lower() == "accept-encoding" for k in given):
            given["Accept-Encoding"] = ACCEPT_ENCODING
        self.headers = {**given, "Content-Type": ARROW_CONTENT_TYPE}
        self.on_log = on_log
        self.want = compression
        self.propagate_trace = propagate_trace
        self._coding: str | None = None
        self._probed = False
        self._lock = threading.Lock()
        self._urls: dict[str, tuple[str, httpx.URL]] = {}

    # ------------------------------------------------------------------ plumbing

    def _probe(self) -> None:
        """Ask ``/health`` which request codings the server decodes (once)."""
        with self._lock:
            if self._probed:
                return
            coding = None
            if self.want is not None:
                try:
                    r = self.client.options(self.root + HEALTH_PATH, headers=self.headers)
                    if r.is_success:
                        coding = _choose(r.headers.get(ENCODINGS_HEADER), self.want)
                except httpx.HTTPError:
                    coding = None
            self._coding = coding
            self._probed = True

    def post(self, path: str, body: bytes, *, compress: bool = True) -> bytes:
        """POST an Arrow body; return the Arrow response body or raise RpcError.

        ``compress=False`` (a producer tick, a cancel: mostly sealed token) never compresses.
        """
        if not self._probed:
            self._probe()
        url, target = self._target(path)
        coding = self._coding if compress and len(body) >= _COMPRESS_MIN else None
        base = self.headers
        if self.propagate_trace:
            trace = outgoing_trace_headers("http", url)
            if trace:  # a trace header the caller put in `headers` wins
                base = {**{k: v for k, v in trace.items() if k not in self._given}, **base}
        for attempt in range(2):
            headers = dict(base)
            content = body
            if coding is not None:
                content = encode_body(body, coding)
                headers["Content-Encoding"] = coding
            resp, answer = self._exchange(url, target, content, headers)
            if resp.status_code == 415 and attempt == 0 and coding is not None and self.want is not None:
                coding = _choose(resp.headers.get(ENCODINGS_HEADER), self.want)
                self._coding = coding
                continue
            break
        if resp.status_code == 401:
            raise _unauthorized(answer)
        if resp.status_code == 413:
            raise RpcError(
                "RequestTooLarge",
                f"HTTP 413: the server refused a {len(content)}-byte request body",
                error_code="413",
            )
        if resp.status_code != 200 and not _is_arrow(resp):
            # Not the vgi-rpc server talking: a proxy or gateway (say nginx's 502 when
            # the worker serving the call died). Say so instead of failing to parse it.
            raise RpcError(
                "HttpError",
                f"HTTP {resp.status_code} {resp.reason_phrase} from POST {url} with a "
                f"{resp.headers.get('content-type') or 'untyped'} body, not an Arrow IPC stream "
                "(answered by a proxy or gateway?)",
                error_kind="transport",
                error_code=_STATUS_CODES.get(resp.status_code, "UNKNOWN"),
            )
        return answer

    def _target(self, path: str) -> tuple[str, httpx.URL]:
        """The URL of *path*, as text and parsed (httpx parses a text URL anew on every request)."""
        found = self._urls.get(path)
        if found is None:  # one entry per route of the protocol's methods: bounded
            url = f"{self.root}/{self.protocol}/{path}"
            found = self._urls[path] = (url, httpx.URL(url))
        return found

    def _exchange(
        self, url: str, target: httpx.URL, content: bytes, headers: Mapping[str, str]
    ) -> tuple[httpx.Response, bytes]:
        """POST; return the response and its whole (decoded) body. A failure below HTTP is a typed transport error.

        The body is joined from ``iter_bytes()`` rather than ``read()``, so the response
        object does not keep it: httpx responses live in reference cycles until the
        garbage collector runs, and a multi-megabyte body held that long made every
        turn's body land in freshly mapped pages (about 1,500 page faults, 5 ms of
        system CPU, per 8 MiB turn).
        """
        try:
            with self.client.stream("POST", target, content=content, headers=headers) as resp:
                try:
                    answer = b"".join(resp.iter_bytes())
                except httpx.HTTPError as exc:  # the head arrived, the body did not
                    raise _transport_failure(url, exc, resp) from exc
        except httpx.HTTPError as exc:
            raise _transport_failure(url, exc, None) from exc
        return resp, answer

    def read(self, content: bytes | pa.BufferReader, status_hint: str) -> pa.ipc.RecordBatchStreamReader:
        try:
            source = content if isinstance(content, pa.BufferReader) else pa.py_buffer(content)
            return pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, OSError):
            raise RpcError(
                "HttpError",
                f"{status_hint}: response is not a valid Arrow IPC stream",
                error_kind="transport",
                error_code="DATA_LOSS",
            ) from None

    def batches(self, content: bytes, what: str) -> list[tuple[pa.RecordBatch, dict[str, str]]]:
        reader = self.read(content, what)
        try:
            return list(iter_response(reader, self.on_log))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ProtocolError(f"{what}: malformed Arrow response: {exc}") from None

    def request(self, spec: MethodSpec, batch: pa.RecordBatch) -> bytes:
        return request_bytes(spec.name, batch, protocol=self.protocol, protocol_version=self.version)

    # ------------------------------------------------------------------ ClientTransport

    def call_unary(self, spec: MethodSpec, request: pa.RecordBatch) -> pa.RecordBatch:
        content = self.post(spec.name, self.request(spec, request))
        batches = self.batches(content, spec.name)
        if not batches:
            raise ProtocolError(f"{spec.name}: response stream has no result batch")
        return batches[0][0]

    def open_stream(self, spec: MethodSpec, request: pa.RecordBatch) -> StreamSession:
        content = self.post(f"{spec.name}/init", self.request(spec, request))
        session = _HttpStream(self, spec)
        header_type = getattr(spec, "header_type", None)
        if header_type is not None:
            content = session._read_header(content, header_type)
        session._absorb(content)
        return session


_STATUS_CODES = {
    400: "INTERNAL",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "UNIMPLEMENTED",
    429: "UNAVAILABLE",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "UNAVAILABLE",
}
"""``error_code`` for an HTTP status answered by something other than a vgi-rpc server.

gRPC's own mapping of HTTP statuses to codes; any other status is ``"UNKNOWN"``.
"""

_TIMEOUTS: tuple[tuple[type[httpx.TimeoutException], str], ...] = (
    (httpx.ConnectTimeout, "no connection within the timeout"),
    (httpx.WriteTimeout, "the request was not sent within the timeout"),
    (httpx.PoolTimeout, "no free pooled connection within the timeout"),
)


def _transport_failure(url: str, exc: httpx.HTTPError, head: httpx.Response | None) -> RpcError:
    """The ``RpcError(error_kind="transport")`` for an httpx failure below HTTP.

    *head* is the response whose body was being read when it happened (``None``: no
    response had arrived). The codes are gRPC's: ``DEADLINE_EXCEEDED`` for any
    timeout, ``DATA_LOSS`` for a response cut short after its head, ``UNAVAILABLE``
    for a refused, reset or closed connection before a response, ``UNKNOWN`` for
    anything else (an unsupported URL scheme...).
    """
    if isinstance(exc, httpx.TimeoutException):
        code = "DEADLINE_EXCEEDED"
        what = next(
            (text for kind, text in _TIMEOUTS if isinstance(exc, kind)), "no answer within the timeout"
        )
    elif head is not None:
        code = "DATA_LOSS"
        what = f"the response was cut short after its head (HTTP {head.status_code})"
    elif isinstance(exc, httpx.ConnectError):
        code, what = "UNAVAILABLE", "could not connect"
    elif isinstance(exc, httpx.NetworkError):
        code, what = "UNAVAILABLE", "the connection failed before a response"
    elif isinstance(exc, httpx.RemoteProtocolError):
        code, what = "UNAVAILABLE", "the server closed the connection (or broke HTTP) before a response"
    else:
        code, what = "UNKNOWN", "the request failed"
    detail = str(exc) or "no detail"
    return RpcError(
        "TransportError",
        f"POST {url}: {what} ({type(exc).__name__}: {detail})",
        error_kind="transport",
        error_code=code,
    )


def _choose(advertised: str | None, want: str) -> str | None:
    """The coding to send: ours if the server lists it (or lists nothing usable), else one it lists."""
    if advertised is None:
        return want
    offered = [t.strip().lower() for t in advertised.split(",") if t.strip()]
    if want in offered:
        return want
    for c in SUPPORTED_ENCODINGS:
        if c in offered:
            return c
    return None


def _is_arrow(resp: httpx.Response) -> bool:
    ctype = str(resp.headers.get("content-type", ""))
    return ctype.split(";", 1)[0].strip().lower() == ARROW_CONTENT_TYPE


def _unauthorized(body: bytes) -> RpcError:
    detail = body[:500].decode("utf-8", "replace") or "unauthorized"
    reason = "unauthorized"
    with contextlib.suppress(ValueError):
        payload = json.loads(body)
        if isinstance(payload, dict):
            detail = str(payload.get("detail") or detail)
            reason = str(payload.get("reason") or reason)
    return RpcError("AuthenticationError", detail, error_kind=reason, error_code="UNAUTHENTICATED")


class _HttpStream:
    """One stream call over HTTP: the client side of ``/init`` + ``/exchange`` turns.

    Producers: iterate. Exchanges: :meth:`exchange` per input batch. The stream's
    state lives in the token the server sends each turn, so :meth:`close` sends
    nothing; :meth:`cancel` tells the server (which runs ``on_cancel``).
    """

    def __init__(self, transport: _HttpTransport, spec: MethodSpec) -> None:
        self._t = transport
        self._spec = spec
        self._token: str | None = None
        self._pending: list[AnnotatedBatch] = []
        self._done = False
        self.header: Any = None
        """The stream's header (``Stream[S, H]`` methods), read at ``/init``; ``None`` otherwise."""

    def _read_header(self, content: bytes, header_type: type) -> bytes:
        """Decode the header stream that precedes the output stream; return the rest of the body."""
        source = pa.BufferReader(pa.py_buffer(content))
        reader = self._t.read(source, self._spec.name)
        try:
            batches = list(iter_response(reader, self._t.on_log))  # raises the init error, if any
        except (pa.ArrowInvalid, OSError) as exc:
            raise ProtocolError(f"{self._spec.name}: malformed stream header: {exc}") from None
        if not any(b.num_rows for b, _ in batches):
            raise ProtocolError(f"{self._spec.name}: the stream header carries no row")
        end = source.tell()
        self.header = dataclass_from_ipc(header_type, content[:end])
        return content[end:]

    def _absorb(self, content: bytes) -> None:
        """Read a producer-shaped response: data batches to ``_pending``, then the next token.

        The token travels on a zero-row batch of its own; a response without one is the
        stream's last.
        """
        token: str | None = None
        for batch, md in self._t.batches(content, self._spec.name):
            if STREAM_STATE_KEY in md and batch.num_rows == 0:
                token = md[STREAM_STATE_KEY]
                break
            self._pending.append(AnnotatedBatch(batch, _user_md(md)))
        self._token = token
        if token is None:
            self._done = True

    def _send(self, batch: pa.RecordBatch, md: Mapping[str, str] | None, *, compress: bool = True) -> bytes:
        assert self._token is not None
        meta = {**(md or {}), STREAM_STATE_KEY: self._token}
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch, custom_metadata=meta)
        return self._t.post(f"{self._spec.name}/exchange", sink.getvalue().to_pybytes(), compress=compress)

    def __iter__(self) -> Iterator[AnnotatedBatch]:
        while True:
            while self._pending:
                yield self._pending.pop(0)
            if self._done or self._token is None:
                return
            tick = empty_batch(EMPTY_SCHEMA)
            try:
                content = self._send(tick, None, compress=False)
                self._absorb(content)
            except BaseException:
                self._done = True
                raise

    def exchange(self, data: AnnotatedBatch) -> AnnotatedBatch:
        if self._done or self._token is None:
            raise RpcError("ProtocolError", "stream has finished: no state token to continue with")
        content = self._send(data.batch, data.custom_metadata)
        batches = self._t.batches(content, self._spec.name)
        if not batches:
            raise RpcError("ProtocolError", f"{self._spec.name}: exchange response carried no batch")
        batch, md = batches[0]
        new_token = md.get(STREAM_STATE_KEY)
        if new_token:
            self._token = new_token
        return AnnotatedBatch(batch, _user_md(md))

    def cancel(self) -> None:
        if self._done or self._token is None:
            self._done = True
            return
        self._done = True
        with contextlib.suppress(RpcError, ProtocolError):
            self._send(empty_batch(EMPTY_SCHEMA), {CANCEL_KEY: "1"}, compress=False)

    def close(self) -> None:
        self._done = True
        self._pending.clear()

    def __enter__(self) -> _HttpStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _user_md(md: Mapping[str, str]) -> dict[str, str] | None:
    out = {k: v for k, v in md.items() if k not in _TOKEN_KEYS}
    return out or None


@contextlib.contextmanager
def http_connect(
    protocol: type,
    base_url: str,
    *,
    prefix: str = "",
    headers: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
    on_log: OnLog | None = None,
    compression: str | None = "zstd",
    timeout: float | None = 60.0,
    propagate_trace: bool = True,
) -> Iterator[Any]:
    """Connect to a vgi-rpc HTTP server and yield a typed proxy for *protocol*.

    ``with http_connect(Calculator, "http://127.0.0.1:8000", prefix="/vgi") as calc:
    calc.add(a=1, b=2)``. Unary methods return their result; producer streams iterate
    :class:`~vgi_rpc.AnnotatedBatch`; exchange streams return a session (``exchange``,
    ``cancel``, ``close``). A failed call raises :class:`~vgi_rpc.RpcError` with the
    server's error type and message (401: ``"AuthenticationError"``). Network failures raise
    ``RpcError("TransportError", ...)``, ``error_kind="transport"``, with gRPC's
    ``error_code``: ``UNAVAILABLE`` (refused, closed or reset before a response),
    ``DEADLINE_EXCEEDED`` (timeouts), ``DATA_LOSS`` (body cut short), ``UNKNOWN``; a
    proxy's non-Arrow answer is ``RpcError("HttpError", ...)``, also a transport
    error (``UNAVAILABLE`` for 429, 502, 503, 504).

    Args:
        protocol: The Protocol class (its ``protocol_name`` selects the URL segment).
        base_url: ``scheme://host:port``, maybe with a path (*prefix* comes after it).
        prefix: The server's mount prefix (``make_wsgi_app(prefix=...)``).
        headers: Sent with every request (e.g. ``{"Authorization": "Bearer ..."}``).
        client: Your own ``httpx.Client`` (pools, auth, event hooks, proxies, mTLS, a
            transport routing turns...), used as is and not closed on exit. Without
            one, ``http://`` goes through :class:`~vgi_rpc.http._transport.StdlibTransport`
            (half httpx's CPU); ``https://`` and environment proxies use httpx's own.
        on_log: Receives each server log message (``vgi_rpc.wire.LogMessage``).
        compression: Request coding (``"zstd"``, ``"gzip"``) for bodies of 1 KiB or more
            if ``/health`` allows it (``None``: none, no probe); never ticks or cancels.
        timeout: Timeout in seconds for the client this function creates.
        propagate_trace: Every request (stream turns included) carries the caller's
            trace context: OpenTelemetry's ``traceparent``/``tracestate`` when a span is
            current; Sentry's ``sentry-trace``/``baggage`` when a client is active,
            unless Sentry's httpx integration adds them (``trace_propagation_targets``
            holds). A trace header in *headers* wins. ``False``: none of ours.

    Requests state ``Accept-Encoding: zstd, identity`` (unless *headers* names one), never
    httpx's default (gzip-9 from the official server). Thread-safe; a stream is one thread's.
    """
    if compression not in (None, *SUPPORTED_ENCODINGS):
        raise ValueError(f"compression must be None or one of {SUPPORTED_ENCODINGS}")
    own = client is None
    http = client if client is not None else _own_client(timeout)
    name, version = protocol_names(protocol)
    transport = _HttpTransport(
        http, base_url, prefix, name, version, headers, on_log, compression, propagate_trace
    )
    try:
        yield RpcProxy(protocol, transport)
    finally:
        if own:
            http.close()


def _own_client(timeout: float | None) -> httpx.Client:
    """The client :func:`http_connect` makes: :class:`StdlibTransport` for ``http://``.

    When the environment names an HTTP proxy (``HTTP_PROXY``, ``ALL_PROXY``...), httpx's
    own transports are kept so httpx routes through it as it always has.
    """
    proxies = urllib.request.getproxies()
    if proxies.get("http") or proxies.get("all"):
        return httpx.Client(timeout=timeout)
    return httpx.Client(timeout=timeout, mounts={"http://": StdlibTransport()})
