"""pytest plugin for vgi_rpc, registered through the ``pytest11`` entry point.

Installing ``vgi-rpc[sentry,testing]`` is enough: pytest loads this module and
the fixtures below are available in every test, with no ``conftest.py``.

Fixtures:

``sentry_capture``
    A :class:`vgi_rpc.testing.SentryCapture` active for one test: the real
    ``sentry_sdk`` initialised with the in-memory transport, previous client
    and scopes restored afterwards.  Its ``sentry_sdk.init`` options come, each
    layer overriding the one before, from

    1. the ``sentry_options`` ini option (every capture of the project)::

           [pytest]
           sentry_options =
               environment = "test"
               attach_stacktrace = true

       one ``name = value`` per line; the value is JSON (``true``, ``0.5``,
       ``"text"``, ``["a"]``), else a Python literal, else the bare text;
    2. the ``sentry_options`` fixture, which returns the ini options; override
       it in a ``conftest.py`` for options that are Python objects -- no import
       needed, and it may build on the ini options by asking for itself::

           @pytest.fixture
           def sentry_options(sentry_options):
               return {**sentry_options, "before_send": drop_health_checks}

    3. the ``sentry_options`` marker (module, class, then function: the closest wins)::

           @pytest.mark.sentry_options(max_breadcrumbs=5)
           def test_breadcrumbs(sentry_capture): ...

    An option ``sentry_sdk.init`` does not know fails the test at setup with
    the SDK's own message (``TypeError: Unknown option 'x'``) -- also one the
    other SDK generation knows: sentry-sdk 3 has no ``send_default_pii``
    (its ``data_collection`` option replaces it).

    When a test that used it fails, the report gets a **Captured Sentry
    envelopes** section (like pytest's "Captured log call"): one line per
    envelope item -- type, transaction or event name, ``rpc.method``, level,
    exception type and message, status.  Passing tests add nothing.

``sentry_snapshot``
    syrupy's ``snapshot`` fixture using
    :class:`vgi_rpc.testing.snapshots.SentryCallsExtension`: what Sentry
    stores about each call (error events, root and child spans, session
    counts), one file that holds on sentry-sdk 2 and 3 and under any batching.
    Needs syrupy (the ``testing`` extra); without it, using the fixture fails
    with an ``ImportError`` naming the extra.

``sentry_envelope_snapshot``
    The same with :class:`vgi_rpc.testing.snapshots.PerSdkEnvelopeExtension`:
    whole envelopes, one set per SDK generation (``snapshots/<module>/sdk2/``,
    ``sdk3/``; the other generation's set is never reported unused or
    deleted).  ``release`` and ``environment`` are pinned verbatim when the
    test's ``sentry_capture`` was given them.

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

import ast
import importlib.util
import json
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from vgi_rpc.testing import SentryCapture
    from vgi_rpc.testing.otel import OtelCapture

_MARKER = "sentry_options"
_INI = "sentry_options"
SECTION = "Captured Sentry envelopes"
OTEL_SECTION = "Captured OpenTelemetry spans"
_SECTIONS = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``sentry_options`` ini option."""
    parser.addini(
        _INI,
        type="linelist",
        default=[],
        help="sentry_sdk.init options for every sentry_capture fixture, one 'name = value' per line",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``sentry_options`` marker (so ``--strict-markers`` accepts it); check the ini option."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**init_options): extra sentry_sdk.init options for the sentry_capture fixture",
    )
    parse_ini_options(config.getini(_INI))  # a malformed line is a usage error, before any test runs


def parse_ini_options(lines: list[str]) -> dict[str, Any]:
    """``["name = value", ...]`` -> ``{name: value}`` (value: JSON, else a Python literal, else text).

    Raises:
        pytest.UsageError: a line is not ``name = value`` with an identifier as name.
    """
    options: dict[str, Any] = {}
    for line in lines:
        name, sep, raw = line.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name.isidentifier():
            raise pytest.UsageError(f"ini option {_INI}: {line!r} is not 'name = value'")
        options[name] = _parse_value(raw)
    return options


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


