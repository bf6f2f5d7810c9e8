"""Two small hostile-input promises of docs/http.md.

* A malformed ``VGI-Accept-Max-Response-Bytes`` is a 400 before dispatch, answered as
  the official reference server answers it (compared live when ``.venv-peer`` exists).
* Error messages quote at most ``ECHO_LIMIT`` characters of what the client sent, and a
  protocol error is at most ``MESSAGE_LIMIT`` characters: a 1 MiB method name no
  longer comes back as a 2 MB error response.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import httpx
import pyarrow as pa
import pytest
from support.http import ARROW, call_body, error_md, read_stream
from support.services import Calculator, CalculatorImpl
from support.worker_process import official_http_server

from vgi_rpc import RpcServer
from vgi_rpc.errors import ECHO_LIMIT, MESSAGE_LIMIT
from vgi_rpc.http import make_wsgi_app, start_http_server
from vgi_rpc.pipe import serve_streams
from vgi_rpc.testing import RecordingHook
from vgi_rpc.wire import metadata_dict, request_bytes

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / ".venv-peer" / "bin"
HEADER = "VGI-Accept-Max-Response-Bytes"
BAD_BUDGETS = [
    "abc",
    "-5",
    "0",
    "+70000",
    "070000",
    "70000,80000",
    "7e5",
    "100",
    "65535",
    str(2**53),
    "9" * 40,
]
GOOD_BUDGETS = ["65536", "268435456", str(2**53 - 1)]
MiB = 1 << 20


@pytest.fixture
def calc() -> tuple[falcon.testing.TestClient, RecordingHook]:
    server = RpcServer(Calculator, CalculatorImpl())
    hook = RecordingHook()
    server.add_hook(hook)
    return falcon.testing.TestClient(make_wsgi_app(server, token_key=b"k" * 32)), hook


def add_call(client: falcon.testing.TestClient, budget: str) -> falcon.testing.Result:
    return client.simulate_post(
        "/Calculator/add",
        body=call_body("add", {"a": 1, "b": 2}),
        headers={"Content-Type": ARROW, HEADER: budget},
    )


@pytest.mark.parametrize("budget", BAD_BUDGETS)
def test_a_malformed_response_budget_is_400_before_dispatch(
    calc: tuple[falcon.testing.TestClient, RecordingHook], budget: str
) -> None:
    client, hook = calc
    r = add_call(client, budget)
    assert r.status_code == 400
    message = error_md(r.content)["vgi_rpc.log_message"]
    assert message.startswith(f"ProtocolError: {HEADER} ")
    assert hook.calls == [], "the method ran although the request was refused"


@pytest.mark.parametrize("budget", GOOD_BUDGETS)
def test_a_well_formed_response_budget_is_accepted(
    calc: tuple[falcon.testing.TestClient, RecordingHook], budget: str
) -> None:
    client, hook = calc
    r = add_call(client, budget)
    assert r.status_code == 200
    assert read_stream(r.content)[1][-1][0].column("result")[0].as_py() == 3
    assert len(hook.calls) == 1


def test_health_ignores_the_response_budget(calc: tuple[falcon.testing.TestClient, RecordingHook]) -> None:
    """The capability probe answers whatever the header says (so does the reference)."""
    client, _ = calc
    assert client.simulate_options("/health", headers={HEADER: "abc"}).status_code == 204


# --------------------------------------------------------------------------- against the reference


@pytest.fixture(scope="module")
def reference_port() -> Iterator[int]:
    with official_http_server() as port:
        yield port


def echo_int_body() -> bytes:
    schema = pa.schema([pa.field("value", pa.int64(), nullable=False)])
    batch = pa.RecordBatch.from_arrays([pa.array([41], pa.int64())], schema=schema)
    return request_bytes("echo_int", batch, protocol="ConformanceService", protocol_version="2.0.0")


def first_error(body: bytes) -> dict[str, str]:
    reader = pa.ipc.open_stream(pa.py_buffer(body))
    _, md = reader.read_next_batch_with_custom_metadata()
    return metadata_dict(md)


def test_response_budget_answers_match_the_reference_server(reference_port: int) -> None:
    """Same status for every value; our message starts with the reference's text."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.conformance._impl import ConformanceServiceImpl
    from tests.conformance._protocol import ConformanceService

    with start_http_server(ConformanceService, ConformanceServiceImpl(), token_key=b"k" * 32) as ours:
        for budget in BAD_BUDGETS + GOOD_BUDGETS:
            answers = [
                httpx.post(
                    f"{base}/ConformanceService/echo_int",
                    content=echo_int_body(),
                    headers={"Content-Type": ARROW, HEADER: budget, "Accept-Encoding": "identity"},
                    timeout=10,
                )
                for base in (f"http://127.0.0.1:{reference_port}", ours.base_url)
            ]
            theirs, mine = answers
            assert mine.status_code == theirs.status_code, budget
            if theirs.status_code == 400:
                import json

                expected = json.loads(first_error(theirs.content)["vgi_rpc.log_extra"])["exception_message"]
                got = first_error(mine.content)["vgi_rpc.log_message"]
                assert got.startswith(f"ProtocolError: {expected}"), (budget, got, expected)


