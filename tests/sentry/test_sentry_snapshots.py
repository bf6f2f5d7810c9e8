"""Snapshots of what Sentry stores about each call, one per documented field.

``tests/sentry/test_sentry_*.py`` assert individual values; this module pins
*everything Sentry stores* about each scenario's calls (error events, root and
child spans, session counts), read by
:class:`vgi_rpc.testing.snapshots.SentryCallsExtension` -- the ``sentry_snapshot``
fixture's -- and stored in ``tests/snapshots/test_sentry_snapshots/`` (the
project's snapshots folder, one level up from this module). **One set for every
SDK generation**: the same files hold on sentry-sdk 2.x and 3.x. Any change to
what ``vgi_rpc/sentry.py`` records -- a tag, a span attribute, a context field
added, renamed or valued differently -- fails one of these tests; review the
diff, then run ``pytest --snapshot-update``.

One test per row of the "Captured Context" table of the Sentry page (the
``FIELD_TABLE`` ids are the rows, in the page's order), plus the parameter
rules (truncation, primitive filtering, tag clipping, redaction) and two
isolation cases (per-call scope, a failing sibling hook). Calls go over
``serve_pipe``; the rows that need an authenticated caller use the same
request path the pipe transport uses (``RpcServer.handle_unary(...,
transport="pipe")``) because the pipe has no authenticator of its own.

Each test also asserts its row's value explicitly, so a failure says which
promise moved, not only that some JSON did.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pytest
import sentry_sdk
from support.sentry import FAILED, sdk2_logging

import vgi_rpc
from vgi_rpc import AnnotatedBatch, AuthContext, RpcError, RpcServer, serve_pipe
from vgi_rpc.hooks import DispatchInfo
from vgi_rpc.sentry import SentryConfig, instrument_server_sentry
from vgi_rpc.streams import ExchangeState, OutputCollector, ProducerState, Stream
from vgi_rpc.testing import SentryCapture
from vgi_rpc.testing.snapshots import SentryCallsExtension

pytest_plugins = ["pytester"]

# A fixed release and environment: the SDK otherwise derives the release from
# the git checkout, which would make the envelope depend on where tests run.
pytestmark = pytest.mark.sentry_options(release="vgi-rpc@snapshot", environment="test")


class ProjectSnapshots(SentryCallsExtension):
    """The plugin's extension, with the project's folder: ``tests/snapshots/<module>/``."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        tests_dir = Path(test_location.filepath).parent.parent
        return str(tests_dir / cls.snapshot_dirname / test_location.basename)


@pytest.fixture
def sentry_snapshot(snapshot: Any) -> Any:
    """The plugin's fixture, stored in the project's snapshots folder."""
    return snapshot.use_extension(ProjectSnapshots)


SERVER_ID = "5e4e7ec0ffee"
N_SCHEMA = pa.schema([pa.field("n", pa.int64())])
X_SCHEMA = pa.schema([pa.field("x", pa.float64())])


# -- the service ----------------------------------------------------------------------------------
# Its own states, not support.streams' Ticks/CheckedScale: the snapshots pin the module
# and file the failing frames come from (``test_sentry_snapshots``) and their messages.


@dataclass
class Ticks(ProducerState):
    n: int
    fail_at: int = -1

    def produce(self, out: OutputCollector, ctx: Any) -> None:
        if self.n == self.fail_at:
            raise RuntimeError(f"tick {self.n} failed")
        if self.n <= 0:
            out.finish()
            return
        out.emit_pydict({"n": [self.n]})
        self.n -= 1


@dataclass
class Doubler(ExchangeState):
    factor: float

    def exchange(self, input: AnnotatedBatch, out: OutputCollector, ctx: Any) -> None:
        xs = input.batch.column("x").to_pylist()
        if any(x < 0 for x in xs):
            raise ArithmeticError("negative input")
        out.emit_pydict({"x": [x * self.factor for x in xs]})


@dataclass
class Box:
    w: int


