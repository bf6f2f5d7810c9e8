"""``vgi_rpc._telemetry``: the rpc.* names both instrumentations emit, the status-line seam, the ContextVar reset."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator

import pytest

from vgi_rpc import _telemetry
from vgi_rpc.hooks import DispatchInfo

INFO = DispatchInfo(name="add", method_type="unary", service="Calc", server_id="s1", request_id="r1")


def test_rpc_attributes_under_each_instrumentations_method_type_key() -> None:
    assert _telemetry.rpc_attributes(INFO) == {
        "rpc.system": "vgi_rpc",
        "rpc.service": "Calc",
        "rpc.method": "add",
        "rpc.method_type": "unary",
    }
    otel = _telemetry.rpc_attributes(INFO, method_type_key="rpc.vgi_rpc.method_type", service="Other")
    assert otel == {
        "rpc.system": "vgi_rpc",
        "rpc.service": "Other",
        "rpc.method": "add",
        "rpc.vgi_rpc.method_type": "unary",
    }
    assert _telemetry.rpc_attributes(INFO) is not _telemetry.rpc_attributes(INFO)  # callers add to it


@pytest.fixture
def callbacks() -> Iterator[list[str]]:
    """The registry as it was, restored after the test (vgi_rpc.sentry may have registered its callback)."""
    saved = list(_telemetry._after_status_line)
    _telemetry._after_status_line.clear()
    try:
        yield []
    finally:
        _telemetry._after_status_line[:] = saved


def test_status_line_callbacks_run_once_each_and_a_failing_one_is_logged(
    callbacks: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert not _telemetry.has_status_line_callbacks()
    _telemetry.status_line_decided()  # nothing registered: nothing to do

    def broken() -> None:
        raise RuntimeError("boom")

    def record() -> None:
        callbacks.append("ran")

    _telemetry.after_status_line(broken)
    _telemetry.after_status_line(record)
    _telemetry.after_status_line(record)  # registering twice runs it once
    assert _telemetry.has_status_line_callbacks()
    with caplog.at_level(logging.WARNING, logger="vgi_rpc"):
        _telemetry.status_line_decided()
    assert callbacks == ["ran"]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [RuntimeError]


def test_the_sentry_adapter_registers_its_status_line_callback() -> None:
    pytest.importorskip("sentry_sdk")
    from vgi_rpc import _sentry_dispatch

    assert _sentry_dispatch.after_start_response in _telemetry._after_status_line


_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar("_VAR", default=None)


def test_reset_context_var_in_the_same_context_is_a_reset() -> None:
    token = _VAR.set("call")
    _telemetry.reset_context_var(_VAR, token)
    assert _VAR not in contextvars.copy_context()  # as before the set: no value at all


def test_reset_context_var_from_another_context_puts_the_old_value_back() -> None:
    def set_then_leave_elsewhere(before: str | None) -> str | None:
        if before is not None:
            _VAR.set(before)
        token = _VAR.set("call")

        def leave() -> str | None:
            _telemetry.reset_context_var(_VAR, token)  # var.reset() raises ValueError here
            return _VAR.get()

        return contextvars.copy_context().run(leave)

    assert contextvars.copy_context().run(set_then_leave_elsewhere, "before") == "before"
    assert contextvars.copy_context().run(set_then_leave_elsewhere, None) is None  # no old value: None
