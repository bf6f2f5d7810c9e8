"""pytest plugin for vgi_rpc, registered through the ``pytest11`` entry point.

Installing ``vgi-rpc[sentry,testing]`` is enough: pytest loads this module and
the fixtures below are available in every test, with no ``conftest.py``.

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
    :class:`vgi_rpc.testing.snapshots.SentryEnvelopeExtension`; ``release`` and
    ``environment`` are pinned verbatim when the test's ``sentry_capture`` was
    given them.  Needs syrupy
    (the ``testing`` extra); without it, using the fixture fails with an
    ``ImportError`` naming the extra.

``sentry_sdk`` is imported lazily, when a fixture is used, so merely having
the plugin loaded costs nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from vgi_rpc.testing import SentryCapture

_MARKER = "sentry_options"


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


def _syrupy_installed() -> bool:
    try:
        return importlib.util.find_spec("syrupy") is not None
    except (ImportError, ValueError):
        return False


if _syrupy_installed():

    @pytest.fixture(name="sentry_snapshot")
    def _sentry_snapshot_fixture(request: pytest.FixtureRequest, snapshot: Any) -> Any:
        """syrupy's ``snapshot`` with the Sentry envelope extension (``*.sentry.json`` in snapshots/)."""
        from vgi_rpc.testing.snapshots import SentryEnvelopeExtension, kept_fields

        assertion = snapshot.use_extension(SentryEnvelopeExtension)
        if "sentry_capture" in request.fixturenames:
            cap: SentryCapture = request.getfixturevalue("sentry_capture")
            assertion.extension.keep = kept_fields(cap.init_options)
        return assertion

else:

    @pytest.fixture(name="sentry_snapshot")
    def _sentry_snapshot_fixture() -> Any:
        """Unavailable: syrupy is not installed (the ``testing`` extra brings it)."""
        from vgi_rpc._extras import require

        require("the sentry_snapshot fixture", "testing")
        raise AssertionError("unreachable: syrupy is importable after all")  # pragma: no cover
