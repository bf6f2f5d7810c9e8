"""The demo: a JWT-protected service over HTTP, a few calls, and what Sentry received.

Run ``make demo`` (or ``python -m vgi_rpc.demo``). It

1. initialises the real ``sentry_sdk`` -- with the in-memory transport of
   :mod:`vgi_rpc.testing` (nothing leaves the process), or, when ``SENTRY_DSN``
   is set, with the SDK's own HTTP transport to that DSN *and* an in-memory copy
   so the table can still be printed;
2. serves ``DemoService`` (unary, producer, exchange and a method that fails) on
   127.0.0.1, on a free port, with ``vgi_rpc.http`` -- the same Falcon app and
   waitress server as :func:`vgi_rpc.http.serve_http`, on a background thread
   (:func:`~vgi_rpc.http.start_http_server`) so the demo can stop by itself --
   behind :func:`~vgi_rpc.http.jwt_authenticator` (HS256, a key made for this run);
3. calls it with :func:`~vgi_rpc.http.http_connect`, which speaks the same wire
   as the official vgi-rpc client, presenting a signed JWT;
4. prints the calls, each with the log records the server wrote while serving
   it, then what Sentry received, read through the testing kit's views
   (:meth:`vgi_rpc.testing.SentryCapture.from_envelopes`), so it reads the same
   on sentry-sdk 2.x (``transaction`` items) and 3.x (span streaming: ``span``
   items, each request's segment span read as its transaction): one row per
   transaction -- one per HTTP request, named ``rpc <method>`` -- with its
   request, status, tags, user, ``rpc.*`` span data and child spans; one per
   error event with its tags, ``contexts.rpc`` and user; one per ``sessions``
   item. Then one line each on what surprises a first reader (span streaming,
   why one stream call is several transactions, what the ``sessions`` item
   is, why a failed call says HTTP 200 and ``internal_error``/``error``);
   exits 0.

``--json PATH`` also writes the captured envelopes (plain JSON) to PATH (``-``:
stdout, and the table goes to stderr).  ``--quiet`` prints only the table.

Caveats: needs the ``http`` and ``sentry`` extras (``pip install vgi-rpc[http,sentry]``).
With a real DSN the envelopes are also *sent*; the table shows what was handed
to the transport, not what the Sentry server accepted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import pyarrow as pa

from vgi_rpc._demo_table import explain, item_counts, render_envelopes
from vgi_rpc._extras import MissingExtraError, require
from vgi_rpc.context import CallContext
from vgi_rpc.errors import RpcError
from vgi_rpc.server import RpcServer
from vgi_rpc.streams import AnnotatedBatch, ExchangeState, OutputCollector, ProducerState, Stream
from vgi_rpc.testing import SentryCapture

__all__ = ["DemoService", "DemoServiceImpl", "compact_config", "explain", "main", "render_envelopes"]

_COUNT = pa.schema([pa.field("n", pa.int64(), nullable=False)])
_VALUES = pa.schema([pa.field("x", pa.float64(), nullable=False)])


class DemoService(Protocol):
    """The demo's service: one of each kind of method."""

    def add(self, a: int, b: int) -> int:
        """Unary: a + b."""
        ...

    def greet(self, name: str, api_token: str) -> str:
        """Unary with a secret parameter (the default redactor keeps it out of Sentry)."""
        ...

    def divide(self, a: float, b: float) -> float:
        """Unary that fails with ZeroDivisionError when b == 0."""
        ...

    def countdown(self, n: int) -> Stream[ProducerState]:
        """Producer: n, n-1, ... 1 (one batch per HTTP turn)."""
        ...

    def scale(self, factor: float) -> Stream[ExchangeState]:
        """Exchange: each input batch's ``x`` column times factor."""
        ...


@dataclass
class _Countdown(ProducerState):
    n: int

    def produce(self, out: OutputCollector, ctx: CallContext) -> None:
        if self.n <= 0:
            out.finish()
            return
        out.emit_pydict({"n": [self.n]})
        self.n -= 1


@dataclass
class _Scale(ExchangeState):
    factor: float

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: CallContext) -> None:
        out.emit_pydict({"x": [x * self.factor for x in input.batch.column("x").to_pylist()]})


