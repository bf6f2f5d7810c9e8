"""Suite-wide pytest configuration.

Layout: one folder per module under test (``core/``, ``pipe/``, ``http/``,
``sentry/``, ``otel/``, ``testing_kit/``, ``docs/``, ``conformance/``), shared
code in ``support/``, subprocess entry points in ``workers/`` and
``conformance/``. Test folders have no ``__init__.py`` (pytest's "prepend"
import mode): a test module is imported by its basename, so basenames must be
unique across folders, and the Sentry snapshots (which record the module name
and file name of stack frames) stay independent of the folder.
No test module imports another one: anything two modules need lives in ``support``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

# The official adversarial classes run under the peer venv's pytest (`make adversarial`),
# with their own rootdir (tests/adversarial/pytest.ini); our suite does not collect them.
collect_ignore = ["adversarial"]

if TYPE_CHECKING:
    from support.otel import Otel


@pytest.fixture
def otel() -> Iterator[Otel]:
    """The real OpenTelemetry SDK with in-memory span and metric exporters, shut down after the test."""
    from support.otel import Otel  # here, not at the top: only OTel tests pay for the SDK import

    recorder = Otel.create()
    yield recorder
    recorder.shutdown()
