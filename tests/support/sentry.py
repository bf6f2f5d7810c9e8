"""Reading Sentry envelopes, and a transport that fails on purpose.

For the tests that run the real ``sentry_sdk`` with ``vgi_rpc.testing``'s capture;
nothing here patches the SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def trace_data(txn: Mapping[str, Any]) -> dict[str, Any]:
    """The root span's data of a transaction event."""
    data: dict[str, Any] = txn["contexts"]["trace"].get("data", {})
    return data


def rpc_data(data: dict[str, Any]) -> dict[str, Any]:
    """The ``rpc.*`` entries of span data."""
    return {k: v for k, v in data.items() if k.startswith("rpc.")}


class RaisingTransport(Transport):
    """A real Transport whose every send fails while ``broken`` is set.

    Tests clear ``broken`` before the SDK shuts down: the SDK's own ``close()`` (not
    an RPC call) flushes session updates without guarding the transport.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        self.broken = True

    def capture_envelope(self, envelope: Envelope) -> None:
        if self.broken:
            self.attempts += 1
            raise ConnectionError("sentry is down")
