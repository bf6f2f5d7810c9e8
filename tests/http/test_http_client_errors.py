"""Every failure of the HTTP client below HTTP is a typed transport error (docs/http.md, the client).

A caller that retries on ``error_kind == "transport"`` must see every way a call can
fail on the network: a refused connection, a connection closed or reset before the
answer, a worker killed mid-call, a response body cut short, and a timeout (connect
or read). Each case here is a real socket on 127.0.0.1: a port bound but not
listening, a tiny server that reads the request and then misbehaves, a listener
whose accept queue is full, and a real ``serve_http`` process killed with SIGKILL
while a call is in flight. An answer from something that is not a vgi-rpc server (a
proxy's 502...) carries gRPC's code for its status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.sleepy import Sleepy
from support.worker_process import PortWorker

from vgi_rpc import RpcError
from vgi_rpc.http import http_connect

pytestmark = pytest.mark.timeout(60)

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
ARROW = "application/vnd.apache.arrow.stream"


def read_request(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 request (head and ``Content-Length`` body) from *conn*."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextlib.contextmanager
def tiny_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A one-thread HTTP server on 127.0.0.1 that reads each request, then calls *answer*.

    *answer* owns the connection (it may close it, reset it, or leave it hanging until
    the server stops). Yields the base URL.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            conn.settimeout(10)
            with contextlib.suppress(OSError):
                read_request(conn)
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
        for conn in held:
            conn.close()


def close_at_once(conn: socket.socket) -> None:
    conn.close()


def reset(conn: socket.socket) -> None:
    """Close with ``SO_LINGER`` 0: the kernel sends RST instead of FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()


def partial_body(conn: socket.socket) -> None:
    """A 200 head promising 1000 bytes of Arrow, then 100 bytes and a close."""
    conn.sendall(
        f"HTTP/1.1 200 OK\r\nContent-Type: {ARROW}\r\nContent-Length: 1000\r\n\r\n".encode() + b"\xff" * 100
    )
    conn.close()


def never_answer(conn: socket.socket) -> None:
    """Keep the connection open and say nothing (tiny_server closes it when the test ends)."""


def gateway(status: int, reason: str) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        page = f"<html><body><h1>{status} {reason}</h1></body></html>".encode()
        conn.sendall(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html\r\n"
            f"Content-Length: {len(page)}\r\nConnection: close\r\n\r\n".encode()
            + page
        )
        conn.close()

    return answer


def failure(url: str, timeout: float = 10.0, *, stream: bool = False) -> RpcError:
    """The RpcError one call (or the first turn of a producer stream) to *url* raises."""
    with (
        http_connect(Sleepy, url, compression=None, timeout=timeout) as proxy,
        pytest.raises(RpcError) as info,
    ):
        if stream:
            list(proxy.slow_count(n=3, nap_at=-1, seconds=0.0))
        else:
            proxy.nap(seconds=0.0)
    return info.value


def assert_transport(exc: RpcError, code: str, *fragments: str) -> None:
    assert exc.error_type == "TransportError", exc
    assert exc.error_kind == "transport"
    assert exc.error_code == code
    assert str(exc).startswith("TransportError: POST http://127.0.0.1:"), str(exc)
    for fragment in fragments:
        assert fragment in str(exc), str(exc)


def test_a_refused_connection_is_unavailable() -> None:
    """A port bound but not listening refuses: UNAVAILABLE, and the message says so."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        exc = failure(url)
    assert_transport(exc, "UNAVAILABLE", "/Sleepy/nap: could not connect", "ConnectError", "refused")
    assert str(exc) == f"TransportError: {exc.error_message}"


def test_a_connection_closed_before_the_answer_is_unavailable() -> None:
    with tiny_server(close_at_once) as url:
        exc = failure(url)
    assert_transport(exc, "UNAVAILABLE", "closed the connection", "RemoteProtocolError")


def test_a_reset_connection_is_unavailable() -> None:
    with tiny_server(reset) as url:
        exc = failure(url)
        in_stream = failure(url, stream=True)
    assert_transport(exc, "UNAVAILABLE", "the connection failed before a response", "ReadError")
    assert_transport(in_stream, "UNAVAILABLE", "/Sleepy/slow_count/init")


def test_a_truncated_response_body_is_data_loss() -> None:
    with tiny_server(partial_body) as url:
        exc = failure(url)
    assert_transport(exc, "DATA_LOSS", "cut short after its head (HTTP 200)", "RemoteProtocolError")


def test_a_server_that_never_answers_is_deadline_exceeded() -> None:
    with tiny_server(never_answer) as url:
        exc = failure(url, timeout=0.5)
    assert_transport(exc, "DEADLINE_EXCEEDED", "no answer within the timeout", "ReadTimeout")


def test_a_connection_never_accepted_is_deadline_exceeded() -> None:
    """A listener whose accept queue is full drops new SYNs: the connect times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        queued: list[socket.socket] = []
        try:
            for _ in range(8):  # fill the accept queue (its length is backlog + 1 on Linux)
                sock = socket.socket()
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(address)
                queued.append(sock)
            exc = failure(f"http://127.0.0.1:{address[1]}", timeout=0.5)
        finally:
            for sock in queued:
                sock.close()
    assert_transport(exc, "DEADLINE_EXCEEDED", "no connection within the timeout", "ConnectTimeout")


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (502, "Bad Gateway", "UNAVAILABLE"),
        (503, "Service Unavailable", "UNAVAILABLE"),
        (504, "Gateway Timeout", "UNAVAILABLE"),
        (429, "Too Many Requests", "UNAVAILABLE"),
        (404, "Not Found", "UNIMPLEMENTED"),
        (403, "Forbidden", "PERMISSION_DENIED"),
        (400, "Bad Request", "INTERNAL"),
        (500, "Internal Server Error", "UNKNOWN"),
    ],
)
def test_a_proxy_answer_carries_grpcs_code_for_its_status(status: int, reason: str, code: str) -> None:
    """Not a vgi-rpc answer (HTML from a proxy): ``HttpError`` naming the status, gRPC's code."""
    with tiny_server(gateway(status, reason)) as url:
        exc = failure(url)
    assert exc.error_type == "HttpError"
    assert exc.error_kind == "transport"
    assert exc.error_code == code
    assert exc.error_message.startswith(f"HTTP {status} {reason} from POST {url}/Sleepy/nap with a text/html")


