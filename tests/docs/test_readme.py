"""The README's code is a contract: its quick start must run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
