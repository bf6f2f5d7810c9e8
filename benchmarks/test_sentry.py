"""The Sentry hook's cost: on a ``serve_pipe`` unary round trip, and in-process.

The real SDK is initialised with the in-memory transport (``vgi_rpc.testing``,
``traces_sample_rate=1.0``, default integrations on) for all three variants,
interleaved round by round:

* ``no Sentry hook`` -- a server constructed before the SDK was initialised;
* ``default config`` -- constructed while it is: the auto-attached default hook;
* ``params+perf`` -- ``SentryConfig(record_params=True, enable_performance=True)``:
  one transaction per call, recorded (serialised) by the in-memory transport.

On sentry-sdk 3 there are no transactions: the hook's span is a *segment* the SDK
streams as a ``span`` item, serialised and sent by the SDK's span batcher thread.
The checks of what each variant sends read ``SentryCapture.transactions``, which
shows each segment as a transaction-shaped view, so they are the same on both
generations. Between rounds the capture is flushed and cleared, untimed, so a
round never pays for the previous round's sends. The process-CPU ratios count the
batcher thread's work (it runs on the same CPU, ``one_cpu``; each variant's round
ends once its sends are done, :func:`_own_sends`); the thread-CPU ratios of
``handle_unary`` count the calling thread only.

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
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks._services import Bench, BenchImpl
from benchmarks.conftest import Profile
from vgi_rpc import RpcServer, serve_pipe
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark, one_cpu, quartiles


def _calls(proxy: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        add = proxy.add
        for _ in range(n):
            add(a=1, b=2)

    return run


def _own_sends(cap: Any, variants: dict[str, Callable[[int], None]]) -> dict[str, Callable[[int], None]]:
    """For process-CPU ratios: on sentry-sdk 3, each variant's round ends once its spans are sent.

    The SDK's span batcher thread sends a segment after the call that finished it
    has returned; a variant's last sends would otherwise run, on the same CPU,
    in the next variant's timed round (the rotation makes that mostly the same
    neighbour: the baseline after the last variant). So on 3.x every variant,
    the baseline included, ends with ``cap.flush()`` (the kit's drain: ~18 us
    when nothing is pending, per round of ``ops`` calls, the same for all).
    2.x sends on the calling thread: the variants are left as they are.
    """
    if not _streams():
        return variants

    def drained(run: Callable[[int], None]) -> Callable[[int], None]:
        def run_and_send(n: int) -> None:
            run(n)
            cap.flush()

        return run_and_send

    return {name: drained(run) for name, run in variants.items()}


@pytest.mark.gated
@pytest.mark.benchmark(group="serve_pipe unary round trip with Sentry")
def test_sentry_pipe(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
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
            cap.clear()

            sampler = Interleaved(
                _own_sends(
                    cap,
                    {
                        "no Sentry hook": _calls(p_plain),
                        "default config": _calls(p_default),
                        "params+perf": _calls(p_perf),
                    },
                ),
                ops=10,
                between=cap.clear,
                clock="process",
            )
            ratio_benchmark.run(sampler, rounds=profile.rounds(400), warmup=10)
        assert not cap.events
    sends_on = "the span batcher thread, same CPU" if _streams() else "the calling thread"
    for suffix, clock in (("", "wall"), (".cpu", "process")):
        record_ratio(
            sampler.ratio(
                "sentry.pipe.default" + suffix,
                f"Sentry hook, default config vs no hook (serve_pipe, SDK on, {clock} time)",
                "no Sentry hook",
                "default config",
                clock=clock,
            )
        )
        record_ratio(
            sampler.ratio(
                "sentry.pipe.params_perf" + suffix,
                f"Sentry hook, record_params+enable_performance vs no hook (serve_pipe, SDK on, {clock} time)",
                "no Sentry hook",
                "params+perf",
                clock=clock,
                note=""
                if suffix
                else f"one sampled transaction per call: the SDK prepares it and serialises it on {sends_on}",
            )
        )


@pytest.mark.gated
@pytest.mark.benchmark(group="server-side unary handling with Sentry")
def test_sentry_server_side(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    """``server.handle_unary``: hook + implementation + Arrow response, one thread, no transport."""
    from vgi_rpc.hooks import register_dispatch_hook
    from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
    from vgi_rpc.testing import sentry_capture

    plain = RpcServer(Bench, BenchImpl())
    assert plain._dispatch_hook is None, "the baseline server must have no Sentry hook"
    metadata = {"vgi_rpc.method": "add", "vgi_rpc.request_version": "1", "vgi_rpc.protocol": "Bench"}
    kwargs = {"a": 1, "b": 2}
    fork = RpcServer(Bench, BenchImpl())
    bare = RpcServer(Bench, BenchImpl())
    with sentry_capture() as cap:
        fork._dispatch_hook = register_dispatch_hook(None, _ForkOnlyHook())
        bare._dispatch_hook = register_dispatch_hook(None, _BareTransactionHook(_bare_transactions()))
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

        for server in (plain, fork, default, perf, bare):
            sink = io.BytesIO()
            assert server.handle_unary(server.lookup("add"), kwargs, sink, transport="pipe") is None
            assert sink.getvalue()
        # params+perf and the bare-transaction hook: one transaction (3.x: segment) each
        txns = cap.transactions
        assert sorted(t["transaction"] for t in txns) == ["vgi_rpc/add"] * 2, cap.describe()
        assert len(cap.transactions_for("add")) == 1, cap.describe()  # only params+perf names its method
        cap.clear()
        sampler = Interleaved(
            {
                "no Sentry hook": handler(plain),
                "fork-only hook": handler(fork),
                "default config": handler(default),
                "params+perf": handler(perf),
                "bare-transaction hook": handler(bare),
            },
            ops=10,
            between=cap.clear,
            clock="thread",
        )
        ratio_benchmark.run(sampler, rounds=profile.rounds(200), warmup=5)
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
    record_ratio(
        _overhead_ratio(
            sampler,
            "sentry.server.default_vs_fork",
            "Sentry hook, default config: added cost vs a fork-only hook's (floor a, handle_unary, thread CPU)",
            "default config",
            "fork-only hook",
        )
    )
    record_ratio(
        _overhead_ratio(
            sampler,
            "sentry.server.perf_vs_transaction",
            "Sentry hook, record_params+enable_performance: added cost vs a bare-transaction hook's "
            "(floor b, handle_unary, thread CPU)",
            "params+perf",
            "bare-transaction hook",
        )
    )


# -- the SDK's floors -------------------------------------------------------------------------------


class _ForkOnlyHook:
    """The least a hook that keeps calls isolated must do (floor a).

    Enter a forked isolation scope, write the call's tags and ``rpc`` context
    (what the default hook writes there), leave it at the end. No config, no
    redaction, no naming processor, no root span, no error capture.
    """

    def on_dispatch_start(self, info: Any, auth: Any, transport_metadata: Any, kwargs: Any) -> object:
        import sentry_sdk

        cm = sentry_sdk.isolation_scope()
        scope = cm.__enter__()
        scope.set_tags(
            {"auth.authenticated": "false", "rpc.method": info.name, "rpc.method_type": info.method_type}
        )
        scope.set_context(
            "rpc",
            {
                "method": info.name,
                "method_type": info.method_type,
                "service": info.service,
                "server_id": info.server_id,
            },
        )
        return cm

    def on_dispatch_end(self, token: Any, info: Any, error: BaseException | None) -> None:
        token.__exit__(None, None, None)


def _streams() -> bool:
    """Whether the installed SDK streams spans (sentry-sdk 3: no ``start_transaction`` any more)."""
    import sentry_sdk

    return not hasattr(sentry_sdk, "start_transaction")


def _bare_transactions() -> Callable[[int], None]:
    """Floor (b): ``run(n)`` starting, finishing and sending *n* bare transactions.

    sentry-sdk 2.x: ``start_transaction``. sentry-sdk 3 has no transactions; the same
    unit of work there is a bare segment in a trace of its own, which is what the
    hook's own span is when no span is active (``new_trace()``, then
    ``sentry_sdk.traces.start_span`` with the same name, ``sentry.op`` and name
    source); the SDK's span batcher thread serialises and sends it.
    """
    import sentry_sdk

    if not _streams():
        start_transaction = sentry_sdk.start_transaction

        def transactions(n: int) -> None:
            for _ in range(n):
                with start_transaction(name="vgi_rpc/add", op="rpc.server", source="custom"):
                    pass

        return transactions

    from sentry_sdk.traces import new_trace, start_span

    def segments(n: int) -> None:
        for _ in range(n):
            new_trace()
            with start_span(
                name="vgi_rpc/add",
                attributes={"sentry.op": "rpc.server", "sentry.segment.name.source": "custom"},
            ):
                pass

    return segments


_BLOCK = 10
"""Rounds per block for the added-cost ratios (see :func:`_overhead_ratio`)."""


class _BareTransactionHook:
    """Floor (b) measured the way the hook is: one bare transaction per dispatch, in the server thread."""

    def __init__(self, bare: Callable[[int], None]) -> None:
        self._bare = bare

    def on_dispatch_start(self, info: Any, auth: Any, transport_metadata: Any, kwargs: Any) -> object:
        self._bare(1)
        return None

    def on_dispatch_end(self, token: Any, info: Any, error: BaseException | None) -> None:
        return None


def _overhead_ratio(
    sampler: Interleaved,
    key: str,
    title: str,
    subject: str,
    floor: str,
    *,
    baseline: str = "no Sentry hook",
    floor_is_overhead: bool = True,
    note: str = "",
) -> Ratio:
    """The subject's *added* cost over the baseline, divided by the floor's (or by the floor itself).

    An added cost is a difference of two round trips, and one round's difference
    is mostly noise (18 us on 220 us whose rounds wander by 20 us), so a per-round
    ratio is meaningless. Instead the rounds are cut into consecutive blocks of
    :data:`_BLOCK`; in each block the added costs are differences of medians; the
    reported value is the median over blocks, the spread their IQR.
    """
    base, subj, low = sampler.samples[baseline], sampler.samples[subject], sampler.samples[floor]
    per_block: list[float] = []
    added: list[float] = []
    floors: list[float] = []
    for start in range(0, len(base) - _BLOCK + 1, _BLOCK):
        b = statistics.median(base[start : start + _BLOCK])
        s_cost = statistics.median(subj[start : start + _BLOCK]) - b
        f_cost = statistics.median(low[start : start + _BLOCK]) - (b if floor_is_overhead else 0.0)
        added.append(s_cost)
        floors.append(f_cost)
        per_block.append(s_cost / f_cost if f_cost > 0 else float("inf"))
    if not per_block:
        raise RuntimeError(f"fewer than {_BLOCK} rounds: no block to compute {key} from")
    q1, med, q3 = quartiles(per_block)
    return Ratio(
        key=key,
        title=title,
        baseline=f"{floor} ({'added ' if floor_is_overhead else ''}cost)",
        subject=f"{subject} (added cost)",
        median=med,
        q1=q1,
        q3=q3,
        baseline_value=statistics.median(floors),
        subject_value=statistics.median(added),
        rounds=len(base),
        ops=sampler.ops,
        note=note or f"median over blocks of {_BLOCK} rounds of (block-median differences)",
        clock=sampler.clock,
    )


@pytest.mark.gated
@pytest.mark.benchmark(group="Sentry hook vs the SDK's floors")
def test_sentry_floors(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    """The hook's added cost against the least the SDK needs, measured in the same run.

    (a) a fork-only dispatch hook on the same ``serve_pipe`` round trip: the
    default hook's added cost / the fork-only hook's (target <= 1.5x);
    (b) one bare transaction started, finished and sent to the same in-memory
    transport: record_params+enable_performance's added cost / one bare
    transaction (target <= 1.15x). Process CPU time, interleaved, one CPU.
    On sentry-sdk 3 the bare transaction is a bare segment (:func:`_bare_transactions`).
    """
    from vgi_rpc.hooks import register_dispatch_hook
    from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
    from vgi_rpc.testing import sentry_capture

    plain = RpcServer(Bench, BenchImpl())
    fork = RpcServer(Bench, BenchImpl())
    bare = RpcServer(Bench, BenchImpl())
    with sentry_capture() as cap:
        bare_transactions = _bare_transactions()
        fork._dispatch_hook = register_dispatch_hook(None, _ForkOnlyHook())
        bare._dispatch_hook = register_dispatch_hook(None, _BareTransactionHook(bare_transactions))
        default = RpcServer(Bench, BenchImpl())
        perf = instrument_server_sentry(
            RpcServer(Bench, BenchImpl()), SentryConfig(record_params=True, enable_performance=True)
        )
        with (
            one_cpu(),
            serve_pipe(plain) as p_plain,
            serve_pipe(fork) as p_fork,
            serve_pipe(default) as p_default,
            serve_pipe(perf) as p_perf,
            serve_pipe(bare) as p_bare,
        ):
            for proxy in (p_plain, p_fork, p_default, p_perf, p_bare):
                assert proxy.add(a=1, b=2) == 3
            bare_transactions(1)
            assert [t["transaction"] for t in cap.transactions] == ["vgi_rpc/add"] * 3, cap.describe()
            cap.clear()
            sampler = Interleaved(
                _own_sends(
                    cap,
                    {
                        "no Sentry hook": _calls(p_plain),
                        "fork-only hook": _calls(p_fork),
                        "default config": _calls(p_default),
                        "params+perf": _calls(p_perf),
                        "bare-transaction hook": _calls(p_bare),
                        "bare transaction": bare_transactions,
                    },
                ),
                ops=10,
                between=cap.clear,
                clock="process",
            )
            ratio_benchmark.run(sampler, rounds=profile.rounds(400), warmup=10)
        assert not cap.events
    record_ratio(
        _overhead_ratio(
            sampler,
            "sentry.floor.default_vs_fork",
            "Sentry hook, default config: added cost vs a fork-only hook's (floor a, serve_pipe, CPU)",
            "default config",
            "fork-only hook",
        )
    )
    record_ratio(
        _overhead_ratio(
            sampler,
            "sentry.floor.perf_vs_transaction",
            "Sentry hook, record_params+enable_performance: added cost vs a bare-transaction hook's (floor b, serve_pipe, CPU)",
            "params+perf",
            "bare-transaction hook",
        )
    )
    record_ratio(
        _overhead_ratio(
            sampler,
            "sentry.floor.perf_vs_transaction.main_thread",
            "Sentry hook, record_params+enable_performance: added cost vs one bare transaction in the main thread (CPU)",
            "params+perf",
            "bare transaction",
            floor_is_overhead=False,
            note="the same transaction costs more in the server thread than in the measuring one; the gated "
            "ratio compares like with like",
        )
    )
    record_ratio(
        sampler.ratio(
            "sentry.floor.fork.cpu",
            "fork-only hook vs no hook (floor a itself, serve_pipe, process time)",
            "no Sentry hook",
            "fork-only hook",
        )
    )
    record_ratio(
        sampler.ratio(
            "sentry.floor.default.cpu",
            "Sentry hook, default config vs no hook (same run as the floors, process time)",
            "no Sentry hook",
            "default config",
        )
    )
