"""Bulk producer streams against Arrow Flight DoGet, in one run: MB/s and time relative to Flight.

One producer stream of N batches of int64 rows (0 .. rows-1, see ``_streams``), three
shapes: 1k rows x 512 batches (4 MiB, per-turn cost dominates), 64k x 64 (512 KiB a
turn, 32 MiB) and 1M x 8 (8 MiB a turn, 64 MiB). Each round reads one whole stream
from every side, rotating which goes first; a ratio is the median of the per-round
``side time / Flight time`` (lower is better; 1.0x is Flight's speed):

* ``streams.<shape>.http`` -- our ``http_connect`` proxy (defaults) iterating the
  stream from our ``serve_http`` (waitress, defaults), one HTTP request a turn;
* ``streams.<shape>.http_merged`` -- the same, the server with
  ``producer_turn_bytes=4 MiB`` (several ``produce()`` calls a turn; opt-in);
* ``streams.<shape>.pipe`` -- our ``connect`` proxy iterating it from a worker process;
* ``streams.<shape>.floor`` -- the bare floor: stdlib ``http.client`` on one
  keep-alive connection making N GETs to a bare Falcon app under the same waitress
  setup, each answered with a body as long as one turn's Arrow IPC stream (no Arrow,
  no tokens): what this machine's waitress and Falcon allow, one request a turn;
* ``streams.<shape>.http_vs_floor`` -- our HTTP against that floor.

Every server runs in its own process; nothing is pinned (a lock-step client and
server pinned to different CPUs of a busy 2-core machine wait for each other's
time slices, which punishes the request-a-turn sides far more than Flight's push).
The sides' MB/s are in each ratio's note (payload bytes, 10^6 a MB). None is gated:
docs/benchmarks.md, "Bulk streams against Arrow Flight", has the tables and why.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from contextlib import ExitStack

import pytest

from benchmarks._streams import Streams, child_env, command, spawn, turn_bytes
from benchmarks.conftest import Profile
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark

# (label, rows per batch, batches, full-profile rounds): every shape moves 4 to 64 MiB a stream.
# Only 1M runs in `make bench-check`, for its one gated ratio, streams.1M.http_vs_floor
# (docs/benchmarks.md, "Bulk streams against Arrow Flight", Gating); gating another is adding
# ``marks=pytest.mark.gated`` to its param and its ratio to benchmarks/baseline.json.
SHAPES = [
    pytest.param("1k", 1024, 512, 5, id="1k"),
    pytest.param("64k", 65536, 64, 9, id="64k"),
    pytest.param("1M", 1 << 20, 8, 7, id="1M", marks=pytest.mark.gated),
]


def _sides(stack: ExitStack, rows: int, batches: int) -> dict[str, Callable[[int], None]]:
    """Start the five servers and return each side's ``run(n)``: read n streams."""
    import pyarrow.flight as flight

    from vgi_rpc import connect
    from vgi_rpc.http import http_connect

    flight_port, _ = stack.enter_context(spawn("flight"))
    http_port, _ = stack.enter_context(spawn("http"))
    merged_port, _ = stack.enter_context(spawn("http_merged"))
    floor_port, _ = stack.enter_context(spawn("floor"))
    pipe = stack.enter_context(connect(Streams, command("pipe"), env=child_env()))
    flight_client = stack.enter_context(flight.connect(f"grpc://127.0.0.1:{flight_port}"))
    proxy = stack.enter_context(http_connect(Streams, f"http://127.0.0.1:{http_port}"))
    merged = stack.enter_context(http_connect(Streams, f"http://127.0.0.1:{merged_port}"))
    floor = http.client.HTTPConnection("127.0.0.1", floor_port, timeout=60)
    stack.callback(floor.close)
    ticket, size, total = flight.Ticket(f"{rows}:{batches}".encode()), turn_bytes(rows), rows * batches

    def check(got: int, side: str) -> None:
        if got != total:
            raise AssertionError(f"{side}: read {got} rows, expected {total}")

    def via_flight(n: int) -> None:
        for _ in range(n):
            check(sum(chunk.data.num_rows for chunk in flight_client.do_get(ticket)), "flight")

    def via(p: object, side: str) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                check(sum(b.batch.num_rows for b in p.produce(rows=rows, batches=batches)), side)  # type: ignore[attr-defined]

        return run

    def via_floor(n: int) -> None:
        for _ in range(n):
            got = 0
            for _ in range(batches):
                floor.request("GET", f"/floor/{size}")
                got += len(floor.getresponse().read())
            check(got // size * rows, "floor")

    return {
        "flight": via_flight,
        "http": via(proxy, "http"),
        "http_merged": via(merged, "http_merged"),
        "pipe": via(pipe, "pipe"),
        "floor": via_floor,
    }


def _mbps(payload: int, ns: float) -> str:
    rate = payload / ns * 1e3
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2f}"


@pytest.mark.benchmark(group="bulk producer stream vs Arrow Flight DoGet")
@pytest.mark.parametrize(("shape", "rows", "batches", "rounds"), SHAPES)
def test_stream_vs_flight(
    ratio_benchmark: RatioBenchmark,
    profile: Profile,
    record_ratio: Callable[[Ratio], Ratio],
    shape: str,
    rows: int,
    batches: int,
    rounds: int,
) -> None:
    payload = rows * batches * 8
    with ExitStack() as stack:
        sides = _sides(stack, rows, batches)
        for run in sides.values():  # each side reads one whole stream correctly before timing starts
            run(1)
        sampler = Interleaved(sides, ops=1, clock="wall")
        ratio_benchmark.run(
            sampler, rounds=rounds if profile.name == "full" else max(3, rounds // 3), warmup=1
        )
    ns = {side: sorted(sampler.wall[side])[len(sampler.wall[side]) // 2] for side in sides}
    rates = ", ".join(f"{side} {_mbps(payload, ns[side])}" for side in sides)
    what = f"{rows:,} int64 rows x {batches} batches"
    for side, title in (
        ("http", "our http_connect + serve_http"),
        ("http_merged", "the same with producer_turn_bytes=4 MiB"),
        ("pipe", "our connect + run_server worker"),
        ("floor", "bare waitress+Falcon, stdlib http.client, same bytes a turn"),
    ):
        record_ratio(
            sampler.ratio(
                f"streams.{shape}.{side}",
                f"{title} vs Arrow Flight DoGet, {what} (wall time per stream)",
                "flight",
                side,
                note=f"MB/s: {rates}",
            )
        )
    record_ratio(
        sampler.ratio(
            f"streams.{shape}.http_vs_floor",
            f"our HTTP stream vs the bare waitress+http.client floor, {what} (wall time)",
            "floor",
            "http",
            note=f"MB/s: {rates}",
        )
    )
