"""Sentry snapshots, the failure report and missing-extra messages in a user's project installed from a wheel.

The session's user venv (``user_base_env``, testing_kit/conftest.py) has this
checkout installed **non-editable** from a wheel, ``vgi-rpc[http,sentry,testing]``
with the suite's own sentry-sdk (so ``make test-sdk3`` runs this on sentry-sdk 3).
In it, a user's project -- an order service with a failing method, served over
``serve_pipe`` and ``start_http_server``, tests written only from README.md and
docs/testing.md: the documented ``sentry_snapshot`` test over the pipe and over
HTTP, and a ``sentry_envelope_snapshot`` test of the HTTP envelopes -- is run
with that venv's pytest:

* ``--snapshot-update`` once, then three plain runs: every snapshot test passes
  every time, each run on a new free port;
* the envelope snapshot holds no frame of ``vgi_rpc``; no snapshot holds a port;
* the user's own JSON files under ``tests/`` survive ``--snapshot-update`` and the
  plain runs, byte for byte, and are never reported unused or deleted;
* **across SDK generations** (the issue-19 acceptance): in a second copy of the
  project, ``--snapshot-update`` on sentry-sdk 2.76.0 writes the ``sentry_snapshot``
  files, and plain runs on 2.76.0 and on 3.0.0 pass with those same files; the
  envelope test keeps one set per generation (``sdk2/``, ``sdk3/``) and neither
  generation reports the other's set unused or deletes it;
* a failing test's output (``-q``) has the "Captured Sentry envelopes" section
  naming the method;
* the missing-extra messages name the extra: ``vgi_rpc.otel`` really is not
  installed there; falcon, sentry_sdk and syrupy are made unimportable.

Cost: the shared venv (built once per session, with test_user_project_relay_otel_ratios.py's),
one small venv per other sentry-sdk version (sentry-sdk alone, on top of the shared one),
eleven pytest runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import sentry_sdk
from support.missing import run_without
from support.user_venv import UserEnv


@dataclass(frozen=True)
class UserVenv:
    python: str
    project: Path

    def pytest(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SENTRY_", "PYTHONPATH"))}
        return subprocess.run(
            [self.python, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
        )


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory: pytest.TempPathFactory, user_base_env: UserEnv) -> UserVenv:
    python = str(user_base_env.python)
    where = subprocess.run(
        [python, "-c", "import vgi_rpc; print(vgi_rpc.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path_factory.getbasetemp(),
    ).stdout.strip()
    # not editable, not the checkout: the wheel's files in the venv
    assert Path(where).is_relative_to(user_base_env.site_packages), where
    project = tmp_path_factory.mktemp("shop-project") / "shop"
    for relative, text in PROJECT.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return UserVenv(python, project)


# -- the user's project, written from README.md and docs/testing.md ---------------------------------

PROJECT = {
    "pyproject.toml": """
        [tool.pytest.ini_options]
        testpaths = ["tests"]
        """,
    "shop/__init__.py": "",
    "shop/orders.py": """
        from typing import Protocol

        from vgi_rpc import CallContext


        class Orders(Protocol):
            def place(self, sku: str, quantity: int) -> str: ...
            def cancel(self, order_id: str) -> None: ...


        class OrdersImpl:
            def place(self, sku: str, quantity: int) -> str:
                if quantity <= 0:
                    raise ValueError(f"quantity must be positive, got {quantity}")
                return f"{quantity} x {sku}"

            def cancel(self, order_id: str, ctx: CallContext) -> None:
                raise PermissionError(f"{ctx.auth.principal} may not cancel {order_id}")
        """,
    "tests/test_orders_pipe.py": """
        import pytest

        from vgi_rpc import AuthContext, RpcError, RpcServer, serve_pipe
        from vgi_rpc.sentry import SentryConfig, instrument_server_sentry

        from shop.orders import Orders, OrdersImpl

        ALICE = AuthContext(domain="pipe", authenticated=True, principal="user-7", claims={"preferred_username": "alice"})


        def test_cancel_over_the_pipe(sentry_capture, sentry_snapshot):
            server = instrument_server_sentry(RpcServer(Orders, OrdersImpl()), SentryConfig(enable_performance=True))
            with serve_pipe(server, auth=ALICE) as orders:
                with pytest.raises(RpcError):
                    orders.cancel(order_id="o-1")
            event = sentry_capture.event(method="cancel")
            assert event["user"] == {"id": "user-7", "username": "alice"}
            assert sentry_capture == sentry_snapshot
        """,
    "tests/test_orders_http.py": """
        import pytest

        from vgi_rpc import RpcError, RpcServer
        from vgi_rpc.http import http_connect, start_http_server
        from vgi_rpc.sentry import SentryConfig

        from shop.orders import Orders, OrdersImpl


        def place_twice(sentry_capture):
            server = RpcServer(Orders, OrdersImpl())
            config = SentryConfig(enable_performance=True, record_params=True)
            with start_http_server(server, prefix="/vgi", token_key=b"stream-token-key-for-tests-only!", sentry_config=config) as http:
                with open("ports.txt", "a") as ports:
                    ports.write(f"{http.port}\\n")
                with http_connect(Orders, http.base_url, prefix="/vgi") as orders:
                    assert orders.place(sku="A-1", quantity=2) == "2 x A-1"
                    with pytest.raises(RpcError):
                        orders.place(sku="A-1", quantity=0)
            assert len(sentry_capture.events_for("place")) == 1


        def test_place_over_http(sentry_capture, sentry_snapshot):
            place_twice(sentry_capture)
            assert sentry_capture == sentry_snapshot


        def test_place_over_http_envelopes(sentry_capture, sentry_envelope_snapshot):
            place_twice(sentry_capture)
            assert sentry_capture == sentry_envelope_snapshot
        """,
    # the user's own data, where the kit keeps its snapshots and beside them
    "tests/snapshots/other/keep.json": '{"mine": true}\n',
    "tests/snapshots/test_orders_http/fixture.json": '{"orders": []}\n',
    "tests/data/orders.json": '[{"sku": "A-1"}]\n',
}

USER_FILES = [name for name in PROJECT if name.endswith(".json")]

REPORT_TEST = """
import pytest

