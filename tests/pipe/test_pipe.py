"""RpcServer and the pipe transport in-process: ``serve_pipe`` (server thread, OS pipes).

Unary, producer and exchange calls; defaults; ``ctx`` injection; log messages the
client sees; error propagation with type and message (unary, stream init,
``produce``, ``process``); cancel and close; exchange input casting.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import pyarrow as pa
import pytest
from support.services import (
    COUNT_SCHEMA,
    ERROR_TYPES,
    X_SCHEMA,
    Y_SCHEMA,
    Calculator,
    CalculatorImpl,
    TypesService,
    TypesServiceImpl,
    xs,
)

from vgi_rpc import (
    AnnotatedBatch,
    AuthContext,
    CallContext,
    ExchangeState,
    OutputCollector,
    ProducerState,
    ProtocolError,
    RpcError,
    RpcServer,
    Stream,
    serve_pipe,
)
from vgi_rpc.testing import RecordingHook
from vgi_rpc.wire import LogMessage

HEX12 = re.compile(r"[0-9a-f]{12}")
HEX16 = re.compile(r"[0-9a-f]{16}")
HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass
class Calc:
    proxy: Any
    impl: CalculatorImpl
    server: RpcServer
    logs: list[LogMessage]


@pytest.fixture
def calc() -> Iterator[Calc]:
    impl = CalculatorImpl()
    server = RpcServer(Calculator, impl)
    logs: list[LogMessage] = []
    with serve_pipe(server, on_log=logs.append) as proxy:
        yield Calc(proxy, impl, server, logs)


# --------------------------------------------------------------------------- RpcServer


def test_server_id_is_12_hex_and_unique_unless_given() -> None:
    a, b = RpcServer(Calculator, CalculatorImpl()), RpcServer(Calculator, CalculatorImpl())
    assert HEX12.fullmatch(a.server_id)
    assert HEX12.fullmatch(b.server_id)
    assert a.server_id != b.server_id
    assert RpcServer(Calculator, CalculatorImpl(), server_id="0123456789ab").server_id == "0123456789ab"


def test_protocol_name_is_the_class_attribute_or_the_class_name() -> None:
    assert RpcServer(Calculator, CalculatorImpl()).protocol_name == "Calculator"
    assert RpcServer(TypesService, TypesServiceImpl()).protocol_name == "vgi.test.Types"


def test_protocol_name_attribute_is_inherited_from_a_base_protocol() -> None:
    class Base(Protocol):
        protocol_name: ClassVar[str] = "base.v1"

        def ping(self) -> str: ...

    class Derived(Base, Protocol):
        def pong(self) -> str: ...

    class Impl:
        def ping(self) -> str:
            return "ping"

        def pong(self) -> str:
            return "pong"

    server = RpcServer(Derived, Impl())
    assert server.protocol_name == "base.v1"
    assert set(server.methods) == {"ping", "pong"}


def test_method_table_kinds() -> None:
    methods = RpcServer(Calculator, CalculatorImpl()).methods
    assert methods["add"].method_type == "unary"
    assert methods["noop"].method_type == "unary"
    for name in ("countdown", "scale", "fail_init", "fail_produce", "fail_process"):
        assert methods[name].method_type == "stream", name
    assert methods["whoami"].wants_ctx
    assert not methods["add"].wants_ctx


def test_dispatch_runs_one_call_in_process() -> None:
    impl = CalculatorImpl()
    server = RpcServer(Calculator, impl)
    assert server.dispatch("add", a=2, b=3) == 5
    assert server.dispatch("greet", name="Ada") == "Hello, Ada!"
    who = server.dispatch("whoami")
    assert who["method"] == "whoami"
    assert who["server_id"] == server.server_id
    assert HEX16.fullmatch(who["request_id"])
    with pytest.raises(ZeroDivisionError):
        server.dispatch("divide", a=1.0, b=0.0)
    with pytest.raises(ProtocolError, match="nope"):
        server.dispatch("nope")


# --------------------------------------------------------------------------- unary over the pipe


def test_unary_calls(calc: Calc) -> None:
    p = calc.proxy
    assert p.add(a=1, b=2) == 3
    assert p.add(40, 2) == 42  # positional arguments bind in declaration order
    assert p.divide(a=1.0, b=4.0) == 0.25
    assert p.divide(a=1, b=2) == 0.5  # ints are acceptable floats
    assert p.noop() is None


def test_defaults_on_parameters(calc: Calc) -> None:
    p = calc.proxy
    assert p.greet(name="Ada") == "Hello, Ada!"
    assert p.greet(name="Ada", greeting="Hi") == "Hi, Ada!"
    assert p.greet(name="Ada", punctuation="?") == "Hello, Ada?"


def test_client_rejects_bad_arguments_before_sending(calc: Calc) -> None:
    p = calc.proxy
    with pytest.raises(TypeError, match="missing required argument 'b'"):
        p.add(a=1)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        p.add(a=1, b=2, c=3)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        p.add(1, 2, 3)
    with pytest.raises(TypeError, match="multiple values"):
        p.add(1, a=2)
    with pytest.raises(TypeError, match="'a'"):
        p.add(a="one", b=2)
    assert p.add(a=1, b=1) == 2


def test_ctx_is_injected_with_call_facts(calc: Calc) -> None:
    first = calc.proxy.whoami()
    second = calc.proxy.whoami()
    assert first["method"] == "whoami"
    assert first["protocol_name"] == "Calculator"
    assert first["server_id"] == calc.server.server_id
    assert HEX16.fullmatch(first["request_id"])
    assert first["request_id"] != second["request_id"]
    assert first["stream_id"] == "None"
    assert first["auth_domain"] == "None"
    assert first["authenticated"] == "False"
    assert first["metadata_method"] == "whoami"  # transport metadata = the request batch's metadata
    assert calc.impl.last_ctx is not None
    assert calc.impl.last_ctx.transport_metadata["vgi_rpc.protocol"] == "Calculator"


def test_serve_pipe_auth_is_the_caller_of_every_call_on_the_connection() -> None:
    """``serve_pipe(..., auth=)``: the pipe has no credentials, the server's starter fixes the caller."""
    hook = RecordingHook()
    who = AuthContext(domain="pipe", authenticated=True, principal="worker-7", claims={"team": "ops"})
    impl = CalculatorImpl()
    server = RpcServer(Calculator, impl, hooks=[hook])
    with serve_pipe(server, auth=who) as proxy:
        facts = proxy.whoami()
        assert impl.last_ctx is not None and impl.last_ctx.auth is who
        assert len(list(proxy.countdown(n=1))) == 1
    assert (facts["auth_domain"], facts["authenticated"]) == ("pipe", "True")
    assert [c.auth for c in hook.calls] == [who, who]  # the unary call and the stream call
    with serve_pipe(Calculator, CalculatorImpl()) as proxy:
        assert proxy.whoami()["authenticated"] == "False"  # ANONYMOUS by default


