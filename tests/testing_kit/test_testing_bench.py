"""The public ratio gate (``vgi_rpc.testing.bench``): verdicts, baseline files, clocks, the gate item, the overhead pair.

No timing is asserted against a clock: the gate's logic is fed recorded
:class:`Ratio` values; the sampler is fed variants of known relative cost (CPU
busy loops, a 2 ms sleep against a no-op); the gate item runs in pytester
projects whose subjects differ by far more than any machine's noise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from support.services import Calculator, CalculatorImpl

from vgi_rpc import RpcServer
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark, overhead_pair
from vgi_rpc.testing.bench._gate import BaselineError, judge, load_baseline, update_baseline

pytest_plugins = ["pytester"]


def ratio(key: str, median: float, q1: float | None = None, q3: float | None = None, **kw: Any) -> Ratio:
    return Ratio(
        key=key, title="t", baseline="b", subject="s", median=median,
        q1=median * 0.99 if q1 is None else q1, q3=median * 1.01 if q3 is None else q3,
        baseline_value=100.0, subject_value=100.0 * median, rounds=30, clock="process", **kw,
    )  # fmt: skip


def entries(**values: dict[str, Any]) -> dict[str, Any]:
    return {k: {"max_regression": 0.2, "gated": True, **v} for k, v in values.items()}


def burn(ns: int) -> None:
    """A busy loop of known CPU cost."""
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


# -- verdicts -------------------------------------------------------------------------------


def test_regression_is_one_line_with_name_baseline_measured_and_allowed() -> None:
    failed, text = judge(Path("b.json"), entries(api={"value": 1.1}), {"api": ratio("api", 1.5)})
    assert failed == ["api"]
    assert text.splitlines() == [
        "ratio gate vs b.json: FAILED: api",
        "  REGRESSION api: baseline 1.100x, measured 1.500x, allowed <=1.320x (+20%) "
        "[IQR 1.485-1.515, 30 rounds, process]",
    ]


def test_within_the_limit_passes_and_the_limit_is_inclusive() -> None:
    failed, text = judge(
        Path("b"), entries(k={"value": 1.0, "max_regression": 0.25}), {"k": ratio("k", 1.25)}
    )
    assert failed == [] and "  pass       k: " in text and text.startswith("ratio gate vs b: OK (1 gated")


def test_higher_is_better_ratios_fail_below_their_limit() -> None:
    base = entries(peer={"value": 1.5, "max_regression": 0.1})
    assert judge(Path("b"), base, {"peer": ratio("peer", 1.36, better="higher")})[0] == []
    failed, text = judge(Path("b"), base, {"peer": ratio("peer", 1.30, better="higher")})
    assert failed == ["peer"] and "allowed >=1.350x (-10%)" in text


def test_noisy_rounds_are_said_not_hidden() -> None:
    """An IQR wider than the tolerance band is reported NOISY (passing on its median), or as a noisy regression."""
    base = entries(k={"value": 1.0, "max_regression": 0.1})
    failed, text = judge(Path("b"), base, {"k": ratio("k", 1.05, q1=0.9, q3=1.2)})  # IQR 29% > 20% band
    assert failed == [] and "NOISY" in text and "IQR 29% of the median: too noisy to judge" in text
    assert "pass" in judge(Path("b"), base, {"k": ratio("k", 1.05, q1=0.96, q3=1.14)})[1]  # 17% < 20%
    failed, text = judge(Path("b"), base, {"k": ratio("k", 1.5, q1=1.2, q3=1.8)})
    assert failed == ["k"] and "noisy too" in text


def test_ungated_new_and_missing_ratios() -> None:
    base = entries(
        a={"value": 1.0}, b={"value": 2.0, "gated": False}, c={"value": 1.0}, d={"value": 1, "gated": False}
    )
    failed, text = judge(Path("b"), base, {"a": ratio("a", 1.0), "b": ratio("b", 9.0), "z": ratio("z", 3.0)})
    lines = {line.split()[1].rstrip(":"): line.split()[0] for line in text.splitlines()[1:]}
    assert lines == {"a": "pass", "b": "info", "c": "MISSING"}  # d (not gated) and z (not in it): not listed
    assert failed == ["c"] and text.startswith("ratio gate vs b: FAILED: c")


def test_a_baseline_for_other_benchmarks_or_nothing_measured_is_a_baseline_error() -> None:
    with pytest.raises(BaselineError, match=r"is for other benchmarks: it lists x, y; this run measured k"):
        judge(Path("b"), entries(x={"value": 1}, y={"value": 1}), {"k": ratio("k", 1.0)})
    with pytest.raises(BaselineError, match="no ratio was measured"):
        judge(Path("b"), entries(x={"value": 1}), {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist (write it with --ratio-update)"),
        ("{not json", "is unreadable: "),
        ('["a list"]', 'is not a baseline file: no "ratios" mapping'),
        ('{"ratios": {"k": {"value": "fast"}}}', "'k' needs a positive 'value'"),
        ('{"ratios": {"k": {"value": 1, "max_regression": -1}}}', "non-negative 'max_regression'"),
    ],
)
def test_unusable_baseline_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_baseline(path)


def test_update_writes_medians_keeps_thresholds_and_other_keys_and_refuses_to_clobber(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    update_baseline(path, {"a": ratio("a", 1.23456)}, 0.3)
    assert json.loads(path.read_text())["ratios"] == {"a": {"max_regression": 0.3, "value": 1.2346}}
    doc = json.loads(path.read_text())
    doc["ratios"]["a"].update(note="kept", gated=False)
    path.write_text(json.dumps(doc))
    update_baseline(path, {"a": ratio("a", 2.0), "b": ratio("b", 3.0)})
    ratios = json.loads(path.read_text())["ratios"]
    assert ratios["a"] == {"max_regression": 0.3, "value": 2.0, "note": "kept", "gated": False}
    assert ratios["b"] == {"max_regression": 0.2, "value": 3.0}
    path.write_text("{broken")
    with pytest.raises(BaselineError, match="unreadable"):
        update_baseline(path, {"a": ratio("a", 1.0)})
    assert path.read_text() == "{broken"


# -- the sampler, its clocks and the fixture ------------------------------------------------


def test_interleaved_ratio_of_busy_loops_of_known_cost() -> None:
    """The sampler's ratio is the relative CPU cost: a loop burning 3x as long measures about 3x."""
    loops = {
        "one": lambda n: [burn(200_000) for _ in range(n)],
        "three": lambda n: [burn(600_000) for _ in range(n)],
    }
    sampler = Interleaved(loops, ops=2, clock="thread")
    sampler.run(9, warmup=1)
    r = sampler.ratio("k", "t", "one", "three")
    assert 2.5 < r.median < 3.6, r
    assert r.rounds == 9 and r.q1 <= r.median <= r.q3 and r.clock == "thread"


