"""Stateless HTTP streams through ``falcon.testing``: token placement, turns, hooks, cancel, bad tokens."""

from __future__ import annotations

import base64
import dataclasses
import re
from typing import Any, Protocol

import falcon
import falcon.testing
import pyarrow as pa
import pytest
from support.http import (
    ARROW,
    BUDGET,
    TOKEN_KEY,
    Banner,
    Headed,
    HeadedImpl,
    call_body,
    error_md,
    read_stream,
    token_of,
    turn_body,
    wsgi_client,
)
from support.jwt import JWT_SECRET, sign_jwt
from support.services import COUNT_SCHEMA, Calculator, CalculatorImpl, stream_events

from vgi_rpc import (
    CallContext,
    OutputCollector,
    ProducerState,
    RpcError,
    RpcServer,
    Stream,
)
from vgi_rpc.http import jwt_authenticator, make_wsgi_app
from vgi_rpc.testing import RecordingHook
from vgi_rpc.wire import STREAM_STATE_KEY

STATE = STREAM_STATE_KEY
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class Env:
    def __init__(self, **options: Any) -> None:
        self.server = RpcServer(Calculator, CalculatorImpl())
        self.hook = RecordingHook()
        self.server.add_hook(self.hook)
        options.setdefault("token_key", TOKEN_KEY)
        self.client = falcon.testing.TestClient(make_wsgi_app(self.server, **options))
        self.headers: dict[str, str] = {}

    def post(self, path: str, body: bytes) -> falcon.testing.Result:
        return self.client.simulate_post(
            "/Calculator/" + path, body=body, headers={"Content-Type": ARROW, **self.headers}
        )

    def init(self, method: str, **kwargs: Any) -> falcon.testing.Result:
        return self.post(f"{method}/init", call_body(method, kwargs))

    def turn(
        self, method: str, token: str, batch: pa.RecordBatch | None = None, **md: str
    ) -> falcon.testing.Result:
        return self.post(f"{method}/exchange", turn_body(token, batch, **md))


def x_batch(*xs: float, type: pa.DataType | None = None, name: str = "x") -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(list(xs), type=type or pa.float64())], names=[name])


def data_rows(r: falcon.testing.Result) -> list[dict[str, list[Any]]]:
    return [
        b.to_pydict() for b, md in read_stream(r.content)[1] if b.num_rows and "vgi_rpc.log_level" not in md
    ]


# --------------------------------------------------------------------------- producer


def test_producer_init_sends_first_batch_then_a_separate_token_batch() -> None:
    env = Env()
    r = env.init("countdown", n=3, tag="")
    assert r.status_code == 200 and r.headers[BUDGET] == "true"
    schema, batches = read_stream(r.content)
    assert schema.equals(COUNT_SCHEMA)
    kinds = [
        ("log" if "vgi_rpc.log_level" in md else "token" if STATE in md else "data") for _, md in batches
    ]
    assert kinds == ["log", "data", "token"]
    token_batch = batches[-1][0]
    assert token_batch.num_rows == 0
    assert STATE not in batches[1][1]


def test_producer_runs_to_completion_over_turns() -> None:
    env = Env()
    r = env.init("countdown", n=3, tag="")
    rows = data_rows(r)
    token = token_of(r)
    while token is not None:
        r = env.turn("countdown", token)
        assert r.status_code == 200
        rows += data_rows(r)
        token = token_of(r)
    assert rows == [{"i": [2]}, {"i": [1]}, {"i": [0]}]
    # the last response: no data, no token (schema + EOS)
    assert read_stream(r.content)[1] == []


def test_empty_producer_is_schema_and_eos() -> None:
    env = Env()
    r = env.init("countdown", n=0, tag="")
    schema, batches = read_stream(r.content)
    assert schema.equals(COUNT_SCHEMA)
    assert batches == []


def test_every_turn_is_one_hook_pair_sharing_the_stream_id() -> None:
    env = Env()
    r = env.init("countdown", n=2, tag="")
    token = token_of(r)
    while token is not None:
        token = token_of(env.turn("countdown", token))
    calls = env.hook.calls
    assert [c.info.turn for c in calls] == ["init", "exchange", "exchange"]
    assert all(c.ended and c.error is None for c in calls)
    assert all(c.info.transport == "http" and c.info.method_type == "stream" for c in calls)
    ids = {c.info.stream_id for c in calls}
    assert len(ids) == 1 and HEX32.match(ids.pop() or "")
    assert len({c.info.request_id for c in calls}) == 3
    assert calls[0].kwargs == {"n": 2, "tag": ""}
    assert [c.kwargs for c in calls[1:]] == [None, None]


