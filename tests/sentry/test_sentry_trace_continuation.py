"""The worker continues the caller's trace from what the request carries, and ignores what it must not.

Requests are built by hand here (the pipe's request metadata; raw HTTP headers to a
real waitress server), so these tests pin the *server's* side of issue 20 on every
SDK generation: which trace context is continued (``sentry-trace`` + ``baggage``,
else W3C ``traceparent``), that the caller's sampling decision holds, and that
hostile values (oversized, malformed, non-hex, all-zero ids, baggage with thousands
of members) are ignored or clipped: the call answers normally in a fresh trace,
and nothing reaches the next request. What our clients send is tested in
tests/propagation; whole caller-to-worker traces in tests/tracing.
"""

from __future__ import annotations

import http.client
import io
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest
from support.http import ARROW, TOKEN_KEY, call_body, read_stream
from support.sentry import FAILED, sdk2_logging
from support.shop import make_server

from vgi_rpc import RpcServer
from vgi_rpc._trace_in import MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS, incoming_trace
from vgi_rpc.http import start_http_server
from vgi_rpc.pipe.server import serve_streams
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import SentryCapture
from vgi_rpc.wire import metadata_dict, request_bytes

# Requests go over a bare socket (_post), so the hand-made headers reach the server as
# written, with Sentry's default integrations left as they are: disabling the httpx or
# stdlib integration here would leave them disabled for later tests in the process.
pytestmark = [pytest.mark.sentry_options(traces_sample_rate=1.0, integrations=sdk2_logging())]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
SENTRY_TRACE = f"{TRACE}-{PARENT}-1"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"

HOSTILE: dict[str, dict[str, str]] = {
    "oversized sentry-trace": {"sentry-trace": SENTRY_TRACE + "1" * 65_536},
    "oversized traceparent": {"traceparent": TRACEPARENT + "0" * 65_536},
    "non-hex sentry-trace": {"sentry-trace": f"{'z' * 32}-{PARENT}-1"},
    "upper-case sentry-trace": {"sentry-trace": SENTRY_TRACE.upper()},
    "trace id only": {"sentry-trace": TRACE},
    "all-zero trace id": {"sentry-trace": f"{'0' * 32}-{PARENT}-1"},
    "all-zero span id": {"sentry-trace": f"{TRACE}-{'0' * 16}-1"},
    "all-zero traceparent": {"traceparent": f"00-{'0' * 32}-{PARENT}-01"},
    "traceparent version ff": {"traceparent": f"ff-{TRACE}-{PARENT}-01"},
    "traceparent 00 with extra fields": {"traceparent": TRACEPARENT + "-extra"},
    "non-hex traceparent": {"traceparent": f"00-{TRACE}-{'x' * 16}-01"},
    "baggage alone": {"baggage": "sentry-trace_id=" + TRACE + ",sentry-sampled=true"},
}


def _request(method: str, extra: dict[str, str] | None = None, **kwargs: Any) -> bytes:
    batch = pa.RecordBatch.from_pydict({k: [v] for k, v in kwargs.items()})
    return request_bytes(method, batch, protocol="Shop", extra=extra)


def _serve_pipe(server: RpcServer, payload: bytes) -> list[dict[str, str]]:
    """Run the pipe loop over *payload*; the metadata of each response's batches."""
    out = io.BytesIO()
    serve_streams(server, io.BytesIO(payload), out)
    source = pa.BufferReader(out.getvalue())
    mds: list[dict[str, str]] = []
    while source.tell() < source.size():
        reader = pa.ipc.open_stream(source)
        while True:
            try:
                _, md = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                break
            mds.append(metadata_dict(md))
    return mds


def _server() -> RpcServer:
    return make_server(SentryConfig(enable_performance=True))


def _roots(cap: SentryCapture) -> list[dict[str, Any]]:
    return [t["contexts"]["trace"] for t in cap.transactions]


# -- the rules, without an SDK ---------------------------------------------------------------------------


def test_incoming_trace_keeps_valid_values_and_converts_traceparent() -> None:
    """Issue 20: sentry-trace wins; a lone traceparent becomes one with its sampled flag; nothing else is kept."""
    assert incoming_trace({"sentry-trace": f" {SENTRY_TRACE}\t", "baggage": "a=1, ,b=2"}) == {
        "sentry-trace": SENTRY_TRACE,
        "baggage": "a=1,b=2",
    }
    assert incoming_trace({"sentry-trace": f"{TRACE}-{PARENT}"}) == {"sentry-trace": f"{TRACE}-{PARENT}"}
    assert incoming_trace({"traceparent": TRACEPARENT}) == {"sentry-trace": SENTRY_TRACE}
    assert incoming_trace({"traceparent": f"00-{TRACE}-{PARENT}-00"}) == {
        "sentry-trace": f"{TRACE}-{PARENT}-0"
    }
    # a later version may carry more fields; flags other than "sampled" are not Sentry's
    assert incoming_trace({"traceparent": f"01-{TRACE}-{PARENT}-03-more"}) == {"sentry-trace": SENTRY_TRACE}
    both = {"sentry-trace": f"{TRACE}-{PARENT}-0", "traceparent": f"00-{'1' * 32}-{PARENT}-01"}
    assert incoming_trace(both) == {"sentry-trace": f"{TRACE}-{PARENT}-0"}
    for name, metadata in HOSTILE.items():
        assert incoming_trace(metadata) is None, name


