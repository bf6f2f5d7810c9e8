"""JWT bearer authentication with joserfc: HS256, RS256 (PEM and JWKS), and the 401 answer."""

from __future__ import annotations

import json
import time
from typing import Any

import falcon
import falcon.testing
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey
from support.http import ARROW, BUDGET, TOKEN_KEY, call_body, read_stream
from support.jwt import JWT_SECRET, sign_jwt
from support.services import Calculator, CalculatorImpl

from vgi_rpc import AuthContext, RpcServer
from vgi_rpc.http import AuthenticationError, jwt_authenticator, make_wsgi_app


def req(token: str | None = None, scheme: str = "Bearer") -> falcon.Request:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return falcon.testing.create_req(headers=headers)


def refused(auth: Any, request: falcon.Request) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        auth(request)
    return info.value


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048)


def test_hs256_valid_token_gives_jwt_auth_context() -> None:
    auth = jwt_authenticator(key=JWT_SECRET)
    ctx = auth(req(sign_jwt("alice", email="a@example.com")))
    assert ctx.domain == "jwt"
    assert ctx.authenticated is True
    assert ctx.principal == "alice"
    assert ctx.claims["email"] == "a@example.com"
    with pytest.raises(TypeError):
        ctx.claims["sub"] = "mallory"  # type: ignore[index]


def test_rs256_with_pem_public_key(rsa_key: RSAKey) -> None:
    auth = jwt_authenticator(key=rsa_key.as_pem(private=False), algorithms=["RS256"])
    token = jwt.encode({"alg": "RS256"}, {"sub": "bob", "exp": int(time.time()) + 60}, rsa_key)
    assert auth(req(token)).principal == "bob"


def test_rs256_with_jwks_selects_key_by_kid(rsa_key: RSAKey) -> None:
    other = RSAKey.generate_key(2048)
    jwks = KeySet([other, rsa_key]).as_dict(private=False)
    auth = jwt_authenticator(key=jwks, algorithms=["RS256"])
    token = jwt.encode(
        {"alg": "RS256", "kid": rsa_key.kid}, {"sub": "carol", "exp": int(time.time()) + 60}, rsa_key
    )
    assert auth(req(token)).principal == "carol"
    forged = jwt.encode(
        {"alg": "RS256", "kid": rsa_key.kid}, {"sub": "carol", "exp": int(time.time()) + 60}, other
    )
    assert refused(auth, req(forged)).reason == "invalid_credential"


def test_missing_token_is_missing_credential_without_error_code() -> None:
    err = refused(jwt_authenticator(key=JWT_SECRET), req(None))
    assert err.reason == "missing_credential"
    assert err.www_authenticate() == 'Bearer realm="vgi_rpc"'


@pytest.mark.parametrize(
    ("token", "scheme", "reason", "text"),
    [
        ("abc", "Bearer", "invalid_credential", "invalid bearer token"),
        (
            sign_jwt("alice", secret="another-secret-0123456789abcdef"),
            "Bearer",
            "invalid_credential",
            "invalid",
        ),
        (sign_jwt("alice", exp_in=-10), "Bearer", "expired_credential", "expired"),
        (sign_jwt(None), "Bearer", "invalid_credential", "sub"),
        (sign_jwt("alice"), "Basic", "invalid_credential", "Bearer"),
        (sign_jwt("alice", nbf=int(time.time()) + 3600), "Bearer", "invalid_credential", "nbf"),
    ],
    ids=["garbage", "bad-signature", "expired", "no-sub", "wrong-scheme", "not-yet-valid"],
)
def test_bad_tokens_are_refused_with_a_reason(token: str, scheme: str, reason: str, text: str) -> None:
    err = refused(jwt_authenticator(key=JWT_SECRET), req(token, scheme))
    assert err.reason == reason
    assert text in err.detail
    assert err.www_authenticate().startswith('Bearer realm="vgi_rpc", error="')


def test_token_without_exp_is_refused_by_default() -> None:
    token = jwt.encode({"alg": "HS256"}, {"sub": "alice"}, OctKey.import_key(JWT_SECRET))
    assert "exp" in refused(jwt_authenticator(key=JWT_SECRET), req(token)).detail
    assert jwt_authenticator(key=JWT_SECRET, require_exp=False)(req(token)).principal == "alice"


def test_issuer_and_audience_are_enforced() -> None:
    auth = jwt_authenticator(key=JWT_SECRET, issuer="https://idp", audience="vgi")
    assert auth(req(sign_jwt("a", iss="https://idp", aud="vgi"))).principal == "a"
    assert auth(req(sign_jwt("a", iss="https://idp", aud=["other", "vgi"]))).principal == "a"
    assert "iss" in refused(auth, req(sign_jwt("a", iss="https://evil", aud="vgi"))).detail
    assert "aud" in refused(auth, req(sign_jwt("a", iss="https://idp", aud="other"))).detail
    assert "aud" in refused(auth, req(sign_jwt("a", iss="https://idp"))).detail


