"""Compare what the SDK sent with what Relay stores: readable paths and :class:`Finding` s.

Pure data, no Relay: :mod:`vgi_rpc.testing.relay` produces the stored payload
and calls :func:`findings`.  The rules for what counts as a change are
documented there.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DEFAULT_IGNORE", "Finding", "findings", "render"]

DEFAULT_IGNORE: tuple[str, ...] = (
    "exception.values.*.stacktrace.frames.*.vars",
    "threads.values.*.stacktrace.frames.*.vars",
    "spans.*.same_process_as_parent",
)
"""Field paths :func:`findings` skips unless told otherwise (why: :mod:`vgi_rpc.testing.relay`)."""

# -- paths ---------------------------------------------------------------------------------

Segment = str | int
Path = tuple[Segment, ...]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render(path: Path, *, on_key: bool = False) -> str:
    """A readable field path: ``tags["rpc.param.q"]``, ``contexts.trace.data["rpc.method"]``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _IDENT.match(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{json.dumps(seg)}]"
    out = out or "(the whole payload)"
    return f"{out} (its key)" if on_key else out


def _parse_pattern(pattern: str) -> tuple[str, ...]:
    parts: list[str] = []
    for match in re.finditer(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+|\*)\]|([^.\[\]]+)', pattern):
        quoted, index, plain = match.groups()
        parts.append(
            json.loads(f'"{quoted}"') if quoted is not None else index if index is not None else plain
        )
    return tuple(parts)


def _matches(path: Path, patterns: Sequence[tuple[str, ...]]) -> bool:
    """Whether *path* is, or is inside, a field one of *patterns* names (``*`` = any one segment)."""
    for pattern in patterns:
        if len(pattern) <= len(path) and all(
            fnmatch.fnmatchcase(str(seg), pat) for seg, pat in zip(path, pattern, strict=False)
        ):
            return True
    return False


def _is_pairs(node: Any) -> bool:
    return (
        isinstance(node, list)
        and bool(node)
        and all(isinstance(x, list) and len(x) == 2 and isinstance(x[0], str | None) for x in node)
    )


def _meta_entries(
    meta: Any, doc: Any, raw: tuple[str, ...] = ()
) -> Iterator[tuple[Path, bool, dict[str, Any]]]:
    """(canonical path, on_key, entry) for every ``""`` entry of a ``_meta`` tree indexing *doc*.

    Canonical paths name pair-list entries by their key, so a tag is
    ``("tags", "env")`` whether the document holds tags as a dict (the SDK) or
    as pairs (Relay).
    """
    if not isinstance(meta, dict):
        return
    for key, sub in meta.items():
        if key == "":
            if isinstance(sub, dict):
                path, on_key = _canonical(doc, raw)
                yield path, on_key, sub
        else:
            yield from _meta_entries(sub, doc, (*raw, key))


def _canonical(doc: Any, raw: tuple[str, ...]) -> tuple[Path, bool]:
    node = doc
    out: list[Segment] = []
    on_key = False
    i = 0
    while i < len(raw):
        seg = raw[i]
        if _is_pairs(node) and seg.isdigit() and int(seg) < len(node):
            pair = node[int(seg)]
            out.append(str(pair[0]))
            if i + 1 < len(raw) and raw[i + 1] in ("0", "1"):
                on_key = raw[i + 1] == "0"
                node = pair[1]
                i += 2
                continue
            node = pair[1]
        elif isinstance(node, list) and seg.isdigit():
            out.append(int(seg))
            node = node[int(seg)] if int(seg) < len(node) else None
        else:
            out.append(seg)
            node = node.get(seg) if isinstance(node, dict) else None
        i += 1
    return tuple(out), on_key


_MISSING = object()


