"""The Sentry hook's configuration: :class:`SentryConfig` and the param redactors (internal).

Public through :mod:`vgi_rpc.sentry`, which re-exports every name here. No SDK
is used: a config can be built (and checked) without ``sentry_sdk`` doing
anything. Tag keys and ``custom_tags`` values that Sentry would not store as
given are rejected when the config is built (claim B8, :mod:`vgi_rpc._sentry_values`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from vgi_rpc._sentry_values import stored_tag_text, tag_key_problem

__all__ = ["ParamRedactor", "SentryConfig", "SentrySdkUnsupportedError", "default_redactor", "noop_redactor"]

ParamRedactor: TypeAlias = Callable[[Mapping[str, Any]], Mapping[str, Any]]
"""A callable that returns the kwargs that may be recorded (see ``SentryConfig.param_redactor``)."""

_SECRET_KEY = re.compile(r"password|token|secret|key|authorization", re.IGNORECASE)


def default_redactor(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Drop every kwarg whose name matches ``password|token|secret|key|authorization``.

    The match is a case-insensitive substring search on the key, so it is
    deliberately broad: ``api_key``, ``AccessToken`` and ``db_password`` are
    dropped, and so are innocent names such as ``monkey`` or ``keyspace``.
    Values are never inspected: a secret under an innocent name passes through
    (supply your own ``param_redactor`` if your kwargs carry free text).
    """
    return {k: v for k, v in kwargs.items() if not _SECRET_KEY.search(k)}


