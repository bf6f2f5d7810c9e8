"""Shared test support: services, wire helpers, servers and clients, JWTs, recorders.

Importable as ``support`` because ``tests/`` is on ``sys.path``: pytest's default
"prepend" import mode puts it there for ``tests/conftest.py`` (``tests/`` has no
``__init__.py``), and scripts started by path (``tests/workers/``) insert it
themselves. Keep this package free of test modules (nothing here is collected)
and of heavy imports in ``__init__`` (``tests/core/test_imports.py`` imports
``support.services`` in a fresh interpreter and checks what got loaded).
"""
