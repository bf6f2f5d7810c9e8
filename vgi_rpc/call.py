"""One dispatch from start to finish: the :class:`Call` every transport hands a decoded request to.

A transport frames bytes and decodes the request (``vgi_rpc.wire``); the server
finds the method and makes one :class:`Call` (``RpcServer.call``). The Call then
owns everything that happens to the request, in this order:

1. the call's :class:`~vgi_rpc.context.CallContext` and its log buffer (``ctx.log()``
   and a turn's ``out.log()`` both write to it, so their messages keep their order);
2. the dispatch hook's start (:class:`~vgi_rpc.hooks.DispatchInfo`, read-only views
   of the kwargs and the transport metadata);
3. the implementation: a unary call (:meth:`Call.unary`, :meth:`Call.inproc`), a
   whole stream on one connection (:meth:`Call.stream`, the pipe), a stream's
   opening plus a producer's first turn (:meth:`Call.init`, HTTP ``/init``), or one
   later turn or a cancel (:meth:`Call.resume`, HTTP ``/exchange``);
4. an application error logged on the ``vgi_rpc`` logger at WARNING (never ERROR:
   Sentry's logging integration then records a breadcrumb, not a second event);
5. the hook's end, with the *original* exception;
6. the response, through :class:`~vgi_rpc.wire.ResponseWriter` in the one order the
   wire allows: log batches, then the data batch, then the error or the state token.

Hooks are called from this module only. A transport never calls them, never runs
the implementation and never decides that order; it passes a sink to write to and,
over HTTP, a *seal* function that turns the stream's state into the next token
(inside the hook pair, so a state that cannot be sealed is the call's error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import pyarrow as pa

from vgi_rpc._types import dataclass_batch
from vgi_rpc.auth import ANONYMOUS, AuthContext
from vgi_rpc.context import CallContext, LogItem
from vgi_rpc.hooks import DispatchHook, DispatchInfo, Turn, _dispatch_info, _safe_end, _safe_start
from vgi_rpc.methods import MethodSpec
from vgi_rpc.streams import EMPTY_SCHEMA, AnnotatedBatch, OutputCollector, Stream, cast_input, empty_batch
from vgi_rpc.wire import STREAM_STATE_KEY, ResponseWriter, log_metadata, new_request_id, new_stream_id

__all__ = ["Call", "Sealer", "StreamInputError"]

_logger = logging.getLogger("vgi_rpc")
_NO_METADATA: Mapping[str, str] = MappingProxyType({})
_TICK = AnnotatedBatch(empty_batch(EMPTY_SCHEMA), None)
"""The input of a producer turn the server runs by itself (HTTP ``/init``)."""

Sealer = Callable[[Stream[Any, Any], str], str]
"""``seal(stream, stream_id) -> token``: the HTTP transport's way to carry a stream to its next turn."""

TurnInput = AnnotatedBatch | None
"""One turn's input as a transport hands it over: the batch (user metadata only), or ``None`` for a cancel."""