class Ledger(Protocol):
    def post(self, account: str, amount: int) -> int: ...
    def whoami(self) -> str: ...
    def note(self, marker: str, fail: bool) -> int: ...
    def record(
        self,
        text: str = "",
        flag: bool = False,
        count: int = 0,
        ratio: float = 0.0,
        names: list[str] | None = None,
        numbers: list[int] | None = None,
        options: dict[str, str] | None = None,
        blob: bytes = b"",
        box: Box | None = None,
        api_token: str = "",
        fail: bool = True,
    ) -> int: ...
    def ticks(self, n: int, fail_at: int = -1) -> Stream[Ticks]: ...
    def doubler(self, factor: float) -> Stream[Doubler]: ...


class LedgerImpl:
    def post(self, account: str, amount: int) -> int:
        if amount < 0:
            raise ValueError(f"negative amount for {account}")
        return amount

    def whoami(self) -> str:
        raise PermissionError("who are you?")

    def note(self, marker: str, fail: bool) -> int:
        sentry_sdk.set_tag("app.marker", marker)
        sentry_sdk.set_user({"id": f"user-{marker}"})
        sentry_sdk.add_breadcrumb(message=f"crumb-{marker}")
        if fail:
            raise LookupError(f"failed {marker}")
        return len(marker)

    def record(self, **kwargs: Any) -> int:
        if kwargs.get("fail", True):
            raise RuntimeError("recorded")
        return 0

    def ticks(self, n: int, fail_at: int = -1) -> Stream[Ticks]:
        return Stream(N_SCHEMA, Ticks(n, fail_at))

    def doubler(self, factor: float) -> Stream[Doubler]:
        return Stream(X_SCHEMA, Doubler(factor), input_schema=X_SCHEMA)


def ledger(config: SentryConfig | None = None) -> RpcServer:
    return instrument_server_sentry(RpcServer(Ledger, LedgerImpl(), server_id=SERVER_ID), config)


def xs(*values: float) -> AnnotatedBatch:
    return AnnotatedBatch.from_pydict({"x": list(values)}, schema=X_SCHEMA)


def call_as(server: RpcServer, auth: AuthContext, method: str, **kwargs: Any) -> None:
    """One unary call on the pipe request path, with an explicit caller."""
    server.handle_unary(server.lookup(method), kwargs, io.BytesIO(), auth=auth, transport="pipe")


JWT_USER = AuthContext(
    domain="jwt",
    authenticated=True,
    principal="sub-42",
    claims={"preferred_username": "ada", "email": "ada@example.com", "name": "Ada L.", "tenant_id": "acme"},
)


# -- one scenario per row of the field table ---------------------------------------------------------


def _failed_unary(cap: SentryCapture) -> dict[str, Any]:
    with serve_pipe(ledger()) as proxy, pytest.raises(RpcError):
        proxy.post(account="acct-1", amount=-5)
    return cap.event("post")


def row_contexts_rpc_method(cap: SentryCapture) -> None:
    assert _failed_unary(cap)["contexts"]["rpc"]["method"] == "post"


def row_contexts_rpc_method_type(cap: SentryCapture) -> None:
    with serve_pipe(ledger()) as proxy, pytest.raises(RpcError):
        list(proxy.ticks(n=3, fail_at=2))
    assert cap.event("ticks")["contexts"]["rpc"]["method_type"] == "stream"


def row_contexts_rpc_service(cap: SentryCapture) -> None:
    assert _failed_unary(cap)["contexts"]["rpc"]["service"] == "Ledger"


def row_contexts_rpc_server_id(cap: SentryCapture) -> None:
    assert _failed_unary(cap)["contexts"]["rpc"]["server_id"] == SERVER_ID


def row_user_username(cap: SentryCapture) -> None:
    call_as(ledger(), JWT_USER, "whoami")
    user = cap.event("whoami")["user"]
    assert user == {"id": "sub-42", "username": "ada", "email": "ada@example.com", "name": "Ada L."}


def row_tags_rpc_method(cap: SentryCapture) -> None:
    """Always set: shown with record_request_context=False, which removes the rpc context."""
    with serve_pipe(ledger(SentryConfig(record_request_context=False))) as proxy, pytest.raises(RpcError):
        proxy.post(account="acct-1", amount=-5)
    event = cap.event("post")
    assert event["tags"]["rpc.method"] == "post"
    assert "rpc" not in event["contexts"]