def test_baggage_is_clipped_to_w3c_limits_by_whole_members() -> None:
    """Issue 20 (bad input): thousands of baggage members are cut to 180 members / 8,192 bytes, never mid-member."""
    many = ",".join(f"k{i}=v{i}" for i in range(5000))
    kept = incoming_trace({"sentry-trace": SENTRY_TRACE, "baggage": many})
    assert kept is not None
    members = kept["baggage"].split(",")
    assert len(members) == MAX_BAGGAGE_MEMBERS
    assert members[-1] == f"k{MAX_BAGGAGE_MEMBERS - 1}=v{MAX_BAGGAGE_MEMBERS - 1}"
    wide = ",".join(f"k{i}={'x' * 1000}" for i in range(20))  # 20 members of ~1 KB: the byte limit first
    kept = incoming_trace({"sentry-trace": SENTRY_TRACE, "baggage": wide})
    assert kept is not None
    assert len(kept["baggage"].encode()) <= MAX_BAGGAGE_BYTES
    assert kept["baggage"].split(",") == wide.split(",")[:8]
    assert incoming_trace({"sentry-trace": SENTRY_TRACE, "baggage": "x" * 65_536}) == {
        "sentry-trace": SENTRY_TRACE
    }


# -- the pipe ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"sentry-trace": SENTRY_TRACE, "baggage": f"sentry-trace_id={TRACE},sentry-sample_rate=1.0,other=1"},
        {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"},
    ],
    ids=["sentry-trace", "traceparent"],
)
def test_pipe_call_continues_the_callers_trace(sentry_capture: SentryCapture, extra: dict[str, str]) -> None:
    """Issue 20: the worker's transaction (or segment) and error event join the trace in the request metadata."""
    payload = _request("add", extra, a=1, b=2) + _request("fail", extra, message="boom")
    _serve_pipe(_server(), payload)
    add, fail = _roots(sentry_capture)
    for root in (add, fail):
        assert (root["trace_id"], root["parent_span_id"]) == (TRACE, PARENT)
    assert fail["status"] == FAILED
    event = sentry_capture.event("fail")
    assert event["contexts"]["trace"]["trace_id"] == TRACE
    assert event["contexts"]["trace"]["span_id"] == fail["span_id"]  # captured inside the worker's span


def test_pipe_unsampled_caller_gets_no_worker_transaction(sentry_capture: SentryCapture) -> None:
    """Issue 20: a caller that did not sample (``-0``) gets no worker transaction; its error event still arrives in its trace."""
    extra = {"sentry-trace": f"{TRACE}-{PARENT}-0"}
    _serve_pipe(_server(), _request("add", extra, a=1, b=2) + _request("fail", extra, message="boom"))
    assert sentry_capture.transactions == []
    assert sentry_capture.event("fail")["contexts"]["trace"]["trace_id"] == TRACE


def test_pipe_error_event_joins_the_trace_without_performance(sentry_capture: SentryCapture) -> None:
    """Issue 20: with enable_performance off (the default) an error event still carries the caller's trace id."""
    _serve_pipe(make_server(), _request("fail", {"traceparent": TRACEPARENT}, message="boom"))
    trace = sentry_capture.event("fail")["contexts"]["trace"]
    assert (trace["trace_id"], trace.get("parent_span_id")) == (TRACE, PARENT)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_pipe_hostile_trace_context_is_ignored(sentry_capture: SentryCapture, name: str) -> None:
    """Issue 20 (bad input): the call answers normally in a fresh trace, and the next request is untouched."""
    valid = {"sentry-trace": SENTRY_TRACE}
    payload = (
        _request("add", valid, a=1, b=2)
        + _request("add", HOSTILE[name], a=2, b=3)
        + _request("add", a=3, b=4)
    )
    answers = _serve_pipe(_server(), payload)
    assert [md for md in answers if "vgi_rpc.log_level" in md] == []  # no error batch
    _assert_only_the_valid_call_continued(_roots(sentry_capture))


def _assert_only_the_valid_call_continued(roots: list[dict[str, Any]]) -> None:
    """Three calls (valid context, hostile context, none) made three traces; only the first is the caller's.

    The SDK may send the three in any order (3.x batches spans by trace).
    """
    assert len(roots) == 3
    assert len({root["trace_id"] for root in roots}) == 3
    continued = [root for root in roots if root.get("parent_span_id")]
    assert [(root["trace_id"], root["parent_span_id"]) for root in continued] == [(TRACE, PARENT)]