def garbage_arrow(conn: socket.socket) -> None:
    """A complete 200 answer, typed as Arrow, whose body is not an Arrow IPC stream."""
    body = b"this is not arrow at all"
    conn.sendall(
        f"HTTP/1.1 200 OK\r\nContent-Type: {ARROW}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    conn.close()


def test_a_body_that_is_not_arrow_is_data_loss() -> None:
    with tiny_server(garbage_arrow) as url:
        exc = failure(url)
    assert exc.error_type == "HttpError"
    assert exc.error_kind == "transport"
    assert exc.error_code == "DATA_LOSS"
    assert str(exc) == "HttpError: nap: response is not a valid Arrow IPC stream"


def test_any_other_httpx_failure_is_unknown() -> None:
    """A URL scheme httpx does not speak: still a transport error, code UNKNOWN."""
    exc = failure("ftp://127.0.0.1:21")
    assert exc.error_type == "TransportError"
    assert exc.error_kind == "transport"
    assert exc.error_code == "UNKNOWN"
    assert str(exc).startswith("TransportError: POST ftp://127.0.0.1:21/Sleepy/nap: the request failed (")


SLEEPY_SERVER = f"""
import os, sys, time
sys.path[:0] = [{str(ROOT)!r}, {str(TESTS)!r}]
from support.sleepy import Sleepy, SleepyImpl
from vgi_rpc import RpcServer
from vgi_rpc.http import serve_http

class Announcing(SleepyImpl):
    def nap(self, seconds):
        if seconds > 0:
            with open(os.environ["VGI_STARTED_FILE"], "w") as f:
                f.write("started")
        time.sleep(seconds)
        return seconds

serve_http(RpcServer(Sleepy, Announcing()), host="127.0.0.1", port=0, token_key=b"k" * 32)
"""


def test_a_server_killed_mid_call_is_unavailable(tmp_path: Path) -> None:
    """A real ``serve_http`` process, SIGKILLed while a 30 s call is in flight.

    The call fails with UNAVAILABLE (not a hang, not an untyped error); the next call
    to the dead port is refused, also UNAVAILABLE.
    """
    started = tmp_path / "started"
    worker = PortWorker(
        [sys.executable, "-c", SLEEPY_SERVER], env={**os.environ, "VGI_STARTED_FILE": str(started)}
    )
    try:
        caught: list[BaseException] = []
        with http_connect(Sleepy, worker.url, compression=None, timeout=60) as proxy:
            assert proxy.nap(seconds=0.0) == 0.0

            def call() -> None:
                try:
                    proxy.nap(seconds=30.0)
                except BaseException as exc:
                    caught.append(exc)

            caller = threading.Thread(target=call)
            caller.start()
            for _ in range(2000):  # at most 20 s for the call to reach the implementation
                if started.exists():
                    break
                threading.Event().wait(0.01)
            assert started.exists(), "the server never started the call"
            os.kill(worker.proc.pid, signal.SIGKILL)
            caller.join(timeout=30)
            assert not caller.is_alive(), "the call hung after the server died"
            worker.proc.wait(timeout=10)
            with pytest.raises(RpcError) as later:
                proxy.nap(seconds=0.0)
    finally:
        worker.stop()
    assert len(caught) == 1 and isinstance(caught[0], RpcError), caught
    assert_transport(caught[0], "UNAVAILABLE", "/Sleepy/nap")
    assert_transport(later.value, "UNAVAILABLE", "could not connect")
