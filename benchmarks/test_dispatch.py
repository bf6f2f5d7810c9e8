"""Dispatch cost with Sentry unused: the server's own overhead and the cost of the hook slot.

* in-process: ``server.dispatch("add", ...)`` vs calling ``impl.add`` directly,
  dispatch with an empty ``CompositeDispatchHook`` in the slot vs no hook, and with
  one no-op hook vs no hook (gated: the hook path's own cost);
* a ``serve_pipe`` unary round trip with an empty composite hook vs no hook (the
  acceptance target "hook slot <= 1.02x no slot" applies to a call a client can
  make; see docs/benchmarks.md for why not to the in-process micro-call), in wall
  time and in process CPU time (``.cpu``). The server stores an empty chain as
  no hook, so this ratio checks that an unused slot costs nothing;
* the same round trip with ONE hook that does nothing (informational): the price
  of the hook machinery itself (DispatchInfo, read-only views, start/end guards).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from benchmarks._services import Bench, BenchImpl
from benchmarks.conftest import Profile
from vgi_rpc import RpcServer, serve_pipe
from vgi_rpc.hooks import CompositeDispatchHook
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark, one_cpu


class _NoopHook:
    """A hook that does nothing: what remains is the cost of calling hooks at all."""

    def on_dispatch_start(self, info: Any, auth: Any, transport_metadata: Any, kwargs: Any) -> None:
        return None

    def on_dispatch_end(self, token: Any, info: Any, error: Any) -> None:
        return None


def _servers() -> tuple[RpcServer, RpcServer]:
    bare = RpcServer(Bench, BenchImpl())
    hooked = RpcServer(Bench, BenchImpl())
    hooked.add_hook(CompositeDispatchHook(()))  # an empty chain: registers nothing
    assert bare.hooks == (), "Sentry must be unused here (run the benchmarks in their own process)"
    return bare, hooked


@pytest.mark.gated
@pytest.mark.benchmark(group="dispatch in-process (Sentry unused)")
def test_dispatch_inproc(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    impl = BenchImpl()
    bare, hooked = _servers()
    noop = RpcServer(Bench, BenchImpl())
    noop.add_hook(_NoopHook())

    def direct(n: int) -> None:
        add = impl.add
        for _ in range(n):
            add(a=1, b=2)

    def dispatch(n: int) -> None:
        call = bare.dispatch
        for _ in range(n):
            call("add", a=1, b=2)

    def dispatch_empty_hook(n: int) -> None:
        call = hooked.dispatch
        for _ in range(n):
            call("add", a=1, b=2)

    def dispatch_noop_hook(n: int) -> None:
        call = noop.dispatch
        for _ in range(n):
            call("add", a=1, b=2)

    sampler = Interleaved(
        {
            "impl.add()": direct,
            "dispatch": dispatch,
            "dispatch+empty hook": dispatch_empty_hook,
            "dispatch+no-op hook": dispatch_noop_hook,
        },
        ops=500,
        clock="thread",
    )
    ratio_benchmark.run(sampler, rounds=profile.rounds(300), warmup=5)
    record_ratio(
        sampler.ratio(
            "dispatch.inproc_vs_direct",
            "in-process dispatch vs direct call",
            "impl.add()",
            "dispatch",
        )
    )
    record_ratio(
        sampler.ratio(
            "dispatch.hook_slot.inproc",
            "empty composite hook vs no hook, in-process",
            "dispatch",
            "dispatch+empty hook",
            note="an empty chain is stored as no hook, so an unused slot costs nothing even on a "
            "0.3 us in-process call",
        )
    )
    record_ratio(
        sampler.ratio(
            "dispatch.noop_hook.inproc",
            "one no-op hook vs no hook, in-process",
            "dispatch",
            "dispatch+no-op hook",
            note="the hook machinery (request id, DispatchInfo, read-only views, guarded start/end) "
            "against a 0.3 us call: large by construction, and the gate's most sensitive probe of it",
        )
    )


@pytest.mark.gated
@pytest.mark.benchmark(group="dispatch over serve_pipe (Sentry unused)")
def test_dispatch_pipe_hook_slot(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    bare, hooked = _servers()
    noop = RpcServer(Bench, BenchImpl())
    noop.add_hook(_NoopHook())
    with (
        one_cpu(),
        serve_pipe(bare) as p_bare,
        serve_pipe(hooked) as p_hooked,
        serve_pipe(noop) as p_noop,
    ):
        assert p_bare.add(a=1, b=2) == 3 and p_hooked.add(a=1, b=2) == 3 and p_noop.add(a=1, b=2) == 3

        def no_hook(n: int) -> None:
            add = p_bare.add
            for _ in range(n):
                add(a=1, b=2)

        def empty_hook(n: int) -> None:
            add = p_hooked.add
            for _ in range(n):
                add(a=1, b=2)

        def noop_hook(n: int) -> None:
            add = p_noop.add
            for _ in range(n):
                add(a=1, b=2)

        sampler = Interleaved(
            {"pipe, no hook": no_hook, "pipe, empty hook": empty_hook, "pipe, no-op hook": noop_hook},
            ops=10,
            clock="process",
        )
        ratio_benchmark.run(sampler, rounds=profile.rounds(600), warmup=10)
    for suffix, clock in (("", "wall"), (".cpu", "process")):
        record_ratio(
            sampler.ratio(
                "dispatch.hook_slot.pipe" + suffix,
                f"empty composite hook vs no hook, serve_pipe unary round trip ({clock} time)",
                "pipe, no hook",
                "pipe, empty hook",
                clock=clock,
            )
        )
    record_ratio(
        sampler.ratio(
            "dispatch.noop_hook.pipe.cpu",
            "one no-op hook vs no hook, serve_pipe unary round trip (process time)",
            "pipe, no hook",
            "pipe, no-op hook",
            note="informational: the hook machinery's own cost per call",
        )
    )