def _lookup(doc: Any, path: Path) -> Any:
    node = doc
    for seg in path:
        if isinstance(node, dict):
            node = node.get(str(seg), _MISSING)
        elif _is_pairs(node) and isinstance(seg, str):
            node = next((v for k, v in node if k == seg), _MISSING)
        elif isinstance(node, list) and isinstance(seg, int):
            node = node[seg] if seg < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every non-empty scalar of *node* with its canonical path (``_meta`` skipped)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not path and key == "_meta":
                continue
            yield from _leaves(value, (*path, str(key)))
    elif _is_pairs(node):
        for key, value in node:
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    elif node is not None and node != "":
        yield path, node


def _relocated(path: Path) -> Iterator[Path]:
    """Where Relay moves a field it does not drop (documented re-shaping)."""
    if path == ("server_name",):
        yield ("tags", "server_name")
    if path in (("message",), ("logentry", "message")):  # a message without params is its own text
        yield ("logentry", "formatted")
    if len(path) >= 2 and path[0] == "user":
        yield ("user", "data", *path[1:])


def _same(sent: Any, stored: Any) -> bool:
    """Whether Relay stored *sent* as *stored* (``True`` is not ``1``; ISO time == its number)."""
    if type(sent) is bool or type(stored) is bool:
        return type(sent) is type(stored) and sent == stored
    if sent == stored:
        return True
    if isinstance(sent, float) and isinstance(stored, float) and sent != sent and stored != stored:
        return True  # NaN
    if isinstance(sent, str) and isinstance(stored, int | float):
        try:
            parsed = datetime.datetime.fromisoformat(sent.replace("Z", "+00:00"))
        except ValueError:
            return False
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return abs(parsed.timestamp() - float(stored)) < 1e-3
    return False


# -- findings ----------------------------------------------------------------------------

Kind = Literal["rejected", "trimmed", "invalid", "removed", "replaced", "dropped", "changed"]


