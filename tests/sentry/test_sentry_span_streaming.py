"""Span streaming on either generation: sentry-sdk 3 always, 2.x with ``trace_lifecycle="stream"``.

The rest of the Sentry suites run on each generation's default (2.x sends
transactions, 3.x streams spans); this module pins that a 2.x user who opts into
streaming gets the same promises as a 3.x user (B7, S13, S18, S28), over the
pipe and over HTTP with the real waitress server and Sentry's Falcon/WSGI
integrations.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.http import http_proxy
from support.sentry import trace_data
from support.shop import make_server

from vgi_rpc import RpcError, serve_pipe
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import SentryCapture

pytest.importorskip("sentry_sdk.traces", reason="span streaming is newer than this sentry-sdk")
pytestmark = pytest.mark.sentry_options(trace_lifecycle="stream")


def _rpc(txn: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in trace_data(txn).items() if k.startswith("rpc.")}


def test_pipe_spans_carry_the_rpc_data_and_the_outcome(sentry_capture: SentryCapture) -> None:
    """S13 S28 B7: the hook's own segment per dispatch, vgi_rpc/<method>, rpc.* attributes, ok / error."""
    server = make_server(SentryConfig(enable_performance=True, record_params=True))
    with serve_pipe(server) as proxy:
        assert proxy.add(a=1, b=2) == 3
        with pytest.raises(RpcError):
            proxy.fail(message="x")
    assert all(t.get("streamed") for t in sentry_capture.transactions)  # span items, not transactions
    add, fail = sentry_capture.transaction("add"), sentry_capture.transaction("fail")
    assert (add["transaction"], add["contexts"]["trace"]["status"]) == ("vgi_rpc/add", "ok")
    assert (fail["transaction"], fail["contexts"]["trace"]["status"]) == ("vgi_rpc/fail", "error")
    assert fail["contexts"]["trace"]["op"] == "rpc.server"
    assert _rpc(add) == {
        "rpc.system": "vgi_rpc",
        "rpc.service": "Shop",
        "rpc.method": "add",
        "rpc.method_type": "unary",
        "rpc.server_id": server.server_id,
        "rpc.param.a": 1,
        "rpc.param.b": 2,
    }
    event = sentry_capture.event()
    assert event["transaction"] == "rpc fail" and event["contexts"]["rpc"]["method"] == "fail"
    assert event["contexts"]["trace"]["span_id"] == fail["contexts"]["trace"]["span_id"]


def test_the_wsgi_segment_is_named_rpc_method_and_reports_the_outcome(sentry_capture: SentryCapture) -> None:
    """S18 S28 B7: over HTTP the WSGI segment is 'rpc {method}' (source custom), error for a failed call."""
    with http_proxy(make_server(SentryConfig(enable_performance=True))) as proxy:
        proxy.add(a=1, b=2)
        with pytest.raises(RpcError):
            proxy.fail(message="x")
    roots = {t["transaction"]: t for t in sentry_capture.transactions}
    assert set(roots) == {"rpc add", "rpc fail"}
    for method, status in (("add", "ok"), ("fail", "error")):
        root = roots[f"rpc {method}"]
        assert root["transaction_info"]["source"] == "custom"
        assert root["contexts"]["trace"]["op"] == "http.server"
        assert root["contexts"]["trace"]["status"] == status  # HTTP said 200 both times
        assert trace_data(root)["http.response.status_code"] == 200
        assert _rpc(root)["rpc.method"] == method
        (child,) = root["spans"]
        assert (child["description"], child["status"]) == (f"vgi_rpc/{method}", status)
    assert sentry_capture.event()["transaction"] == "rpc fail"
