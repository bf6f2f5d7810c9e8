"""A real Sentry endpoint on 127.0.0.1 for tests: it receives what a real SDK transport sends.

``SentryEndpoint()`` listens on a free port on a background thread and accepts
envelope POSTs at ``/api/<project>/envelope/`` (gzip, deflate or plain bodies), as
Sentry's ingest does. Point a process at it with :attr:`SentryEndpoint.dsn`
(``http://public@127.0.0.1:<port>/1``): the SDK's own HTTP transport then sends
there, so a test sees what really left the process, and when.

Reading: :attr:`envelopes` (the kit's shape, ``{"headers", "items": [{"type",
"headers", "payload"}]}``), :meth:`capture` (a closed
:class:`vgi_rpc.testing.SentryCapture` over them, so ``events``, ``transactions``,
``spans``... read as on an in-memory capture), :meth:`wait_for` (poll until a
predicate holds, bounded).

Behaviour knobs, for soak and failure tests: ``status`` (the HTTP status answered,
default 200), ``delay`` (seconds to sleep after recording an envelope, before
answering; a large one makes a DSN that accepts and never answers in time) and
``ingest_delay`` (seconds to sleep after reading an envelope, before recording and
answering it: a slow ingest, which only a sender that waits for its answer gets
recorded in time). Use it as a context manager, or call
:meth:`close`.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vgi_rpc.testing import SentryCapture

__all__ = ["SentryEndpoint", "parse_envelope"]


def _payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # an attachment or another non-JSON item
        return raw.decode("utf-8", "replace")


def parse_envelope(body: bytes) -> dict[str, Any]:
    """Parse Sentry envelope bytes into ``{"headers", "items": [{"type", "headers", "payload"}]}``.

    Items with a ``length`` header are read by length, the others up to the next
    newline; JSON payloads are decoded, anything else is kept as text.
    """
    first, _, rest = body.partition(b"\n")
    envelope: dict[str, Any] = {"headers": json.loads(first) if first.strip() else {}, "items": []}
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        if not line.strip():
            continue
        headers = json.loads(line)
        length = headers.get("length")
        if length is None:
            raw, _, rest = rest.partition(b"\n")
        else:
            raw, rest = rest[:length], rest[length:]
            if rest.startswith(b"\n"):
                rest = rest[1:]
        envelope["items"].append({"type": headers.get("type"), "headers": headers, "payload": _payload(raw)})
    return envelope


def _decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # only when a sender chose it; not a test dependency otherwise

        return brotli.decompress(body)  # type: ignore[no-any-return]
    return body


class SentryEndpoint:
    """A tiny HTTP server standing in for Sentry's ingest on 127.0.0.1 (see the module docstring).

    Attributes:
        port: The bound port.
        dsn: A DSN for project 1 pointing here.
        requests: How many POSTs arrived (envelope or not).
        received_at: ``time.monotonic()`` of each envelope's arrival, in order.
    """

    def __init__(self, *, status: int = 200, delay: float = 0.0, ingest_delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.ingest_delay = ingest_delay
        self.requests = 0
        self.received_at: list[float] = []
        self._envelopes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with endpoint._lock:
                    endpoint.requests += 1
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "api" and parts[2] == "envelope":
                    if endpoint.ingest_delay:
                        time.sleep(endpoint.ingest_delay)
                    envelope = parse_envelope(_decode(body, self.headers.get("Content-Encoding", "")))
                    with endpoint._changed:
                        endpoint._envelopes.append(envelope)
                        endpoint.received_at.append(time.monotonic())
                        endpoint._changed.notify_all()
                    status = endpoint.status
                else:
                    status = 404
                if endpoint.delay:
                    time.sleep(endpoint.delay)
                answer = b"{}"
                with contextlib.suppress(OSError):  # the sender may have given up (or exited) meanwhile
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.dsn = f"http://public@127.0.0.1:{self.port}/1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sentry-endpoint", daemon=True
        )
        self._thread.start()

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        """Every envelope received so far, parsed (a copy)."""
        with self._lock:
            return list(self._envelopes)

    def capture(self) -> SentryCapture:
        """The envelopes received so far, read through the kit's views (a closed capture)."""
        return SentryCapture.from_envelopes(self.envelopes)

    def wait_for(self, predicate: Callable[[SentryCapture], bool], timeout: float = 10.0) -> SentryCapture:
        """Wait (at most *timeout* s) until *predicate* holds for :meth:`capture`; return the last capture."""
        deadline = time.monotonic() + timeout
        while True:
            capture = self.capture()
            left = deadline - time.monotonic()
            if predicate(capture) or left <= 0:
                return capture
            with self._changed:
                self._changed.wait(min(left, 0.2))

    def close(self) -> None:
        """Stop listening (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> SentryEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
