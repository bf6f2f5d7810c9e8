"""A ``serve_http`` worker process for the HTTP tests that measure the server itself.

``LimitsWorker(*args)`` runs ``tests/workers/http_limits_worker.py`` (default
configuration unless *args* say otherwise), reads the port it announces, and gives
its peak resident memory from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from pathlib import Path

WORKER = Path(__file__).resolve().parents[1] / "workers" / "http_limits_worker.py"


class LimitsWorker:
    """The worker process; ``url`` once it listens, ``vmhwm()`` its peak RSS in bytes."""

    def __init__(self, *args: str) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=self.stderr, text=True
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
            self.stop()
            raise RuntimeError("worker did not start")
        self.port = port[0]
        self.url = f"http://127.0.0.1:{self.port}"

    def vmhwm(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.stderr.close()

    def __enter__(self) -> LimitsWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
