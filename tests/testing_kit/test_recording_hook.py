"""``vgi_rpc.testing.RecordingHook``: what each dispatch saw, paired start to end, on every transport.

In process (``RpcServer.dispatch``), over the pipe (``serve_pipe``) and over HTTP
(in-process WSGI: one record per stream turn, all sharing the stream id); the
original error of a failed call; many threads at once; ``call()``, ``clear()``;
and that the hook imports nothing optional.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from support.http import TOKEN_KEY, wsgi_client
from support.services import Calculator, CalculatorImpl, xs

from vgi_rpc import AuthContext, DispatchHook, RpcError, RpcServer, serve_pipe
from vgi_rpc.http import http_connect, make_wsgi_app
from vgi_rpc.testing import RecordedCall, RecordingHook


def test_it_is_a_dispatch_hook_with_a_public_home() -> None:
    hook = RecordingHook()
    assert isinstance(hook, DispatchHook)
    assert RecordingHook.__module__ == RecordedCall.__module__ == "vgi_rpc.testing"
    assert hook.calls == []


def test_a_call_is_recorded_with_what_start_and_end_saw() -> None:
    hook = RecordingHook()
    server = RpcServer(Calculator, CalculatorImpl(), hooks=[hook])
    assert server.dispatch("add", a=1, b=2) == 3
    call = hook.call("add")
    assert (call.name, call.info.method_type, call.info.turn, call.info.transport) == (
        "add",
        "unary",
        "call",
        "inproc",
    )
    assert call.kwargs == {"a": 1, "b": 2}
    assert call.auth == AuthContext()
    assert call.ended and call.error is None


def test_the_original_error_is_recorded() -> None:
    hook = RecordingHook()
    with serve_pipe(RpcServer(Calculator, CalculatorImpl(), hooks=[hook])) as proxy:
        with pytest.raises(RpcError):
            proxy.fail(message="boom", error_type="KeyError")
        assert proxy.add(a=1, b=1) == 2
    failed, ok = hook.calls
    assert isinstance(failed.error, KeyError) and failed.ended
    assert ok.error is None and ok.ended
    assert failed.metadata["vgi_rpc.method"] == "fail"  # the pipe's request batch metadata
    assert "fail" in repr(failed) and "KeyError" in repr(failed)


def test_a_running_call_is_recorded_as_not_ended() -> None:
    hook = RecordingHook()
    with serve_pipe(RpcServer(Calculator, CalculatorImpl(), hooks=[hook])) as proxy:
        stream = iter(proxy.countdown(n=3))
        next(stream)
        (running,) = hook.calls
        assert not running.ended and "running" in repr(running)
        assert len(list(stream)) == 2
    assert hook.call("countdown").ended  # one start/end pair for a whole stream on the pipe


def test_http_records_one_pair_per_stream_turn() -> None:
    hook = RecordingHook()
    app = make_wsgi_app(RpcServer(Calculator, CalculatorImpl(), hooks=[hook]), token_key=TOKEN_KEY)
    with wsgi_client(app) as client, http_connect(Calculator, "http://testserver", client=client) as proxy:
        with proxy.scale(factor=2.0) as session:
            session.exchange(xs(1.0))
            session.exchange(xs(2.0))
        assert proxy.add(a=2, b=3) == 5
    turns = [c for c in hook.calls if c.name == "scale"]
    assert [c.info.turn for c in turns] == ["init", "exchange", "exchange"]
    assert len({c.info.stream_id for c in turns}) == 1
    assert turns[0].kwargs is not None and turns[0].kwargs["factor"] == 2.0
    assert [c.kwargs for c in turns[1:]] == [None, None]  # only init carries kwargs
    assert all(c.ended and c.error is None for c in hook.calls)
    assert hook.call("add").info.transport == "http"


def test_concurrent_dispatches_pair_start_with_end() -> None:
    hook = RecordingHook()
    server = RpcServer(Calculator, CalculatorImpl(), hooks=[hook])
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for j in range(50):
            if j % 5 == 0:
                with pytest.raises(ValueError):
                    server.dispatch("fail", message=f"{i}-{j}")
            else:
                assert server.dispatch("add", a=i, b=j) == i + j

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = hook.calls
    assert len(calls) == 8 * 50
    assert len({c.info.request_id for c in calls}) == len(calls)
    for c in calls:
        assert c.ended
        if c.name == "fail":
            assert isinstance(c.error, ValueError) and str(c.error) == c.kwargs["message"]  # type: ignore[index]
        else:
            assert c.error is None


def test_call_names_what_it_found_and_clear_forgets() -> None:
    hook = RecordingHook()
    server = RpcServer(Calculator, CalculatorImpl(), hooks=[hook])
    with pytest.raises(AssertionError, match="exactly one dispatch, recorded 0"):
        hook.call()
    server.dispatch("add", a=1, b=2)
    server.dispatch("add", a=1, b=2)
    with pytest.raises(AssertionError, match="exactly one dispatch of 'add', recorded 2") as failure:
        hook.call("add")
    assert "RecordedCall add" in str(failure.value)
    hook.clear()
    assert hook.calls == []
    server.dispatch("noop")
    assert hook.call().name == "noop"


def test_end_refuses_a_token_it_did_not_hand_out() -> None:
    """A server never does this (it hands each hook its own token); a wrong chain would."""
    hook = RecordingHook()
    with pytest.raises(TypeError, match="did not hand out"):
        hook.on_dispatch_end(object(), None, None)  # type: ignore[arg-type]


def test_importing_it_needs_no_optional_package() -> None:
    """pytest, syrupy and sentry_sdk stay unimported (and need not be installed)."""
    code = (
        "import sys\n"
        "for name in ('pytest', 'syrupy', 'sentry_sdk', 'opentelemetry'):\n"
        "    sys.modules[name] = None\n"
        "from vgi_rpc.testing import RecordingHook\n"
        "from vgi_rpc import RpcServer\n"
        "print(type(RecordingHook()).__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "RecordingHook"
