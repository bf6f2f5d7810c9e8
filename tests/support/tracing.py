"""Helpers for the trace tests (``tests/tracing/``): one trace from a caller to a worker.

* :func:`caller_root`: the caller's own root span (2.x ``start_transaction``, 3.x
  ``sentry_sdk.traces.start_span``), yielding its ``(trace_id, span_id)``;
* :func:`ids` / :func:`caller_span_ids`: read a transaction (view) or a capture
  through the kit's generation-neutral views (``contexts.trace``, ``spans``);
* :func:`pipe_worker`: a ``connect`` worker subprocess (``tests/workers/trace_worker.py``)
  with its own Sentry and the in-memory transport, whose envelopes come back as a
  :class:`vgi_rpc.testing.SentryCapture` once it has exited;
* :func:`honour_parent_sampler`: a ``traces_sampler`` that leaves the caller's root
  unsampled and follows the parent's decision everywhere else, as the SDK's own
  ``traces_sample_rate`` path does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.sentry import user_root
from vgi_rpc import connect
from vgi_rpc.testing import SentryCapture

TESTS = Path(__file__).resolve().parents[1]
WORKER = TESTS / "workers" / "trace_worker.py"
CALLER = "caller"
"""The name of the caller's root span in every trace test."""


@contextlib.contextmanager
def caller_root(name: str = CALLER) -> Iterator[tuple[str, str]]:
    """The caller's root span; yields its ``(trace_id, span_id)`` (sampled or not)."""
    with user_root(name, op="caller") as root:
        yield str(root.trace_id), str(root.span_id)


def ids(txn: dict[str, Any]) -> tuple[str, str | None]:
    """A transaction's (or segment view's) ``(trace_id, parent_span_id)``."""
    trace = txn["contexts"]["trace"]
    return trace["trace_id"], trace.get("parent_span_id")


def caller_span_ids(cap: SentryCapture, name: str = CALLER) -> dict[str, dict[str, Any]]:
    """Every span of the caller's transaction (root included), by span id."""
    return {s["span_id"]: s for s in cap.spans if s.get("transaction") == name}


def honour_parent_sampler(unsampled: str = CALLER) -> Any:
    """A ``traces_sampler``: 0 for the root named *unsampled*, else the parent's decision (1.0 without one)."""

    def sampler(ctx: dict[str, Any]) -> float:
        parent = ctx.get("parent_sampled")
        if parent is not None:
            return 1.0 if parent else 0.0
        return 0.0 if (ctx.get("transaction_context") or {}).get("name") == unsampled else 1.0

    return sampler


class WorkerEnvelopes:
    """What the worker process sent to Sentry, readable once it has exited (:attr:`capture`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._capture: SentryCapture | None = None

    @property
    def capture(self) -> SentryCapture:
        """The worker's envelopes through the kit's views (waits up to 15 s for the file)."""
        if self._capture is None:
            deadline = time.monotonic() + 15
            while not self.path.exists():
                if time.monotonic() > deadline:
                    raise AssertionError(f"the worker wrote no envelopes to {self.path}")
                time.sleep(0.05)
            self._capture = SentryCapture.from_envelopes(json.loads(self.path.read_text()))
        return self._capture


def worker_cmd(out: Path, sample_rate: float = 1.0, python: str = sys.executable) -> list[str]:
    """The command line of a trace worker writing its envelopes to *out*."""
    return [python, str(WORKER), str(out), str(sample_rate)]


@contextlib.contextmanager
def pipe_worker(
    protocol: type, tmp_path: Path, sample_rate: float = 1.0, **options: Any
) -> Iterator[tuple[Any, WorkerEnvelopes]]:
    """A ``connect`` proxy to a trace worker, and its envelopes (read them after the block)."""
    out = tmp_path / f"worker-{time.monotonic_ns()}.json"
    envelopes = WorkerEnvelopes(out)
    with connect(protocol, worker_cmd(out, sample_rate), env={**os.environ}, **options) as proxy:
        yield proxy, envelopes
