#!/usr/bin/env python3
"""``make deploy-check``: our app under gunicorn (gthread workers) behind nginx, on loopback.

Starts ``deploy/app.py`` with ``deploy/gunicorn.conf.py`` and an nginx built from
``deploy/nginx.conf`` (its own prefix, pid file, logs and temp dirs in a scratch
directory; a free 127.0.0.1 port), all workers sharing one ``token_key``, then:

1. **throughput**: 400 unary calls (2 client processes x 4 threads) through nginx
   with 1 worker, then with 2 workers; prints calls/s for each;
2. **spread**: 200 unary calls, 50 producer and 50 exchange streams at once (8
   threads); every result is checked, and each answer names the worker pid that
   produced it (a ``pid=<n>`` log line, a ``pid`` column): both workers must serve
   unary calls, and turns of the same stream must land on different workers;
3. **Sentry**: every worker wrote its envelopes (vgi_rpc's in-memory transport, one
   file per worker), read back through ``vgi_rpc.testing.SentryCapture.from_envelopes``
   (transactions on sentry-sdk 2.x, streamed segments on 3.x: the same views); for
   each stream whose turns spanned both workers, its transactions in both files
   carry the one ``rpc.stream_id`` its ``/init`` got, as many per worker as the
   client saw turns there. A transaction is sent after its response (on 3.x from
   the SDK's span batcher thread), so the files are re-read until those counts
   are there, for at most ``SENTRY_WAIT_S``;
4. **a worker dies**: 10 exchange streams are open, 8 slow calls are in flight; one
   worker holding calls is SIGKILLed. Its in-flight calls must fail cleanly
   (``RpcError``, HTTP 502 from nginx), every other call succeeds; then 50 unary
   calls and two more turns of each open stream succeed, none on the dead pid.

Bounded: about 1,900 requests, a 300 s alarm, loopback only. Exit status 0 when
every check holds. ``--json FILE`` writes the measurements.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vgi_rpc import AnnotatedBatch, RpcError  # noqa: E402
from vgi_rpc.http import http_connect  # noqa: E402
from vgi_rpc.testing import SentryCapture  # noqa: E402

TOKEN_KEY = secrets.token_hex(32)
X_SCHEMA = pa.schema([pa.field("x", pa.float64(), False)])
BUDGET_S = 300
SENTRY_WAIT_S = 20.0
"""At most this long for the workers' last transactions to reach their files (see :func:`await_sentry`)."""