def test_the_default_clock_sees_waiting_that_cpu_time_does_not() -> None:
    """A 2 ms sleep against a no-op: CPU time sees (nearly) nothing, wall time sees it, and "both" takes the wall."""
    variants = {"noop": lambda n: None, "sleep": lambda n: [time.sleep(0.002) for _ in range(n)]}
    sampler = Interleaved(variants, ops=2, clock="both")
    sampler.run(5)
    both = sampler.ratio("k", "t", "noop", "sleep")
    assert both.clock == "both:wall" and both.median > 100, both  # 2 ms against well under 20 us
    assert both.median == sampler.ratio("k", "t", "noop", "sleep", clock="wall").median
    assert Interleaved(variants, ops=2, clock="process").clock == "process"


def test_ratio_benchmark_fixture_records_the_ratio(ratio_benchmark: RatioBenchmark) -> None:
    r = ratio_benchmark(
        "kit.busy", baseline=lambda: burn(100_000), subject=lambda: burn(200_000), ops=2, rounds=5, warmup=1
    )
    assert r.test.endswith("test_ratio_benchmark_fixture_records_the_ratio")
    assert r.clock in ("both:process", "both:wall")
    assert 1.5 < r.median < 2.6
    assert ratio_benchmark.benchmark.extra_info["ratios"]["kit.busy"]["median"] == r.median


# -- the overhead pair -----------------------------------------------------------------------


def calc() -> RpcServer:
    return RpcServer(Calculator, CalculatorImpl())


def test_overhead_pair_builds_a_hookless_baseline_and_an_instrumented_subject() -> None:
    with overhead_pair(calc, instrument="sentry") as pair:
        assert pair.baseline.add(a=1, b=2) == pair.subject.add(a=1, b=2) == 3
        assert (pair.baseline_label, pair.subject_label) == ("without Sentry hook", "with Sentry hook")
    with overhead_pair(calc(), instrument="otel") as pair:  # a server instance is rebuilt from its parts
        pair.subject.add(a=1, b=2)
        pair.baseline.add(a=1, b=2)
        (span,) = pair.capture.spans  # only the instrumented server reports
        assert span.name == "vgi_rpc/add"
        pair.between()
        assert pair.capture.spans == []