def test_producer_error_mid_stream_reaches_the_hook_as_the_original_exception() -> None:
    env = Env()
    r = env.init("fail_produce", n=1, message="mid-stream", error_type="ZeroDivisionError")
    token = token_of(r)
    assert token is not None
    r = env.turn("fail_produce", token)
    assert r.status_code == 200
    assert r.headers["X-VGI-RPC-Error"] == "true"
    schema, _ = read_stream(r.content)
    assert schema.equals(COUNT_SCHEMA)
    assert error_md(r.content)["vgi_rpc.log_message"] == "ZeroDivisionError: mid-stream"
    last = env.hook.calls[-1]
    assert last.info.turn == "exchange"
    assert type(last.error) is ZeroDivisionError and str(last.error) == "mid-stream"


def test_init_error_is_on_the_empty_schema_and_reaches_the_hook() -> None:
    env = Env()
    r = env.init("fail_init", message="no stream for you", error_type="PermissionError")
    assert r.status_code == 200 and r.headers["X-VGI-RPC-Error"] == "true"
    schema, _ = read_stream(r.content)
    assert len(schema) == 0
    assert error_md(r.content)["vgi_rpc.log_message"] == "PermissionError: no stream for you"
    (seen,) = env.hook.calls
    assert seen.info.turn == "init" and type(seen.error) is PermissionError


# --------------------------------------------------------------------------- exchange


def test_exchange_init_is_a_lone_token_batch_and_turns_carry_the_token_on_data() -> None:
    env = Env()
    r = env.init("scale", factor=2.0, tag="")
    schema, batches = read_stream(r.content)
    assert schema.names == ["y"]
    non_log = [(b, md) for b, md in batches if "vgi_rpc.log_level" not in md]
    assert len(non_log) == 1 and non_log[0][0].num_rows == 0 and STATE in non_log[0][1]
    token = non_log[0][1][STATE]
    r = env.turn("scale", token, x_batch(1.0, 2.5), note="hi")
    _, batches = read_stream(r.content)
    data = [(b, md) for b, md in batches if "vgi_rpc.log_level" not in md]
    assert len(data) == 1
    batch, md = data[0]
    assert batch.to_pydict() == {"y": [2.0, 5.0]}
    assert STATE in md and md[STATE] != token
    assert md["note"] == "hi"  # the state echoed the user's metadata...
    log = next(md for _, md in batches if md.get("vgi_rpc.log_level") == "DEBUG")
    assert STATE not in log["vgi_rpc.log_extra"]  # ...which no longer held the token


def test_exchange_casts_compatible_input_and_refuses_wrong_columns() -> None:
    env = Env()
    token = token_of(env.init("scale", factor=3.0, tag=""))
    assert token is not None
    ok = env.turn("scale", token, x_batch(2, type=pa.int32()))
    assert data_rows(ok) == [{"y": [6.0]}]
    bad = env.turn("scale", token, x_batch(2.0, name="wrong"))
    assert bad.headers["X-VGI-RPC-Error"] == "true"
    assert error_md(bad.content)["vgi_rpc.log_message"].startswith(
        "TypeError: exchange input columns ['wrong']"
    )


def test_exchange_error_leaves_the_previous_token_usable() -> None:
    env = Env()
    token = token_of(env.init("fail_process", message="negative!", error_type="ValueError"))
    assert token is not None
    r = env.turn("fail_process", token, x_batch(-1.0))
    assert error_md(r.content)["vgi_rpc.log_message"] == "ValueError: negative!"
    assert isinstance(env.hook.calls[-1].error, ValueError)
    assert data_rows(env.turn("fail_process", token, x_batch(4.0))) == [{"y": [4.0]}]


def test_cancel_runs_on_cancel_without_processing() -> None:
    env = Env()
    token = token_of(env.init("scale", factor=1.0, tag="http-cancel-1"))
    assert token is not None
    r = env.turn("scale", token, pa.RecordBatch.from_pydict({}), **{"vgi_rpc.cancel": "1"})
    assert r.status_code == 200
    schema, batches = read_stream(r.content)
    assert schema.names == ["y"] and batches == []
    assert stream_events("http-cancel-1") == ["cancel"]
    assert env.hook.calls[-1].info.turn == "exchange"


def test_state_travels_sealed_not_in_clear() -> None:
    env = Env()
    token = token_of(env.init("scale", factor=1.0, tag="plaintext-marker"))
    assert token is not None
    raw = base64.b64decode(token)
    assert b"plaintext-marker" not in raw


# --------------------------------------------------------------------------- bad tokens


