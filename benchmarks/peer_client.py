"""The official vgi-rpc client timing two servers, alternately (runs in the peer venv, Python 3.13).

``.venv-peer/bin/python benchmarks/peer_client.py --ours URL --reference URL [...]``
calls ``ConformanceService.echo_int`` (unary) and iterates ``produce_n`` (a
producer stream, one HTTP request per batch plus the opening one) on both
servers, round by round, rotating which server goes first, and prints JSON::

    {"client": "vgi-rpc 0.52.2", "samples": {"unary": {"ours": [ns/call...], "reference": [...]},
                                             "producer": {...}},
     "server_cpu": {"unary": {"ours": [ns/call...], ...}, ...}}

``server_cpu`` (with ``--ours-pid``/``--reference-pid``, Linux only) is the CPU time
each server process spent per call during the same timed blocks, summed over all
its threads from ``/proc/<pid>/task/*/schedstat``: the server's own cost, without
the client's share that the calls/s figures include.

It imports only the official package (this file's folder has no ``vgi_rpc``),
and checks that it did.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cpu_ns(pid: int | None) -> int | None:
    """CPU time (ns) used so far by every thread of process *pid*, or None if unreadable."""
    if pid is None:
        return None
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that just ended
    except OSError:
        return None
    return total


def main(argv: list[str] | None = None) -> None:
    """Measure and print the JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--unary-ops", type=int, default=20)
    parser.add_argument("--producer-ops", type=int, default=4)
    parser.add_argument("--count", type=int, default=5, help="batches per producer stream")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ours-pid", type=int)
    parser.add_argument("--reference-pid", type=int)
    args = parser.parse_args(argv)
    pids = {"ours": args.ours_pid, "reference": args.reference_pid}

    # The official package (the peer venv's), not ours: mypy sees ours, hence the ignores.
    from vgi_rpc.conformance import ConformanceService  # type: ignore[import-not-found]

    import vgi_rpc
    from vgi_rpc import http_connect  # type: ignore[attr-defined]

    if "site-packages" not in (vgi_rpc.__file__ or ""):
        raise SystemExit(f"peer_client: expected the installed official vgi_rpc, got {vgi_rpc.__file__}")
    version = getattr(vgi_rpc, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("vgi-rpc")

    with (
        http_connect(ConformanceService, args.ours) as ours,
        http_connect(ConformanceService, args.reference) as reference,
    ):
        proxies: dict[str, Any] = {"ours": ours, "reference": reference}
        for proxy in proxies.values():  # both must really serve the same thing
            assert proxy.echo_int(value=7) == 7
            got = [b.batch.num_rows for b in proxy.produce_n(count=args.count)]
            assert len(got) == args.count, got

        def unary(proxy: Any) -> Callable[[], None]:
            def run() -> None:
                for _ in range(args.unary_ops):
                    proxy.echo_int(value=7)

            return run

        def producer(proxy: Any) -> Callable[[], None]:
            def run() -> None:
                for _ in range(args.producer_ops):
                    for _batch in proxy.produce_n(count=args.count):
                        pass

            return run

        kinds: dict[str, tuple[Callable[[Any], Callable[[], None]], int]] = {
            "unary": (unary, args.unary_ops),
            "producer": (producer, args.producer_ops),
        }
        samples: dict[str, dict[str, list[float]]] = {k: {n: [] for n in proxies} for k in kinds}
        server_cpu: dict[str, dict[str, list[float]]] = {k: {n: [] for n in proxies} for k in kinds}
        names = list(proxies)
        for r in range(args.warmup + args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for kind, (make, ops) in kinds.items():
                for name in order:
                    run = make(proxies[name])
                    cpu_before = cpu_ns(pids[name])
                    start = time.perf_counter_ns()
                    run()
                    elapsed = time.perf_counter_ns() - start
                    cpu_after = cpu_ns(pids[name])
                    if r >= args.warmup:
                        samples[kind][name].append(elapsed / ops)
                        if cpu_before is not None and cpu_after is not None:
                            server_cpu[kind][name].append((cpu_after - cpu_before) / ops)
    json.dump(
        {
            "client": f"vgi-rpc {version}",
            "python": sys.version.split()[0],
            "count": args.count,
            "ops": {"unary": args.unary_ops, "producer": args.producer_ops},
            "samples": samples,
            "server_cpu": server_cpu,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
