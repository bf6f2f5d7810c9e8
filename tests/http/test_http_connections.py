"""Idle connections against a real ``serve_http`` process (docs/http.md "Running it").

200 clients that connect and send nothing must not lock out the next caller (waitress's
own default limit of 100 connections did), and idle connections are closed after
``idle_timeout``. Loopback only; at most 200 sockets, each test well under a minute.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pyarrow as pa
import pytest
from support.http import ARROW, call_body
from support.services import Calculator, CalculatorImpl
from support.worker_process import LimitsWorker

from vgi_rpc.http import start_http_server
from vgi_rpc.http._serve import CONNECTIONS_PER_THREAD, default_connection_limit
from vgi_rpc.wire import request_bytes

IDLE = 200
PING = request_bytes("ping", pa.record_batch([], schema=pa.schema([])), protocol="Sink")


def ping(url: str, timeout: float) -> httpx.Response:
    """One call on a fresh connection, failing with a timeout after *timeout* seconds."""
    return httpx.post(f"{url}/Sink/ping", content=PING, headers={"Content-Type": ARROW}, timeout=timeout)


def idle_sockets(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


def is_open(sock: socket.socket) -> bool:
    """True while the server has not closed *sock* (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_200_idle_connections_do_not_lock_out_a_new_client(sockets: list[socket.socket]) -> None:
    """Default configuration: the 201st connection is served, within a 1 s client timeout."""
    with LimitsWorker() as worker:
        sockets += idle_sockets(worker.port, IDLE)
        time.sleep(0.5)  # let the server accept them all
        r = ping(worker.url, timeout=1.0)
        assert r.status_code == 200
        assert sum(is_open(s) for s in sockets) == IDLE  # nobody was dropped to make room


def test_idle_connections_are_closed_after_the_idle_timeout(sockets: list[socket.socket]) -> None:
    with LimitsWorker("--idle-timeout", "2") as worker:
        sockets += idle_sockets(worker.port, IDLE)
        assert ping(worker.url, timeout=1.0).status_code == 200
        assert sum(is_open(s) for s in sockets) == IDLE
        deadline = time.monotonic() + 15  # 2 s timeout, checked every second, on a busy machine
        while time.monotonic() < deadline and any(is_open(s) for s in sockets):
            time.sleep(0.25)
        assert not any(is_open(s) for s in sockets), "idle connections outlived idle_timeout=2"
        assert ping(worker.url, timeout=1.0).status_code == 200  # the server itself carries on


def test_the_connection_limit_is_configurable(sockets: list[socket.socket]) -> None:
    """``connection_limit=8``: 8 idle clients hold every slot; closing one lets the next in."""
    with start_http_server(Calculator, CalculatorImpl(), token_key=b"k" * 32, connection_limit=8) as h:
        sockets += idle_sockets(h.port, 8)
        time.sleep(0.3)
        body = call_body("add", {"a": 1, "b": 2})
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                f"{h.base_url}/Calculator/add", content=body, headers={"Content-Type": ARROW}, timeout=1.0
            )
        sockets.pop().close()
        r = httpx.post(
            f"{h.base_url}/Calculator/add", content=body, headers={"Content-Type": ARROW}, timeout=5
        )
        assert r.status_code == 200


def test_the_default_limit_is_sized_for_the_threads() -> None:
    assert default_connection_limit(8) == min(8 * CONNECTIONS_PER_THREAD, default_connection_limit(10_000))
    assert default_connection_limit(1) == CONNECTIONS_PER_THREAD
    with pytest.raises(ValueError, match="connection_limit"):
        start_http_server(Calculator, CalculatorImpl(), token_key=b"k" * 32, connection_limit=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        start_http_server(Calculator, CalculatorImpl(), token_key=b"k" * 32, idle_timeout=0)