def test_client_sees_log_messages_in_order_before_the_result(calc: Calc) -> None:
    assert calc.proxy.log_and_add(a=2, b=3) == 5
    assert [(m.level, m.message) for m in calc.logs] == [
        ("INFO", "adding 2 and 3"),
        ("WARN", "numbers are small"),
    ]
    assert calc.logs[0].extra == {"a": 2, "b": 3}
    assert all(m.server_id == calc.server.server_id for m in calc.logs)


def test_logs_sent_before_a_failure_still_reach_the_client(calc: Calc) -> None:
    with pytest.raises(RpcError) as info:
        calc.proxy.log_then_fail(message="after logging")
    assert info.value.error_message == "ValueError: after logging"
    assert [(m.level, m.message, dict(m.extra)) for m in calc.logs] == [
        ("INFO", "about to fail", {"reason": "after logging"})
    ]


def test_non_ascii_messages_round_trip(calc: Calc) -> None:
    message = "naïve ☃ — 日本語 \u0000 tab\t newline\n"
    with pytest.raises(RpcError) as info:
        calc.proxy.log_then_fail(message=message)
    assert info.value.error_message == f"ValueError: {message}"
    assert calc.logs[0].extra == {"reason": message}


def test_logs_go_only_to_the_call_that_made_them(calc: Calc) -> None:
    calc.proxy.log_and_add(a=1, b=1)
    calc.proxy.add(a=1, b=1)
    calc.proxy.whoami()
    assert len(calc.logs) == 2


