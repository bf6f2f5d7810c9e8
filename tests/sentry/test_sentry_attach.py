"""Attaching the Sentry hook: auto-attach, explicit replace, coexistence with other hooks.

Claims S1-S5, S7 and S30 (the OTel engineer pins S29/S30 from the OTel side).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.shop import Shop, ShopImpl

from vgi_rpc import AuthContext, DispatchInfo, RpcError, RpcServer, serve_pipe
from vgi_rpc.otel import OtelConfig, instrument_server
from vgi_rpc.sentry import SentryConfig, _auto_attach, _SentryDispatchHook, instrument_server_sentry
from vgi_rpc.testing import RecordingHook, SentryCapture, sentry_capture

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sentry_hooks(server: RpcServer) -> list[_SentryDispatchHook]:
    return [h for h in server.hooks if isinstance(h, _SentryDispatchHook)]


def fail_once(server: RpcServer) -> None:
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.fail(message="boom")


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- auto-attach ---------------------------------------------------------------------------------


def test_auto_attach_when_sdk_initialised(sentry_capture: SentryCapture) -> None:
    """S2: RpcServer(...) after sentry_sdk.init() gets a default-config hook; its failure reaches Sentry."""
    server = RpcServer(Shop, ShopImpl())
    (hook,) = sentry_hooks(server)
    assert hook._config == SentryConfig()
    fail_once(server)
    event = sentry_capture.event()
    assert event["tags"]["rpc.method"] == "fail"
    assert event["contexts"]["rpc"]["server_id"] == server.server_id


def test_auto_attach_is_a_logged_noop_when_sdk_not_initialised(caplog: pytest.LogCaptureFixture) -> None:
    """S4: sentry_sdk imported but not initialised: nothing attached, one DEBUG record on vgi_rpc.sentry."""
    assert not sentry_sdk.is_initialized()
    with caplog.at_level(logging.DEBUG, logger="vgi_rpc.sentry"):
        server = RpcServer(Shop, ShopImpl())
    assert server.hooks == ()
    records = [r for r in caplog.records if r.name == "vgi_rpc.sentry"]
    assert len(records) == 1
    (record,) = records
    assert record.levelno == logging.DEBUG
    assert "not initialised" in record.getMessage()
    assert server.server_id in record.getMessage()

    # "Order matters": initialising the SDK afterwards does not instrument this server...
    with sentry_capture() as cap:
        fail_once(server)
        assert cap.events == []
        # ...until it is attached explicitly.
        instrument_server_sentry(server)
        fail_once(server)
        assert len(cap.events) == 1


def test_never_imported_sdk_stays_unimported() -> None:
    """S3: a process that never imported sentry_sdk does not import it by building and serving a server."""
    result = run_python(
        """
        import sys
        from typing import Protocol
        from vgi_rpc import RpcServer, serve_pipe

        class Adder(Protocol):
            def add(self, a: int, b: int) -> int: ...

        class AdderImpl:
            def add(self, a: int, b: int) -> int:
                return a + b

        server = RpcServer(Adder, AdderImpl())
        with serve_pipe(server) as proxy:
            assert proxy.add(a=1, b=2) == 3
        assert server.hooks == ()
        print("sentry_sdk" in sys.modules)
        """,
        SENTRY_DSN="https://key@127.0.0.1:9/1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_vgi_rpc_never_initialises_the_sdk_or_reads_the_dsn() -> None:
    """S1: with SENTRY_DSN set and the hook attached explicitly, vgi_rpc leaves the SDK uninitialised."""
    result = run_python(
        """
        import sentry_sdk
        from support.shop import Shop, ShopImpl, make_server
        from vgi_rpc import serve_pipe, RpcError
        from vgi_rpc.sentry import SentryConfig
        server = make_server(SentryConfig(enable_performance=True))
        with serve_pipe(server) as proxy:
            proxy.add(a=1, b=2)
            try:
                proxy.fail(message="x")
            except RpcError:
                pass
        print(sentry_sdk.is_initialized(), sentry_sdk.get_client().dsn)
        """,
        PYTHONPATH=os.path.join(REPO, "tests"),
        SENTRY_DSN="https://key@127.0.0.1:9/1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False None"


def test_auto_attach_leaves_an_explicit_hook_alone(sentry_capture: SentryCapture) -> None:
    """S5: explicit config wins even if auto-attach runs after it."""
    server = instrument_server_sentry(
        RpcServer(Shop, ShopImpl()), SentryConfig(custom_tags={"env": "explicit"})
    )
    _auto_attach(server)
    assert len(sentry_hooks(server)) == 1
    fail_once(server)
    assert sentry_capture.event()["tags"]["env"] == "explicit"


# -- replace semantics -------------------------------------------------------------------------


def test_explicit_call_replaces_the_auto_attached_hook(sentry_capture: SentryCapture) -> None:
    """S5: instrument_server_sentry after auto-attach leaves exactly one hook, the explicit one, and returns the server."""
    server = RpcServer(Shop, ShopImpl())
    assert len(sentry_hooks(server)) == 1  # auto-attached
    assert instrument_server_sentry(server, SentryConfig(custom_tags={"env": "first"})) is server
    assert instrument_server_sentry(server, SentryConfig(custom_tags={"env": "second"})) is server
    assert len(sentry_hooks(server)) == 1
    fail_once(server)
    event = sentry_capture.event()  # exactly one: no stale hook also captures
    assert event["tags"]["env"] == "second"


def test_instrument_with_no_config_uses_defaults(sentry_capture: SentryCapture) -> None:
    """S5: config=None means SentryConfig()."""
    server = instrument_server_sentry(RpcServer(Shop, ShopImpl()), SentryConfig(enable_error_capture=False))
    instrument_server_sentry(server)
    (hook,) = sentry_hooks(server)
    assert hook._config == SentryConfig()
    fail_once(server)
    assert len(sentry_capture.events) == 1


@pytest.mark.parametrize("otel_first", [True, False], ids=["otel-first", "sentry-first"])
def test_replace_keeps_otel_and_other_hooks_in_place(sentry_capture: SentryCapture, otel_first: bool) -> None:
    """S7 S29: replacing the Sentry hook keeps the OTel hook and any other hook, in order, all still working."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = OtelConfig(tracer_provider=provider, enable_metrics=False)
    recorder = RecordingHook()

    server = RpcServer(Shop, ShopImpl())  # Sentry auto-attached
    if otel_first:
        server.remove_hooks(object)  # every hook, the auto-attached one included
        instrument_server(server, otel)
        instrument_server_sentry(server)
    else:
        instrument_server(server, otel)
    server.add_hook(recorder)
    before = [type(h).__name__ for h in server.hooks]

    instrument_server_sentry(server, SentryConfig(custom_tags={"env": "replaced"}))
    after = [type(h).__name__ for h in server.hooks]
    # the Sentry hook goes outermost (first); every other hook keeps its relative order
    assert [n for n in after if n != "_SentryDispatchHook"] == [
        n for n in before if n != "_SentryDispatchHook"
    ]
    assert after.count("_SentryDispatchHook") == 1 and after[0] == "_SentryDispatchHook"

    fail_once(server)
    assert sentry_capture.event()["tags"]["env"] == "replaced"
    assert [s.name for s in exporter.get_finished_spans()] == ["vgi_rpc/fail"]
    (call,) = recorder.calls
    assert (call.name, call.ended, call.error is not None) == ("fail", True, True)
    provider.shutdown()