class StreamInputError(Exception):
    """Raised by a transport's input iterator when the client's input stream broke mid-stream.

    :meth:`Call.stream` then ends the stream without reporting anything on the wire
    (the connection is gone or out of step); the hook's end sees :attr:`cause`.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the client's input stream broke: {cause}")
        self.cause = cause


class _Served(Protocol):
    """What a :class:`Call` needs from its server (``RpcServer`` provides it)."""

    server_id: str
    protocol_name: str

    def error_md(self, exc: BaseException, request_id: str | None = None) -> dict[str, str]: ...


class Call:
    """One dispatch of one method: context, hook pair, implementation, error logging, response.

    Made by ``RpcServer.call(spec, ...)`` with the hook chain registered at that
    moment; each entry point runs once. Attributes a transport may read afterwards:
    ``request_id``, ``stream_id`` (``None`` for unary calls) and ``error`` (the
    application's exception, or ``None``).
    """

    __slots__ = (
        "_hook",
        "_info",
        "_request_id",
        "_token",
        "auth",
        "ctx",
        "error",
        "logs",
        "metadata",
        "server",
        "spec",
        "stream_id",
        "transport",
        "turn",
    )

    def __init__(
        self,
        server: _Served,
        hook: DispatchHook | None,
        spec: MethodSpec,
        *,
        auth: AuthContext = ANONYMOUS,
        metadata: Mapping[str, str] | None = None,
        transport: str = "inproc",
        stream_id: str | None = None,
    ) -> None:
        self.server = server
        self.spec = spec
        self.auth = auth
        self.metadata = _NO_METADATA if metadata is None else metadata
        self.transport = transport
        self.stream_id = stream_id
        self._request_id: str | None = None
        self.turn: Turn = "call"
        self.logs: list[LogItem] = []
        self.error: BaseException | None = None
        self.ctx: CallContext | None = None
        self._hook = hook
        self._info: DispatchInfo | None = None
        self._token: object = None

    @property
    def request_id(self) -> str:
        """The dispatch's 16-hex id: made when first needed (ctx, hook, log or error batch), so a
        call without any of them skips it."""
        request_id = self._request_id
        if request_id is None:
            request_id = self._request_id = new_request_id()
        return request_id

    # ------------------------------------------------------------------ entry points

    def unary(self, kwargs: Mapping[str, Any], sink: Any) -> BaseException | None:
        """Run a unary call and write its whole response stream to *sink*; return the error, if any."""
        spec = self.spec
        if spec.wants_ctx:
            self.ctx = self._context()
        self._start(kwargs)
        batch: pa.RecordBatch | None = None
        try:
            batch = spec.encode_result(self._invoke(kwargs))
        except Exception as exc:
            self._fail(exc)
        finally:
            # The hook ends before a byte of the answer is written: a client holding
            # the answer knows every hook has seen the call end (tests rely on it).
            self._end()
        writer = ResponseWriter(sink, spec.result_schema)
        self._write(writer, None if batch is None else (batch, None))
        writer.close()
        return self.error

    def inproc(self, kwargs: Mapping[str, Any]) -> Any:
        """Run a unary call in this thread and return its value; the implementation's exception propagates.

        No Arrow encoding and no error logging (the caller gets the exception);
        ``ctx.log()`` messages have no client to go to and are logged at DEBUG.
        """
        if self.spec.wants_ctx:
            self.ctx = self._context(_drop_log)
        self._start(kwargs)
        try:
            return self._invoke(kwargs)
        except Exception as exc:
            self.error = exc
            raise
        finally:
            self._end()

    def stream(
        self, kwargs: Mapping[str, Any], inputs: Iterable[TurnInput], sink: Any
    ) -> BaseException | None:
        """Run a whole stream call on one connection (the pipe): one hook pair around all of it.

        Writes the header stream (``Stream[S, H]`` methods) and then one output
        stream to *sink*, flushing after each part the client waits for. *inputs*
        yields one item per turn the client sends (``None``: it cancelled) and
        raises :class:`StreamInputError` if the client's input breaks. A failure
        while opening is answered with one error stream; the caller then still
        owns the unread input.
        """
        self.turn = "stream"
        self.stream_id = new_stream_id()
        self.ctx = self._context()
        self._start(kwargs)
        try:
            stream = self._open(kwargs)
            header = self._header(stream)
        except Exception as exc:
            self._fail(exc)
            self._end()  # as for a unary call: the hook ends before the error is written
            self._write_stream(sink, EMPTY_SCHEMA)
            sink.flush()
            return self.error
        try:
            self._turns(stream, header, inputs, sink)
        except BaseException as exc:  # the connection broke: the hook still learns the call failed
            self.error = exc
            raise
        finally:
            self._end()
        return self.error

    def init(
        self, kwargs: Mapping[str, Any], sink: Any, seal: Sealer, *, turn_bytes: int | None = None
    ) -> BaseException | None:
        """Open a stream for HTTP ``/init`` (and run a producer's first turn); write the answer to *sink*.

        The answer is the header stream (if the method declares one; it carries the
        logs sent while opening) and the output stream: logs, the first batch, and
        the token when the stream goes on. After a failure there is one error stream.
        *turn_bytes*: merge a producer's ``produce()`` calls into one batch up to
        that many bytes (see :meth:`_produce`); ``None``: one call per turn.
        """
        self.turn = "init"
        self.stream_id = new_stream_id()
        self.ctx = self._context()
        self._start(kwargs)
        stream: Stream[Any, Any] | None = None
        header: pa.RecordBatch | None = None
        data: tuple[pa.RecordBatch, dict[str, str] | None] | None = None
        token: str | None = None
        opening_logs = 0
        try:
            stream = self._open(kwargs)
            header = self._header(stream)
            opening_logs = len(self.logs)
            finished = False
            if stream.is_producer:
                data, finished = self._produce(stream, _TICK, turn_bytes)
            if not finished:
                token = seal(stream, self.stream_id)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._end()
        if header is not None and self.error is None:
            self._write_header(sink, header, opening_logs)
        self._write_stream(sink, EMPTY_SCHEMA if stream is None else stream.output_schema, data, token)
        return self.error

    def resume(
        self,
        stream: Stream[Any, Any],
        turn_input: TurnInput,
        sink: Any,
        seal: Sealer,
        *,
        turn_bytes: int | None = None,
    ) -> BaseException | None:
        """Run one later turn of an HTTP stream (``None``: a cancel) and write its answer to *sink*.

        A producer's token rides on a zero-row batch after the data; an exchange's
        in the data batch's own metadata. A cancel answers the output schema with
        only the logs ``on_cancel`` sent. *stream_id* is the one the token carried.
        *turn_bytes* as for :meth:`init` (producers only).
        """
        self.turn = "exchange"
        self.ctx = self._context()
        self._start(None)
        data: tuple[pa.RecordBatch, dict[str, str] | None] | None = None
        token: str | None = None
        try:
            if turn_input is None:
                stream.state.on_cancel(self.ctx)
            else:
                data, finished = self._produce(stream, turn_input, turn_bytes)
                if not finished:
                    token = seal(stream, self.stream_id or "")
        except Exception as exc:
            self._fail(exc)
        finally:
            self._end()
        self._write_stream(sink, stream.output_schema, data, token, token_on_data=not stream.is_producer)
        return self.error

    # ------------------------------------------------------------------ the lifecycle's steps

    def _context(self, sink: Callable[[str, str, Mapping[str, Any]], None] | None = None) -> CallContext:
        server = self.server
        return CallContext(
            auth=self.auth,
            server_id=server.server_id,
            method=self.spec.name,
            protocol_name=server.protocol_name,
            request_id=self.request_id,
            sink=self._log if sink is None else sink,
            stream_id=self.stream_id,
            transport_metadata=self.metadata,
        )

    def _log(self, level: str, message: str, extra: Mapping[str, Any]) -> None:
        self.logs.append((level, message, extra))

    def _start(self, kwargs: Mapping[str, Any] | None) -> None:
        hook = self._hook
        if hook is None:
            return
        spec = self.spec
        server = self.server
        info = _dispatch_info(
            spec.name,
            spec.method_type,
            server.protocol_name,
            server.server_id,
            self.request_id,
            self.stream_id,
            self.transport,
            self.turn,
        )
        self._info = info
        # Read-only views: the same objects feed the implementation and its ctx, and a
        # hook must never be able to change the call (one that tries raises, is logged
        # and skipped by _safe_start).
        ro_kwargs = None if kwargs is None else MappingProxyType(kwargs)
        self._token = _safe_start(hook, info, self.auth, MappingProxyType(self.metadata), ro_kwargs)

    def _end(self) -> None:
        if self._hook is not None and self._info is not None:
            _safe_end(self._hook, self._token, self._info, self.error)

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        _logger.warning(
            "%s.%s raised %s: %s",
            self.server.protocol_name,
            self.spec.name,
            type(exc).__name__,
            exc,
            exc_info=_logger.isEnabledFor(logging.DEBUG),
        )

    def _invoke(self, kwargs: Mapping[str, Any]) -> Any:
        spec = self.spec
        if spec.wants_ctx:
            return spec.func(**kwargs, ctx=self.ctx)
        return spec.func(**kwargs)

    def _open(self, kwargs: Mapping[str, Any]) -> Stream[Any, Any]:
        """Call a stream method and check what it returned (before any stream byte is written)."""
        spec = self.spec
        result = self._invoke(kwargs)
        if not isinstance(result, Stream):
            raise TypeError(f"{spec.name} must return a Stream, got {type(result).__name__}")
        if spec.header_type is not None and not isinstance(result.header, spec.header_type):
            raise TypeError(
                f"{spec.name} declares header type {spec.header_type.__name__} but returned "
                f"header={type(result.header).__name__ if result.header is not None else None}"
            )
        return result

    def _header(self, stream: Stream[Any, Any]) -> pa.RecordBatch | None:
        """The one-row header batch of a ``Stream[S, H]`` method; ``None`` when it declares no header."""
        return None if self.spec.header_type is None else dataclass_batch(stream.header)

    def _turn(
        self, stream: Stream[Any, Any], turn_input: AnnotatedBatch
    ) -> tuple[tuple[pa.RecordBatch, dict[str, str] | None] | None, bool]:
        """Run one turn: (its data batch and metadata or ``None``, whether the producer finished)."""
        if not stream.is_producer and not turn_input.batch.schema.equals(stream.input_schema):
            turn_input = AnnotatedBatch(
                cast_input(turn_input.batch, stream.input_schema), turn_input.custom_metadata
            )
        out = OutputCollector(stream.output_schema, producer=stream.is_producer, log=self._log)
        stream.state.process(turn_input, out, self.ctx)
        out.validate()
        return out.data, out.finished

    def _produce(
        self, stream: Stream[Any, Any], turn_input: AnnotatedBatch, turn_bytes: int | None
    ) -> tuple[tuple[pa.RecordBatch, dict[str, str] | None] | None, bool]:
        """One HTTP turn: one ``process()`` call, or for a producer with *turn_bytes* several, merged.

        The producer is called again while it has not finished and the batches
        so far hold fewer than *turn_bytes* bytes (``RecordBatch.nbytes``); their
        rows become one batch (the wire allows one data batch per response) whose
        custom metadata is the union of theirs, later keys winning. Their logs stay
        in the call's buffer in the order they were sent, all ahead of the data.
        """
        data, finished = self._turn(stream, turn_input)
        if turn_bytes is None or not stream.is_producer or finished or data is None:
            return data, finished
        batches = [data[0]]
        metadata = dict(data[1] or {})
        size = data[0].nbytes
        while size < turn_bytes and not finished:
            more, finished = self._turn(stream, turn_input)
            if more is None:  # finish() without a batch
                break
            batches.append(more[0])
            metadata.update(more[1] or {})
            size += more[0].nbytes
        if len(batches) == 1:
            return data, finished
        return (_concat(batches), metadata or None), finished

    def _turns(
        self, stream: Stream[Any, Any], header: pa.RecordBatch | None, inputs: Iterable[TurnInput], sink: Any
    ) -> None:
        """The pipe's turns: header stream, then one output stream answering each input until the end."""
        if header is not None:
            self._write_header(sink, header, len(self.logs))
            sink.flush()
        out = ResponseWriter(sink, stream.output_schema)
        try:
            self._write_logs(out, len(self.logs))  # what ctx.log() sent while the stream opened
            for turn_input in inputs:
                try:
                    if turn_input is None:
                        stream.state.on_cancel(self.ctx)
                        data, finished = None, True
                    else:
                        data, finished = self._turn(stream, turn_input)
                except Exception as exc:
                    # Only the turn itself is guarded here: whatever user code raises
                    # (ArrowInvalid and OSError included) is the call's error and must
                    # reach the client, never be mistaken for a broken connection.
                    self._fail(exc)
                    self._write(out)
                    return
                self._write(out, data)
                sink.flush()
                if finished:
                    return
        except StreamInputError as exc:
            self.error = exc.cause  # nothing to report on the wire: the input is gone
        finally:
            out.close()
            sink.flush()

    # ------------------------------------------------------------------ writing

    def _write_logs(self, writer: ResponseWriter, count: int) -> None:
        """Write (and forget) the first *count* buffered log messages."""
        server_id, request_id = self.server.server_id, self.request_id
        for level, message, extra in self.logs[:count]:
            writer.meta(log_metadata(level, message, extra, server_id=server_id, request_id=request_id))
        del self.logs[:count]

    def _write(
        self,
        writer: ResponseWriter,
        data: tuple[pa.RecordBatch, dict[str, str] | None] | None = None,
        token: str | None = None,
        *,
        token_on_data: bool = False,
    ) -> None:
        """The one order: every buffered log, then the data batch, then the error or the token."""
        if self.logs:
            self._write_logs(writer, len(self.logs))
        if self.error is not None:
            writer.meta(self.server.error_md(self.error, self.request_id))
            return
        if data is not None:
            batch, md = data
            if token is not None and token_on_data:
                md = {**(md or {}), STREAM_STATE_KEY: token}
            writer.write(batch, md)
        if token is not None and not token_on_data:
            writer.meta({STREAM_STATE_KEY: token})

    def _write_stream(
        self,
        sink: Any,
        schema: pa.Schema,
        data: tuple[pa.RecordBatch, dict[str, str] | None] | None = None,
        token: str | None = None,
        *,
        token_on_data: bool = False,
    ) -> None:
        writer = ResponseWriter(sink, schema)
        self._write(writer, data, token, token_on_data=token_on_data)
        writer.close()

    def _write_header(self, sink: Any, header: pa.RecordBatch, opening_logs: int) -> None:
        """The header's own IPC stream, ahead of the output stream: the opening's logs, then the row."""
        writer = ResponseWriter(sink, header.schema)
        self._write_logs(writer, opening_logs)
        writer.write(header)
        writer.close()


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch of *batches*' rows (same schema); ``pa.concat_batches`` where pyarrow has it (19+)."""
    concat = getattr(pa, "concat_batches", None)
    if concat is not None:
        return concat(batches)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _drop_log(level: str, message: str, extra: Mapping[str, Any]) -> None:
    _logger.debug("client log outside a transport: %s %s", level, message)
