"""Optional dependencies: which extra brings which module, and the error when one is missing.

Every module of vgi_rpc that needs an optional package calls :func:`require`
before importing it, so a missing package fails with a message that names the
extra to install (``pip install 'vgi-rpc[http]'``) instead of a bare
``ModuleNotFoundError: No module named 'falcon'``.
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "MissingExtraError", "require"]

#: The modules each extra of ``pyproject.toml`` provides (and that vgi_rpc imports).
#: ``tests/core/test_extras.py`` checks this table against ``pyproject.toml`` both ways.
EXTRAS: dict[str, tuple[str, ...]] = {
    "http": ("falcon", "waitress", "httpx", "zstandard", "cryptography", "joserfc"),
    "sentry": ("sentry_sdk",),
    "otel": ("opentelemetry.trace", "opentelemetry.metrics", "opentelemetry.sdk"),
    "relay": ("sentry_relay",),
    "testing": ("pytest", "syrupy", "pytest_benchmark"),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that brings it.

    A :class:`ModuleNotFoundError` (hence an :class:`ImportError`), so code that
    probes for an optional feature with ``except ImportError`` keeps working.
    ``name`` is the missing module, ``extras`` the extras to install.
    """

    def __init__(self, feature: str, extras: tuple[str, ...], missing: str) -> None:
        """Build the message ``<feature> needs the '<extra>' extra: pip install 'vgi-rpc[...]'``."""
        needed = ", ".join(f"'{e}'" for e in extras)
        noun = "extra" if len(extras) == 1 else "extras"
        super().__init__(
            f"{feature} needs the {needed} {noun}: pip install 'vgi-rpc[{','.join(extras)}]' "
            f"(missing module: {missing})",
            name=missing,
        )
        self.extras = extras


def require(feature: str, *extras: str, only: tuple[str, ...] = ()) -> None:
    """Import every module of ``extras``; raise :class:`MissingExtraError` naming them if one is missing.

    ``feature`` is what the caller is (``"vgi_rpc.http"``, ``"sentry_capture"``),
    used in the message. ``only`` narrows the check to those modules of the
    extras (``require("the sentry_snapshot fixture", "testing", only=("syrupy",))``:
    a feature that needs one package of an extra does not import the others).
    Modules already imported cost a dict lookup. A module that is installed but
    fails to import for another reason (a broken install) raises its own error,
    unchanged.
    """
    if only and not set(only) <= {m for extra in extras for m in EXTRAS[extra]}:
        raise ValueError(f"require(only={only!r}) names a module none of the extras {extras!r} provides")
    for extra in extras:
        for module in EXTRAS[extra]:
            if only and module not in only:
                continue
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                top = module.split(".")[0]
                if exc.name is None or exc.name.split(".")[0] != top:
                    raise  # the package is there; something it imports is not
                raise MissingExtraError(feature, extras, exc.name) from exc
