"""HTTP unary round trip through ``falcon.testing``, with and without ``sentry_config``.

The real SDK is initialised (in-memory transport, ``traces_sample_rate=1.0``,
default integrations -- WSGI and Falcon included) for both variants, so both
pay for the SDK's own per-request transaction; the ratio is what our hook adds
(the call's isolation scope, tags, context, naming).  The request body is
encoded once; each operation is one ``simulate_post`` through the whole WSGI
app (middleware, routing, decoding, dispatch, Arrow response).  Target <= 1.15x.

``falcon.testing`` wraps every request in ``wsgiref.validate`` and inspects the
app's signature, which is a large share of each simulated request in both
variants; ``http.sentry.wsgi`` (informational) calls the same two apps directly
with a ready WSGI environ, the way a WSGI server does, to show the undiluted ratio.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from benchmarks._services import Bench, BenchImpl
from benchmarks.conftest import Profile
from vgi_rpc import RpcServer
from vgi_rpc.client import encode_call
from vgi_rpc.testing.bench import Interleaved, Ratio, RatioBenchmark
from vgi_rpc.wire import request_bytes

ARROW = "application/vnd.apache.arrow.stream"


@pytest.mark.gated
@pytest.mark.benchmark(group="HTTP unary via falcon.testing (SDK on in both)")
def test_http_sentry(
    ratio_benchmark: RatioBenchmark, profile: Profile, record_ratio: Callable[[Ratio], Ratio]
) -> None:
    import falcon.testing

    from vgi_rpc.http import make_wsgi_app
    from vgi_rpc.sentry import SentryConfig
    from vgi_rpc.testing import sentry_capture

    plain_server = RpcServer(Bench, BenchImpl())  # built before the SDK is initialised: no hook
    hooked_server = RpcServer(Bench, BenchImpl())
    assert plain_server.hooks == ()
    spec = plain_server.lookup("add")
    body = request_bytes("add", encode_call(spec, (), {"a": 1, "b": 2}), protocol="Bench")
    headers = {"Content-Type": ARROW}

    with sentry_capture() as cap:
        plain = falcon.testing.TestClient(make_wsgi_app(plain_server, token_key=b"k" * 32))
        hooked = falcon.testing.TestClient(
            make_wsgi_app(hooked_server, token_key=b"k" * 32, sentry_config=SentryConfig())
        )
        assert plain_server.hooks == () and hooked_server.hooks != ()

        template = falcon.testing.create_environ(
            method="POST", path="/Bench/add", headers={**headers, "Content-Length": str(len(body))}
        )

        def wsgi(app: Any) -> Callable[[int], None]:
            def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
                assert status.startswith("200")

            def run(n: int) -> None:
                for _ in range(n):
                    environ = dict(template)
                    environ["wsgi.input"] = io.BytesIO(body)
                    b"".join(app(environ, start_response))

            return run

        def poster(client: falcon.testing.TestClient) -> Callable[[int], None]:
            post = client.simulate_post

            def run(n: int) -> None:
                for _ in range(n):
                    post("/Bench/add", body=body, headers=headers)

            return run

        for client in (plain, hooked):
            resp = client.simulate_post("/Bench/add", body=body, headers=headers)
            assert resp.status_code == 200, resp.text
            assert pa.ipc.open_stream(resp.content).read_all()["result"][0].as_py() == 3
        names = [t["transaction"] for t in cap.transactions]
        assert len(names) == 2 and names[1] == "rpc add", names  # the SDK traced both; ours is renamed
        cap.transport.clear()

        sampler = Interleaved(
            {
                "no sentry_config": poster(plain),
                "sentry_config": poster(hooked),
                "WSGI, no sentry_config": wsgi(plain.app),
                "WSGI, sentry_config": wsgi(hooked.app),
            },
            ops=5,
            between=cap.transport.clear,
            clock="thread",
        )
        ratio_benchmark.run(sampler, rounds=profile.rounds(150), warmup=5)
        assert not cap.events
    record_ratio(
        sampler.ratio(
            "http.sentry",
            "HTTP unary (falcon.testing) with sentry_config vs without, SDK initialised in both",
            "no sentry_config",
            "sentry_config",
        )
    )
    record_ratio(
        sampler.ratio(
            "http.sentry.wsgi",
            "HTTP unary, app called directly with a WSGI environ, with vs without sentry_config",
            "WSGI, no sentry_config",
            "WSGI, sentry_config",
            note="informational: no falcon.testing overhead (wsgiref lint, signature inspection)",
        )
    )
