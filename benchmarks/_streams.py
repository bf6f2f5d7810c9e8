"""Bulk producer streams, the sides test_streams.py times, each server in its own process.

One producer stream of ``batches`` batches of ``rows`` int64 rows (the values
0 .. rows-1, like an id column: zstd level 1 shrinks a 512 KiB turn to 13 % of its
size in about 2.4 ms), built once per process and emitted as is, so what is timed is
the transport, not the producer.

``python -m benchmarks._streams KIND`` (from the repository root) runs one server
and prints ``PORT:<n>`` once it listens (``pipe`` serves stdin/stdout instead):

* ``flight`` -- an Arrow Flight server (``pyarrow.flight``) on 127.0.0.1 whose
  DoGet ticket ``b"<rows>:<batches>"`` answers with that stream;
* ``http`` -- our ``serve_http`` (waitress) serving :class:`Streams`, default options;
* ``pipe`` -- our ``run_server`` serving :class:`Streams` (for ``connect``);
* ``http_merged`` -- the same with ``producer_turn_bytes=MERGED_TURN_BYTES`` (bigger turns);
* ``floor`` -- a bare Falcon app under waitress (built as ``serve_http`` builds
  ours) whose ``GET /floor/<n>`` answers ``n`` bytes: one turn's body, nothing else.

:func:`spawn` starts one of them from a test and stops it, every wait bounded.
"""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from vgi_rpc import CallContext, OutputCollector, ProducerState, Stream

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = pa.schema([pa.field("i", pa.int64(), nullable=False)])
TOKEN_KEY = b"bench-streams-token-key-0123456789"


@functools.lru_cache(maxsize=4)
def block(rows: int) -> pa.RecordBatch:
    """``rows`` int64 rows: 0, 1, ... rows-1 (as the official conformance's ``produce_large_batches``)."""
    return pa.RecordBatch.from_arrays([pa.array(range(rows), pa.int64())], schema=SCHEMA)


MERGED_TURN_BYTES = 4 << 20
"""The ``http_merged`` server's ``producer_turn_bytes``: a turn carries up to 4 MiB of rows."""


@functools.lru_cache(maxsize=4)
def turn_bytes(rows: int) -> int:
    """Bytes of one batch as an Arrow IPC stream (schema, batch, end): the size of one turn's body."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_batch(block(rows))
    return int(sink.getvalue().size)


# -- our service ----------------------------------------------------------------------------------


class Streams(Protocol):
    """One bulk producer."""

    def produce(self, rows: int, batches: int) -> Stream[ProducerState]:
        """Produce *batches* batches of *rows* int64 rows."""
        ...


@dataclass
class Blocks(ProducerState):
    """Emits the same ready batch of ``rows`` rows ``left`` more times."""

    rows: int
    left: int

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        """One batch per turn."""
        if self.left <= 0:
            out.finish()
            return
        out.emit(block(self.rows))
        self.left -= 1


class StreamsImpl:
    """Implementation of :class:`Streams`."""

    def produce(self, rows: int, batches: int) -> Stream[ProducerState]:
        return Stream(output_schema=SCHEMA, state=Blocks(rows, batches))


# -- the servers (each runs in its own process) ---------------------------------------------------


def _announce(port: int) -> None:
    print(f"PORT:{port}", flush=True)


def _serve_flight() -> None:
    import pyarrow.flight as flight

    class BlockServer(flight.FlightServerBase):  # type: ignore[misc]
        def do_get(self, context: Any, ticket: Any) -> Any:
            rows, batches = (int(x) for x in ticket.ticket.split(b":"))
            return flight.RecordBatchStream(pa.Table.from_batches([block(rows)] * batches))

    server = BlockServer("grpc://127.0.0.1:0")
    _announce(server.port)
    server.serve()


def _serve_http() -> None:
    from vgi_rpc import RpcServer
    from vgi_rpc.http import serve_http

    serve_http(RpcServer(Streams, StreamsImpl()), host="127.0.0.1", port=0, token_key=TOKEN_KEY)


def _serve_http_merged() -> None:
    from vgi_rpc import RpcServer
    from vgi_rpc.http import serve_http

    server = RpcServer(Streams, StreamsImpl())
    serve_http(server, host="127.0.0.1", port=0, token_key=TOKEN_KEY, producer_turn_bytes=MERGED_TURN_BYTES)


def _serve_floor() -> None:
    import falcon

    # the very waitress server serve_http builds (its options, TCP_NODELAY), around the bare app
    from vgi_rpc.http._serve import DEFAULT_IDLE_TIMEOUT, _create

    bodies: dict[int, bytes] = {}

    class Body:
        def on_get(self, req: Any, resp: Any, size: int) -> None:
            body = bodies.get(size)
            if body is None:
                body = bodies.setdefault(size, random.Random(size).randbytes(size))
            resp.content_type = "application/vnd.apache.arrow.stream"
            resp.data = body

    app = falcon.App()
    app.add_route("/floor/{size:int}", Body())
    w = _create(app, "127.0.0.1", 0, 8, None, DEFAULT_IDLE_TIMEOUT, None)  # type: ignore[arg-type]
    _announce(int(w.effective_port))
    w.run()


def _serve_pipe() -> None:
    from vgi_rpc import RpcServer
    from vgi_rpc.pipe import run_server

    run_server(RpcServer(Streams, StreamsImpl()))


SERVERS = {
    "flight": _serve_flight,
    "http": _serve_http,
    "http_merged": _serve_http_merged,
    "floor": _serve_floor,
    "pipe": _serve_pipe,
}


def command(kind: str) -> list[str]:
    """The command line that runs server *kind* (cwd: the repository root)."""
    return [sys.executable, "-m", "benchmarks._streams", kind]


def child_env() -> dict[str, str]:
    """This environment with the repository root on ``PYTHONPATH`` (so ``-m benchmarks._streams`` works)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def pin(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that starts a child process (all its future threads included) on *cpu*."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@contextmanager
def announced(
    cmd: list[str],
    name: str,
    *,
    env: dict[str, str] | None = None,
    cpu: int | None = None,
    timeout: float = 30.0,
) -> Iterator[tuple[int, int]]:
    """Run *cmd* (cwd: the repository root), a server that prints ``PORT:<n>`` once it listens.

    Yields (its port, its pid); terminates it (kill after 10 s) on exit. *cpu* pins the
    process, all its future threads included. RuntimeError naming *name* when no port is
    announced within *timeout* seconds or the process exits first.
    """
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=pin(cpu),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name} did not announce its port ({' '.join(cmd)})")
            line = proc.stdout.readline()
            if line.startswith("PORT:"):
                yield int(line.split(":", 1)[1]), proc.pid
                return
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def spawn(kind: str, *, timeout: float = 30.0) -> Iterator[tuple[int, int]]:
    """Start server *kind* in its own process; yield (its port, its pid); stop it on exit."""
    with announced(command(kind), f"the {kind} server", env=child_env(), timeout=timeout) as port_pid:
        yield port_pid


if __name__ == "__main__":
    SERVERS[sys.argv[1]]()
