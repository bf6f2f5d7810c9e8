"""pytest plugin for vgi_rpc, registered through the ``pytest11`` entry point.

Installing ``vgi_rpc`` is enough: pytest loads this module and the fixtures
below are available in every test, with no ``conftest.py``.

Fixtures:

``sentry_capture``
    A :class:`vgi_rpc.testing.SentryCapture` active for one test: the real
    ``sentry_sdk`` initialised with the in-memory transport, previous client
    and scopes restored afterwards.  Extra ``sentry_sdk.init`` options come
    from the ``sentry_options`` marker::

        @pytest.mark.sentry_options(send_default_pii=True)
        def test_user(sentry_capture): ...

``sentry_snapshot``
    syrupy's ``snapshot`` fixture using
    :class:`vgi_rpc.testing.snapshots.SentryEnvelopeExtension` (only when
    syrupy is installed).

``otel_capture``
    A :class:`vgi_rpc.testing.otel.OtelCapture` for one test: real SDK
    providers with in-memory exporters; instrument with
    ``otel_capture.config``.  No global provider is set (see
    :mod:`vgi_rpc.testing.otel`).  Needs the ``otel`` extra.

When a test that used ``otel_capture`` fails, its report gets a **Captured
OpenTelemetry spans** section: one line per finished span and metric point.

``sentry_sdk`` and OpenTelemetry are imported lazily, when a fixture is used,
so merely having the plugin loaded costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from vgi_rpc.testing import SentryCapture
    from vgi_rpc.testing.otel import OtelCapture

_MARKER = "sentry_options"
OTEL_SECTION = "Captured OpenTelemetry spans"
_SECTIONS = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``sentry_options`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**init_options): extra sentry_sdk.init options for the sentry_capture fixture",
    )


@pytest.fixture(name="sentry_capture")
def _sentry_capture_fixture(request: pytest.FixtureRequest) -> Iterator[SentryCapture]:
    """The real Sentry SDK with an in-memory transport, for one test (see ``vgi_rpc.testing``)."""
    from vgi_rpc.testing import sentry_capture

    options: dict[str, Any] = {}
    # Closest marker last, so a function marker overrides a class/module marker.
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise TypeError(f"@pytest.mark.{_MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    with sentry_capture(**options) as cap:
        yield cap


@pytest.fixture(name="sentry_snapshot")
def _sentry_snapshot_fixture(snapshot: Any) -> Any:
    """syrupy's ``snapshot`` with the Sentry envelope extension (normalised, in tests/snapshots/)."""
    from vgi_rpc.testing.snapshots import SentryEnvelopeExtension

    return snapshot.use_extension(SentryEnvelopeExtension)


@pytest.fixture(name="otel_capture")
def _otel_capture_fixture(request: pytest.FixtureRequest) -> Iterator[OtelCapture]:
    """Real OpenTelemetry SDK providers with in-memory exporters, for one test (``vgi_rpc.testing.otel``)."""
    from vgi_rpc.testing.otel import otel_capture

    with otel_capture() as cap:
        report_on_failure(request.node, OTEL_SECTION, cap.describe)
        yield cap


def report_on_failure(item: pytest.Item, title: str, describe: Callable[[], str]) -> None:
    """Add a report section *title* with ``describe()``'s text if *item* fails (each section once)."""
    sections = item.stash.setdefault(_SECTIONS, [])
    sections.append((title, describe))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Append the registered sections to the report of the first failing phase of a test."""
    report = yield
    sections = item.stash.get(_SECTIONS, None)
    if sections and report.failed:
        item.stash[_SECTIONS] = []  # once per test, on the first phase that failed
        for title, describe in sections:
            try:
                text = describe()
            except Exception as exc:  # a report must never fail because of what it reports
                text = f"  (could not list what was captured: {exc!r})"
            report.sections.append((title, text))
    return report
