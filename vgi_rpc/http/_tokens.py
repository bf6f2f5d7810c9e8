"""Sealed stream tokens: the state of an HTTP stream, carried by the client between turns.

An HTTP stream is stateless on the server: after every turn the server seals what it
needs for the next one (the stream state, the schemas, the ``stream_id``) into an
opaque token that the client echoes back. Any worker holding the same key can open it,
so turns may land on different processes.

Format (version 1), base64-encoded (standard alphabet, padded)::

    b"\\x01" | nonce (12 bytes) | AES-256-GCM( expiry u64 BE | stream_id (16 bytes) | payload )

The associated data binds the token to the protocol, the method and the caller's
identity (``AuthContext.domain`` + ``principal``; empty for anonymous callers). A
token therefore opens only for the same protocol, method and caller it was issued
to; any change — a flipped bit, another key, another principal — fails the AEAD
check, and the error says only that the token was rejected (never why in detail, and
never anything about the sealed state). The expiry is inside the ciphertext and is
checked after authentication, so "expired" is reported only for genuine tokens.

Caveat: tokens are bearer state. Within its lifetime a token may be replayed by the
same caller (the server keeps no record of spent tokens); keep ``token_ttl`` short
for streams whose state must not be rewound.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vgi_rpc.auth import AuthContext
from vgi_rpc.errors import ProtocolError

__all__ = ["OpenedToken", "TokenError", "TokenKey", "TokenSealer"]

TokenKey = bytes | str
"""A token key: raw bytes (at least 16) or a passphrase-like string (at least 16 characters)."""

_VERSION = b"\x01"
_NONCE = 12
_HEADER = struct.Struct(">Q16s")  # expiry (unix seconds), stream_id (16 raw bytes)
_AAD_PREFIX = b"vgi_rpc.stream_token.v1"
_MIN_KEY = 16
_MAX_TOKEN_CHARS = 64 << 20  # a token bigger than this is refused before decoding


class TokenError(ProtocolError):
    """A stream token could not be used (malformed, rejected or expired); HTTP 400.

    The message says which of those happened and nothing about the sealed content.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, error_kind="invalid_stream_token", status=400)


@dataclass(frozen=True, slots=True)
class OpenedToken:
    """What an authentic, unexpired token carried."""

    stream_id: str
    """32 lower-case hex characters, identical on every turn of one stream."""
    payload: bytes
    """The bytes sealed by :meth:`TokenSealer.seal`."""
    expires_at: int
    """Unix time (seconds) after which the token is refused."""


def _derive(key: TokenKey) -> AESGCM:
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(raw) < _MIN_KEY:
        raise ValueError(f"token_key must be at least {_MIN_KEY} bytes (got {len(raw)})")
    # HKDF turns any sufficiently long secret into a uniform AES-256 key, and separates
    # this use of the secret from any other the deployment may make of it.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vgi_rpc stream token").derive(raw)
    return AESGCM(derived)


def identity_of(auth: AuthContext) -> bytes:
    """The caller identity a token is bound to: ``domain`` and ``principal``, or empty if anonymous."""
    if not auth.authenticated:
        return b""
    return f"{auth.domain or ''}\x00{auth.principal or ''}".encode()


def _aad(protocol: str, method: str, identity: bytes) -> bytes:
    parts = (protocol.encode(), method.encode(), identity)
    out = bytearray(_AAD_PREFIX)
    for p in parts:
        out += struct.pack(">I", len(p))
        out += p
    return bytes(out)


class TokenSealer:
    """Seals and opens stream tokens with AES-256-GCM (``cryptography``).

    Args:
        key: The secret every worker of a deployment shares (bytes or str, at least
            16 bytes), or a sequence of them for rotation: the first seals, all open.
            ``None`` generates a random per-process key and warns, because tokens
            sealed by one process then cannot be opened by another (multi-worker
            deployments — gunicorn, several hosts — need an explicit key).
        ttl: Seconds a token stays valid after it is issued (each turn issues a fresh
            token, so this bounds the idle time between turns).
        clock: Time source (unix seconds); for tests.
    """

    __slots__ = ("_clock", "_openers", "_sealer", "ttl")

    def __init__(
        self,
        key: TokenKey | Sequence[TokenKey] | None = None,
        *,
        ttl: float = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("token_ttl must be positive")
        if key is None:
            warnings.warn(
                "vgi_rpc.http: no token_key given; stream tokens are sealed with a random per-process "
                "key, so a stream's turns must all reach this process. Multi-worker or multi-host "
                "deployments need a shared token_key.",
                RuntimeWarning,
                stacklevel=3,
            )
            keys: Sequence[TokenKey] = (os.urandom(32),)
        elif isinstance(key, bytes | str):
            keys = (key,)
        else:
            keys = tuple(key)
            if not keys:
                raise ValueError("token_key sequence is empty")
        self._openers = tuple(_derive(k) for k in keys)
        self._sealer = self._openers[0]
        self.ttl = ttl
        self._clock = clock

    def seal(self, payload: bytes, *, protocol: str, method: str, auth: AuthContext, stream_id: str) -> str:
        """Seal *payload* for the caller *auth* on ``protocol``/``method``; returns ASCII text."""
        expires = int(self._clock() + self.ttl)
        try:
            sid = bytes.fromhex(stream_id)
        except ValueError:
            sid = b""
        if len(sid) != 16:
            raise ValueError("stream_id must be 32 hex characters")
        nonce = os.urandom(_NONCE)
        plain = _HEADER.pack(expires, sid) + payload
        sealed = self._sealer.encrypt(nonce, plain, _aad(protocol, method, identity_of(auth)))
        return base64.b64encode(_VERSION + nonce + sealed).decode("ascii")

    def open(self, token: str | bytes, *, protocol: str, method: str, auth: AuthContext) -> OpenedToken:
        """Authenticate and decrypt *token*; raises :class:`TokenError` if it cannot be used."""
        if len(token) > _MAX_TOKEN_CHARS:
            raise TokenError("stream token rejected: it is too large")
        try:
            raw = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            raise TokenError("stream token is malformed: not base64") from None
        if len(raw) < 1 + _NONCE + _HEADER.size + 16 or raw[:1] != _VERSION:
            raise TokenError("stream token is malformed: unknown format or truncated") from None
        nonce, sealed = raw[1 : 1 + _NONCE], raw[1 + _NONCE :]
        aad = _aad(protocol, method, identity_of(auth))
        plain: bytes | None = None
        for opener in self._openers:
            try:
                plain = opener.decrypt(nonce, sealed, aad)
                break
            except InvalidTag:
                continue
        if plain is None:
            raise TokenError(
                "stream token rejected: it was altered, sealed with another key, or issued for another "
                "caller, protocol or method"
            )
        expires, sid = _HEADER.unpack_from(plain)
        if self._clock() >= expires:
            raise TokenError("stream token expired; start a new stream")
        return OpenedToken(stream_id=sid.hex(), payload=plain[_HEADER.size :], expires_at=expires)
