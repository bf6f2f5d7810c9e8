"""HTTP authentication: the ``authenticate`` callback contract and a JWT bearer authenticator.

An authenticator is any callable ``authenticate(req) -> AuthContext`` taking the
``falcon.Request``. To refuse a request it raises :class:`AuthenticationError` (or
``falcon.HTTPUnauthorized``); the app answers 401 with a JSON body
``{"reason": ..., "detail": ...}`` and a ``WWW-Authenticate`` header, which the official
vgi-rpc client turns into its ``AuthenticationError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import falcon
from joserfc import jwt
from joserfc.errors import BadSignatureError, ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import KeySet, OctKey, RSAKey

from vgi_rpc.auth import AuthContext

__all__ = ["AuthenticationError", "Authenticator", "jwt_authenticator"]

Authenticator = Callable[[falcon.Request], AuthContext]
"""``authenticate(req) -> AuthContext``; raise :class:`AuthenticationError` to answer 401."""

_REASONS = frozenset(
    {"missing_credential", "invalid_credential", "expired_credential", "insufficient_scope", "unauthorized"}
)


class AuthenticationError(Exception):
    """Raised by an authenticator to refuse a request with HTTP 401.

    Args:
        detail: Human-readable reason sent to the client (do not put secrets here).
        reason: A code from the closed set the official client knows:
            ``missing_credential``, ``invalid_credential``, ``expired_credential``,
            ``insufficient_scope`` or ``unauthorized`` (anything else becomes ``unauthorized``).
        error: The RFC 6750 ``error`` for ``WWW-Authenticate`` (``invalid_token`` by
            default; ``None`` for a missing credential, as RFC 6750 asks).
    """

    def __init__(
        self, detail: str, *, reason: str = "invalid_credential", error: str | None = "invalid_token"
    ):
        super().__init__(detail)
        self.detail = detail
        self.reason = reason if reason in _REASONS else "unauthorized"
        self.error = error

    def www_authenticate(self, realm: str = "vgi_rpc") -> str:
        """The ``WWW-Authenticate`` header value for this failure."""
        value = f'Bearer realm="{realm}"'
        if self.error:
            desc = self.detail.replace("\\", "\\\\").replace('"', "'")
            value += f', error="{self.error}", error_description="{desc}"'
        return value

    def body(self) -> bytes:
        """The JSON body of the 401 response."""
        return json.dumps({"reason": self.reason, "detail": self.detail}).encode()


def _to_keyset(key: Any, algorithms: Sequence[str]) -> OctKey | RSAKey | KeySet:
    if isinstance(key, OctKey | RSAKey | KeySet):
        return key
    if isinstance(key, Mapping):
        if "keys" in key:
            return KeySet.import_key_set(dict(key))  # type: ignore[arg-type]
        imported = RSAKey.import_key(dict(key)) if key.get("kty") == "RSA" else OctKey.import_key(dict(key))
        return imported
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes):
        if key.lstrip().startswith(b"-----BEGIN"):
            return RSAKey.import_key(key)
        if any(a.startswith(("RS", "PS")) for a in algorithms) and not any(
            a.startswith("HS") for a in algorithms
        ):
            raise ValueError(
                "RS*/PS* algorithms need an RSA key (PEM, JWK dict or JWKS), not a shared secret"
            )
        return OctKey.import_key(key)
    raise TypeError(f"unsupported JWT key type {type(key).__name__}")


def _default_algorithms(key: Any) -> list[str]:
    if isinstance(key, OctKey) or (isinstance(key, str | bytes) and not _is_pem(key)):
        return ["HS256"]
    if isinstance(key, Mapping) and "keys" not in key and key.get("kty") == "oct":
        return ["HS256"]
    return ["RS256"]


def _is_pem(key: str | bytes) -> bool:
    raw = key.encode() if isinstance(key, str) else key
    return raw.lstrip().startswith(b"-----BEGIN")


def jwt_authenticator(
    *,
    key: Any,
    algorithms: Sequence[str] | None = None,
    issuer: str | None = None,
    audience: str | Sequence[str] | None = None,
    leeway: int = 0,
    require_exp: bool = True,
) -> Authenticator:
    """Build an ``authenticate`` callback that verifies ``Authorization: Bearer <JWT>`` with joserfc.

    Args:
        key: The verification key, one of:

            * a shared secret for HS256, as ``bytes`` or ``str`` -- a ``str`` is
              encoded as UTF-8, so ``key="s3cret"`` and ``key=b"s3cret"`` verify the
              same tokens; the signer uses the same bytes
              (``joserfc.jwk.OctKey.import_key(secret)``);
            * an RSA *public* key in PEM (``str`` or ``bytes`` starting with
              ``-----BEGIN``) for RS256/PS256;
            * a JWK ``dict`` (``"kty": "RSA"`` or ``"oct"``) or a JWKS ``dict``
              (``{"keys": [...]}``, the key chosen by the token's ``kid``);
            * a joserfc ``OctKey``, ``RSAKey`` or ``KeySet``.

            EC and OKP keys (ES256, EdDSA) are not supported; any other type raises
            ``TypeError``. Fetching a JWKS over the network is left to the caller (pass
            the parsed document).
        algorithms: Accepted ``alg`` values. Default: ``["HS256"]`` for a secret,
            ``["RS256"]`` otherwise. ``none`` is never accepted.
        issuer: If set, the ``iss`` claim must equal it.
        audience: If set, the ``aud`` claim must contain it (or one of them).
        leeway: Clock-skew allowance in seconds for ``exp``/``nbf``/``iat``.
        require_exp: Refuse tokens without an ``exp`` claim (default ``True``).

    Returns:
        A callable returning ``AuthContext(domain="jwt", authenticated=True,
        principal=<sub>, claims=<claims>)``. A missing, malformed, badly signed,
        expired or not-yet-valid token, a wrong issuer/audience, or a token without
        a string ``sub`` raises :class:`AuthenticationError` (HTTP 401).
    """
    algs = list(algorithms) if algorithms is not None else _default_algorithms(key)
    if not algs or any(a.lower() == "none" for a in algs):
        raise ValueError("algorithms must name at least one real signing algorithm")
    verify_key = _to_keyset(key, algs)
    registry = _claims_registry(issuer, audience, leeway, require_exp)

    def authenticate(req: falcon.Request) -> AuthContext:
        claims = _verified_claims(req.get_header("Authorization"), verify_key, algs, registry)
        return AuthContext(
            domain="jwt", authenticated=True, principal=claims["sub"], claims=MappingProxyType(claims)
        )

    return authenticate


def _claims_registry(
    issuer: str | None, audience: str | Sequence[str] | None, leeway: int, require_exp: bool
) -> jwt.JWTClaimsRegistry:
    """The claim rules of :func:`jwt_authenticator`: ``sub`` always, ``exp``/``iss``/``aud`` as configured."""
    options: dict[str, Any] = {"sub": {"essential": True}}
    if require_exp:
        options["exp"] = {"essential": True}
    if issuer is not None:
        options["iss"] = {"essential": True, "value": issuer}
    if audience is not None:
        if isinstance(audience, str):
            options["aud"] = {"essential": True, "value": audience}
        else:
            options["aud"] = {"essential": True, "values": list(audience)}
    return jwt.JWTClaimsRegistry(leeway=leeway, **options)


def _verified_claims(
    header: str | None, verify_key: Any, algs: list[str], registry: jwt.JWTClaimsRegistry
) -> dict[str, Any]:
    """The claims of the bearer token in *header*, verified; :class:`AuthenticationError` otherwise.

    On success ``claims["sub"]`` is a non-empty string.
    """
    if not header:
        raise AuthenticationError(
            "missing bearer token (send 'Authorization: Bearer <JWT>')",
            reason="missing_credential",
            error=None,
        )
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise AuthenticationError("Authorization header is not 'Bearer <JWT>'", error="invalid_request")
    try:
        token = jwt.decode(value, verify_key, algorithms=algs)
    except JoseError as exc:
        raise AuthenticationError(f"invalid bearer token: {_describe(exc)}") from None
    except (ValueError, TypeError):
        raise AuthenticationError("invalid bearer token: not a well-formed JWT") from None
    claims: dict[str, Any] = token.claims
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise AuthenticationError("bearer token expired", reason="expired_credential") from None
    except MissingClaimError as exc:
        raise AuthenticationError(f"bearer token lacks required claim(s): {exc.claim}") from None
    except JoseError as exc:
        raise AuthenticationError(f"bearer token rejected: {_describe(exc)}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthenticationError("bearer token has no usable 'sub' claim")
    return claims


def _describe(exc: JoseError) -> str:
    if isinstance(exc, BadSignatureError):
        return "the signature does not verify"
    desc = str(exc.description or exc.error or type(exc).__name__)
    if isinstance(exc, ClaimError) and exc.claim not in desc:
        desc = f"{desc} (claim '{exc.claim}')"
    return desc