@pytest.fixture(name="sentry_options")
def _sentry_options_fixture(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The project-wide ``sentry_sdk.init`` options (the ini option); override it in a conftest.py."""
    return parse_ini_options(request.config.getini(_INI))


@pytest.fixture(name="sentry_capture")
def _sentry_capture_fixture(
    request: pytest.FixtureRequest, sentry_options: dict[str, Any]
) -> Iterator[SentryCapture]:
    """The real Sentry SDK with an in-memory transport, for one test (see ``vgi_rpc.testing``)."""
    from vgi_rpc.testing import sentry_capture

    if not isinstance(sentry_options, dict):
        raise TypeError(f"the sentry_options fixture must return a dict, not {type(sentry_options).__name__}")
    options: dict[str, Any] = dict(sentry_options)
    # Closest marker last, so a function marker overrides a class/module marker.
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise TypeError(f"@pytest.mark.{_MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    with sentry_capture(**options) as cap:
        report_on_failure(request.node, SECTION, cap.describe)
        yield cap


def _syrupy_installed() -> bool:
    try:
        return importlib.util.find_spec("syrupy") is not None
    except (ImportError, ValueError):
        return False


if _syrupy_installed():

    @pytest.fixture(name="sentry_snapshot")
    def _sentry_snapshot_fixture(request: pytest.FixtureRequest, snapshot: Any) -> Iterator[Any]:
        """syrupy's ``snapshot`` storing what Sentry keeps about each call, one file for both SDK generations."""
        from vgi_rpc.testing.snapshots import SentryCallsExtension

        yield from _snapshot_with(request, snapshot, SentryCallsExtension)

    @pytest.fixture(name="sentry_envelope_snapshot")
    def _sentry_envelope_snapshot_fixture(request: pytest.FixtureRequest, snapshot: Any) -> Iterator[Any]:
        """syrupy's ``snapshot`` storing whole envelopes, one set per SDK generation (``sdk2/``, ``sdk3/``)."""
        from vgi_rpc.testing.snapshots import PerSdkEnvelopeExtension

        yield from _snapshot_with(request, snapshot, PerSdkEnvelopeExtension)

    def _snapshot_with(request: pytest.FixtureRequest, snapshot: Any, extension: type[Any]) -> Iterator[Any]:
        """``snapshot.use_extension(extension)``; the test's ``sentry_capture`` options say what is kept.

        ``release``/``environment`` given to the capture are kept verbatim by
        this assertion and by any ``.use_extension(...)`` made from it during
        the test (:func:`vgi_rpc.testing.snapshots.kept_by_fixture`).
        """
        from vgi_rpc.testing import snapshots

        kept: frozenset[str] = frozenset()
        if "sentry_capture" in request.fixturenames:
            cap: SentryCapture = request.getfixturevalue("sentry_capture")
            kept = snapshots.kept_fields(cap.init_options)
        with snapshots.kept_by_fixture(kept):
            yield snapshot.use_extension(extension)

else:

    @pytest.fixture(name="sentry_snapshot")
    def _sentry_snapshot_fixture() -> Any:
        """Unavailable: syrupy is not installed (the ``testing`` extra brings it)."""
        from vgi_rpc._extras import require

        require("the sentry_snapshot fixture", "testing", only=("syrupy",))
        raise AssertionError("unreachable: syrupy is importable after all")  # pragma: no cover

    @pytest.fixture(name="sentry_envelope_snapshot")
    def _sentry_envelope_snapshot_fixture() -> Any:
        """Unavailable: syrupy is not installed (the ``testing`` extra brings it)."""
        from vgi_rpc._extras import require

        require("the sentry_envelope_snapshot fixture", "testing", only=("syrupy",))
        raise AssertionError("unreachable: syrupy is importable after all")  # pragma: no cover


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
    """Append the registered sections to the report of the first phase of a test that failed.

    Each fixture that wants a section on failure (``sentry_capture``: "Captured
    Sentry envelopes", ``otel_capture``: "Captured OpenTelemetry spans") registers
    it with :func:`report_on_failure`. Added once per test, to the report of the
    first phase that failed (setup, call or teardown); the section travels with
    the report, so ``-q``, ``-vv`` and pytest-xdist workers show it too.
    """
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
