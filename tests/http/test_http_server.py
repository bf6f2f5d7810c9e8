"""A real waitress server on 127.0.0.1: our client end to end, and every bad input over the wire."""

from __future__ import annotations

import base64
import gzip
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pytest
import zstandard
from support.http import (
    ARROW,
    BUDGET,
    TOKEN_KEY,
    call_body,
    error_md,
    read_stream,
    token_of,
    turn_body,
    wsgi_client,
)
from support.jwt import JWT_SECRET, sign_jwt
from support.services import Calculator, CalculatorImpl

from vgi_rpc import AnnotatedBatch, RpcError, RpcServer
from vgi_rpc.http import HttpServerHandle, http_connect, jwt_authenticator, make_wsgi_app, start_http_server
from vgi_rpc.testing import RecordingHook
from vgi_rpc.wire import LogMessage

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[HttpServerHandle, RecordingHook]]:
    server = RpcServer(Calculator, CalculatorImpl())
    hook = RecordingHook()
    server.add_hook(hook)
    with start_http_server(server, prefix="/vgi", token_key=TOKEN_KEY, max_request_bytes=LIMIT) as handle:
        yield handle, hook


@pytest.fixture(scope="module")
def handle(served: tuple[HttpServerHandle, RecordingHook]) -> HttpServerHandle:
    return served[0]


@pytest.fixture
def raw(handle: HttpServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=handle.url, timeout=30) as c:
        yield c