def test_overhead_runs_under_an_in_memory_capture_with_sentry_options(
    ratio_benchmark: RatioBenchmark,
) -> None:
    """The ready-made pair on a real serve_pipe call; ``sentry_options=`` reach the capture's ``sentry_sdk.init``."""
    import sentry_sdk

    from vgi_rpc.sentry import SentryConfig

    seen: list[str] = []

    def call(proxy: Any) -> None:
        proxy.add(a=1, b=2)
        seen.append(str(sentry_sdk.get_client().options["environment"]))

    r = ratio_benchmark.overhead(
        "kit.sentry",
        calc,
        call,
        config=SentryConfig(),
        sentry_options={"environment": "bench"},
        ops=5,
        rounds=5,
    )
    assert (r.key, r.baseline, r.subject) == ("kit.sentry", "without Sentry hook", "with Sentry hook")
    assert (r.rounds, r.ops) == (5, 5) and r.clock.startswith("both:") and r.median > 0
    assert set(seen) == {"bench"}


def test_overhead_measures_the_otel_hook_once_per_test(ratio_benchmark: RatioBenchmark) -> None:
    r = ratio_benchmark.overhead(
        "kit.otel", calc, lambda p: p.add(a=1, b=2), instrument="otel", clock="process", ops=5, rounds=5
    )
    assert (r.baseline, r.subject, r.clock) == (
        "without OTel hook",
        "with OTel hook",
        "process",
    ) and r.median > 0
    with pytest.raises(RuntimeError, match="ratio_benchmark measures once per test"):
        ratio_benchmark("again", baseline=lambda: None, subject=lambda: None)


def test_overhead_pair_bad_arguments() -> None:
    from vgi_rpc.otel import OtelConfig

    with pytest.raises(TypeError, match="instrument='sentry' takes a SentryConfig, got OtelConfig"):
        overhead_pair(calc, config=OtelConfig()).__enter__()
    with pytest.raises(TypeError, match="must return an RpcServer, got str"):
        overhead_pair(lambda: "nope", instrument=lambda s: s).__enter__()  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="no more hooks than the baseline"):
        overhead_pair(calc, instrument=lambda s: s).__enter__()
    with pytest.raises(ValueError, match="transport must be 'pipe' or 'http'"):
        overhead_pair(calc, instrument="otel", transport="smoke").__enter__()  # type: ignore[arg-type]


def test_overhead_with_a_custom_instrument_over_http(ratio_benchmark: RatioBenchmark) -> None:
    """Your own hook, on a real waitress server on 127.0.0.1."""

    class Counting:
        calls = 0

        def on_dispatch_start(self, info: Any, auth: Any, md: Any, kwargs: Any) -> object:
            Counting.calls += 1
            return None

        def on_dispatch_end(self, token: object, info: Any, error: Any) -> None:
            return None

    def instrument(server: RpcServer) -> RpcServer:
        server.add_hook(Counting())
        return server

    r = ratio_benchmark.overhead(
        "kit.custom", calc, lambda p: p.add(a=1, b=2), instrument=instrument, transport="http", ops=3, rounds=3,
        http_options={"token_key": b"k" * 32},
    )  # fmt: skip
    assert (r.baseline, r.subject) == ("without your hook", "with your hook")
    assert Counting.calls == 1 + 3 * (3 + 3)  # the check call, then warm-up and timed rounds


# -- the gate item, from a user's project ------------------------------------------------------

_HOOKED = """
import os
import time

from vgi_rpc import RpcServer
from support.services import Calculator, CalculatorImpl

SLEEP = float(os.environ.get("HOOK_SLEEP_S", "0"))


class AuditHook:
    def on_dispatch_start(self, info, auth, md, kwargs):
        if SLEEP:
            time.sleep(SLEEP)  # a blocking audit write: waiting, not CPU work

    def on_dispatch_end(self, token, info, error):
        pass


def instrument(server):
    server.add_hook(AuditHook())
    return server


def test_audit_hook_cost(ratio_benchmark):
    ratio_benchmark.overhead(
        "calc.audit", lambda: RpcServer(Calculator, CalculatorImpl()), lambda p: p.add(a=1, b=2),
        instrument=instrument, rounds=15, ops=10,
    )
"""


def _support_path(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))


