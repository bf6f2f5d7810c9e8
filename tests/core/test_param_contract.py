"""The request parameter contract, checked before dispatch on every transport.

The official adversarial classes (``make adversarial``) are the external check; these
pin our own rules, including where they are deliberately kinder than the reference:

* fields come in the Protocol's order (one with a default may be left out);
* a request that states nullability (any field non-nullable) may mark nullable only
  ``Optional`` parameters (a non-nullable field for an ``Optional`` one is fine: it
  can never carry a null); one whose fields are all nullable (Arrow writers'
  default) states nothing, and only its values are checked;
* a pipe request names its protocol (``protocol_not_specified``, ``INVALID_ARGUMENT``);
  over HTTP the URL does, so the key may be absent.

Nothing runs for a refused request: a recording hook sees no dispatch.
"""

from __future__ import annotations

import io

import falcon.testing
import pyarrow as pa
import pytest
from support.http import ARROW, TOKEN_KEY, error_md, read_stream
from support.services import Calculator, CalculatorImpl

from vgi_rpc import RpcServer
from vgi_rpc.http import make_wsgi_app
from vgi_rpc.pipe import serve_streams
from vgi_rpc.testing import RecordingHook
from vgi_rpc.wire import request_bytes


def body(
    method: str, fields: list[pa.Field], values: list[object], *, protocol: str | None = "Calculator"
) -> bytes:
    schema = pa.schema(fields)
    arrays = [pa.array([v], type=f.type) for f, v in zip(fields, values, strict=True)]
    return request_bytes(method, pa.RecordBatch.from_arrays(arrays, schema=schema), protocol=protocol)


def f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


I64, STR = pa.int64(), pa.utf8()
REFUSED = {
    "wrong order": (
        body("add", [f("b", I64), f("a", I64)], [2, 1]),
        "add() parameter schema field 0 expected name 'a', got 'b'",
    ),
    "a required field stated nullable": (
        body("add", [f("a", I64, True), f("b", I64)], [1, 2]),
        "add() parameter 'a' expected nullable=False, but the request batch carried nullable=True",
    ),
    "a default left out, the rest reversed": (
        body("greet", [f("punctuation", STR), f("name", STR)], ["?", "Ada"]),
        "greet() parameter schema field 0 expected name 'name', got 'punctuation'",
    ),
    "a field sent twice": (
        body("add", [f("a", I64), f("a", I64)], [1, 2]),
        "parameter(s) 'a' sent more than once",
    ),
}
ACCEPTED = {
    "the declared schema": (body("add", [f("a", I64), f("b", I64)], [1, 2]), 3),
    "every field nullable (nothing stated)": (body("add", [f("a", I64, True), f("b", I64, True)], [1, 2]), 3),
    "a default left out, order kept": (
        body("greet", [f("name", STR), f("punctuation", STR)], ["Ada", "?"]),
        "Hello, Ada?",
    ),
}


def make() -> tuple[RpcServer, RecordingHook]:
    server = RpcServer(Calculator, CalculatorImpl())
    hook = RecordingHook()
    server.add_hook(hook)
    return server, hook


def pipe(server: RpcServer, *requests: bytes) -> list[list[tuple[pa.RecordBatch, dict[str, str]]]]:
    out = io.BytesIO()
    serve_streams(server, io.BytesIO(b"".join(requests)), out)
    data, answers = out.getvalue(), []
    source = pa.BufferReader(data)
    while source.tell() < len(data):
        reader = pa.ipc.open_stream(source)
        batches = []
        while True:
            try:
                batch, md = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                break
            batches.append((batch, {k.decode(): v.decode() for k, v in (md or {}).items()}))
        answers.append(batches)
    return answers


def pipe_message(answer: list[tuple[pa.RecordBatch, dict[str, str]]]) -> dict[str, str]:
    (only,) = answer
    assert only[1]["vgi_rpc.log_level"] == "EXCEPTION"
    return only[1]


GOOD = body("add", [f("a", I64), f("b", I64)], [20, 22])


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_on_the_pipe_before_dispatch(case: str) -> None:
    data, message = REFUSED[case]
    server, hook = make()
    refused, good = pipe(server, data, GOOD)
    md = pipe_message(refused)
    assert message in md["vgi_rpc.log_message"]
    assert md["vgi_rpc.error_code"] == "INVALID_ARGUMENT"
    assert good[-1][0].to_pydict() == {"result": [42]}  # the same pipe serves on
    assert [c.info.name for c in hook.calls] == ["add"]  # only the good call ran


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_over_http_before_dispatch(case: str) -> None:
    data, message = REFUSED[case]
    server, hook = make()
    client = falcon.testing.TestClient(make_wsgi_app(server, token_key=TOKEN_KEY))
    method = "greet" if "greet" in message else "add"
    r = client.simulate_post(f"/Calculator/{method}", body=data, headers={"Content-Type": ARROW})
    assert r.status_code == 400
    assert message in error_md(r.content)["vgi_rpc.log_message"]
    assert hook.calls == []


def test_stream_init_is_held_to_the_same_contract() -> None:
    server, hook = make()
    client = falcon.testing.TestClient(make_wsgi_app(server, token_key=TOKEN_KEY))
    data = body("countdown", [f("tag", STR), f("n", I64)], ["", 3])
    r = client.simulate_post("/Calculator/countdown/init", body=data, headers={"Content-Type": ARROW})
    assert r.status_code == 400
    assert (
        "countdown() parameter schema field 0 expected name 'n', got 'tag'"
        in error_md(r.content)["vgi_rpc.log_message"]
    )
    assert hook.calls == []


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_accepted_shapes(case: str) -> None:
    data, expected = ACCEPTED[case]
    server, _ = make()
    (answer,) = pipe(server, data)
    assert answer[-1][0].column("result").to_pylist() == [expected]


def test_a_pipe_request_must_name_its_protocol() -> None:
    server, hook = make()
    refused, good = pipe(server, body("add", [f("a", I64), f("b", I64)], [1, 2], protocol=None), GOOD)
    md = pipe_message(refused)
    assert md["vgi_rpc.error_kind"] == "protocol_not_specified"
    assert md["vgi_rpc.error_code"] == "INVALID_ARGUMENT"
    assert "'Calculator'" in md["vgi_rpc.log_message"]
    assert good[-1][0].to_pydict() == {"result": [42]}
    assert len(hook.calls) == 1


def test_over_http_the_url_names_the_protocol() -> None:
    server, _ = make()
    client = falcon.testing.TestClient(make_wsgi_app(server, token_key=TOKEN_KEY))
    data = body("add", [f("a", I64), f("b", I64)], [1, 2], protocol=None)
    r = client.simulate_post("/Calculator/add", body=data, headers={"Content-Type": ARROW})
    assert r.status_code == 200
    assert read_stream(r.content)[1][-1][0].to_pydict() == {"result": [3]}


def test_an_optional_parameter_may_come_non_nullable() -> None:
    """The official ``echo_outer_optional_non_null`` sends exactly this (``nullable=False``)."""
    from support.services import TypesService, TypesServiceImpl

    server = RpcServer(TypesService, TypesServiceImpl())
    data = body("echo_opt_int", [f("value", I64)], [5], protocol=TypesService.protocol_name)
    (answer,) = pipe(server, data)
    assert answer[-1][0].column("result").to_pylist() == [5]
