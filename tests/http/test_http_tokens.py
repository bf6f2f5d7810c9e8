"""Sealed stream tokens: round trip, binding, tampering, expiry, rotation, key handling."""

from __future__ import annotations

import base64
import secrets
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vgi_rpc import AuthContext
from vgi_rpc.auth import ANONYMOUS
from vgi_rpc.http import TokenError, TokenSealer

KEY = b"k" * 32
ALICE = AuthContext(domain="jwt", authenticated=True, principal="alice")
BOB = AuthContext(domain="jwt", authenticated=True, principal="bob")
SID = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seal(sealer: TokenSealer, payload: bytes = b"state", auth: AuthContext = ALICE) -> str:
    return sealer.seal(payload, protocol="Calc", method="count", auth=auth, stream_id=SID)


def test_round_trip_keeps_payload_and_stream_id() -> None:
    sealer = TokenSealer(KEY)
    token = seal(sealer, b"\x00payload\xff")
    assert token.isascii()
    opened = sealer.open(token, protocol="Calc", method="count", auth=ALICE)
    assert opened.payload == b"\x00payload\xff"
    assert opened.stream_id == SID


def test_each_seal_is_fresh() -> None:
    """Random nonces: sealing the same state twice gives different tokens."""
    sealer = TokenSealer(KEY)
    assert seal(sealer) != seal(sealer)


def test_another_worker_with_the_same_key_opens_it() -> None:
    token = seal(TokenSealer(KEY))
    assert TokenSealer(KEY).open(token, protocol="Calc", method="count", auth=ALICE).payload == b"state"


@pytest.mark.parametrize(
    ("protocol", "method", "auth"),
    [
        ("Calc", "count", BOB),  # other principal
        ("Calc", "count", ANONYMOUS),  # anonymous caller
        ("Calc", "count", AuthContext(domain="mtls", authenticated=True, principal="alice")),  # other domain
        ("Other", "count", ALICE),  # other protocol
        ("Calc", "scale", ALICE),  # other method
    ],
)
def test_token_is_bound_to_protocol_method_and_caller(protocol: str, method: str, auth: AuthContext) -> None:
    sealer = TokenSealer(KEY)
    token = seal(sealer, b"secret-state-bytes")
    with pytest.raises(TokenError) as info:
        sealer.open(token, protocol=protocol, method=method, auth=auth)
    assert "rejected" in str(info.value)
    assert "secret-state-bytes" not in str(info.value)
    assert info.value.status == 400


def test_anonymous_tokens_open_for_anonymous_callers_only() -> None:
    sealer = TokenSealer(KEY)
    token = seal(sealer, auth=ANONYMOUS)
    assert sealer.open(token, protocol="Calc", method="count", auth=AuthContext()).payload == b"state"
    with pytest.raises(TokenError):
        sealer.open(token, protocol="Calc", method="count", auth=ALICE)


def test_wrong_key_is_rejected() -> None:
    token = seal(TokenSealer(KEY))
    with pytest.raises(TokenError, match="rejected"):
        TokenSealer(b"x" * 32).open(token, protocol="Calc", method="count", auth=ALICE)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_is_rejected(data: st.DataObject) -> None:
    sealer = TokenSealer(KEY)
    raw = bytearray(base64.b64decode(seal(sealer, b"some state")))
    pos = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    raw[pos] ^= flip
    with pytest.raises(TokenError):
        sealer.open(base64.b64encode(bytes(raw)).decode(), protocol="Calc", method="count", auth=ALICE)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not base64 !!", "malformed"),
        ("", "malformed"),
        (base64.b64encode(b"\x01short").decode(), "malformed"),
        (base64.b64encode(b"\x02" + b"\x00" * 64).decode(), "unknown format"),
    ],
)
def test_malformed_tokens_say_so(token: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        TokenSealer(KEY).open(token, protocol="Calc", method="count", auth=ALICE)


def test_truncated_token_is_rejected() -> None:
    sealer = TokenSealer(KEY)
    raw = base64.b64decode(seal(sealer))
    with pytest.raises(TokenError):
        sealer.open(base64.b64encode(raw[:-1]).decode(), protocol="Calc", method="count", auth=ALICE)


def test_expiry() -> None:
    clock = Clock()
    sealer = TokenSealer(KEY, ttl=60, clock=clock)
    token = seal(sealer)
    clock.now += 59
    assert sealer.open(token, protocol="Calc", method="count", auth=ALICE).payload == b"state"
    clock.now += 1
    with pytest.raises(TokenError, match="expired"):
        sealer.open(token, protocol="Calc", method="count", auth=ALICE)


def test_expired_forgery_is_reported_as_rejected_not_expired() -> None:
    """Only authentic tokens are ever called expired: the expiry is checked after the AEAD."""
    clock = Clock()
    sealer = TokenSealer(KEY, ttl=1, clock=clock)
    token = seal(sealer)
    clock.now += 10
    with pytest.raises(TokenError, match="rejected"):
        sealer.open(token, protocol="Calc", method="count", auth=BOB)


def test_key_rotation_first_key_seals_all_keys_open() -> None:
    old, new = b"o" * 32, b"n" * 32
    old_token = seal(TokenSealer(old))
    rotated = TokenSealer([new, old])
    assert rotated.open(old_token, protocol="Calc", method="count", auth=ALICE).payload == b"state"
    new_token = seal(rotated)
    assert TokenSealer(new).open(new_token, protocol="Calc", method="count", auth=ALICE).payload == b"state"
    with pytest.raises(TokenError):
        TokenSealer(old).open(new_token, protocol="Calc", method="count", auth=ALICE)


def test_string_keys_work_and_short_keys_are_refused() -> None:
    token = seal(TokenSealer("a passphrase of some length"))
    assert TokenSealer("a passphrase of some length").open(token, protocol="Calc", method="count", auth=ALICE)
    with pytest.raises(ValueError, match="at least 16"):
        TokenSealer(b"short")
    with pytest.raises(ValueError, match="empty"):
        TokenSealer([])
    with pytest.raises(ValueError, match="positive"):
        TokenSealer(KEY, ttl=0)


def test_no_key_generates_one_and_warns_about_multiple_workers() -> None:
    with pytest.warns(RuntimeWarning, match="multi-worker|Multi-worker"):
        a = TokenSealer(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = TokenSealer(None)
    token = seal(a)
    assert a.open(token, protocol="Calc", method="count", auth=ALICE).payload == b"state"
    with pytest.raises(TokenError):
        b.open(token, protocol="Calc", method="count", auth=ALICE)


def test_stream_id_must_be_32_hex() -> None:
    with pytest.raises(ValueError, match="32 hex"):
        TokenSealer(KEY).seal(b"", protocol="P", method="m", auth=ALICE, stream_id="xyz")
    sid = secrets.token_hex(16)
    sealer = TokenSealer(KEY)
    token = sealer.seal(b"", protocol="P", method="m", auth=ALICE, stream_id=sid)
    assert sealer.open(token, protocol="P", method="m", auth=ALICE).stream_id == sid
