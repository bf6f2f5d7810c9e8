"""One trace out of a capture: its spans with their parent links, and (Sentry) its error events.

:class:`CapturedTrace` is what :meth:`vgi_rpc.testing.SentryCapture.trace`
returns. It is built from the capture's generation-neutral views only (the
flattened ``spans`` and the ``events``), so the same assertions work on
sentry-sdk 2.x transactions and on 3.x span streaming. The tree logic (roots,
parents, children, chains, the indented listing) is shared with the
OpenTelemetry view, :class:`vgi_rpc.testing.otel.OtelTrace`, through
:class:`TraceTree`. Plain functions on plain data; no SDK import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from vgi_rpc.testing._describe import describe_item
from vgi_rpc.testing._payloads import epoch_seconds

__all__ = ["CapturedTrace", "TraceTree", "build_sentry_trace", "sentry_trace_id", "sentry_trace_ids"]

S = TypeVar("S")

_INDENT = "  "


@dataclass(frozen=True, repr=False)
class TraceTree(Generic[S]):
    """The spans of one trace and their parent links (the part both views share).

    A span's parent is the span of this trace whose id is its parent id; a
    span whose parent is not here (the trace's top, or a span sent by another
    process whose envelopes this capture does not hold) is a *root*.
    """

    trace_id: str
    spans: tuple[S, ...]
    known_trace_ids: tuple[str, ...] = field(default=(), compare=False)

    # -- what a subclass says about its spans ---------------------------------------------

    def _span_id(self, span: S) -> str | None:
        raise NotImplementedError

    def _parent_id(self, span: S) -> str | None:
        raise NotImplementedError

    def _label(self, span: S) -> str:
        raise NotImplementedError

    def _line(self, span: S) -> str:
        raise NotImplementedError

    def _lines_under(self, span: S, depth: int) -> list[str]:
        return []

    def _tail(self) -> list[str]:
        return []

    # -- the tree -------------------------------------------------------------------------

    def _by_id(self) -> dict[str, S]:
        cached: dict[str, S] | None = self.__dict__.get("_index")
        if cached is not None:
            return cached
        index: dict[str, S] = {}
        for span in self.spans:
            span_id = self._span_id(span)
            if span_id is not None:
                index.setdefault(span_id, span)
        self.__dict__["_index"] = index  # frozen: computed once, on first use
        return index

    @property
    def roots(self) -> list[S]:
        """The spans whose parent is not in this trace, in start order."""
        return [span for span in self.spans if self.parent(span) is None]

    def parent(self, span: S) -> S | None:
        """The span of this trace that is *span*'s parent, or ``None`` (a root)."""
        parent_id = self._parent_id(span)
        if parent_id is None or parent_id == self._span_id(span):
            return None
        return self._by_id().get(parent_id)

    def children(self, span: S) -> list[S]:
        """The spans of this trace whose parent is *span*, in start order."""
        span_id = self._span_id(span)
        if span_id is None:
            return []
        return [s for s in self._children_by_id().get(span_id, []) if s is not span]

    def _children_by_id(self) -> dict[str, list[S]]:
        cached: dict[str, list[S]] | None = self.__dict__.get("_children")
        if cached is not None:
            return cached
        children: dict[str, list[S]] = {}
        for span in self.spans:
            parent_id = self._parent_id(span)
            if parent_id is not None:
                children.setdefault(parent_id, []).append(span)
        self.__dict__["_children"] = children  # frozen: computed once, on first use
        return children

    def chain(self, span: S) -> list[str]:
        """The names of *span*'s ancestors from the top of the trace down to *span* (included)."""
        labels: list[str] = []
        seen: set[int] = set()
        current: S | None = span
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            labels.append(self._label(current))
            current = self.parent(current)
        return labels[::-1]

    def describe(self) -> str:
        """An indented tree of the trace, one span per line, children under their parent."""
        lines = [f"trace {self.trace_id}: {self._counts()}"]
        if not self.spans:
            lines.append(f"{_INDENT}(no span of this trace was captured)")
        shown: set[int] = set()
        for start in [*self.roots, *self.spans]:  # then spans no root reaches (a cycle of parent ids)
            self._describe_subtree(start, lines, shown)
        lines.extend(self._tail())
        return "\n".join(lines)

    def _describe_subtree(self, start: S, lines: list[str], shown: set[int]) -> None:
        stack: list[tuple[S, int]] = [(start, 1)]  # a loop, not recursion: a trace may be thousands deep
        while stack:
            span, depth = stack.pop()
            if id(span) in shown:
                continue
            shown.add(id(span))
            lines.append(_INDENT * depth + self._line(span))
            lines.extend(self._lines_under(span, depth + 1))
            stack.extend((child, depth + 1) for child in reversed(self.children(span)))

    def _counts(self) -> str:
        return f"{len(self.spans)} span(s)"

    def _find(self, matches: Callable[[S], bool], wanted: str) -> S:
        __tracebackhide__ = True
        found = [span for span in self.spans if matches(span)]
        if len(found) == 1:
            return found[0]
        if not self.spans:
            seen = ", ".join(self.known_trace_ids) or "none"
            raise AssertionError(
                f"expected exactly one span{wanted} in trace {self.trace_id}, but this capture holds "
                f"no span of that trace (traces it holds: {seen})\n{self.describe()}"
            )
        raise AssertionError(
            f"expected exactly one span{wanted}, found {len(found)}; the trace:\n{self.describe()}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.trace_id}: {self._counts()}>"


@dataclass(frozen=True, repr=False)
class CapturedTrace(TraceTree[dict[str, Any]]):
    """One Sentry trace as a capture holds it: spans with parent links, and the error events in it.

    Attributes:
        trace_id: The trace's id (32 lower-case hex digits).
        spans: The trace's spans in the shape of :attr:`SentryCapture.spans`
            (roots included, ``description``, ``op``, ``span_id``,
            ``parent_span_id``, ``data``...), in start order.
        events: The error events whose ``contexts.trace.trace_id`` is this
            trace's, in capture order.

    Only what reached this capture is here: sentry-sdk 2.x sends a
    transaction's spans when the transaction finishes, and a worker in another
    process sends to its own transport (bring its envelopes back with
    :meth:`SentryCapture.from_envelopes`). A span whose parent was not
    captured is one of :attr:`roots`.
    """

    events: tuple[dict[str, Any], ...] = ()

    def _span_id(self, span: dict[str, Any]) -> str | None:
        return _text(span.get("span_id"))

    def _parent_id(self, span: dict[str, Any]) -> str | None:
        return _text(span.get("parent_span_id"))

    def _label(self, span: dict[str, Any]) -> str:
        return str(span.get("description"))

    def _line(self, span: dict[str, Any]) -> str:
        line = f"{span.get('description')} [{span.get('op')}] {span.get('span_id')}"
        parent_id = self._parent_id(span)
        if parent_id is not None and self.parent(span) is None:
            line += f" (parent {parent_id} not captured)"
        return line

    def _event_span(self, event: Mapping[str, Any]) -> str | None:
        return _text(((event.get("contexts") or {}).get("trace") or {}).get("span_id"))

    def _lines_under(self, span: dict[str, Any], depth: int) -> list[str]:
        span_id = self._span_id(span)
        return [_INDENT * depth + _event_line(e) for e in self.events if self._event_span(e) == span_id]

    def _tail(self) -> list[str]:
        ids = self._by_id()
        loose = [e for e in self.events if self._event_span(e) not in ids]
        if not loose:
            return []
        return [f"{_INDENT}events in no captured span of this trace:"] + [
            _INDENT * 2 + _event_line(e) for e in loose
        ]

    def _counts(self) -> str:
        return f"{len(self.spans)} span(s), {len(self.events)} event(s)"

    def find(self, description: str | None = None, op: str | None = None) -> dict[str, Any]:
        """The one span of this trace with that ``description`` and/or ``op`` (both optional).

        Raises:
            AssertionError: not exactly one such span; the message is :meth:`describe`
                (for a trace this capture has no span of, it also lists the traces it has).
        """
        __tracebackhide__ = True
        wanted = criteria(("with description", description), ("with op", op))
        return self._find(
            lambda s: (
                (description is None or s.get("description") == description)
                and (op is None or s.get("op") == op)
            ),
            wanted,
        )


def sentry_trace_id(trace_id: object) -> str:
    """*trace_id* as the views spell it (lower-case hex); ``TypeError`` for anything but a string."""
    if not isinstance(trace_id, str):
        raise TypeError(
            f"trace id must be a str (e.g. span.trace_id), not {type(trace_id).__name__}: {trace_id!r}"
        )
    return trace_id.strip().lower()


def build_sentry_trace(
    trace_id: str, spans: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]], known: tuple[str, ...]
) -> CapturedTrace:
    """The :class:`CapturedTrace` of *trace_id* out of a capture's flattened spans and events."""
    mine = [s for s in spans if _text(s.get("trace_id")) == trace_id]
    in_trace = [e for e in events if _event_trace_id(e) == trace_id]
    ordered = sorted(enumerate(mine), key=lambda pair: (_start(pair[1]), pair[0]))
    return CapturedTrace(trace_id, tuple(s for _, s in ordered), known, events=tuple(in_trace))


def sentry_trace_ids(spans: Iterable[dict[str, Any]], events: Iterable[dict[str, Any]]) -> list[str]:
    """Distinct trace ids: the spans' in their order, then those only events carry."""
    seen: dict[str, None] = {}
    for trace_id in [_text(s.get("trace_id")) for s in spans] + [_event_trace_id(e) for e in events]:
        if trace_id is not None:
            seen.setdefault(trace_id, None)
    return list(seen)


def _event_trace_id(event: Mapping[str, Any]) -> str | None:
    return _text(((event.get("contexts") or {}).get("trace") or {}).get("trace_id"))


def _text(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def criteria(*pairs: tuple[str, object]) -> str:
    """What a lookup asked for, for its failure message: `` with op 'rpc.server'`` (``None`` values left out)."""
    return "".join(f" {label} {value!r}" for label, value in pairs if value is not None)


def _start(span: Mapping[str, Any]) -> float:
    """A span's start as epoch seconds (unknown: last)."""
    start = epoch_seconds(span.get("start_timestamp"))
    return float("inf") if start is None else start


def _event_line(event: dict[str, Any]) -> str:
    return "! " + describe_item({"type": "event", "payload": event})
