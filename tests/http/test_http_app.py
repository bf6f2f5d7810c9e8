"""The WSGI app through ``falcon.testing``: routes, headers, status codes, bodies, codings, hooks."""

from __future__ import annotations

import gzip
from typing import Any

import falcon
import falcon.testing
import pyarrow as pa
import pytest
import zstandard
from support.http import ARROW, BUDGET, TOKEN_KEY, call_body, error_md, read_stream
from support.services import Calculator, CalculatorImpl, TypesService, TypesServiceImpl

from vgi_rpc import RpcServer
from vgi_rpc.http import VgiFalconApp, make_wsgi_app
from vgi_rpc.testing import RecordingHook


def make(prefix: str = "", **options: Any) -> tuple[falcon.testing.TestClient, RpcServer, RecordingHook]:
    server = RpcServer(Calculator, CalculatorImpl(), include_tracebacks=options.pop("tracebacks", False))
    hook = RecordingHook()
    server.add_hook(hook)
    app = make_wsgi_app(server, prefix=prefix, token_key=TOKEN_KEY, **options)
    return falcon.testing.TestClient(app), server, hook


@pytest.fixture
def client() -> falcon.testing.TestClient:
    return make()[0]


def post(client: falcon.testing.TestClient, path: str, body: bytes, **headers: str) -> falcon.testing.Result:
    h = {"Content-Type": ARROW, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return client.simulate_post(path, body=body, headers=h)


def result_of(r: falcon.testing.Result) -> Any:
    _, batches = read_stream(r.content)
    data = [b for b, md in batches if "vgi_rpc.log_level" not in md]
    assert len(data) == 1
    return data[0].column(0)[0].as_py() if data[0].num_columns else None


# --------------------------------------------------------------------------- health / capability probe


def test_health_options_is_the_capability_probe(client: falcon.testing.TestClient) -> None:
    r = client.simulate_options("/health", headers={"VGI-Accept-Max-Response-Bytes": "268435456"})
    assert 200 <= r.status_code < 300
    assert r.headers[BUDGET] == "true"
    assert r.headers["VGI-Supported-Encodings"] == "zstd, gzip"
    assert r.headers["VGI-Externalization-Enabled"] == "false"
    assert "VGI-Max-Request-Bytes" not in r.headers


def test_health_get_and_head(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/health")
    assert r.status_code == 200
    assert r.json["status"] == "ok"
    assert r.json["protocol"] == "Calculator"
    assert r.headers[BUDGET] == "true"
    assert client.simulate_head("/health").status_code == 200


def test_health_advertises_the_request_limit() -> None:
    c = make(max_request_bytes=1000)[0]
    assert c.simulate_options("/health").headers["VGI-Max-Request-Bytes"] == "1000"


def test_prefix_moves_every_route() -> None:
    c = make(prefix="vgi/")[0]
    assert c.simulate_options("/vgi/health").status_code == 204
    assert c.simulate_options("/health").status_code == 404
    assert result_of(post(c, "/vgi/Calculator/add", call_body("add", {"a": 2, "b": 3}))) == 5
    assert post(c, "/Calculator/add", call_body("add", {"a": 2, "b": 3})).status_code == 404


# --------------------------------------------------------------------------- unary


def test_unary_call(client: falcon.testing.TestClient) -> None:
    r = post(client, "/Calculator/add", call_body("add", {"a": 40, "b": 2}))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == ARROW
    assert r.headers[BUDGET] == "true"
    assert "X-VGI-RPC-Error" not in r.headers
    assert result_of(r) == 42


def test_parameterless_void_call_is_a_zero_row_batch(client: falcon.testing.TestClient) -> None:
    r = post(client, "/Calculator/noop", call_body("noop"))
    schema, batches = read_stream(r.content)
    assert r.status_code == 200
    assert len(schema) == 0
    assert [b.num_rows for b, _ in batches] == [0]


def test_protocol_name_class_attribute_is_the_url_segment() -> None:
    app = make_wsgi_app(RpcServer(TypesService, TypesServiceImpl()), token_key=TOKEN_KEY)
    c = falcon.testing.TestClient(app)
    r = post(c, "/vgi.test.Types/echo_str", call_body("echo_str", {"value": "hi"}, protocol="vgi.test.Types"))
    assert result_of(r) == "hi"
    assert post(c, "/TypesService/echo_str", call_body("echo_str", {"value": "hi"})).status_code == 404


def test_logs_come_before_the_result(client: falcon.testing.TestClient) -> None:
    r = post(client, "/Calculator/log_and_add", call_body("log_and_add", {"a": 1, "b": 2}))
    _, batches = read_stream(r.content)
    levels = [md.get("vgi_rpc.log_level") for _, md in batches]
    assert levels == ["INFO", "WARN", None]


def test_application_error_is_200_with_error_header_and_no_traceback(
    client: falcon.testing.TestClient,
) -> None:
    r = post(client, "/Calculator/fail", call_body("fail", {"message": "kaboom", "error_type": "ValueError"}))
    assert r.status_code == 200
    assert r.headers["X-VGI-RPC-Error"] == "true"
    md = error_md(r.content)
    assert md["vgi_rpc.log_message"] == "ValueError: kaboom"
    assert '"exception_type": "ValueError"' in md["vgi_rpc.log_extra"]
    assert "traceback" not in md["vgi_rpc.log_extra"]
    assert b"Traceback" not in r.content


def test_tracebacks_only_when_the_server_is_configured_for_them() -> None:
    c = make(tracebacks=True)[0]
    r = post(c, "/Calculator/fail", call_body("fail", {"message": "kaboom", "error_type": "ValueError"}))
    assert "Traceback" in error_md(r.content)["vgi_rpc.log_extra"]


def test_hooks_see_one_http_call_with_headers(client: falcon.testing.TestClient) -> None:
    c, _, hook = make()
    post(
        c,
        "/Calculator/fail",
        call_body("fail", {"message": "x"}),
        Authorization="Bearer s3cret",
        traceparent="00-ab",
    )
    (seen,) = hook.calls
    assert seen.ended
    assert (seen.info.transport, seen.info.turn, seen.info.method_type) == ("http", "call", "unary")
    assert seen.kwargs == {"message": "x", "error_type": "ValueError"}
    assert isinstance(seen.error, ValueError) and str(seen.error) == "x"
    assert seen.metadata["traceparent"] == "00-ab"
    assert seen.metadata["content-type"] == ARROW
    assert "authorization" not in seen.metadata
    assert all(k == k.lower() for k in seen.metadata)


# --------------------------------------------------------------------------- compression


@pytest.mark.parametrize("coding", ["zstd", "gzip"])
def test_compressed_request_bodies(client: falcon.testing.TestClient, coding: str) -> None:
    raw = call_body("add", {"a": 1, "b": 2})
    body = zstandard.ZstdCompressor().compress(raw) if coding == "zstd" else gzip.compress(raw)
    assert result_of(post(client, "/Calculator/add", body, Content_Encoding=coding)) == 3


def test_zstd_body_without_content_size_in_the_frame(client: falcon.testing.TestClient) -> None:
    raw = call_body("add", {"a": 1, "b": 2})
    body = zstandard.ZstdCompressor(write_content_size=False).compress(raw)
    assert result_of(post(client, "/Calculator/add", body, Content_Encoding="zstd")) == 3


def test_unsupported_coding_is_415_with_supported_list(client: falcon.testing.TestClient) -> None:
    r = post(client, "/Calculator/add", b"whatever", Content_Encoding="br")
    assert r.status_code == 415
    assert r.headers["VGI-Supported-Encodings"] == "zstd, gzip"
    assert r.headers[BUDGET] == "true"
    assert "unsupported Content-Encoding 'br'" in error_md(r.content)["vgi_rpc.log_message"]


@pytest.mark.parametrize(
    ("coding", "body", "text"),
    [
        ("zstd", b"definitely not zstd", "not valid zstd"),
        ("gzip", b"definitely not gzip", "not valid gzip"),
        ("zstd", zstandard.ZstdCompressor().compress(b"x" * 5000)[:-4], "truncated zstd"),
        ("gzip", gzip.compress(b"x" * 5000)[:-6], "truncated gzip"),
    ],
)
def test_undecodable_compressed_body_is_400(
    client: falcon.testing.TestClient, coding: str, body: bytes, text: str
) -> None:
    r = post(client, "/Calculator/add", body, Content_Encoding=coding)
    assert r.status_code == 400
    assert text in error_md(r.content)["vgi_rpc.log_message"]


def test_responses_are_not_compressed_by_default(client: falcon.testing.TestClient) -> None:
    body = call_body("greet", {"name": "x" * 10000, "greeting": "Hi", "punctuation": "!"})
    r = post(client, "/Calculator/greet", body, Accept_Encoding="zstd, gzip")
    assert "Content-Encoding" not in r.headers
    assert len(r.content) > 10000


@pytest.mark.parametrize("option", [True, "zstd", "zstd:3"])
def test_large_responses_are_zstd_when_enabled_and_accepted(option: object) -> None:
    c = make(compress_responses=option)[0]
    body = call_body("greet", {"name": "x" * 10000, "greeting": "Hi", "punctuation": "!"})
    plain = post(c, "/Calculator/greet", body)
    assert "Content-Encoding" not in plain.headers
    packed = post(c, "/Calculator/greet", body, Accept_Encoding="zstd, gzip")
    assert packed.headers["Content-Encoding"] == "zstd"
    assert len(packed.content) < len(plain.content)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(packed.content) == plain.content
    small = post(c, "/Calculator/add", call_body("add", {"a": 1, "b": 2}), Accept_Encoding="zstd")
    assert "Content-Encoding" not in small.headers


@pytest.mark.parametrize(("option", "level"), [("zstd", 1), (True, 1), ("zstd:19", 19)])
def test_the_named_zstd_level_is_the_one_used(option: object, level: int) -> None:
    c = make(compress_responses=option)[0]
    body = call_body("greet", {"name": "ab" * 20000, "greeting": "Hi", "punctuation": "!"})
    plain = post(c, "/Calculator/greet", body).content
    packed = post(c, "/Calculator/greet", body, Accept_Encoding="zstd").content
    # zstd is deterministic for one input and level: the frame is the one that level makes
    assert packed == zstandard.ZstdCompressor(level=level).compress(plain)
    if level != 1:
        assert packed != zstandard.ZstdCompressor(level=1).compress(plain)


@pytest.mark.parametrize("accept", ["gzip", "br", "deflate, br", "zstd;q=0, gzip", "identity", "nonsense;;"])
def test_a_client_asking_for_an_encoding_we_do_not_offer_gets_identity(accept: str) -> None:
    c = make(compress_responses="zstd")[0]
    body = call_body("greet", {"name": "x" * 10000, "greeting": "Hi", "punctuation": "!"})
    r = post(c, "/Calculator/greet", body, Accept_Encoding=accept)
    assert r.status_code == 200
    assert "Content-Encoding" not in r.headers
    assert len(r.content) > 10000


@pytest.mark.parametrize("bad", ["gzip", "zstd:0", "zstd:20", "zstd:x", "lz4"])
def test_an_unknown_compression_option_is_refused_at_build_time(bad: str) -> None:
    with pytest.raises(ValueError, match="compress_responses"):
        make(compress_responses=bad)


def test_response_compression_can_be_disabled() -> None:
    c = make(compress_responses=False)[0]
    body = call_body("greet", {"name": "x" * 10000, "greeting": "Hi", "punctuation": "!"})
    assert "Content-Encoding" not in post(c, "/Calculator/greet", body, Accept_Encoding="zstd").headers


# --------------------------------------------------------------------------- bad input


def test_wrong_content_type_is_415(client: falcon.testing.TestClient) -> None:
    r = client.simulate_post(
        "/Calculator/add",
        body=call_body("add", {"a": 1, "b": 2}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 415
    assert r.headers[BUDGET] == "true"
    assert (
        "Content-Type must be application/vnd.apache.arrow.stream"
        in error_md(r.content)["vgi_rpc.log_message"]
    )
    r = client.simulate_post("/Calculator/add", body=call_body("add", {"a": 1, "b": 2}))
    assert r.status_code == 415


@pytest.mark.parametrize(
    ("path", "status", "kind", "text"),
    [
        ("/Calculator/nope", 404, "method_not_implemented", "unknown method 'nope'"),
        ("/Other/add", 404, "protocol_not_supported", "protocol 'Other' is not served here"),
        ("/Calculator/add/extra/segments", 404, "method_not_implemented", "no vgi-rpc route"),
        ("/Calculator/add/wat", 404, "method_not_implemented", "no vgi-rpc route"),
    ],
)
def test_unknown_routes_are_404_arrow_errors(
    client: falcon.testing.TestClient, path: str, status: int, kind: str, text: str
) -> None:
    r = post(client, path, call_body("add", {"a": 1, "b": 2}))
    assert r.status_code == status
    assert r.headers[BUDGET] == "true"
    md = error_md(r.content)
    assert md["vgi_rpc.error_kind"] == kind
    assert text in md["vgi_rpc.log_message"]


def test_get_on_an_rpc_route_is_405_arrow_error(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/Calculator/add")
    assert r.status_code == 405
    assert r.headers[BUDGET] == "true"
    assert "GET is not allowed" in error_md(r.content)["vgi_rpc.log_message"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"", "request body is empty"),
        (b"garbage, not arrow at all", "not a valid Arrow IPC stream"),
        (call_body("add", {"a": 1, "b": 2})[:-20], "Arrow"),
        (call_body("add", {"a": 1, "b": 2})[:40], "Arrow"),
    ],
    ids=["empty", "garbage", "truncated-tail", "truncated-head"],
)
def test_garbage_or_truncated_arrow_is_400(client: falcon.testing.TestClient, body: bytes, text: str) -> None:
    r = post(client, "/Calculator/add", body)
    assert r.status_code == 400
    assert r.headers[BUDGET] == "true"
    schema, _ = read_stream(r.content)
    assert len(schema) == 0
    assert text in error_md(r.content)["vgi_rpc.log_message"]


# The URL/metadata agreement and the one-kind-per-route rules: tests/core/test_admission.py,
# beside the rules both transports share.


def test_request_version_must_be_1(client: falcon.testing.TestClient) -> None:
    body = call_body("add", {"a": 1, "b": 2}, **{"vgi_rpc.request_version": "2"})
    r = post(client, "/Calculator/add", body)
    assert r.status_code == 400
    assert "request version" in error_md(r.content)["vgi_rpc.log_message"]


def test_missing_or_mistyped_parameter_is_400(client: falcon.testing.TestClient) -> None:
    r = post(client, "/Calculator/add", call_body("add", {"a": 1}))
    assert r.status_code == 400
    assert "missing parameter 'b'" in error_md(r.content)["vgi_rpc.log_message"]
    r = post(client, "/Calculator/add", call_body("add", {"a": "one", "b": 2}))
    assert r.status_code == 400


def test_body_over_max_request_bytes_is_413() -> None:
    c = make(max_request_bytes=1000)[0]
    small = call_body("add", {"a": 1, "b": 2})
    assert len(small) <= 1000
    assert result_of(post(c, "/Calculator/add", small)) == 3
    big = call_body("greet", {"name": "x" * 2000, "greeting": "Hi", "punctuation": "!"})
    r = post(c, "/Calculator/greet", big)
    assert r.status_code == 413
    assert r.headers[BUDGET] == "true"
    assert "exceeds the server's limit of 1000 bytes" in error_md(r.content)["vgi_rpc.log_message"]


def test_decompressed_body_over_max_request_bytes_is_413() -> None:
    """A small compressed body that inflates past the limit (a decompression bomb) is refused."""
    c = make(max_request_bytes=5000)[0]
    raw = call_body("greet", {"name": "x" * 100_000, "greeting": "Hi", "punctuation": "!"})
    for coding, body in (("zstd", zstandard.ZstdCompressor().compress(raw)), ("gzip", gzip.compress(raw))):
        assert len(body) < 5000
        r = post(c, "/Calculator/greet", body, Content_Encoding=coding)
        assert r.status_code == 413, coding
        assert "decompressed request body exceeds" in error_md(r.content)["vgi_rpc.log_message"]


def test_no_errors_change_hooks_or_leak(client: falcon.testing.TestClient) -> None:
    """Protocol errors happen before dispatch: no hook runs for them."""
    c, _, hook = make()
    post(c, "/Calculator/add", b"garbage")
    post(c, "/Calculator/nope", call_body("nope"))
    assert hook.calls == []


# --------------------------------------------------------------------------- the safety net


def test_internal_bug_is_500_arrow_with_budget_header(monkeypatch: pytest.MonkeyPatch) -> None:
    c, server, _ = make()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("internal detail")

    monkeypatch.setattr(server, "decode_kwargs", broken)
    r = post(c, "/Calculator/add", call_body("add", {"a": 1, "b": 2}))
    assert r.status_code == 500
    assert r.headers[BUDGET] == "true"
    assert b"internal detail" not in r.content
    assert error_md(r.content)["vgi_rpc.log_message"] == "RuntimeError: internal server error"
    monkeypatch.undo()
    assert result_of(post(c, "/Calculator/noop", call_body("noop"))) is None


def test_bug_outside_responders_is_still_an_arrow_500() -> None:
    class Exploding:
        def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
            raise RuntimeError("middleware bug")

    server = RpcServer(Calculator, CalculatorImpl())
    app = make_wsgi_app(server, token_key=TOKEN_KEY)
    app.add_middleware(Exploding())
    r = post(falcon.testing.TestClient(app), "/Calculator/add", call_body("add", {"a": 1, "b": 2}))
    assert r.status_code == 500
    assert r.headers[BUDGET] == "true"
    assert error_md(r.content)["vgi_rpc.log_message"] == "RuntimeError: internal server error"


def test_the_wsgi_safety_net_answers_even_if_falcon_itself_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_wsgi_app(RpcServer(Calculator, CalculatorImpl()), token_key=TOKEN_KEY)
    monkeypatch.setattr(
        falcon.App, "__call__", lambda self, env, sr: (_ for _ in ()).throw(RuntimeError("x"))
    )
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    env = falcon.testing.create_environ("/Calculator/add", method="POST")
    body = b"".join(VgiFalconApp.__call__(app, env, start_response))
    assert captured["status"].startswith("500")
    assert captured["headers"][BUDGET] == "true"
    assert error_md(body)["vgi_rpc.log_message"] == "RuntimeError: internal server error"


def test_response_over_the_client_budget_becomes_an_error(client: falcon.testing.TestClient) -> None:
    # 65536 is the smallest budget a request may ask for (the reference server's floor)
    body = call_body("greet", {"name": "x" * 70_000, "greeting": "Hi", "punctuation": "!"})
    r = post(client, "/Calculator/greet", body, VGI_Accept_Max_Response_Bytes="65536")
    assert r.status_code == 200
    assert r.headers["X-VGI-RPC-Error"] == "true"
    md = error_md(r.content)
    assert md["vgi_rpc.log_message"].startswith("ResponseTooLargeError: response of")
    assert len(r.content) <= 65536


def test_make_wsgi_app_takes_protocol_and_implementation() -> None:
    app = make_wsgi_app(Calculator, CalculatorImpl(), token_key=TOKEN_KEY)
    assert isinstance(app, falcon.App)
    assert (
        result_of(post(falcon.testing.TestClient(app), "/Calculator/add", call_body("add", {"a": 1, "b": 1})))
        == 2
    )
    with pytest.raises(TypeError):
        make_wsgi_app(Calculator)
    with pytest.raises(TypeError):
        make_wsgi_app(RpcServer(Calculator, CalculatorImpl()), CalculatorImpl())


def test_types_round_trip_through_the_app() -> None:
    app = make_wsgi_app(RpcServer(TypesService, TypesServiceImpl()), token_key=TOKEN_KEY)
    c = falcon.testing.TestClient(app)
    batch = pa.RecordBatch.from_pydict({"value": pa.array([{"a": 1}], type=pa.map_(pa.utf8(), pa.int64()))})
    from vgi_rpc.wire import request_bytes

    r = post(
        c,
        "/vgi.test.Types/echo_dict_str_int",
        request_bytes("echo_dict_str_int", batch, protocol="vgi.test.Types"),
    )
    assert result_of(r) == [("a", 1)]


def test_sentry_and_otel_seams_instrument_the_server_once() -> None:
    """S6/S7 seam: make_wsgi_app(sentry_config=, otel_config=) instruments, replacing earlier hooks."""
    from vgi_rpc.otel import OtelConfig, instrument_server
    from vgi_rpc.sentry import SentryConfig, instrument_server_sentry

    server = RpcServer(Calculator, CalculatorImpl())
    mine = RecordingHook()
    server.add_hook(mine)
    instrument_server_sentry(server, SentryConfig())
    instrument_server(server, OtelConfig())
    config = SentryConfig(tag_params=("name",))
    make_wsgi_app(server, sentry_config=config, otel_config=OtelConfig(), token_key=TOKEN_KEY)
    kinds = [type(h).__name__ for h in server.hooks]
    assert kinds.count("_SentryDispatchHook") == 1
    assert kinds.count("_OtelDispatchHook") == 1
    assert mine in server.hooks
