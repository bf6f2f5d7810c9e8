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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

import pyarrow as pa

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


# ------------------------------------------------------------------------------ the table
#
# Everything below reads what Sentry received through the testing kit's views
# (SentryCapture.transactions / .events / .payloads("sessions")), which give the
# same shapes on sentry-sdk 2.x (transaction items) and 3.x (span streaming).

_USER_FIELDS = ("id", "username", "email", "name")
_SESSION_COUNTS = ("exited", "errored", "crashed", "abnormal")
_READ_ITEMS = frozenset({"transaction", "span", "event", "sessions"})
"""Item types the table reads through the capture's views; any other type gets a bare row."""


def _capture(envelopes: SentryCapture | Iterable[Mapping[str, Any]]) -> SentryCapture:
    return envelopes if isinstance(envelopes, SentryCapture) else SentryCapture.from_envelopes(envelopes)


def _mappings(payloads: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The payloads that are JSON objects (an item the SDK sent as bytes gets no row here)."""
    return [p for p in payloads if isinstance(p, Mapping)]


def _tags(view: Mapping[str, Any]) -> dict[str, Any]:
    tags = view.get("tags") or {}
    if isinstance(tags, list):  # the SDK may send [[k, v], ...]
        return {str(k): v for k, v in tags}
    return dict(tags)


def _kv(mapping: Mapping[str, Any] | None) -> str:
    if not mapping:
        return "-"
    return "  ".join(f"{k}={v}" for k, v in mapping.items())


def _trace(txn: Mapping[str, Any]) -> Mapping[str, Any]:
    trace: Mapping[str, Any] = (txn.get("contexts") or {}).get("trace") or {}
    return trace


def _data(txn: Mapping[str, Any]) -> Mapping[str, Any]:
    data: Mapping[str, Any] = _trace(txn).get("data") or {}
    return data


def _http_status(txn: Mapping[str, Any]) -> tuple[str, Any] | None:
    """Which field of the transaction carries the HTTP status, and its value.

    sentry-sdk 2.x sends the tag ``http.status_code`` (a string); span streaming
    (3.x) has no tags, the status is the segment's ``http.response.status_code``
    attribute. The tag first: it is what Sentry's search and tag lists show.
    """
    tags = _tags(txn)
    if "http.status_code" in tags:
        return "http.status_code", tags["http.status_code"]
    data = _data(txn)
    if "http.response.status_code" in data:
        return "http.response.status_code", data["http.response.status_code"]
    return None


def _request(txn: Mapping[str, Any]) -> str:
    """``POST /vgi/DemoService/add -> 200``, from ``request`` (2.x) or the ``http.*``/``url.*`` attributes (3.x)."""
    request = txn.get("request") or {}
    data = _data(txn)
    method = request.get("method") or data.get("http.request.method") or "?"
    path = urlsplit(str(request["url"])).path if request.get("url") else str(data.get("url.path") or "?")
    status = _http_status(txn)
    return f"{method} {path}" + (f" -> {status[1]}" if status else "")


def _span_status(span: Mapping[str, Any]) -> str:
    """A child span's status (sentry-sdk releases before 2.4x sent it as the span's ``status`` tag)."""
    return str(span.get("status") or (span.get("tags") or {}).get("status") or "-")


def _started(txn: Mapping[str, Any]) -> float:
    """When the transaction started, for the row order (span batches need not arrive in call order)."""
    started = txn.get("start_timestamp")
    if isinstance(started, int | float):  # span streaming: seconds
        return float(started)
    if isinstance(started, str):  # transaction items: ISO 8601
        return datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    return float("inf")


def _user(view: Mapping[str, Any]) -> str:
    user = view.get("user") or {}
    return _kv({k: user[k] for k in _USER_FIELDS if k in user})


def _event_status(event: Mapping[str, Any]) -> str:
    values = (event.get("exception") or {}).get("values") or []
    if values:
        last = values[-1]
        return f"{event.get('level', 'error')}: {last.get('type')}: {last.get('value')}"
    return str(event.get("level") or "-")


def _session_totals(payloads: Iterable[Any]) -> dict[str, int]:
    totals = dict.fromkeys(_SESSION_COUNTS, 0)
    for payload in payloads:
        buckets = payload.get("aggregates") if isinstance(payload, Mapping) else None
        for bucket in buckets or []:
            for key in _SESSION_COUNTS:
                totals[key] += int(bucket.get(key) or 0)
    return totals


def _counted(totals: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in totals.items() if v) or "-"


def _item_counts(capture: SentryCapture) -> str:
    """``12 envelopes: 10 span, 1 event, 1 sessions``: what reached the transport, by item type."""
    counts: dict[str, int] = {}
    for item in capture.items():
        counts[str(item["type"])] = counts.get(str(item["type"]), 0) + 1
    listed = ", ".join(f"{n} {t}" for t, n in counts.items())
    return f"{len(capture.envelopes)} envelopes" + (f": {listed} items" if listed else "")


def render_envelopes(envelopes: SentryCapture | Iterable[Mapping[str, Any]]) -> str:
    """A table of what Sentry stores: one row per transaction (a call's HTTP request), error event and sessions item.

    ``envelopes``: a :class:`~vgi_rpc.testing.SentryCapture`, or envelopes in its
    shape (read with :meth:`~vgi_rpc.testing.SentryCapture.from_envelopes`).
    Transactions are :attr:`~vgi_rpc.testing.SentryCapture.transactions`: on
    sentry-sdk 3 (span streaming) each call's *segment* span is a row and its
    child spans are listed under it, however the SDK batched the ``span`` items.
    Under each row: the request, tags, user, ``rpc.*`` span data and child spans
    (transactions); tags, ``contexts.rpc`` and user (events); the aggregates
    (sessions).  Status is what the SDK sent.  Item types the demo does not read
    (client reports, attachments...) get a bare row.
    """
    capture = _capture(envelopes)
    rows: list[tuple[str, str, str]] = []
    details: list[list[tuple[str, str]]] = []
    for txn in sorted(_mappings(capture.transactions), key=_started):
        rows.append(
            ("transaction", str(txn.get("transaction") or "-"), str(_trace(txn).get("status") or "-"))
        )
        spans = [f"{s.get('op')} {s.get('description')} ({_span_status(s)})" for s in txn.get("spans") or []]
        details.append(
            [
                ("request", _request(txn)),
                ("tags", _kv(dict(sorted(_tags(txn).items())))),
                ("user", _user(txn)),
                (
                    "rpc.* span data",
                    _kv({k: v for k, v in sorted(_data(txn).items()) if k.startswith("rpc.")}),
                ),
                ("child spans", ", ".join(spans) or "-"),
            ]
        )
    for event in _mappings(capture.events):
        rows.append(("event", str(event.get("transaction") or "-"), _event_status(event)))
        details.append(
            [
                ("tags", _kv(dict(sorted(_tags(event).items())))),
                ("contexts.rpc", _kv(dict(sorted(((event.get("contexts") or {}).get("rpc") or {}).items())))),
                ("user", _user(event)),
            ]
        )
    for payload in capture.payloads("sessions"):
        rows.append(("sessions", "(release health)", _counted(_session_totals([payload]))))
        aggregates = payload.get("aggregates") if isinstance(payload, Mapping) else None
        details.append([("aggregates", json.dumps(aggregates, sort_keys=True, default=str))])
    for item in capture.items():
        if item["type"] not in _READ_ITEMS:
            rows.append((str(item["type"]), "-", "-"))
            details.append([])
    if not rows:
        return "(nothing reached the transport)"
    header = ("kind", "name", "status")
    num = len(str(len(rows)))
    kind, name = (max(len(r[i]) for r in [header, *rows]) for i in range(2))

    def line(index: object, row: tuple[str, str, str]) -> str:
        return f"{index!s:>{num}}  {row[0]:<{kind}}  {row[1]:<{name}}  {row[2]}"

    out = [line("#", header), "-" * (num + kind + name + 6 + max(len(r[2]) for r in rows))]
    for index, (row, lines) in enumerate(zip(rows, details, strict=True), start=1):
        out.append(line(index, row))
        out.extend(f"{'':>{num}}      {label + ':':<17} {text}" for label, text in lines)
    return "\n".join(out)


def explain(envelopes: SentryCapture | Iterable[Mapping[str, Any]]) -> list[str]:
    """One line each on what the table shows that surprises a first reader (only what is there).

    Takes what :func:`render_envelopes` takes; reads the same views, so the notes
    are the same on sentry-sdk 2.x and 3.x (save the field names each sends).
    """
    capture = _capture(envelopes)
    txns = _mappings(capture.transactions)
    notes: list[str] = []
    streamed = [t for t in txns if t.get("streamed")]
    if streamed:
        spans = sum(1 + len(t.get("spans") or []) for t in streamed)
        batches = len(capture.items("span"))
        notes.append(
            f"transaction rows: this SDK streams spans -- no transaction items but {spans} spans in {batches} "
            "span items; a row is one HTTP request's segment span (the WSGI root, which the hook names "
            "rpc <method>) with its child spans, and its tags and user are attributes of that span."
        )
    turns: dict[str, list[str]] = {}
    for txn in txns:
        stream_id = _data(txn).get("rpc.stream_id")
        if stream_id:
            turns.setdefault(str(stream_id), []).append(str(txn.get("transaction")))
    if turns:
        counts = ", ".join(f"{names[0]} x{len(names)}" for names in turns.values())
        notes.append(
            f"{counts}: over HTTP a stream call is one request per turn (/init, then each /exchange), "
            "so one transaction per turn; all turns of one call share one rpc.stream_id."
        )
    sessions = capture.payloads("sessions")
    if sessions:
        notes.append(
            "sessions: not a call but the SDK's release health, one session per HTTP request "
            f"({_counted(_session_totals(sessions))}; errored = an error event was captured during it; "
            "the client's /health probe counts too)."
        )
    for txn in txns:
        status = _trace(txn).get("status")
        http = _http_status(txn)
        if status not in (None, "ok") and http is not None and str(http[1]) == "200":
            notes.append(
                f"{txn.get('transaction')}: {http[0]}=200 because vgi-rpc answers a failed call with a 200 "
                f"whose Arrow stream carries the error; status {status} because the call itself failed."
            )
            break
    return notes


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
            if not args.quiet:
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
    logging.getLogger().removeHandler(logs)
    # Read after the SDK flushed and closed (sessions and batched spans are in), through
    # the kit's views: the same rows on sentry-sdk 2.x and 3.x, in-memory or with a DSN.
    capture = SentryCapture.from_envelopes(recorder.envelopes)
    if not args.quiet:
        print("calls (client side), each with the server's log records:", file=out)
        for done in calls:
            print(f"  {done.call:<34} -> {done.outcome}", file=out)
            for line in done.logs:
                print(f"      [log] {line}", file=out)
        print(f"\nwhat Sentry received ({_item_counts(capture)}):", file=out)
    print(render_envelopes(capture), file=out)
    if not args.quiet:
        notes = explain(capture)
        if notes:
            print("\nreading the table:", file=out)
            for note in notes:
                print(f"  * {note}", file=out)
    if args.json:
        text = json.dumps(capture.envelopes, indent=2, sort_keys=True, default=str)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
            print(f"\nenvelopes written to {args.json}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
