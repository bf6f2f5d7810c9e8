"""Which sentry-sdk we instrument, and never being silent about one we cannot (B7).

The "cannot" cases run against a *real* unsupported SDK, sentry-sdk 1.45.1 (the last
1.x), installed into a directory beside the test venv and put first on the path of a
fresh interpreter; and against a "future 4.x": the real latest 3.x installed the same
way with only its version string changed to 4.0.0 (no 4.x exists to install; the
version is what vgi_rpc must refuse). The "not installed" case blocks ``sentry_sdk``
with a ``sys.meta_path`` finder in a fresh interpreter. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vgi_rpc import _sentry_sdk

REPO = Path(__file__).resolve().parents[2]
OLD_SDK = "1.45.1"
FUTURE_SDK = "4.0.0"
FUTURE_FROM = "3.0.0"
"""The real release a "future 4.x" is made of (its ``consts.VERSION`` set to :data:`FUTURE_SDK`)."""


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("1.45.1", False),
        ("2.9.0", False),
        ("2.35.0", False),  # older 2.x fail the suites (B5 over HTTP, S4): not claimed
        ("2.36.0", True),
        ("2.75.0", True),
        ("3.0.0", True),
        ("3.1.0rc1", True),
        ("3.4.1", True),
        ("4.0.0", False),
        ("not-a-version", False),
    ],
)
def test_the_supported_range_is_the_tested_one(version: str, supported: bool) -> None:
    """B7: 2.x from 2.36 (make test-sdk-floor), the latest 2.x (make test-sdk2) and 3.x (make test)."""
    assert (_sentry_sdk._version_problem(version) is None) is supported


def test_the_installed_sdk_is_supported_and_the_range_matches_pyproject() -> None:
    """B7: the suites run on an SDK we instrument; pyproject declares the same range as the code."""
    assert _sentry_sdk.PROBLEM is None, _sentry_sdk.PROBLEM
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert f'sentry = ["sentry-sdk{_sentry_sdk.SUPPORTED}"]' in pyproject


_PUT_FIRST = """
import sys
for _entry in reversed({path!r}):
    while _entry in sys.path:
        sys.path.remove(_entry)
    sys.path.insert(0, _entry)
for _name in [m for m in sys.modules if m == "sentry_sdk" or m.startswith("sentry_sdk.")]:
    del sys.modules[_name]  # preloaded by a .pth or sitecustomize: not the one asked for
"""


def _python(code: str, path: list[str]) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter whose first ``sys.path`` entries are *path*.

    PYTHONPATH alone does not decide which ``sentry_sdk`` is imported: a ``.pth``
    file (an editable install's finder, ``distutils-precedence.pth``) may reorder
    ``sys.path`` or import modules first, and a ``sentry_sdk`` directory without
    its ``__init__.py`` is only a namespace portion that the venv's regular package
    beats. So *path* is also put first by the code itself, and any ``sentry_sdk``
    already imported is forgotten; callers check ``sentry_sdk.__file__``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    env["PYTHONPATH"] = os.pathsep.join([*path, env.get("PYTHONPATH", "")])
    prologue = _PUT_FIRST.format(path=path) if path else ""
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


_PROBE = """
import json, sentry_sdk
print(json.dumps([sentry_sdk.VERSION, sentry_sdk.__file__]))
"""


def _imported_from(target: Path) -> tuple[str, str] | None:
    """The (version, file) of the ``sentry_sdk`` a child imports with *target* first, if it is *target*'s."""
    result = _python(_PROBE, [str(target)])
    if result.returncode != 0:
        return None
    version, file = json.loads(result.stdout.strip().splitlines()[-1])
    inside = Path(file).resolve().is_relative_to(target.resolve())
    return (version, file) if inside else None


