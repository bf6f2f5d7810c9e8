"""The snapshot normaliser's structural passes: vgi_rpc's own frames, session buckets, envelope order.

Run by :func:`vgi_rpc.testing.snapshots.normalize` around the rule walk of
:mod:`vgi_rpc.testing._snapshot_rules`: before it, runs of stack frames inside
``vgi_rpc`` collapse into one placeholder frame (their ``_meta`` notes go with
them) and envelopes whose position is the SDK's batching timing move to the
end; after it, ``sessions`` buckets that became equal are summed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["collapse_library_frames", "merge_session_aggregates", "order_envelopes"]

# The placeholder that stands for a run of vgi_rpc's own stack frames.
_LIBRARY_FRAME = {"function": "<vgi_rpc frames>", "module": "vgi_rpc", "in_app": False}
_LIBRARY_PACKAGE = "vgi_rpc"


def _is_library_frame(frame: Any) -> bool:
    if not isinstance(frame, dict):
        return False
    module = frame.get("module")
    if isinstance(module, str):
        return module == _LIBRARY_PACKAGE or module.startswith(_LIBRARY_PACKAGE + ".")
    filename = frame.get("filename")
    return isinstance(filename, str) and filename.replace("\\", "/").startswith(_LIBRARY_PACKAGE + "/")


def _collapse_frames(frames: list[Any]) -> tuple[list[Any], dict[int, int | None]]:
    """Each run of vgi_rpc frames -> one placeholder; returns the frames and old index -> new index."""
    out: list[Any] = []
    where: dict[int, int | None] = {}
    for index, frame in enumerate(frames):
        if _is_library_frame(frame):
            if not (out and out[-1] is _LIBRARY_FRAME):
                out.append(_LIBRARY_FRAME)
            where[index] = None  # its notes go with it
        else:
            where[index] = len(out)
            out.append(frame)
    return [dict(f) if f is _LIBRARY_FRAME else f for f in out], where


def _meta_node(meta: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(meta, dict):
            return None
        meta = meta.get(key)
    return meta


def _collapse_stacktrace(stacktrace: dict[str, Any], notes: Any) -> None:
    """In place: collapse the frames, and re-index (or drop) the ``_meta`` notes about them."""
    frames, where = _collapse_frames(stacktrace["frames"])
    if None not in where.values():
        return  # none of ours
    stacktrace["frames"] = frames
    if isinstance(notes, dict):
        # "3" -> the frame's new index, or gone with a collapsed frame; a note on the
        # list itself ("": its length) counted our frames too, so it goes as well.
        moved = {
            str(where[int(k)]): v for k, v in notes.items() if k.isdigit() and where.get(int(k)) is not None
        }
        notes.clear()
        notes.update(moved)


def collapse_library_frames(node: Any, meta: Any = None, path: tuple[str, ...] = ()) -> None:
    """In place: collapse vgi_rpc frames everywhere under ``node``, moving ``_meta`` notes along.

    A payload's ``_meta`` mirrors the payload's shape, frames by index
    (``_meta.exception.values.0.stacktrace.frames.3.vars``); ``meta`` is the
    nearest enclosing payload's ``_meta`` and ``path`` the way from that payload
    to ``node``.
    """
    if isinstance(node, list):
        for index, value in enumerate(node):
            collapse_library_frames(value, meta, (*path, str(index)))
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("_meta"), dict):
        meta, path = node["_meta"], ()
    for key, value in node.items():
        if key == "_meta":
            continue
        if key == "stacktrace" and isinstance(value, dict) and isinstance(value.get("frames"), list):
            _collapse_stacktrace(value, _meta_node(meta, (*path, key, "frames")))
        else:
            collapse_library_frames(value, meta, (*path, str(key)))


def merge_session_aggregates(node: Any) -> Any:
    """In place, after the walk: a ``sessions`` payload's buckets that became equal are summed.

    The SDK buckets request sessions by the minute they started; once ``started``
    is ``<timestamp>``, a test that ran across a minute boundary would otherwise
    show two buckets where another run shows one.
    """
    if isinstance(node, list):
        for value in node:
            merge_session_aggregates(value)
    elif isinstance(node, dict):
        aggregates = node.get("aggregates")
        if "attrs" in node and isinstance(aggregates, list) and all(isinstance(a, dict) for a in aggregates):
            merged: dict[str, dict[str, Any]] = {}
            for bucket in aggregates:
                counts = {k: v for k, v in bucket.items() if isinstance(v, int) and not isinstance(v, bool)}
                key = repr(sorted((k, v) for k, v in bucket.items() if k not in counts))
                into = merged.setdefault(key, {k: v for k, v in bucket.items() if k not in counts})
                for name, count in counts.items():
                    into[name] = into.get(name, 0) + count
            node["aggregates"] = [dict(sorted(bucket.items())) for bucket in merged.values()]
        for value in node.values():
            merge_session_aggregates(value)
    return node


# Envelopes of these item types leave from SDK worker threads (the session flusher, the
# log and metric batchers) or at flush time: where they land among the others is timing.
_BATCHED_TYPES = ("client_report", "log", "sessions", "trace_metric")


def order_envelopes(data: Any) -> Any:
    """A list of envelopes with those holding only batched aggregates last, by item type (stable).

    On sentry-sdk 3 the span batcher's thread and the session flush race, so a
    capture's ``sessions`` envelope comes before or after the last ``span``
    envelope from one run to the next; logs and client reports likewise. They
    are aggregates with no place in the order of calls, so the snapshot lists
    them after every event, transaction and span envelope. Anything that is not
    a list of envelopes is returned as is.
    """
    if not (isinstance(data, list) and data and all(_is_envelope(e) for e in data)):
        return data
    rest = [e for e in data if not _batched(e)]
    batched = sorted((e for e in data if _batched(e)), key=lambda e: _item_types(e))
    return rest + batched


def _is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("items"), list) and "headers" in value


def _item_types(envelope: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(item.get("type")) if isinstance(item, dict) else "" for item in envelope["items"])


def _batched(envelope: dict[str, Any]) -> bool:
    types = _item_types(envelope)
    return bool(types) and all(t in _BATCHED_TYPES for t in types)
