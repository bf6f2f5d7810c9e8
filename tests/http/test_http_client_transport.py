"""The HTTP client near the wire (issue 21, client side): what ``http_connect`` sends and how.

* every request states ``Accept-Encoding: zstd, identity`` (once), on the default client,
  a caller's own ``httpx.Client`` and with ``compression=None``: an official server is
  never pushed into gzip (which it runs at level 9);
* producer ticks and cancels are never compressed; other bodies from 1 KiB on;
* the default client's transport keeps one keep-alive socket across calls and stream
  turns and survives a server that closed an idle socket (its timeouts and failures are
  tests/http/test_http_client_errors.py, which runs on it);
* against the official vgi-rpc 0.52.2 server (``.venv-peer``), responses come back zstd
  or identity, never gzip, and the values are right (on both client kinds).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pyarrow as pa
import pytest
from support.worker_process import official_http_server

from vgi_rpc import CallContext, OutputCollector, ProducerState, RpcError, RpcServer, Stream
from vgi_rpc.http import http_connect, start_http_server
from vgi_rpc.http._client import _own_client
from vgi_rpc.http._transport import StdlibTransport

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.conformance._impl import ConformanceServiceImpl  # noqa: E402
from tests.conformance._protocol import ConformanceService  # noqa: E402

pytestmark = pytest.mark.timeout(120)

SCHEMA = pa.schema([pa.field("i", pa.int64(), nullable=False)])


class Padded(Protocol):
    """A producer whose state (so its token, so every tick) is as big as *pad* makes it."""

    def produce(self, count: int, pad: str) -> Stream[ProducerState]: ...


@dataclasses.dataclass
class PadState(ProducerState):
    count: int
    pad: str
    done: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.done >= self.count:
            out.finish()
            return
        out.emit(pa.RecordBatch.from_pydict({"i": [self.done]}, schema=SCHEMA))
        self.done += 1


class PaddedImpl:
    def produce(self, count: int, pad: str) -> Stream[ProducerState]:
        return Stream(output_schema=SCHEMA, state=PadState(count, pad))


PEER = ROOT / ".venv-peer" / "bin"
KEY = b"k" * 32


class Recorder:
    """httpx event hooks that keep each request's and response's headers."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    def hooks(self) -> dict[str, list[object]]:
        return {"request": [self.requests.append], "response": [self.responses.append]}


def recording_client(rec: Recorder, *, stdlib: bool) -> httpx.Client:
    mounts = {"http://": StdlibTransport()} if stdlib else None
    return httpx.Client(timeout=30, mounts=mounts, event_hooks=rec.hooks())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ours() -> Iterator[str]:
    with start_http_server(ConformanceService, ConformanceServiceImpl(), token_key=KEY) as handle:
        yield handle.base_url


# --------------------------------------------------------------------------- what is sent


def test_the_default_client_states_zstd_identity_once_on_the_wire() -> None:
    """The raw request head of the default client: one ``Accept-Encoding``, ours, not httpx's."""
    heads: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            heads.append(data.partition(b"\r\n\r\n")[0])
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with (
            http_connect(ConformanceService, url, compression=None) as proxy,
            pytest.raises(RpcError) as info,
        ):
            proxy.echo_int(value=1)
        thread.join(10)
    finally:
        listener.close()
    assert info.value.error_code == "UNAVAILABLE"
    lines = [line.lower() for line in heads[0].split(b"\r\n")]
    assert [line for line in lines if line.startswith(b"accept-encoding:")] == [
        b"accept-encoding: zstd, identity"
    ]
    assert b"gzip" not in heads[0].lower()


@pytest.mark.parametrize("stdlib", [True, False], ids=["stdlib-transport", "httpx-transport"])
@pytest.mark.parametrize("compression", ["zstd", None])
def test_every_request_states_zstd_identity(ours: str, stdlib: bool, compression: str | None) -> None:
    rec = Recorder()
    with (
        recording_client(rec, stdlib=stdlib) as client,
        http_connect(ConformanceService, ours, client=client, compression=compression) as proxy,
    ):
        assert proxy.echo_int(value=7) == 7
        assert sum(b.batch.num_rows for b in proxy.produce_n(count=3)) == 3
    assert len(rec.requests) >= 5
    for request in rec.requests:
        assert request.headers.get_list("accept-encoding") == ["zstd, identity"], request.url


def test_a_callers_accept_encoding_is_kept(ours: str) -> None:
    rec = Recorder()
    with (
        recording_client(rec, stdlib=True) as client,
        http_connect(
            ConformanceService, ours, client=client, headers={"accept-encoding": "identity"}
        ) as proxy,
    ):
        assert proxy.echo_int(value=3) == 3
    assert [r.headers.get_list("accept-encoding") for r in rec.requests] == [["identity"]] * len(rec.requests)


def test_ticks_are_never_compressed_and_big_bodies_are(ours: str) -> None:
    """zstd asked for: a 64 KiB unary body is zstd, a 200-byte one is not."""
    rec = Recorder()
    with (
        recording_client(rec, stdlib=True) as client,
        http_connect(ConformanceService, ours, client=client, compression="zstd") as proxy,
    ):
        assert proxy.echo_bytes(data=b"x" * 200) == b"x" * 200
        big = os.urandom(64 * 1024)
        assert proxy.echo_bytes(data=big) == big
    echoes = [r for r in rec.requests if r.url.path.endswith("/echo_bytes")]
    assert [r.headers.get("content-encoding") for r in echoes] == [None, "zstd"]


