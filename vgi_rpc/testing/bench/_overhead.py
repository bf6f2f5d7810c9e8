"""The ready-made pair: your server with and without an instrumentation hook, serving one call.

:func:`overhead_pair` builds both servers from yours, serves them side by side
and yields two proxies plus what to clear between rounds;
:meth:`RatioBenchmark.overhead <vgi_rpc.testing.bench.RatioBenchmark.overhead>`
times them interleaved.  The instrumentation is real: for ``"sentry"`` the real
SDK with the in-memory transport (:func:`~vgi_rpc.testing.sentry_capture`),
for ``"otel"`` real SDK providers with in-memory exporters
(:func:`~vgi_rpc.testing.otel.otel_capture`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vgi_rpc.server import RpcServer
from vgi_rpc.testing.bench._sampler import one_cpu

__all__ = ["Instrument", "OverheadPair", "ServerSource", "overhead_pair"]

ServerSource = RpcServer | Callable[[], RpcServer]
"""Your server: a zero-argument factory (preferred), or a server to rebuild from its
``protocol`` and ``implementation`` (hooks of that instance are not copied)."""

Instrument = Literal["sentry", "otel"] | Callable[[RpcServer], RpcServer]
"""What is measured: ``"sentry"``, ``"otel"``, or your own ``instrument(server) -> server``."""


@dataclass
class OverheadPair:
    """Two proxies to the same service: :attr:`baseline` without the hook, :attr:`subject` with it.

    Attributes:
        baseline: Proxy to the server without the instrumentation hook.
        subject: Proxy to the instrumented server.
        between: Clears what the instrumentation captured (call it between rounds).
        baseline_label: How tables name the baseline.
        subject_label: How tables name the subject.
        capture: The ``SentryCapture`` / ``OtelCapture`` in use (``None`` for a custom instrument).
    """

    baseline: Any
    subject: Any
    between: Callable[[], object]
    baseline_label: str
    subject_label: str
    capture: Any = None


def _build(source: ServerSource) -> RpcServer:
    if isinstance(source, RpcServer):
        return RpcServer(source.protocol, source.implementation, include_tracebacks=source.include_tracebacks)
    server = source()
    if not isinstance(server, RpcServer):
        raise TypeError(f"the server factory must return an RpcServer, got {type(server).__name__}")
    return server


def _without(server: RpcServer, kind: type) -> RpcServer:
    server.remove_hooks(kind)
    return server


@contextlib.contextmanager
def _serve(server: RpcServer, transport: str, http_options: Mapping[str, Any]) -> Iterator[Any]:
    if transport == "pipe":
        from vgi_rpc.pipe import serve_pipe

        with serve_pipe(server) as proxy:
            yield proxy
    elif transport == "http":
        from vgi_rpc.http import http_connect, start_http_server

        options = {"threads": 1, **http_options}
        with (
            start_http_server(server, **options) as handle,
            http_connect(server.protocol, handle.base_url, prefix=options.get("prefix", "")) as proxy,
        ):
            yield proxy
    else:
        raise ValueError(f"transport must be 'pipe' or 'http', not {transport!r}")


@contextlib.contextmanager
def _instrumented(
    source: ServerSource, instrument: Instrument, config: Any, sentry_options: Mapping[str, Any]
) -> Iterator[tuple[RpcServer, RpcServer, Callable[[], object], str, Any]]:
    """(baseline server, subject server, between, label, capture) with the instrumentation's SDK active."""
    if instrument == "sentry":
        from vgi_rpc.sentry import SentryConfig, _SentryDispatchHook, instrument_server_sentry
        from vgi_rpc.testing import sentry_capture

        if config is not None and not isinstance(config, SentryConfig):
            raise TypeError(f"instrument='sentry' takes a SentryConfig, got {type(config).__name__}")
        with sentry_capture(**sentry_options) as cap:
            baseline = _without(_build(source), _SentryDispatchHook)  # auto-attach is stripped too
            subject = instrument_server_sentry(_build(source), config)
            yield baseline, subject, cap.transport.clear, "Sentry hook", cap
    elif instrument == "otel":
        from vgi_rpc.otel import OtelConfig, _OtelDispatchHook, instrument_server
        from vgi_rpc.testing.otel import otel_capture

        if config is not None and not isinstance(config, OtelConfig):
            raise TypeError(f"instrument='otel' takes an OtelConfig, got {type(config).__name__}")
        with otel_capture() as ocap:
            base = config or OtelConfig()
            routed = dataclasses.replace(
                base,
                tracer_provider=base.tracer_provider or ocap.tracer_provider,
                meter_provider=base.meter_provider or ocap.meter_provider,
            )
            baseline = _without(_build(source), _OtelDispatchHook)
            subject = instrument_server(_build(source), routed)
            yield baseline, subject, ocap.clear, "OTel hook", ocap
    elif callable(instrument):
        if config is not None:
            raise TypeError(
                "config= goes with instrument='sentry' or 'otel'; configure your own instrument yourself"
            )
        baseline = _build(source)
        subject = instrument(_build(source))
        if not isinstance(subject, RpcServer):
            raise TypeError(f"instrument(server) must return the RpcServer, got {type(subject).__name__}")
        yield baseline, subject, lambda: None, "your hook", None
    else:
        raise ValueError(f"instrument must be 'sentry', 'otel' or a callable, not {instrument!r}")


