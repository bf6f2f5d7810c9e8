"""A missing optional dependency fails with an ImportError that names the extra to install.

Each case runs in a fresh interpreter in which the package really cannot be
imported (``support.missing.run_without``: an import blocker on ``sys.meta_path``
makes ``import falcon`` -- or ``sentry_sdk``, ``syrupy``, ``opentelemetry`` --
fail exactly as it fails where the package is not installed).  Nothing of
Sentry is mocked: the blocked package is simply absent.  The acceptance suite
(``tests/testing_kit/test_user_project.py``) repeats the user-facing cases in a venv built
from a non-editable install, where OpenTelemetry is absent for real.
"""

from __future__ import annotations

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
    ("sentry_sdk", "from vgi_rpc.testing import sentry_capture\nsentry_capture().__enter__()", "sentry_capture", "sentry"),
    ("sentry_sdk", "from vgi_rpc.testing import InMemoryTransport", "vgi_rpc.testing.InMemoryTransport", "sentry"),
    ("syrupy", "import vgi_rpc.testing.snapshots", "vgi_rpc.testing.snapshots", "testing"),
]


@pytest.mark.parametrize(("blocked", "code", "feature", "extra"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
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
    everything = ("falcon", "waitress", "httpx", "zstandard", "cryptography", "joserfc", "sentry_sdk", "syrupy")
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


def test_extras_table_matches_pyproject() -> None:
    """Every extra require() names exists in pyproject.toml and lists a package for each module."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    distribution = {"sentry_sdk": "sentry-sdk", "opentelemetry": "opentelemetry-api"}
    for extra, modules in EXTRAS.items():
        assert extra in extras, extra
        requirements = " ".join(extras[extra])
        for module in modules:
            top = module.split(".")[0]
            assert distribution.get(top, top) in requirements, (extra, module)


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
    assert "the sentry_snapshot fixture needs the 'testing' extra: pip install 'vgi-rpc[testing]'" in proc.stdout
    assert "fixture 'snapshot' not found" not in proc.stdout