@pytest.mark.parametrize("error_type", sorted(ERROR_TYPES))
def test_unary_error_carries_type_and_message(calc: Calc, error_type: str) -> None:
    with pytest.raises(RpcError) as info:
        calc.proxy.fail(message="the flux capacitor melted", error_type=error_type)
    err = info.value
    assert err.error_type == error_type
    assert err.error_message == f"{error_type}: the flux capacitor melted"
    assert err.remote_traceback is None  # not sent unless the server is configured to
    assert err.request_id is not None and HEX16.fullmatch(err.request_id)
    assert calc.proxy.add(a=1, b=2) == 3  # the connection keeps serving


def test_builtin_error_from_the_implementation(calc: Calc) -> None:
    with pytest.raises(RpcError) as info:
        calc.proxy.divide(a=1.0, b=0.0)
    assert info.value.error_type == "ZeroDivisionError"
    assert "division by zero" in info.value.error_message


def test_tracebacks_are_sent_only_when_configured() -> None:
    server = RpcServer(Calculator, CalculatorImpl(), include_tracebacks=True)
    with serve_pipe(server) as p, pytest.raises(RpcError) as info:
        p.fail(message="deep down")
    assert info.value.remote_traceback is not None
    assert "deep down" in info.value.remote_traceback
    assert "raise_named" in info.value.remote_traceback


def test_result_that_does_not_fit_the_return_type_is_an_error_for_the_client() -> None:
    class Liar(Protocol):
        def number(self) -> int: ...
        def nothing(self) -> None: ...

    class LiarImpl:
        def number(self) -> Any:
            return "not a number"

        def nothing(self) -> Any:
            return 42

    with serve_pipe(Liar, LiarImpl()) as p:
        with pytest.raises(RpcError) as info:
            p.number()
        assert info.value.error_type == "TypeError"
        assert "number" in info.value.error_message
        with pytest.raises(RpcError, match="nothing"):
            p.nothing()


def test_serve_pipe_argument_checks() -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    with pytest.raises(TypeError), serve_pipe(server, CalculatorImpl()):
        pass
    with pytest.raises(TypeError), serve_pipe(Calculator):
        pass


def test_one_proxy_shared_by_threads_keeps_calls_apart(calc: Calc) -> None:
    results: dict[int, list[int]] = {}

    def worker(k: int) -> None:
        out = []
        for i in range(20):
            out.append(calc.proxy.add(a=k, b=i))
            out.extend(b.batch.column("i")[0].as_py() for b in calc.proxy.countdown(n=2))
        results[k] = out

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for k in range(4):
        assert results[k] == [v for i in range(20) for v in (k + i, 1, 0)]


# --------------------------------------------------------------------------- producer streams


def test_producer_yields_batches_until_the_server_closes_the_stream(calc: Calc) -> None:
    batches = list(calc.proxy.countdown(n=3))
    assert [b.batch.to_pydict() for b in batches] == [{"i": [2]}, {"i": [1]}, {"i": [0]}]
    assert all(isinstance(b, AnnotatedBatch) and b.batch.schema.equals(COUNT_SCHEMA) for b in batches)
    assert [m.message for m in calc.logs] == ["tick 2", "tick 1", "tick 0"]
    assert calc.logs[0].extra == {"remaining": 2}
    assert calc.proxy.add(a=1, b=1) == 2


def test_empty_producer(calc: Calc) -> None:
    assert list(calc.proxy.countdown(n=0)) == []
    assert calc.proxy.add(a=1, b=1) == 2