def post(c: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    h = {"Content-Type": ARROW, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return c.post(path, content=body, headers=h)


def still_serving(c: httpx.Client) -> None:
    r = post(c, "/Calculator/add", call_body("add", {"a": 20, "b": 22}))
    assert r.status_code == 200
    assert read_stream(r.content)[1][-1][0].to_pydict() == {"result": [42]}


# --------------------------------------------------------------------------- our client


def test_client_unary_defaults_logs_and_errors(handle: HttpServerHandle) -> None:
    logs: list[LogMessage] = []
    with http_connect(Calculator, handle.base_url, prefix="/vgi", on_log=logs.append) as calc:
        assert calc.add(a=1, b=2) == 3
        assert calc.greet(name="Ada") == "Hello, Ada!"
        assert calc.noop() is None
        assert calc.log_and_add(a=2, b=3) == 5
        assert [(m.level, m.message) for m in logs] == [
            ("INFO", "adding 2 and 3"),
            ("WARN", "numbers are small"),
        ]
        assert logs[0].extra == {"a": 2, "b": 3}
        with pytest.raises(RpcError) as info:
            calc.fail(message="kaboom", error_type="FileNotFoundError")
        assert info.value.error_type == "FileNotFoundError"
        assert info.value.error_message == "FileNotFoundError: kaboom"
        assert info.value.remote_traceback is None
        assert info.value.request_id


def test_client_streams(handle: HttpServerHandle) -> None:
    tag = uuid.uuid4().hex
    with http_connect(Calculator, handle.base_url, prefix="/vgi") as calc:
        assert [ab.batch.column("i").to_pylist() for ab in calc.countdown(n=3)] == [[2], [1], [0]]
        assert list(calc.countdown(n=0)) == []
        with calc.scale(factor=2.0, tag=tag) as s:
            assert s.exchange(AnnotatedBatch.from_pydict({"x": [1.0, 2.0]})).to_pydict() == {"y": [2.0, 4.0]}
            out = s.exchange(AnnotatedBatch.from_pydict({"x": [5.0]}, metadata={"k": "v"}))
            assert out.to_pydict() == {"y": [10.0]}
            assert out.custom_metadata == {"k": "v"}
            s.cancel()
        assert calc.stream_events(tag=tag) == ["process", "process", "cancel"]
        with pytest.raises(RpcError, match="no init"):
            calc.fail_init(message="no init")
        got: list[Any] = []
        with pytest.raises(RpcError) as info:
            for ab in calc.fail_produce(n=2, message="mid"):
                got.append(ab.batch.column("i")[0].as_py())
        assert got == [1, 2] and info.value.error_type == "RuntimeError"
        with calc.fail_process(message="neg") as s:
            with pytest.raises(RpcError, match="neg"):
                s.exchange(AnnotatedBatch.from_pydict({"x": [-1.0]}))
            assert s.exchange(AnnotatedBatch.from_pydict({"x": [3.0]})).to_pydict() == {"y": [3.0]}


@pytest.mark.parametrize("compression", ["zstd", "gzip", None])
def test_client_compression_choices(handle: HttpServerHandle, compression: str | None) -> None:
    seen: list[str | None] = []

    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            seen.append(request.headers.get("Content-Encoding"))

    with (
        httpx.Client(event_hooks={"request": [record]}) as client,
        http_connect(
            Calculator, handle.base_url, prefix="/vgi", client=client, compression=compression
        ) as calc,
    ):
        name = "n" * 5000
        assert calc.greet(name=name) == f"Hello, {name}!"
        assert calc.add(a=1, b=1) == 2
    assert seen == [compression, None]  # small bodies are sent as they are


def test_own_httpx_client_is_used_and_left_open(handle: HttpServerHandle) -> None:
    hook_calls: list[str] = []
    client = httpx.Client(
        headers={"X-Trace": "from-client"}, event_hooks={"request": [lambda r: hook_calls.append(r.url.path)]}
    )
    with http_connect(
        Calculator, handle.base_url, prefix="/vgi", client=client, headers={"X-Extra": "1"}
    ) as calc:
        assert calc.add(a=2, b=2) == 4
    assert not client.is_closed
    assert "/vgi/Calculator/add" in hook_calls
    client.close()


def test_client_retries_once_with_the_coding_a_415_names(handle: HttpServerHandle) -> None:
    """A server (or proxy) that refuses zstd: the client re-reads the 415's list and resends gzip."""
    app = make_wsgi_app(RpcServer(Calculator, CalculatorImpl()), token_key=TOKEN_KEY)
    codings: list[str | None] = []

    def gzip_only(environ: dict[str, Any], start_response: Any) -> Any:
        coding = environ.get("HTTP_CONTENT_ENCODING")
        codings.append(coding)
        if coding == "zstd":
            start_response(
                "415 Unsupported Media Type", [("VGI-Supported-Encodings", "gzip"), (BUDGET, "true")]
            )
            return [b""]
        return app(environ, start_response)

    with (
        wsgi_client(gzip_only) as client,
        http_connect(Calculator, "http://testserver", client=client) as calc,
    ):
        assert calc.greet(name="z" * 3000) == "Hello, " + "z" * 3000 + "!"
    assert codings[-2:] == ["zstd", "gzip"]


def test_client_maps_401_to_rpc_error() -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    with start_http_server(server, token_key=TOKEN_KEY, authenticate=jwt_authenticator(key=JWT_SECRET)) as h:
        with http_connect(Calculator, h.base_url) as calc, pytest.raises(RpcError) as info:
            calc.add(a=1, b=2)
        assert info.value.error_type == "AuthenticationError"
        assert info.value.error_kind == "missing_credential"
        auth = {"Authorization": f"Bearer {sign_jwt('alice')}"}
        with http_connect(Calculator, h.base_url, headers=auth) as calc:
            assert calc.add(a=1, b=2) == 3
            assert [ab.batch.column("i")[0].as_py() for ab in calc.countdown(n=2)] == [1, 0]


def test_request_over_the_limit_is_an_rpc_error(handle: HttpServerHandle) -> None:
    with http_connect(Calculator, handle.base_url, prefix="/vgi", compression=None) as calc:
        with pytest.raises(RpcError) as info:
            calc.greet(name="x" * (LIMIT + 10))
        assert info.value.error_type == "RequestTooLarge"
        assert calc.add(a=1, b=2) == 3


# --------------------------------------------------------------------------- bad input over the wire


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "text"),
    [
        (
            "/Calculator/add",
            call_body("add", {"a": 1, "b": 2}),
            {"Content-Type": "text/plain"},
            415,
            "Content-Type",
        ),
        ("/Calculator/add", b"xx", {"Content-Encoding": "compress"}, 415, "unsupported Content-Encoding"),
        ("/Calculator/nope", call_body("nope"), {}, 404, "unknown method 'nope'"),
        ("/Nope/add", call_body("add", {"a": 1, "b": 2}), {}, 404, "protocol 'Nope'"),
        ("/Calculator/add", b"\x00garbage\xff" * 10, {}, 400, "not a valid Arrow IPC stream"),
        ("/Calculator/add", call_body("add", {"a": 1, "b": 2})[:-30], {}, 400, "Arrow"),
        ("/Calculator/add", b"not zstd at all", {"Content-Encoding": "zstd"}, 400, "not valid zstd"),
        (
            "/Calculator/add",
            gzip.compress(call_body("add", {"a": 1, "b": 2}))[:-8],
            {"Content-Encoding": "gzip"},
            400,
            "truncated gzip",
        ),
        ("/Calculator/add", call_body("divide", {"a": 1.0, "b": 1.0}), {}, 400, "URL names method 'add'"),
        ("/Calculator/add", b"z" * (LIMIT + 1), {}, 413, f"limit of {LIMIT} bytes"),
        (
            "/Calculator/add",
            zstandard.ZstdCompressor().compress(b"\x00" * (LIMIT * 4)),
            {"Content-Encoding": "zstd"},
            413,
            "decompressed request body exceeds",
        ),
        ("/Calculator/add/exchange", turn_body("abc"), {}, 400, "add is a unary method"),
        ("/Calculator/countdown/exchange", turn_body("bm90IGEgdG9rZW4="), {}, 400, "token"),
        (
            "/Calculator/countdown/exchange",
            turn_body(""),
            {},
            400,
            "carries no vgi_rpc.stream_state#b64 token",
        ),
    ],
    ids=[
        "content-type",
        "coding",
        "unknown-method",
        "unknown-protocol",
        "garbage",
        "truncated",
        "bad-zstd",
        "truncated-gzip",
        "method-mismatch",
        "too-large",
        "zip-bomb",
        "exchange-on-unary",
        "garbage-token",
        "missing-token",
    ],
)
def test_bad_input_over_real_http(
    raw: httpx.Client, path: str, body: bytes, headers: dict[str, str], status: int, text: str
) -> None:
    r = raw.post(path, content=body, headers={"Content-Type": ARROW, **headers})
    assert r.status_code == status
    assert r.headers.get_list(BUDGET) == ["true"]
    md = error_md(r.content)
    assert text in md["vgi_rpc.log_message"]
    assert "Traceback" not in r.text
    still_serving(raw)


