"""Fixtures the official adversarial request-contract classes need, pointed at OUR servers.

``make adversarial`` runs ``tests/adversarial`` with the peer venv's pytest (the
official ``vgi-rpc`` 0.52.2 package, whose classes are collected unchanged); our
servers run with our own interpreter (``$VGI_OUR_PYTHON``, default ``.venv/bin/python``):

* ``conformance_http_port``: ``tests/conformance/http_worker.py`` (our ``serve_http``)
  on a free 127.0.0.1 port with prefix ``""`` (two of the tests hard-code root paths);
* ``conformance_http_small_request_cap_port``: the same with ``max_request_bytes=4096``;
* ``conformance_raw_conn``: a factory ``(on_log=None) -> context manager yielding a
  proxy`` whose ``_transport`` has ``reader``/``writer``: the official client's
  ``SubprocessTransport`` on ``tests/conformance/worker.py`` (our ``run_server``),
  parametrised over a fresh worker per call and one worker shared by the session.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUR_PYTHON = os.environ.get("VGI_OUR_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
HTTP_WORKER = ROOT / "tests" / "conformance" / "http_worker.py"
PIPE_WORKER = ROOT / "tests" / "conformance" / "worker.py"

try:
    from vgi_rpc.conformance._protocol import ConformanceService
    from vgi_rpc.rpc import SubprocessTransport, _RpcProxy
except ImportError as exc:  # our own venv: the official package is not there
    raise pytest.UsageError(
        "tests/adversarial runs with the official vgi-rpc package: use `make adversarial` "
        f"(the peer venv's pytest), not this interpreter ({exc})"
    ) from None


def _http_worker(*extra: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [OUR_PYTHON, str(HTTP_WORKER), "--port", "0", "--prefix", "", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    port: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("PORT:"):
                port.append(int(line[5:]))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    try:
        if not port:
            raise RuntimeError(f"our HTTP worker did not start (exit status {proc.poll()})")
        yield port[0]
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def conformance_http_port() -> Iterator[int]:
    """Our ``serve_http`` conformance worker, default configuration, prefix ``""``."""
    yield from _http_worker()


@pytest.fixture(scope="session")
def conformance_http_small_request_cap_port() -> Iterator[int]:
    """Our ``serve_http`` conformance worker with ``max_request_bytes=4096``."""
    yield from _http_worker("--max-request-bytes", "4096")


def _pipe_cmd() -> list[str]:
    return [OUR_PYTHON, str(PIPE_WORKER)]


@pytest.fixture(scope="session")
def _shared_pipe_worker() -> Iterator[Any]:
    transport = SubprocessTransport(_pipe_cmd())
    try:
        yield transport
    finally:
        transport.close()


@pytest.fixture(params=["fresh_worker", "shared_worker"])
def conformance_raw_conn(
    request: pytest.FixtureRequest,
) -> Callable[..., contextlib.AbstractContextManager[Any]]:
    """``(on_log=None) -> context manager`` yielding the official client's proxy to our pipe worker."""

    @contextlib.contextmanager
    def connect(on_log: Any = None) -> Iterator[Any]:
        if request.param == "shared_worker":
            yield _RpcProxy(ConformanceService, request.getfixturevalue("_shared_pipe_worker"), on_log)
            return
        transport = SubprocessTransport(_pipe_cmd())
        try:
            yield _RpcProxy(ConformanceService, transport, on_log)
        finally:
            transport.close()

    return connect


def pytest_report_header() -> list[str]:
    return [f"vgi_rpc servers under test: {OUR_PYTHON} ({sys.version.split()[0]} runs the official classes)"]