def test_producer_runs_lazily_turn_by_turn(calc: Calc) -> None:
    tag = uuid.uuid4().hex
    session = calc.proxy.countdown(n=5, tag=tag)
    it = iter(session)
    next(it)
    next(it)
    assert calc.proxy.stream_events  # the stream holds the pipe; nothing else ran yet
    session.close()
    assert calc.proxy.stream_events(tag=tag) == ["produce", "produce"]
    assert calc.proxy.add(a=2, b=2) == 4


def test_producer_cancel(calc: Calc) -> None:
    tag = uuid.uuid4().hex
    session = calc.proxy.countdown(n=5, tag=tag)
    first = next(iter(session))
    assert first.batch.to_pydict() == {"i": [4]}
    session.cancel()
    assert calc.proxy.stream_events(tag=tag) == ["produce"]
    assert calc.proxy.add(a=2, b=2) == 4


@pytest.mark.parametrize("error_type", sorted(ERROR_TYPES))
def test_error_inside_produce_reaches_the_client(calc: Calc, error_type: str) -> None:
    got: list[int] = []
    with pytest.raises(RpcError) as info:
        for b in calc.proxy.fail_produce(n=2, message="the well ran dry", error_type=error_type):
            got.append(b.batch.column("i")[0].as_py())
    assert got == [1, 2]  # batches before the failure arrive
    assert info.value.error_type == error_type
    assert info.value.error_message == f"{error_type}: the well ran dry"
    assert calc.proxy.add(a=1, b=2) == 3


def test_error_before_the_first_batch(calc: Calc) -> None:
    with pytest.raises(RpcError, match="empty from the start"):
        list(calc.proxy.fail_produce(n=0, message="empty from the start"))
    assert calc.proxy.add(a=1, b=2) == 3


@pytest.mark.parametrize("error_type", ["ValueError", "FileNotFoundError", "ArrowInvalid"])
def test_error_at_stream_init_reaches_the_client(calc: Calc, error_type: str) -> None:
    with pytest.raises(RpcError) as info:
        list(calc.proxy.fail_init(message="could not open", error_type=error_type))
    assert info.value.error_type == error_type
    assert info.value.error_message == f"{error_type}: could not open"
    assert calc.proxy.add(a=1, b=2) == 3


def test_error_at_init_of_an_exchange_call_reaches_the_client(calc: Calc) -> None:
    """The init error surfaces at the first exchange; the pipe stays in step."""
    with pytest.raises(RpcError, match="could not open"), calc.proxy.fail_init(message="could not open") as s:
        s.exchange(xs(1.0))
    assert calc.proxy.add(a=1, b=2) == 3


# --------------------------------------------------------------------------- exchange streams


def test_exchange_turns(calc: Calc) -> None:
    with calc.proxy.scale(factor=2.0) as session:
        out = session.exchange(xs(1.0, 2.5))
        assert out.batch.to_pydict() == {"y": [2.0, 5.0]}
        assert out.batch.schema.names == ["y"]
        assert session.exchange(xs(-1.0)).batch.to_pydict() == {"y": [-2.0]}
        assert session.exchange(xs()).batch.to_pydict() == {"y": []}
    assert calc.proxy.add(a=1, b=2) == 3


def test_exchange_init_logs_and_ctx(calc: Calc) -> None:
    with calc.proxy.scale(factor=3.0) as session:
        session.exchange(xs(1.0))
    assert [(m.level, m.message) for m in calc.logs] == [("INFO", "scale opened")]
    assert calc.logs[0].extra == {"factor": 3.0}
    ctx = calc.impl.last_ctx
    assert ctx is not None
    assert ctx.stream_id is not None and HEX32.fullmatch(ctx.stream_id)
    assert ctx.method == "scale"