class CheckFailed(AssertionError):
    """One of the checks did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(
                f"{proc.args[0]} exited ({proc.returncode}):\n{log.read_text(errors='replace')}"
            )
        try:
            if httpx.options(url, timeout=2).status_code < 300:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise CheckFailed(f"{url} did not answer within {timeout} s:\n{log.read_text(errors='replace')}")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the processes


@contextmanager
def gunicorn(run: Path, port: int, workers: int, label: str) -> Iterator[subprocess.Popen[bytes]]:
    """``gunicorn -c deploy/gunicorn.conf.py deploy.app:app`` with *workers* workers, ready."""
    sentry_dir = run / f"sentry-{label}"
    sentry_dir.mkdir()
    log = run / f"gunicorn-{label}.log"
    env = {
        **os.environ,
        "VGI_BIND": f"127.0.0.1:{port}",
        "VGI_WORKERS": str(workers),
        "VGI_TOKEN_KEY": TOKEN_KEY,
        "VGI_SENTRY_DIR": str(sentry_dir),
        "PYTHONPATH": str(ROOT),
    }
    exe = Path(sys.executable).with_name("gunicorn")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "-c", str(DEPLOY / "gunicorn.conf.py"), "deploy.app:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc.sentry_dir = sentry_dir  # type: ignore[attr-defined]
    proc.log = log  # type: ignore[attr-defined]
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log)
        deadline = time.monotonic() + 60
        while len(children(proc.pid)) < workers or len(list(sentry_dir.glob("sentry-*.jsonl"))) < workers:
            check(time.monotonic() < deadline, f"gunicorn did not start {workers} workers")
            time.sleep(0.1)
        yield proc
    finally:
        stop(proc)


@contextmanager
def nginx(binary: str, run: Path, port: int, upstream_port: int) -> Iterator[subprocess.Popen[bytes]]:
    """nginx from ``deploy/nginx.conf`` with its own prefix in *run*."""
    prefix = run / "nginx"
    prefix.mkdir()
    conf = (DEPLOY / "nginx.conf").read_text()
    conf = conf.replace("@RUN@", str(prefix))
    conf = conf.replace("@UPSTREAM@", f"127.0.0.1:{upstream_port}")
    conf = conf.replace("@LISTEN@", f"127.0.0.1:{port}")
    (prefix / "nginx.conf").write_text(conf)
    log = prefix / "error.log"
    log.touch()
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            check(
                proc.poll() is None, f"nginx exited ({proc.returncode}):\n{log.read_text(errors='replace')}"
            )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                check(time.monotonic() < deadline, "nginx did not listen")
                time.sleep(0.05)
        yield proc
    finally:
        stop(proc)


# --------------------------------------------------------------------------- clients


class Client:
    """One proxy per thread, each remembering the ``pid=`` of the last log it received."""

    def __init__(self, url: str, protocol: type) -> None:
        self.url = url
        self.protocol = protocol
        self.local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def proxy(self) -> Any:
        proxy = getattr(self.local, "proxy", None)
        if proxy is None:
            self.local.pids = []
            cm = http_connect(self.protocol, self.url, on_log=self._on_log, timeout=30)
            proxy = cm.__enter__()
            with self._lock:
                self._opened.append(cm)
            self.local.proxy = proxy
        return proxy

    def _on_log(self, msg: Any) -> None:
        if msg.message.startswith("pid="):
            self.local.pids.append(int(msg.message[4:]))

    def last_pid(self) -> int:
        pids: list[int] = self.local.pids
        check(bool(pids), "a unary answer carried no pid= log line")
        return pids.pop()

    def close(self) -> None:
        for cm in self._opened:
            cm.__exit__(None, None, None)


def _load(url: str, threads: int, calls: int, start: Any, results: Any) -> None:
    """Child process: *threads* threads each making *calls* unary calls once *start* is set."""
    from deploy.service import Fleet

    client = Client(url, Fleet)

    def run(_: int) -> tuple[float, float]:
        proxy = client.proxy()
        for i in range(5):
            proxy.add(a=i, b=1)
        start.wait(timeout=120)
        began = time.perf_counter()
        for i in range(calls):
            if proxy.add(a=i, b=i) != 2 * i:
                raise CheckFailed("wrong sum under load")
        return began, time.perf_counter()

    with ThreadPoolExecutor(threads) as pool:
        spans = list(pool.map(run, range(threads)))
    client.close()
    results.put(spans)


def throughput(url: str, procs: int = 2, threads: int = 4, calls: int = 50) -> float:
    """Unary calls/s through nginx: procs x threads x calls, timed from first start to last end."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(procs * threads + 1), ctx.Queue()  # every thread connected and warm
    workers = [ctx.Process(target=_load, args=(url, threads, calls, start, results)) for _ in range(procs)]
    for w in workers:
        w.start()
    start.wait(timeout=120)
    spans = [span for _ in workers for span in results.get(timeout=120)]
    for w in workers:
        w.join(30)
        check(w.exitcode == 0, "a load process failed")
    total = procs * threads * calls
    return total / (max(e for _, e in spans) - min(b for b, _ in spans))


# --------------------------------------------------------------------------- checks


