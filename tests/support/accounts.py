"""``Accounts``: a service that reports who is calling, for the pipe ``auth=`` tests.

Used in-process by ``tests/pipe/test_pipe_auth.py`` and by the ``run_server``
worker it starts (which puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

from typing import Protocol

from vgi_rpc import AuthContext, CallContext

ALICE = AuthContext(
    domain="pipe",
    authenticated=True,
    principal="user-7",
    claims={"preferred_username": "alice", "email": "alice@example.com", "tenant": "acme"},
)


class Accounts(Protocol):
    def whoami(self) -> str: ...
    def close_account(self, reason: str) -> None: ...


class AccountsImpl:
    def whoami(self, ctx: CallContext) -> str:
        auth = ctx.auth
        return f"{auth.domain}:{auth.authenticated}:{auth.principal}:{auth.claims.get('tenant')}"

    def close_account(self, reason: str) -> None:
        raise PermissionError(f"cannot close: {reason}")