@contextlib.contextmanager
def overhead_pair(
    server: ServerSource,
    *,
    instrument: Instrument = "sentry",
    config: Any = None,
    transport: Literal["pipe", "http"] = "pipe",
    sentry_options: Mapping[str, Any] | None = None,
    http_options: Mapping[str, Any] | None = None,
    pin_cpu: bool = True,
) -> Iterator[OverheadPair]:
    """Serve your service twice -- without and with the instrumentation hook -- and yield an :class:`OverheadPair`.

    Args:
        server: A factory returning your ``RpcServer`` (called twice), or a
            server to rebuild from its protocol and implementation.
        instrument: ``"sentry"`` (``instrument_server_sentry`` with *config*, a
            ``SentryConfig``), ``"otel"`` (``instrument_server`` with *config*,
            an ``OtelConfig`` whose missing providers are the capture's), or a
            callable instrumenting a server itself.
        config: The instrumentation's configuration (``None``: its defaults).
        transport: ``"pipe"`` (``serve_pipe``) or ``"http"`` (a real waitress
            server on 127.0.0.1 with one worker thread, ``http_connect``; needs
            the ``http`` extra).
        sentry_options: ``sentry_sdk.init`` options for the capture (``"sentry"`` only).
        http_options: More ``start_http_server`` options (auth, ``token_key``...).
        pin_cpu: Run both servers and the calling thread on one CPU
            (:func:`~vgi_rpc.testing.bench.one_cpu`): steadier ratios.

    Caveats: the baseline is the same server with the instrumentation's hook
    removed (an auto-attached Sentry hook included); other hooks stay on both.
    With ``"sentry"`` both servers run under the same initialised SDK, so what
    is measured is the hook, not the SDK's integrations.  Calls whose cost
    depends on state they change (a growing table...) skew the ratio.
    """
    pin = one_cpu() if pin_cpu else contextlib.nullcontext()
    with (
        pin,
        _instrumented(server, instrument, config, sentry_options or {}) as (
            baseline,
            subject,
            between,
            what,
            cap,
        ),
    ):
        if len(subject.hooks) <= len(baseline.hooks):
            raise ValueError(
                f"the subject server has no more hooks than the baseline: {what} was not attached"
            )
        with (
            _serve(baseline, transport, http_options or {}) as plain,
            _serve(subject, transport, http_options or {}) as instrumented,
        ):
            yield OverheadPair(plain, instrumented, between, f"without {what}", f"with {what}", cap)
