"""Gate instrumentation overhead in CI with same-run ratios (the kit's ``ratio_benchmark``).

Absolute benchmark times move from run to run and machine to machine -- a
shared CI runner easily varies by 2x -- so comparing them with last week's
numbers (pytest-benchmark's ``--benchmark-compare-fail``) fails at random.  A
**ratio measured within one run** (``subject / baseline``, both timed in
interleaved rounds, the median of the per-round ratios) holds, because
whatever slows the machine slows both.  This package is the harness vgi_rpc's
own ``make bench-check`` uses:

* :class:`Interleaved` / :class:`Ratio` -- the sampler and its record;
* the ``ratio_benchmark`` pytest fixture (:class:`RatioBenchmark`, on top of
  pytest-benchmark) -- ``ratio_benchmark("key", baseline=f, subject=g)`` and
  :meth:`RatioBenchmark.overhead`, the ready-made "what does the Sentry (or
  OTel) hook cost *my* call" pair;
* the gate: ``pytest --ratio-baseline FILE`` (or
  ``python -m vgi_rpc.testing.bench RATIOS.json --baseline FILE``) compares
  with a committed baseline file -- one line per ratio; exit status 1 on a
  regression, 2 when the baseline is missing, unreadable or for other
  benchmarks; ``--ratio-update`` / ``--update`` writes it.

Example (a complete test module; docs/testing.md has the walk-through)::

    def test_sentry_hook_cost(ratio_benchmark):
        ratio = ratio_benchmark.overhead(
            "checkout.sentry", lambda: RpcServer(Checkout, CheckoutImpl()),
            lambda proxy: proxy.pay(order_id="A-1", amount=5),
        )
        assert ratio.rounds == 30

Caveats:

* **A ratio is only as good as its baseline.** Pick a baseline that does the
  same work minus what you gate on (the same call without the hook), so the
  ratio moves only when that part gets slower.
* **Noise is reported, not hidden.** A ratio whose rounds spread wider than
  the tolerance band (IQR relative to the median above ``2 *
  max_regression``) is reported ``NOISY``: it passes on its median, with a
  line saying the evidence is weak; a noisy ratio over its limit fails like
  any other.
* **CPU clocks by default.** The fixture times the whole process's CPU time
  (``clock="process"``), blind to other processes but counting every thread
  of yours: a busy background thread of your test inflates both variants.
* **Benchmarks are slow tests.** Keep them out of the unit-test run (a
  separate directory or ``-m`` marker) and bound them with ``ops``/``rounds``.
"""

from __future__ import annotations

from vgi_rpc.testing.bench._gate import (
    DEFAULT_TOLERANCE,
    Baseline,
    BaselineEntry,
    BaselineError,
    Verdict,
    compare,
    exit_status,
    load_baseline,
    main,
    remeasured,
    report,
    update_baseline,
)
from vgi_rpc.testing.bench._overhead import Instrument, OverheadPair, ServerSource, overhead_pair
from vgi_rpc.testing.bench._report import (
    environment,
    load_ratios,
    render_table,
    run_with_benchmark,
    save_ratios,
)
from vgi_rpc.testing.bench._runner import RatioBenchmark
from vgi_rpc.testing.bench._sampler import Interleaved, Ratio, Variant, one_cpu, quartiles

__all__ = [
    "DEFAULT_TOLERANCE",
    "Baseline",
    "BaselineEntry",
    "BaselineError",
    "Instrument",
    "Interleaved",
    "OverheadPair",
    "Ratio",
    "RatioBenchmark",
    "ServerSource",
    "Variant",
    "Verdict",
    "compare",
    "environment",
    "exit_status",
    "load_baseline",
    "load_ratios",
    "main",
    "one_cpu",
    "overhead_pair",
    "quartiles",
    "remeasured",
    "render_table",
    "report",
    "run_with_benchmark",
    "save_ratios",
    "update_baseline",
]
