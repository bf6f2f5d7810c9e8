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
import sys
from collections.abc import Iterator
from typing import IO

import pyarrow as pa

from vgi_rpc.auth import ANONYMOUS, AuthContext
from vgi_rpc.call import StreamInputError, TurnInput
from vgi_rpc.errors import ProtocolError
from vgi_rpc.methods import MethodSpec
from vgi_rpc.server import Admission, RpcServer, as_server
from vgi_rpc.streams import EMPTY_SCHEMA, AnnotatedBatch
from vgi_rpc.wire import CANCEL_KEY, PROTOCOL_KEY, PROTOCOL_KEYS, ResponseWriter, metadata_dict, read_request

__all__ = ["run_server", "serve_streams"]

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
    admission = Admission(server)
    maybe_orphan = False
    while True:
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
        maybe_orphan = False
        spec: MethodSpec | None = None
        try:
            # No URL on a pipe: the request's metadata names its protocol and method.
            spec = admission.route(request.method, request.metadata.get(PROTOCOL_KEY))
            kwargs = admission.request(spec, request)
        except ProtocolError as exc:
            maybe_orphan = spec is None
            if not _refuse(server, reader, writer, exc, spec):
                return
            continue
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
            return


def run_server(
    target: type | RpcServer, impl: object | None = None, *, auth: AuthContext = ANONYMOUS
) -> None:
    """Serve one Protocol over this process's stdin/stdout until stdin closes.

    Only protocol bytes go to stdout: ``sys.stdout`` (and file descriptor 1) are
    redirected to stderr while serving, so a stray ``print`` cannot corrupt the wire.

    Args:
        target: A ready :class:`~vgi_rpc.RpcServer`, or a Protocol class followed by *impl*.
        impl: The implementation when *target* is a Protocol class.
        auth: The caller every call on this connection is dispatched as. The pipe
            carries no credentials, so the identity is fixed by whoever starts the
            worker (e.g. from its environment); ``ANONYMOUS`` by default.
    """
    server = as_server(target, impl)
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    saved_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        with os.fdopen(protocol_fd, "wb") as out:
            serve_streams(server, sys.stdin.buffer, out, auth=auth)
    finally:
        sys.stdout = saved_stdout
