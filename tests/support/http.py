"""Helpers shared by the HTTP suites (``tests/http/``, and the Sentry and OTel ones over HTTP).

* request/response bodies as the official client builds them: :func:`call_body`,
  :func:`turn_body`, :func:`read_stream`, :func:`error_md`, :func:`token_of`
  (for Falcon's test client or raw ``httpx``);
* :class:`Tracer` (rows say which process, stream and caller served them;
  :func:`serve_tracer_main` runs it in a worker process) and :class:`Headed`
  (a producer whose ``/init`` carries a :class:`Banner` header);
* :func:`http_proxy`: a real waitress server on 127.0.0.1 (a free port) and a
  connected ``http_connect`` proxy;
* :func:`wsgi_client`: an ``httpx.Client`` that calls a WSGI app in-process
  (``httpx.WSGITransport``, no socket), to pass to ``http_connect(client=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pyarrow as pa

from support.jwt import JWT_SECRET, bearer
from support.services import COUNT_SCHEMA, Countdown
from vgi_rpc import (
    AnnotatedBatch,
    CallContext,
    ExchangeState,
    OutputCollector,
    ProducerState,
    RpcServer,
    Stream,
)
from vgi_rpc.http import http_connect, jwt_authenticator, start_http_server
from vgi_rpc.streams import EMPTY_SCHEMA, empty_batch
from vgi_rpc.wire import STREAM_STATE_KEY, metadata_dict, request_bytes

ARROW = "application/vnd.apache.arrow.stream"
BUDGET = "VGI-Accept-Max-Response-Bytes-Support"
TOKEN_KEY = b"0123456789abcdef0123456789abcdef"


def call_body(
    method: str, columns: Mapping[str, Any] | None = None, *, protocol: str = "Calculator", **extra: str
) -> bytes:
    """A unary or ``/init`` request body: one row of *columns* (or the 0-row empty batch)."""
    if columns:
        batch = pa.RecordBatch.from_pydict({k: [v] for k, v in columns.items()})
    else:
        batch = empty_batch(EMPTY_SCHEMA)
    return request_bytes(method, batch, protocol=protocol, extra=extra or None)


def turn_body(token: str, batch: pa.RecordBatch | None = None, **md: str) -> bytes:
    """An ``/exchange`` body: *batch* (default: the producer tick) with the token in its metadata."""
    batch = batch if batch is not None else empty_batch(EMPTY_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch, custom_metadata={**md, STREAM_STATE_KEY: token})
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def read_stream(body: bytes) -> tuple[pa.Schema, list[tuple[pa.RecordBatch, dict[str, str]]]]:
    """Every batch of a response stream with its metadata (logs and errors included)."""
    reader = pa.ipc.open_stream(pa.py_buffer(body))
    out = []
    while True:
        try:
            batch, md = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            return reader.schema, out
        out.append((batch, metadata_dict(md)))


def error_md(body: bytes) -> dict[str, str]:
    """The metadata of the EXCEPTION batch in a response stream (AssertionError if none)."""
    for _, md in read_stream(body)[1]:
        if md.get("vgi_rpc.log_level") == "EXCEPTION":
            return md
    raise AssertionError("response carries no EXCEPTION batch")


def token_of(body: Any) -> str | None:
    """The last stream token in a response stream (bytes or a test-client result), if any."""
    body = getattr(body, "content", body)
    token = None
    for _, md in read_stream(body)[1]:
        token = md.get(STREAM_STATE_KEY, token)
    return token


# --------------------------------------------------------------------------- a service that tells who served


TRACE_SCHEMA = pa.schema(
    [
        pa.field("i", pa.int64()),
        pa.field("stream_id", pa.utf8()),
        pa.field("server_id", pa.utf8()),
        pa.field("pid", pa.int64()),
        pa.field("principal", pa.utf8()),
    ]
)
IN_SCHEMA = pa.schema([pa.field("i", pa.int64())])


def _trace_row(i: int, ctx: CallContext) -> dict[str, list[Any]]:
    return {
        "i": [i],
        "stream_id": [ctx.stream_id],
        "server_id": [ctx.server_id],
        "pid": [os.getpid()],
        "principal": [ctx.auth.principal],
    }


@dataclass
class TraceProducer(ProducerState):
    """Counts ``next`` up to ``stop``, each row saying which process and stream served it."""

    next: int
    stop: int

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.next >= self.stop:
            out.finish()
            return
        out.emit_pydict(_trace_row(self.next, ctx))
        self.next += 1


@dataclass
class TraceExchange(ExchangeState):
    """Adds each input ``i`` to a running ``total``; rows say which process and stream served them."""

    total: int = 0

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        self.total += sum(input.batch.column("i").to_pylist())
        out.emit_pydict(_trace_row(self.total, ctx))


class Tracer(Protocol):
    """Calls whose results name the caller, the serving process and the stream."""

    def whoami(self, tag: int) -> str:
        """``"{principal}:{tag}"``."""
        ...

    def trace(self, start: int, stop: int) -> Stream[TraceProducer]:
        """Producer: ``start .. stop-1``."""
        ...

    def accumulate(self) -> Stream[TraceExchange]:
        """Exchange: running total of the inputs."""
        ...


class TracerImpl:
    """Implementation of :class:`Tracer`."""

    def whoami(self, tag: int, ctx: CallContext) -> str:
        return f"{ctx.auth.principal}:{tag}"

    def trace(self, start: int, stop: int) -> Stream[TraceProducer]:
        return Stream(output_schema=TRACE_SCHEMA, state=TraceProducer(next=start, stop=stop))

    def accumulate(self) -> Stream[TraceExchange]:
        return Stream(output_schema=TRACE_SCHEMA, state=TraceExchange(), input_schema=IN_SCHEMA)


def serve_tracer_main() -> None:
    """Entry point of a worker process: ``serve_http(Tracer)`` on a free port (printed as ``PORT:n``).

    Environment: ``VGI_TOKEN_KEY`` (the shared key), ``VGI_JWT_SECRET`` (optional: require JWTs).
    """
    from vgi_rpc.http import jwt_authenticator, serve_http

    secret = os.environ.get("VGI_JWT_SECRET")
    serve_http(
        Tracer,
        TracerImpl(),
        port=0,
        prefix="/vgi",
        token_key=os.environ["VGI_TOKEN_KEY"],
        authenticate=jwt_authenticator(key=secret) if secret else None,
    )


# --------------------------------------------------------------------------- a stream with a header


@dataclass(frozen=True)
class Banner:
    title: str
    total: int


class Headed(Protocol):
    """A producer whose ``/init`` carries a :class:`Banner` header."""

    def titled(self, n: int) -> Stream[Countdown, Banner]: ...


class HeadedImpl:
    def titled(self, n: int) -> Stream[Countdown, Banner]:
        if n < 0:
            raise ValueError("n must be >= 0")
        state = Countdown(n=n)
        return Stream(output_schema=COUNT_SCHEMA, state=state, header=Banner(title=f"{n} rows", total=n))


@contextmanager
def http_proxy(
    server: RpcServer,
    headers: Mapping[str, str] | None = None,
    *,
    client_options: Mapping[str, Any] | None = None,
    **app_options: Any,
) -> Iterator[Any]:
    """Serve *server* with waitress on 127.0.0.1 and yield a proxy for its protocol.

    By default the app requires a JWT signed with :data:`JWT_SECRET` and seals
    stream state with :data:`TOKEN_KEY` (override either through *app_options*,
    which go to ``start_http_server``); the proxy sends *headers*, or a bearer
    token for ``anon`` when none are given. *client_options* go to ``http_connect``.
    """
    options: dict[str, Any] = {"token_key": TOKEN_KEY, "authenticate": jwt_authenticator(key=JWT_SECRET)}
    options.update(app_options)
    with (
        start_http_server(server, **options) as handle,
        http_connect(
            server.protocol, handle.base_url, headers=headers or bearer("anon"), **(client_options or {})
        ) as proxy,
    ):
        yield proxy


def wsgi_client(app: Callable[..., Any]) -> httpx.Client:
    """An ``httpx.Client`` that calls the WSGI *app* in-process (base URL ``http://testserver``)."""
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")