def install_sdk(target: Path, release: str = OLD_SDK, *, calls_itself: str | None = None) -> Path:
    """Make *target* hold the real sentry-sdk *release* that a child really imports; returns *target*.

    *calls_itself*: the version string the installed copy reports instead (its
    ``consts.VERSION`` rewritten, nothing else). A directory left by an earlier,
    interrupted or partly cleaned install (e.g. a ``sentry_sdk/`` holding only
    ``__pycache__``) is not trusted: it is removed and installed afresh, then
    checked again by importing it in a child.
    """
    version = calls_itself or release
    if _imported_from(target) == (version, str(target / "sentry_sdk" / "__init__.py")):
        return target
    shutil.rmtree(target, ignore_errors=True)
    # --no-compile: a bytecode file written in the same second as the VERSION rewrite below,
    # for a source of the same size, would still be taken as current and keep the old version
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-compile",
        "--upgrade",
        "--target",
        str(target),
    ]
    install = subprocess.run(
        [*pip, f"sentry-sdk=={release}"], capture_output=True, text=True, timeout=300, check=False
    )
    if install.returncode != 0:
        pytest.fail(f"could not install sentry-sdk {release} into {target}: {install.stderr}")
    if calls_itself is not None:
        consts = target / "sentry_sdk" / "consts.py"
        text = consts.read_text(encoding="utf-8")
        assert f'VERSION = "{release}"' in text, "sentry_sdk/consts.py no longer spells its VERSION this way"
        consts.write_text(
            text.replace(f'VERSION = "{release}"', f'VERSION = "{calls_itself}"'), encoding="utf-8"
        )
        shutil.rmtree(consts.parent / "__pycache__", ignore_errors=True)
    found = _imported_from(target)
    if found is None or found[0] != version:
        pytest.fail(f"sentry-sdk {version} installed into {target}, but a child imports {found}")
    return target


@pytest.fixture(scope="module")
def old_sdk() -> str:
    """A directory holding the real sentry-sdk 1.45.1 (installed once beside this venv, checked each run)."""
    return str(install_sdk(Path(sys.prefix) / f"sentry-sdk-{OLD_SDK}"))


@pytest.fixture(scope="module")
def future_sdk() -> str:
    """A directory holding the real sentry-sdk 3.0.0 whose version says 4.0.0 (made once beside this venv)."""
    target = Path(sys.prefix) / f"sentry-sdk-{FUTURE_SDK}-from-{FUTURE_FROM}"
    return str(install_sdk(target, FUTURE_FROM, calls_itself=FUTURE_SDK))


_UNSUPPORTED = """
import json, logging
records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append([record.name, record.levelname, record.getMessage()])

logger = logging.getLogger("vgi_rpc.sentry")
logger.addHandler(Keep())
logger.setLevel(logging.DEBUG)

import sentry_sdk
assert sentry_sdk.VERSION == "{version}", (sentry_sdk.VERSION, sentry_sdk.__file__)
sentry_sdk.init(dsn="https://public@sentry.invalid/1", default_integrations=False)

from typing import Protocol
from vgi_rpc import RpcServer
import vgi_rpc.sentry as vs  # importing works: only instrumenting is refused

class Adder(Protocol):
    def add(self, a: int, b: int) -> int: ...

class AdderImpl:
    def add(self, a: int, b: int) -> int:
        return a + b

out = {{"sdk": [sentry_sdk.VERSION, sentry_sdk.__file__]}}
server = RpcServer(Adder, AdderImpl())  # the SDK is initialised: auto-attach runs
out["auto_hook"] = repr(server._dispatch_hook)
out["records"] = records
for name, attach in [
    ("instrument", lambda: vs.instrument_server_sentry(server)),
    ("sentry_config", lambda: __import__("vgi_rpc.http", fromlist=["x"]).make_wsgi_app(
        server, token_key=b"k" * 32, sentry_config=vs.SentryConfig())),
]:
    try:
        attach()
        out[name] = None
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc), isinstance(exc, RuntimeError)]
out["hook_after"] = repr(server._dispatch_hook)
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["1.x", "4.x"])
def unsupported(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What vgi_rpc does in a process whose initialised SDK is 1.45.1, or a "future" 4.0.0."""
    version, where = (
        (OLD_SDK, request.getfixturevalue("old_sdk"))
        if request.param == "1.x"
        else (FUTURE_SDK, request.getfixturevalue("future_sdk"))
    )
    result = _python(_UNSUPPORTED.format(version=version), [where])
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    data["version"], data["dir"] = version, where
    return data


def test_the_child_runs_the_unsupported_sdk_from_its_directory(unsupported: dict[str, Any]) -> None:
    """B7 (the premise of the tests below): the child's sentry_sdk is the unsupported one, from its directory."""
    version, file = unsupported["sdk"]
    assert version == unsupported["version"]
    assert Path(file).resolve() == (Path(unsupported["dir"]) / "sentry_sdk" / "__init__.py").resolve()


