"""The public ratio gate (``vgi_rpc.testing.bench``): verdicts, baseline errors, CLI, fixture, overhead pair.

Timing here is never asserted against a clock: the harness is fed either
recorded :class:`Ratio` values (the gate's logic) or CPU busy loops of known
relative cost (the sampler's), and the overhead pair is checked for what it
builds and records, with few rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.services import Calculator, CalculatorImpl

from vgi_rpc import RpcServer
from vgi_rpc.testing.bench import (
    Baseline,
    BaselineEntry,
    BaselineError,
    Interleaved,
    Ratio,
    RatioBenchmark,
    compare,
    exit_status,
    load_baseline,
    load_ratios,
    overhead_pair,
    remeasured,
    save_ratios,
    update_baseline,
)

pytest_plugins = ["pytester"]


def ratio(key: str, median: float, q1: float | None = None, q3: float | None = None, **kw: Any) -> Ratio:
    return Ratio(
        key=key, title="t", baseline="b", subject="s", median=median,
        q1=median * 0.99 if q1 is None else q1, q3=median * 1.01 if q3 is None else q3,
        baseline_value=100.0, subject_value=100.0 * median, rounds=30, **kw,
    )  # fmt: skip


def baseline(**entries: BaselineEntry) -> Baseline:
    return Baseline(Path("base.json"), dict(entries), {})


def burn(ns: int) -> None:
    """A time.sleep-free busy loop of known CPU cost."""
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


# -- verdicts -------------------------------------------------------------------------------


def test_regression_is_one_line_with_name_baseline_measured_and_allowed() -> None:
    verdicts = compare(
        baseline(**{"api.sentry": BaselineEntry(1.1, 0.2)}), {"api.sentry": ratio("api.sentry", 1.5)}
    )
    (v,) = verdicts
    assert v.failed and exit_status(verdicts) == 1
    assert str(v) == (
        "REGRESSION api.sentry: baseline 1.100x, measured 1.500x, allowed <=1.320x (+20%) "
        "[IQR 1.485-1.515, 30 rounds]"
    )
    assert "\n" not in str(v)


def test_within_the_limit_passes_and_the_limit_is_inclusive() -> None:
    entry = BaselineEntry(1.0, 0.25)
    verdicts = compare(baseline(k=entry), {"k": ratio("k", 1.25)})
    assert [v.status for v in verdicts] == ["pass"]
    assert exit_status(verdicts) == 0


def test_higher_is_better_ratios_fail_below_their_limit() -> None:
    entry = BaselineEntry(1.5, 0.1)
    ok = compare(baseline(peer=entry), {"peer": ratio("peer", 1.36, better="higher")})
    bad = compare(baseline(peer=entry), {"peer": ratio("peer", 1.30, better="higher")})
    assert ok[0].status == "pass"
    assert bad[0].status == "REGRESSION" and "allowed >=1.350x (-10%)" in bad[0].line


def test_noisy_rounds_are_said_not_hidden() -> None:
    """Bad input: an IQR wider than the tolerance band is reported NOISY (passing on its median) or as noisy regression."""
    entry = BaselineEntry(1.0, 0.1)
    (noisy,) = compare(baseline(k=entry), {"k": ratio("k", 1.05, q1=0.9, q3=1.2)})  # IQR 29% > 20% band
    assert noisy.status == "NOISY" and not noisy.failed
    assert "too noisy to judge" in noisy.line and "IQR is 29% of the median" in noisy.line
    (steady,) = compare(baseline(k=entry), {"k": ratio("k", 1.05, q1=0.96, q3=1.14)})  # 17% < 20%
    assert steady.status == "pass"
    (both,) = compare(baseline(k=entry), {"k": ratio("k", 1.5, q1=1.2, q3=1.8)})
    assert both.status == "REGRESSION" and "noisy too" in both.line


def test_ungated_new_and_missing_ratios() -> None:
    base = baseline(
        a=BaselineEntry(1.0, 0.1), b=BaselineEntry(2.0, 0.1, gated=False), c=BaselineEntry(1.0, 0.1)
    )
    measured = {"a": ratio("a", 1.0), "b": ratio("b", 9.0), "z": ratio("z", 3.0)}
    verdicts = {v.key: v for v in compare(base, measured)}
    assert verdicts["b"].status == "info" and verdicts["b"].line.endswith("(not gated)")
    assert verdicts["c"].status == "info" and "not measured" in verdicts["c"].line
    assert verdicts["z"].status == "new" and "add it with --update" in verdicts["z"].line
    assert exit_status(list(verdicts.values())) == 0
    strict = {v.key: v for v in compare(base, measured, require_all=True)}
    assert strict["c"].status == "MISSING" and strict["c"].failed


def test_a_baseline_for_other_benchmarks_or_nothing_measured_is_a_baseline_error() -> None:
    with pytest.raises(BaselineError, match=r"is for other benchmarks: it lists x, y; this run measured k"):
        compare(baseline(x=BaselineEntry(1, 0.1), y=BaselineEntry(1, 0.1)), {"k": ratio("k", 1.0)})
    with pytest.raises(BaselineError, match="no ratio was measured"):
        compare(baseline(x=BaselineEntry(1, 0.1)), {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist (write it with --update)"),
        ("{not json", "is unreadable: "),
        ('["a list"]', 'is not a baseline file: no "ratios" mapping'),
        ('{"ratios": {"k": {"value": "fast"}}}', "entry 'k' needs a positive numeric 'value'"),
        ('{"ratios": {"k": {"value": 1, "max_regression": -1}}}', "non-negative 'max_regression'"),
    ],
)
def test_unusable_baseline_files(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_baseline(path)


def test_update_writes_medians_keeps_other_keys_and_refuses_to_clobber(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    update_baseline(path, {"a": ratio("a", 1.23456)}, tolerance=0.3)
    assert json.loads(path.read_text())["ratios"] == {"a": {"max_regression": 0.3, "value": 1.2346}}
    doc = json.loads(path.read_text())
    doc["ratios"]["a"]["note"] = "kept"
    doc["ratios"]["a"]["gated"] = False
    path.write_text(json.dumps(doc))
    update_baseline(path, {"a": ratio("a", 2.0), "b": ratio("b", 3.0)})
    ratios = json.loads(path.read_text())["ratios"]
    assert ratios["a"] == {"max_regression": 0.3, "value": 2.0, "note": "kept", "gated": False}
    assert ratios["b"] == {"max_regression": 0.2, "value": 3.0}
    update_baseline(path, {"c": ratio("c", 1.0), "a": ratio("a", 1.5)}, add_new=False)
    assert "c" not in json.loads(path.read_text())["ratios"]
    path.write_text("{broken")
    with pytest.raises(BaselineError, match="unreadable"):
        update_baseline(path, {"a": ratio("a", 1.0)})
    assert path.read_text() == "{broken"


def test_a_re_measurement_replaces_only_the_ratio_it_confirms() -> None:
    """The retry of a failing ratio re-runs its test, which records its other ratios too: those keep their first value."""
    first = {"t.fast": ratio("t.fast", 1.0), "t.slow": ratio("t.slow", 2.0), "u.other": ratio("u.other", 1.1)}
    again = {"t.fast": ratio("t.fast", 9.0), "t.slow": ratio("t.slow", 1.05)}
    merged = remeasured(first, again, ["t.slow"])
    assert {k: r.median for k, r in merged.items()} == {"t.fast": 1.0, "t.slow": 1.05, "u.other": 1.1}
    assert list(merged) == list(first)  # the report keeps its order
    assert remeasured(first, {}, ["t.slow"])["t.slow"].median == 2.0  # not re-measured: the first value stays
    assert first["t.slow"].median == 2.0  # the input is not modified


def _bench_check() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_check.py"
    spec = importlib.util.spec_from_file_location("bench_check_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_check_confirms_a_failure_without_replacing_the_tests_other_ratios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/bench_check.py: a ratio over its limit is re-measured; the re-run replaces that ratio alone.

    Both ratios come from one test. The first run: ``t.slow`` over its limit,
    ``t.fast`` fine. The re-run (the same test): ``t.slow`` fine, ``t.fast`` over
    its limit -- one noisy run. The check passes on ``t.fast``'s first value.
    Before the fix the re-run replaced both and the check failed on ``t.fast``.
    """
    bench_check = _bench_check()
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps({"ratios": {"t.fast": {"value": 1.0}, "t.slow": {"value": 1.0}}}))
    runs = iter(
        [
            {"t.fast": 1.0, "t.slow": 1.5},  # the gated run
            {"t.fast": 1.5, "t.slow": 1.0},  # the re-run of that one test
        ]
    )
    selected: list[list[str]] = []

    def run_benchmarks(out: Path, *, selectors: list[str], profile: str) -> None:
        selected.append(selectors)
        medians = next(runs)
        save_ratios(out, [ratio(k, m, test="bench/test_x.py::test_both") for k, m in medians.items()], profile=profile)

    monkeypatch.setattr(bench_check, "run_benchmarks", run_benchmarks)
    assert bench_check.main(["--baseline", str(base), "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert selected == [[], ["bench/test_x.py::test_both"]]
    assert "t.slow over the limit; measuring once more" in out
    assert "pass       t.fast: baseline 1.000x, measured 1.000x" in out
    assert "pass       t.slow: baseline 1.000x, measured 1.000x" in out
    assert "(re-measured: t.slow)" in out


# -- the CLI -------------------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vgi_rpc.testing.bench", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_exit_statuses_and_lines(tmp_path: Path) -> None:
    """0 pass, 1 regression (one line each), 2 baseline missing/unreadable/for other benchmarks; never a traceback."""
    ratios = tmp_path / "ratios.json"
    save_ratios(ratios, [ratio("api.sentry", 1.12), ratio("api.otel", 1.9)], profile="test")
    base = tmp_path / "baseline.json"

    missing = run_cli(ratios, "--baseline", base)
    assert missing.returncode == 2
    assert (
        missing.stderr.strip() == f"ratio gate: ratio baseline {base} does not exist (write it with --update)"
    )

    wrote = run_cli(ratios, "--baseline", base, "--update", "--tolerance", "0.1")
    assert wrote.returncode == 0 and "wrote 2 ratio(s)" in wrote.stdout
    ok = run_cli(ratios, "--baseline", base)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ratio gate: OK (2 gated ratio(s) within their limits)" in ok.stdout

    slower = tmp_path / "slower.json"
    save_ratios(slower, [ratio("api.sentry", 1.5), ratio("api.otel", 1.9)], profile="test")
    bad = run_cli(slower, "--baseline", base)
    assert bad.returncode == 1
    (line,) = [x for x in bad.stdout.splitlines() if "REGRESSION" in x]
    assert "api.sentry: baseline 1.120x, measured 1.500x, allowed <=1.232x (+10%)" in line
    assert "ratio gate: FAILED: api.sentry" in bad.stdout

    other = tmp_path / "other.json"
    save_ratios(other, [ratio("else.x", 1.0)], profile="test")
    assert run_cli(other, "--baseline", base).returncode == 2
    base.write_text("{")
    broken = run_cli(ratios, "--baseline", base)
    assert broken.returncode == 2 and "unreadable" in broken.stderr
    not_ratios = tmp_path / "not-ratios.json"
    not_ratios.write_text("[]")
    assert run_cli(not_ratios, "--baseline", base).returncode == 2
    for proc in (missing, broken):
        assert "Traceback" not in proc.stderr + proc.stdout


def test_ratio_files_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    save_ratios(path, [ratio("a", 1.5, better="higher")], profile="p")
    (loaded,) = load_ratios(path).values()
    assert (loaded.key, loaded.median, loaded.better) == ("a", 1.5, "higher")


# -- the sampler and the fixture ---------------------------------------------------------


def test_interleaved_ratio_of_busy_loops_of_known_cost() -> None:
    """The sampler's ratio is the relative CPU cost: a loop burning 3x as long measures about 3x."""
    sampler = Interleaved(
        {
            "one": lambda n: [burn(200_000) for _ in range(n)],
            "three": lambda n: [burn(600_000) for _ in range(n)],
        },
        ops=2,
        clock="thread",
    )
    sampler.run(9, warmup=1)
    r = sampler.ratio("k", "t", "one", "three")
    assert 2.5 < r.median < 3.6, r
    assert r.rounds == 9 and r.q1 <= r.median <= r.q3


def test_ratio_benchmark_fixture_records_the_ratio(ratio_benchmark: RatioBenchmark) -> None:
    r = ratio_benchmark(
        "kit.busy", baseline=lambda: burn(100_000), subject=lambda: burn(200_000), ops=2, rounds=5, warmup=1
    )
    assert r.test.endswith("test_ratio_benchmark_fixture_records_the_ratio")
    assert ratio_benchmark.ratios == [r]
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


def test_overhead_measures_the_sentry_hook(ratio_benchmark: RatioBenchmark) -> None:
    """The ready-made pair on a real serve_pipe call (few rounds: the value is shown, not asserted)."""
    from vgi_rpc.sentry import SentryConfig

    r = ratio_benchmark.overhead(
        "kit.sentry", calc, lambda proxy: proxy.add(a=1, b=2), config=SentryConfig(), ops=5, rounds=5
    )
    assert (r.key, r.baseline, r.subject) == ("kit.sentry", "without Sentry hook", "with Sentry hook")
    assert (r.rounds, r.ops, r.clock) == (5, 5, "process") and r.median > 0
    assert ratio_benchmark.ratios == [r]


def test_overhead_measures_the_otel_hook_once_per_test(ratio_benchmark: RatioBenchmark) -> None:
    r = ratio_benchmark.overhead(
        "kit.otel", calc, lambda p: p.add(a=1, b=2), instrument="otel", ops=5, rounds=5
    )
    assert (r.baseline, r.subject) == ("without OTel hook", "with OTel hook") and r.median > 0
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


# -- the pytest options, from a user's project -----------------------------------------------

_USER_BENCH = """
import os
import time


def burn(ns):
    end = time.process_time_ns() + ns
    while time.process_time_ns() < end:
        pass


def ping():
    burn(100_000)


def pay():
    burn(100_000 + int(os.environ.get("PAY_EXTRA_NS", "0")))


def test_pay_vs_ping(ratio_benchmark):
    ratio_benchmark("svc.pay", baseline=ping, subject=pay, ops=2, rounds=5, warmup=1)
"""


@pytest.mark.timeout(600)  # six pytest subprocesses: a loaded 2-core machine needs more than the default
def test_pytest_gate_update_pass_regression_and_baseline_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate from a project's side: --ratio-update, a pass, a one-line regression (exit 1), baseline errors (exit 2)."""
    pytester.makepyfile(test_bench=_USER_BENCH)
    base = pytester.path / "ratios-baseline.json"
    args = ("-p", "no:cacheprovider", "-q", "--benchmark-disable-gc", f"--ratio-baseline={base}")

    missing = pytester.runpytest_subprocess(*args)
    assert missing.ret == 2
    missing.stdout.fnmatch_lines(
        [f"ratio gate: ratio baseline {base} does not exist (write it with --update)"]
    )

    assert pytester.runpytest_subprocess(*args, "--ratio-update").ret == 0
    written = json.loads(base.read_text())["ratios"]
    assert set(written) == {"svc.pay"} and written["svc.pay"]["max_regression"] == 0.2
    # What a clean run and a slowed one are judged against, independent of this run's noise:
    # pay() and ping() burn the same CPU time, so the clean ratio is about 1.0; allowing up
    # to 2.0 (and calling rounds noisy only past a 200% IQR) leaves a loaded machine room,
    # while a pay() costing 20x ping() is far beyond it.
    base.write_text(json.dumps({"ratios": {"svc.pay": {"value": 1.0, "max_regression": 1.0}}}))
    clean = pytester.runpytest_subprocess(*args)
    assert clean.ret == 0, clean.stdout.str()
    clean.stdout.fnmatch_lines(
        ["  pass       svc.pay: baseline 1.000x, measured *, allowed <=2.000x (+100%)*", "ratio gate: OK (1 gated*"]
    )

    monkeypatch.setenv("PAY_EXTRA_NS", "1900000")  # pay() now costs 20x ping()
    slow = pytester.runpytest_subprocess(*args)
    assert slow.ret == 1, slow.stdout.str()
    lines = [x for x in slow.stdout.lines if "svc.pay" in x and "REGRESSION" in x]
    assert len(lines) == 1 and "allowed <=2.000x" in lines[0]
    assert "Traceback" not in slow.stdout.str()
    monkeypatch.delenv("PAY_EXTRA_NS")

    base.write_text(json.dumps({"ratios": {"other.thing": {"value": 1.0}}}))
    other = pytester.runpytest_subprocess(*args)
    assert other.ret == 2
    other.stdout.fnmatch_lines(
        ["ratio gate: ratio baseline * is for other benchmarks: it lists other.thing;*"]
    )

    usage = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ratio-update")
    assert usage.ret == pytest.ExitCode.USAGE_ERROR
    usage.stderr.fnmatch_lines(["*--ratio-update needs --ratio-baseline FILE*"])


def test_a_failing_test_keeps_its_exit_status_and_ratios_json_is_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=_USER_BENCH + "\n\ndef test_broken():\n    assert False\n")
    out = pytester.path / "ratios.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", f"--ratios-json={out}")
    assert result.ret == 1
    assert set(load_ratios(out)) == {"svc.pay"}


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
    assert update.ret == 0, update.stdout.str()
    stored = json.loads((pytester.path / "benchmarks" / "ratios.json").read_text())["ratios"]
    assert set(stored) == {"orders.find.sentry", "orders.find.otel"}
    assert gate.ret == 0, gate.stdout.str()
    gate.stdout.fnmatch_lines(
        ["== ratio gate: measured ratios vs benchmarks/ratios.json ==", "ratio gate: OK (2 *"]
    )
