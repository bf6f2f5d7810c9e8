#!/usr/bin/env python3
"""Peer comparison: the official vgi-rpc client against our ``serve_http`` and the reference server.

    python scripts/bench_peer.py [--peer .venv-peer] [--rounds 30]      # make bench-peer

Starts, on 127.0.0.1 and free ports,

* ours: ``benchmarks/peer_server.py`` -- our ``ConformanceService`` under ``serve_http``;
* the reference: ``vgi-rpc-conformance --http`` from the peer venv (vgi-rpc 0.52.2);

then runs ``benchmarks/peer_client.py`` with the peer venv's Python: the official
client makes the same unary (``echo_int``) and producer (``produce_n``) calls on
both, alternating round by round.  Where CPU affinity can be set, the client runs
on one CPU and both servers (every thread) on another, so the two servers get
identical placement (left to the scheduler, placement alone moves a round trip
by up to 2x on the project's VM; see ``vgi_rpc.testing.bench.one_cpu``).  Reports ``our calls/s / reference calls/s``
(median of per-round ratios, IQR spread; higher is better; target >= 1.0x),
writes ``.benchmarks/peer.json`` and prints the table.  Both servers are
stopped at the end, whatever happens; every wait is bounded.

Then bulk producer streams (``--stream-rounds``, 0 skips them): the official
client reads one ``produce(rows, batches)`` stream a round, for the three shapes
of benchmarks/test_streams.py (1k x 512, 64k x 64, 1M x 8 int64 rows), from our
``serve_http`` (``python -m benchmarks._streams http``) and from the official
server serving the same protocol (``benchmarks/peer_streams.py server``), each in
its own process and left to the scheduler (no pinning, as in test_streams.py).
Reports MB/s for both, ``ours / reference`` (higher is better) and the
``Content-Encoding`` each server negotiated with the official client's
``Accept-Encoding`` (``identity`` when absent), into the same JSON and table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._streams import announced, pin  # noqa: E402
from vgi_rpc.testing.bench import Ratio, quartiles, render_table  # noqa: E402

OUT = ROOT / ".benchmarks" / "peer.json"


def cpus() -> tuple[int | None, int | None]:
    """(client CPU, server CPU): two different CPUs where affinity can be set, else (None, None)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    mine = sorted(os.sched_getaffinity(0))
    return (mine[0], mine[-1]) if len(mine) >= 2 else (None, None)


@contextmanager
def running(
    cmd: list[str],
    name: str,
    *,
    cpu: int | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[int, int]]:
    """``benchmarks._streams.announced``, exiting the script (not raising) when the server fails to start."""
    try:
        with announced(cmd, name, env=env, cpu=cpu, timeout=timeout) as port_pid:
            yield port_pid
    except RuntimeError as exc:
        raise SystemExit(f"bench-peer: {exc}") from None


def server_cpu_ratio(kind: str, samples: dict[str, list[float]], ops: int, what: str) -> Ratio | None:
    """Server CPU per call, ours / reference (lower is better), from per-round ns/call samples."""
    ours, ref = samples.get("ours") or [], samples.get("reference") or []
    pairs = [(o, r) for o, r in zip(ours, ref, strict=False) if o > 0 and r > 0]
    if not pairs:
        return None
    q1, med, q3 = quartiles([o / r for o, r in pairs])
    return Ratio(
        key=f"peer.server_cpu.{kind}",
        title=f"server CPU per call (all threads): our serve_http vs the reference server ({what})",
        baseline="reference",
        subject="ours",
        median=med,
        q1=q1,
        q3=q3,
        baseline_value=quartiles([r for _, r in pairs])[1],
        subject_value=quartiles([o for o, _ in pairs])[1],
        rounds=len(pairs),
        ops=ops,
        clock="server cpu",
        note="informational: the servers' own cost per call, without the client's share",
    )


