"""Our clients carry the caller's trace context (issue 20, item 1), asserted on what the server receives.

A recording :class:`~vgi_rpc.hooks.DispatchHook` on the server keeps the
``transport_metadata`` of every dispatch: on the pipe the request batch's custom
metadata, over HTTP the request headers (a real waitress server on 127.0.0.1).
The callers' contexts come from the real SDKs: Sentry through the kit's
``sentry_capture`` (in-memory transport), OpenTelemetry through ``otel_capture``'s
real ``TracerProvider``. Neither SDK is patched. The one injected failure is a
real OTel propagator installed through OTel's public ``set_global_textmap``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.propagators.textmap import TextMapPropagator
from support.http import http_proxy
from support.jwt import bearer
from support.sentry import user_root
from support.services import Calculator, CalculatorImpl, xs

from vgi_rpc import RpcServer, serve_pipe
from vgi_rpc._propagation import outgoing_trace_headers
from vgi_rpc.testing import SentryCapture
from vgi_rpc.testing.otel import OtelCapture

TRACE_KEYS = ("sentry-trace", "baggage", "traceparent", "tracestate")
SENTRY_TRACE = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}(-[01])?")
TRANSPORTS = ("pipe", "http")
NO_HTTPX = pytest.mark.sentry_options(auto_enabling_integrations=False)  # Sentry's httpx integration off


class Recorder:
    """A dispatch hook that keeps (method, turn, transport_metadata) of every dispatch."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()

    def on_dispatch_start(
        self, info: Any, auth: Any, transport_metadata: Mapping[str, str], kwargs: Any
    ) -> None:
        with self._lock:
            self.seen.append((info.name, info.turn, dict(transport_metadata)))

    def on_dispatch_end(self, token: object, info: Any, error: BaseException | None) -> None:
        return None

    def only(self, method: str) -> dict[str, str]:
        """The metadata of the one dispatch of *method*."""
        (md,) = [md for name, _, md in self.seen if name == method]
        return md

    def of(self, method: str) -> list[tuple[str, dict[str, str]]]:
        """(turn, metadata) of every dispatch of *method*, in order."""
        return [(turn, md) for name, turn, md in self.seen if name == method]


@contextmanager
def connected(transport: str, **client_options: Any) -> Iterator[tuple[Any, Recorder]]:
    """A Calculator proxy over *transport* and the recorder on its server."""
    recorder = Recorder()
    server = RpcServer(Calculator, CalculatorImpl())
    server.add_hook(recorder)
    if transport == "pipe":
        with serve_pipe(server, **client_options) as proxy:
            yield proxy, recorder
    else:
        with http_proxy(server, client_options=client_options) as proxy:
            yield proxy, recorder


