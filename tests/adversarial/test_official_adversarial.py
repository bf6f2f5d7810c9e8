"""The official vgi-rpc 0.52.2 adversarial request-contract classes, collected unchanged.

The reference server passes all 55: valid Arrow IPC whose RPC contract is wrong
(parameter schema, nullability, row count, dispatch metadata, routing key) must be a
typed error before dispatch on HTTP and on the pipe, and a compressed body may not
expand past ``max_request_bytes``. The fixtures (``conftest.py``) point them at our
servers.
"""

from vgi_rpc.conformance._adversarial_http import TestAdversarialHttpRequestContract
from vgi_rpc.conformance._adversarial_raw import TestAdversarialRawRequestContract
from vgi_rpc.conformance._request_limits_pytest import TestCompressedHttpRequestCap

__all__ = [
    "TestAdversarialHttpRequestContract",
    "TestAdversarialRawRequestContract",
    "TestCompressedHttpRequestCap",
]
