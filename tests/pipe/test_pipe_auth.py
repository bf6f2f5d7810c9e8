"""An authenticated caller on the pipe: ``serve_pipe(..., auth=)`` and ``run_server(..., auth=)``.

The pipe has no authenticator, so the side that starts the server says who is
calling. These tests use public names only, as a user's test would: the
implementation sees ``ctx.auth``, and the real Sentry SDK (in-memory
transport, default integrations) receives ``user.*`` and ``auth.*`` (S9, S11).
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path

import pytest
from support.accounts import ALICE, Accounts, AccountsImpl

from vgi_rpc import RpcError, RpcServer, connect, run_server, serve_pipe
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
from vgi_rpc.testing import SentryCapture


def test_serve_pipe_calls_are_made_as_the_given_caller() -> None:
    with serve_pipe(Accounts, AccountsImpl(), auth=ALICE) as proxy:
        assert proxy.whoami() == "pipe:True:user-7:acme"
        assert proxy.whoami() == "pipe:True:user-7:acme"  # every call of the connection


def test_serve_pipe_is_anonymous_by_default() -> None:
    with serve_pipe(Accounts, AccountsImpl()) as proxy:
        assert proxy.whoami() == "None:False:None:None"


def test_sentry_sees_the_pipe_caller(sentry_capture: SentryCapture) -> None:
    """S9, S11, S12: user from principal and claims, auth tags, claim tags -- on the pipe."""
    server = instrument_server_sentry(
        RpcServer(Accounts, AccountsImpl()), SentryConfig(claim_tags={"tenant": "auth.tenant"})
    )
    with serve_pipe(server, auth=ALICE) as proxy, pytest.raises(RpcError):
        proxy.close_account(reason="test")
    event = sentry_capture.event(method="close_account")
    assert event["user"] == {"id": "user-7", "username": "alice", "email": "alice@example.com"}
    assert event["tags"]["auth.domain"] == "pipe"
    assert event["tags"]["auth.authenticated"] == "true"
    assert event["tags"]["auth.tenant"] == "acme"


def test_an_anonymous_pipe_caller_has_no_user(sentry_capture: SentryCapture) -> None:
    server = instrument_server_sentry(RpcServer(Accounts, AccountsImpl()), SentryConfig())
    with serve_pipe(server) as proxy, pytest.raises(RpcError):
        proxy.close_account(reason="test")
    event = sentry_capture.event(method="close_account")
    assert "user" not in event
    assert event["tags"]["auth.authenticated"] == "false"


WORKER = """
import sys
sys.path.insert(0, {tests!r})
from support.accounts import ALICE, Accounts, AccountsImpl
from vgi_rpc import run_server

run_server(Accounts, AccountsImpl(){auth})
"""


@pytest.mark.parametrize(
    ("auth", "expected"), [(", auth=ALICE", "pipe:True:user-7:acme"), ("", "None:False:None:None")]
)
def test_run_server_serves_connect_as_the_given_caller(tmp_path: Path, auth: str, expected: str) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(WORKER.format(tests=str(Path(__file__).resolve().parents[1]), auth=auth))
    )
    with connect(Accounts, [sys.executable, str(worker)]) as proxy:
        assert proxy.whoami() == expected


def test_auth_is_keyword_only_and_anonymous_by_default() -> None:
    from vgi_rpc.auth import ANONYMOUS

    for function in (serve_pipe, run_server):
        parameter = inspect.signature(function).parameters["auth"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.default is ANONYMOUS
