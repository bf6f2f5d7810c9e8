"""Dispatch hooks: the one seam through which instrumentation sees a call.

A hook observes one dispatch through :meth:`DispatchHook.on_dispatch_start`
(method info, caller, transport metadata, decoded kwargs) and
:meth:`DispatchHook.on_dispatch_end` (the *original* exception, or ``None``).
A stream call over HTTP is several turns (``init`` then ``exchange``...): each turn
is one start/end pair and all share ``info.stream_id``; only ``init`` carries
kwargs. On the pipe transport a whole stream is one start/end pair.

Register hooks on the server: ``RpcServer(..., hooks=[...])``,
``server.add_hook(hook, first=False)``, ``server.remove_hooks(kind)``; read them
back with ``server.hooks``. The server keeps them as one chain value: a single
hook, or a :class:`CompositeDispatchHook` (start in registration order, end in
reverse). :func:`register_dispatch_hook`, :func:`strip_dispatch_hooks` and
:func:`iter_hooks` are the pure functions over such a value the server uses.
Hooks are started and ended by ``vgi_rpc.call`` only (through :func:`_safe_start`
and :func:`_safe_end`): a hook that raises is logged on the ``vgi_rpc`` logger at
WARNING and skipped; it never changes the call's result and never stops the
other hooks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from vgi_rpc.auth import AuthContext

__all__ = [
    "CompositeDispatchHook",
    "DispatchHook",
    "DispatchInfo",
    "register_dispatch_hook",
    "strip_dispatch_hooks",
]

_logger = logging.getLogger("vgi_rpc")

MethodType = Literal["unary", "stream"]
Turn = Literal["call", "init", "exchange", "stream"]


@dataclass(frozen=True, slots=True)
class DispatchInfo:
    """What a hook learns about the call being dispatched.

    Attributes:
        name: The RPC method name.
        method_type: ``"unary"`` or ``"stream"``.
        service: The Protocol's wire name (``protocol_name`` or the class name).
        server_id: The serving ``RpcServer.server_id``.
        request_id: A fresh 16-hex id for this dispatch (one per HTTP turn).
        stream_id: 32-hex id shared by every turn of one stream call; ``None`` for unary.
        transport: ``"pipe"``, ``"http"`` or ``"inproc"`` (``RpcServer.dispatch``).
        turn: ``"call"`` (unary), ``"stream"`` (a whole stream on the pipe),
            ``"init"`` / ``"exchange"`` (one HTTP stream turn).
    """

    name: str
    method_type: MethodType
    service: str
    server_id: str
    request_id: str
    stream_id: str | None = None
    transport: str = "inproc"
    turn: Turn = "call"


_FIELDS = ("name", "method_type", "service", "server_id", "request_id", "stream_id", "transport", "turn")
if tuple(f.name for f in dataclasses.fields(DispatchInfo)) != _FIELDS:  # pragma: no cover
    raise RuntimeError("DispatchInfo's fields changed: keep _dispatch_info in step")
_new = object.__new__
_set_name, _set_type, _set_service, _set_server, _set_request, _set_stream, _set_transport, _set_turn = (
    DispatchInfo.__dict__[name].__set__ for name in _FIELDS
)


def _dispatch_info(
    name: str,
    method_type: MethodType,
    service: str,
    server_id: str,
    request_id: str,
    stream_id: str | None,
    transport: str,
    turn: Turn,
) -> DispatchInfo:
    """``DispatchInfo(...)`` for the dispatch path, without the frozen dataclass's ``__init__``.

    Why: a frozen dataclass sets each field through ``object.__setattr__``, and that
    alone was half of what one no-op hook costs a call. The slots' own setters build
    the very same (still frozen) object in half the time.
    """
    info: DispatchInfo = _new(DispatchInfo)
    _set_name(info, name)
    _set_type(info, method_type)
    _set_service(info, service)
    _set_server(info, server_id)
    _set_request(info, request_id)
    _set_stream(info, stream_id)
    _set_transport(info, transport)
    _set_turn(info, turn)
    return info


@runtime_checkable
class DispatchHook(Protocol):
    """Observer of dispatches. Implementations must be thread-safe."""

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        """Called before the implementation runs; the return value is passed to end.

        ``kwargs`` is ``None`` on HTTP ``exchange`` turns (the kwargs belong to ``init``).
        ``transport_metadata`` holds HTTP request headers (lower-case names) or, on the
        pipe, the request batch's custom metadata.
        """
        ...

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        """Called after the call (or turn) finished; ``error`` is the original exception."""
        ...


_FAILED = object()


def _safe_start(
    hook: DispatchHook,
    info: DispatchInfo,
    auth: AuthContext,
    transport_metadata: Mapping[str, str],
    kwargs: Mapping[str, Any] | None,
) -> object:
    try:
        return hook.on_dispatch_start(info, auth, transport_metadata, kwargs)
    except Exception:
        _logger.warning("dispatch hook %r failed in on_dispatch_start; skipped", hook, exc_info=True)
        return _FAILED


def _safe_end(hook: DispatchHook, token: object, info: DispatchInfo, error: BaseException | None) -> None:
    if token is _FAILED:
        return
    try:
        hook.on_dispatch_end(token, info, error)
    except Exception:
        _logger.warning("dispatch hook %r failed in on_dispatch_end; skipped", hook, exc_info=True)


class CompositeDispatchHook:
    """Several hooks run as one: start in order, end in reverse order.

    Each hook is isolated: one that raises is logged and skipped (its end is not
    called if its start failed), and the others still run.
    """

    __slots__ = ("hooks",)

    def __init__(self, hooks: tuple[DispatchHook, ...]) -> None:
        self.hooks = hooks

    def on_dispatch_start(
        self,
        info: DispatchInfo,
        auth: AuthContext,
        transport_metadata: Mapping[str, str],
        kwargs: Mapping[str, Any] | None,
    ) -> object:
        """Start every hook in order; returns their tokens."""
        return tuple(_safe_start(h, info, auth, transport_metadata, kwargs) for h in self.hooks)

    def on_dispatch_end(self, token: object, info: DispatchInfo, error: BaseException | None) -> None:
        """End every started hook in reverse order."""
        tokens: tuple[object, ...] = token  # type: ignore[assignment]
        for hook, tok in zip(reversed(self.hooks), reversed(tokens), strict=True):
            _safe_end(hook, tok, info, error)

    def __repr__(self) -> str:
        return f"CompositeDispatchHook({list(self.hooks)!r})"


_CompositeDispatchHook = CompositeDispatchHook  # the name the Sentry documentation uses


def register_dispatch_hook(
    existing: DispatchHook | None, new: DispatchHook, *, first: bool = False
) -> DispatchHook:
    """Return the hook chain with *new* added to *existing* (which may be ``None``).

    *new* goes last (its start runs after the others', its end before theirs), or
    outermost with ``first=True`` (start before every other hook, end after them).
    """
    if existing is None:
        return new
    hooks = existing.hooks if isinstance(existing, CompositeDispatchHook) else (existing,)
    return CompositeDispatchHook((new, *hooks) if first else (*hooks, new))


def strip_dispatch_hooks(existing: DispatchHook | None, kind: type) -> DispatchHook | None:
    """Return the chain without every hook that is an instance of *kind*; others keep their order."""
    if existing is None:
        return None
    hooks = existing.hooks if isinstance(existing, CompositeDispatchHook) else (existing,)
    kept = tuple(h for h in hooks if not isinstance(h, kind))
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    return CompositeDispatchHook(kept)


def iter_hooks(existing: DispatchHook | None) -> tuple[DispatchHook, ...]:
    """The individual hooks in a chain, in registration order."""
    if existing is None:
        return ()
    if isinstance(existing, CompositeDispatchHook):
        return existing.hooks
    return (existing,)