def test_exchange_casts_compatible_inputs(calc: Calc) -> None:
    with calc.proxy.scale(factor=2.0) as session:
        # int64 where the stream wants float64: the server casts
        assert session.exchange(AnnotatedBatch.from_pydict({"x": [1, 2]})).batch.to_pydict() == {
            "y": [2.0, 4.0]
        }
        # later batches with a compatible schema are cast to the first one's
        i32 = pa.RecordBatch.from_arrays([pa.array([3], pa.int32())], names=["x"])
        assert session.exchange(AnnotatedBatch(i32)).batch.to_pydict() == {"y": [6.0]}
        # one pipe input stream has one schema: a batch that cannot be cast to the
        # first one's is refused on the client, before anything is sent
        f64 = pa.RecordBatch.from_arrays([pa.array([0.5])], names=["x"])
        with pytest.raises(TypeError, match="cannot be cast"):
            session.exchange(AnnotatedBatch(f64))
        assert session.exchange(AnnotatedBatch.from_pydict({"x": [5]})).batch.to_pydict() == {"y": [10.0]}
    assert calc.proxy.add(a=1, b=2) == 3


def test_exchange_with_a_wrong_column_is_an_error_for_the_client(calc: Calc) -> None:
    with calc.proxy.scale(factor=2.0) as session:
        with pytest.raises(RpcError) as info:
            session.exchange(AnnotatedBatch.from_pydict({"z": [1.0]}))
        assert info.value.error_type == "TypeError"
        assert "'z'" in info.value.error_message or "['z']" in info.value.error_message
        with pytest.raises(RuntimeError, match="closed"):
            session.exchange(xs(1.0))
    assert calc.proxy.add(a=1, b=2) == 3


def test_exchange_passes_custom_metadata_and_strips_protocol_keys(calc: Calc) -> None:
    with calc.proxy.scale(factor=1.0) as session:
        out = session.exchange(
            AnnotatedBatch(xs(4.0).batch, {"trace": "abc", "vgi_rpc.stream_state#b64": "x"})
        )
    assert out.batch.to_pydict() == {"y": [4.0]}
    assert out.custom_metadata == {"trace": "abc"}
    assert calc.logs[-1].extra == {"trace": "abc"}


@pytest.mark.parametrize("error_type", sorted(ERROR_TYPES))
def test_error_inside_process_reaches_the_client(calc: Calc, error_type: str) -> None:
    session = calc.proxy.fail_process(message="negative input", error_type=error_type)
    assert session.exchange(xs(1.0)).batch.to_pydict() == {"y": [1.0]}
    with pytest.raises(RpcError) as info:
        session.exchange(xs(-1.0))
    assert info.value.error_type == error_type
    assert info.value.error_message == f"{error_type}: negative input"
    with pytest.raises(RuntimeError, match="closed"):
        session.exchange(xs(1.0))
    assert calc.proxy.add(a=1, b=2) == 3


def test_cancel_runs_on_cancel_without_processing(calc: Calc) -> None:
    tag = uuid.uuid4().hex
    session = calc.proxy.scale(factor=2.0, tag=tag)
    session.exchange(xs(1.0))
    session.cancel()
    assert calc.proxy.stream_events(tag=tag) == ["process", "cancel"]
    with pytest.raises(RuntimeError, match="closed"):
        session.exchange(xs(1.0))
    session.cancel()  # idempotent
    assert calc.proxy.add(a=1, b=2) == 3


def test_cancel_before_any_exchange(calc: Calc) -> None:
    tag = uuid.uuid4().hex
    calc.proxy.scale(factor=2.0, tag=tag).cancel()
    assert calc.proxy.stream_events(tag=tag) == ["cancel"]
    assert calc.proxy.add(a=1, b=2) == 3


def test_close_ends_the_exchange_without_cancel(calc: Calc) -> None:
    tag = uuid.uuid4().hex
    session = calc.proxy.scale(factor=2.0, tag=tag)
    session.exchange(xs(1.0))
    session.close()
    session.close()  # idempotent
    assert calc.proxy.stream_events(tag=tag) == ["process"]
    assert calc.proxy.add(a=1, b=2) == 3


def test_closing_a_stream_that_was_never_used(calc: Calc) -> None:
    tag = uuid.uuid4().hex
    calc.proxy.scale(factor=2.0, tag=tag).close()
    calc.proxy.countdown(n=3, tag=tag).close()
    assert calc.proxy.stream_events(tag=tag) == []
    assert calc.proxy.add(a=1, b=2) == 3