def row_tags_rpc_method_type(cap: SentryCapture) -> None:
    """Always set: an exchange stream's error, with record_request_context=False."""
    with serve_pipe(ledger(SentryConfig(record_request_context=False))) as proxy:
        session = proxy.doubler(factor=2.0)
        assert session.exchange(xs(1.0)).batch.column("x").to_pylist() == [2.0]
        with pytest.raises(RpcError):
            session.exchange(xs(-1.0))
    assert cap.event("doubler")["tags"]["rpc.method_type"] == "stream"


def row_tags_auth_domain(cap: SentryCapture) -> None:
    call_as(ledger(), JWT_USER, "whoami")
    assert cap.event("whoami")["tags"]["auth.domain"] == "jwt"


def row_tags_auth_authenticated(cap: SentryCapture) -> None:
    """An anonymous pipe caller: "false", no auth.domain, no user."""
    event = _failed_unary(cap)
    assert event["tags"]["auth.authenticated"] == "false"
    assert "auth.domain" not in event["tags"]
    assert "user" not in event


def row_tags_claim_tag(cap: SentryCapture) -> None:
    server = ledger(SentryConfig(claim_tags={"tenant_id": "auth.tenant_id", "absent": "auth.absent"}))
    call_as(server, JWT_USER, "whoami")
    tags = cap.event("whoami")["tags"]
    assert tags["auth.tenant_id"] == "acme"
    assert "auth.absent" not in tags


def row_tags_custom_tag(cap: SentryCapture) -> None:
    config = SentryConfig(custom_tags={"env": "prod", "team": "ledger"})
    with serve_pipe(ledger(config)) as proxy, pytest.raises(RpcError):
        proxy.post(account="acct-1", amount=-5)
    tags = cap.event("post")["tags"]
    assert (tags["env"], tags["team"]) == ("prod", "ledger")


def _root_data(cap: SentryCapture, method: str) -> dict[str, Any]:
    data: dict[str, Any] = cap.transaction(method)["contexts"]["trace"]["data"]
    return data


def row_span_data_rpc_system(cap: SentryCapture) -> None:
    """A successful unary call with performance on: a transaction, no error event."""
    with serve_pipe(ledger(SentryConfig(enable_performance=True))) as proxy:
        assert proxy.post(account="acct-1", amount=5) == 5
    cap.assert_no_events()
    assert _root_data(cap, "post")["rpc.system"] == "vgi_rpc"


def row_span_data_rpc_service(cap: SentryCapture) -> None:
    """A failed unary call with performance on: the event and its failed transaction (2.x internal_error, 3.x error)."""
    with serve_pipe(ledger(SentryConfig(enable_performance=True))) as proxy, pytest.raises(RpcError):
        proxy.post(account="acct-1", amount=-5)
    assert _root_data(cap, "post")["rpc.service"] == "Ledger"
    assert cap.transaction("post")["contexts"]["trace"]["status"] == FAILED
    assert (
        cap.event("post")["contexts"]["trace"]["trace_id"]
        == cap.transaction("post")["contexts"]["trace"]["trace_id"]
    )


def row_span_data_rpc_method(cap: SentryCapture) -> None:
    """A custom op_name."""
    with serve_pipe(ledger(SentryConfig(enable_performance=True, op_name="ledger.rpc"))) as proxy:
        proxy.post(account="acct-1", amount=5)
    assert _root_data(cap, "post")["rpc.method"] == "post"
    assert cap.transaction("post")["contexts"]["trace"]["op"] == "ledger.rpc"


def row_span_data_rpc_method_type(cap: SentryCapture) -> None:
    """A producer stream with performance on."""
    with serve_pipe(ledger(SentryConfig(enable_performance=True))) as proxy:
        assert [b.batch.column("n").to_pylist() for b in proxy.ticks(n=2)] == [[2], [1]]
    assert _root_data(cap, "ticks")["rpc.method_type"] == "stream"


def row_span_data_rpc_stream_id(cap: SentryCapture) -> None:
    """An exchange stream with performance on: rpc.stream_id in span data, never as a tag."""
    with serve_pipe(ledger(SentryConfig(enable_performance=True))) as proxy:
        session = proxy.doubler(factor=3.0)
        session.exchange(xs(1.0))
        session.exchange(xs(2.0))
        session.close()
    transactions = cap.transactions_for("doubler")
    assert transactions, cap.describe()
    stream_ids = {t["contexts"]["trace"]["data"]["rpc.stream_id"] for t in transactions}
    assert len(stream_ids) == 1
    assert all("rpc.stream_id" not in t["tags"] for t in transactions)


