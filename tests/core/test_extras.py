"""A missing optional dependency fails with an ImportError that names the extra to install.

Each case runs in a fresh interpreter in which the package really cannot be
imported (``support.missing.run_without``: an import blocker on ``sys.meta_path``
makes ``import falcon`` -- or ``sentry_sdk``, ``syrupy``, ``opentelemetry`` --
fail exactly as it fails where the package is not installed).  Nothing of
Sentry is mocked: the blocked package is simply absent.  The acceptance suite
(``tests/testing_kit/test_user_project_snapshots_and_extras.py``) repeats the user-facing cases in a venv built
from a non-editable install, where OpenTelemetry is absent for real.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from support.missing import run_without

from vgi_rpc._extras import EXTRAS, MissingExtraError, require

pytest_plugins = ["pytester"]

CASES = [
    ("falcon", "import vgi_rpc.http", "vgi_rpc.http", "http"),
    ("waitress", "from vgi_rpc.http import serve_http", "vgi_rpc.http", "http"),
    ("httpx", "import vgi_rpc.http", "vgi_rpc.http", "http"),
    ("joserfc", "from vgi_rpc.http import jwt_authenticator", "vgi_rpc.http", "http"),
    ("opentelemetry", "import vgi_rpc.otel", "vgi_rpc.otel", "otel"),
    (
        "sentry_sdk",
        "from vgi_rpc.testing import sentry_capture\nsentry_capture().__enter__()",
        "sentry_capture",
        "sentry",
    ),
    (
        "sentry_sdk",
        "from vgi_rpc.testing import InMemoryTransport",
        "vgi_rpc.testing.InMemoryTransport",
        "sentry",
    ),
    ("syrupy", "import vgi_rpc.testing.snapshots", "vgi_rpc.testing.snapshots", "testing"),
]


@pytest.mark.parametrize(
    ("blocked", "code", "feature", "extra"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES]
)
def test_a_missing_package_names_its_extra(blocked: str, code: str, feature: str, extra: str) -> None:
    probe = f"""
try:
{textwrap.indent(textwrap.dedent(code), "    ")}
except ImportError as exc:
    print(type(exc).__name__, exc.name, "|", exc)
    raise SystemExit(3)
"""
    proc = run_without((blocked,), probe)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    # type, the missing module (ImportError.name), then the message
    assert proc.stdout.startswith(f"MissingExtraError {blocked} | "), proc.stdout
    assert f"{feature} needs the '{extra}' extra: pip install 'vgi-rpc[{extra}]'" in proc.stdout
    assert f"(missing module: {blocked})" in proc.stdout


def test_the_demo_names_both_of_its_extras() -> None:
    proc = run_without(("sentry_sdk",), "from vgi_rpc.demo import main\nraise SystemExit(main([]))")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'vgi-rpc[http,sentry]'" in proc.stderr
    assert "(missing module: sentry_sdk)" in proc.stderr
    assert "Traceback" not in proc.stderr  # a message, not a crash


def test_the_core_and_the_kit_import_without_any_extra() -> None:
    everything = (
        "falcon",
        "waitress",
        "httpx",
        "zstandard",
        "cryptography",
        "joserfc",
        "sentry_sdk",
        "syrupy",
    )
    proc = run_without(
        (*everything, "opentelemetry"),
        """
        import vgi_rpc, vgi_rpc.testing, vgi_rpc.testing.pytest_plugin
        from vgi_rpc import RpcServer, serve_pipe
        print("ok")
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_broken_install_is_not_reported_as_a_missing_extra() -> None:
    """httpx is installed but something it imports (idna) is not: that error is shown as it is."""
    proc = run_without(("idna",), "import vgi_rpc.http")
    assert proc.returncode != 0
    assert "No module named 'idna'" in proc.stderr
    assert "MissingExtraError" not in proc.stderr and "pip install" not in proc.stderr


def test_missing_extra_error_is_an_import_error_naming_the_module() -> None:
    error = MissingExtraError("the demo", ("http", "sentry"), "falcon")
    assert isinstance(error, ModuleNotFoundError) and isinstance(error, ImportError)
    assert error.name == "falcon" and error.extras == ("http", "sentry")
    assert str(error) == (
        "the demo needs the 'http', 'sentry' extras: pip install 'vgi-rpc[http,sentry]' (missing module: falcon)"
    )
    require("here", *EXTRAS)  # everything is installed in the test venv: no error


