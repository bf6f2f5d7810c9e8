"""Request admission: one set of rules (``vgi_rpc.server.Admission``), the same answers on every transport.

The same request is sent to the pipe (``serve_streams`` over in-memory files) and to
the HTTP app (Falcon's test client): a rule both transports share refuses it with
the same ``error_kind`` and message. Where the transports differ it is a parameter
of the admission, shown here too: the pipe's metadata must name the protocol (there
is no URL); over HTTP the URL names protocol and method, the metadata may leave
the protocol out but must agree with the URL, and each route serves one method kind.
"""

from __future__ import annotations

import io
from typing import Any

import falcon.testing
import pyarrow as pa
import pytest
from support.http import ARROW, TOKEN_KEY, call_body, error_md, read_stream
from support.services import Calculator, CalculatorImpl, Versioned, VersionedImpl

from vgi_rpc import RpcServer
from vgi_rpc.errors import ProtocolError
from vgi_rpc.http import make_wsgi_app
from vgi_rpc.http._routes import EXCHANGE, INIT, UNARY
from vgi_rpc.pipe import serve_streams
from vgi_rpc.server import Admission
from vgi_rpc.streams import EMPTY_SCHEMA, empty_batch
from vgi_rpc.wire import read_request, request_bytes


def _pipe(server: RpcServer, body: bytes) -> list[tuple[pa.RecordBatch, dict[str, str]]]:
    """The pipe's whole answer to one request (``serve_streams`` until the input's EOF)."""
    out = io.BytesIO()
    serve_streams(server, io.BytesIO(body), out)
    return read_stream(out.getvalue())[1]


def _http(server: RpcServer, path: str, body: bytes) -> falcon.testing.Result:
    client = falcon.testing.TestClient(make_wsgi_app(server, token_key=TOKEN_KEY))
    return client.simulate_post(path, body=body, headers={"Content-Type": ARROW})


def _refusal(answer: list[tuple[pa.RecordBatch, dict[str, str]]]) -> tuple[str, str]:
    ((_, md),) = answer
    return md["vgi_rpc.error_kind"], md["vgi_rpc.log_message"]


def _versioned(version: str) -> bytes:
    return request_bytes("ping", empty_batch(EMPTY_SCHEMA), protocol="Versioned", protocol_version=version)


# (server, pipe request, HTTP path, HTTP body, HTTP status, error_kind, message fragment)
SHARED: dict[str, tuple[Any, bytes, str, bytes, int, str, str]] = {
    "protocol not served": (
        Calculator,
        call_body("add", {"a": 1, "b": 2}, protocol="Other"),
        "/Other/add",
        call_body("add", {"a": 1, "b": 2}),
        404,
        "protocol_not_supported",
        "protocol 'Other' is not served here (this server serves 'Calculator')",
    ),
    "unknown method": (
        Calculator,
        call_body("nope"),
        "/Calculator/nope",
        call_body("nope"),
        404,
        "method_not_implemented",
        "unknown method 'nope' on Calculator",
    ),
    "protocol version": (
        Versioned,
        _versioned("3.0.0"),
        "/Versioned/ping",
        _versioned("3.0.0"),
        400,
        "protocol_version_mismatch",
        "protocol version mismatch: client 3.0.0, server 2.1.0",
    ),
    "missing parameter": (
        Calculator,
        call_body("add", {"a": 1}),
        "/Calculator/add",
        call_body("add", {"a": 1}),
        400,
        "bad_request",
        "add: missing parameter 'b'",
    ),
}


@pytest.mark.parametrize("case", list(SHARED))
def test_a_shared_rule_answers_the_same_on_the_pipe_and_over_http(case: str) -> None:
    protocol, pipe_body, path, http_body, status, kind, text = SHARED[case]
    server = RpcServer(protocol, CalculatorImpl() if protocol is Calculator else VersionedImpl())
    on_pipe = _refusal(_pipe(server, pipe_body))
    r = _http(server, path, http_body)
    assert r.status_code == status
    over_http = _refusal([(b, md) for b, md in read_stream(r.content)[1]])
    assert on_pipe == over_http
    assert on_pipe[0] == kind
    assert text in on_pipe[1]