# --------------------------------------------------------------------------- clipped echoes


def test_a_1_mib_method_name_is_clipped_over_http() -> None:
    """The URL names ``add``; the request's metadata names a 1 MiB method."""
    huge = "m" * MiB
    body = request_bytes(huge, pa.RecordBatch.from_pydict({"a": [1], "b": [2]}), protocol="Calculator")
    with start_http_server(Calculator, CalculatorImpl(), token_key=b"k" * 32) as h:
        r = httpx.post(
            f"{h.base_url}/Calculator/add", content=body, headers={"Content-Type": ARROW}, timeout=30
        )
    assert r.status_code == 400
    assert len(r.content) < 4 * 1024, f"{len(r.content)} bytes of error for a 1 MiB method name"
    message = error_md(r.content)["vgi_rpc.log_message"]
    assert f"names '{'m' * ECHO_LIMIT}...[{MiB} chars]'" in message


def test_a_protocol_error_message_is_bounded() -> None:
    """Whatever a message holds, a ProtocolError carries at most MESSAGE_LIMIT characters."""
    from vgi_rpc.errors import ProtocolError

    exc = ProtocolError("head " + "x" * 100_000 + " tail")
    assert len(str(exc)) == MESSAGE_LIMIT
    assert str(exc).startswith("head x") and str(exc).endswith("x tail")
    assert "...[100010 chars]..." in str(exc)


def test_a_1_mib_method_name_is_clipped_on_the_pipe() -> None:
    huge = "m" * MiB
    out = io.BytesIO()
    serve_streams(
        RpcServer(Calculator, CalculatorImpl()),
        io.BytesIO(request_bytes(huge, pa.RecordBatch.from_pydict({"a": [1]}), protocol="Calculator")),
        out,
    )
    assert len(out.getvalue()) < 4 * 1024, f"{len(out.getvalue())} bytes of error for a 1 MiB method name"
    message = error_md(out.getvalue())["vgi_rpc.log_message"]
    assert f"unknown method '{'m' * ECHO_LIMIT}...[{MiB} chars]'" in message


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/" + "x" * 200_000}, 415),
        ({"Content-Type": ARROW, "Content-Encoding": "br" + "x" * 200_000}, 415),
    ],
    ids=["content-type", "content-encoding"],
)
def test_long_headers_are_clipped_in_errors(headers: dict[str, str], status: int) -> None:
    client = falcon.testing.TestClient(make_wsgi_app(Calculator, CalculatorImpl(), token_key=b"k" * 32))
    r = client.simulate_post("/Calculator/add", body=call_body("add", {"a": 1, "b": 2}), headers=headers)
    assert r.status_code == status
    message = error_md(r.content)["vgi_rpc.log_message"]
    assert "...[200" in message
    assert len(message) < ECHO_LIMIT + 200


def test_a_long_path_is_clipped_in_a_404() -> None:
    client = falcon.testing.TestClient(make_wsgi_app(Calculator, CalculatorImpl(), token_key=b"k" * 32))
    r = client.simulate_post("/Calculator/add/" + "p" * 100_000, body=b"", headers={"Content-Type": ARROW})
    assert r.status_code == 404
    message = error_md(r.content)["vgi_rpc.log_message"]
    assert len(message) < ECHO_LIMIT + 200


# --------------------------------------------------------------------------- a proxy's error page


def test_a_gateway_error_page_is_a_clean_transport_error() -> None:
    """What a call in flight on a worker that died gets from nginx: a 502 HTML page.

    The client names the status and says the answer did not come from a vgi-rpc server,
    instead of failing to parse it as Arrow.
    """
    page = b"<html><body><center><h1>502 Bad Gateway</h1></center></body></html>"

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=page, headers={"Content-Type": "text/html"})

    from vgi_rpc import RpcError
    from vgi_rpc.http import http_connect

    with (
        httpx.Client(transport=httpx.MockTransport(gateway)) as raw,
        http_connect(Calculator, "http://127.0.0.1:9", client=raw, compression=None) as calc,
    ):
        with pytest.raises(RpcError) as caught:
            calc.add(a=1, b=2)
        with pytest.raises(RpcError) as in_stream:
            list(calc.countdown(n=2))
    for exc in (caught.value, in_stream.value):
        assert exc.error_type == "HttpError"
        assert exc.error_kind == "transport"
        assert exc.error_code == "UNAVAILABLE"  # gRPC's code for 502 (the status is in the message)
        assert exc.error_message.startswith("HTTP 502 Bad Gateway from POST http://127.0.0.1:9/Calculator/")
        assert "text/html" in exc.error_message
