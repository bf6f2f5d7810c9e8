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

import os
from pathlib import Path

import pytest

import vgi_rpc

# `make test-latest` runs the suites against a non-editable install (what a user gets): make sure
# they test that install, not the checkout they sit in.
if os.environ.get("VGI_RPC_EXPECT_INSTALLED"):
    _where = Path(vgi_rpc.__file__).resolve().parent
    if _where == Path(__file__).resolve().parents[1] / "vgi_rpc":
        raise pytest.UsageError(
            f"VGI_RPC_EXPECT_INSTALLED is set, but vgi_rpc was imported from the checkout: {_where}"
        )

# The official adversarial classes and the official client's tests run under the peer venv's
# pytest (`make adversarial`, `make conformance`), each folder its own rootdir (a pytest.ini);
# our suite does not collect them.
collect_ignore = ["adversarial", "peer"]


@pytest.fixture(autouse=True)
def _subprocess_pytest_is_no_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``pytest -n``, a pytest a test starts (pytester, a user's venv) must not think it is a worker.

    pytest-xdist marks its workers with ``PYTEST_XDIST_*`` environment variables,
    which child processes inherit; syrupy reads them and then leaves unused-snapshot
    reporting to a controller that does not exist.
    """
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