FIELD_TABLE: dict[str, Callable[[SentryCapture], None]] = {
    "contexts.rpc.method": row_contexts_rpc_method,
    "contexts.rpc.method_type": row_contexts_rpc_method_type,
    "contexts.rpc.service": row_contexts_rpc_service,
    "contexts.rpc.server_id": row_contexts_rpc_server_id,
    "user.username": row_user_username,
    "tags.rpc.method": row_tags_rpc_method,
    "tags.rpc.method_type": row_tags_rpc_method_type,
    "tags.auth.domain": row_tags_auth_domain,
    "tags.auth.authenticated": row_tags_auth_authenticated,
    "tags.claim_tag": row_tags_claim_tag,
    "tags.custom_tag": row_tags_custom_tag,
    "span_data.rpc.system": row_span_data_rpc_system,
    "span_data.rpc.service": row_span_data_rpc_service,
    "span_data.rpc.method": row_span_data_rpc_method,
    "span_data.rpc.method_type": row_span_data_rpc_method_type,
    "span_data.rpc.stream_id": row_span_data_rpc_stream_id,
}


@pytest.mark.parametrize("row", list(FIELD_TABLE))
def test_field_table_row(row: str, sentry_capture: SentryCapture, sentry_snapshot: Any) -> None:
    """S8 S9 S10 S11 S12 S13 S14 S15 S18 S28: the whole envelope behind one row of the field table."""
    FIELD_TABLE[row](sentry_capture)
    assert sentry_capture == sentry_snapshot


# -- parameter rules --------------------------------------------------------------------------------