@contextmanager
def otel_span(cap: OtelCapture) -> Iterator[tuple[str, str]]:
    """A current OTel span from the capture's real provider; yields its (trace id, span id) in hex."""
    with cap.tracer_provider.get_tracer("caller").start_as_current_span("caller") as span:
        ctx = span.get_span_context()
        yield f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def sampled_traceparent(md: Mapping[str, str]) -> tuple[str, str]:
    """(trace id, parent id) of a version-00 traceparent whose sampled flag is set.

    The flags byte is checked for the sampled bit only: OTel 1.4x also sets W3C's
    "random trace id" bit (``03``).
    """
    version, trace_id, span_id, flags = md["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1, md["traceparent"]
    return trace_id, span_id


def trace_keys(md: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in md.items() if k in TRACE_KEYS}


def sentry_members(baggage: str) -> list[str]:
    return [m.split("=", 1)[0] for m in baggage.split(",") if m.startswith("sentry-")]


# --------------------------------------------------------------------------- Sentry


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sentry_caller_trace_arrives_once(sentry_capture: SentryCapture, transport: str) -> None:
    """Inside a Sentry span, the request carries ONE sentry-trace of the caller's trace and a baggage
    with each sentry- member once (over HTTP Sentry's httpx integration, on by default, injects)."""
    with connected(transport) as (proxy, rec), user_root("caller") as root:
        assert proxy.add(a=1, b=2) == 3
    md = rec.only("add")
    assert SENTRY_TRACE.fullmatch(md["sentry-trace"]), md["sentry-trace"]  # one value, not two joined
    assert md["sentry-trace"].startswith(root.trace_id + "-")
    members = sentry_members(md["baggage"])
    assert f"sentry-trace_id={root.trace_id}" in md["baggage"].split(",")
    assert len(members) == len(set(members)), md["baggage"]
    assert "traceparent" not in md  # no OTel span is current


@NO_HTTPX
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_our_client_injects_the_callers_own_span(sentry_capture: SentryCapture, transport: str) -> None:
    """With Sentry's httpx integration off, our client sends the caller's span itself: its span id, sampled."""
    assert sentry_capture.client is not None and sentry_capture.client.get_integration("httpx") is None
    with connected(transport) as (proxy, rec), user_root("caller") as root:
        proxy.add(a=1, b=2)
    md = rec.only("add")
    assert md["sentry-trace"] == f"{root.trace_id}-{root.span_id}-1"
    assert f"sentry-trace_id={root.trace_id}" in md["baggage"].split(",")
    assert len(sentry_members(md["baggage"])) == len(set(sentry_members(md["baggage"])))


@NO_HTTPX
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sentry_outside_a_span_sends_the_propagation_context(
    sentry_capture: SentryCapture, transport: str
) -> None:
    """An active Sentry client with no span sends the scope's trace (as Sentry's integrations do), no sampled flag."""
    with connected(transport) as (proxy, rec):
        proxy.add(a=1, b=2)
    md = rec.only("add")
    assert re.fullmatch(r"[0-9a-f]{32}-[0-9a-f]{16}", md["sentry-trace"]), md["sentry-trace"]
    trace_id = md["sentry-trace"].split("-")[0]
    assert f"sentry-trace_id={trace_id}" in md["baggage"].split(",")


# --------------------------------------------------------------------------- OpenTelemetry


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_otel_span_arrives_as_traceparent(otel_capture: OtelCapture, transport: str) -> None:
    """Inside an OTel span, traceparent carries its trace id and span id, sampled; nothing of Sentry (no client)."""
    with connected(transport) as (proxy, rec), otel_span(otel_capture) as (trace_id, span_id):
        proxy.add(a=1, b=2)
    md = rec.only("add")
    assert sampled_traceparent(md) == (trace_id, span_id)
    assert "baggage" not in md
    # No Sentry client: the client sends no sentry-trace. Over HTTP the server's app hands its hooks
    # a lone traceparent translated into one (vgi_rpc._trace_in), carrying the same ids.
    assert md.get("sentry-trace", f"{trace_id}-{span_id}").startswith(f"{trace_id}-{span_id}")


@NO_HTTPX
def test_otel_and_sentry_baggage_merge_into_one(
    sentry_capture: SentryCapture, otel_capture: OtelCapture
) -> None:
    """OTel baggage entries and Sentry's members travel in one baggage value on the pipe, each once."""
    token = otel_context.attach(otel_baggage.set_baggage("tenant", "acme"))
    try:
        with (
            connected("pipe") as (proxy, rec),
            otel_span(otel_capture) as (trace_id, _),
            user_root("c") as root,
        ):
            proxy.add(a=1, b=2)
    finally:
        otel_context.detach(token)
    md = rec.only("add")
    members = md["baggage"].split(",")
    assert "tenant=acme" in members
    assert f"sentry-trace_id={root.trace_id}" in members
    assert len(sentry_members(md["baggage"])) == len(set(sentry_members(md["baggage"])))
    assert md["traceparent"].split("-")[1] == trace_id


# --------------------------------------------------------------------------- nothing / switched off


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nothing_active_sends_nothing(transport: str) -> None:
    """No active Sentry client and no current OTel span: none of the four keys arrive."""
    import sentry_sdk

    assert not sentry_sdk.get_client().is_active()
    with connected(transport) as (proxy, rec):
        proxy.add(a=1, b=2)
    assert trace_keys(rec.only("add")) == {}


@NO_HTTPX
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_switch_off_sends_nothing(
    sentry_capture: SentryCapture, otel_capture: OtelCapture, transport: str
) -> None:
    """propagate_trace=False: nothing arrives, with both a Sentry span and an OTel span current."""
    with (
        connected(transport, propagate_trace=False) as (proxy, rec),
        otel_span(otel_capture),
        user_root("caller"),
    ):
        proxy.add(a=1, b=2)
    assert trace_keys(rec.only("add")) == {}


def test_switch_off_leaves_sentrys_own_httpx_injection(
    sentry_capture: SentryCapture, otel_capture: OtelCapture
) -> None:
    """As http_connect documents: the switch turns off OUR injection; Sentry's httpx integration still adds its own."""
    with (
        connected("http", propagate_trace=False) as (proxy, rec),
        otel_span(otel_capture),
        user_root("caller") as root,
    ):
        proxy.add(a=1, b=2)
    md = rec.only("add")
    assert "traceparent" not in md
    assert md["sentry-trace"].startswith(root.trace_id + "-")


# --------------------------------------------------------------------------- streams


@NO_HTTPX
def test_every_http_stream_turn_carries_the_context(
    sentry_capture: SentryCapture, otel_capture: OtelCapture
) -> None:
    """Producer ticks and exchange turns over HTTP: /init and every /exchange request carry both contexts."""
    with (
        connected("http") as (proxy, rec),
        otel_span(otel_capture) as (trace_id, span_id),
        user_root("c") as root,
    ):
        assert len(list(proxy.countdown(n=3))) == 3
        with proxy.scale(factor=2.0) as session:
            session.exchange(xs(1.0))
            session.exchange(xs(2.0))
    for method, turns in (("countdown", 2), ("scale", 2)):
        seen = rec.of(method)
        assert seen[0][0] == "init"
        assert len([t for t, _ in seen if t == "exchange"]) >= turns, seen
        for turn, md in seen:
            assert sampled_traceparent(md) == (trace_id, span_id), (method, turn)
            assert md["sentry-trace"] == f"{root.trace_id}-{root.span_id}-1", (method, turn)


def test_http_stream_turns_with_sentrys_httpx_integration(sentry_capture: SentryCapture) -> None:
    """With Sentry's httpx integration on, every turn still has exactly one sentry-trace of the caller's trace."""
    with connected("http") as (proxy, rec), user_root("c") as root:
        list(proxy.countdown(n=2))
    seen = rec.of("countdown")
    assert len(seen) >= 3  # init and at least two ticks
    for turn, md in seen:
        assert SENTRY_TRACE.fullmatch(md["sentry-trace"]), (turn, md["sentry-trace"])
        assert md["sentry-trace"].startswith(root.trace_id + "-"), turn
        assert len(sentry_members(md["baggage"])) == len(set(sentry_members(md["baggage"]))), turn


def test_pipe_stream_carries_the_context_in_its_opening_request(otel_capture: OtelCapture) -> None:
    """A pipe stream is one dispatch: its request carries the caller's traceparent."""
    with connected("pipe") as (proxy, rec), otel_span(otel_capture) as (trace_id, span_id):
        assert len(list(proxy.countdown(n=3))) == 3
        with proxy.scale(factor=2.0) as session:
            session.exchange(xs(1.0))
    for method in ("countdown", "scale"):
        ((turn, md),) = rec.of(method)
        assert turn == "stream"
        assert sampled_traceparent(md) == (trace_id, span_id)


# --------------------------------------------------------------------------- failures and cost


class _BrokenPropagator(TextMapPropagator):
    """A real OTel propagator whose inject raises: an SDK failing inside our call."""

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        return context

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        raise RuntimeError("propagator broke")

    @property
    def fields(self) -> set[str]:
        return {"traceparent"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_failing_sdk_never_fails_the_call(
    otel_capture: OtelCapture, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A propagator that raises: the call answers, nothing of OTel is sent, the failure is logged at DEBUG."""
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(_BrokenPropagator())
    try:
        with (
            caplog.at_level(logging.DEBUG, logger="vgi_rpc"),
            connected(transport) as (proxy, rec),
            otel_span(otel_capture),
        ):
            assert proxy.add(a=1, b=2) == 3
    finally:
        propagate.set_global_textmap(previous)
    assert trace_keys(rec.only("add")) == {}
    failures = [r for r in caplog.records if "OpenTelemetry trace propagation failed" in r.getMessage()]
    assert failures and all(r.levelno == logging.DEBUG for r in failures)


def test_a_process_without_the_sdks_imports_neither() -> None:
    """With neither SDK imported, the answer is an empty dict and neither SDK gets imported."""
    code = (
        "import sys\n"
        "from vgi_rpc._propagation import outgoing_trace_headers as f\n"
        "assert f('pipe') == {} and f('http') == {}\n"
        "loaded = [m for m in sys.modules if m.startswith(('sentry_sdk', 'opentelemetry'))]\n"
        "assert loaded == [], loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_over_http_sentry_is_left_to_its_httpx_integration(sentry_capture: SentryCapture) -> None:
    """Sentry's httpx integration enabled (the default): our HTTP headers carry nothing of Sentry's, the pipe's do."""
    assert sentry_capture.client is not None and sentry_capture.client.get_integration("httpx") is not None
    with user_root("caller") as root:
        pipe, http = outgoing_trace_headers("pipe"), outgoing_trace_headers("http")
    assert pipe["sentry-trace"] == f"{root.trace_id}-{root.span_id}-1"
    assert "sentry-trace" not in http and "baggage" not in http


@NO_HTTPX
def test_over_http_without_the_integration_our_client_sends_sentry(sentry_capture: SentryCapture) -> None:
    """Sentry's httpx integration off: the HTTP headers carry sentry-trace and baggage, as the pipe's do."""
    with user_root("caller") as root:
        http = outgoing_trace_headers("http")
    assert http["sentry-trace"] == f"{root.trace_id}-{root.span_id}-1"
    assert f"sentry-trace_id={root.trace_id}" in http["baggage"].split(",")


@pytest.mark.parametrize(
    "sampled",
    [True, pytest.param(False, marks=pytest.mark.sentry_options(traces_sample_rate=0.0))],
)
def test_sentry_values_are_the_sdks_own(sentry_capture: SentryCapture, sampled: bool) -> None:
    """sentry-trace and baggage are exactly what the SDK gives at that moment: outside a span, in one
    root span, then in another, sampled or not (the last baggage is reused only within one trace)."""
    import sentry_sdk

    flag = "-1" if sampled else "-0"

    def check() -> None:
        headers = outgoing_trace_headers("pipe")
        assert headers["sentry-trace"] == sentry_sdk.get_traceparent()
        assert headers["baggage"] == str(sentry_sdk.get_baggage())

    check()
    with user_root("first"):
        check()
        assert outgoing_trace_headers("pipe")["sentry-trace"].endswith(flag)
    check()
    with user_root("second"):
        check()
        check()


# --------------------------------------------------------------------------- which Sentry integration sees it


def client_spans(cap: SentryCapture, trace_id: str) -> list[str]:
    """The origin of every ``http.client`` span of the caller's trace (the server's spans are ``rpc.*``)."""
    cap.flush()
    out = []
    for span in cap.spans:
        if span.get("op") == "http.client" and span.get("trace_id") == trace_id:
            out.append(str(span.get("origin") or (span.get("data") or {}).get("sentry.origin")))
    return out


@pytest.mark.parametrize("httpx_on", [True, False], ids=["httpx-integration", "no-httpx-integration"])
def test_the_default_http_transport_is_seen_by_sentrys_httpx_integration_only(
    request: pytest.FixtureRequest, httpx_on: bool
) -> None:
    """http_connect's own client writes requests without ``http.client.HTTPConnection``.

    Sentry's stdlib integration (a default one, enabled here) therefore neither adds a
    second ``sentry-trace`` nor a span: each call has one ``http.client`` span from the
    httpx integration when it is on, none when it is off, and one ``sentry-trace`` and
    unique ``sentry-`` baggage members either way.
    """
    if not httpx_on:
        request.applymarker(NO_HTTPX)
    cap: SentryCapture = request.getfixturevalue("sentry_capture")
    assert cap.client is not None and cap.client.get_integration("stdlib") is not None
    assert (cap.client.get_integration("httpx") is not None) is httpx_on
    with connected("http") as (proxy, rec), user_root("caller") as root:
        assert proxy.add(a=1, b=2) == 3
        assert proxy.add(a=2, b=3) == 5
    for _, md in rec.of("add"):
        assert SENTRY_TRACE.fullmatch(md["sentry-trace"]), md["sentry-trace"]
        assert md["sentry-trace"].startswith(root.trace_id + "-")
        members = sentry_members(md["baggage"])
        assert len(members) == len(set(members)), md["baggage"]
    origins = client_spans(cap, root.trace_id)
    # three requests: the /health probe (compression is on by default) and the two calls
    assert origins == (["auto.http.httpx"] * 3 if httpx_on else []), origins


@NO_HTTPX
@pytest.mark.sentry_options(trace_propagation_targets=["^https://api\\.example\\.com"])
def test_over_http_our_client_honours_trace_propagation_targets(sentry_capture: SentryCapture) -> None:
    """Our HTTP client, sending Sentry's headers itself, sends them only where Sentry's httpx integration would."""
    assert outgoing_trace_headers("http", "https://api.example.com/vgi/Calculator/add")["sentry-trace"]
    assert "sentry-trace" not in outgoing_trace_headers("http", "http://127.0.0.1:8000/Calculator/add")
    with connected("http") as (proxy, rec), user_root("caller"):
        assert proxy.add(a=1, b=2) == 3
    assert "sentry-trace" not in rec.only("add")


@NO_HTTPX
def test_a_trace_header_the_caller_passes_wins(sentry_capture: SentryCapture) -> None:
    """``http_connect(headers={"sentry-trace": ...})``: the caller's value is sent, not ours."""
    mine = "0123456789abcdef0123456789abcdef-0123456789abcdef-1"
    server = RpcServer(Calculator, CalculatorImpl())
    rec = Recorder()
    server.add_hook(rec)
    with http_proxy(server, headers={**bearer("anon"), "sentry-trace": mine}) as proxy, user_root("caller"):
        assert proxy.add(a=1, b=2) == 3
    assert rec.only("add")["sentry-trace"] == mine