def spread(url: str) -> dict[str, Any]:
    """200 unary calls, 50 producer and 50 exchange streams, 8 at a time; all results checked."""
    from deploy.service import Fleet

    client = Client(url, Fleet)

    def unary(i: int) -> tuple[str, list[int]]:
        check(client.proxy().add(a=i, b=2 * i) == 3 * i, f"add({i}, {2 * i}) is wrong")
        return f"u{i}", [client.last_pid()]

    def producer(k: int) -> tuple[str, list[int]]:
        n = 4 + k % 3
        rows, pids = [], []
        for batch in client.proxy().count(n=n, tag=f"p{k}"):
            rows += batch.batch.column("i").to_pylist()
            pids += batch.batch.column("pid").to_pylist()
        check(rows == list(range(n)), f"producer p{k} gave {rows}")
        return f"p{k}", pids

    def exchange(k: int) -> tuple[str, list[int]]:
        factor = float(k + 1)
        session = client.proxy().scale(factor=factor, tag=f"e{k}")
        pids = []
        for j in range(4):
            x = float(j + 10 * k)
            out = session.exchange(AnnotatedBatch(pa.RecordBatch.from_pydict({"x": [x]}, schema=X_SCHEMA)))
            check(out.batch.column("y").to_pylist() == [x * factor], f"exchange e{k} turn {j} is wrong")
            pids += out.batch.column("pid").to_pylist()
        session.close()
        return f"e{k}", pids

    jobs = (
        [(unary, i) for i in range(200)]
        + [(producer, k) for k in range(50)]
        + [(exchange, k) for k in range(50)]
    )
    jobs.sort(key=lambda job: (job[1] * 7919) % 300)  # interleave the kinds
    with ThreadPoolExecutor(8) as pool:
        answers = dict(pool.map(lambda job: job[0](job[1]), jobs))
    client.close()
    return answers


def worker_captures(sentry_dir: Path) -> dict[int, SentryCapture]:
    """What each worker has written so far (``sentry-<pid>.jsonl``), read through the kit's views."""
    captures: dict[int, SentryCapture] = {}
    for path in sorted(sentry_dir.glob("sentry-*.jsonl")):
        # the workers are still running: a line without its newline is still being written
        lines = path.read_text().split("\n")[:-1]
        captures[int(path.stem.split("-")[1])] = SentryCapture.from_envelopes(
            json.loads(line) for line in lines
        )
    return captures


def sentry_by_stream(sentry_dir: Path) -> tuple[dict[str, str], dict[str, Counter[int]]]:
    """(tag -> stream_id from the /init transactions, stream_id -> transactions per worker pid).

    A transaction is a ``transaction`` item on sentry-sdk 2.x and a streamed segment
    (``SentryCapture.transactions`` views it the same way) on 3.x.
    """
    tags: dict[str, str] = {}
    per_stream: dict[str, Counter[int]] = defaultdict(Counter)
    for pid, capture in worker_captures(sentry_dir).items():
        for txn in capture.transactions:
            data = ((txn.get("contexts") or {}).get("trace") or {}).get("data") or {}
            stream_id = data.get("rpc.stream_id")
            if stream_id is None:
                continue
            per_stream[stream_id][pid] += 1
            if "rpc.param.tag" in data:
                tags[data["rpc.param.tag"]] = stream_id
    return tags, per_stream


def await_sentry(
    sentry_dir: Path, expected: dict[str, int], timeout: float = SENTRY_WAIT_S
) -> tuple[dict[str, str], dict[str, Counter[int]], dict[str, Any]]:
    """:func:`sentry_by_stream` once every stream in *expected* (tag -> transactions) has them all.

    A call's transaction is finished after its response has left: the client can
    have every answer before the worker sent the last transactions, and on
    sentry-sdk 3 a segment goes through the SDK's span batcher thread first (a
    segment is flushed at once, other spans every 5 s). So the files are re-read
    until the expected counts are there, for at most *timeout* seconds; what is
    missing then is reported by the checks. Also returns how long that took and how
    many reads.
    """
    began = time.monotonic()
    reads = 0
    while True:
        tags, per_stream = sentry_by_stream(sentry_dir)
        reads += 1
        short = [
            name
            for name, n in expected.items()
            if name not in tags or sum(per_stream[tags[name]].values()) < n
        ]
        waited = time.monotonic() - began
        if not short or waited >= timeout:
            return tags, per_stream, {"sentry_wait_s": round(waited, 2), "sentry_reads": reads}
        time.sleep(0.25)


