"""Dispatch hooks: the composite's order, register/strip, the server's public door
(``hooks=``, ``add_hook``, ``remove_hooks``), failure isolation, and what hooks see.

Hooks run on a real server: in-process (``RpcServer.dispatch``) and over the pipe
(``serve_pipe``: a server thread behind OS pipes). On the pipe a stream call is
one start/end pair for the whole stream. The server handles one connection's
calls in order, so after a follow-up unary call returns, the previous call's
``on_dispatch_end`` has run.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from support.services import COUNT_SCHEMA, X_SCHEMA, Y_SCHEMA, Calculator, CalculatorImpl

from vgi_rpc import (
    AnnotatedBatch,
    AuthContext,
    DispatchHook,
    DispatchInfo,
    ExchangeState,
    OutputCollector,
    ProducerState,
    RpcError,
    RpcServer,
    Stream,
    register_dispatch_hook,
    serve_pipe,
    strip_dispatch_hooks,
)
from vgi_rpc.hooks import CompositeDispatchHook, _CompositeDispatchHook, iter_hooks
from vgi_rpc.testing import RecordingHook

HEX16 = re.compile(r"[0-9a-f]{16}")
HEX32 = re.compile(r"[0-9a-f]{32}")


# --------------------------------------------------------------------------- recording hooks

Event = tuple[str, str, DispatchInfo, Any]  # (phase, hook name, info, kwargs | error)


class Journal:
    """Thread-safe, ordered record of every hook call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[Event] = []

    def add(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def phases(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(e[0], e[1]) for e in self.events]

    def of(self, phase: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e[0] == phase]


class Recorder(RecordingHook):
    """The public RecordingHook, also journalling each start and end under its name.

    The journal, shared by several hooks, shows the order *across* hooks; the
    recording (``calls``) what this hook saw. ``tokens_ok`` turns false if end is
    handed a token this hook's start did not return.
    """

    def __init__(self, name: str, journal: Journal) -> None:
        super().__init__()
        self.name = name
        self.journal = journal
        self.tokens_ok = True

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        self.journal.add(("start", self.name, info, dict(kwargs) if kwargs is not None else None))
        return super().on_dispatch_start(info, auth, transport_metadata, kwargs)

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        if not any(token is c and c.info is info for c in self.calls):
            self.tokens_ok = False
        self.journal.add(("end", self.name, info, error))
        super().on_dispatch_end(token, info, error)

    def __repr__(self) -> str:
        return f"Recorder({self.name})"


class OtherRecorder(Recorder):
    """A second hook kind, for strip tests."""


class Exploding(Recorder):
    """Records like Recorder, then raises in the chosen phase."""

    def __init__(self, name: str, journal: Journal, phase: str) -> None:
        super().__init__(name, journal)
        self.phase = phase

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        token = super().on_dispatch_start(info, auth, transport_metadata, kwargs)
        if self.phase == "start":
            raise RuntimeError(f"hook {self.name} exploded in start")
        return token

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        super().on_dispatch_end(token, info, error)
        if self.phase == "end":
            raise RuntimeError(f"hook {self.name} exploded in end")


def chain(*hooks: DispatchHook) -> DispatchHook | None:
    out: DispatchHook | None = None
    for h in hooks:
        out = register_dispatch_hook(out, h)
    return out


@dataclass
class Served:
    proxy: Any
    server: RpcServer
    journal: Journal


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def served(journal: Journal) -> Iterator[Served]:
    server = RpcServer(
        Calculator,
        CalculatorImpl(),
        hooks=[Recorder("a", journal), Recorder("b", journal), Recorder("c", journal)],
    )
    with serve_pipe(server) as proxy:
        yield Served(proxy, server, journal)


ORDER = [("start", "a"), ("start", "b"), ("start", "c"), ("end", "c"), ("end", "b"), ("end", "a")]


# --------------------------------------------------------------------------- composition


def test_register_builds_a_flat_composite_in_registration_order(journal: Journal) -> None:
    a, b, c = Recorder("a", journal), Recorder("b", journal), Recorder("c", journal)
    assert register_dispatch_hook(None, a) is a
    ab = register_dispatch_hook(a, b)
    assert isinstance(ab, CompositeDispatchHook)
    assert ab.hooks == (a, b)
    abc = register_dispatch_hook(ab, c)
    assert isinstance(abc, CompositeDispatchHook)
    assert abc.hooks == (a, b, c)  # flat, not nested
    assert ab.hooks == (a, b)  # the existing chain is not mutated
    assert iter_hooks(abc) == (a, b, c)
    assert iter_hooks(a) == (a,)
    assert iter_hooks(None) == ()
    assert _CompositeDispatchHook is CompositeDispatchHook
    assert isinstance(abc, DispatchHook)
    assert isinstance(a, DispatchHook)


def test_composite_starts_in_order_and_ends_in_reverse_in_process(journal: Journal) -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    hooks = [Recorder(n, journal) for n in "abc"]
    server.add_hook(chain(*hooks))
    assert server.dispatch("add", a=1, b=2) == 3
    assert journal.phases() == ORDER
    assert all(h.tokens_ok for h in hooks)


def test_composite_order_on_the_pipe(served: Served) -> None:
    assert served.proxy.add(a=1, b=2) == 3
    assert served.journal.phases() == ORDER


def test_composite_order_for_a_failing_call(served: Served) -> None:
    with pytest.raises(RpcError):
        served.proxy.fail(message="x")
    assert served.journal.phases() == ORDER


def test_strip_removes_one_kind_and_keeps_the_others_in_order(journal: Journal) -> None:
    a, b, c, d = (
        Recorder("a", journal),
        OtherRecorder("b", journal),
        Recorder("c", journal),
        OtherRecorder("d", journal),
    )
    full = chain(a, b, c, d)
    kept = strip_dispatch_hooks(full, OtherRecorder)
    assert isinstance(kept, CompositeDispatchHook)
    assert kept.hooks == (a, c)
    assert iter_hooks(full) == (a, b, c, d)  # the input chain is untouched

    server = RpcServer(Calculator, CalculatorImpl(), hooks=iter_hooks(kept))
    server.dispatch("add", a=1, b=1)
    assert journal.phases() == [("start", "a"), ("start", "c"), ("end", "c"), ("end", "a")]


def test_strip_edge_cases(journal: Journal) -> None:
    a, b = Recorder("a", journal), OtherRecorder("b", journal)
    assert strip_dispatch_hooks(None, Recorder) is None
    assert strip_dispatch_hooks(b, OtherRecorder) is None
    assert strip_dispatch_hooks(a, OtherRecorder) is a
    assert strip_dispatch_hooks(chain(a, b), OtherRecorder) is a  # one left: no composite
    assert strip_dispatch_hooks(chain(b, a), OtherRecorder) is a
    assert strip_dispatch_hooks(chain(a, b), Recorder) is None  # subclasses are that kind too
    unchanged = strip_dispatch_hooks(chain(a, b), Exploding)
    assert iter_hooks(unchanged) == (a, b)


# --------------------------------------------------------------------------- the public door


def test_hooks_argument_and_add_hook_register_in_order(journal: Journal) -> None:
    a, b, c, z = (Recorder(n, journal) for n in "abcz")
    server = RpcServer(Calculator, CalculatorImpl(), hooks=[a, b])
    assert server.hooks == (a, b)
    server.add_hook(c)
    server.add_hook(z, first=True)
    assert server.hooks == (z, a, b, c)
    server.dispatch("add", a=1, b=2)
    assert journal.phases() == [
        *[("start", n) for n in "zabc"],
        *[("end", n) for n in "cbaz"],
    ]


def test_remove_hooks_returns_the_removed_ones_and_keeps_the_others_in_order(journal: Journal) -> None:
    a, b, c, d = (
        Recorder("a", journal),
        OtherRecorder("b", journal),
        Recorder("c", journal),
        OtherRecorder("d", journal),
    )
    server = RpcServer(Calculator, CalculatorImpl(), hooks=[a, b, c, d])
    assert server.remove_hooks(OtherRecorder) == (b, d)
    assert server.hooks == (a, c)
    assert server.remove_hooks(OtherRecorder) == ()
    assert server.remove_hooks(Recorder) == (a, c)  # subclasses are that kind too
    assert server.hooks == ()
    assert server.dispatch("add", a=1, b=2) == 3
    assert journal.events == []


def test_add_hook_rejects_what_is_not_a_hook() -> None:
    server = RpcServer(Calculator, CalculatorImpl())

    class OnlyStart:
        def on_dispatch_start(self, info: Any, auth: Any, md: Any, kwargs: Any) -> None:
            return None

    with pytest.raises(TypeError, match="is not a dispatch hook: it needs on_dispatch_start"):
        server.add_hook(OnlyStart())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not a dispatch hook"):
        RpcServer(Calculator, CalculatorImpl(), hooks=[object()])  # type: ignore[list-item]
    assert server.hooks == ()


def test_add_hook_takes_a_composite_apart_and_an_empty_one_adds_nothing(journal: Journal) -> None:
    a, b = Recorder("a", journal), Recorder("b", journal)
    server = RpcServer(Calculator, CalculatorImpl())
    server.add_hook(CompositeDispatchHook(()))
    assert server.hooks == ()
    server.add_hook(CompositeDispatchHook((a, b)))
    assert server.hooks == (a, b)


def test_the_dispatch_paths_dispatch_info_is_a_real_frozen_dispatch_info() -> None:
    """``hooks._dispatch_info`` (the fast constructor calls use) builds exactly ``DispatchInfo(...)``."""
    import dataclasses

    from vgi_rpc.hooks import _dispatch_info

    values = ("add", "stream", "Calc", "a" * 12, "b" * 16, "c" * 32, "http", "exchange")
    fast, slow = _dispatch_info(*values), DispatchInfo(*values)  # type: ignore[arg-type]
    assert type(fast) is DispatchInfo
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert dataclasses.astuple(fast) == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- failure isolation

CALLS = ["unary", "unary_error", "producer", "exchange", "stream_error", "inproc"]


def _run(kind: str, proxy: Any, server: RpcServer) -> Any:
    """Run one call of *kind* and return what the caller observed."""
    if kind == "unary":
        return proxy.greet(name="Ada")
    if kind == "unary_error":
        with pytest.raises(RpcError) as info:
            proxy.fail(message="app failure")
        return (info.value.error_type, info.value.error_message)
    if kind == "producer":
        return [b.batch.to_pydict() for b in proxy.countdown(n=3)]
    if kind == "exchange":
        with proxy.scale(factor=2.0) as s:
            return [
                s.exchange(AnnotatedBatch.from_pydict({"x": [float(i)]})).batch.to_pydict() for i in range(3)
            ]
    if kind == "stream_error":
        got = []
        with pytest.raises(RpcError) as info:
            for b in proxy.fail_produce(n=1, message="dry"):
                got.append(b.batch.to_pydict())
        return (got, info.value.error_type, info.value.error_message)
    if kind == "inproc":
        return server.dispatch("add", a=2, b=3)
    raise AssertionError(kind)


def _baseline(kind: str) -> Any:
    server = RpcServer(Calculator, CalculatorImpl())
    with serve_pipe(server) as proxy:
        return _run(kind, proxy, server)


@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize("phase", ["start", "end"])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_raising_hook_in_any_position_changes_nothing(
    kind: str, phase: str, position: int, journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    hooks: list[Recorder] = [Recorder(n, journal) for n in "abc"]
    hooks[position] = Exploding("abc"[position], journal, phase)
    server = RpcServer(Calculator, CalculatorImpl(), hooks=hooks)
    expected = _baseline(kind)
    caplog.set_level(logging.WARNING, logger="vgi_rpc")
    with serve_pipe(server) as proxy:
        assert _run(kind, proxy, server) == expected
        assert proxy.add(a=1, b=1) == 2  # the server keeps serving; the last call's end has run
    # every hook saw the whole first call; the raising one's end is skipped only if its start failed
    first = journal.events[0][2].request_id
    call = [(ph, n) for ph, n, info, _ in journal.events if info.request_id == first]
    assert [n for ph, n in call if ph == "start"] == ["a", "b", "c"]
    assert [n for ph, n in call if ph == "end"] == [
        n for n in "cba" if not (phase == "start" and n == "abc"[position])
    ]
    failures = [
        r
        for r in caplog.records
        if r.name == "vgi_rpc" and "exploded" in str(r.exc_info[1] if r.exc_info else "")
    ]
    assert failures, "the hook failure is logged on vgi_rpc"
    assert all(r.levelno == logging.WARNING for r in failures)


@pytest.mark.parametrize("phase", ["start", "end"])
@pytest.mark.parametrize("kind", ["unary", "producer", "inproc"])
def test_a_single_raising_hook_changes_nothing(kind: str, phase: str, journal: Journal) -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    server.add_hook(Exploding("x", journal, phase))
    expected = _baseline(kind)
    with serve_pipe(server) as proxy:
        assert _run(kind, proxy, server) == expected
        assert proxy.add(a=1, b=1) == 2


# --------------------------------------------------------------------------- what hooks see


def test_unary_info_kwargs_and_metadata_on_the_pipe(served: Served) -> None:
    served.proxy.greet(name="Ada", greeting="Hi")
    (start, *_) = served.journal.of("start")
    _, _, info, kwargs = start
    assert info.name == "greet"
    assert info.method_type == "unary"
    assert info.service == "Calculator"
    assert info.server_id == served.server.server_id
    assert HEX16.fullmatch(info.request_id)
    assert info.stream_id is None
    assert info.transport == "pipe"
    assert info.turn == "call"
    assert kwargs == {"name": "Ada", "greeting": "Hi", "punctuation": "!"}  # defaults filled in
    end = served.journal.of("end")[0]
    assert end[2] == info
    assert end[3] is None


def test_unary_hook_gets_transport_metadata_and_anonymous_auth(journal: Journal) -> None:
    hook = Recorder("a", journal)
    server = RpcServer(Calculator, CalculatorImpl())
    server.add_hook(hook)
    with serve_pipe(server) as proxy:
        proxy.add(a=1, b=2)
    (call,) = hook.calls
    assert call.metadata["vgi_rpc.method"] == "add"
    assert call.metadata["vgi_rpc.protocol"] == "Calculator"
    assert call.auth == AuthContext()
    assert not call.auth.authenticated


def test_in_process_dispatch_info(journal: Journal) -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    server.add_hook(Recorder("a", journal))
    server.dispatch("add", a=1, b=2)
    (_, _, info, kwargs) = journal.of("start")[0]
    assert (info.transport, info.turn, info.method_type) == ("inproc", "call", "unary")
    assert kwargs == {"a": 1, "b": 2}


def _stream_pair(journal: Journal, name: str) -> tuple[Event, Event]:
    starts = [e for e in journal.of("start") if e[1] == "a" and e[2].name == name]
    ends = [e for e in journal.of("end") if e[1] == "a" and e[2].name == name]
    assert len(starts) == 1, f"one start for the whole {name} stream, got {len(starts)}"
    assert len(ends) == 1, f"one end for the whole {name} stream, got {len(ends)}"
    return starts[0], ends[0]


def test_producer_stream_is_one_start_end_pair_with_a_stream_id(served: Served) -> None:
    assert len(list(served.proxy.countdown(n=4))) == 4
    served.proxy.add(a=0, b=0)
    start, end = _stream_pair(served.journal, "countdown")
    info = start[2]
    assert info.method_type == "stream"
    assert info.transport == "pipe"
    assert info.turn == "stream"
    assert info.stream_id is not None and HEX32.fullmatch(info.stream_id)
    assert start[3] == {"n": 4, "tag": ""}
    assert end[2] == info
    assert end[3] is None


def test_exchange_stream_is_one_start_end_pair(served: Served) -> None:
    with served.proxy.scale(factor=2.0) as s:
        for i in range(3):
            s.exchange(AnnotatedBatch.from_pydict({"x": [float(i)]}))
    served.proxy.add(a=0, b=0)
    start, end = _stream_pair(served.journal, "scale")
    assert start[2].stream_id is not None and HEX32.fullmatch(start[2].stream_id)
    assert end[3] is None


def test_cancelled_stream_is_one_pair_without_error(served: Served) -> None:
    s = served.proxy.scale(factor=2.0)
    s.exchange(AnnotatedBatch.from_pydict({"x": [1.0]}))
    s.cancel()
    served.proxy.add(a=0, b=0)
    _, end = _stream_pair(served.journal, "scale")
    assert end[3] is None


def test_each_stream_call_gets_its_own_stream_id(served: Served) -> None:
    list(served.proxy.countdown(n=1))
    list(served.proxy.countdown(n=1))
    served.proxy.add(a=0, b=0)
    ids = [e[2].stream_id for e in served.journal.of("start") if e[1] == "a" and e[2].name == "countdown"]
    assert len(ids) == 2
    assert ids[0] != ids[1]


def test_stream_id_seen_by_hooks_matches_the_ctx(journal: Journal) -> None:
    impl = CalculatorImpl()
    server = RpcServer(Calculator, impl)
    server.add_hook(Recorder("a", journal))
    with serve_pipe(server) as proxy, proxy.scale(factor=1.0) as s:
        s.exchange(AnnotatedBatch.from_pydict({"x": [1.0]}))
    (_, _, info, _) = journal.of("start")[0]
    assert impl.last_ctx is not None
    assert impl.last_ctx.stream_id == info.stream_id
    assert impl.last_ctx.request_id == info.request_id


# --------------------------------------------------------------------------- error is the original exception


class Thrower:
    """Raises exception objects the test holds, so identity can be checked."""

    def __init__(self) -> None:
        self.raised: list[BaseException] = []

    def make(self, message: str) -> ValueError:
        exc = ValueError(message)
        self.raised.append(exc)
        return exc


@dataclass
class _BadProducer(ProducerState):
    message: str

    def produce(self, out: OutputCollector, ctx: Any) -> None:
        raise _THROWER.make(self.message)


@dataclass
class _BadExchange(ExchangeState):
    message: str

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: Any) -> None:
        raise _THROWER.make(self.message)


_THROWER = Thrower()


class Raises(Protocol):
    def unary(self, message: str) -> int: ...
    def init(self, message: str) -> Stream[_BadProducer]: ...
    def produce(self, message: str) -> Stream[_BadProducer]: ...
    def process(self, message: str) -> Stream[_BadExchange]: ...


class RaisesImpl:
    def unary(self, message: str) -> int:
        raise _THROWER.make(message)

    def init(self, message: str) -> Stream[_BadProducer]:
        raise _THROWER.make(message)

    def produce(self, message: str) -> Stream[_BadProducer]:
        return Stream(COUNT_SCHEMA, _BadProducer(message))

    def process(self, message: str) -> Stream[_BadExchange]:
        return Stream(Y_SCHEMA, _BadExchange(message), X_SCHEMA)


@pytest.mark.parametrize("method", ["unary", "init", "produce", "process"])
def test_end_receives_the_original_exception_object(method: str, journal: Journal) -> None:
    server = RpcServer(Raises, RaisesImpl())
    server.add_hook(Recorder("a", journal))
    server.add_hook(Recorder("b", journal))
    message = f"original {method} failure"
    with serve_pipe(server) as proxy:
        with pytest.raises(RpcError) as info:
            if method == "unary":
                proxy.unary(message=message)
            elif method == "process":
                proxy.process(message=message).exchange(AnnotatedBatch.from_pydict({"x": [1.0]}))
            else:
                list(getattr(proxy, method)(message=message))
        assert info.value.error_type == "ValueError"
    original = [e for e in _THROWER.raised if str(e) == message]
    assert len(original) == 1
    ends = journal.of("end")
    assert [e[1] for e in ends] == ["b", "a"]
    for end in ends:
        assert end[3] is original[0]  # the very object the implementation raised, not a wrapper


def test_in_process_dispatch_passes_the_original_exception(journal: Journal) -> None:
    server = RpcServer(Raises, RaisesImpl())
    server.add_hook(Recorder("a", journal))
    with pytest.raises(ValueError, match="inproc") as info:
        server.dispatch("unary", message="inproc")
    assert journal.of("end")[0][3] is info.value


class Meddler(Recorder):
    """Tries to rewrite the call's arguments and metadata from inside the hook."""

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        token = super().on_dispatch_start(info, auth, transport_metadata, kwargs)
        if kwargs is not None and "a" in kwargs:
            kwargs["a"] = 1000  # type: ignore[index]
        transport_metadata["vgi_rpc.method"] = "hijacked"  # type: ignore[index]
        return token


def test_a_hook_cannot_change_the_call_arguments_or_metadata(journal: Journal) -> None:
    server = RpcServer(Calculator, CalculatorImpl())
    server.add_hook(Meddler("m", journal))
    server.add_hook(Recorder("after", journal))
    assert server.dispatch("add", a=1, b=2) == 3
    with serve_pipe(server) as proxy:
        assert proxy.add(a=1, b=2) == 3
        assert proxy.whoami()["metadata_method"] == "whoami"
    # the hook after the meddler saw the original values too
    seen = [e[3] for e in journal.of("start") if e[1] == "after" and e[2].name == "add"]
    assert seen == [{"a": 1, "b": 2}, {"a": 1, "b": 2}]
