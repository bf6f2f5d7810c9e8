"""The ready-made pair: your server with and without an instrumentation hook, serving one call."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vgi_rpc.server import RpcServer
from vgi_rpc.testing.bench._sampler import one_cpu

ServerSource = RpcServer | Callable[[], RpcServer]  # a factory, or a server to rebuild from its parts
Instrument = Literal["sentry", "otel"] | Callable[[RpcServer], RpcServer]  # or instrument(server) -> server


@dataclass
class OverheadPair:
    """Proxies without/with the hook; ``between()`` clears the ``capture`` (``None`` for your own instrument)."""

    baseline: Any
    subject: Any
    between: Callable[[], object]
    baseline_label: str
    subject_label: str
    capture: Any = None


def _build(source: ServerSource, strip: type | None = None) -> RpcServer:
    server = source() if not isinstance(source, RpcServer) else None
    if isinstance(source, RpcServer):
        server = RpcServer(
            source.protocol, source.implementation, include_tracebacks=source.include_tracebacks
        )
    if not isinstance(server, RpcServer):
        raise TypeError(f"the server factory must return an RpcServer, got {type(server).__name__}")
    if strip is not None:
        server.remove_hooks(strip)  # the baseline: an auto-attached hook is stripped too
    return server


@contextlib.contextmanager
def _serve(server: RpcServer, transport: str, http_options: Mapping[str, Any]) -> Iterator[Any]:
    if transport not in ("pipe", "http"):
        raise ValueError(f"transport must be 'pipe' or 'http', not {transport!r}")
    if transport == "pipe":
        from vgi_rpc.pipe import serve_pipe

        with serve_pipe(server) as proxy:
            yield proxy
        return
    from vgi_rpc.http import http_connect, start_http_server

    options = {"threads": 1, **http_options}
    serving, prefix = start_http_server(server, **options), options.get("prefix", "")
    with serving as handle, http_connect(server.protocol, handle.base_url, prefix=prefix) as proxy:
        yield proxy


def _config(config: Any, expected: type, instrument: str) -> Any:
    if config is not None and not isinstance(config, expected):
        raise TypeError(f"instrument={instrument!r} takes a {expected.__name__}, got {type(config).__name__}")
    return config


@contextlib.contextmanager
def _instrumented(
    source: ServerSource, instrument: Instrument, config: Any, sentry_options: Mapping[str, Any]
) -> Iterator[tuple[RpcServer, RpcServer, Callable[[], object], str, Any]]:
    """(baseline server, subject server, between, label, capture), the instrumentation's SDK active."""
    if instrument == "sentry":
        from vgi_rpc.sentry import SentryConfig, _SentryDispatchHook, instrument_server_sentry
        from vgi_rpc.testing import sentry_capture

        config = _config(config, SentryConfig, instrument)
        with sentry_capture(**sentry_options) as cap:
            subject = instrument_server_sentry(_build(source), config)
            yield _build(source, _SentryDispatchHook), subject, cap.transport.clear, "Sentry hook", cap
    elif instrument == "otel":
        from vgi_rpc.otel import OtelConfig, _OtelDispatchHook, instrument_server
        from vgi_rpc.testing.otel import otel_capture

        base = _config(config, OtelConfig, instrument) or OtelConfig()
        with otel_capture() as cap:
            providers = {"tracer_provider": base.tracer_provider or cap.tracer_provider}
            providers["meter_provider"] = base.meter_provider or cap.meter_provider
            subject = instrument_server(_build(source), dataclasses.replace(base, **providers))
            yield _build(source, _OtelDispatchHook), subject, cap.clear, "OTel hook", cap
    elif callable(instrument):
        if config is not None:
            raise TypeError("config= goes with instrument='sentry' or 'otel', not your own instrument")
        subject = instrument(_build(source))
        if not isinstance(subject, RpcServer):
            raise TypeError(f"instrument(server) must return the RpcServer, got {type(subject).__name__}")
        yield _build(source), subject, lambda: None, "your hook", None
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
    """Serve your service without and with the instrumentation hook (other hooks stay on both); yield the pair.

    ``"sentry"``: ``instrument_server_sentry(server, config)``, both servers under one in-memory
    capture, ``sentry_capture(**sentry_options)``; ``"otel"``: ``instrument_server`` routed to an
    ``otel_capture()``.  ``transport="http"``: a real waitress server on 127.0.0.1 (*http_options*).
    """
    pin = one_cpu() if pin_cpu else contextlib.nullcontext()
    with pin, _instrumented(server, instrument, config, sentry_options or {}) as parts:
        baseline, subject, between, what, cap = parts
        if len(subject.hooks) <= len(baseline.hooks):
            raise ValueError(f"the subject server has no more hooks than the baseline: {what} not attached")
        opts = http_options or {}
        with _serve(baseline, transport, opts) as plain, _serve(subject, transport, opts) as hooked:
            yield OverheadPair(plain, hooked, between, f"without {what}", f"with {what}", cap)
