"""Real HS256 JWTs for the HTTP suites, signed with joserfc.

Servers under test verify them with ``jwt_authenticator(key=JWT_SECRET)``;
nothing about JWT handling is faked.
"""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey

JWT_SECRET = "test-secret-for-hs256-0123456789abcdef"


def sign_jwt(sub: str | None, *, secret: str | bytes = JWT_SECRET, exp_in: float = 300, **claims: Any) -> str:
    """A real HS256 JWT for *sub* (``None`` leaves ``sub`` out)."""
    payload: dict[str, Any] = {"exp": int(time.time() + exp_in), **claims}
    if sub is not None:
        payload["sub"] = sub
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(secret))


def bearer(sub: str, **claims: Any) -> dict[str, str]:
    """An ``Authorization: Bearer`` header carrying ``sign_jwt(sub, **claims)``."""
    return {"Authorization": f"Bearer {sign_jwt(sub, **claims)}"}