@pytest.mark.timeout(300)
def test_the_gate_fails_for_a_2ms_sleeping_hook_and_passes_for_a_no_op_hook(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19's acceptance: on the default clock a hook that waits 2 ms per call fails the gate, in pytest's summary.

    The baseline says the hook costs nothing (1.0x) and allows +50 %: a no-op hook
    measures about 1.0x even with the machine busy, a 2 ms sleep on a call of a
    few hundred microseconds several times that (3.4-10x measured; CPU time alone
    missed it).
    """
    _support_path(pytester, monkeypatch)
    pytester.makepyfile(test_bench=_HOOKED)
    (pytester.path / "base.json").write_text(
        '{"ratios": {"calc.audit": {"value": 1.0, "max_regression": 0.5}}}'
    )
    args = ("-p", "no:cacheprovider", "-q", "--ratio-baseline=base.json")

    noop = pytester.runpytest_subprocess(*args)
    noop.assert_outcomes(passed=2)
    noop.stdout.fnmatch_lines(
        ["ratio gate vs base.json: OK (1 gated ratio(s) within their limits)", "2 passed in *"]
    )

    monkeypatch.setenv("HOOK_SLEEP_S", "0.002")
    sleepy = pytester.runpytest_subprocess(*args)
    sleepy.assert_outcomes(passed=1, failed=1)
    assert sleepy.ret == pytest.ExitCode.TESTS_FAILED
    sleepy.stdout.fnmatch_lines(
        [
            "*_ ratio-gate _*",
            "ratio gate vs base.json: FAILED: calc.audit",
            "  REGRESSION calc.audit: baseline 1.000x, measured *x, allowed <=1.500x (+50%) *, both:wall]*",
            "(re-measured to confirm: calc.audit)",
            "FAILED ratio-gate - *ratio gate vs base.json: FAILED: calc.audit",
            "1 failed, 1 passed in *",
        ]
    )
    assert "Traceback" not in sleepy.stdout.str()


_RECORDED = """
import json
from pathlib import Path

from vgi_rpc.testing.bench import Ratio

RUNS = Path(__file__).with_name("runs.txt")


def test_both(ratio_benchmark):
    runs = int(RUNS.read_text()) if RUNS.exists() else 0
    RUNS.write_text(str(runs + 1))
    ratio_benchmark("t.real", baseline=lambda: None, subject=lambda: None, rounds=3, ops=1)
    medians = [{"t.fast": 1.0, "t.slow": 1.5}, {"t.fast": 1.5, "t.slow": 1.0}][min(runs, 1)]
    for key, median in medians.items():
        ratio_benchmark.record(Ratio(key, "t", "b", "s", median, median, median, 1.0, median, rounds=3))


def test_other():
    pass
"""


@pytest.mark.timeout(300)
def test_a_failing_ratio_is_re_measured_and_only_it_takes_the_new_value(pytester: pytest.Pytester) -> None:
    """The confirm step: the failing ratio's test runs once more; its other ratios keep their first value, in the JSON too.

    First run: ``t.slow`` over its limit, ``t.fast`` fine.  The re-run (the same
    test): ``t.slow`` fine, ``t.fast`` over -- one noisy run; the gate passes on
    ``t.fast``'s first value.  ``--ratio-no-retry`` reports the first measurement.
    """
    pytester.makepyfile(test_bench=_RECORDED)
    (pytester.path / "base.json").write_text(
        json.dumps({"ratios": {"t.fast": {"value": 1.0}, "t.slow": {"value": 1.0}}})
    )
    result = pytester.runpytest_subprocess("-q", "--ratio-baseline=base.json", "--benchmark-json=out.json")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        ["ratio gate vs base.json: OK (2 gated*", "  pass       t.fast: baseline 1.000x, measured 1.000x*",
         "  pass       t.slow: baseline 1.000x, measured 1.000x*",
         "(re-measured to confirm: t.slow)"]
    )  # fmt: skip
    assert (pytester.path / "runs.txt").read_text() == "2"
    doc = json.loads((pytester.path / "out.json").read_text())
    (bench,) = doc["benchmarks"]  # one entry per test: the re-run's is folded into the first
    assert bench["extra_info"]["ratios"]["t.fast"]["median"] == 1.0
    assert (
        bench["extra_info"]["ratios"]["t.slow"]["median"] == 1.0
        and bench["extra_info"]["ratios"]["t.slow"]["remeasured"]
    )
    assert doc["machine_info"]["python_version"]  # pytest-benchmark's own machine info

    (pytester.path / "runs.txt").unlink()
    strict = pytester.runpytest_subprocess("-q", "--ratio-baseline=base.json", "--ratio-no-retry")
    strict.assert_outcomes(passed=2, failed=1)
    assert (pytester.path / "runs.txt").read_text() == "1"


_BURN = """
import os
import time


def burn(ns):
    end = time.process_time_ns() + ns
    while time.process_time_ns() < end:
        pass


def test_pay_vs_ping(ratio_benchmark):
    extra = int(os.environ.get("PAY_EXTRA_NS", "0"))
    ratio_benchmark("svc.pay", baseline=lambda: burn(100_000), subject=lambda: burn(100_000 + extra), ops=2, rounds=5)
"""


@pytest.mark.timeout(600)
def test_gate_update_pass_regression_and_baseline_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ratio-update, a pass, a regression and the baseline problems: each a passed or failed gate item, never a traceback."""
    pytester.makepyfile(test_bench=_BURN)
    args = ("-p", "no:cacheprovider", "-q", "--ratio-baseline=base.json")

    missing = pytester.runpytest_subprocess(*args)
    missing.assert_outcomes(passed=1, failed=1)
    missing.stdout.fnmatch_lines(
        ["ratio gate: ratio baseline base.json does not exist (write it with --ratio-update)"]
    )

    pytester.runpytest_subprocess(*args, "--ratio-update").assert_outcomes(passed=2)
    written = json.loads((pytester.path / "base.json").read_text())["ratios"]
    assert set(written) == {"svc.pay"} and written["svc.pay"]["max_regression"] == 0.2
    # Judged against 1.0x allowing +100 %: pay() and ping() burn the same CPU; 20x is far beyond.
    (pytester.path / "base.json").write_text('{"ratios": {"svc.pay": {"value": 1.0, "max_regression": 1.0}}}')
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=2)
    monkeypatch.setenv("PAY_EXTRA_NS", "1900000")
    slow = pytester.runpytest_subprocess(*args, "--ratio-no-retry")
    slow.assert_outcomes(passed=1, failed=1)
    # one regression, reported once (the short summary may repeat the message, depending on pytest's version)
    assert len({x.strip() for x in slow.stdout.lines if x.lstrip().startswith("REGRESSION svc.pay")}) == 1
    monkeypatch.delenv("PAY_EXTRA_NS")

    (pytester.path / "base.json").write_text('{"ratios": {"other.thing": {"value": 1.0}}}')
    other = pytester.runpytest_subprocess(*args)
    other.assert_outcomes(passed=1, failed=1)
    other.stdout.fnmatch_lines(
        ["ratio gate: ratio baseline base.json is for other benchmarks: it lists other.thing;*"]
    )
    for result in (missing, slow, other):
        assert "Traceback" not in result.stdout.str()

    usage = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ratio-update")
    assert usage.ret == pytest.ExitCode.USAGE_ERROR
    usage.stderr.fnmatch_lines(["*--ratio-update needs --ratio-baseline FILE*"])

    old = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--ratios-json=old.json")
    old.assert_outcomes(passed=1, warnings=1)
    assert (
        "svc.pay"
        in json.loads((pytester.path / "old.json").read_text())["benchmarks"][0]["extra_info"]["ratios"]
    )
    old.stdout.fnmatch_lines(["*PytestDeprecationWarning: use --benchmark-json*"])


def test_docs_gate_section_runs_as_written(pytester: pytest.Pytester) -> None:
    """docs/testing.md "Gate instrumentation overhead in CI": its module and both commands, in a fresh project."""
    import re

    docs = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text(encoding="utf-8")
    section = docs.split("## Gate instrumentation overhead in CI", 1)[1].split("\n## ", 1)[0]
    (module,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    (commands,) = re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    (pytester.path / "benchmarks").mkdir()
    (pytester.path / "benchmarks" / "test_overhead.py").write_text(module)
    results = []
    for line in commands.strip().splitlines():
        argv = line.split()
        assert argv[0] == "pytest"
        results.append(pytester.runpytest_subprocess("-p", "no:cacheprovider", *argv[1:]))
    update, gate = results
    update.assert_outcomes(passed=3)
    stored = json.loads((pytester.path / "benchmarks" / "ratios.json").read_text())["ratios"]
    assert set(stored) == {"orders.find.sentry", "orders.find.otel"}
    gate.assert_outcomes(passed=3)
    gate.stdout.fnmatch_lines(["ratio gate vs benchmarks/ratios.json: OK (2 *"])
