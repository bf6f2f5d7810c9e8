"""``RecordingHook``: a dispatch hook that records what every dispatch saw, for tests.

Public as :class:`vgi_rpc.testing.RecordingHook` (documented in the README's
"Dispatch hooks" section). Imports nothing optional: no pytest, syrupy or Sentry.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vgi_rpc.auth import AuthContext
from vgi_rpc.hooks import DispatchInfo

__all__ = ["RecordedCall", "RecordingHook"]


@dataclass(eq=False)
class RecordedCall:
    """One dispatch (one HTTP stream turn) as a hook saw it.

    Attributes:
        info: The :class:`~vgi_rpc.hooks.DispatchInfo` given to start (and end).
        auth: The caller.
        metadata: A copy of the transport metadata (HTTP headers, or the pipe
            request batch's custom metadata).
        kwargs: A copy of the decoded kwargs; ``None`` on an HTTP ``exchange`` turn.
        error: The original exception end received, or ``None``.
        ended: Whether end was called (``False`` while the call is running).
    """

    info: DispatchInfo
    auth: AuthContext
    metadata: dict[str, str]
    kwargs: dict[str, Any] | None
    error: BaseException | None = None
    ended: bool = False

    @property
    def name(self) -> str:
        """The method name (``info.name``)."""
        return self.info.name

    def __repr__(self) -> str:
        state = "running" if not self.ended else f"error={self.error!r}" if self.error else "ok"
        return f"<RecordedCall {self.info.name} turn={self.info.turn} {state}>"


class RecordingHook:
    """A thread-safe dispatch hook that records every start/end pair, in start order.

    Register it like any hook (``RpcServer(..., hooks=[hook])`` or
    ``server.add_hook(hook)``), then read :attr:`calls`: one
    :class:`RecordedCall` per dispatch (per turn over HTTP), holding what start
    saw (method info, caller, transport metadata, kwargs) and what end saw (the
    original exception). Start returns the record itself as the hook's token, so
    each end completes the record of its own start, also under concurrency.
    """

    def __init__(self) -> None:
        """An empty recording."""
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        """Record the start; the returned record is the token end gets back."""
        record = RecordedCall(info, auth, dict(transport_metadata), None if kwargs is None else dict(kwargs))
        with self._lock:
            self._calls.append(record)
        return record

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        """Complete the record start returned with the call's error (``None`` on success)."""
        if not isinstance(token, RecordedCall):
            raise TypeError(f"RecordingHook.on_dispatch_end got a token it did not hand out: {token!r}")
        with self._lock:
            token.error = error
            token.ended = True

    @property
    def calls(self) -> list[RecordedCall]:
        """Every dispatch recorded so far, in start order (a new list each time)."""
        with self._lock:
            return list(self._calls)

    def call(self, method: str | None = None) -> RecordedCall:
        """The one recorded dispatch (of ``method``, if given); ``AssertionError`` listing them otherwise."""
        calls = self.calls
        matching = [c for c in calls if method is None or c.info.name == method]
        if len(matching) != 1:
            which = "dispatch" if method is None else f"dispatch of {method!r}"
            raise AssertionError(f"expected exactly one {which}, recorded {len(matching)}: {calls!r}")
        return matching[0]

    def clear(self) -> None:
        """Forget every recorded dispatch."""
        with self._lock:
            self._calls.clear()

    def __repr__(self) -> str:
        return f"RecordingHook({self.calls!r})"