def check_spread(answers: dict[str, Any], sentry_dir: Path, worker_pids: set[int]) -> dict[str, Any]:
    unary_pids = Counter(pids[0] for name, pids in answers.items() if name.startswith("u"))
    check(
        set(unary_pids) == worker_pids, f"unary calls landed on {dict(unary_pids)}, workers are {worker_pids}"
    )
    streams = {name: pids for name, pids in answers.items() if not name.startswith("u")}
    mixed = {name: pids for name, pids in streams.items() if len(set(pids)) > 1}
    mixed_p = [n for n in mixed if n.startswith("p")]
    mixed_e = [n for n in mixed if n.startswith("e")]
    check(
        bool(mixed_p) and bool(mixed_e),
        f"no stream's turns crossed workers ({len(mixed_p)} producers, {len(mixed_e)} exchanges)",
    )
    # the client saw one answer per turn; a producer's /init runs its first turn and its
    # last turn only finishes (no row); an exchange's /init answers no row
    tags, per_stream, wait = await_sentry(sentry_dir, {name: len(pids) + 1 for name, pids in mixed.items()})
    for name, pids in mixed.items():
        check(name in tags, f"no /init transaction tagged {name}")
        seen = per_stream[tags[name]]
        expected = Counter(pids)
        if name.startswith("p"):
            check(
                sum(seen.values()) == len(pids) + 1, f"{name}: {dict(seen)} transactions for {len(pids)} rows"
            )
        else:
            check(
                sum(seen.values()) == len(pids) + 1,
                f"{name}: {dict(seen)} transactions for {len(pids)} turns",
            )
        check(len(seen) >= 2, f"{name}: its transactions came from {set(seen)} only")
        for pid, n in expected.items():
            check(seen[pid] >= n, f"{name}: worker {pid} served {n} turns but filed {seen[pid]} transactions")
    return {
        "unary_per_worker": dict(unary_pids),
        "streams_crossing_workers": {"producer": len(mixed_p), "exchange": len(mixed_e), "of": len(streams)},
        "streams_checked_in_sentry": len(mixed),
        **wait,
    }


