"""Worker processes for the HTTP tests that need a real server in another process.

``PortWorker(argv, env=)`` starts a process that prints ``PORT:n`` once it listens, waits
(up to 30 s) for that line and keeps its stderr for the error message when it never
comes. ``LimitsWorker(*args)`` runs ``tests/workers/http_limits_worker.py`` (default
configuration unless *args* say otherwise) and gives its peak resident memory from
``/proc/<pid>/status``. :func:`official_http_server` runs the official vgi-rpc 0.52.2
conformance server (``.venv-peer``) over HTTP and yields its port.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "workers" / "http_limits_worker.py"
PEER_BIN = Path(__file__).resolve().parents[2] / ".venv-peer" / "bin"


class PortWorker:
    """A process announcing its port on stdout; ``port`` and ``url`` once it listens."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=None if env is None else dict(env),
            text=True,
        )
        port: list[int] = []

        def read_port() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("PORT:"):
                    port.append(int(line[5:]))
                    return

        reader = threading.Thread(target=read_port, daemon=True)
        reader.start()
        reader.join(timeout=30)
        if not port:
            self.stderr.seek(0)
            err = self.stderr.read().decode(errors="replace")
            self.stop()
            raise RuntimeError(f"worker did not start: {err}")
        self.port = port[0]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate the worker (kill it when it does not exit within 10 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()

    def __enter__(self) -> PortWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LimitsWorker(PortWorker):
    """``tests/workers/http_limits_worker.py``; ``vmhwm()`` is its peak RSS in bytes."""

    def __init__(self, *args: str) -> None:
        super().__init__([sys.executable, str(WORKER), *args])

    def vmhwm(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")


@contextlib.contextmanager
def official_http_server() -> Iterator[int]:
    """The official conformance server over HTTP on 127.0.0.1; yields its port.

    Skips when ``.venv-peer`` is missing (``make peer-venv``), and fails under CI,
    which builds it.
    """
    import pytest

    exe = PEER_BIN / "vgi-rpc-conformance"
    if not exe.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(".venv-peer is missing in CI")
        pytest.skip(".venv-peer (official vgi-rpc 0.52.2) is not installed; `make peer-venv` creates it")
    with PortWorker([str(exe), "--http", "0"]) as reference:
        yield reference.port
