"""The client-side cost of trace propagation (issue 20): what ``propagate_trace=True`` adds to a call.

Each test times a ``serve_pipe`` unary round trip ``add(a=1, b=2)`` with the
default ``propagate_trace=True`` against the same call with
``propagate_trace=False``, interleaved round by round, on one CPU, in process
CPU time (``.cpu``) and wall time. The servers have no hooks (they are built
before Sentry is initialised, so nothing auto-attaches): only the client's
side differs, i.e. ``vgi_rpc._propagation.outgoing_trace_headers`` and the few
metadata entries it adds to the request batch.

* ``propagation.pipe.idle`` -- no Sentry client active, no OTel span current:
  the path every call without tracing takes (two ``sys.modules`` lookups, and
  ``get_client().is_active()`` when ``sentry_sdk`` is imported);
* ``propagation.pipe.sentry`` -- the real SDK (in-memory transport) with a root
  span open for the whole run: ``sentry-trace`` + ``baggage`` on every request;
* ``propagation.pipe.otel`` -- a real OTel ``TracerProvider`` span current:
  ``traceparent`` on every request.

Informational (not gated): ``extra_info["propagation_ns"]`` also holds the
median nanoseconds of one ``outgoing_trace_headers("pipe")`` call in each state.
Rounds are kept small: the whole file runs in well under a minute.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import pytest

from benchmarks._services import Bench, BenchImpl
from benchmarks.conftest import Profile
from vgi_rpc import RpcServer, serve_pipe
from vgi_rpc._propagation import outgoing_trace_headers
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark, one_cpu

_OFF, _ON = "propagate_trace=False", "propagate_trace=True"


def _calls(proxy: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        add = proxy.add
        for _ in range(n):
            add(a=1, b=2)

    return run


def _headers_ns(n: int = 2000) -> float:
    """Median ns of one ``outgoing_trace_headers("pipe")`` call (5 batches of *n*)."""
    per_call = []
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(n):
            outgoing_trace_headers("pipe")
        per_call.append((time.perf_counter_ns() - start) / n)
    return statistics.median(per_call)


@contextmanager
def _sentry_span() -> Iterator[None]:
    from vgi_rpc._sentry_sdk import GENERATION
    from vgi_rpc.testing import sentry_capture

    with sentry_capture() as cap:
        if GENERATION == 3:
            from sentry_sdk.traces import start_span

            span: AbstractContextManager[Any] = start_span(name="caller")
        else:
            import sentry_sdk

            span = sentry_sdk.start_transaction(name="caller", op="bench")  # type: ignore[attr-defined,unused-ignore]
        with span:
            yield
        cap.clear()


@contextmanager
def _otel_span() -> Iterator[None]:
    from vgi_rpc.testing.otel import otel_capture

    with otel_capture() as cap, cap.tracer_provider.get_tracer("caller").start_as_current_span("caller"):
        yield


def _measure(
    key: str,
    state: str,
    context: AbstractContextManager[Any],
    expect: str | None,
    ratio_benchmark: RatioBenchmark,
    profile: Profile,
    record_ratio: Callable[[Ratio], Ratio],
) -> None:
    off_server, on_server = RpcServer(Bench, BenchImpl()), RpcServer(Bench, BenchImpl())
    assert off_server.hooks == () and on_server.hooks == (), "the servers must have no hooks"
    with (
        one_cpu(),
        serve_pipe(off_server, propagate_trace=False) as p_off,
        serve_pipe(on_server) as p_on,
        context,
    ):
        headers = outgoing_trace_headers("pipe")
        assert (expect in headers) if expect else headers == {}, headers  # measures what it says
        assert p_off.add(a=1, b=2) == 3 and p_on.add(a=1, b=2) == 3
        ns = _headers_ns()
        sampler = Interleaved({_OFF: _calls(p_off), _ON: _calls(p_on)}, ops=10, clock="process")
        ratio_benchmark.run(sampler, rounds=profile.rounds(150), warmup=5)
    info = ratio_benchmark.benchmark.extra_info
    info.setdefault("propagation_ns", {})[state] = round(ns, 1)
    info["sentry_sdk_imported"] = "sentry_sdk" in sys.modules
    for suffix, clock in (("", "wall"), (".cpu", "process")):
        record_ratio(
            sampler.ratio(
                key + suffix,
                f"propagate_trace on vs off, serve_pipe unary, {state} ({clock} time)",
                _OFF,
                _ON,
                clock=clock,
                note=f"informational; outgoing_trace_headers: {ns:.0f} ns/call",
            )
        )


@pytest.mark.benchmark(group="client trace propagation (serve_pipe unary)")
def test_propagation_idle(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    _measure(
        "propagation.pipe.idle",
        "no tracing active",
        nullcontext(),
        None,
        ratio_benchmark,
        profile,
        record_ratio,
    )


@pytest.mark.benchmark(group="client trace propagation (serve_pipe unary)")
def test_propagation_sentry(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    pytest.importorskip("sentry_sdk")
    _measure(
        "propagation.pipe.sentry",
        "Sentry on, in a span",
        _sentry_span(),
        "sentry-trace",
        ratio_benchmark,
        profile,
        record_ratio,
    )


@pytest.mark.benchmark(group="client trace propagation (serve_pipe unary)")
def test_propagation_otel(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    _measure(
        "propagation.pipe.otel",
        "OTel span current",
        _otel_span(),
        "traceparent",
        ratio_benchmark,
        profile,
        record_ratio,
    )
