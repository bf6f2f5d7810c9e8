"""HTTP streams near the wire (issue 21, server side): what each cost-saving promise keeps.

* responses are not compressed unless asked for; ``compress_responses="zstd[:N]"`` names the
  level; a client asking for a coding we do not offer gets identity (in-process and waitress);
* the response body reaches waitress as the Arrow sink's buffer (from 256 KiB sent in
  place through waitress's file wrapper): same bytes, right ``Content-Length``, keep-alive
  intact, many turns on one connection, a client hanging up mid-body harmless;
* stream state is sealed in a compact form for scalar dataclasses (IPC otherwise), values
  come back exactly, a tampered compact token is the same 400 as before, and a token of the
  previous format (``S1``) still resumes;
* ``producer_turn_bytes`` merges several ``produce()`` calls into one data batch per
  response, logs first and in order, metadata merged, ``finish()`` honoured, errors reported.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import math
import os
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import falcon.testing
import pyarrow as pa
import pytest
import zstandard
from support.http import ARROW, TOKEN_KEY, error_md, read_stream, token_of, turn_body

from vgi_rpc import CallContext, OutputCollector, ProducerState, RpcServer, Stream
from vgi_rpc._types import dataclass_to_ipc
from vgi_rpc.auth import ANONYMOUS
from vgi_rpc.http import make_wsgi_app, start_http_server
from vgi_rpc.http._routes import _BufferFile
from vgi_rpc.http._state import StatePayloadError, pack_stream, unpack_stream
from vgi_rpc.http._tokens import TokenSealer
from vgi_rpc.testing import RecordingHook
from vgi_rpc.wire import request_bytes

SCHEMA = pa.schema([pa.field("i", pa.int64(), nullable=False)])
LOG_KEY = "vgi_rpc.log_message"


@dataclasses.dataclass
class Blocks(ProducerState):
    """``batches`` batches of ``rows`` rows (values count up), a log before each, then finish."""

    rows: int
    batches: int
    done: int = 0
    tag: bool = False

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.done >= self.batches:
            out.finish()
            return
        out.log("INFO", f"batch {self.done}")
        start = self.done * self.rows
        batch = pa.RecordBatch.from_pydict({"i": list(range(start, start + self.rows))}, schema=SCHEMA)
        out.emit(batch, {"part": str(self.done), f"seen{self.done}": "1"} if self.tag else None)
        self.done += 1


@dataclasses.dataclass
class FailAfter(ProducerState):
    """Emits ``ok`` one-row batches, then raises."""

    ok: int
    done: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.done >= self.ok:
            raise RuntimeError("producer broke")
        out.emit(pa.RecordBatch.from_pydict({"i": [self.done]}, schema=SCHEMA))
        self.done += 1


class Wire(Protocol):
    def blocks(self, rows: int, batches: int, tag: bool) -> Stream[Blocks]: ...

    def fail_after(self, ok: int) -> Stream[FailAfter]: ...


class WireImpl:
    def blocks(self, rows: int, batches: int, tag: bool) -> Stream[Blocks]:
        return Stream(output_schema=SCHEMA, state=Blocks(rows=rows, batches=batches, tag=tag))

    def fail_after(self, ok: int) -> Stream[FailAfter]:
        return Stream(output_schema=SCHEMA, state=FailAfter(ok=ok))


def _app(**options: Any) -> Any:
    options.setdefault("token_key", TOKEN_KEY)
    return make_wsgi_app(RpcServer(Wire, WireImpl()), **options)


def _init_body(method: str, **columns: Any) -> bytes:
    batch = pa.RecordBatch.from_pydict({k: [v] for k, v in columns.items()})
    return request_bytes(method, batch, protocol="Wire")


class InProc:
    """Falcon's test client on a Wire app (its dispatches recorded in :attr:`hook`)."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("token_key", TOKEN_KEY)
        server = RpcServer(Wire, WireImpl())
        self.hook = RecordingHook()
        server.add_hook(self.hook)
        self.client = falcon.testing.TestClient(make_wsgi_app(server, **options))

    def post(self, path: str, body: bytes, **headers: str) -> falcon.testing.Result:
        return self.client.simulate_post(
            "/Wire/" + path, body=body, headers={"Content-Type": ARROW, **headers}
        )


