"""vgi-rpc over HTTP: a Falcon WSGI app, a waitress runner, stateless streams and a client.

Server::

    app = make_wsgi_app(server, prefix="/vgi", authenticate=jwt_authenticator(key=SECRET),
                        token_key=os.environ["VGI_TOKEN_KEY"])
    serve_http(server, port=8000, prefix="/vgi", token_key=...)   # waitress, blocking

Client::

    with http_connect(Calculator, "http://127.0.0.1:8000", prefix="/vgi") as calc:
        calc.add(a=1, b=2)

Streams are stateless on the server: between turns their state travels in a token
sealed with ``token_key`` (AES-GCM), bound to the caller and the method, with an
expiry, so any worker sharing the key can serve any turn. See ``docs/http.md``.
"""

from __future__ import annotations

from vgi_rpc._extras import require

require("vgi_rpc.http", "http")  # a missing falcon/httpx/... names the extra to install

from vgi_rpc.http._app import ResponseTooLargeError, VgiFalconApp, make_wsgi_app  # noqa: E402
from vgi_rpc.http._auth import AuthenticationError, Authenticator, jwt_authenticator  # noqa: E402
from vgi_rpc.http._client import http_connect  # noqa: E402
from vgi_rpc.http._serve import HttpServerHandle, serve_http, start_http_server  # noqa: E402
from vgi_rpc.http._tokens import TokenError, TokenSealer  # noqa: E402

__all__ = [
    "AuthenticationError",
    "Authenticator",
    "HttpServerHandle",
    "ResponseTooLargeError",
    "TokenError",
    "TokenSealer",
    "VgiFalconApp",
    "http_connect",
    "jwt_authenticator",
    "make_wsgi_app",
    "serve_http",
    "start_http_server",
]