def test_a_stale_sdk_directory_is_installed_afresh(tmp_path: Path) -> None:
    """B7 (the kit's premise): a ``sentry_sdk/`` left without its sources loses to the venv's; it is reinstalled.

    Such a directory is a namespace portion, which a regular package later on the
    path beats -- the venv's supported SDK would then run the "unsupported" tests.
    """
    target = tmp_path / f"sentry-sdk-{OLD_SDK}"
    (target / "sentry_sdk" / "__pycache__").mkdir(parents=True)
    assert _imported_from(target) is None  # the venv's sentry_sdk wins over the stale directory
    install_sdk(target)
    assert _imported_from(target) == (OLD_SDK, str(target / "sentry_sdk" / "__init__.py"))


def test_a_preloaded_sdk_does_not_decide_the_childs(old_sdk: str, tmp_path: Path) -> None:
    """B7 (the kit's premise): a sitecustomize/.pth that imports the venv's SDK first is undone by the child."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            saved = sys.path[:]
            sys.path[:] = [p for p in sys.path if p != {old_sdk!r}]
            import sentry_sdk  # the venv's
            sys.path[:] = saved
            """
        ),
        encoding="utf-8",
    )
    code = "import sys; print(sys.modules['sentry_sdk'].VERSION)"
    preloaded = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([old_sdk, str(tmp_path)])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert preloaded.returncode == 0, preloaded.stderr
    assert preloaded.stdout.strip() != OLD_SDK  # without the prologue, the venv's SDK is the one loaded
    result = _python(_PROBE, [old_sdk, str(tmp_path)])
    assert result.returncode == 0, result.stderr
    version, file = json.loads(result.stdout.strip().splitlines()[-1])
    assert version == OLD_SDK and Path(file).resolve().is_relative_to(Path(old_sdk).resolve())


def _names_version_and_remedy(text: str, version: str = OLD_SDK) -> bool:
    return f"sentry-sdk {version} " in text and f"pip install 'sentry-sdk{_sentry_sdk.SUPPORTED}'" in text


def test_auto_attach_with_an_unsupported_sdk_logs_one_warning(unsupported: dict[str, Any]) -> None:
    """B7 S2: an initialised SDK we cannot instrument: no hook, one WARNING naming the version and the fix."""
    assert unsupported["auto_hook"] == "None"
    (record,) = unsupported["records"]
    name, level, message = record
    assert (name, level) == ("vgi_rpc.sentry", "WARNING")
    assert _names_version_and_remedy(message, unsupported["version"]), message
    assert "no Sentry hook attached to RpcServer(Adder" in message


def test_instrument_server_sentry_with_an_unsupported_sdk_raises(unsupported: dict[str, Any]) -> None:
    """B7 S5: instrument_server_sentry raises SentrySdkUnsupportedError (a RuntimeError) saying the same."""
    kind, message, is_runtime_error = unsupported["instrument"]
    assert kind == "SentrySdkUnsupportedError" and is_runtime_error
    assert _names_version_and_remedy(message, unsupported["version"]), message
    assert unsupported["hook_after"] == "None"  # nothing half-attached


def test_sentry_config_with_an_unsupported_sdk_raises(unsupported: dict[str, Any]) -> None:
    """B7 S6: make_wsgi_app(sentry_config=) raises the same clear error (serve_http builds the same app)."""
    kind, message, _ = unsupported["sentry_config"]
    assert kind == "SentrySdkUnsupportedError"
    assert _names_version_and_remedy(message, unsupported["version"]), message


def test_an_uninitialised_unsupported_sdk_stays_a_debug_record(old_sdk: str) -> None:
    """S4 B7: imported but never initialised, an old SDK is not the user's choice of Sentry: DEBUG only."""
    code = _UNSUPPORTED.format(version=OLD_SDK).replace(
        'sentry_sdk.init(dsn="https://public@sentry.invalid/1", default_integrations=False)', ""
    )
    result = _python(code, [old_sdk])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert [level for _, level, _ in data["records"]] == ["DEBUG"]
    assert "not initialised" in data["records"][0][2]


def test_import_without_the_sdk_names_the_extra() -> None:
    """Optional parts fail helpfully: without sentry_sdk, import vgi_rpc.sentry names the extra to install."""
    result = _python(
        """
        import sys

        class NoSentry:
            def find_spec(self, name, path=None, target=None):
                if name == "sentry_sdk" or name.startswith("sentry_sdk."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoSentry())
        import vgi_rpc  # fine without Sentry
        try:
            import vgi_rpc.sentry
        except ImportError as exc:
            print(type(exc).__mro__[1].__name__ if type(exc).__name__ != "ImportError" else "ImportError")
            print(exc)
        else:
            print("imported?!")
        """,
        [],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] in ("ImportError", "ModuleNotFoundError"), lines
    assert "pip install 'vgi-rpc[sentry]'" in lines[1], lines