# -- hook failure isolation ----------------------------------------------------------------------


class RaisingHook:
    def __init__(self, where: str) -> None:
        self.where = where

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        if self.where == "start":
            raise RuntimeError("hook start exploded")
        return None

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        if self.where == "end":
            raise RuntimeError("hook end exploded")


@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("position", ["before", "after"])
def test_a_raising_hook_does_not_stop_sentry_or_change_results(
    sentry_capture: SentryCapture, where: str, position: str
) -> None:
    """S30 B1: a non-Sentry hook raising in start or end, before or after Sentry's: results unchanged, one event."""
    server = RpcServer(Shop, ShopImpl())
    server.remove_hooks(object)  # every hook, the auto-attached one included
    if position == "before":
        server.add_hook(RaisingHook(where))
        instrument_server_sentry(server, SentryConfig(enable_performance=True))
    else:
        instrument_server_sentry(server, SentryConfig(enable_performance=True))
        server.add_hook(RaisingHook(where))
    with serve_pipe(server) as proxy:
        assert proxy.add(a=2, b=2) == 4
        with pytest.raises(RpcError, match="boom"):
            proxy.fail(message="boom")
    event = sentry_capture.event()
    assert event["exception"]["values"][0]["type"] == "ValueError"
    assert {t["transaction"] for t in sentry_capture.transactions} == {"vgi_rpc/add", "vgi_rpc/fail"}
    # the WARNING the server logs about the broken hook is a breadcrumb, not another event
    assert all("exploded" not in str(e.get("exception")) for e in sentry_capture.events)
