#!/usr/bin/env python3
"""Peer conformance: the official vgi-rpc 0.52.2 runner (``vgi-rpc-test``) against our server.

``make conformance`` runs this with the project's Python (then the two pytest
modules that check the clients: ``tests/peer``, the official client against our
HTTP server, and ``tests/conformance/test_reference_server.py``, our client
against the reference server)::

    python scripts/conformance.py --peer .venv-peer            # pipe and HTTP
    python scripts/conformance.py --transport pipe             # one transport only

* **pipe**: ``vgi-rpc-test --cmd "<python> tests/conformance/worker.py" --format json``;
* **http**: starts ``tests/conformance/http_worker.py`` (our ``serve_http``) on a
  free 127.0.0.1 port (it prints ``PORT:<n>``), waits for ``/vgi/health``, runs
  ``vgi-rpc-test --url``, stops the server.

Prints a table per transport (passed / failed / skipped per group, then every
failure with its message).  Exit status is non-zero when a test outside the
allowed-to-fail groups (``EXCLUDED_GROUPS``, now empty) fails, or when the runner
itself breaks.  Every step is time-bounded: the runner allows 5 s per test (300 s for
the 2 GiB payload test), and each runner process gets ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

EXCLUDED_GROUPS: dict[str, str] = {}
"""Runner groups (``category`` in the runner's JSON) allowed to fail, with the reason.

Empty: stream headers, rich headers and dynamic schemas (once excluded) pass now,
so every group is gated.
"""

HTTP_PREFIX = "/vgi"


# --------------------------------------------------------------------------- runner results
@dataclass
class Outcome:
    """One runner invocation: its parsed results, or why there are none."""

    transport: str
    results: list[dict[str, Any]] = field(default_factory=list)
    broken: str | None = None  # the runner crashed / timed out / printed no JSON
    duration_s: float = 0.0

    def count(self, *, excluded: bool | None = None) -> tuple[int, int, int]:
        """(passed, failed, skipped), optionally only inside / outside the excluded groups."""
        p = f = s = 0
        for r in self.results:
            if excluded is not None and (r["category"] in EXCLUDED_GROUPS) != excluded:
                continue
            if r["skipped"]:
                s += 1
            elif r["passed"]:
                p += 1
            else:
                f += 1
        return p, f, s

    @property
    def blocking_failures(self) -> list[dict[str, Any]]:
        """Failures outside the agreed-excluded groups."""
        return [
            r
            for r in self.results
            if not r["passed"] and not r["skipped"] and r["category"] not in EXCLUDED_GROUPS
        ]

    @property
    def ok(self) -> bool:
        """True when the runner worked and nothing outside the excluded groups failed."""
        return self.broken is None and not self.blocking_failures


def _runner(peer: Path) -> Path:
    exe = peer / "bin" / "vgi-rpc-test"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: build the peer venv first (make conformance does)")
    return exe


def check_group_names(peer: Path) -> list[str]:
    """Confirm the excluded group names against ``vgi-rpc-test --list``; return warnings."""
    out = subprocess.run(
        [str(_runner(peer)), "--list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    groups = {line.split(".", 1)[0] for line in out.split() if "." in line}
    return [f"excluded group {g!r} is not in the runner's --list" for g in EXCLUDED_GROUPS if g not in groups]


def run_runner(peer: Path, transport: str, target: list[str], budget: float) -> Outcome:
    """Run ``vgi-rpc-test <target> --format json`` and parse what it wrote."""
    outcome = Outcome(transport)
    with tempfile.TemporaryDirectory(prefix="vgi-conf-") as tmp:
        out_file = Path(tmp) / "result.json"
        cmd = [str(_runner(peer)), *target, "--format", "json", "--output", str(out_file)]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, cwd=ROOT)
        except subprocess.TimeoutExpired as exc:
            outcome.duration_s = time.monotonic() - start
            tail = (exc.stderr or b"")[-2000:]
            tail_s = tail.decode("utf-8", "replace") if isinstance(tail, bytes) else tail
            outcome.broken = f"runner exceeded its {budget:.0f}s budget; stderr tail:\n{tail_s}"
            return outcome
        outcome.duration_s = time.monotonic() - start
        if not out_file.exists():
            outcome.broken = (
                f"runner exited {proc.returncode} without results; stderr tail:\n{proc.stderr[-3000:]}"
            )
            return outcome
        data = json.loads(out_file.read_text(encoding="utf-8"))
    outcome.results = data["results"]
    return outcome


# --------------------------------------------------------------------------- processes
def _probe(url: str) -> bool:
    req = urllib.request.Request(url, method="OPTIONS")
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            status: int = resp.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def background(
    cmd: list[str],
    *,
    ready: Callable[[subprocess.Popen[str]], bool],
    wait: float = 30.0,
    read_stdout: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """Start *cmd*, wait until ``ready(proc)``, yield it, then stop exactly that process.

    stderr goes to a temporary file (a chatty server can never block on a full
    pipe); it is shown if the process dies before it is ready.
    """
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE if read_stdout else subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + wait
            while not ready(proc):
                if proc.poll() is not None:
                    err.seek(0)
                    raise RuntimeError(
                        f"{shlex.join(cmd)} exited with {proc.returncode}:\n{err.read()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{shlex.join(cmd)} not ready after {wait:.0f}s")
                time.sleep(0.1)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()


# --------------------------------------------------------------------------- the two runs
def run_pipe(peer: Path, budget: float) -> Outcome:
    """Official runner over the pipe against ``tests/conformance/worker.py``."""
    cmd = shlex.join([sys.executable, str(ROOT / "tests" / "conformance" / "worker.py")])
    return run_runner(peer, "pipe", ["--cmd", cmd], budget)


def _port_reader(box: list[int]) -> Callable[[subprocess.Popen[str]], bool]:
    """A readiness check that waits for the ``PORT:<n>`` line a server prints once it listens."""

    def ready(proc: subprocess.Popen[str]) -> bool:
        if not box and proc.stdout is not None:
            line = proc.stdout.readline()
            if line.startswith("PORT:"):
                box.append(int(line.split(":", 1)[1]))
        return bool(box)

    return ready


def run_http(peer: Path, budget: float) -> Outcome:
    """Official runner over HTTP against ``tests/conformance/http_worker.py`` (our ``serve_http``).

    The worker binds port 0 and ``serve_http`` announces ``PORT:<n>`` once it
    listens; the runner starts after ``OPTIONS {prefix}/health`` answers 2xx.
    """
    port: list[int] = []
    cmd = [sys.executable, str(ROOT / "tests" / "conformance" / "http_worker.py"), "--port", "0"]
    cmd += ["--prefix", HTTP_PREFIX]

    def ready(proc: subprocess.Popen[str]) -> bool:
        return _port_reader(port)(proc) and _probe(f"http://127.0.0.1:{port[0]}{HTTP_PREFIX}/health")

    try:
        with background(cmd, ready=ready, read_stdout=True):
            base = f"http://127.0.0.1:{port[0]}"
            return run_runner(peer, "http", ["--url", base, "--prefix", HTTP_PREFIX], budget)
    except RuntimeError as exc:
        return Outcome("http", broken=f"our HTTP server did not come up: {exc}")


# --------------------------------------------------------------------------- report
def report(outcome: Outcome) -> None:
    """Print the per-group table and every failure for one transport."""
    print(f"\n== {outcome.transport}: official runner (vgi-rpc-test 0.52.2) vs our server ==")
    if outcome.broken:
        print(f"RUNNER BROKEN: {outcome.broken}")
        return
    groups: dict[str, list[int]] = {}
    for r in outcome.results:
        row = groups.setdefault(r["category"], [0, 0, 0])
        row[2 if r["skipped"] else 0 if r["passed"] else 1] += 1
    print(f"  {'group':<26} {'pass':>4} {'fail':>4} {'skip':>4}")
    for name in sorted(groups):
        p, f, s = groups[name]
        tag = "  (excluded: " + EXCLUDED_GROUPS[name] + ")" if name in EXCLUDED_GROUPS else ""
        print(f"  {name:<26} {p:>4} {f:>4} {s:>4}{tag}")
    p, f, s = outcome.count()
    print(f"  {'TOTAL':<26} {p:>4} {f:>4} {s:>4}   ({len(outcome.results)} tests, {outcome.duration_s:.1f}s)")
    ep, ef, es = outcome.count(excluded=False)
    print(f"  {'outside excluded groups':<26} {ep:>4} {ef:>4} {es:>4}")
    failures = [r for r in outcome.results if not r["passed"] and not r["skipped"]]
    if failures:
        print("  failures:")
        for r in failures:
            mark = "excluded" if r["category"] in EXCLUDED_GROUPS else "BLOCKING"
            msg = (r.get("error") or "").strip().replace("\n", " ")
            print(f"    [{mark}] {r['name']}: {msg[:300]}")
    skips = [r for r in outcome.results if r["skipped"]]
    if skips:
        print("  skipped:")
        for r in skips:
            print(f"    {r['name']}: {(r.get('skip_reason') or '')[:200]}")
    notes = [r for r in outcome.results if r.get("note")]
    for r in notes:
        print(f"  note: {r['name']}: {r['note'][:200]}")


def main(argv: list[str] | None = None) -> int:
    """Run the selected checks, print the tables, return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peer", type=Path, default=ROOT / ".venv-peer", help="venv holding vgi-rpc 0.52.2")
    parser.add_argument(
        "--transport", action="append", choices=["pipe", "http"], help="run only these (repeatable)"
    )
    parser.add_argument("--budget", type=float, default=900.0, help="seconds allowed per runner process")
    parser.add_argument("--json", type=Path, help="also write every result to this JSON file")
    args = parser.parse_args(argv)
    peer = args.peer if args.peer.is_absolute() else (Path.cwd() / args.peer)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    transports = args.transport or ["pipe", "http"]

    status = 0
    outcomes: list[Outcome] = []
    for warning in check_group_names(peer):
        print(f"warning: {warning}")
        status = 1
    for transport in transports:
        outcome = run_pipe(peer, args.budget) if transport == "pipe" else run_http(peer, args.budget)
        outcomes.append(outcome)
        report(outcome)
        status |= 0 if outcome.ok else 1

    print("\n== summary ==")
    for o in outcomes:
        p, f, s = o.count()
        state = "BROKEN" if o.broken else ("OK" if o.ok else f"FAIL ({len(o.blocking_failures)} blocking)")
        print(f"  {o.transport:<6} {p} passed, {f} failed, {s} skipped   {state}")

    if args.json:
        payload = {
            "excluded_groups": EXCLUDED_GROUPS,
            "runs": [
                {"transport": o.transport, "broken": o.broken, "count": o.count(), "results": o.results}
                for o in outcomes
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