#: The extras of pyproject.toml that only gather others and tools for this project's own suite.
META_EXTRAS = {"test", "dev"}

#: Each distribution an extra lists -> the module of ``EXTRAS`` that stands for it.
DISTRIBUTION_MODULE = {
    "falcon": "falcon",
    "waitress": "waitress",
    "httpx": "httpx",
    "zstandard": "zstandard",
    "cryptography": "cryptography",
    "joserfc": "joserfc",
    "sentry-sdk": "sentry_sdk",
    "opentelemetry-api": "opentelemetry.trace",
    "opentelemetry-sdk": "opentelemetry.sdk",
    "sentry-relay": "sentry_relay",
    "pytest": "pytest",
    "syrupy": "syrupy",
    "pytest-benchmark": "pytest_benchmark",
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_extras() -> dict[str, set[str]]:
    """``[project.optional-dependencies]``: extra -> the canonical names of its distributions."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = pyproject["project"]["optional-dependencies"]
    return {
        extra: {_canonical(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in reqs}
        for extra, reqs in extras.items()
    }


def test_extras_table_matches_pyproject_both_ways() -> None:
    """EXTRAS has exactly pyproject's extras (less the meta ones), each package of one has its module."""
    extras = _pyproject_extras()
    assert set(EXTRAS) == set(extras) - META_EXTRAS
    for extra, distributions in extras.items():
        if extra in META_EXTRAS:
            continue
        for dist in distributions:
            assert dist in DISTRIBUTION_MODULE, f"extra {extra!r}: say which module stands for {dist!r}"
            assert DISTRIBUTION_MODULE[dist] in EXTRAS[extra], (extra, dist)


def test_every_module_of_the_table_comes_from_its_extra() -> None:
    """The other way round: each module of EXTRAS is installed by a distribution its extra lists."""
    from importlib.metadata import packages_distributions

    installed_by = {top: {_canonical(d) for d in dists} for top, dists in packages_distributions().items()}
    extras = _pyproject_extras()
    for extra, modules in EXTRAS.items():
        for module in modules:
            top = module.split(".")[0]
            assert installed_by.get(top, set()) & extras[extra], (extra, module)
    assert {_canonical(d) for d in DISTRIBUTION_MODULE} == set(DISTRIBUTION_MODULE)  # names as pyproject's


def test_require_only_checks_the_named_modules() -> None:
    require("here", "testing", only=("syrupy",))
    with pytest.raises(ValueError, match="none of the extras"):
        require("here", "testing", only=("sentry_sdk",))


# -- the pytest plugin in a project that lacks an extra ----------------------------------------------

_KIT_TESTS = """
def test_capture(sentry_capture):
    pass

def test_snapshot(sentry_snapshot):
    pass
"""


def _pytest_without(blocked: tuple[str, ...], project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh interpreter without ``blocked``, with only the vgi_rpc plugin loaded.

    Plugin autoloading is off, so the plugins of the blocked packages (syrupy's)
    are not loaded -- as where they are not installed -- and pytest's assertion
    rewriter, which finds plugin modules by path, does not import them either.
    """
    code = f"""
    import os
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    import pytest
    raise SystemExit(pytest.main(
        [{str(project)!r}, "-p", "no:cacheprovider", "-p", "vgi_rpc.testing.pytest_plugin", *{list(args)!r}]
    ))
    """
    return run_without(blocked, code)


def test_fixtures_without_sentry_sdk_fail_at_setup_naming_the_extra(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kit=_KIT_TESTS)
    proc = _pytest_without(("sentry_sdk",), pytester.path, "-k", "capture")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 error" in proc.stdout
    assert "sentry_capture needs the 'sentry' extra: pip install 'vgi-rpc[sentry]'" in proc.stdout


def test_sentry_snapshot_without_syrupy_fails_naming_the_extra(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kit=_KIT_TESTS)
    proc = _pytest_without(("syrupy",), pytester.path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed, 1 error" in proc.stdout
    assert (
        "the sentry_snapshot fixture needs the 'testing' extra: pip install 'vgi-rpc[testing]'" in proc.stdout
    )
    assert "fixture 'snapshot' not found" not in proc.stdout