def ratio_of(kind: str, samples: dict[str, list[float]], ops: int, what: str) -> Ratio:
    """Calls/s ratio ours / reference from per-round ns/call samples."""
    ours, ref = samples["ours"], samples["reference"]
    per_round = [r / o for o, r in zip(ours, ref, strict=True)]  # rate ratio = time ratio inverted
    q1, med, q3 = quartiles(per_round)
    ours_rates = sorted(1e9 / x for x in ours)
    ref_rates = sorted(1e9 / x for x in ref)
    return Ratio(
        key=f"peer.{kind}",
        title=f"official client calls/s: our serve_http vs the reference server ({what})",
        baseline="reference",
        subject="ours",
        median=med,
        q1=q1,
        q3=q3,
        baseline_value=ref_rates[len(ref_rates) // 2],
        subject_value=ours_rates[len(ours_rates) // 2],
        unit="calls/s",
        rounds=len(per_round),
        ops=ops,
        better="higher",
        clock="client wall",
        note=f"one call = a {what}; aim 1.5x" if kind == "producer" else "aim 1.5x",
    )


def stream_ratios(result: dict[str, Any]) -> list[Ratio]:
    """``peer.stream.<shape>``: the official client's MB/s from our server / from the reference server."""
    out = []
    for shape, data in result["shapes"].items():
        payload = data["rows"] * data["batches"] * 8
        ours, ref = data["samples"]["ours"], data["samples"]["reference"]
        q1, med, q3 = quartiles([r / o for o, r in zip(ours, ref, strict=True)])
        encodings = data["encodings"]
        out.append(
            Ratio(
                key=f"peer.stream.{shape}",
                title=(
                    f"official client MB/s reading {data['rows']:,} int64 rows x {data['batches']} batches: "
                    "our serve_http vs the reference server"
                ),
                baseline="reference",
                subject="ours",
                median=med,
                q1=q1,
                q3=q3,
                baseline_value=payload / quartiles(ref)[1] * 1e3,
                subject_value=payload / quartiles(ours)[1] * 1e3,
                unit="MB/s",
                rounds=len(ours),
                ops=1,
                better="higher",
                clock="client wall",
                note=(
                    f"Content-Encoding: ours {'/'.join(encodings['ours'])}, "
                    f"reference {'/'.join(encodings['reference'])}"
                ),
            )
        )
    return out


def run_streams(peer_python: Path, rounds: int) -> list[Ratio]:
    """Both servers of the bulk streams, the official client against them; their ratios (exit 2 on failure)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with ExitStack() as stack:
        ours, _ = stack.enter_context(
            running(
                [sys.executable, "-m", "benchmarks._streams", "http"], "our serve_http (streams)", env=env
            )
        )
        ref, _ = stack.enter_context(
            running(
                [str(peer_python), "benchmarks/peer_streams.py", "server"], "the reference server (streams)"
            )
        )
        cmd = [
            str(peer_python),
            "benchmarks/peer_streams.py",
            "client",
            f"--ours=http://127.0.0.1:{ours}",
            f"--reference=http://127.0.0.1:{ref}",
            f"--rounds={rounds}",
        ]
        print("$", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench-peer: the streams client failed ({proc.returncode}):\n{proc.stderr}")
    return stream_ratios(json.loads(proc.stdout))


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; exit 2 when the peer venv or a server is missing."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer", type=Path, default=ROOT / ".venv-peer")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--count", type=int, default=5, help="batches per producer stream")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--stream-rounds", type=int, default=6, help="rounds of the bulk streams (0 skips)")
    args = parser.parse_args(argv)

    peer_python = args.peer / "bin" / "python"
    reference_exe = args.peer / "bin" / "vgi-rpc-conformance"
    if not peer_python.exists() or not reference_exe.exists():
        print(f"bench-peer: no official vgi-rpc in {args.peer} (make .venv-peer/.installed)", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        client_cpu, server_cpu = cpus()
        ours, ours_pid = stack.enter_context(
            running([sys.executable, "benchmarks/peer_server.py"], "our serve_http", cpu=server_cpu)
        )
        ref, ref_pid = stack.enter_context(
            running([str(reference_exe), "--http"], "the reference server", cpu=server_cpu)
        )
        cmd = [
            str(peer_python),
            "benchmarks/peer_client.py",
            f"--ours=http://127.0.0.1:{ours}",
            f"--reference=http://127.0.0.1:{ref}",
            f"--rounds={args.rounds}",
            f"--count={args.count}",
            f"--ours-pid={ours_pid}",
            f"--reference-pid={ref_pid}",
        ]
        print("$", " ".join(cmd), flush=True)
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            preexec_fn=pin(client_cpu),
        )
    if proc.returncode != 0:
        print(f"bench-peer: the client failed ({proc.returncode}):\n{proc.stderr}", file=sys.stderr)
        return 2
    result = json.loads(proc.stdout)
    what = {"unary": "unary echo_int", "producer": f"produce_n stream of {result['count']} batches"}
    ratios = [ratio_of(kind, result["samples"][kind], result["ops"][kind], what[kind]) for kind in what]
    for kind in what:
        cpu = server_cpu_ratio(
            kind, result.get("server_cpu", {}).get(kind, {}), result["ops"][kind], what[kind]
        )
        if cpu is not None:
            ratios.append(cpu)
    if args.stream_rounds > 0:
        try:
            ratios += run_streams(peer_python, args.stream_rounds)
        except SystemExit as exc:
            print(exc, file=sys.stderr)
            return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    profile = f"peer ({result['client']}, Python {result['python']})"
    args.out.write_text(
        json.dumps({"profile": profile, "ratios": {r.key: vars(r) for r in ratios}}, indent=2)
    )
    print(f"\n== peer comparison: {result['client']} client, our serve_http vs the reference server ==")
    print(render_table(ratios))
    for r in ratios:
        if r.key.startswith("peer.stream."):
            print(f"{r.key}: {r.note}")
    print(f"(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