def test_the_same_version_passes_on_both() -> None:
    server = RpcServer(Versioned, VersionedImpl())
    ((batch, _),) = _pipe(server, _versioned("2.1.9"))
    assert batch.to_pydict() == {"result": ["pong"]}
    r = _http(server, "/Versioned/ping", _versioned("2.1.9"))
    assert r.status_code == 200
    assert read_stream(r.content)[1][0][0].to_pydict() == {"result": ["pong"]}


def test_only_a_pipe_request_must_name_its_protocol() -> None:
    """No URL on the pipe: the metadata is the only name. Over HTTP the URL names it."""
    server = RpcServer(Calculator, CalculatorImpl())
    body = request_bytes("add", pa.RecordBatch.from_pydict({"a": [1], "b": [2]}))
    kind, message = _refusal(_pipe(server, body))
    assert kind == "protocol_not_specified"
    assert "a pipe request must name its protocol ('Calculator' here)" in message
    r = _http(server, "/Calculator/add", body)
    assert r.status_code == 200
    assert read_stream(r.content)[1][0][0].to_pydict() == {"result": [3]}


def test_over_http_the_request_must_agree_with_the_url() -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    r = _http(server, "/Calculator/add", call_body("add", {"a": 1, "b": 2}, protocol="Other"))
    assert r.status_code == 400
    assert (
        "the request metadata names protocol 'Other' but this URL serves 'Calculator'"
        in error_md(r.content)["vgi_rpc.log_message"]
    )
    r = _http(server, "/Calculator/add", call_body("divide", {"a": 1.0, "b": 2.0}))
    assert r.status_code == 400
    assert (
        "the URL names method 'add' but the request metadata names 'divide'"
        in error_md(r.content)["vgi_rpc.log_message"]
    )


@pytest.mark.parametrize(
    ("path", "method", "message"),
    [
        (
            "/Calculator/countdown",
            "countdown",
            "countdown is a stream method: POST /Calculator/countdown/init to open it, then /exchange",
        ),
        ("/Calculator/add/init", "add", "add is a unary method: POST /Calculator/add instead of /init"),
        (
            "/Calculator/add/exchange",
            "add",
            "add is a unary method: POST /Calculator/add instead of /exchange",
        ),
    ],
)
def test_an_http_route_serves_one_method_kind(path: str, method: str, message: str) -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    r = _http(server, path, call_body(method, {"a": 1, "b": 2} if method == "add" else {"n": 1}))
    assert r.status_code == 400
    md = error_md(r.content)
    assert md["vgi_rpc.error_kind"] == "bad_request"
    assert md["vgi_rpc.log_message"] == f"ProtocolError: {message}"


def test_the_pipe_lets_the_method_decide_its_kind() -> None:
    """The pipe serves both kinds on one way in: a stream call is a stream, a unary call unary."""
    server = RpcServer(Calculator, CalculatorImpl())
    pipe = Admission(server)
    assert pipe.route("countdown", "Calculator").method_type == "stream"
    assert pipe.route("add", "Calculator").method_type == "unary"


# --------------------------------------------------------------------------- the admission itself


@pytest.mark.parametrize("by_url", [False, True])
def test_route_rules_are_one_code_path(by_url: bool) -> None:
    """Rules 2-3 answer the same whichever way the names came (pipe metadata or HTTP URL)."""
    admission = Admission(RpcServer(Calculator, CalculatorImpl()), by_url=by_url)
    with pytest.raises(ProtocolError) as err:
        admission.route("add", "Other")
    assert (err.value.error_kind, err.value.status) == ("protocol_not_supported", 404)
    with pytest.raises(ProtocolError) as err:
        admission.route("nope", "Calculator")
    assert (err.value.error_kind, err.value.status) == ("method_not_implemented", 404)
    assert admission.route("add", "Calculator", UNARY, "/Calculator/add").name == "add"
    for expected in (INIT, EXCHANGE):
        assert admission.route("countdown", "Calculator", expected, "/x/init").name == "countdown"


def test_request_rules_give_the_kwargs() -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    request = read_request(call_body("add", {"a": 1, "b": 2}))
    for by_url in (False, True):
        admission = Admission(server, by_url=by_url)
        assert admission.request(admission.route("add", "Calculator"), request) == {"a": 1, "b": 2}
    mismatched = read_request(call_body("divide", {"a": 1.0, "b": 2.0}))
    spec = server.lookup("add")
    with pytest.raises(ProtocolError, match="the URL names method 'add'"):
        Admission(server, by_url=True).request(spec, mismatched)