def kill_one(url: str, gunicorn_proc: subprocess.Popen[bytes], sentry_dir: Path) -> dict[str, Any]:
    """SIGKILL a worker holding calls; in-flight calls fail cleanly, everything later succeeds."""
    from deploy.service import Fleet

    client = Client(url, Fleet)
    sessions = []
    opener = client.proxy()
    for k in range(10):
        session = opener.scale(factor=2.0, tag=f"k{k}")
        out = session.exchange(AnnotatedBatch(pa.RecordBatch.from_pydict({"x": [float(k)]}, schema=X_SCHEMA)))
        check(out.batch.column("y").to_pylist() == [2.0 * k], "pre-kill exchange is wrong")
        sessions.append(session)

    def slow(i: int) -> tuple[int, Any]:
        try:
            return i, (client.proxy().slow_add(a=1000 + i, b=1, seconds=4.0), client.last_pid())
        except RpcError as exc:
            return i, exc

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(slow, i) for i in range(8)]
        deadline = time.monotonic() + 10
        while True:
            markers = [m.name.split("-") for m in sentry_dir.glob("inflight-*")]
            holding = Counter(int(m[1]) for m in markers)
            if sum(holding.values()) >= 8 or (holding and time.monotonic() > deadline - 8):
                break
            check(time.monotonic() < deadline, "no slow call started")
            time.sleep(0.05)
        victim = holding.most_common(1)[0][0]
        in_flight = {int(m[2]) - 1000 for m in markers if int(m[1]) == victim}
        os.kill(victim, signal.SIGKILL)
        results = dict(f.result(timeout=60) for f in futures)
    # Calls running on the victim must fail; calls it had accepted but not started
    # (queued behind its 4 threads) fail with them. Every other call must succeed.
    failed = {i for i, r in results.items() if isinstance(r, RpcError)}
    check(
        in_flight <= failed,
        f"failed calls {sorted(failed)}, running on the killed worker {sorted(in_flight)}",
    )
    for i in failed:
        exc = results[i]
        check(
            exc.error_code == "UNAVAILABLE"
            and exc.error_kind == "transport"
            and "HTTP 502" in exc.error_message,
            f"in-flight failure is not clean: {exc!r}",
        )
    for i, r in results.items():
        if i not in failed:
            check(r[0] == 1001 + i and r[1] != victim, f"slow call {i} answered {r}")
    later = []
    for i in range(50):
        check(client.proxy().add(a=i, b=1) == i + 1, "post-kill add is wrong")
        later.append(client.last_pid())
    check(victim not in later, "a call landed on the dead worker")
    turn_pids = []
    for k, session in enumerate(sessions):
        for j in range(2):
            x = float(100 + k + j)
            out = session.exchange(AnnotatedBatch(pa.RecordBatch.from_pydict({"x": [x]}, schema=X_SCHEMA)))
            check(out.batch.column("y").to_pylist() == [2.0 * x], f"post-kill turn of stream k{k} is wrong")
            turn_pids += out.batch.column("pid").to_pylist()
        session.close()
    check(victim not in turn_pids, "a turn landed on the dead worker")
    client.close()
    example = results[min(failed)] if failed else None
    return {
        "killed_pid": victim,
        "running_on_killed": len(in_flight),
        "failed_cleanly": len(failed),
        "in_flight_elsewhere_succeeded": len(results) - len(failed),
        "later_calls_ok": len(later),
        "later_turns_ok": len(turn_pids),
        "served_after_kill_by": sorted(set(later) | set(turn_pids)),
        "live_workers_after": sorted(children(gunicorn_proc.pid)),
        "in_flight_error": None if example is None else f"{example.error_type}: {example.error_message}",
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(CheckFailed(f"over {BUDGET_S} s")))
    signal.alarm(BUDGET_S)
    began = time.monotonic()
    report: dict[str, Any] = {}
    run = Path(tempfile.mkdtemp(prefix="vgi-deploy-"))
    run.chmod(0o755)  # nginx workers (user nobody when started as root) read their temp dirs
    try:
        app_port, proxy_port = free_port(), free_port()
        url = f"http://127.0.0.1:{proxy_port}"
        with nginx(args.nginx, run, proxy_port, app_port):
            for workers in (1, 2):
                with gunicorn(run, app_port, workers, f"load{workers}"):
                    report[f"calls_per_s_{workers}_worker{'s' if workers > 1 else ''}"] = round(
                        throughput(url), 1
                    )
                    print(f"throughput: {workers} worker(s): {report[list(report)[-1]]} calls/s", flush=True)
            with gunicorn(run, app_port, 2, "checks") as app:
                pids = set(children(app.pid))
                answers = spread(url)
                report["spread"] = check_spread(answers, app.sentry_dir, pids)  # type: ignore[attr-defined]
                print(f"spread: {report['spread']}", flush=True)
                report["kill"] = kill_one(url, app, app.sentry_dir)  # type: ignore[attr-defined]
                print(f"kill: {report['kill']}", flush=True)
    except Exception as exc:  # a failed check, or a call that raised where none may
        print(f"deploy-check FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        for log in sorted(run.rglob("*.log")):
            print(f"--- {log.relative_to(run)}\n{log.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        shutil.rmtree(run, ignore_errors=True)
    report["duration_s"] = round(time.monotonic() - began, 1)
    print(f"deploy-check OK in {report['duration_s']} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