# -- HTTP, through a real waitress server ---------------------------------------------------------------


@pytest.fixture
def http_url() -> Iterator[str]:
    with start_http_server(_server(), token_key=TOKEN_KEY) as handle:
        yield f"{handle.base_url}/Shop"


@dataclass
class _Answer:
    status_code: int
    content: bytes


def _post(url: str, method: str, headers: dict[str, str], **columns: Any) -> _Answer:
    """POST over a bare socket: exactly these headers reach the server.

    Not httpx nor ``http.client.HTTPConnection``: Sentry's httpx and stdlib
    integrations would add this process's own trace headers, replacing ours.
    """
    body = call_body(method, columns, protocol="Shop")
    parts = urlsplit(f"{url}/{method}")
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Type: {ARROW}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return _Answer(response.status, response.read())


def test_http_lone_traceparent_is_continued(sentry_capture: SentryCapture, http_url: str) -> None:
    """Issue 20: over HTTP a ``traceparent`` without ``sentry-trace`` still joins the worker to the caller's trace."""
    assert _post(http_url, "add", {"traceparent": TRACEPARENT}, a=1, b=2).status_code == 200
    assert _post(http_url, "fail", {"traceparent": TRACEPARENT}, message="boom").status_code == 200
    add, fail = _roots(sentry_capture)
    for root in (add, fail):
        assert (root["trace_id"], root["parent_span_id"]) == (TRACE, PARENT)
    assert sentry_capture.event("fail")["contexts"]["trace"]["trace_id"] == TRACE


def test_http_unsampled_traceparent_gets_no_worker_transaction(
    sentry_capture: SentryCapture, http_url: str
) -> None:
    """Issue 20: the W3C sampled flag 00 is the caller's decision: no transaction, the error event in its trace."""
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-00"}
    assert _post(http_url, "fail", headers, message="boom").status_code == 200
    assert sentry_capture.transactions == []
    assert sentry_capture.event("fail")["contexts"]["trace"]["trace_id"] == TRACE


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_http_hostile_trace_headers_are_ignored(
    sentry_capture: SentryCapture, http_url: str, name: str
) -> None:
    """Issue 20 (bad input): 200 with the answer, a fresh trace, nothing carried to the next request."""
    assert _post(http_url, "add", {"sentry-trace": SENTRY_TRACE}, a=1, b=2).status_code == 200
    hostile = _post(http_url, "add", HOSTILE[name], a=2, b=3)
    assert hostile.status_code == 200
    _, batches = read_stream(hostile.content)
    assert batches[-1][0].to_pydict() == {"result": [5]}
    assert _post(http_url, "add", {}, a=3, b=4).status_code == 200
    _assert_only_the_valid_call_continued(_roots(sentry_capture))


def test_http_baggage_with_thousands_of_members_is_clipped(
    sentry_capture: SentryCapture, http_url: str
) -> None:
    """Issue 20 (bad input): a huge baggage does not stop the trace from being continued, nor the call."""
    baggage = ",".join(
        [f"sentry-trace_id={TRACE}", "sentry-sample_rate=1.0"] + [f"k{i}=v" for i in range(4000)]
    )
    response = _post(http_url, "add", {"sentry-trace": SENTRY_TRACE, "baggage": baggage}, a=1, b=2)
    assert response.status_code == 200
    (root,) = _roots(sentry_capture)
    assert (root["trace_id"], root["parent_span_id"]) == (TRACE, PARENT)


def _has_option(name: str) -> bool:
    import inspect

    import sentry_sdk.consts

    return name in inspect.signature(sentry_sdk.consts.ClientConstructor.__init__).parameters


@pytest.mark.skipif(
    not _has_option("strict_trace_continuation"), reason="this sentry-sdk has no strict_trace_continuation"
)
@pytest.mark.sentry_options(strict_trace_continuation=True, org_id="1")
def test_pipe_a_trace_the_sdk_declines_is_a_fresh_trace_each_call(sentry_capture: SentryCapture) -> None:
    """Issue 20: the SDK's own continuation rules hold (another organisation's trace is not continued),
    and the hook's parse cache never fuses such calls into one trace."""
    extra = {"sentry-trace": SENTRY_TRACE, "baggage": f"sentry-trace_id={TRACE},sentry-org_id=2"}
    _serve_pipe(_server(), _request("add", extra, a=1, b=2) + _request("add", extra, a=2, b=3))
    roots = _roots(sentry_capture)
    assert len(roots) == 2
    assert TRACE not in {root["trace_id"] for root in roots}
    assert len({root["trace_id"] for root in roots}) == 2