def test_tampered_expired_and_foreign_tokens_over_real_http(
    raw: httpx.Client, handle: HttpServerHandle
) -> None:
    r = post(raw, "/Calculator/scale/init", call_body("scale", {"factor": 9.5, "tag": "hidden-tag-value"}))
    token = token_of(r.content)
    assert token is not None
    x = pa.RecordBatch.from_pydict({"x": [1.0]})
    tampered = bytearray(base64.b64decode(token))
    tampered[-1] ^= 0x80
    bad = post(raw, "/Calculator/scale/exchange", turn_body(base64.b64encode(bytes(tampered)).decode(), x))
    assert bad.status_code == 400
    assert "stream token rejected" in error_md(bad.content)["vgi_rpc.log_message"]
    assert b"hidden-tag-value" not in bad.content and b"9.5" not in bad.content
    # the same token on another method (same caller, same key) is refused too
    other = post(raw, "/Calculator/fail_process/exchange", turn_body(token, x))
    assert other.status_code == 400
    # the genuine token still works: the server kept serving and kept no state
    ok = post(raw, "/Calculator/scale/exchange", turn_body(token, x))
    assert ok.status_code == 200
    assert [b.to_pydict() for b, md in read_stream(ok.content)[1] if b.num_rows] == [{"y": [9.5]}]


def test_expired_token_over_real_http() -> None:
    with (
        start_http_server(Calculator, CalculatorImpl(), token_key=TOKEN_KEY, token_ttl=0.001) as h,
        httpx.Client(base_url=h.url) as c,
    ):
        token = token_of(
            post(c, "/Calculator/countdown/init", call_body("countdown", {"n": 3, "tag": ""})).content
        )
        assert token is not None
        r = post(c, "/Calculator/countdown/exchange", turn_body(token))
        assert r.status_code == 400
        assert "expired" in error_md(r.content)["vgi_rpc.log_message"]
        still_serving(c)


def test_other_principals_token_over_real_http() -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    with (
        start_http_server(server, token_key=TOKEN_KEY, authenticate=jwt_authenticator(key=JWT_SECRET)) as h,
        httpx.Client(base_url=h.url) as c,
    ):
        alice = {"Authorization": f"Bearer {sign_jwt('alice')}"}
        bob = {"Authorization": f"Bearer {sign_jwt('bob')}"}
        token = token_of(
            post(
                c, "/Calculator/countdown/init", call_body("countdown", {"n": 3, "tag": ""}), **alice
            ).content
        )
        assert token is not None
        r = post(c, "/Calculator/countdown/exchange", turn_body(token), **bob)
        assert r.status_code == 400
        assert "another caller" in error_md(r.content)["vgi_rpc.log_message"]
        assert post(c, "/Calculator/countdown/exchange", turn_body(token), **alice).status_code == 200