def test_tampered_token_is_400_and_leaks_nothing() -> None:
    env = Env()
    token = token_of(env.init("scale", factor=7.0, tag="very-secret-tag"))
    assert token is not None
    raw = bytearray(base64.b64decode(token))
    raw[len(raw) // 2] ^= 0x01
    r = env.turn("scale", base64.b64encode(bytes(raw)).decode(), x_batch(1.0))
    assert r.status_code == 400
    assert r.headers[BUDGET] == "true"
    md = error_md(r.content)
    assert "stream token rejected" in md["vgi_rpc.log_message"]
    assert md["vgi_rpc.error_kind"] == "invalid_stream_token"
    assert b"very-secret-tag" not in r.content and b"7.0" not in r.content
    assert len(env.hook.calls) == 1  # only the init: a rejected turn is never dispatched


@pytest.mark.parametrize("token", ["", "garbage!", base64.b64encode(b"x" * 80).decode()])
def test_missing_or_garbage_token_is_400(token: str) -> None:
    env = Env()
    r = env.turn("scale", token, x_batch(1.0))
    assert r.status_code == 400
    assert "token" in error_md(r.content)["vgi_rpc.log_message"]


def test_token_from_another_method_or_key_is_rejected() -> None:
    env = Env()
    token = token_of(env.init("countdown", n=5, tag=""))
    assert token is not None
    r = env.turn("scale", token, x_batch(1.0))
    assert r.status_code == 400
    other = Env(token_key=b"another key, 32 bytes long......")
    r = other.turn("countdown", token)
    assert r.status_code == 400
    assert "rejected" in error_md(r.content)["vgi_rpc.log_message"]


def test_expired_token_is_400_expired() -> None:
    env = Env(token_ttl=0.001)
    token = token_of(env.init("countdown", n=5, tag=""))
    assert token is not None
    r = env.turn("countdown", token)
    assert r.status_code == 400
    assert "expired" in error_md(r.content)["vgi_rpc.log_message"]


def test_token_of_another_principal_is_rejected() -> None:
    env = Env(authenticate=jwt_authenticator(key=JWT_SECRET))
    env.headers = {"Authorization": f"Bearer {sign_jwt('alice')}"}
    token = token_of(env.init("countdown", n=5, tag=""))
    assert token is not None
    assert env.turn("countdown", token).status_code == 200
    env.headers = {"Authorization": f"Bearer {sign_jwt('mallory')}"}
    r = env.turn("countdown", token)
    assert r.status_code == 400
    assert "another caller" in error_md(r.content)["vgi_rpc.log_message"]
    assert env.hook.calls[-1].auth.principal == "alice"


# --------------------------------------------------------------------------- states that cannot travel


class Plain(ProducerState):
    """Not a dataclass: cannot be sealed into a token."""

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        out.emit_pydict({"i": [1]})


class Odd(Protocol):
    def plain(self) -> Stream[Plain]: ...


class OddImpl:
    def plain(self) -> Stream[Plain]:
        return Stream(output_schema=COUNT_SCHEMA, state=Plain())


def test_state_that_is_not_a_dataclass_fails_the_init_turn_clearly() -> None:
    hook = RecordingHook()
    server = RpcServer(Odd, OddImpl())
    server.add_hook(hook)
    c = falcon.testing.TestClient(make_wsgi_app(server, token_key=TOKEN_KEY))
    r = c.simulate_post(
        "/Odd/plain/init", body=call_body("plain", protocol="Odd"), headers={"Content-Type": ARROW}
    )
    assert r.headers["X-VGI-RPC-Error"] == "true"
    assert "must be a dataclass to travel between HTTP turns" in error_md(r.content)["vgi_rpc.log_message"]
    assert isinstance(hook.calls[0].error, TypeError)
    assert not dataclasses.is_dataclass(Plain)


# --------------------------------------------------------------------------- stream headers (Stream[S, H])


def test_init_sends_the_header_stream_before_the_output_stream() -> None:
    c = falcon.testing.TestClient(make_wsgi_app(RpcServer(Headed, HeadedImpl()), token_key=TOKEN_KEY))
    r = c.simulate_post(
        "/Headed/titled/init",
        body=call_body("titled", {"n": 2}, protocol="Headed"),
        headers={"Content-Type": ARROW},
    )
    buf = pa.py_buffer(r.content)
    stream = pa.BufferReader(buf)
    header_reader = pa.ipc.open_stream(stream)
    assert header_reader.read_all().to_pylist() == [{"title": "2 rows", "total": 2}]
    main = pa.ipc.open_stream(stream)
    assert main.schema.equals(COUNT_SCHEMA)
    rows = [b.to_pydict() for b in main if b.num_rows]
    assert rows == [{"i": [1]}]


def test_our_client_reads_the_header_then_the_stream() -> None:
    """``Stream[S, H]`` through http_connect: session.header, then the batches; init errors raise."""
    from vgi_rpc.http import http_connect

    app = make_wsgi_app(RpcServer(Headed, HeadedImpl()), token_key=TOKEN_KEY)
    with (
        wsgi_client(app) as client,
        http_connect(Headed, "http://testserver", client=client) as proxy,
    ):
        session = proxy.titled(n=3)
        assert session.header == Banner(title="3 rows", total=3)
        assert [ab.batch.column("i")[0].as_py() for ab in session] == [2, 1, 0]
        with pytest.raises(RpcError, match="n must be >= 0"):
            proxy.titled(n=-1)