def _data(body: bytes) -> list[tuple[pa.RecordBatch, dict[str, str]]]:
    """The data batches of a response (rows > 0 or no log/token metadata)."""
    return [(b, md) for b, md in read_stream(body)[1] if b.num_rows]


def _logs(body: bytes) -> list[str]:
    return [md[LOG_KEY] for _, md in read_stream(body)[1] if LOG_KEY in md]


def _drain(env: InProc, method: str, **init: Any) -> list[bytes]:
    """Every response body of one stream, /init to the last turn (bounded)."""
    bodies = [env.post(f"{method}/init", _init_body(method, **init)).content]
    for _ in range(1000):
        token = token_of(bodies[-1])
        if token is None:
            return bodies
        r = env.post(f"{method}/exchange", turn_body(token))
        assert r.status_code == 200
        bodies.append(r.content)
    raise AssertionError("the stream never ended")


# --------------------------------------------------------------------------- compression


def test_big_turns_go_uncompressed_by_default_even_when_zstd_is_accepted() -> None:
    r = InProc().post(
        "blocks/init", _init_body("blocks", rows=4096, batches=1, tag=False), Accept_Encoding="zstd"
    )
    assert r.status_code == 200
    assert "Content-Encoding" not in r.headers
    assert len(r.content) > 32768
    assert sum(b.num_rows for b, _ in _data(r.content)) == 4096


@pytest.mark.parametrize(("accept", "coding"), [("*", "zstd"), ("br, *;q=0", None), ("ZSTD", "zstd")])
def test_zstd_is_sent_for_a_wildcard_accept_and_not_for_a_refused_one(
    accept: str, coding: str | None
) -> None:
    r = InProc(compress_responses=True).post(
        "blocks/init", _init_body("blocks", rows=4096, batches=1, tag=False), Accept_Encoding=accept
    )
    assert r.headers.get("Content-Encoding") == coding


def test_over_waitress_identity_unless_zstd_is_asked_for_and_offered() -> None:
    body = _init_body("blocks", rows=4096, batches=1, tag=False)
    server = RpcServer(Wire, WireImpl())
    with (
        start_http_server(server, token_key=TOKEN_KEY) as plain,
        start_http_server(server, token_key=TOKEN_KEY, compress_responses="zstd:3") as packed,
    ):
        for handle, accept, coding in [
            (plain, "zstd", None),
            (packed, "gzip, deflate, br", None),
            (packed, "zstd;q=0", None),
            (packed, "gzip, deflate, zstd", "zstd"),
        ]:
            status, headers, raw = _http_post(
                handle.port, "/Wire/blocks/init", body, {"Accept-Encoding": accept}
            )
            assert status == 200
            assert headers.get("content-encoding") == coding, accept
            if coding == "zstd":
                plain_raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
                assert raw == zstandard.ZstdCompressor(level=3).compress(plain_raw)  # the named level
                raw = plain_raw
            assert sum(b.num_rows for b, _ in _data(raw)) == 4096


def _http_post(
    port: int, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ARROW, **headers})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- the buffer handed to waitress