@dataclass
class _Silent(ExchangeState):
    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: Any) -> None:
        return None


@dataclass
class _Idle(ProducerState):
    def produce(self, out: OutputCollector, ctx: Any) -> None:
        return None


class _Quiet(Protocol):
    def silent(self) -> Stream[_Silent]: ...
    def idle(self) -> Stream[_Idle]: ...


class _QuietImpl:
    def silent(self) -> Stream[_Silent]:
        return Stream(Y_SCHEMA, _Silent(), X_SCHEMA)

    def idle(self) -> Stream[_Idle]:
        return Stream(COUNT_SCHEMA, _Idle())


def test_stream_turn_that_emits_nothing_is_an_error() -> None:
    with serve_pipe(_Quiet, _QuietImpl()) as p:
        with pytest.raises(RpcError, match="exactly one batch"):
            p.silent().exchange(xs(1.0))
        with pytest.raises(RpcError, match="finish"):
            list(p.idle())


def test_stream_method_that_does_not_return_a_stream() -> None:
    class Wrong(Protocol):
        def s(self) -> Stream[ProducerState]: ...

    class WrongImpl:
        def s(self) -> Any:
            return [1, 2, 3]

    with serve_pipe(Wrong, WrongImpl()) as p:
        with pytest.raises(RpcError) as info:
            list(p.s())
        assert info.value.error_type == "TypeError"
        assert "must return a Stream" in info.value.error_message


def test_a_call_inside_an_open_stream_is_refused_not_interleaved(calc: Calc) -> None:
    """Same thread, stream still open: the call would corrupt the stream, so it is refused."""
    session = calc.proxy.countdown(n=5)
    assert next(iter(session)).batch.to_pydict() == {"i": [4]}
    with pytest.raises(RuntimeError, match="still open"):
        calc.proxy.add(a=1, b=2)
    with pytest.raises(RuntimeError, match="still open"):
        calc.proxy.scale(factor=1.0)
    assert [b.batch.to_pydict()["i"][0] for b in session] == [3, 2, 1, 0]  # the stream is intact
    assert calc.proxy.add(a=1, b=2) == 3


def test_breaking_out_of_a_producer_loop_frees_the_connection(calc: Calc) -> None:
    for _ in calc.proxy.countdown(n=10):
        break
    assert calc.proxy.add(a=1, b=2) == 3


# --- a failing turn's own log messages still reach the client ------------------------------


@dataclass
class _LogThenFail(ProducerState):
    turns: int = 0

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        self.turns += 1
        out.log("INFO", f"turn {self.turns} starting")
        if self.turns == 2:
            raise RuntimeError("turn 2 broke")
        out.emit_pydict({"n": [self.turns]})


class _Chatty(Protocol):
    def chatty(self) -> Stream[_LogThenFail]: ...


class _ChattyImpl:
    def chatty(self) -> Stream[_LogThenFail]:
        return Stream(pa.schema([("n", pa.int64())]), _LogThenFail())


def test_a_failing_turn_still_delivers_its_log_messages() -> None:
    """Nothing lost: what a turn logged before raising arrives ahead of the error (pipe and HTTP)."""
    from vgi_rpc.http import http_connect, start_http_server

    for transport in ("pipe", "http"):
        logs: list[LogMessage] = []
        batches: list[int] = []
        with contextlib.ExitStack() as stack:
            if transport == "pipe":
                proxy = stack.enter_context(serve_pipe(_Chatty, _ChattyImpl(), on_log=logs.append))
            else:
                server = RpcServer(_Chatty, _ChattyImpl())
                handle = stack.enter_context(start_http_server(server, token_key=b"t" * 32))
                proxy = stack.enter_context(http_connect(_Chatty, handle.base_url, on_log=logs.append))
            with pytest.raises(RpcError, match="turn 2 broke"):
                for b in proxy.chatty():
                    batches.append(b.batch.column("n")[0].as_py())
        assert batches == [1], transport
        assert [m.message for m in logs] == ["turn 1 starting", "turn 2 starting"], transport