def test_hooks_over_real_http_share_the_stream_id(served: tuple[HttpServerHandle, RecordingHook]) -> None:
    handle, hook = served
    with http_connect(
        Calculator, handle.base_url, prefix="/vgi", headers={"traceparent": "00-abc-def-01"}
    ) as calc:
        before = len(hook.calls)
        assert len(list(calc.countdown(n=2))) == 2
    calls = hook.calls[before:]
    assert [c.info.turn for c in calls] == ["init", "exchange", "exchange"]
    assert len({c.info.stream_id for c in calls}) == 1
    assert all(c.metadata.get("traceparent") == "00-abc-def-01" for c in calls)
    assert calls[0].kwargs == {"n": 2, "tag": ""} and calls[1].kwargs is None


def test_health_probe_over_real_http(raw: httpx.Client) -> None:
    r = raw.options("/health", headers={"VGI-Accept-Max-Response-Bytes": "268435456"})
    assert r.is_success
    assert r.headers.get_list(BUDGET) == ["true"]
    assert r.headers["VGI-Max-Request-Bytes"] == str(LIMIT)


# --------------------------------------------------------------------------- the server itself


def test_accepted_connections_have_tcp_nodelay(handle: HttpServerHandle, raw: httpx.Client) -> None:
    still_serving(raw)  # keep-alive: the connection stays open
    channels = list(handle._waitress.active_channels.values())
    assert channels
    for channel in channels:
        assert channel.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_handle_reports_port_and_stops() -> None:
    h = start_http_server(Calculator, CalculatorImpl(), token_key=TOKEN_KEY, prefix="/api")
    assert h.port > 0
    assert h.url == f"http://127.0.0.1:{h.port}/api"
    with httpx.Client() as c:
        assert c.options(h.url + "/health").status_code == 204
    h.stop()
    h.stop()  # idempotent
    with pytest.raises(httpx.ConnectError), httpx.Client() as c:
        c.options(h.url + "/health")


def test_no_token_key_warns() -> None:
    with pytest.warns(RuntimeWarning, match="token_key"):
        make_wsgi_app(RpcServer(Calculator, CalculatorImpl()))


def test_the_app_runs_under_another_wsgi_server() -> None:
    """The app is plain WSGI: under the stdlib's wsgiref server calls and streams work too."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    app = make_wsgi_app(Calculator, CalculatorImpl(), token_key=TOKEN_KEY, prefix="/vgi")
    httpd = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_port}"
        with http_connect(Calculator, base, prefix="/vgi") as calc:
            assert calc.add(a=2, b=3) == 5
            assert [ab.batch.column("i")[0].as_py() for ab in calc.countdown(n=2)] == [1, 0]
            with pytest.raises(RpcError, match="kaboom"):
                calc.fail(message="kaboom")
        with httpx.Client() as c:
            r = c.post(base + "/vgi/Calculator/add", content=b"garbage", headers={"Content-Type": ARROW})
            assert r.status_code == 400
            assert r.headers.get_list(BUDGET) == ["true"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_stop_never_pulls_a_trigger_the_serving_thread_has_closed() -> None:
    """``stop()`` races a serving loop that wakes on its own; it must not raise EBADF.

    The serving loop wakes every 0.5 s and exits once it sees the stop flag, closing every
    socket, the wake-up trigger included. A trigger pull that lands after that wrote to
    a closed descriptor (``OSError: [Errno 9] Bad file descriptor``, seen in CI). Slowing
    the pull past one loop period makes the interleaving certain.
    """
    import time

    handle = start_http_server(Calculator, CalculatorImpl(), token_key=b"k" * 32)
    with http_connect(Calculator, handle.base_url) as proxy:
        assert proxy.add(a=1.0, b=2.0) == 3.0
    waitress = handle._waitress
    real_pull = waitress.pull_trigger

    def late_pull() -> None:
        time.sleep(0.8)  # longer than the loop's 0.5 s poll: the loop sees the flag first
        real_pull()

    waitress.pull_trigger = late_pull
    handle.stop()
    assert not handle._thread.is_alive()