def test_algorithm_not_allowed_is_refused(rsa_key: RSAKey) -> None:
    """A token signed with HS256 is refused by an RS256-only authenticator, and vice versa."""
    rs_auth = jwt_authenticator(key=rsa_key.as_pem(private=False), algorithms=["RS256"])
    assert refused(rs_auth, req(sign_jwt("alice"))).reason == "invalid_credential"
    hs_auth = jwt_authenticator(key=JWT_SECRET, algorithms=["HS256"])
    token = jwt.encode({"alg": "RS256"}, {"sub": "x", "exp": int(time.time()) + 60}, rsa_key)
    assert refused(hs_auth, req(token)).reason == "invalid_credential"


def test_unsigned_alg_none_token_is_refused() -> None:
    def b64(obj: dict[str, Any]) -> str:
        import base64

        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'root', 'exp': int(time.time()) + 60})}."
    assert refused(jwt_authenticator(key=JWT_SECRET), req(token)).reason == "invalid_credential"
    with pytest.raises(ValueError, match="algorithm"):
        jwt_authenticator(key=JWT_SECRET, algorithms=["none"])


def test_rs_algorithm_with_a_shared_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="RSA key"):
        jwt_authenticator(key=JWT_SECRET, algorithms=["RS256"])


# --------------------------------------------------------------------------- through the app


@pytest.fixture
def client() -> falcon.testing.TestClient:
    server = RpcServer(Calculator, CalculatorImpl())
    app = make_wsgi_app(server, authenticate=jwt_authenticator(key=JWT_SECRET), token_key=TOKEN_KEY)
    return falcon.testing.TestClient(app)


def post(client: falcon.testing.TestClient, token: str | None) -> falcon.testing.Result:
    headers = {"Content-Type": ARROW}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.simulate_post("/Calculator/add", body=call_body("add", {"a": 1, "b": 2}), headers=headers)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing_credential"),
        ("garbage", "invalid_credential"),
        (sign_jwt("a", exp_in=-5), "expired_credential"),
    ],
    ids=["missing", "invalid", "expired"],
)
def test_app_answers_401_json_with_www_authenticate(
    client: falcon.testing.TestClient, token: str | None, reason: str
) -> None:
    r = post(client, token)
    assert r.status_code == 401
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers[BUDGET] == "true"
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="vgi_rpc"')
    body = json.loads(r.content)
    assert body["reason"] == reason
    assert body["detail"]


def test_app_accepts_a_valid_token(client: falcon.testing.TestClient) -> None:
    r = post(client, sign_jwt("alice"))
    assert r.status_code == 200
    assert read_stream(r.content)[1][-1][0].to_pydict() == {"result": [3]}


def test_health_needs_no_credentials(client: falcon.testing.TestClient) -> None:
    assert client.simulate_options("/health").status_code == 204


def test_custom_authenticator_and_falcon_unauthorized() -> None:
    def authenticate(request: falcon.Request) -> AuthContext:
        key = request.get_header("X-Api-Key")
        if key == "let-me-in":
            return AuthContext(domain="apikey", authenticated=True, principal="svc")
        raise falcon.HTTPUnauthorized(description="need X-Api-Key")

    app = make_wsgi_app(
        RpcServer(Calculator, CalculatorImpl()), authenticate=authenticate, token_key=TOKEN_KEY
    )
    c = falcon.testing.TestClient(app)
    body = call_body("whoami")
    ok = c.simulate_post(
        "/Calculator/whoami", body=body, headers={"Content-Type": ARROW, "X-Api-Key": "let-me-in"}
    )
    assert ok.status_code == 200
    r = c.simulate_post("/Calculator/whoami", body=body, headers={"Content-Type": ARROW})
    assert r.status_code == 401
    assert json.loads(r.content) == {"reason": "unauthorized", "detail": "need X-Api-Key"}


def test_authenticator_bug_is_a_500_arrow_error_without_details() -> None:
    def authenticate(request: falcon.Request) -> AuthContext:
        raise RuntimeError("db password is hunter2")

    app = make_wsgi_app(
        RpcServer(Calculator, CalculatorImpl()), authenticate=authenticate, token_key=TOKEN_KEY
    )
    r = falcon.testing.TestClient(app).simulate_post(
        "/Calculator/add", body=call_body("add", {"a": 1, "b": 2}), headers={"Content-Type": ARROW}
    )
    assert r.status_code == 500
    assert r.headers[BUDGET] == "true"
    assert b"hunter2" not in r.content
    assert read_stream(r.content)[1][-1][1]["vgi_rpc.log_message"] == "RuntimeError: internal server error"


def test_authenticator_may_answer_other_http_errors() -> None:
    def authenticate(request: falcon.Request) -> AuthContext:
        raise falcon.HTTPForbidden(description="this key may not call add")

    app = make_wsgi_app(
        RpcServer(Calculator, CalculatorImpl()), authenticate=authenticate, token_key=TOKEN_KEY
    )
    r = falcon.testing.TestClient(app).simulate_post(
        "/Calculator/add", body=call_body("add", {"a": 1, "b": 2}), headers={"Content-Type": ARROW}
    )
    assert r.status_code == 403
    assert r.headers[BUDGET] == "true"
    assert read_stream(r.content)[1][-1][1]["vgi_rpc.log_message"].endswith("this key may not call add")
