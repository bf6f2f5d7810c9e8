"""Who is calling: the :class:`AuthContext` every dispatch carries.

Transports build one per call (HTTP from the ``authenticate`` callback, the pipe
transport from its connection) and hand it to the implementation through
``CallContext.auth`` and to dispatch hooks through ``on_dispatch_start``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["ANONYMOUS", "AuthContext"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Authentication facts about one caller.

    Attributes:
        domain: Where the identity came from (``"jwt"``, ``"pipe"``...), or ``None``
            when unauthenticated.
        authenticated: ``True`` only when an authenticator verified the caller.
        principal: The caller's stable id (for JWTs, the ``sub`` claim), or ``None``.
        claims: Verified claims (read-only). Empty when unauthenticated.
    """

    domain: str | None = None
    authenticated: bool = False
    principal: str | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def anonymous(cls) -> AuthContext:
        """Return the shared unauthenticated context."""
        return ANONYMOUS


ANONYMOUS = AuthContext()
"""The unauthenticated caller: no domain, no principal, no claims."""
