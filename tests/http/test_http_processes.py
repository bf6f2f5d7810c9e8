"""Two ``serve_http`` processes, one stream: ``/init`` on one, every ``/exchange`` on the other.

Both workers share ``token_key``; the client routes turns with its own ``httpx.Client``
(a transport that sends ``/init`` to worker A and everything else to worker B), which
is also how a user would pin or spread turns behind no load balancer at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.http import Tracer
from support.worker_process import PortWorker

from vgi_rpc import AnnotatedBatch, RpcError
from vgi_rpc.http import http_connect

TESTS = Path(__file__).resolve().parents[1]
KEY = "a shared key for both workers, 32+ bytes"


class Worker(PortWorker):
    """A ``serve_http`` subprocess sharing *key* as ``token_key``."""

    def __init__(self, key: str) -> None:
        code = "from support.http import serve_tracer_main; serve_tracer_main()"
        super().__init__(
            [sys.executable, "-c", code], env={**os.environ, "VGI_TOKEN_KEY": key, "PYTHONPATH": str(TESTS)}
        )


class SplitTurns(httpx.BaseTransport):
    """Sends ``/init`` (and unary calls) to one worker and ``/exchange`` turns to another."""

    def __init__(self, init_url: str, turn_url: str) -> None:
        self.init = httpx.URL(init_url)
        self.turn = httpx.URL(turn_url)
        self.inner = httpx.HTTPTransport()
        self.routed: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self.turn if request.url.path.endswith("/exchange") else self.init
        request.url = request.url.copy_with(host=target.host, port=target.port)
        self.routed.append((request.url.path.rsplit("/", 1)[-1], target.port or 0))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[Worker, Worker]]:
    a = Worker(KEY)
    try:
        b = Worker(KEY)
    except Exception:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_producer_init_on_one_process_turns_on_another(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    transport = SplitTurns(a.url, b.url)
    with (
        httpx.Client(transport=transport) as client,
        http_connect(Tracer, a.url, prefix="/vgi", client=client) as t,
    ):
        rows = [ab.to_pydict() for ab in t.trace(start=10, stop=14)]
    assert [r["i"][0] for r in rows] == [10, 11, 12, 13]
    pids = [r["pid"][0] for r in rows]
    servers = [r["server_id"][0] for r in rows]
    assert pids[0] != pids[1] and len(set(pids[1:])) == 1  # first row from /init (A), the rest from B
    assert servers[0] != servers[1]
    stream_ids = {r["stream_id"][0] for r in rows}
    assert len(stream_ids) == 1 and len(stream_ids.pop()) == 32
    assert {port for _, port in transport.routed if _ == "exchange"} == {httpx.URL(b.url).port}


def test_exchange_init_on_one_process_turns_on_another(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    with (
        httpx.Client(transport=SplitTurns(a.url, b.url)) as client,
        http_connect(Tracer, a.url, prefix="/vgi", client=client) as t,
        t.accumulate() as session,
    ):
        outs = [session.exchange(AnnotatedBatch.from_pydict({"i": [n]})).to_pydict() for n in (1, 2, 3, 4)]
    assert [o["i"][0] for o in outs] == [1, 3, 6, 10]  # the running total moved between processes intact
    assert len({o["stream_id"][0] for o in outs}) == 1
    assert len({o["pid"][0] for o in outs}) == 1  # all turns on B
    with httpx.Client() as c:
        a_server_id = c.get(a.url + "/vgi/health").json()["server_id"]
    assert outs[0]["server_id"][0] != a_server_id


def test_turns_can_alternate_between_processes(workers: tuple[Worker, Worker]) -> None:
    a, b = workers
    urls = [a.url, b.url]
    count = {"n": 0}

    class Alternate(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            target = httpx.URL(urls[count["n"] % 2])
            count["n"] += 1
            request.url = request.url.copy_with(host=target.host, port=target.port)
            return self.inner.handle_request(request)

    with (
        httpx.Client(transport=Alternate()) as client,
        http_connect(Tracer, a.url, prefix="/vgi", client=client) as t,
    ):
        rows = [ab.to_pydict() for ab in t.trace(start=0, stop=6)]
    assert [r["i"][0] for r in rows] == list(range(6))
    assert len({r["pid"][0] for r in rows}) == 2
    assert len({r["stream_id"][0] for r in rows}) == 1


def test_a_worker_with_another_key_refuses_the_turn(workers: tuple[Worker, Worker]) -> None:
    a, _ = workers
    stranger = Worker("a completely different key, 32+ bytes")
    try:
        with (
            httpx.Client(transport=SplitTurns(a.url, stranger.url)) as client,
            http_connect(Tracer, a.url, prefix="/vgi", client=client) as t,
            pytest.raises(RpcError, match="stream token rejected"),
        ):
            list(t.trace(start=0, stop=3))
    finally:
        stranger.stop()