@pytest.mark.parametrize("rows", [1024, 65536], ids=["8KiB-copied-once", "512KiB-sent-in-place"])
def test_waitress_sends_the_arrow_buffer_whole_with_its_length_on_one_kept_alive_connection(
    rows: int,
) -> None:
    """B: both ways a body reaches waitress (below 256 KiB appended once, from 256 KiB its
    file wrapper over the sink's buffer) give the same batches, the right length, keep-alive."""
    expected_in_proc = _drain(InProc(), "blocks", rows=rows, batches=3, tag=False)
    with start_http_server(RpcServer(Wire, WireImpl()), token_key=TOKEN_KEY) as handle:
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=30)
        try:
            path, body = "/Wire/blocks/init", _init_body("blocks", rows=rows, batches=3, tag=False)
            seen: list[bytes] = []
            sockets = set()
            for _ in range(10):
                conn.request("POST", path, body=body, headers={"Content-Type": ARROW})
                resp = conn.getresponse()
                raw = resp.read()
                assert resp.status == 200
                assert int(resp.getheader("Content-Length") or -1) == len(raw)
                sockets.add(id(conn.sock))
                seen.append(raw)
                token = token_of(raw)
                if token is None:
                    break
                path, body = "/Wire/blocks/exchange", turn_body(token)
        finally:
            conn.close()
    assert len(sockets) == 1  # keep-alive held across every turn
    assert len(seen) == len(expected_in_proc) == 4
    for got, want in zip(seen, expected_in_proc, strict=True):
        assert [b for b, _ in _data(got)] == [b for b, _ in _data(want)]
    assert [b.column(0)[0].as_py() for raw in seen[:3] for b, _ in _data(raw)] == [0, rows, 2 * rows]


def test_a_client_hanging_up_inside_a_big_body_leaves_the_server_serving() -> None:
    """B: an 8 MiB turn sent in place from the sink's buffer, the client gone after 1 KB of it:
    the server keeps answering, whole bodies, on new connections."""
    rows = 1 << 20
    with start_http_server(RpcServer(Wire, WireImpl()), token_key=TOKEN_KEY) as handle:
        body = _init_body("blocks", rows=rows, batches=2, tag=False)
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", handle.port), timeout=30)
            head = (
                f"POST /Wire/blocks/init HTTP/1.1\r\nHost: x\r\nContent-Type: {ARROW}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            sock.sendall(head + body)
            got = b""
            while len(got) < 1024:
                more = sock.recv(1024)
                assert more, "the server closed before sending the body"
                got += more
            assert got.startswith(b"HTTP/1.1 200")
            sock.close()
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=30)
        try:
            conn.request("POST", "/Wire/blocks/init", body=body, headers={"Content-Type": ARROW})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
    assert resp.status == 200 and int(resp.getheader("Content-Length") or -1) == len(raw)
    ((batch, _),) = _data(raw)
    assert batch.num_rows == rows and batch.column(0)[rows - 1].as_py() == rows - 1


def test_the_in_place_body_reads_and_seeks_like_a_file_without_copying() -> None:
    """B: what waitress's file wrapper calls on the body: tell, seek (0/1/2), read(n), read(), close."""
    data = pa.py_buffer(bytes(range(256)) * 4)
    f = _BufferFile(data)
    assert f.seekable() and f.tell() == 0
    assert f.seek(0, 2) == 1024 and f.seek(0) == 0
    first = f.read(100)
    assert isinstance(first, pa.Buffer) and bytes(first) == bytes(range(100)) and f.tell() == 100
    assert f.seek(-50, 1) == 50 and bytes(f.read(10)) == bytes(range(50, 60))
    assert f.seek(1000) == 1000 and bytes(f.read(100)) == (bytes(range(256)) * 4)[1000:] and f.tell() == 1024
    assert bytes(f.read(5)) == b""
    f.seek(0)
    assert bytes(f.read()) == data.to_pybytes()
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.read(1)


# --------------------------------------------------------------------------- compact state


@dataclasses.dataclass
class Scalars(ProducerState):
    i: int
    f: float
    s: str
    b: bytes
    flag: bool
    maybe: int | None = None
    maybe_s: str | None = "x"

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        out.finish()


@dataclasses.dataclass
class Nested(ProducerState):
    items: list[int]
    name: str

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        out.finish()


def _stream(state: Any) -> Stream[Any]:
    return Stream(output_schema=SCHEMA, state=state)


