"""The Sentry hook's cost: on a ``serve_pipe`` unary round trip, and in-process.

The real SDK is initialised with the in-memory transport (``vgi_rpc.testing``,
``traces_sample_rate=1.0``, default integrations on) for all three variants,
interleaved round by round:

* ``no Sentry hook`` -- a server constructed before the SDK was initialised;
* ``default config`` -- constructed while it is: the auto-attached default hook;
* ``params+perf`` -- ``SentryConfig(record_params=True, enable_performance=True)``:
  one transaction per call, recorded (serialised) by the in-memory transport.

Client and server threads run on one CPU (``one_cpu``: see why there).  Each
ratio is reported twice: wall time (the round trip's latency; keys without
suffix) and process CPU time (``.cpu``: client and server thread together, blind
to other processes taking the CPU, so much steadier on a shared machine).

Targets: default <= 1.10x, params+perf <= 1.25x the round trip without Sentry.
The same three variants through ``server.handle_unary`` (the server side of a
unary call, Arrow response included, one thread, no transport) give the stable
ratios ``make bench-check`` gates on.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks._harness import Interleaved, Ratio, one_cpu, run_with_benchmark
from benchmarks._services import Bench, BenchImpl
from benchmarks.conftest import Profile
from vgi_rpc import RpcServer, serve_pipe


def _calls(proxy: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        add = proxy.add
        for _ in range(n):
            add(a=1, b=2)

    return run


@pytest.mark.gated
@pytest.mark.benchmark(group="serve_pipe unary round trip with Sentry")
def test_sentry_pipe(benchmark: Any, profile: Profile, record_ratio: Callable[[Ratio], Ratio]) -> None:
    from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
    from vgi_rpc.testing import sentry_capture

    plain = RpcServer(Bench, BenchImpl())
    assert plain._dispatch_hook is None, "the baseline server must have no Sentry hook"
    with sentry_capture() as cap:
        default = RpcServer(Bench, BenchImpl())
        assert default._dispatch_hook is not None, "auto-attach did not attach the default hook"
        perf = instrument_server_sentry(
            RpcServer(Bench, BenchImpl()), SentryConfig(record_params=True, enable_performance=True)
        )
        with (
            one_cpu(),
            serve_pipe(plain) as p_plain,
            serve_pipe(default) as p_default,
            serve_pipe(perf) as p_perf,
        ):
            # What each variant sends, checked once so the benchmark measures what it says.
            for proxy in (p_plain, p_default, p_perf):
                assert proxy.add(a=1, b=2) == 3
            (txn,) = cap.transactions
            assert txn["transaction"] == "vgi_rpc/add"
            assert txn["contexts"]["trace"]["data"]["rpc.param.a"] == 1
            cap.transport.clear()

            sampler = Interleaved(
                {
                    "no Sentry hook": _calls(p_plain),
                    "default config": _calls(p_default),
                    "params+perf": _calls(p_perf),
                },
                ops=10,
                between=cap.transport.clear,
                clock="process",
            )
            run_with_benchmark(benchmark, sampler, rounds=profile.rounds(400), warmup=10)
        assert not cap.events
    for suffix, clock in (("", "wall"), (".cpu", "process")):
        record_ratio(
            sampler.ratio(
                "sentry.pipe.default" + suffix,
                f"Sentry hook, default config vs no hook (serve_pipe, SDK on, {clock} time)",
                "no Sentry hook",
                "default config",
                target=1.10,
                clock=clock,
            )
        )
        record_ratio(
            sampler.ratio(
                "sentry.pipe.params_perf" + suffix,
                f"Sentry hook, record_params+enable_performance vs no hook (serve_pipe, SDK on, {clock} time)",
                "no Sentry hook",
                "params+perf",
                target=1.25,
                clock=clock,
                note=""
                if suffix
                else "one sampled transaction per call: the SDK prepares and serialises it on the calling thread",
            )
        )


@pytest.mark.gated
@pytest.mark.benchmark(group="server-side unary handling with Sentry")
def test_sentry_server_side(benchmark: Any, profile: Profile, record_ratio: Callable[[Ratio], Ratio]) -> None:
    """``server.handle_unary``: hook + implementation + Arrow response, one thread, no transport."""
    from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
    from vgi_rpc.testing import sentry_capture

    plain = RpcServer(Bench, BenchImpl())
    assert plain._dispatch_hook is None, "the baseline server must have no Sentry hook"
    metadata = {"vgi_rpc.method": "add", "vgi_rpc.request_version": "1", "vgi_rpc.protocol": "Bench"}
    kwargs = {"a": 1, "b": 2}
    with sentry_capture() as cap:
        default = RpcServer(Bench, BenchImpl())
        perf = instrument_server_sentry(
            RpcServer(Bench, BenchImpl()), SentryConfig(record_params=True, enable_performance=True)
        )

        def handler(server: RpcServer) -> Callable[[int], None]:
            spec = server.lookup("add")
            handle = server.handle_unary

            def run(n: int) -> None:
                for _ in range(n):
                    handle(spec, kwargs, io.BytesIO(), transport_metadata=metadata, transport="pipe")

            return run

        for server in (plain, default, perf):
            sink = io.BytesIO()
            assert server.handle_unary(server.lookup("add"), kwargs, sink, transport="pipe") is None
            assert sink.getvalue()
        assert len(cap.transactions) == 1
        cap.transport.clear()
        sampler = Interleaved(
            {
                "no Sentry hook": handler(plain),
                "default config": handler(default),
                "params+perf": handler(perf),
            },
            ops=10,
            between=cap.transport.clear,
            clock="thread",
        )
        run_with_benchmark(benchmark, sampler, rounds=profile.rounds(200), warmup=5)
        assert not cap.events
    record_ratio(
        sampler.ratio(
            "sentry.server.default",
            "Sentry hook, default config vs no hook (handle_unary: call + Arrow response, SDK on)",
            "no Sentry hook",
            "default config",
        )
    )
    record_ratio(
        sampler.ratio(
            "sentry.server.params_perf",
            "Sentry hook, record_params+enable_performance vs no hook (handle_unary, SDK on)",
            "no Sentry hook",
            "params+perf",
        )
    )