def test_producer_ticks_and_cancels_are_never_compressed() -> None:
    """Ticks of 3 KB (a big state, so a big token) go as they are; the /init body is compressed."""
    rec = Recorder()
    pad = os.urandom(1000).hex()
    with (
        start_http_server(RpcServer(Padded, PaddedImpl()), token_key=KEY) as handle,
        recording_client(rec, stdlib=True) as client,
        http_connect(Padded, handle.base_url, client=client, compression="zstd") as proxy,
    ):
        assert [b.batch.column(0)[0].as_py() for b in proxy.produce(count=4, pad=pad)] == [0, 1, 2, 3]
        session = proxy.produce(count=4, pad=pad)
        next(iter(session))
        session.cancel()
    posts = [r for r in rec.requests if r.method == "POST"]
    inits = [r for r in posts if r.url.path.endswith("/init")]
    turns = [r for r in posts if r.url.path.endswith("/exchange")]
    assert [r.headers.get("content-encoding") for r in inits] == ["zstd", "zstd"]
    assert len(turns) >= 5  # four ticks of the first stream and the cancel of the second
    for turn in turns:
        assert len(turn.content) > 2048, len(turn.content)
        assert "content-encoding" not in turn.headers


# --------------------------------------------------------------------------- the default transport


def test_the_default_client_uses_the_stdlib_transport_unless_a_proxy_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with _own_client(5.0) as client:
        assert isinstance(client._transport_for_url(httpx.URL("http://127.0.0.1:1/")), StdlibTransport)
        assert not isinstance(client._transport_for_url(httpx.URL("https://127.0.0.1:1/")), StdlibTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with _own_client(5.0) as client:
        assert not isinstance(client._transport_for_url(httpx.URL("http://127.0.0.1:1/")), StdlibTransport)


def test_calls_and_turns_share_one_keep_alive_socket(ours: str) -> None:
    transport = StdlibTransport()
    with (
        httpx.Client(timeout=30, mounts={"http://": transport}) as client,
        http_connect(ConformanceService, ours, client=client, compression=None) as proxy,
    ):
        for i in range(20):
            assert proxy.echo_int(value=i) == i
        first = {id(s) for q in transport._idle.values() for s in q}
        assert sum(b.batch.num_rows for b in proxy.produce_n(count=10)) == 10
        assert proxy.echo_string(value="ok") == "ok"
        assert {id(s) for q in transport._idle.values() for s in q} == first
    assert len(first) == 1


def test_a_socket_the_server_closed_while_idle_is_not_reused() -> None:
    """waitress closes idle sockets after ``idle_timeout``; the next call opens a new one and succeeds."""
    transport = StdlibTransport()
    ports: set[int] = set()
    with (
        start_http_server(ConformanceService, ConformanceServiceImpl(), token_key=KEY, idle_timeout=0.3) as h,
        httpx.Client(timeout=30, mounts={"http://": transport}) as client,
        http_connect(ConformanceService, h.base_url, client=client, compression=None) as proxy,
    ):
        deadline = time.monotonic() + 20
        while len(ports) < 3 and time.monotonic() < deadline:  # idle for 1 s, swept every 1 s
            assert proxy.echo_int(value=2) == 2
            ports.update(s.getsockname()[1] for q in transport._idle.values() for s in q)
            time.sleep(2.2)
    assert len(ports) >= 3  # the server closed idle sockets, and every call after that succeeded


def test_a_big_response_and_request_round_trip_whole(ours: str) -> None:
    big = os.urandom(3 << 20)
    with http_connect(ConformanceService, ours) as proxy:
        assert proxy.echo_bytes(data=big) == big
        rows = sum(b.batch.num_rows for b in proxy.produce_large_batches(rows_per_batch=65536, batch_count=3))
    assert rows == 3 * 65536


def test_an_unsupported_scheme_is_still_unknown() -> None:
    with http_connect(ConformanceService, "ftp://127.0.0.1:21") as proxy, pytest.raises(RpcError) as info:
        proxy.echo_int(value=1)
    assert (info.value.error_kind, info.value.error_code) == ("transport", "UNKNOWN")


# --------------------------------------------------------------------------- the official server


@pytest.fixture(scope="module")
def official() -> Iterator[str]:
    with official_http_server() as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("stdlib", [True, False], ids=["default-transport", "plain-httpx-client"])
def test_the_official_server_answers_zstd_or_identity_never_gzip(official: str, stdlib: bool) -> None:
    """512 KiB producer turns and unary calls: values right, ``Content-Encoding`` zstd or absent."""
    rec = Recorder()
    with (
        recording_client(rec, stdlib=stdlib) as client,
        http_connect(ConformanceService, official, client=client) as proxy,
    ):
        assert proxy.echo_int(value=41) == 41
        assert proxy.echo_string(value="x" * 100_000) == "x" * 100_000
        batches = list(proxy.produce_large_batches(rows_per_batch=65536, batch_count=3))
    assert sum(b.batch.num_rows for b in batches) == 3 * 65536
    assert batches[0].batch.column(0).to_pylist()[:3] == [0, 1, 2]
    codings = {r.headers.get("content-encoding") for r in rec.responses}
    assert codings <= {None, "zstd"}, codings
    assert "zstd" in codings  # the official server compresses big answers: it chose zstd, not gzip