def noop_redactor(kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Record every kwarg unchanged: pass as ``param_redactor`` to disable filtering."""
    return kwargs


class SentrySdkUnsupportedError(RuntimeError):
    """The installed sentry-sdk is not one this version of vgi_rpc can instrument.

    Raised by :func:`instrument_server_sentry` (and so by ``make_wsgi_app`` /
    ``serve_http`` with ``sentry_config=``). The message names the installed
    version and the supported range (``pip install 'sentry-sdk>=2.36,<4'``).
    Auto-attach logs the same text at WARNING on ``vgi_rpc.sentry`` instead.
    """


def _default_user_claim_map() -> Mapping[str, str]:
    return {"username": "preferred_username", "email": "email", "name": "name"}


@dataclass(frozen=True)
class SentryConfig:
    """Configuration for Sentry error reporting and optional performance monitoring.

    Immutable: mapping fields are copied into read-only views at construction.

    Attributes:
        enable_error_capture: Capture the original exception of a failed call with
            ``sentry_sdk.capture_exception`` (default ``True``).
        enable_performance: Start a Sentry transaction per dispatch (a child span
            when a transaction is already active, e.g. the WSGI one over HTTP).
            Opt-in to avoid duplicate tracing alongside OpenTelemetry and to
            conserve quota. The SDK's own sampling (``traces_sample_rate``) applies.
        record_request_context: Set the ``rpc`` context (method, method type,
            service, server id), the user and the auth tags (``auth.domain``,
            ``auth.authenticated`` and the ``claim_tags``). Default ``True``.
            ``False`` removes exactly those; ``rpc.method``/``rpc.method_type``
            tags, ``custom_tags``, ``tag_params``, span data and naming stay.
        custom_tags: Extra tags applied to every event of every call. Keys and
            values must be ones Sentry stores as given (keys: 1-200 characters
            from ``A-Z a-z 0-9 _ . : -``; values: 1-200 characters, no newline,
            no outer whitespace), else ``ValueError``.
        ignored_exceptions: Exception types (matched with ``isinstance``) that are
            not reported, e.g. ``(PermissionError,)``.
        op_name: Operation of the hook's transaction/span (default ``"rpc.server"``).
        claim_tags: Maps claim keys to tag names, e.g. ``{"tenant_id": "auth.tenant_id"}``.
            Values are stringified, stripped of outer whitespace and clipped to 200
            characters; absent, ``None``, empty, non-scalar claims and values
            holding a newline are skipped (Sentry would drop them).
        user_claim_map: Maps Sentry user fields to claim names (default: OIDC
            ``preferred_username`` -> ``username``, ``email``, ``name``). Claims that
            are absent, empty, not strings or longer than Sentry keeps in the
            field (:data:`USER_FIELD_MAX_CHARS`: email 75, the others 128
            characters) are skipped. ``user.id`` is always
            ``auth.principal`` (left out if longer than 128 characters) and is not
            configurable here; ``user.username`` is the mapped claim, or
            ``auth.principal`` when that claim gives nothing.
            Users are set only for authenticated callers.
        set_transaction_name: Name the call's transaction and its events
            ``rpc {method}`` (source ``custom``) instead of the WSGI/Falcon route
            template. Default ``True``. The hook's *own* transaction (pipe with
            ``enable_performance``) is always ``vgi_rpc/<method>``.
        record_params: Record kwargs as ``rpc.param.<k>`` span data on the root span
            (and on the hook's own span). Default ``False``: kwargs may carry user
            data and Sentry's scrubber matches key names only. Integers outside
            ``[-2**63, 2**64)`` are not recorded (Sentry would store 0).
        tag_params: Whitelist of param names also copied into scope tags
            ``rpc.param.<k>`` (independent of ``record_params``), after the
            redactor. Only ``str``/``bool``/``int``/``float`` values; stringified
            (``bool`` as ``"true"``/``"false"``), stripped of outer whitespace and
            clipped to 200 characters; a value that is then empty or holds a
            newline is not sent (Sentry would drop it).
        param_redactor: Applied to kwargs before anything is recorded. ``None``
            means :func:`default_redactor`; a callable replaces it;
            :func:`noop_redactor` disables filtering. If it raises, returns a
            non-mapping or returns keys that are not params of the call,
            nothing is recorded for that call (fail closed) and one WARNING
            is logged. The values it removed or replaced are also hidden from
            the call's events (see :data:`MIN_SCRUB_CHARS` and docs/sentry.md).
        max_param_value_bytes: Cap on the UTF-8 size of each recorded string value
            (default 1024). Longer strings are cut at a character boundary, never
            past the cap, with a DEBUG record on ``vgi_rpc.sentry``. Must be >= 1.
    """

    enable_error_capture: bool = True
    enable_performance: bool = False
    record_request_context: bool = True
    custom_tags: Mapping[str, str] = field(default_factory=dict)
    ignored_exceptions: tuple[type[BaseException], ...] = ()
    op_name: str = "rpc.server"
    claim_tags: Mapping[str, str] = field(default_factory=dict)
    user_claim_map: Mapping[str, str] = field(default_factory=_default_user_claim_map)
    set_transaction_name: bool = True
    record_params: bool = False
    tag_params: Sequence[str] = ()
    param_redactor: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    max_param_value_bytes: int = 1024

    def __post_init__(self) -> None:
        """Freeze the mappings and reject values that would fail at dispatch time."""
        for name in ("custom_tags", "claim_tags", "user_claim_map"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        if isinstance(self.tag_params, str):
            raise TypeError("tag_params must be a sequence of names, not a str (did you forget a comma?)")
        object.__setattr__(self, "tag_params", tuple(self.tag_params))
        object.__setattr__(self, "ignored_exceptions", tuple(self.ignored_exceptions))
        if type(self.max_param_value_bytes) is not int or self.max_param_value_bytes < 1:
            raise ValueError(
                f"max_param_value_bytes must be a positive int, got {self.max_param_value_bytes!r}"
            )
        self._check_tags()

    def _check_tags(self) -> None:
        """Tag keys and ``custom_tags`` values that Sentry would not store as given are errors (B8)."""
        keys = [
            *(("custom_tags", key) for key in self.custom_tags),
            *(("claim_tags", tag) for tag in self.claim_tags.values()),
            *(("tag_params", f"rpc.param.{name}") for name in self.tag_params),
        ]
        for option, key in keys:
            problem = tag_key_problem(key) if type(key) is str else "a tag key must be a str"
            if problem is not None:
                raise ValueError(f"{option}: tag {key!r} would be dropped by Sentry ({problem})")
        for key, value in self.custom_tags.items():
            if type(value) is not str or stored_tag_text(value) != value:
                raise ValueError(
                    f"custom_tags: the value of {key!r} ({value!r}) is not stored as given by Sentry "
                    "(a tag value is a str of 1-200 characters, no newline, no outer whitespace)"
                )