def _record(cap: SentryCapture, config: SentryConfig, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    with serve_pipe(ledger(config)) as proxy, pytest.raises(RpcError):
        proxy.record(**kwargs)
    return cap.event("record"), _root_data(cap, "record")


def test_param_truncation(sentry_capture: SentryCapture, sentry_snapshot: Any) -> None:
    """S24 B3: strings over max_param_value_bytes are cut on a character boundary, within the cap."""
    text = "é" * 20  # 40 bytes of two-byte characters
    _, data = _record(
        sentry_capture,
        SentryConfig(record_params=True, enable_performance=True, max_param_value_bytes=15),
        text=text,
    )
    recorded = data["rpc.param.text"]
    assert len(recorded.encode("utf-8")) <= 15
    assert text.startswith(recorded.rstrip("…")) or text.startswith(recorded)
    assert "\ufffd" not in recorded
    assert sentry_capture == sentry_snapshot


def test_param_primitive_filtering(sentry_capture: SentryCapture, sentry_snapshot: Any) -> None:
    """S20 S25: str, bool, int, float and homogeneous lists are recorded; dicts, bytes, dataclasses are not."""
    _, data = _record(
        sentry_capture,
        SentryConfig(record_params=True, enable_performance=True),
        text="orders",
        flag=True,
        count=3,
        ratio=0.25,
        names=["a", "b"],
        numbers=[1, 2],
        options={"k": "v"},
        blob=b"\x00\x01",
        box=Box(w=2),
    )
    params = {k: v for k, v in data.items() if k.startswith("rpc.param.")}
    assert params.get("rpc.param.names") == ["a", "b"]
    for dropped in ("options", "blob", "box"):
        assert f"rpc.param.{dropped}" not in params
    assert sentry_capture == sentry_snapshot


def test_tag_params_clipping_and_redaction(sentry_capture: SentryCapture, sentry_snapshot: Any) -> None:
    """S21 S23 S26 B4: tag_params are clipped to 200 chars; the default redactor drops api_token everywhere."""
    secret = "tok-" + "s" * 12
    event, data = _record(
        sentry_capture,
        SentryConfig(record_params=True, enable_performance=True, tag_params=("text", "api_token")),
        text="t" * 300,
        api_token=secret,
    )
    assert event["tags"]["rpc.param.text"] == "t" * 200
    assert "rpc.param.api_token" not in event["tags"]
    assert "rpc.param.api_token" not in data
    assert secret not in str(sentry_capture.envelopes)
    assert sentry_capture == sentry_snapshot


# -- isolation --------------------------------------------------------------------------------------


def test_per_call_scope_isolation(sentry_capture: SentryCapture, sentry_snapshot: Any) -> None:
    """B2: what one call puts on its scope (tag, user, breadcrumb) is absent from the next call's event."""
    with serve_pipe(ledger()) as proxy:
        with pytest.raises(RpcError):
            proxy.note(marker="first", fail=True)
        with pytest.raises(RpcError):
            proxy.note(marker="second", fail=True)
    first, second = sentry_capture.events_for("note")
    assert (first["tags"]["app.marker"], second["tags"]["app.marker"]) == ("first", "second")
    assert second["user"] == {"id": "user-second"}
    assert [c.get("message") for c in second["breadcrumbs"]["values"]].count("crumb-first") == 0
    assert sentry_capture == sentry_snapshot


class _ExplodingHook:
    """A sibling dispatch hook that fails at start and end."""

    def on_dispatch_start(
        self, info: DispatchInfo, auth: AuthContext, transport_metadata: Mapping[str, str], kwargs: Any
    ) -> object:
        raise RuntimeError("sibling hook failed at start")

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        raise RuntimeError("sibling hook failed at end")


@pytest.fixture
def exploding_server() -> Iterator[RpcServer]:
    server = RpcServer(Ledger, LedgerImpl(), server_id=SERVER_ID)
    server.add_hook(_ExplodingHook())
    yield instrument_server_sentry(server, SentryConfig(enable_performance=True))


@pytest.mark.sentry_options(integrations=sdk2_logging())  # the hooks' WARNING lines are breadcrumbs
def test_failing_sibling_hook_isolation(
    sentry_capture: SentryCapture, sentry_snapshot: Any, exploding_server: RpcServer
) -> None:
    """S30 B1 B2: a hook that raises changes neither the call's result nor the Sentry envelopes.

    B2: the failing hook's log line of the first call stays with the first call: the
    second call's error event carries exactly one such breadcrumb (its own), because
    the Sentry hook is outermost and its per-call scope encloses the other hooks.
    """
    with serve_pipe(exploding_server) as proxy:
        assert proxy.post(account="acct-1", amount=5) == 5
        with pytest.raises(RpcError):
            proxy.post(account="acct-1", amount=-5)
    assert len(sentry_capture.transactions_for("post")) == 2
    event = sentry_capture.event("post")
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    hook_crumbs = [b for b in event["breadcrumbs"]["values"] if "failed in on_dispatch_start" in b["message"]]
    assert len(hook_crumbs) == 1
    assert sentry_capture == sentry_snapshot


# -- the snapshots really guard vgi_rpc/sentry.py -----------------------------------------------------

_MUTANT = """

# --- appended by test_a_changed_sentry_field_fails_the_snapshots: one extra tag and span datum per call ---
_unmutated_collect = _SentryDispatchHook._collect


def _mutated_collect(self, info, auth, kwargs):
    facts = _unmutated_collect(self, info, auth, kwargs)
    facts.tags["mutant"] = "yes"  # a tag on events, and on spans (3.x: an attribute)
    facts.data["rpc.mutant"] = "yes"  # span data on the root and the hook's span
    return facts


_SentryDispatchHook._collect = _mutated_collect
"""


def test_a_changed_sentry_field_fails_the_snapshots(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the package whose sentry.py adds a tag and a span datum: every row test fails on its snapshot."""
    here = Path(__file__).resolve().parent
    package = Path(vgi_rpc.__file__).resolve().parent
    shutil.copytree(package, pytester.path / "vgi_rpc", ignore=shutil.ignore_patterns("__pycache__"))
    sentry_py = pytester.path / "vgi_rpc" / "sentry.py"
    sentry_py.write_text(sentry_py.read_text(encoding="utf-8") + _MUTANT, encoding="utf-8")
    (pytester.path / "sentry").mkdir()
    shutil.copy(here / "test_sentry_snapshots.py", pytester.path / "sentry" / "test_sentry_snapshots.py")
    shutil.copytree(
        here.parent / "support", pytester.path / "support", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        here.parent / "snapshots" / "test_sentry_snapshots",
        pytester.path / "snapshots" / "test_sentry_snapshots",
    )
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_field_table_row")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == len(FIELD_TABLE), result.stdout.str()
    result.stdout.fnmatch_lines(["*snapshot*failed*"])
    assert '"mutant": "yes"' in result.stdout.str()
