"""``Shop``: the service the Sentry suites (``tests/sentry/``) call.

Unary calls that succeed, fail (``ValueError``, ``PermissionError``, ``KeyError``,
``LookupError``) or decorate the current Sentry scope (``mark``); ``search`` takes
every parameter type ``record_params`` must keep or drop; ``login`` holds secrets
the redactor must hide; a producer (``countdown``, column ``n``, optionally
failing at a given value) and an exchange (``scale``, column ``x``, failing on
negative input; both states, ``Ticks`` and ``CheckedScale``, live in
``support.streams``). Names, columns and exception types are asserted by the
Sentry tests: add, don't change.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import sentry_sdk

from support.streams import CheckedScale, Ticks
from vgi_rpc import AnnotatedBatch, AuthContext, RpcServer
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
from vgi_rpc.streams import Stream

COUNT_SCHEMA = pa.schema([pa.field("n", pa.int64())])
X_SCHEMA = pa.schema([pa.field("x", pa.float64())])


@dataclass
class Point:
    x: int
    y: int


class Shop(Protocol):
    def add(self, a: int, b: int) -> int: ...
    def fail(self, message: str) -> int: ...
    def deny(self) -> int: ...
    def mark(self, marker: str, fail: bool) -> int: ...
    def search(
        self,
        table: str,
        predicate: str = "",
        limit: int = 10,
        ratio: float = 0.5,
        exact: bool = False,
        columns: list[str] | None = None,
        ids: list[int] | None = None,
        flags: list[bool] | None = None,
        empty: list[int] | None = None,
        options: dict[str, str] | None = None,
        blob: bytes = b"",
        point: Point | None = None,
        api_token: str = "",
        db_password: str = "",
        fail: bool = False,
    ) -> int: ...
    def login(self, user: str, api_token: str, db_password: str) -> int: ...
    def countdown(self, n: int, fail_at: int = -1) -> Stream[Ticks]: ...
    def scale(self, factor: float) -> Stream[CheckedScale]: ...


class ShopImpl:
    def add(self, a: int, b: int) -> int:
        return a + b

    def fail(self, message: str) -> int:
        raise ValueError(message)

    def deny(self) -> int:
        raise PermissionError("no entry")

    def mark(self, marker: str, fail: bool) -> int:
        # What an application might do inside a call: decorate the current scope.
        sentry_sdk.set_tag("app.marker", marker)
        sentry_sdk.set_user({"id": f"user-{marker}"})
        sentry_sdk.set_context("app", {"marker": marker})
        sentry_sdk.add_breadcrumb(message=f"crumb-{marker}")
        if fail:
            raise LookupError(f"failed {marker}")
        return len(marker)

    def search(self, table: str, **kwargs: Any) -> int:
        if kwargs.get("fail"):
            raise KeyError(f"no table {table}")
        return 1

    def login(self, user: str, api_token: str, db_password: str) -> int:
        credentials = (api_token, db_password)  # a local holding the secrets, as real code would
        raise PermissionError(f"login refused for {user} ({len(credentials)} credentials)")

    def countdown(self, n: int, fail_at: int = -1) -> Stream[Ticks]:
        if n < 0:
            raise ValueError("n must be >= 0")
        return Stream(COUNT_SCHEMA, Ticks(n, fail_at))

    def scale(self, factor: float) -> Stream[CheckedScale]:
        if factor == 0:
            raise ZeroDivisionError("factor must not be 0")
        return Stream(X_SCHEMA, CheckedScale(factor), input_schema=X_SCHEMA)


def make_server(config: SentryConfig | None = None) -> RpcServer:
    """A Shop server with the Sentry hook attached with *config*."""
    return instrument_server_sentry(RpcServer(Shop, ShopImpl()), config)


def xs(*values: float) -> AnnotatedBatch:
    """An input batch for ``scale`` (column ``x``, float64)."""
    return AnnotatedBatch.from_pydict({"x": list(values)}, schema=X_SCHEMA)


def call_with_auth(server: RpcServer, method: str, auth: AuthContext, **kwargs: Any) -> None:
    """Run one unary call through the server's public request path with an authenticated caller."""
    spec = server.lookup(method)
    server.handle_unary(spec, kwargs, io.BytesIO(), auth=auth, transport="pipe")