from vgi_rpc import RpcError, RpcServer, serve_pipe
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry

from shop.orders import Orders, OrdersImpl


def test_cancel_reports_the_wrong_tag(sentry_capture):
    server = instrument_server_sentry(RpcServer(Orders, OrdersImpl()), SentryConfig())
    with serve_pipe(server) as orders, pytest.raises(RpcError):
        orders.cancel(order_id="o-2")
    assert sentry_capture.events[0]["tags"]["rpc.method"] == "refund"
"""


def _frames(node: object) -> list[dict[str, object]]:
    if isinstance(node, dict):
        found = list(node["frames"]) if isinstance(node.get("frames"), list) else []
        return found + [f for value in node.values() for f in _frames(value)]
    if isinstance(node, list):
        return [f for value in node for f in _frames(value)]
    return []


def _snapshot_files(project: Path) -> dict[str, bytes]:
    return {
        p.relative_to(project).as_posix(): p.read_bytes()
        for p in sorted((project / "tests" / "snapshots").rglob("*.sentry.json"))
    }


@pytest.mark.timeout(600)  # four runs of the project, after the shared venv's build on first use
def test_snapshots_hold_on_every_run_and_own_only_their_files(user_venv: UserVenv) -> None:
    before = {name: (user_venv.project / name).read_bytes() for name in USER_FILES}
    runs = [user_venv.pytest("--snapshot-update")] + [user_venv.pytest() for _ in range(3)]
    for index, run in enumerate(runs):
        output = run.stdout + run.stderr
        assert run.returncode == 0, f"run {index}:\n{output}"
        assert re.search(r"\b3 passed\b", output), output
        assert "unused" not in output and "Deleted" not in output, output
    assert "3 snapshots generated" in runs[0].stdout
    assert all("3 snapshots passed" in run.stdout for run in runs[1:])
    ports = (user_venv.project / "ports.txt").read_text().split()
    assert len(ports) == 8 and len(set(ports)) == 8, ports  # a new port on every run

    generation = "sdk" + sentry_sdk.VERSION.split(".")[0]
    files = _snapshot_files(user_venv.project)
    assert list(files) == [
        f"tests/snapshots/test_orders_http/{generation}/test_place_over_http_envelopes.sentry.json",
        "tests/snapshots/test_orders_http/test_place_over_http.sentry.json",
        "tests/snapshots/test_orders_pipe/test_cancel_over_the_pipe.sentry.json",
    ]
    for text in (t.decode() for t in files.values()):
        assert "/vgi_rpc/" not in text and '"filename": "vgi_rpc/' not in text  # no file of the package
        for port in ports:
            assert f":{port}" not in text and f'"{port}"' not in text
    envelopes = json.loads(next(iter(files.values())))
    frames = _frames(envelopes)
    assert [f["function"] for f in frames] == ["<vgi_rpc frames>", "place"]  # the error event's stack
    sdk_names = {i["payload"]["sdk"]["name"] for e in envelopes for i in e["items"] if "sdk" in i["payload"]}
    assert sdk_names == {"sentry.python"}  # falcon is installed here: the suffix is gone
    pipe = json.loads(files["tests/snapshots/test_orders_pipe/test_cancel_over_the_pipe.sentry.json"])
    (call,) = pipe["calls"]
    assert call["errors"][0]["user"] == {"id": "user-7", "username": "alice"}
    assert call["root"]["name"] == "vgi_rpc/cancel"

    after = {name: (user_venv.project / name).read_bytes() for name in USER_FILES}
    assert after == before


# -- one snapshot set, two SDK generations -------------------------------------------------------------

GENERATIONS = ("2.76.0", "3.0.0")


@pytest.fixture(scope="module")
def sdk_pythons(tmp_path_factory: pytest.TempPathFactory, user_base_env: UserEnv) -> dict[str, str]:
    """An interpreter per sentry-sdk version: the shared user venv, or a venv with only that SDK on top of it."""
    pythons: dict[str, str] = {}
    for version in GENERATIONS:
        if version == sentry_sdk.VERSION:
            pythons[version] = str(user_base_env.python)
            continue
        where = tmp_path_factory.mktemp(f"user-sdk-{version}") / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
        python = where / "bin" / "python"
        site = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        (Path(site) / "_user_base.pth").write_text(f"{user_base_env.site_packages}\n")  # after the venv's own
        pip = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install", f"sentry-sdk=={version}"]
        subprocess.run(pip, check=True, timeout=600, capture_output=True)
        pythons[version] = str(python)
    for version, python in pythons.items():
        found = subprocess.run(
            [python, "-c", "import sentry_sdk; print(sentry_sdk.VERSION)"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        assert found == version, (python, found)
    return pythons


@pytest.mark.timeout(600)  # six runs of the project, after a venv per other sentry-sdk
def test_one_snapshot_set_holds_on_both_sdk_generations(
    user_venv: UserVenv, sdk_pythons: dict[str, str], tmp_path: Path
) -> None:
    """Written on 2.76.0, the ``sentry_snapshot`` files pass on 2.76.0 and 3.0.0; the envelopes keep a set each."""
    project = tmp_path / "shop"
    shutil.copytree(user_venv.project, project, ignore=shutil.ignore_patterns("snapshots", "ports.txt"))
    sdk2, sdk3 = (UserVenv(sdk_pythons[v], project) for v in GENERATIONS)

    first = sdk2.pytest("--snapshot-update")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 snapshots generated" in first.stdout, first.stdout
    neutral = {k: v for k, v in _snapshot_files(project).items() if "/sdk" not in k}
    assert sorted(neutral) == [
        "tests/snapshots/test_orders_http/test_place_over_http.sentry.json",
        "tests/snapshots/test_orders_pipe/test_cancel_over_the_pipe.sentry.json",
    ]
    # 3.x: the two sentry_snapshot files pass as they are; the envelope test needs its own set
    plain_on_3 = sdk3.pytest()
    assert plain_on_3.returncode == 1, plain_on_3.stdout
    assert "FAILED tests/test_orders_http.py::test_place_over_http_envelopes" in plain_on_3.stdout
    assert re.search(r"\b1 failed, 2 passed\b", plain_on_3.stdout), plain_on_3.stdout
    assert "unused" not in plain_on_3.stdout, plain_on_3.stdout
    update_on_3 = sdk3.pytest("--snapshot-update")
    assert update_on_3.returncode == 0, update_on_3.stdout + update_on_3.stderr
    assert "1 snapshot generated" in update_on_3.stdout and "2 snapshots passed" in update_on_3.stdout
    assert "Deleted" not in update_on_3.stdout, update_on_3.stdout

    files = _snapshot_files(project)
    assert sorted(k for k in files if "/sdk" in k) == [
        "tests/snapshots/test_orders_http/sdk2/test_place_over_http_envelopes.sentry.json",
        "tests/snapshots/test_orders_http/sdk3/test_place_over_http_envelopes.sentry.json",
    ]
    for run in (sdk2.pytest(), sdk3.pytest(), sdk2.pytest("--snapshot-update")):
        output = run.stdout + run.stderr
        assert run.returncode == 0, output
        assert re.search(r"\b3 passed\b", output) and "3 snapshots passed" in output, output
        assert "unused" not in output and "Deleted" not in output, output
    assert _snapshot_files(project) == files  # the same files, byte for byte, on both generations


def test_a_failing_test_shows_the_captured_envelopes(user_venv: UserVenv) -> None:
    (user_venv.project / "tests" / "test_report.py").write_text(REPORT_TEST, encoding="utf-8")
    try:
        run = user_venv.pytest("-q", "tests/test_report.py")
    finally:
        (user_venv.project / "tests" / "test_report.py").unlink()
    assert run.returncode == 1, run.stdout + run.stderr
    section = run.stdout.split("Captured Sentry envelopes", 1)[1]
    assert (
        "event 'rpc cancel' rpc.method='cancel' level=error exception=PermissionError: None may not cancel o-2"
        in section
    )
    assert "1 failed" in run.stdout


MISSING = [
    ((), "import vgi_rpc.otel", "pip install 'vgi-rpc[otel]'"),  # really not installed in this venv
    (("falcon",), "import vgi_rpc.http", "pip install 'vgi-rpc[http]'"),
    (
        ("sentry_sdk",),
        "from vgi_rpc.testing import sentry_capture\nsentry_capture().__enter__()",
        "pip install 'vgi-rpc[sentry]'",
    ),
    (("syrupy",), "import vgi_rpc.testing.snapshots", "pip install 'vgi-rpc[testing]'"),
    (
        ("sentry_sdk",),
        "import runpy\nrunpy.run_module('vgi_rpc.demo', run_name='__main__')",
        "pip install 'vgi-rpc[http,sentry]'",
    ),
]


@pytest.mark.parametrize(
    ("blocked", "code", "message"),
    MISSING,
    ids=[m[2].split("[")[1][:-2] + "-" + m[1].split()[1] for m in MISSING],
)
def test_a_missing_extra_is_named(
    user_venv: UserVenv, blocked: tuple[str, ...], code: str, message: str
) -> None:
    run = run_without(blocked, code, python=user_venv.python, cwd=str(user_venv.project))
    assert run.returncode != 0
    last = (run.stderr.strip().splitlines() or [""])[-1]  # what the user reads first: the last line
    assert message in last, run.stderr
    assert "needs the" in last