@pytest.mark.parametrize(
    "state",
    [
        Scalars(i=-(2**63), f=-0.0, s="", b=b"", flag=False),
        Scalars(
            i=2**63 - 1,
            f=math.inf,
            s="żółw \U0001f600",
            b=bytes(range(256)),
            flag=True,
            maybe=0,
            maybe_s=None,
        ),
        Scalars(i=7, f=1e-300, s="a" * 10000, b=b"\0" * 3, flag=True, maybe=-1, maybe_s=""),
    ],
)
def test_scalar_states_seal_compactly_and_come_back_exactly(state: Scalars) -> None:
    payload = pack_stream(_stream(state))
    assert payload[:2] == b"S2"
    assert payload[4 + struct.unpack(">I", payload[2:6])[0] + 4 + 2 :][:1] == b"C"  # kind of part 2
    back = unpack_stream(payload)
    assert back.state == state
    assert [type(getattr(back.state, f.name)) for f in dataclasses.fields(state)] == [
        type(getattr(state, f.name)) for f in dataclasses.fields(state)
    ]
    assert back.output_schema.equals(SCHEMA)


def test_compact_state_keeps_nan() -> None:
    back = unpack_stream(pack_stream(_stream(Scalars(i=1, f=math.nan, s="s", b=b"b", flag=True))))
    assert math.isnan(back.state.f)


@pytest.mark.parametrize(
    "state",
    [
        Nested(items=[1, 2, 3], name="n"),  # a list field: Arrow IPC
        Scalars(i=1, f=2, s="s", b=b"b", flag=True),  # type: ignore[arg-type]  # an int in a float field
        Scalars(i=2**64, f=0.5, s="s", b=b"b", flag=True),  # out of int64: IPC decides (and refuses)
    ],
)
def test_other_states_take_the_ipc_form_as_before(state: Any) -> None:
    try:
        expected = dataclass_to_ipc(state)
    except (TypeError, OverflowError, pa.ArrowInvalid) as exc:
        with pytest.raises(type(exc) if not isinstance(exc, TypeError) else TypeError):
            pack_stream(_stream(state))
        return
    payload = pack_stream(_stream(state))
    assert expected in payload and b"I" + expected in payload
    back = unpack_stream(payload).state
    assert back == dataclasses.replace(
        state, **{f.name: getattr(back, f.name) for f in dataclasses.fields(state)}
    )
    if isinstance(state, Scalars):
        assert type(back.f) is float and back.f == 2.0  # what the IPC path always gave


def test_a_token_of_the_previous_format_still_resumes() -> None:
    """A server upgraded mid-stream opens the ``S1`` (all-IPC) payload the old one sealed."""
    env = InProc()
    state = Blocks(rows=2, batches=3, done=1)
    parts = (
        f"{Blocks.__module__}:{Blocks.__qualname__}".encode(),
        dataclass_to_ipc(state),
        SCHEMA.serialize().to_pybytes(),
        pa.schema([]).serialize().to_pybytes(),
    )
    payload = b"S1" + b"".join(struct.pack(">I", len(p)) + p for p in parts)
    token = TokenSealer(TOKEN_KEY).seal(
        payload, protocol="Wire", method="blocks", auth=ANONYMOUS, stream_id="ab" * 16
    )
    r = env.post("blocks/exchange", turn_body(token))
    assert r.status_code == 200
    assert [b.column(0).to_pylist() for b, _ in _data(r.content)] == [[2, 3]]
    assert token_of(r.content) is not None


def _tampered(token: str, at: int) -> str:
    raw = bytearray(base64.b64decode(token))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("where", ["nonce", "middle", "tag"])
