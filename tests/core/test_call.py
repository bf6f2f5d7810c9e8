"""One lifecycle for every transport (``vgi_rpc.call.Call``): what used to differ between copies.

Each test runs the same calls over the pipe (``serve_pipe``), HTTP in-process
(``httpx.WSGITransport``) and HTTP through a real waitress server on 127.0.0.1,
and checks what the one Call now guarantees on all of them:

* log batches reach the client before the turn's data, whatever order the turn
  called ``out.emit`` / ``out.log`` / ``ctx.log`` in (the wire's rule: logs first),
  and messages from ``ctx.log`` and ``out.log`` keep their relative order;
* a stream id is 32 hex characters, one per stream call, shared by its turns;
* a failing ``on_cancel`` is the call's error: the hook's end sees the original
  exception (it used to be logged and dropped on the pipe);
* a stream method that declares no header type sends none, even if it returns one
  (HTTP used to send a header stream the client did not expect).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pytest
from support.http import TOKEN_KEY, http_proxy, wsgi_client

from vgi_rpc import (
    AnnotatedBatch,
    CallContext,
    ExchangeState,
    OutputCollector,
    ProducerState,
    RpcServer,
    Stream,
    serve_pipe,
)
from vgi_rpc.http import http_connect, make_wsgi_app
from vgi_rpc.testing import RecordingHook
from vgi_rpc.wire import LogMessage

HEX32 = re.compile(r"[0-9a-f]{32}")
N_SCHEMA = pa.schema([pa.field("n", pa.int64())])
X_SCHEMA = pa.schema([pa.field("x", pa.float64())])


@dataclass
class DataThenLogs(ProducerState):
    """Each turn emits its batch first and logs after it, through both log paths."""

    n: int

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.n <= 0:
            out.finish()
            return
        out.emit_pydict({"n": [self.n]})
        out.log("INFO", f"out.log after batch {self.n}")
        ctx.log("INFO", f"ctx.log after batch {self.n}")
        self.n -= 1


@dataclass
class CancelFails(ExchangeState):
    """An exchange whose cancel handler raises."""

    factor: float

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        out.emit_pydict({"x": [v * self.factor for v in input.batch.column("x").to_pylist()]})

    def on_cancel(self, ctx: CallContext) -> None:
        raise LookupError("cancel handler failed")


@dataclass
class Unasked:
    """A header nobody declared."""

    note: str


class Lifecycle(Protocol):
    def data_then_logs(self, n: int) -> Stream[DataThenLogs]: ...
    def cancel_fails(self, factor: float) -> Stream[CancelFails]: ...
    def stray_header(self, n: int) -> Stream[DataThenLogs]: ...


class LifecycleImpl:
    def data_then_logs(self, n: int) -> Stream[DataThenLogs]:
        return Stream(output_schema=N_SCHEMA, state=DataThenLogs(n))

    def cancel_fails(self, factor: float) -> Stream[CancelFails]:
        return Stream(output_schema=X_SCHEMA, state=CancelFails(factor), input_schema=X_SCHEMA)

    def stray_header(self, n: int) -> Stream[DataThenLogs]:
        return Stream(output_schema=N_SCHEMA, state=DataThenLogs(n), header=Unasked("nobody asked"))  # type: ignore[arg-type]


@contextmanager
def connected(transport: str, server: RpcServer, on_log: Any) -> Iterator[Any]:
    if transport == "pipe":
        with serve_pipe(server, on_log=on_log) as proxy:
            yield proxy
    elif transport == "http-inprocess":
        app = make_wsgi_app(server, token_key=TOKEN_KEY)
        with (
            wsgi_client(app) as client,
            http_connect(Lifecycle, "http://testserver", client=client, on_log=on_log) as proxy,
        ):
            yield proxy
    else:
        with http_proxy(server, {}, authenticate=None, client_options={"on_log": on_log}) as proxy:
            yield proxy


TRANSPORTS = ["pipe", "http-inprocess", "http-waitress"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_logs_reach_the_client_before_the_turns_data(transport: str) -> None:
    events: list[str] = []

    def on_log(message: LogMessage) -> None:
        events.append(message.message)

    ends = RecordingHook()
    with connected(transport, RpcServer(Lifecycle, LifecycleImpl(), hooks=[ends]), on_log) as proxy:
        for batch in proxy.data_then_logs(n=2):
            events.append(f"batch {batch.batch.column('n')[0].as_py()}")
    assert events == [
        "out.log after batch 2",
        "ctx.log after batch 2",
        "batch 2",
        "out.log after batch 1",
        "ctx.log after batch 1",
        "batch 1",
    ]
    stream_ids = {c.info.stream_id for c in ends.calls}
    assert len(stream_ids) == 1 and HEX32.fullmatch(str(stream_ids.pop()))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_failing_on_cancel_reaches_the_hook_as_the_calls_error(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    ends = RecordingHook()
    with connected(transport, RpcServer(Lifecycle, LifecycleImpl(), hooks=[ends]), None) as proxy:
        session = proxy.cancel_fails(factor=2.0)
        assert session.exchange(AnnotatedBatch.from_pydict({"x": [1.5]})).to_pydict() == {"x": [3.0]}
        session.cancel()
    errors = [c.error for c in ends.calls if c.error is not None]
    assert [(type(e), str(e)) for e in errors] == [(LookupError, "cancel handler failed")]
    assert any("cancel_fails raised LookupError" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_undeclared_header_is_not_sent(transport: str) -> None:
    with connected(transport, RpcServer(Lifecycle, LifecycleImpl()), None) as proxy:
        session = proxy.stray_header(n=2)
        assert getattr(session, "header", None) is None
        assert [b.batch.column("n")[0].as_py() for b in session] == [2, 1]
