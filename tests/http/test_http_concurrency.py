"""8 client threads x 200 calls, each thread a distinct JWT principal, one threaded waitress server.

Every result must be correct and name its own caller: no response, auth context or
stream state crosses from one thread's calls into another's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from support.http import TOKEN_KEY, Tracer, TracerImpl
from support.jwt import JWT_SECRET, sign_jwt

from vgi_rpc import AnnotatedBatch, RpcServer
from vgi_rpc.http import HttpServerHandle, http_connect, jwt_authenticator, start_http_server
from vgi_rpc.testing import RecordingHook

THREADS = 8
CALLS = 200
STREAM_EVERY = 20  # every 20th call is a 3-turn exchange instead of a unary call


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[HttpServerHandle, RecordingHook]]:
    server = RpcServer(Tracer, TracerImpl())
    hook = RecordingHook()
    server.add_hook(hook)
    with start_http_server(
        server, threads=THREADS, token_key=TOKEN_KEY, authenticate=jwt_authenticator(key=JWT_SECRET)
    ) as handle:
        yield handle, hook


@pytest.mark.timeout(300)
def test_many_threads_many_principals_no_cross_talk(served: tuple[HttpServerHandle, RecordingHook]) -> None:
    handle, hook = served
    errors: list[str] = []
    done = [0] * THREADS
    shared = httpx.Client(limits=httpx.Limits(max_connections=THREADS * 2), timeout=60)
    start = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        principal = f"user-{n}"
        headers = {"Authorization": f"Bearer {sign_jwt(principal)}"}
        try:
            with http_connect(Tracer, handle.base_url, headers=headers, client=shared) as t:
                start.wait(timeout=30)
                for i in range(CALLS):
                    if i % STREAM_EVERY == 0:
                        with t.accumulate() as s:
                            totals = []
                            for x in (i, 1, 2):
                                out = s.exchange(AnnotatedBatch.from_pydict({"i": [x]})).to_pydict()
                                if out["principal"] != [principal]:
                                    errors.append(f"{principal} stream got {out['principal']}")
                                totals.append(out["i"][0])
                            if totals != [i, i + 1, i + 3]:
                                errors.append(f"{principal} stream totals {totals}")
                    else:
                        got = t.whoami(tag=n * 100_000 + i)
                        if got != f"{principal}:{n * 100_000 + i}":
                            errors.append(f"{principal} call {i} got {got!r}")
                    done[n] += 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(f"{principal}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    shared.close()
    assert not errors, errors[:10]
    assert done == [CALLS] * THREADS
    # every dispatch the server ran saw the caller that made it
    streams = CALLS // STREAM_EVERY
    assert len(hook.calls) == THREADS * ((CALLS - streams) + streams * 4)
    by_stream: dict[str, set[str | None]] = {}
    for seen in hook.calls:
        assert seen.ended and seen.error is None
        assert seen.auth.domain == "jwt" and seen.auth.principal is not None
        if seen.info.stream_id is not None:
            by_stream.setdefault(seen.info.stream_id, set()).add(seen.auth.principal)
    assert len(by_stream) == THREADS * streams
    assert all(len(principals) == 1 for principals in by_stream.values())