class DemoServiceImpl:
    """Implementation of :class:`DemoService`."""

    def add(self, a: int, b: int) -> int:
        """a + b."""
        return a + b

    def greet(self, name: str, api_token: str, ctx: CallContext) -> str:
        """Greets the caller by the JWT's principal."""
        return f"hello {name}, you are {ctx.auth.principal}"

    def divide(self, a: float, b: float) -> float:
        """a / b (raises ZeroDivisionError for b == 0)."""
        return a / b

    def countdown(self, n: int) -> Stream[ProducerState]:
        """A producer of n batches."""
        return Stream(output_schema=_COUNT, state=_Countdown(n))

    def scale(self, factor: float) -> Stream[ExchangeState]:
        """An exchange that scales its input."""
        return Stream(output_schema=_VALUES, state=_Scale(factor), input_schema=_VALUES)


# ------------------------------------------------------------------------------ Sentry setup


class _Recorder(Protocol):
    @property
    def envelopes(self) -> list[dict[str, Any]]: ...


@contextmanager
def _sentry(dsn: str | None) -> Iterator[_Recorder]:
    """The real SDK: in-memory only (no DSN), or the DSN's HTTP transport plus an in-memory copy."""
    if not dsn:
        from vgi_rpc.testing import sentry_capture

        with sentry_capture(environment="demo") as cap:
            yield cap
        return

    import sentry_sdk
    from sentry_sdk.envelope import Envelope
    from sentry_sdk.transport import HttpTransport

    from vgi_rpc.testing import InMemoryTransport

    class TeeTransport(InMemoryTransport):
        """Records every envelope in memory and sends it to the DSN too."""

        def __init__(self, options: dict[str, Any] | None = None) -> None:
            super().__init__(options)
            self.forward = HttpTransport(options or {})

        def capture_envelope(self, envelope: Envelope) -> None:
            super().capture_envelope(envelope)
            self.forward.capture_envelope(envelope)

        def flush(self, timeout: float, callback: Any | None = None) -> None:
            super().flush(timeout, callback)
            self.forward.flush(timeout, callback)

        def kill(self) -> None:
            super().kill()
            self.forward.kill()

    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0, environment="demo", transport=TeeTransport)
    client = sentry_sdk.get_client()
    transport = client.transport
    if not isinstance(transport, TeeTransport):  # pragma: no cover - SDK contract
        raise RuntimeError(f"sentry_sdk did not install the demo transport (got {transport!r})")
    try:
        yield transport
    finally:
        client.flush(timeout=5)
        client.close(timeout=5)


# ------------------------------------------------------------------------------ the calls


def _token(key: bytes) -> str:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    now = int(time.time())
    claims = {
        "sub": "user-42",
        "preferred_username": "alice",
        "email": "alice@example.com",
        "tenant": "acme",
        "iat": now,
        "exp": now + 300,
    }
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(key))


