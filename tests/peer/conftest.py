"""Fixtures for the official vgi-rpc 0.52.2 client against OUR HTTP servers.

``make conformance`` runs ``tests/peer`` with the peer venv's pytest (the official
package); our servers run with our own interpreter (``$VGI_OUR_PYTHON``, default
``.venv/bin/python``) in one process, ``our_http_servers.py``:

* ``our_urls``: the URLs (prefix ``/vgi``) of our ``Calculator``, ``TypesService``
  and ``Headed`` servers, started once for the session;
* ``calc``, ``types``, ``headed``: the official ``http_connect`` proxies to them,
  once with the official client's default (zstd request bodies) and once
  uncompressed (every test runs in both modes);
* ``logs``: what the servers logged to the ``calc`` proxy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUR_PYTHON = os.environ.get("VGI_OUR_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
SERVERS = Path(__file__).resolve().parent / "our_http_servers.py"

try:
    from peer_services import Calculator, Headed, TypesService

    from vgi_rpc.http import http_connect
except ImportError as exc:  # our own venv: the official package is not there
    raise pytest.UsageError(
        "tests/peer runs with the official vgi-rpc package: use `make conformance` "
        f"(the peer venv's pytest), not this interpreter ({exc})"
    ) from None


@pytest.fixture(scope="session")
def our_urls() -> Iterator[dict[str, str]]:
    """Our three servers in one process of our interpreter, until the session ends."""
    proc = subprocess.Popen(
        [OUR_PYTHON, str(SERVERS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    urls: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("URLS: "):
                urls.extend(line.split()[1:])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    try:
        if len(urls) != 3:
            raise RuntimeError(f"our HTTP servers did not start (exit status {proc.poll()})")
        yield dict(zip(("calculator", "types", "headed"), urls, strict=True))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module", params=["zstd", "uncompressed"])
def compression(request: pytest.FixtureRequest) -> int | None:
    """The official client's request compression: its default (zstd level 1) or none."""
    return 1 if request.param == "zstd" else None


@pytest.fixture(scope="module")
def logs() -> list[Any]:
    """What our servers logged to the ``calc`` proxy (cleared by the test that reads it)."""
    return []


@pytest.fixture(scope="module")
def calc(our_urls: dict[str, str], compression: int | None, logs: list[Any]) -> Iterator[Any]:
    """The official proxy to our ``Calculator``."""
    with http_connect(
        Calculator, our_urls["calculator"], on_log=logs.append, compression_level=compression
    ) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def types(our_urls: dict[str, str], compression: int | None) -> Iterator[Any]:
    """The official proxy to our ``TypesService``."""
    with http_connect(TypesService, our_urls["types"], compression_level=compression) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def headed(our_urls: dict[str, str], compression: int | None) -> Iterator[Any]:
    """The official proxy to our ``Headed`` service."""
    with http_connect(Headed, our_urls["headed"], compression_level=compression) as proxy:
        yield proxy


def pytest_report_header() -> list[str]:
    return [f"vgi_rpc servers under test: {OUR_PYTHON} ({sys.version.split()[0]} runs the official client)"]
