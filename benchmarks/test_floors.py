"""Our round trips against their floors: the least any Arrow-over-pipe or HTTP call can cost here.

* ``floor.pipe`` -- a ``serve_pipe`` unary call (``proxy.add(a=1, b=2)``) vs a
  thread echoing length-prefixed Arrow IPC streams over the same kind of OS pipes:
  the client encodes one 1-row batch, the echo thread decodes it and encodes a
  1-row answer, the client decodes that (pyarrow once each way, nothing else).
  What is left above 1.0x is vgi-rpc's own work: request metadata, method lookup,
  parameter decoding, the dispatch lifecycle, the response stream's framing, the
  typed proxy.  Target <= 1.30x.
* ``floor.http`` -- an ``http_connect`` unary call to ``start_http_server`` vs a
  bare Falcon app under waitress answering a fixed 300-byte body (our ``add``
  answer is 296 bytes) to a request body as long as ours, both driven by the same
  ``httpx.Client`` (keep-alive) from this thread.  Target <= 1.25x.

Both run pinned to one CPU (``one_cpu``: every thread of the round trip on the
same vCPU, see there why) and report process CPU time (``.cpu``, steady on a
shared machine; what the gate would read) and wall time.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pytest

from benchmarks._services import Bench, BenchImpl
from benchmarks.conftest import Profile
from vgi_rpc import RpcServer, serve_pipe
from vgi_rpc.client import encode_call
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark, one_cpu
from vgi_rpc.wire import request_bytes

_LEN = struct.Struct("<I")
_REQUEST_SCHEMA = pa.schema(
    [pa.field("a", pa.int64(), nullable=False), pa.field("b", pa.int64(), nullable=False)]
)
_RESULT_SCHEMA = pa.schema([pa.field("result", pa.int64(), nullable=False)])
_FLOOR_BODY = b"x" * 300


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions()) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _read_exact(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data  # type: ignore[no-any-return]


@contextmanager
def _pipe_floor() -> Iterator[Callable[[int, int], int]]:
    """An echo thread on OS pipes; yields ``add(a, b)`` doing one length-prefixed IPC round trip."""
    c2s_r, c2s_w = os.pipe()
    s2c_r, s2c_w = os.pipe()
    server_in, server_out = os.fdopen(c2s_r, "rb"), os.fdopen(s2c_w, "wb")
    client_in, client_out = os.fdopen(s2c_r, "rb"), os.fdopen(c2s_w, "wb")

    def echo() -> None:
        try:
            while True:
                (n,) = _LEN.unpack(_read_exact(server_in, _LEN.size))
                batch = pa.ipc.open_stream(pa.py_buffer(_read_exact(server_in, n))).read_next_batch()
                total = batch.column(0)[0].as_py() + batch.column(1)[0].as_py()
                answer = _ipc(
                    pa.RecordBatch.from_arrays([pa.array([total], pa.int64())], schema=_RESULT_SCHEMA)
                )
                server_out.write(_LEN.pack(len(answer)) + answer)
                server_out.flush()
        except (EOFError, OSError, ValueError):
            pass
        finally:
            server_out.close()
            server_in.close()

    thread = threading.Thread(target=echo, name="floor-pipe-echo", daemon=True)
    thread.start()

    def add(a: int, b: int) -> int:
        request = _ipc(
            pa.RecordBatch.from_arrays(
                [pa.array([a], pa.int64()), pa.array([b], pa.int64())], schema=_REQUEST_SCHEMA
            )
        )
        client_out.write(_LEN.pack(len(request)) + request)
        client_out.flush()
        (n,) = _LEN.unpack(_read_exact(client_in, _LEN.size))
        result: int = (
            pa.ipc.open_stream(pa.py_buffer(_read_exact(client_in, n))).read_next_batch().column(0)[0].as_py()
        )
        return result

    try:
        yield add
    finally:
        client_out.close()
        thread.join(timeout=10)
        client_in.close()


def _record_both(
    record_ratio: Callable[[Ratio], Ratio],
    sampler: Interleaved,
    key: str,
    what: str,
    note: str,
) -> None:
    for suffix, clock in ((".cpu", "process"), ("", "wall")):
        record_ratio(
            sampler.ratio(
                key + suffix,
                f"{what} ({clock} time)",
                "floor",
                "ours",
                clock=clock,
                note=note if suffix == ".cpu" else "",
            )
        )


@pytest.mark.gated
@pytest.mark.benchmark(group="round trip vs its floor")
def test_pipe_floor(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    server = RpcServer(Bench, BenchImpl())
    with one_cpu(), serve_pipe(server) as proxy, _pipe_floor() as floor_add:
        assert proxy.add(a=1, b=2) == 3 and floor_add(1, 2) == 3

        def ours(n: int) -> None:
            add = proxy.add
            for _ in range(n):
                add(a=1, b=2)

        def floor(n: int) -> None:
            for _ in range(n):
                floor_add(1, 2)

        sampler = Interleaved({"floor": floor, "ours": ours}, ops=10, clock="process")
        ratio_benchmark.run(sampler, rounds=profile.rounds(600), warmup=10)
    _record_both(
        record_ratio,
        sampler,
        "floor.pipe",
        "serve_pipe unary round trip vs length-prefixed Arrow IPC echo over OS pipes",
        "floor: one 1-row batch encoded and decoded by pyarrow once each way, nothing else",
    )


class _Fixed:
    """The floor's only resource: a fixed 300-byte body for any POST."""

    def on_post(self, req: Any, resp: Any) -> None:
        req.bounded_stream.read()
        resp.content_type = "application/vnd.apache.arrow.stream"
        resp.data = _FLOOR_BODY


