"""The official vgi-rpc client reading bulk producer streams (runs in the peer venv, Python 3.13).

``.venv-peer/bin/python benchmarks/peer_streams.py server`` serves the same
``Streams`` protocol as ``benchmarks/_streams.py`` with the official package's
``make_wsgi_app`` under waitress (as ``vgi-rpc-conformance --http`` does) and prints
``PORT:<n>``.

``.venv-peer/bin/python benchmarks/peer_streams.py client --ours URL --reference URL``
reads one ``produce(rows, batches)`` stream a round from each server with the
official ``http_connect`` (its defaults), alternating which goes first, for the
three shapes of test_streams.py, and prints JSON::

    {"client": "vgi-rpc 0.52.2", "shapes": {"64k": {"rows": 65536, "batches": 64,
      "samples": {"ours": [ns/stream...], "reference": [...]},
      "encodings": {"ours": ["identity"], "reference": ["zstd"]}}, ...}}

``encodings`` are the ``Content-Encoding`` values of the stream responses each
server sent this client (``identity`` when the header was absent): what the
official client's ``Accept-Encoding`` negotiated.

It imports only the official package (this file's folder has no ``vgi_rpc``), and
checks that it did; the data is built as ``_streams.block`` builds it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

# The official package (the peer venv's), not ours: mypy sees ours, hence the ignores.
from vgi_rpc.rpc import CallContext, OutputCollector, ProducerState, Stream  # type: ignore[import-not-found]

SCHEMA = pa.schema([pa.field("i", pa.int64(), nullable=False)])
TOKEN_KEY = b"bench-peer-streams-token-key-0123"
SHAPES = {"1k": (1024, 512), "64k": (65536, 64), "1M": (1 << 20, 8)}
_BLOCKS: dict[int, pa.RecordBatch] = {}


def block(rows: int) -> pa.RecordBatch:
    """``rows`` int64 rows: 0, 1, ... rows-1 (the same bytes as ``_streams.block``)."""
    if rows not in _BLOCKS:
        _BLOCKS[rows] = pa.RecordBatch.from_arrays([pa.array(range(rows), pa.int64())], schema=SCHEMA)
    return _BLOCKS[rows]


class Streams(Protocol):
    """One bulk producer (the same name and signature as ours)."""

    def produce(self, rows: int, batches: int) -> Stream[ProducerState]:
        """Produce *batches* batches of *rows* int64 rows."""
        ...


@dataclass
class Blocks(ProducerState):  # type: ignore[misc]
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
    """The official server's implementation of :class:`Streams`."""

    def produce(self, rows: int, batches: int) -> Stream[Blocks]:  # the official server needs the state type
        return Stream(output_schema=SCHEMA, state=Blocks(rows, batches))


def serve() -> None:
    """The official server on 127.0.0.1, a free port, until killed."""
    import waitress  # type: ignore[import-untyped]
    from vgi_rpc.rpc import RpcServer

    from vgi_rpc.http import make_wsgi_app  # type: ignore[attr-defined]

    w = waitress.create_server(
        make_wsgi_app(RpcServer(Streams, StreamsImpl()), token_key=TOKEN_KEY), host="127.0.0.1", port=0
    )
    print(f"PORT:{w.effective_port}", flush=True)
    w.run()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time both servers, shape by shape; collect the response encodings."""
    import httpx2  # type: ignore[import-not-found]

    from vgi_rpc.http import http_connect  # type: ignore[attr-defined]

    urls = {"ours": args.ours, "reference": args.reference}
    encodings: dict[str, set[str]] = {name: set() for name in urls}
    out: dict[str, Any] = {}
    clients = {}
    for name, url in urls.items():

        def seen(response: Any, name: str = name) -> None:
            if response.request.url.path.endswith("/produce") or "/produce/" in response.request.url.path:
                encodings[name].add(response.headers.get("content-encoding", "identity"))

        clients[name] = httpx2.Client(base_url=url, follow_redirects=True, event_hooks={"response": [seen]})
    try:
        proxies = {name: stack_enter(http_connect(Streams, client=clients[name])) for name in urls}
        for shape, (rows, batches) in SHAPES.items():
            if args.shapes and shape not in args.shapes:
                continue
            samples: dict[str, list[float]] = {name: [] for name in urls}
            for name in urls:
                encodings[name].clear()
            rounds = max(1, args.rounds if shape != "1k" else args.rounds // 2)
            for r in range(args.warmup + rounds):
                for name in list(urls) if r % 2 == 0 else list(urls)[::-1]:
                    start = time.perf_counter_ns()
                    got = sum(b.batch.num_rows for b in proxies[name].produce(rows=rows, batches=batches))
                    elapsed = time.perf_counter_ns() - start
                    if got != rows * batches:
                        raise SystemExit(f"peer_streams: {name} sent {got} rows, expected {rows * batches}")
                    if r >= args.warmup:
                        samples[name].append(elapsed)
            out[shape] = {
                "rows": rows,
                "batches": batches,
                "samples": samples,
                "encodings": {name: sorted(e) for name, e in encodings.items()},
            }
    finally:
        for ctx in reversed(_ENTERED):
            ctx.__exit__(None, None, None)
        for client in clients.values():
            client.close()
    return out


_ENTERED: list[Any] = []


def stack_enter(ctx: Any) -> Any:
    """Enter *ctx*; :func:`measure` exits it at the end."""
    value = ctx.__enter__()
    _ENTERED.append(ctx)
    return value


def main(argv: list[str] | None = None) -> None:
    """``server`` or ``client`` (see the module docstring)."""
    import vgi_rpc

    if "site-packages" not in (vgi_rpc.__file__ or ""):
        raise SystemExit(f"peer_streams: expected the installed official vgi_rpc, got {vgi_rpc.__file__}")
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("server", "client"))
    parser.add_argument("--ours")
    parser.add_argument("--reference")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--shapes", nargs="*", default=[])
    args = parser.parse_args(argv)
    if args.mode == "server":
        serve()
        return
    from importlib.metadata import version

    shapes = measure(args)
    json.dump(
        {"client": f"vgi-rpc {version('vgi-rpc')}", "python": sys.version.split()[0], "shapes": shapes},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
