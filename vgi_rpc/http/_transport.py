"""A lean ``httpx`` transport for plain ``http://``: keep-alive sockets and the stdlib's response parser.

:func:`~vgi_rpc.http.http_connect` puts :class:`StdlibTransport` under the
``httpx.Client`` it creates (a client you pass is used as it is). httpx's default
transport parses responses with h11 in 64 KiB reads and costs about 1.5 ms of CPU per
512 KiB response; this one writes the request head itself, sends the body as it is,
and reads the response with :class:`http.client.HTTPResponse` (one ``read``), close
to bare ``http.client``.

It does not go through ``http.client.HTTPConnection``, so Sentry's stdlib
integration (which patches ``HTTPConnection.putrequest``) neither adds headers nor a
span: the request is seen by Sentry's httpx integration, exactly as with httpx's
own transport.

Failures are raised as the httpx exceptions httpx's own transport raises for them
(``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``, ``WriteTimeout``,
``ReadError``, ``WriteError``, ``RemoteProtocolError``), a body cut short while it
is read from the response stream, so a caller's handling is the same on both.
"""

from __future__ import annotations

import collections
import http.client
import select
import socket
import threading
from collections.abc import Iterator

import httpx

__all__ = ["StdlibTransport"]

_Key = tuple[str, int]


class _Body(httpx.SyncByteStream):
    """The response body, read in one piece when httpx iterates it; the socket goes back to the pool."""

    def __init__(
        self, transport: StdlibTransport, key: _Key, sock: socket.socket, resp: http.client.HTTPResponse
    ):
        self._transport = transport
        self._key = key
        self._sock: socket.socket | None = sock
        self._resp = resp

    def __iter__(self) -> Iterator[bytes]:
        try:
            data = self._resp.read()
        except TimeoutError as exc:
            self.close(reuse=False)
            raise httpx.ReadTimeout(str(exc) or "timed out") from exc
        except http.client.IncompleteRead as exc:
            self.close(reuse=False)
            raise httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body: {exc!r}"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close(reuse=False)
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        self.close(reuse=not self._resp.will_close)
        yield data

    def close(self, reuse: bool = False) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        self._resp.close()
        if reuse and self._resp.isclosed():
            self._transport._release(self._key, sock)
        else:
            sock.close()


class StdlibTransport(httpx.BaseTransport):
    """``http://`` over pooled keep-alive sockets; other schemes raise ``httpx.UnsupportedProtocol``.

    Honours the request's httpx timeouts (connect, read, write; a pool wait never
    happens: a new socket is opened when none is idle). At most *max_idle* idle
    sockets are kept per host; an idle socket the server has closed is dropped
    before use, so a request is never sent on a dead keep-alive connection it
    could have avoided.
    """

    def __init__(self, max_idle: int = 8) -> None:
        self._idle: dict[_Key, collections.deque[socket.socket]] = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request*; return once the response head is read (the body is read when httpx reads it)."""
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"StdlibTransport speaks http://, not {url.scheme}://")
        timeouts = request.extensions.get("timeout", {})
        key = (url.host, url.port or 80)
        sock = self._acquire(key, timeouts.get("connect"))
        try:
            self._send(sock, request, timeouts.get("write"))
            sock.settimeout(timeouts.get("read"))
            resp = http.client.HTTPResponse(sock, method=request.method)
            resp.begin()
        except BaseException as exc:
            sock.close()
            mapped = _head_failure(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        body = _Body(self, key, sock, resp)
        return httpx.Response(
            resp.status,
            headers=resp.getheaders(),
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": resp.reason.encode("latin-1")},
        )

    def close(self) -> None:
        """Close the idle sockets (httpx calls this when its client closes)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for queue in idle.values():
            for sock in queue:
                sock.close()

    # ------------------------------------------------------------------ sockets

    def _acquire(self, key: _Key, timeout: float | None) -> socket.socket:
        with self._lock:
            queue = self._idle.get(key)
            while queue:
                sock = queue.pop()
                if _usable(sock):
                    return sock
                sock.close()
        try:
            sock = socket.create_connection(key, timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _release(self, key: _Key, sock: socket.socket) -> None:
        with self._lock:
            queue = self._idle.setdefault(key, collections.deque())
            if len(queue) < self._max_idle:
                queue.append(sock)
                return
        sock.close()

    @staticmethod
    def _send(sock: socket.socket, request: httpx.Request, timeout: float | None) -> None:
        body = request.read()
        target = request.url.raw_path.decode("ascii")
        lines = [f"{request.method} {target} HTTP/1.1".encode("ascii")]
        for name, value in request.headers.raw:
            if name.lower() not in (b"content-length", b"transfer-encoding"):
                lines.append(name + b": " + value)
        lines.append(b"Content-Length: %d" % len(body))
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        sock.settimeout(timeout)
        try:
            if len(body) <= 65536:
                sock.sendall(head + body)
            else:
                sock.sendall(head)
                sock.sendall(body)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from exc


def _usable(sock: socket.socket) -> bool:
    """An idle keep-alive socket is usable when nothing is readable on it (no EOF, no stray bytes).

    ``poll``, not ``select``: a process with more than 1024 open files has socket
    numbers ``select`` cannot watch.
    """
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _head_failure(exc: BaseException) -> BaseException:
    """The httpx exception for a failure before the response head was read."""
    if isinstance(exc, httpx.TransportError | KeyboardInterrupt | SystemExit):
        return exc
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(str(exc) or "timed out")
    if isinstance(exc, http.client.RemoteDisconnected):
        return httpx.RemoteProtocolError("Server disconnected without sending a response.")
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(f"malformed response head: {exc!r}")
    if isinstance(exc, OSError):
        return httpx.ReadError(str(exc) or type(exc).__name__)
    return exc