def test_a_tampered_compact_token_is_refused_like_before(where: str) -> None:
    env = InProc()
    token = token_of(env.post("blocks/init", _init_body("blocks", rows=1, batches=5, tag=False)).content)
    assert token is not None
    n = len(base64.b64decode(token))
    bad = _tampered(token, {"nonce": 3, "middle": n // 2, "tag": n - 1}[where])
    r = env.post("blocks/exchange", turn_body(bad))
    assert r.status_code == 400
    assert "stream token rejected" in error_md(r.content)[LOG_KEY]
    assert "Blocks" not in error_md(r.content)[LOG_KEY]


def test_a_tampered_compact_token_is_refused_over_waitress() -> None:
    with start_http_server(RpcServer(Wire, WireImpl()), token_key=TOKEN_KEY) as handle:
        status, _, raw = _http_post(
            handle.port, "/Wire/blocks/init", _init_body("blocks", rows=1, batches=5, tag=False), {}
        )
        token = token_of(raw)
        assert status == 200 and token is not None
        status, headers, raw = _http_post(
            handle.port, "/Wire/blocks/exchange", turn_body(_tampered(token, 20)), {}
        )
    assert status == 400
    assert headers["x-vgi-rpc-error"] == "true"
    assert "stream token rejected" in error_md(raw)[LOG_KEY]


def test_a_state_of_a_few_scalars_makes_a_short_token() -> None:
    token = token_of(InProc().post("blocks/init", _init_body("blocks", rows=1, batches=5, tag=False)).content)
    assert token is not None
    assert len(token) < 450  # four scalar fields; the IPC form made about 900 characters


def test_a_compact_state_that_no_longer_fits_its_class_is_a_400_over_http() -> None:
    payload = pack_stream(_stream(Blocks(rows=1, batches=5)))
    count_at = payload.index(b"C" + struct.pack(">I", 4)) + 1
    changed = payload[:count_at] + struct.pack(">I", 3) + payload[count_at + 4 :]
    token = TokenSealer(TOKEN_KEY).seal(
        changed, protocol="Wire", method="blocks", auth=ANONYMOUS, stream_id="cd" * 16
    )
    r = InProc().post("blocks/exchange", turn_body(token))
    assert r.status_code == 400
    assert "stream token cannot be resumed by this server" in error_md(r.content)[LOG_KEY]


def test_a_compact_state_whose_class_changed_is_refused_not_misread() -> None:
    payload = pack_stream(_stream(Scalars(i=1, f=0.5, s="s", b=b"b", flag=True)))
    count_at = payload.index(b"C") + 1
    changed = payload[:count_at] + struct.pack(">I", 99) + payload[count_at + 4 :]
    with pytest.raises(StatePayloadError, match="fields changed"):
        unpack_stream(changed)


# --------------------------------------------------------------------------- merged producer turns


def test_merging_is_off_by_default_one_produce_per_turn() -> None:
    bodies = _drain(InProc(), "blocks", rows=10, batches=5, tag=False)
    assert [sum(b.num_rows for b, _ in _data(x)) for x in bodies] == [10, 10, 10, 10, 10, 0]


@pytest.mark.parametrize("option", [800, {"blocks": 800}])
def test_a_turn_merges_produce_calls_up_to_the_budget_one_batch_per_response(option: Any) -> None:
    # 10 int64 rows = 80 bytes a batch: a 800-byte budget takes 10 produce() calls a turn
    bodies = _drain(InProc(producer_turn_bytes=option), "blocks", rows=10, batches=25, tag=False)
    for body in bodies:
        assert len(_data(body)) <= 1  # never a second data batch (the official client refuses it)
    assert [sum(b.num_rows for b, _ in _data(x)) for x in bodies] == [100, 100, 50]
    values = [v for body in bodies for b, _ in _data(body) for v in b.column(0).to_pylist()]
    assert values == list(range(250))
    assert token_of(bodies[-1]) is None  # finish() in a merged turn ends the stream


def test_merged_logs_keep_their_order_ahead_of_the_data_and_metadata_merges() -> None:
    env = InProc(producer_turn_bytes=240)  # three 10-row batches a turn
    body = env.post("blocks/init", _init_body("blocks", rows=10, batches=7, tag=True)).content
    batches = read_stream(body)[1]
    assert _logs(body) == ["batch 0", "batch 1", "batch 2"]
    first_data = next(i for i, (b, _) in enumerate(batches) if b.num_rows)
    assert all(LOG_KEY in md for _, md in batches[:first_data])  # every log before the data
    ((_, md),) = _data(body)
    assert md["part"] == "2"  # later keys win
    assert md["seen0"] == md["seen1"] == md["seen2"] == "1"  # the union of the parts' metadata


def test_one_hook_pair_covers_a_merged_turn() -> None:
    env = InProc(producer_turn_bytes=800)
    bodies = _drain(env, "blocks", rows=10, batches=25, tag=False)
    assert len(bodies) == 3
    calls = env.hook.calls
    assert [c.info.turn for c in calls] == ["init", "exchange", "exchange"]
    assert all(c.ended and c.error is None for c in calls)


def test_the_budget_applies_only_to_the_methods_it_names() -> None:
    env = InProc(producer_turn_bytes={"fail_after": 10_000})
    bodies = _drain(env, "blocks", rows=10, batches=3, tag=False)
    assert [sum(b.num_rows for b, _ in _data(x)) for x in bodies] == [10, 10, 10, 0]


def test_an_error_in_a_merged_produce_call_is_the_turns_answer() -> None:
    env = InProc(producer_turn_bytes=10_000)
    r = env.post("fail_after/init", _init_body("fail_after", ok=3))
    assert r.status_code == 200
    assert r.headers.get("X-VGI-RPC-Error") == "true"
    assert "producer broke" in error_md(r.content)[LOG_KEY]
    assert _data(r.content) == []


@pytest.mark.parametrize(
    ("option", "text"),
    [
        ({"nope": 10}, "names no stream method"),
        (0, "positive"),
        ({"blocks": -1}, "positive"),
        (True, "positive"),
    ],
)
def test_a_bad_budget_is_refused_when_the_app_is_built(option: Any, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        _app(producer_turn_bytes=option)


def test_merged_turns_over_waitress_with_our_client() -> None:
    from vgi_rpc.http import http_connect

    server = RpcServer(Wire, WireImpl())
    with (
        start_http_server(server, token_key=TOKEN_KEY, producer_turn_bytes=8 * 4096) as handle,
        http_connect(Wire, handle.base_url) as proxy,
    ):
        got = list(_rows(proxy.blocks(rows=1024, batches=20, tag=False)))
    assert [n for n, _ in got] == [4096] * 5
    assert [v for _, vs in got for v in vs] == list(range(20 * 1024))


def _rows(stream: Any) -> Iterator[tuple[int, list[int]]]:
    for item in stream:
        batch = getattr(item, "batch", item)
        yield batch.num_rows, batch.column(0).to_pylist()


# --------------------------------------------------------------------------- the official client

_PEER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-peer" / "bin" / "python"
_PEER_SCRIPT = """
import json, sys
from dataclasses import dataclass
from typing import Protocol
from vgi_rpc import ProducerState, Stream
from vgi_rpc.http import http_connect

@dataclass
class Blocks(ProducerState):
    rows: int
    batches: int
    done: int = 0
    tag: bool = False
    def produce(self, out, ctx): raise AssertionError("client side")

class Wire(Protocol):
    def blocks(self, rows: int, batches: int, tag: bool) -> Stream[Blocks]: ...

logs = []
with http_connect(Wire, sys.argv[1], on_log=logs.append) as proxy:
    got = [ab.batch.column("i").to_pylist() for ab in proxy.blocks(rows=1024, batches=20, tag=False)]
print(json.dumps({"sizes": [len(g) for g in got], "values_ok": [v for g in got for v in g] == list(range(20480)),
                  "logs": [m.message for m in logs]}))
"""


@pytest.mark.skipif(not _PEER_PYTHON.exists(), reason="the official client's venv (.venv-peer) is not built")
def test_the_official_client_reads_merged_turns_as_one_batch_each(tmp_path: Path) -> None:
    """vgi-rpc 0.52.2 refuses a second data batch in one response; a merged turn is one batch."""
    server = RpcServer(Wire, WireImpl())
    with start_http_server(server, token_key=TOKEN_KEY, producer_turn_bytes=8 * 4096) as handle:
        done = subprocess.run(
            [str(_PEER_PYTHON), "-c", _PEER_SCRIPT, handle.url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,  # not the repository: the official package, not ours, must be imported
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["sizes"] == [4096] * 5
    assert result["values_ok"] is True
    assert result["logs"] == [f"batch {i}" for i in range(20)]  # every merged call's log, in order