@contextmanager
def _http_floor() -> Iterator[str]:
    """A bare Falcon app under waitress, built as ``start_http_server`` builds ours; yields its URL."""
    import falcon
    from waitress import wasyncore

    # the very waitress server start_http_server builds (its options, TCP_NODELAY), around the bare app
    from vgi_rpc.http._serve import DEFAULT_IDLE_TIMEOUT, _create

    app = falcon.App()
    app.add_route("/floor", _Fixed())
    w = _create(app, "127.0.0.1", 0, 8, None, DEFAULT_IDLE_TIMEOUT, None)  # type: ignore[arg-type]
    stop = threading.Event()
    socket_map = w._map if hasattr(w, "_map") else w.map

    def run() -> None:
        try:
            while not stop.is_set():
                wasyncore.loop(timeout=0.5, map=socket_map, use_poll=w.adj.asyncore_use_poll, count=1)
        finally:
            w.task_dispatcher.shutdown()
            wasyncore.close_all(socket_map)

    thread = threading.Thread(target=run, name="floor-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{w.effective_port}/floor"
    finally:
        stop.set()
        w.pull_trigger()
        thread.join(timeout=10)


@pytest.mark.gated
@pytest.mark.benchmark(group="round trip vs its floor")
def test_http_floor(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    import httpx

    from vgi_rpc.http import http_connect, start_http_server

    server = RpcServer(Bench, BenchImpl())
    with (
        one_cpu(),
        httpx.Client(timeout=60) as client,
        start_http_server(server, token_key=b"k" * 32) as handle,
        http_connect(Bench, handle.base_url, client=client, compression=None) as proxy,
        _http_floor() as floor_url,
    ):
        assert proxy.add(a=1, b=2) == 3
        # the floor's request body is as long as ours (an encoded ``add`` request)
        body = b"\0" * len(request_bytes("add", encode_call(server.lookup("add"), (), {"a": 1, "b": 2})))
        r = client.post(floor_url, content=body)
        assert r.status_code == 200 and r.content == _FLOOR_BODY

        def ours(n: int) -> None:
            add = proxy.add
            for _ in range(n):
                add(a=1, b=2)

        def floor(n: int) -> None:
            post = client.post
            for _ in range(n):
                post(floor_url, content=body).content  # noqa: B018

        sampler = Interleaved({"floor": floor, "ours": ours}, ops=5, clock="process")
        ratio_benchmark.run(sampler, rounds=profile.rounds(300), warmup=5)
    _record_both(
        record_ratio,
        sampler,
        "floor.http",
        "http_connect unary call vs a bare Falcon app under waitress, same httpx client",
        "floor: a fixed 300-byte body, no Arrow, no routing beyond one route",
    )
