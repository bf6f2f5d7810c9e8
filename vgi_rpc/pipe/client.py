"""The pipe transport's client side: the typed proxy over a pair of byte pipes.

* :func:`serve_pipe` runs a server on a background thread of this process, over
  OS pipes, and yields a typed proxy to it;
* :func:`connect` spawns a worker process (one that calls
  :func:`~vgi_rpc.pipe.run_server`) and yields a typed proxy to it.

:class:`_PipeClient` speaks the framing described in ``vgi_rpc.pipe.server``:
one call at a time per connection (a lock serialises threads), a stream call
holding the connection until it is exhausted, closed or cancelled. A pipe that
breaks or carries bytes that are not Arrow IPC surfaces as
``RpcError("TransportError", error_kind="transport")`` with the HTTP client's gRPC
codes: ``UNAVAILABLE`` (the worker exited, was killed or closed its end; the
connection was given up earlier), ``DATA_LOSS`` (bytes that are not Arrow IPC),
``DEADLINE_EXCEEDED`` (the timeout below). Every call, and every stream turn, has a
deadline (*timeout*, :data:`DEFAULT_TIMEOUT` by default): the reader and writer
are ``vgi_rpc._pipe_io``'s, which poll non-blocking descriptors and check the
IPC framing of what the worker writes.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import subprocess
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from vgi_rpc._pipe_io import NotArrowError, PipeIO, PipeReader, PipeTimeout, PipeWriter
from vgi_rpc._propagation import outgoing_trace_headers
from vgi_rpc._types import IPC_WRITE_OPTIONS, dataclass_from_batch
from vgi_rpc.auth import ANONYMOUS, AuthContext
from vgi_rpc.client import RpcProxy, StreamSession
from vgi_rpc.errors import ProtocolError, RpcError
from vgi_rpc.methods import MethodSpec, protocol_names
from vgi_rpc.pipe.server import _drain, serve_streams
from vgi_rpc.server import RpcServer, as_server
from vgi_rpc.streams import EMPTY_SCHEMA, AnnotatedBatch, cast_input, empty_batch
from vgi_rpc.wire import CANCEL_KEY, OnLog, iter_response, request_bytes

__all__ = ["DEFAULT_TIMEOUT", "connect", "serve_pipe"]

DEFAULT_TIMEOUT = 60.0
"""Seconds :func:`connect` and :func:`serve_pipe` give each call (each stream turn) by default."""

_logger = logging.getLogger("vgi_rpc")


class _PipeClient:
    """Client side of the pipe framing (one call at a time; a lock serialises threads).

    Every call (every stream turn) gets *timeout* seconds for its writes and reads.
    When they run out, or the other end writes bytes that are not Arrow IPC, the
    connection cannot be trusted to be in step any more: *give_up* is called (it
    kills the worker process, or closes the pipes) and every later call fails at once.
    """

    def __init__(
        self,
        reader_fd: int,
        writer_fd: int,
        protocol: str,
        version: str | None,
        on_log: OnLog | None,
        *,
        timeout: float | None,
        give_up: Callable[[], None],
        owns_fds: bool = False,
        give_up_means: str = "the worker was killed",
        propagate_trace: bool = True,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be positive, or None for no limit")
        self.io = PipeIO()
        self.reader = PipeReader(reader_fd, self.io, owns_fd=owns_fds)
        self.writer = PipeWriter(writer_fd, self.io, owns_fd=owns_fds)
        self.protocol = protocol
        self.version = version
        self.on_log = on_log
        self.timeout = timeout
        self.propagate_trace = propagate_trace
        self._give_up = give_up
        self.give_up_means = give_up_means
        self.broken: str | None = None
        self.lock = threading.RLock()
        # weak: a session dropped unfinished must still be collected (its __del__ finishes it)
        self.open_session: weakref.ref[_PipeStream] | None = None

    def _acquire(self) -> None:
        """Take the connection. Another thread waits; this thread, if it still holds an open
        stream session, gets an error instead of interleaving a call into that stream."""
        self.lock.acquire()
        if self.broken is not None:
            self.lock.release()
            raise RpcError(
                "TransportError",
                f"the pipe connection is closed: {self.broken}",
                error_kind="transport",
                error_code="UNAVAILABLE",
            )
        if self.open_session is not None and self.open_session() is not None:
            self.lock.release()
            raise RuntimeError(
                "a stream call is still open on this connection: exhaust, close() or cancel() it first"
            )
        self.io.arm(self.timeout)

    def failed(self, what: str, exc: BaseException) -> RpcError:
        """The RpcError for a pipe failure during *what*; after a timeout or garbage, give up."""
        if isinstance(exc, PipeTimeout | NotArrowError) and self.broken is None:
            consequence = self.give_up_means
            if isinstance(exc, PipeTimeout):
                self.broken = f"{what} got no answer within {self.timeout:g} s ({consequence})"
                error = RpcError(
                    "TransportError",
                    f"pipe transport timed out: {self.broken}",
                    error_kind="transport",
                    error_code="DEADLINE_EXCEEDED",
                )
            else:
                self.broken = f"during {what}, {exc} ({consequence})"
                error = RpcError(
                    "TransportError",
                    f"pipe transport failed: {self.broken}",
                    error_kind="transport",
                    error_code="DATA_LOSS",
                )
            with contextlib.suppress(Exception):
                self._give_up()
            return error
        return _transport_error(what, exc)

    def _send_request(self, spec: MethodSpec, request: pa.RecordBatch) -> None:
        # built in Arrow's own buffer, then one write: not a Python call per IPC piece
        extra = outgoing_trace_headers("pipe") if self.propagate_trace else None
        self.writer.send(
            request_bytes(
                spec.name, request, protocol=self.protocol, protocol_version=self.version, extra=extra
            )
        )

    def call_unary(self, spec: MethodSpec, request: pa.RecordBatch) -> pa.RecordBatch:
        self._acquire()
        try:
            self._send_request(spec, request)
            batches = _read_whole(pa.ipc.open_stream(pa.py_buffer(self.reader.read_stream())), self.on_log)
        except _TRANSPORT_ERRORS as exc:
            raise self.failed(f"call to {spec.name!r}", exc) from exc
        finally:
            self.lock.release()
        if not batches:
            raise ProtocolError(f"{spec.name}: response stream has no result batch")
        return batches[-1][0]

    def open_stream(self, spec: MethodSpec, request: pa.RecordBatch) -> StreamSession:
        self._acquire()
        try:
            self._send_request(spec, request)
        except BaseException as exc:
            self.lock.release()
            if isinstance(exc, _TRANSPORT_ERRORS):
                raise self.failed(f"stream call to {spec.name!r}", exc) from exc
            raise
        try:
            session = _PipeStream(self, spec)
        except _TRANSPORT_ERRORS as exc:  # (the session gave the connection back)
            raise self.failed(f"stream call to {spec.name!r}", exc) from exc
        if not session._done:
            self.open_session = weakref.ref(session)
        return session


_TRANSPORT_ERRORS = (OSError, ValueError)  # broken/closed pipe, or bytes that are not Arrow IPC


def _transport_error(what: str, exc: BaseException) -> RpcError:
    """The RpcError a caller sees when the pipe itself failed: the worker is gone (exited,
    killed, closed its end), so the answer will never come (``UNAVAILABLE``)."""
    return RpcError(
        "TransportError",
        f"pipe transport failed during {what}: {exc}",
        error_kind="transport",
        error_code="UNAVAILABLE",
    )


def _read_whole(
    reader: pa.ipc.RecordBatchStreamReader, on_log: OnLog | None
) -> list[tuple[pa.RecordBatch, dict[str, str]]]:
    """Read a response stream to EOS (so the pipe stays in step), then raise its error if it had one."""
    out: list[tuple[pa.RecordBatch, dict[str, str]]] = []
    error: RpcError | None = None
    it = iter_response(reader, on_log)
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            break
        except RpcError as exc:
            error = exc
            _drain(reader)
            break
    if error is not None:
        raise error
    return out


class _PipeStream:
    """A stream call on the pipe: producer iteration or exchange turns."""

    def __init__(self, client: _PipeClient, spec: MethodSpec) -> None:
        self._client = client
        self._spec = spec
        self._in: pa.ipc.RecordBatchStreamWriter | None = None
        self._in_schema: pa.Schema = EMPTY_SCHEMA
        self._out: pa.ipc.RecordBatchStreamReader | None = None
        self._done = False
        self.header: Any = None
        """The stream's header (an instance of the method's header dataclass), or None."""
        if spec.header_type is not None:
            self._read_header(spec.header_type)

    def _read_header(self, header_type: Any) -> None:
        try:
            stream = pa.py_buffer(self._client.reader.read_stream())
            rows = _read_whole(pa.ipc.open_stream(stream), self._client.on_log)
        except BaseException:
            self._finish(read_output=False)
            raise
        if not rows or rows[0][0].num_rows < 1:
            self._finish(read_output=False)
            raise ProtocolError(f"{self._spec.name}: stream header has no row")
        self.header = dataclass_from_batch(header_type, rows[0][0])

    # -- plumbing
    def _input(self, schema: pa.Schema) -> pa.ipc.RecordBatchStreamWriter:
        if self._in is None:
            self._in = pa.ipc.new_stream(self._client.writer, schema, options=IPC_WRITE_OPTIONS)
            self._in_schema = schema
        return self._in

    def _send(self, batch: pa.RecordBatch, metadata: Mapping[str, str] | None = None) -> None:
        if self._in is not None and not batch.schema.equals(self._in_schema):
            # one pipe input stream has one schema: later batches must fit the first one's
            batch = cast_input(batch, self._in_schema)
        self._client.io.arm(self._client.timeout)  # each turn gets the whole timeout
        try:
            writer = self._input(batch.schema)
            writer.write_batch(batch, custom_metadata=dict(metadata) if metadata else None)
            self._client.writer.flush()
        except _TRANSPORT_ERRORS as exc:
            self._abandon()
            raise self._client.failed(f"a turn of stream {self._spec.name!r}", exc) from exc

    def _next_output(self) -> tuple[pa.RecordBatch, dict[str, str]] | None:
        """The next data batch, or None at the end of the output stream."""
        try:
            if self._out is None:
                self._out = pa.ipc.open_stream(self._client.reader)
            return next(iter_response(self._out, self._client.on_log))
        except StopIteration:
            if self._client.reader._eof:
                # Arrow ends a stream quietly at end of file; a stream that really ended
                # stops at its end-of-stream marker, before the pipe's end. So the worker
                # died mid-stream: say so, instead of handing back a short stream.
                self._abandon()
                gone = EOFError("the worker closed its output before the end of the stream")
                raise self._client.failed(f"a turn of stream {self._spec.name!r}", gone) from None
            self._finish()
            return None
        except RpcError:
            self._finish()
            raise
        except _TRANSPORT_ERRORS as exc:
            self._abandon()
            raise self._client.failed(f"a turn of stream {self._spec.name!r}", exc) from exc

    def _abandon(self) -> None:
        """The pipe broke mid-stream: give the connection back without further I/O."""
        if self._done:
            return
        self._done = True
        self._client.open_session = None
        self._client.lock.release()

    def _finish(self, *, read_output: bool = True) -> None:
        if self._done:
            return
        self._done = True
        client = self._client
        try:
            if client.broken is not None:
                return  # the connection was given up: nothing to say to the other end
            client.io.arm(client.timeout)
            if self._in is None:
                self._in = pa.ipc.new_stream(client.writer, EMPTY_SCHEMA, options=IPC_WRITE_OPTIONS)
            self._in.close()
            client.writer.flush()
            if not read_output:
                return  # the call failed before its output stream: nothing more will come
            if self._out is None:
                self._out = pa.ipc.open_stream(client.reader)
            _drain(self._out)
        except (PipeTimeout, NotArrowError) as exc:
            client.failed(f"the end of stream {self._spec.name!r}", exc)  # gives the connection up
        except (OSError, pa.ArrowInvalid):
            _logger.debug("pipe stream finish failed", exc_info=True)
        finally:
            self._client.open_session = None
            self._client.lock.release()

    # -- public surface
    def __iter__(self) -> Iterator[AnnotatedBatch]:
        tick = empty_batch(EMPTY_SCHEMA)
        while not self._done:
            self._send(tick)
            item = self._next_output()
            if item is None:
                return
            yield AnnotatedBatch(item[0], item[1] or None)

    def exchange(self, data: AnnotatedBatch) -> AnnotatedBatch:
        if self._done:
            raise RuntimeError("stream is closed")
        self._send(data.batch, data.custom_metadata)
        item = self._next_output()
        if item is None:
            raise RpcError("ProtocolError", "server ended the stream without answering the exchange")
        return AnnotatedBatch(item[0], item[1] or None)

    def cancel(self) -> None:
        if self._done:
            return
        schema = self._in_schema
        self._send(empty_batch(schema), {CANCEL_KEY: "1"})
        self._finish()

    def close(self) -> None:
        self._finish()

    def __enter__(self) -> _PipeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._done:
            with contextlib.suppress(Exception):
                self._finish()


@contextlib.contextmanager
def serve_pipe(
    target: type | RpcServer,
    impl: object | None = None,
    *,
    on_log: OnLog | None = None,
    auth: AuthContext = ANONYMOUS,
    timeout: float | None = DEFAULT_TIMEOUT,
    propagate_trace: bool = True,
) -> Iterator[Any]:
    """Serve on a background thread over OS pipes and yield a typed proxy.

    ``with serve_pipe(Calculator, CalculatorImpl()) as proxy: proxy.add(a=1, b=2)``.
    Accepts a ready :class:`RpcServer` too (instrument it first). ``on_log``
    receives the server's log messages (:class:`vgi_rpc.wire.LogMessage`).
    ``auth`` is the caller every call on this connection is made as (default:
    anonymous); pass an :class:`~vgi_rpc.auth.AuthContext` to test what an
    authenticated caller sees (``ctx.auth``, Sentry's ``user``/``auth.*`` tags).

    *timeout* (default :data:`DEFAULT_TIMEOUT`, 60 s; ``None`` for no limit) bounds
    each call, and each turn of a stream: past it the call raises ``RpcError`` with
    ``error_kind="transport"`` and ``error_code="DEADLINE_EXCEEDED"``, the pipes are
    closed (the server thread ends once the implementation returns) and every later
    call on the proxy fails at once.

    *propagate_trace* (default ``True``): each call carries the caller's current
    trace context in its request metadata, so the server's Sentry and
    OpenTelemetry hooks continue the caller's trace: ``sentry-trace`` and
    ``baggage`` when a Sentry client is active, W3C ``traceparent``/``tracestate``
    (OpenTelemetry's global propagator) when an OTel span is current, nothing when
    neither is. A stream call carries it once, in its opening request. ``False``
    sends none of it.
    """
    server = as_server(target, impl)
    thread, s2c_r, c2s_w = _serve_in_thread(server, auth)
    client: _PipeClient | None = None

    def hang_up() -> None:
        assert client is not None
        client.writer.close()
        client.reader.close()

    client = _PipeClient(
        s2c_r,
        c2s_w,
        server.protocol_name,
        server.protocol_version,
        on_log,
        timeout=timeout,
        give_up=hang_up,
        owns_fds=True,
        give_up_means="the pipes were closed",
        propagate_trace=propagate_trace,
    )
    try:
        yield RpcProxy(server.protocol, client)
    finally:
        client.writer.close()
        if client.broken is None:
            thread.join(timeout=10)
        client.reader.close()


def _serve_in_thread(server: RpcServer, auth: AuthContext) -> tuple[threading.Thread, int, int]:
    """Start *server* on a daemon thread over two fresh OS pipes.

    Returns the thread and the client's ends: the fd to read responses from and the
    fd to write requests to. The thread closes its own ends when the connection ends.
    """
    c2s_r, c2s_w = os.pipe()
    s2c_r, s2c_w = os.pipe()
    server_in, server_out = os.fdopen(c2s_r, "rb"), os.fdopen(s2c_w, "wb")

    def run() -> None:
        try:
            # A fresh context: the caller's Sentry scope and span (which Sentry's threading
            # integration hands to new threads) must not become the worker's. The caller's
            # trace reaches the worker only the way it reaches a subprocess: in the requests.
            contextvars.Context().run(serve_streams, server, server_in, server_out, auth=auth)
        finally:
            with contextlib.suppress(OSError):
                server_out.close()
            server_in.close()

    thread = threading.Thread(target=run, name=f"vgi_rpc-pipe-{server.protocol_name}", daemon=True)
    thread.start()
    return thread, s2c_r, c2s_w


@contextlib.contextmanager
def connect(
    protocol: type,
    cmd: Sequence[str],
    *,
    on_log: OnLog | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    propagate_trace: bool = True,
) -> Iterator[Any]:
    """Spawn ``cmd`` (a worker calling :func:`~vgi_rpc.pipe.run_server`) and yield a typed proxy to it.

    Who the caller is, is the worker's decision: it serves anonymous calls unless
    it calls ``run_server(..., auth=AuthContext(...))``. The worker's stderr is inherited. So is this process's environment, unless
    *env* is given: then *env* is the worker's whole environment, as with
    ``subprocess.Popen(env=...)`` (pass ``{**os.environ, "NAME": "value"}`` to add
    to the inherited one). On exit stdin is closed and the worker is given 10
    seconds to stop before it is killed.

    *timeout* (default :data:`DEFAULT_TIMEOUT`, 60 s; ``None`` for no limit) bounds
    each call, and each turn of a stream, writes and reads alike. A worker that
    neither answers nor exits in that time is killed and the call raises
    ``RpcError("TransportError", ...)`` with ``error_kind="transport"`` and
    ``error_code="DEADLINE_EXCEEDED"``. A worker that writes bytes that are not Arrow
    IPC to its stdout (a stray ``print``) is killed at once, and the error quotes
    the bytes (``error_code="DATA_LOSS"``). Either way every later call on the proxy
    fails at once (``error_code="UNAVAILABLE"``), as does a call to a worker that
    exited or was killed.

    *propagate_trace* as for :func:`serve_pipe` (``False``: no trace context sent).
    """
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    assert proc.stdin is not None and proc.stdout is not None
    name, version = protocol_names(protocol)
    client = _PipeClient(
        proc.stdout.fileno(),
        proc.stdin.fileno(),
        name,
        version,
        on_log,
        timeout=timeout,
        give_up=proc.kill,
        propagate_trace=propagate_trace,
    )
    try:
        yield RpcProxy(protocol, client)
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
