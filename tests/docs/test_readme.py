"""The README's code is a contract: its examples run as written, and what its prose promises holds.

The quick start (silent unless logging is configured), the custom hook and the
``RecordingHook`` examples, the ``sentry_capture`` test module, and ``connect``'s
``env=``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Protocol

from vgi_rpc import connect

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_runs() -> None:
    """The quick start block (define, serve_pipe, call) executes and its asserts hold."""
    blocks = [b for b in _python_blocks() if "serve_pipe(" in b]
    assert blocks, "README lost its quick start"
    script = blocks[0] + "\nprint('QUICKSTART-OK')\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "QUICKSTART-OK" in proc.stdout
    assert proc.stderr == ""  # the failed divide is logged, but a library prints nothing unasked


def test_quick_start_logs_reach_a_configured_logging() -> None:
    """With ``logging.basicConfig()`` the failed divide's WARNING is printed (NullHandler, not silence)."""
    quick = next(b for b in _python_blocks() if "serve_pipe(" in b)
    script = "import logging\nlogging.basicConfig()\n" + quick
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING:vgi_rpc:Calculator.divide raised ZeroDivisionError" in proc.stderr


def test_custom_hook_example_runs_after_the_quick_start() -> None:
    """The dispatch-hook block (its names come from the quick start) executes and its asserts hold."""
    blocks = _python_blocks()
    quick = [b for b in blocks if "serve_pipe(" in b]
    hook = [b for b in blocks if "def on_dispatch_end" in b]
    assert quick and hook, "README lost its quick start or its custom hook example"
    script = quick[0] + "\n" + hook[0] + "\nprint('HOOK-OK')\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HOOK-OK" in proc.stdout


def test_recording_hook_example_runs_after_the_quick_start() -> None:
    """The ``RecordingHook`` block (names from the quick start) executes and its asserts hold."""
    blocks = _python_blocks()
    quick = next(b for b in blocks if "serve_pipe(" in b)
    recording = [b for b in blocks if "RecordingHook()" in b]
    assert recording, "README lost its RecordingHook example"
    assert "assert " in recording[0]
    script = quick + "\n" + recording[0] + "\nprint('RECORDING-OK')\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "RECORDING-OK" in proc.stdout


class Env(Protocol):
    def get(self, name: str) -> str: ...


_ENV_WORKER = """
import os
from typing import Protocol

from vgi_rpc import run_server


class Env(Protocol):
    def get(self, name: str) -> str: ...


class EnvImpl:
    def get(self, name: str) -> str:
        return os.environ.get(name, "<unset>")


run_server(Env, EnvImpl())
"""


def test_connect_env_sets_the_workers_whole_environment(tmp_path: Path) -> None:
    """The README: the worker inherits the environment; ``env=`` replaces it (as ``Popen(env=)``)."""
    assert "`env=` replaces it" in README.read_text()
    worker = tmp_path / "env_worker.py"
    worker.write_text(textwrap.dedent(_ENV_WORKER))
    cmd = [sys.executable, str(worker)]
    with connect(Env, cmd) as inherited:
        assert inherited.get(name="PATH") == os.environ.get("PATH", "<unset>")
        assert inherited.get(name="VGI_README_ENV") == "<unset>"
    with connect(Env, cmd, env={**os.environ, "VGI_README_ENV": "added"}) as added:
        assert added.get(name="VGI_README_ENV") == "added"
        assert added.get(name="PATH") == os.environ.get("PATH", "<unset>")
    with connect(Env, cmd, env={"VGI_README_ENV": "alone"}) as replaced:
        assert replaced.get(name="VGI_README_ENV") == "alone"
        assert replaced.get(name="PATH") == "<unset>"


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_sentry_testing_example_passes_as_a_users_test_module(tmp_path: Path) -> None:
    """The README's sentry_capture example is a complete test module: pytest runs it green."""
    blocks = [b for b in _python_blocks() if "def test_" in b and "sentry_capture" in b]
    assert blocks, "README lost its 'Testing your Sentry instrumentation' example"
    (tmp_path / "test_readme_example.py").write_text(blocks[0])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
