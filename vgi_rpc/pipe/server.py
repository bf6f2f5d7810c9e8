"""The pipe transport's server side: the framing loop over a pair of byte streams.

* :func:`serve_streams` answers requests read from one binary stream on another
  until EOF (``serve_pipe`` runs it on a thread, :func:`run_server` on stdin/stdout);
* :func:`run_server` serves this process's stdin/stdout (protocol bytes only on
  stdout: anything user code prints is sent to stderr instead).

Framing (the official peers' dialect): each call is a request IPC stream; a unary
response is one IPC stream. A stream call then exchanges one *input* IPC stream
(client -> server, one batch per turn: a 0-row tick for producers, the data for
exchanges) against one *output* IPC stream (server -> client, log batches and
one data batch per turn), preceded by the header's own IPC stream for
``Stream[S, H]`` methods. The server ends a producer by closing its output
stream; the client ends an exchange by closing its input stream, or cancels it
with a zero-row batch carrying ``vgi_rpc.cancel``.

This module only frames: what a call does and in which order its logs, data and
error are written is the :class:`~vgi_rpc.call.Call`'s (one per request; on the
pipe a whole stream call is one Call, one dispatch-hook start/end pair).

The pipe carries no credentials: the caller's identity is fixed per connection by
whoever starts the server (the ``auth`` argument), ``ANONYMOUS`` by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa

from vgi_rpc._stopping import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_SENTRY_FLUSH_TIMEOUT,
    check_stop_options,
    flush_sentry,
)
from vgi_rpc.auth import ANONYMOUS, AuthContext
from vgi_rpc.call import StreamInputError, TurnInput
from vgi_rpc.errors import ProtocolError
from vgi_rpc.methods import MethodSpec
from vgi_rpc.server import Admission, RpcServer, as_server
from vgi_rpc.streams import EMPTY_SCHEMA, AnnotatedBatch
from vgi_rpc.wire import (
    CANCEL_KEY,
    PROTOCOL_KEY,
    PROTOCOL_KEYS,
    Request,
    ResponseWriter,
    metadata_dict,
    read_request,
)

__all__ = ["DEFAULT_GRACE_PERIOD", "DEFAULT_SENTRY_FLUSH_TIMEOUT", "run_server", "serve_streams"]

_logger = logging.getLogger("vgi_rpc")


def _drain(reader: pa.ipc.RecordBatchStreamReader) -> None:
    with contextlib.suppress(StopIteration, pa.ArrowInvalid, OSError):
        while True:
            reader.read_next_batch()


def _drain_input(source: IO[bytes]) -> None:
    with contextlib.suppress(pa.ArrowInvalid, OSError, EOFError):
        _drain(pa.ipc.open_stream(source))


def _write_error_stream(server: RpcServer, writer: IO[bytes], exc: BaseException, schema: pa.Schema) -> None:
    """Answer a request refused before dispatch (bad framing, unknown method, bad parameters)."""
    out = ResponseWriter(writer, schema)
    out.meta(server.error_md(exc))
    out.close()
    writer.flush()


def _refuse(
    server: RpcServer, reader: IO[bytes], writer: IO[bytes], exc: ProtocolError, spec: MethodSpec | None
) -> bool:
    """Answer a request that admission refused; ``False`` when the pipe broke meanwhile.

    A refused unary call's error stream has the method's result schema, as its answer
    would have; a refused stream call's input stream is drained, so the pipe stays in
    step for the next request.
    """
    stream = spec is not None and spec.method_type == "stream"
    try:
        schema = EMPTY_SCHEMA if stream or spec is None else spec.result_schema
        _write_error_stream(server, writer, exc, schema)
        if stream:
            _drain_input(reader)
    except OSError:
        return False
    return True


class _Inputs:
    """The client's input stream of one stream call, read one turn at a time.

    Yields each turn's batch with its user metadata (protocol keys stripped), or
    ``None`` for a cancel (the last item). A read that fails (the client's bytes
    stopped being Arrow IPC, the pipe broke) raises :class:`StreamInputError`.
    """

    __slots__ = ("_reader", "_source")

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._reader: pa.ipc.RecordBatchStreamReader | None = None

    def __iter__(self) -> Iterator[TurnInput]:
        self._reader = reader = pa.ipc.open_stream(self._source)
        while True:
            try:
                batch, raw = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                return
            except (pa.ArrowInvalid, OSError) as exc:
                raise StreamInputError(exc) from exc
            md = metadata_dict(raw)
            if CANCEL_KEY in md:
                yield None
                return
            if md and not PROTOCOL_KEYS.isdisjoint(md):
                md = {k: v for k, v in md.items() if k not in PROTOCOL_KEYS}
            yield AnnotatedBatch(batch, md or None)

    def drain(self) -> None:
        """Read what is left of the input stream, so the pipe is in step for the next request."""
        if self._reader is None:
            _drain_input(self._source)  # the call failed before reading any input
        else:
            _drain(self._reader)


def serve_streams(
    server: RpcServer, reader: IO[bytes], writer: IO[bytes], *, auth: AuthContext = ANONYMOUS
) -> None:
    """Serve requests from *reader*, answering on *writer*, until EOF.

    Every call is dispatched with *auth* as the caller (the pipe has no
    credentials of its own). A malformed request is answered with an error stream
    and the loop goes on when the request was framed correctly; garbage that
    breaks the IPC framing ends the connection (after answering), since the byte
    stream can no longer be trusted.
    """
    _serve(server, reader, writer, auth, None)


def _serve(
    server: RpcServer, reader: IO[bytes], writer: IO[bytes], auth: AuthContext, stop: _Stop | None
) -> None:
    """:func:`serve_streams`; with *stop*, a request is busy from read to answer and a stop ends the loop."""
    admission = Admission(server)
    maybe_orphan = False
    while stop is None or not stop.requested:
        try:
            request = read_request(reader)
        except EOFError:
            return
        except ProtocolError as exc:
            if maybe_orphan and exc.error_kind == "missing_method":
                # After "unknown method", a client that believed the method was a stream
                # sends its input stream anyway; it carries no method metadata. Skip it
                # quietly so the pipe stays in step for the next call.
                maybe_orphan = False
                continue
            with contextlib.suppress(OSError):
                _write_error_stream(server, writer, exc, EMPTY_SCHEMA)
            if exc.bad_ipc:  # not Arrow IPC: where the next request starts cannot be known
                return
            continue
        except OSError:
            return
        if stop is not None:
            stop.busy = True
        outcome = _answer(server, admission, request, reader, writer, auth)
        if outcome is None:  # the pipe broke
            return
        maybe_orphan = outcome
        if stop is not None:
            stop.idle()


def _answer(
    server: RpcServer,
    admission: Admission,
    request: Request,
    reader: IO[bytes],
    writer: IO[bytes],
    auth: AuthContext,
) -> bool | None:
    """Dispatch one request and write its answer.

    ``None`` when the pipe broke; else whether the next request may be the orphaned
    input stream of a stream call refused as an unknown method.
    """
    spec: MethodSpec | None = None
    try:
        # No URL on a pipe: the request's metadata names its protocol and method.
        spec = admission.route(request.method, request.metadata.get(PROTOCOL_KEY))
        kwargs = admission.request(spec, request)
    except ProtocolError as exc:
        if not _refuse(server, reader, writer, exc, spec):
            return None
        return spec is None
    try:
        call = server.call(spec, auth=auth, metadata=request.metadata, transport="pipe")
        if spec.method_type == "unary":
            # Encoded in memory and written once: a pyarrow writer on a Python
            # file calls back into Python for every piece of every message.
            sink = pa.BufferOutputStream()
            call.unary(kwargs, sink)
            writer.write(sink.getvalue())
            writer.flush()
        else:
            inputs = _Inputs(reader)
            call.stream(kwargs, inputs, writer)
            inputs.drain()
    except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
        _logger.debug("pipe closed mid-call", exc_info=True)
        return None
    return False


class _Stopped(BaseException):
    """Raised by the signal handler when no call is in progress: stop reading requests."""


class _GraceOver(BaseException):
    """Raised (from SIGALRM, or a second signal) in the call still running when the grace period ends."""


class _Stop:
    """SIGTERM/SIGINT handling for :func:`run_server` (main thread only).

    Idle (waiting for a request): the handler raises :class:`_Stopped` out of the
    read. Busy: the call goes on, a SIGALRM timer is armed for the grace period, and
    the loop stops once the answer is written. A second signal, or the timer,
    raises :class:`_GraceOver` in the running call.
    """

    def __init__(self, grace_period: float) -> None:
        self.grace_period = grace_period
        self.requested = False
        self.busy = False
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        if signal.SIGALRM in self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def idle(self) -> None:
        """The answer is written: a stop requested meanwhile may now end the loop."""
        self.busy = False
        if self.requested and signal.SIGALRM in self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.requested and self.busy:
            raise _GraceOver
        self.requested = True
        if not self.busy:
            raise _Stopped
        _logger.info("vgi_rpc.pipe stopping: waiting up to %gs for the call in progress", self.grace_period)
        if self.grace_period <= 0:
            raise _GraceOver
        if not hasattr(signal, "setitimer"):  # no SIGALRM (Windows): the call runs to its end
            return
        self._previous.setdefault(signal.SIGALRM, signal.signal(signal.SIGALRM, self._on_alarm))
        signal.setitimer(signal.ITIMER_REAL, self.grace_period)

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self.busy:
            raise _GraceOver


def run_server(
    target: type | RpcServer,
    impl: object | None = None,
    *,
    auth: AuthContext = ANONYMOUS,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    sentry_flush_timeout: float = DEFAULT_SENTRY_FLUSH_TIMEOUT,
    handle_signals: bool = True,
) -> None:
    """Serve one Protocol over this process's stdin/stdout until stdin closes or a stop signal.

    Only protocol bytes go to stdout: ``sys.stdout`` (and file descriptor 1) are
    redirected to stderr while serving, so a stray ``print`` cannot corrupt the wire.

    Stopping: on SIGTERM or SIGINT while waiting for a request, it stops at once; in
    the middle of a call, the call gets up to *grace_period* seconds to finish and
    its answer is written, then it stops. A call still running after the grace
    period (or at a second signal) is interrupted where it next runs Python code
    (a SIGALRM timer raises in it) and nothing more is written: the client sees the
    pipe close, a transport error. Either way Sentry is flushed for up to
    *sentry_flush_timeout* seconds (when a Sentry client is active) and the function
    returns normally, so a worker script ending with it exits 0. The handlers are
    installed only in the main thread, not for an ignored signal, and the previous
    ones are put back before returning.

    Args:
        target: A ready :class:`~vgi_rpc.RpcServer`, or a Protocol class followed by *impl*.
        impl: The implementation when *target* is a Protocol class.
        auth: The caller every call on this connection is dispatched as. The pipe
            carries no credentials, so the identity is fixed by whoever starts the
            worker (e.g. from its environment); ``ANONYMOUS`` by default.
        grace_period: Seconds a call in progress gets to finish after a stop signal
            (default 30).
        sentry_flush_timeout: Most seconds spent flushing Sentry before returning
            (default 2; ``0`` skips it).
        handle_signals: ``False`` leaves SIGTERM and SIGINT alone.
    """
    check_stop_options(grace_period, sentry_flush_timeout)
    server = as_server(target, impl)
    main = threading.current_thread() is threading.main_thread()
    stop = _Stop(grace_period) if handle_signals and main else None
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    saved_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        with os.fdopen(protocol_fd, "wb") as out:
            _serve_until_stopped(server, out, auth, stop)
    finally:
        sys.stdout = saved_stdout
        flush_sentry(sentry_flush_timeout, "vgi_rpc.pipe")


def _serve_until_stopped(server: RpcServer, out: IO[bytes], auth: AuthContext, stop: _Stop | None) -> None:
    if stop is None:
        _serve(server, sys.stdin.buffer, out, auth, None)
        return
    try:
        stop.install()
        _serve(server, sys.stdin.buffer, out, auth, stop)
    except _Stopped:
        pass
    except _GraceOver:
        _logger.warning(
            "vgi_rpc.pipe: grace period over with a call still running; stopping without its answer"
        )
        # Whatever part of the answer is still buffered must not reach the client (closing
        # the file would flush it): point the descriptor at /dev/null, which also closes
        # our end of the pipe, so the client sees the pipe close instead.
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, out.fileno())
        finally:
            os.close(null)
    finally:
        stop.restore()