@dataclass(frozen=True)
class Finding:
    """One field Relay would not store as sent.

    Attributes:
        where: The item, e.g. ``envelope 0, event`` (or what the caller named it).
        path: The field, e.g. ``tags["rpc.param.q"]``; ``(its key)`` when the
            key itself is affected.
        kind: ``trimmed`` (cut to a length or size limit), ``invalid`` (removed
            as invalid, original kept in ``_meta``), ``removed`` / ``replaced``
            (by another Relay rule), ``dropped`` (missing from what Relay stores,
            with no remark), ``changed`` (stored with a different value, no
            remark) or ``rejected`` (the whole payload).
        remark: Relay's own words: the ``_meta`` remark or error, verbatim.
        detail: A short explanation (original length, the value...).
    """

    where: str
    path: str
    kind: Kind
    remark: str
    detail: str = ""

    def __str__(self) -> str:
        """One line: ``where path: kind (detail) -- Relay: remark``."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.where}: {self.path}: {self.kind}{detail} -- Relay: {self.remark}"


_REMARK_TYPES = {"s": "substituted", "x": "removed", "m": "masked", "p": "pseudonymized", "e": "encrypted"}


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _size(value: Any) -> str:
    return str(len(value)) if isinstance(value, str | list | dict) else "?"


def _describe_entry(
    entry: Mapping[str, Any], stored_value: Any, sdk_remarks: set[str]
) -> list[tuple[Kind, str, str]]:
    out: list[tuple[Kind, str, str]] = []
    for err in entry.get("err") or ():
        kind_name, data = (err[0], err[1] if len(err) > 1 else None) if isinstance(err, list) else (err, None)
        remark = json.dumps(err, ensure_ascii=False)
        if remark in sdk_remarks:
            continue
        reason = data.get("reason") if isinstance(data, dict) else None
        detail = str(reason) if reason else str(kind_name)
        if "val" in entry:
            detail += f"; sent {_short(entry['val'])}"
        out.append(("invalid", remark, detail))
    for rem in entry.get("rem") or ():
        remark = json.dumps(rem, ensure_ascii=False)
        if remark in sdk_remarks:
            continue
        rule = rem[0] if isinstance(rem, list) and rem else "?"
        rtype = str(rem[1]) if isinstance(rem, list) and len(rem) > 1 else "?"
        if rule == "!limit":
            unit = "characters" if isinstance(stored_value, str) else "entries"
            detail = f"{entry.get('len', '?')} {unit} sent, {_size(stored_value)} stored"
            out.append(("trimmed", remark, detail))
        else:
            kind: Kind = "removed" if rtype == "x" else "replaced"
            out.append((kind, remark, f"{_REMARK_TYPES.get(rtype, rtype)} by rule {rule}"))
    if not out and "len" in entry and not entry.get("rem"):
        original = entry["len"]
        now = len(stored_value) if isinstance(stored_value, list | dict | str) else None
        if now is None or now < original:
            sent = json.dumps({"len": original})
            if sent not in sdk_remarks:
                out.append(("trimmed", sent, f"{original} entries sent, {_size(stored_value)} stored"))
    if (
        not out
        and "val" in entry
        and not entry.get("err")
        and json.dumps({"val": entry["val"]}) not in sdk_remarks
    ):
        out.append(
            (
                "replaced",
                json.dumps({"val": entry["val"]}, ensure_ascii=False),
                f"sent {_short(entry['val'])}, stored {_short(stored_value)}",
            )
        )
    return out


def _entry_keys(entry: Mapping[str, Any]) -> set[str]:
    keys = {json.dumps(x, ensure_ascii=False) for x in (entry.get("err") or ())}
    keys |= {json.dumps(x, ensure_ascii=False) for x in (entry.get("rem") or ())}
    if "len" in entry:
        keys.add(json.dumps({"len": entry["len"]}))
    if "val" in entry:
        keys.add(json.dumps({"val": entry["val"]}, ensure_ascii=False))
    return keys


def findings(
    sent: Mapping[str, Any],
    stored: Mapping[str, Any],
    *,
    where: str = "payload",
    ignore: Iterable[str] | None = None,
) -> list[Finding]:
    """Every field of *sent* that Relay would not store as sent, judged from *stored*.

    *stored* is :func:`normalize` applied to *sent*.  *ignore* lists field
    paths to skip -- each path and everything under it; ``*`` matches any one
    segment, e.g. ``'contexts.trace.data["rpc.param.*"]'`` -- and defaults to
    :data:`DEFAULT_IGNORE`.  See the module docstring for what counts.
    """
    patterns = [_parse_pattern(p) for p in (DEFAULT_IGNORE if ignore is None else ignore)]
    sdk: dict[tuple[Path, bool], set[str]] = {}
    for path, on_key, entry in _meta_entries(sent.get("_meta"), sent):
        sdk.setdefault((path, on_key), set()).update(_entry_keys(entry))

    out: list[Finding] = []
    explained: list[Path] = []
    for path, on_key, entry in _meta_entries(stored.get("_meta"), stored):
        if _matches(path, patterns):
            continue
        value = _lookup(stored, path)
        for kind, remark, detail in _describe_entry(entry, value, sdk.get((path, on_key), set())):
            out.append(Finding(where, render(path, on_key=on_key), kind, remark, detail))
            explained.append(path)
    explained.extend(path for path, _ in sdk)  # the SDK's own remarks explain its own placeholders

    def covered(path: Path) -> bool:
        return any(path[: len(p)] == p for p in explained) or _matches(path, patterns)

    for path, value in _leaves(sent):
        if covered(path):
            continue
        got = _lookup(stored, path)
        if got is _MISSING or got is None:
            moved = [_lookup(stored, alt) for alt in _relocated(path)]
            if any(m is not _MISSING and _same(value, m) for m in moved):
                continue
            out.append(Finding(where, render(path), "dropped", "no remark", f"sent {_short(value)}"))
        elif not _same(value, got):
            out.append(
                Finding(
                    where, render(path), "changed", "no remark", f"sent {_short(value)}, stored {_short(got)}"
                )
            )
    return out
