"""One HTTP turn, transport-independent of Falcon: bytes in, (status, bytes, is_error) out.

* unary ``{prefix}/{protocol}/{method}``: one request, one response stream;
* ``/init``: the request opens a stream (kwargs decoded, implementation called) and,
  for producers, the first turn runs at once (one data batch at most);
* ``/exchange``: the sealed token gives back the stream (state, schemas,
  ``stream_id``); the input batch (or the producer tick, or a cancel) runs one turn.

This module only frames: it decodes the request body, has the server's
:class:`~vgi_rpc.server.Admission` admit it (the URL was routed by the caller,
through the same admission), opens the incoming token and hands the request to
one :class:`~vgi_rpc.call.Call`, which runs the turn (one
dispatch-hook start/end pair, ``transport="http"``, that sees the original
exception) and writes the answer, sealing the next token through the function this
module gives it. Failures of the implementation are answered 200 with an
EXCEPTION batch; protocol failures raise :class:`~vgi_rpc.errors.ProtocolError`
for the caller to answer with an error stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from vgi_rpc.auth import AuthContext
from vgi_rpc.call import Sealer
from vgi_rpc.errors import ProtocolError
from vgi_rpc.http._state import StatePayloadError, pack_stream, unpack_stream
from vgi_rpc.http._tokens import TokenSealer
from vgi_rpc.methods import MethodSpec
from vgi_rpc.server import Admission, RpcServer
from vgi_rpc.streams import AnnotatedBatch, Stream
from vgi_rpc.wire import (
    CANCEL_KEY,
    PROTOCOL_KEYS,
    STREAM_STATE_KEY,
    metadata_dict,
    read_request,
)

__all__ = ["TurnResult", "Turns"]

ProducerTurnBytes = int | Mapping[str, int] | None
"""``make_wsgi_app``'s ``producer_turn_bytes``: one budget for every stream method, one per name, or none."""

TurnResult = tuple[bytes | pa.Buffer, bool]
"""(response body, whether it reports an application error); the body is the sink's own buffer, not copied."""


class Turns:
    """Runs unary calls and stream turns for one :class:`RpcServer`.

    Attributes:
        server: The server.
        sealer: Seals and opens the stream tokens.
        admission: The server's admission for requests whose URL names protocol and
            method: route with it before reading the body, then pass the spec here.
        turn_bytes: Per producer method name, the byte budget up to which one turn
            merges several ``produce()`` calls (methods not named: one call per turn).
    """

    __slots__ = ("admission", "sealer", "server", "turn_bytes")

    def __init__(
        self, server: RpcServer, sealer: TokenSealer, producer_turn_bytes: ProducerTurnBytes = None
    ) -> None:
        self.server = server
        self.sealer = sealer
        self.admission = Admission(server, by_url=True)
        self.turn_bytes = _turn_budgets(server, producer_turn_bytes)

    # ------------------------------------------------------------------ request decoding

    def _request(self, spec: MethodSpec, body: bytes | bytearray) -> dict[str, Any]:
        """Decode a unary or ``/init`` request body into kwargs (ProtocolError on any problem)."""
        try:
            request = read_request(body)
        except EOFError:
            raise ProtocolError("request body is empty: expected an Arrow IPC stream") from None
        return self.admission.request(spec, request)

    # ------------------------------------------------------------------ unary

    def unary(
        self, spec: MethodSpec, body: bytes | bytearray, auth: AuthContext, headers: Mapping[str, str]
    ) -> TurnResult:
        """Run one unary call."""
        kwargs = self._request(spec, body)
        sink = pa.BufferOutputStream()
        error = self.server.call(spec, auth=auth, metadata=headers, transport="http").unary(kwargs, sink)
        return sink.getvalue(), error is not None

    # ------------------------------------------------------------------ streams

    def init(
        self, spec: MethodSpec, body: bytes | bytearray, auth: AuthContext, headers: Mapping[str, str]
    ) -> TurnResult:
        """Open a stream; for producers, run the first turn."""
        kwargs = self._request(spec, body)
        sink = pa.BufferOutputStream()
        call = self.server.call(spec, auth=auth, metadata=headers, transport="http")
        error = call.init(kwargs, sink, self._sealer(spec, auth), turn_bytes=self.turn_bytes.get(spec.name))
        return sink.getvalue(), error is not None

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
        turn_input = None
        if CANCEL_KEY not in meta:
            turn_input = AnnotatedBatch(
                batch, {k: v for k, v in meta.items() if k not in PROTOCOL_KEYS} or None
            )
        sink = pa.BufferOutputStream()
        call = server.call(spec, auth=auth, metadata=headers, transport="http", stream_id=opened.stream_id)
        error = call.resume(
            stream, turn_input, sink, self._sealer(spec, auth), turn_bytes=self.turn_bytes.get(spec.name)
        )
        return sink.getvalue(), error is not None

    def _sealer(self, spec: MethodSpec, auth: AuthContext) -> Sealer:
        """The Call's way to carry this stream to its next turn: pack and seal it into a token."""
        sealer, protocol = self.sealer, self.server.protocol_name

        def seal(stream: Stream[Any, Any], stream_id: str) -> str:
            return sealer.seal(
                pack_stream(stream), protocol=protocol, method=spec.name, auth=auth, stream_id=stream_id
            )

        return seal


def _turn_budgets(server: RpcServer, option: ProducerTurnBytes) -> dict[str, int]:
    """``make_wsgi_app(producer_turn_bytes=...)`` as a budget per stream method name (ValueError if bad)."""
    if option is None:
        return {}
    streams = [spec.name for spec in server.methods.values() if spec.method_type == "stream"]
    if isinstance(option, int):
        named: Mapping[str, int] = dict.fromkeys(streams, option)
    else:
        named = option
        unknown = sorted(set(named) - set(streams))
        if unknown:
            raise ValueError(f"producer_turn_bytes names no stream method of this server: {unknown}")
    for name, n in named.items():
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"producer_turn_bytes for {name} must be a positive int, got {n!r}")
    return dict(named)


def _read_single_batch(body: bytes | bytearray) -> tuple[pa.RecordBatch, dict[str, str]]:
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(body))
        batch, raw = reader.read_next_batch_with_custom_metadata()
    except StopIteration:
        raise ProtocolError("/exchange request stream has no batch") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProtocolError.bad_ipc_stream("request", exc) from None
    try:
        for _ in reader:
            raise ProtocolError("/exchange request stream has more than one batch")
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProtocolError.bad_ipc_stream("request", exc) from None
    return batch, metadata_dict(raw)
