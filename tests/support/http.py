"""Helpers shared by the ``test_http_*`` suites (import as ``from support.http import ...``).

Builds raw request bodies the way the official client does, reads error streams
back, signs real JWTs with joserfc, and records dispatch-hook calls.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from joserfc import jwt
from joserfc.jwk import OctKey

from support.services import COUNT_SCHEMA, Countdown
from vgi_rpc import (
    AnnotatedBatch,
    AuthContext,
    CallContext,
    DispatchInfo,
    ExchangeState,
    OutputCollector,
    ProducerState,
    Stream,
)
from vgi_rpc.streams import EMPTY_SCHEMA, empty_batch
from vgi_rpc.wire import STREAM_STATE_KEY, metadata_dict, request_bytes

ARROW = "application/vnd.apache.arrow.stream"
BUDGET = "VGI-Accept-Max-Response-Bytes-Support"
JWT_SECRET = "test-secret-for-hs256-0123456789abcdef"
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


def sign_jwt(sub: str | None, *, secret: str = JWT_SECRET, exp_in: float = 300, **claims: Any) -> str:
    """A real HS256 JWT for *sub* (``None`` leaves ``sub`` out)."""
    payload: dict[str, Any] = {"exp": int(time.time() + exp_in), **claims}
    if sub is not None:
        payload["sub"] = sub
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(secret))


@dataclass
class Seen:
    """One dispatch as a hook saw it."""

    info: DispatchInfo
    auth: AuthContext
    metadata: dict[str, str]
    kwargs: dict[str, Any] | None
    error: BaseException | None = None
    ended: bool = False


@dataclass
class RecordingHook:
    """A dispatch hook that records every start/end pair (thread-safe)."""

    calls: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        seen = Seen(info, auth, dict(transport_metadata), None if kwargs is None else dict(kwargs))
        with self.lock:
            self.calls.append(seen)
        return seen

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        assert isinstance(token, Seen)
        token.error = error
        token.ended = True


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
