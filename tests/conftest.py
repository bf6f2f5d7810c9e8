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
