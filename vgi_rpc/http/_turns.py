"""One HTTP turn, transport-independent of Falcon: bytes in, (status, bytes, is_error) out.

* unary ``{prefix}/{protocol}/{method}``: one request, one response stream;
* ``/init``: the request opens a stream (kwargs decoded, implementation called) and,
  for producers, the first turn runs at once (one data batch at most);
* ``/exchange``: the sealed token gives back the stream (state, schemas,
  ``stream_id``); the input batch (or the producer tick, or a cancel) runs one turn.

Every turn is one dispatch-hook start/end pair (``transport="http"``) that sees the
original exception. Failures of the implementation are answered 200 with an
EXCEPTION batch; protocol failures raise :class:`~vgi_rpc.errors.ProtocolError`
for the caller to answer with an error stream.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from vgi_rpc._types import dataclass_to_ipc
from vgi_rpc.auth import AuthContext
from vgi_rpc.errors import ProtocolError, clip
from vgi_rpc.http._state import StatePayloadError, pack_stream, unpack_stream
from vgi_rpc.http._tokens import TokenSealer
from vgi_rpc.methods import MethodSpec
from vgi_rpc.server import RpcServer
from vgi_rpc.streams import EMPTY_SCHEMA, AnnotatedBatch, OutputCollector, Stream, cast_input, empty_batch
from vgi_rpc.wire import (
    CANCEL_KEY,
    PROTOCOL_KEY,
    PROTOCOL_KEYS,
    STREAM_STATE_KEY,
    ResponseWriter,
    metadata_dict,
    new_request_id,
    read_request,
)

__all__ = ["TurnResult", "Turns"]

TurnResult = tuple[bytes, bool]
"""(response body, whether it reports an application error)."""

_TICK = AnnotatedBatch(empty_batch(EMPTY_SCHEMA), None)


class Turns:
    """Runs unary calls and stream turns for one :class:`RpcServer`."""

    __slots__ = ("sealer", "server")

    def __init__(self, server: RpcServer, sealer: TokenSealer) -> None:
        self.server = server
        self.sealer = sealer

    # ------------------------------------------------------------------ request decoding

    def _request(self, spec: MethodSpec, body: bytes | bytearray) -> dict[str, Any]:
        """Decode a unary or ``/init`` request body into kwargs (ProtocolError on any problem)."""
        try:
            request = read_request(body)
        except EOFError:
            raise ProtocolError("request body is empty: expected an Arrow IPC stream") from None
        if request.method != spec.name:
            raise ProtocolError(
                f"the URL names method {spec.name!r} but the request metadata names {clip(request.method)!r}"
            )
        wire_protocol = request.metadata.get(PROTOCOL_KEY)
        if wire_protocol and wire_protocol != self.server.protocol_name:
            raise ProtocolError(
                f"the request metadata names protocol {clip(wire_protocol)!r} but this URL serves "
                f"{self.server.protocol_name!r}"
            )
        self.server.check_version(request.metadata)
        return self.server.decode_kwargs(spec, request.batch)

    # ------------------------------------------------------------------ unary

    def unary(
        self, spec: MethodSpec, body: bytes | bytearray, auth: AuthContext, headers: Mapping[str, str]
    ) -> TurnResult:
        """Run one unary call."""
        kwargs = self._request(spec, body)
        sink = pa.BufferOutputStream()
        error = self.server.handle_unary(
            spec, kwargs, sink, auth=auth, transport_metadata=headers, transport="http"
        )
        return sink.getvalue().to_pybytes(), error is not None

    # ------------------------------------------------------------------ streams

    def init(
        self, spec: MethodSpec, body: bytes | bytearray, auth: AuthContext, headers: Mapping[str, str]
    ) -> TurnResult:
        """Open a stream; for producers, run the first turn."""
        kwargs = self._request(spec, body)
        server = self.server
        request_id = new_request_id()
        stream_id = secrets.token_hex(16)
        items: list[tuple[Any, ...]] = []
        ctx = server.make_context(
            spec,
            auth,
            request_id,
            lambda level, msg, extra: items.append(("log", level, msg, extra)),
            stream_id=stream_id,
            transport_metadata=headers,
        )
        handle = server.hook_start(
            spec,
            auth,
            headers,
            kwargs,
            request_id=request_id,
            transport="http",
            turn="init",
            stream_id=stream_id,
        )
        error: BaseException | None = None
        stream: Stream[Any] | None = None
        out: OutputCollector | None = None
        token: str | None = None
        header: pa.RecordBatch | None = None
        init_logs = 0
        try:
            stream = server.open_stream(spec, kwargs, ctx)
            header = _header_batch(stream)
            init_logs = len(items)
            out = OutputCollector(stream.output_schema, producer=stream.is_producer)
            out.items = items
            if stream.is_producer:
                stream.state.process(_TICK, out, ctx)
                out.validate()
            if not out.finished:
                token = self._seal(spec, stream, auth, stream_id)
        except Exception as exc:
            error = exc
            server.log_call_error(spec, exc)
        finally:
            server.hook_end(handle, error)
        schema = stream.output_schema if stream is not None else EMPTY_SCHEMA
        if header is None or error is not None:
            # Without a header, or after a failure (the client then reads the error
            # where it expects the header), there is a single stream.
            return self._respond(schema, items, request_id, error, token, on_data=False), error is not None
        # The header is its own IPC stream ahead of the output stream; logs sent while
        # the stream was being opened ride in it, the first turn's logs in the output.
        head = self._respond(
            header.schema, items[:init_logs], request_id, None, None, on_data=False, header=header
        )
        return head + self._respond(schema, items[init_logs:], request_id, None, token, on_data=False), False

    def exchange(
        self, spec: MethodSpec, body: bytes | bytearray, auth: AuthContext, headers: Mapping[str, str]
    ) -> TurnResult:
        """Run one continuation turn (producer tick, exchange input, or cancel)."""
        batch, meta = _read_single_batch(body)
        token_text = meta.get(STREAM_STATE_KEY)
        if not token_text:
            raise ProtocolError(f"/exchange request carries no {STREAM_STATE_KEY} token; POST /init first")
        server = self.server
        opened = self.sealer.open(token_text, protocol=server.protocol_name, method=spec.name, auth=auth)
        try:
            stream = unpack_stream(opened.payload)
        except StatePayloadError as exc:
            raise ProtocolError(f"stream token cannot be resumed by this server: {exc}") from None
        cancel = CANCEL_KEY in meta
        user_md = {k: v for k, v in meta.items() if k not in PROTOCOL_KEYS} or None
        request_id = new_request_id()
        items: list[tuple[Any, ...]] = []
        ctx = server.make_context(
            spec,
            auth,
            request_id,
            lambda level, msg, extra: items.append(("log", level, msg, extra)),
            stream_id=opened.stream_id,
            transport_metadata=headers,
        )
        handle = server.hook_start(
            spec,
            auth,
            headers,
            None,
            request_id=request_id,
            transport="http",
            turn="exchange",
            stream_id=opened.stream_id,
        )
        error: BaseException | None = None
        token: str | None = None
        try:
            if cancel:
                stream.state.on_cancel(ctx)
            else:
                if not stream.is_producer and not batch.schema.equals(stream.input_schema):
                    batch = cast_input(batch, stream.input_schema)
                out = OutputCollector(stream.output_schema, producer=stream.is_producer)
                out.items = items
                stream.state.process(AnnotatedBatch(batch, user_md), out, ctx)
                out.validate()
                if not out.finished:
                    token = self._seal(spec, stream, auth, opened.stream_id)
        except Exception as exc:
            error = exc
            server.log_call_error(spec, exc)
        finally:
            server.hook_end(handle, error)
        body_out = self._respond(
            stream.output_schema, items, request_id, error, token, on_data=not stream.is_producer
        )
        return body_out, error is not None

    def _seal(self, spec: MethodSpec, stream: Stream[Any], auth: AuthContext, stream_id: str) -> str:
        return self.sealer.seal(
            pack_stream(stream),
            protocol=self.server.protocol_name,
            method=spec.name,
            auth=auth,
            stream_id=stream_id,
        )

    def _respond(
        self,
        schema: pa.Schema,
        items: list[tuple[Any, ...]],
        request_id: str,
        error: BaseException | None,
        token: str | None,
        *,
        on_data: bool,
        header: pa.RecordBatch | None = None,
    ) -> bytes:
        """Encode one turn: logs and data in order, then the error or the token.

        Producers (``on_data=False``) carry the token on a separate zero-row batch after
        the data; exchanges put it in the data batch's own metadata.
        """
        server = self.server
        sink = pa.BufferOutputStream()
        writer = ResponseWriter(sink, schema)
        for item in items:
            if item[0] == "log":
                _, level, message, extra = item
                writer.meta(server.log_md(level, message, extra, request_id))
            elif error is None:
                _, batch, md = item
                if on_data and token is not None:
                    md = {**(md or {}), STREAM_STATE_KEY: token}
                writer.write(batch, md)
        if error is not None:
            writer.meta(server.error_md(error, request_id))
        elif token is not None and not on_data:
            writer.meta({STREAM_STATE_KEY: token})
        if header is not None:
            writer.write(header)
        writer.close()
        return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _header_batch(stream: Stream[Any]) -> pa.RecordBatch | None:
    """The one-row batch of the stream's ``header`` dataclass, or ``None`` when it has none.

    A ``Stream(..., header=H(...))`` (``Stream[S, H]`` methods) answers ``/init`` with
    the header's own IPC stream ahead of the output stream.
    """
    header = getattr(stream, "header", None)
    if header is None:
        return None
    if not dataclasses.is_dataclass(header) or isinstance(header, type):
        raise TypeError(f"stream header must be a dataclass instance, got {type(header).__name__}")
    batch: pa.RecordBatch = pa.ipc.open_stream(pa.py_buffer(dataclass_to_ipc(header))).read_next_batch()
    return batch


def _read_single_batch(body: bytes | bytearray) -> tuple[pa.RecordBatch, dict[str, str]]:
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(body))
        batch, raw = reader.read_next_batch_with_custom_metadata()
    except StopIteration:
        raise ProtocolError("/exchange request stream has no batch") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProtocolError(f"request is not a valid Arrow IPC stream: {exc}") from None
    try:
        for _ in reader:
            raise ProtocolError("/exchange request stream has more than one batch")
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProtocolError(f"request is not a valid Arrow IPC stream: {exc}") from None
    return batch, metadata_dict(raw)
