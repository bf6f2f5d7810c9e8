"""Where one HTTP stream turn's CPU goes: ``python -m benchmarks.turn_cost [--rows 65536] [--turns 64]``.

Prints, per turn of a ``produce(rows, turns)`` stream (``benchmarks/_streams.py``):

* our HTTP (``http_connect`` and ``serve_http``, defaults): this process's CPU (the
  client) and the server process's CPU (all its threads, ``/proc/<pid>/task/*/schedstat``);
* the bare floor (waitress+Falcon answering the same number of bytes) read with
  stdlib ``http.client`` and with ``httpx``: the same two figures;
* zstd level 1 (the level both our server's ``compress_responses=True`` and our
  client's request coding use) compressing and decompressing one turn's body, in
  this process, and the ratio it reaches on this data.

Each figure is the median of ``--repeat`` streams. It is a diagnostic, not a gated
benchmark: docs/benchmarks.md ("Per-turn CPU") quotes its output.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from benchmarks._streams import SCHEMA, Streams, block, spawn, turn_bytes


def _server_cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _per_turn(run: Callable[[], None], pid: int, turns: int, repeat: int) -> tuple[float, float, float]:
    """(client CPU, server CPU, wall) per turn in ms, medians over *repeat* runs."""
    client, server, wall = [], [], []
    run()
    for _ in range(repeat):
        c0, s0, w0 = time.process_time_ns(), _server_cpu_ns(pid), time.perf_counter_ns()
        run()
        client.append((time.process_time_ns() - c0) / turns / 1e6)
        server.append((_server_cpu_ns(pid) - s0) / turns / 1e6)
        wall.append((time.perf_counter_ns() - w0) / turns / 1e6)
    return statistics.median(client), statistics.median(server), statistics.median(wall)


def _zstd(rows: int, repeat: int) -> tuple[float, float, float]:
    """(compress ms, decompress ms, compressed/original) for one turn's IPC body at zstd level 1."""
    import zstandard

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_batch(block(rows))
    body = sink.getvalue().to_pybytes()
    packed = zstandard.ZstdCompressor(level=1).compress(body)
    comp, decomp = [], []
    for _ in range(repeat * 4):
        t = time.process_time_ns()
        zstandard.ZstdCompressor(level=1).compress(body)
        comp.append((time.process_time_ns() - t) / 1e6)
        t = time.process_time_ns()
        zstandard.ZstdDecompressor().decompress(packed)
        decomp.append((time.process_time_ns() - t) / 1e6)
    return statistics.median(comp), statistics.median(decomp), len(packed) / len(body)


def main(argv: list[str] | None = None) -> None:
    """Measure and print the per-turn table."""
    import httpx

    from vgi_rpc.http import http_connect

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--turns", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    rows, turns, size = args.rows, args.turns, turn_bytes(args.rows)
    results: dict[str, tuple[float, float, float]] = {}
    with spawn("http") as (http_port, http_pid), spawn("floor") as (floor_port, floor_pid):
        with http_connect(Streams, f"http://127.0.0.1:{http_port}") as proxy:

            def ours() -> None:
                for _ in proxy.produce(rows=rows, batches=turns):
                    pass

            results["our HTTP (http_connect + serve_http)"] = _per_turn(ours, http_pid, turns, args.repeat)
        conn = http.client.HTTPConnection("127.0.0.1", floor_port, timeout=60)

        def stdlib() -> None:
            for _ in range(turns):
                conn.request("GET", f"/floor/{size}")
                conn.getresponse().read()

        results["floor, stdlib http.client"] = _per_turn(stdlib, floor_pid, turns, args.repeat)
        conn.close()
        with httpx.Client(timeout=60) as client:
            url = f"http://127.0.0.1:{floor_port}/floor/{size}"

            def via_httpx() -> None:
                for _ in range(turns):
                    client.get(url).content  # noqa: B018

            results["floor, httpx"] = _per_turn(via_httpx, floor_pid, turns, args.repeat)
    print(f"per turn of {rows:,} int64 rows ({size:,} bytes of Arrow IPC), median of {args.repeat} streams")
    print(f"{'side':40} {'client CPU':>11} {'server CPU':>11} {'sum':>8} {'wall':>8}")
    for name, (client, server, wall) in results.items():
        print(f"{name:40} {client:9.2f}ms {server:9.2f}ms {client + server:6.2f}ms {wall:6.2f}ms")
    comp, decomp, ratio = _zstd(rows, args.repeat)
    print(
        f"zstd level 1 on one turn's body: compress {comp:.2f} ms, decompress {decomp:.2f} ms, size x{ratio:.3f}"
    )


if __name__ == "__main__":
    main()