class _LogRecorder(logging.Handler):
    """Keeps the formatted log records, so each is printed under the call that produced it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class _Call:
    call: str
    outcome: str
    logs: list[str]


def _calls(proxy: Any, logs: _LogRecorder) -> list[_Call]:
    """Make the demo's calls; each with its outcome and the log lines the server wrote meanwhile.

    The server logs a failed call before it answers, so a call's records are all
    in by the time the client has the answer.
    """
    done: list[_Call] = []

    def record(call: str, run: Any) -> None:
        mark = len(logs.lines)
        outcome = run()
        done.append(_Call(call, outcome, logs.lines[mark:]))

    def countdown() -> str:
        return f"batches {[row for batch in proxy.countdown(n=3) for row in batch.to_pydict()['n']]}"

    def scale() -> str:
        with proxy.scale(factor=2.0) as session:
            outs = [
                session.exchange(AnnotatedBatch.from_pydict({"x": [float(i)]}, schema=_VALUES))
                for i in (1, 2)
            ]
        return str([o.to_pydict()["x"] for o in outs])

    def divide() -> str:
        try:
            return f"returned {proxy.divide(a=1.0, b=0.0)!r}?!"
        except RpcError as exc:
            return f"raised RpcError(error_type={exc.error_type!r})"

    record("add(a=2, b=3)", lambda: repr(proxy.add(a=2, b=3)))
    record(
        'greet(name="Ada", api_token=...)', lambda: repr(proxy.greet(name="Ada", api_token="s3cr3t-t0ken"))
    )
    record("countdown(n=3)", countdown)
    record("scale(factor=2.0), 2 exchanges", scale)
    record("divide(a=1.0, b=0.0)", divide)
    return done


def compact_config(config: Any) -> str:
    """``SentryConfig(...)`` with only the fields that differ from their defaults."""
    changed = []
    for field in dataclasses.fields(config):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:  # pragma: no cover - every SentryConfig field has a default
            default = dataclasses.MISSING
        value = getattr(config, field.name)
        plain = dict(value) if isinstance(value, Mapping) else value
        if plain != (dict(default) if isinstance(default, Mapping) else default):
            changed.append(f"{field.name}={plain!r}")
    return f"{type(config).__name__}({', '.join(changed)})"


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status (0; 2 when the ``http`` or ``sentry`` extra is missing)."""
    parser = argparse.ArgumentParser(prog="python -m vgi_rpc.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--json", metavar="PATH", help="also write the captured envelopes as JSON (- = stdout)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the Sentry table")
    args = parser.parse_args(argv)
    out: TextIO = sys.stderr if args.json == "-" else sys.stdout
    # The server logs a failed call at WARNING on "vgi_rpc" (never ERROR: Sentry's
    # logging integration would turn it into a second error event). Keep the records
    # and print each under the call that produced it.
    logs = _LogRecorder()
    logs.setLevel(logging.WARNING)
    logging.getLogger().addHandler(logs)
    dsn = os.environ.get("SENTRY_DSN") or None
    try:
        require("the demo (python -m vgi_rpc.demo)", "http", "sentry")
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    calls, envelopes = _serve_and_call(dsn, out, args.quiet, logs)
    logging.getLogger().removeHandler(logs)
    # Read after the SDK flushed and closed (sessions and batched spans are in), through
    # the kit's views: the same rows on sentry-sdk 2.x and 3.x, in-memory or with a DSN.
    capture = SentryCapture.from_envelopes(envelopes)
    _report(capture, calls, out, args.quiet)
    if args.json:
        text = json.dumps(capture.envelopes, indent=2, sort_keys=True, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
            print(f"\nenvelopes written to {args.json}", file=out)
    return 0


def _serve_and_call(
    dsn: str | None, out: TextIO, quiet: bool, logs: _LogRecorder
) -> tuple[list[Any], list[Any]]:
    """Serve the demo over HTTP with Sentry on, make the calls; returns them and the envelopes sent."""
    from vgi_rpc.http import http_connect, jwt_authenticator, start_http_server
    from vgi_rpc.sentry import SentryConfig

    key = secrets.token_bytes(32)
    config = SentryConfig(record_params=True, enable_performance=True, claim_tags={"tenant": "auth.tenant"})
    with _sentry(dsn) as recorder:
        server = RpcServer(DemoService, DemoServiceImpl())  # Sentry is on: the default hook auto-attaches
        with start_http_server(
            server,
            host="127.0.0.1",
            port=0,
            prefix="/vgi",
            authenticate=jwt_authenticator(key=key),
            token_key=secrets.token_bytes(32),
            sentry_config=config,  # replaces the auto-attached hook
        ) as handle:
            if not quiet:
                print(f"serving {server.protocol_name} at {handle.url} (JWT required)", file=out)
                print(
                    f"Sentry: {'DSN ' + dsn if dsn else 'in-memory transport (set SENTRY_DSN to send)'}",
                    file=out,
                )
                print(f"config: {compact_config(config)} (the rest: defaults)\n", file=out)
            with http_connect(
                DemoService,
                handle.base_url,
                prefix="/vgi",
                headers={"Authorization": f"Bearer {_token(key)}"},
            ) as proxy:
                calls = _calls(proxy, logs)
    return calls, recorder.envelopes


def _report(capture: SentryCapture, calls: list[_Call], out: TextIO, quiet: bool) -> None:
    """Print the calls and their logs, the table, and the notes on reading it (only the table if *quiet*)."""
    if not quiet:
        print("calls (client side), each with the server's log records:", file=out)
        for done in calls:
            print(f"  {done.call:<34} -> {done.outcome}", file=out)
            for line in done.logs:
                print(f"      [log] {line}", file=out)
        print(f"\nwhat Sentry received ({item_counts(capture)}):", file=out)
    print(render_envelopes(capture), file=out)
    notes = [] if quiet else explain(capture)
    if notes:
        print("\nreading the table:", file=out)
        for note in notes:
            print(f"  * {note}", file=out)


if __name__ == "__main__":
    sys.exit(main())
