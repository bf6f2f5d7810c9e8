"""Deterministic snapshots of Sentry envelopes (a syrupy extension).

Needs syrupy: ``pip install 'vgi-rpc[sentry,testing]'``.

:class:`SentryEnvelopeExtension` stores one pretty-printed JSON file per
snapshot under ``snapshots/<test module>/<test name>.sentry.json`` next to the
test module (``tests/snapshots/`` for a suite in ``tests/``), so each envelope
is reviewed like code.  Use it through the ``sentry_snapshot`` fixture of the
vgi_rpc pytest plugin::

    def test_error_event(sentry_capture, sentry_snapshot):
        ...
        assert sentry_capture.envelopes == sentry_snapshot

or with ``snapshot.use_extension(SentryEnvelopeExtension)``.  The data may be
a :class:`~vgi_rpc.testing.SentryCapture` (all its envelopes), one envelope
dict, an event payload, or a list of any of these.

Only ``*.sentry.json`` files belong to the extension: anything else under
``snapshots/`` is never read, reported unused or deleted.

Before serialising, :func:`normalize` replaces volatile values with
placeholders -- but only after checking each value's *format*: a malformed
id, timestamp or duration raises :class:`SnapshotFormatError` (the test
fails, even under ``--snapshot-update``), it is never silently replaced.

Identifiers are numbered by first appearance (``<span_id:1>``,
``<span_id:2>``...), so relationships stay pinned: an error event carrying
the transaction's span id, a child span's ``parent_span_id``, or every turn
of a stream sharing one ``rpc.stream_id`` show up as the *same* placeholder.

Rules (by key name, at any depth; a value wrapped as ``{"value": v, "type": t}``
-- Sentry's attribute form -- is checked and replaced inside the wrapper):

=====================================  =======================  =========================
key                                    format checked           placeholder
=====================================  =======================  =========================
``event_id``                           32 lower-case hex        ``<event_id:N>``
``trace_id``                           32 lower-case hex        ``<trace_id:N>``
``span_id``, ``parent_span_id``,       16 lower-case hex        ``<span_id:N>``
``sentry.segment.id``
``server_id``, ``rpc.server_id``       12 lower-case hex        ``<server_id:N>``
``stream_id``, ``rpc.stream_id``       32 lower-case hex        ``<stream_id:N>``
``request_id``, ``rpc.request_id``     16 lower-case hex        ``<request_id:N>``
``timestamp``, ``start_timestamp``,    ISO 8601 or epoch number ``<timestamp>``
``end_timestamp``, ``sent_at``,
``started``
``*duration*``, ``elapsed*`` [#]_      number >= 0              ``<duration>``
``thread.id``, ``thread_id``           decimal integer          ``<thread_id>``
``thread.name``                        string                   digit runs -> ``<n>``
``sample_rand``                        decimal in [0, 1)        ``<sample_rand>``
``sdk`` (its ``version``)              ``X.Y.Z...``             ``<sdk_version>``
``sentry.sdk.version``                 ``X.Y.Z...``             ``<sdk_version>``
``abs_path``                           string                   ``<path>``
``filename`` (absolute)                string                   ``<path>/<basename>``
``lineno``, ``colno``                  integer                  ``<lineno>``
``server_name``, ``server.address``    string                   ``<server_name>``
``release``, ``sentry.release``        string                   ``<release>``
``modules``                            dict of strings          ``<modules>``
``sys.argv``,                          list of strings          ``<argv>``
``process.command_args``
``sentry.sdk.integrations``            list of strings          ``<integrations>``
``process.runtime.version``            string                   ``<runtime_version>``
``contexts.runtime/os/device``         dict                     ``<runtime>`` etc.
=====================================  =======================  =========================

.. [#] any key ending in ``duration``/``elapsed`` (optionally ``_ms``, ``_s``...),
   except recorded parameters (``rpc.param.*``).

Dropped outright: ``pre_context``, ``context_line``, ``post_context`` (source
lines), ``vars`` (frame locals, full of object reprs) and the SDK's package
and integration lists (``sdk.packages``, ``sdk.integrations``: they follow
what is installed).  Inside ``_meta`` nothing is dropped: the SDK's notes on
what it filtered or trimmed stay pinned.  In every remaining string, memory
addresses ``0x7f...`` become ``0x<addr>``.

Caveat: everything else is pinned verbatim, stack frames (module, function,
file name) included, so refactoring the code on the stack changes the
snapshot -- that is the point, review the diff and run ``--snapshot-update``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vgi_rpc._extras import require

require("vgi_rpc.testing.snapshots", "testing")

from syrupy.data import SnapshotCollections  # noqa: E402
from syrupy.extensions.json import JSONSnapshotExtension  # noqa: E402

if TYPE_CHECKING:
    from syrupy.location import PyTestLocation

__all__ = ["SNAPSHOT_SUFFIX", "SentryEnvelopeExtension", "SnapshotFormatError", "normalize"]

#: The file name suffix of every snapshot this extension writes, reads and deletes.
SNAPSHOT_SUFFIX = ".sentry.json"


class SnapshotFormatError(AssertionError):
    """A volatile value did not have the format its placeholder promises."""


_HEX = {n: re.compile(rf"[0-9a-f]{{{n}}}") for n in (12, 16, 32)}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?")
_SEMVER = re.compile(r"\d+\.\d+\.\d+([.+-][0-9A-Za-z.+-]*)?")
_DECIMAL_INT = re.compile(r"\d+")
_ADDR = re.compile(r"0x[0-9a-fA-F]{6,16}")
_DIGITS = re.compile(r"\d+")
_DURATION_KEY = re.compile(r"(^|[._])(duration|elapsed)([._](ms|ns|us|s|seconds|millis))?$")

# Keys under these prefixes carry the application's own data (recorded params):
# never treat them as SDK timing values, whatever they are called.
_USER_DATA_PREFIXES = ("rpc.param.",)
_DROP = frozenset({"pre_context", "context_line", "post_context", "vars"})
_CONTEXT_PLACEHOLDERS = {"runtime": "<runtime>", "os": "<os>", "device": "<device>"}


def _fail(path: tuple[str, ...], value: Any, expected: str) -> SnapshotFormatError:
    where = ".".join(path) or "<root>"
    return SnapshotFormatError(f"snapshot normaliser: {where} = {value!r} is not {expected}")


class _Normalizer:
    def __init__(self) -> None:
        self._numbers: dict[str, dict[Any, int]] = {}

    def numbered(self, kind: str, value: Any) -> str:
        seen = self._numbers.setdefault(kind, {})
        if value not in seen:
            seen[value] = len(seen) + 1
        return f"<{kind}:{seen[value]}>"

    # -- checks -------------------------------------------------------------------------

    def hex_id(self, kind: str, width: int, *, nullable: bool = False) -> Callable[..., Any]:
        def rule(value: Any, path: tuple[str, ...]) -> Any:
            if value is None and nullable:
                return None
            if not (isinstance(value, str) and _HEX[width].fullmatch(value)):
                raise _fail(path, value, f"{width} lower-case hex digits")
            return self.numbered(kind, value)

        return rule

    @staticmethod
    def timestamp(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, bool) or not (
            (isinstance(value, int | float) and math.isfinite(value) and value > 0)
            or (isinstance(value, str) and _ISO.fullmatch(value))
        ):
            raise _fail(path, value, "an ISO 8601 timestamp or a positive epoch number")
        return "<timestamp>"

    @staticmethod
    def duration(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, bool) or not (
            isinstance(value, int | float) and math.isfinite(value) and value >= 0
        ):
            raise _fail(path, value, "a non-negative number")
        return "<duration>"

    @staticmethod
    def thread_id(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, bool) or not (
            (isinstance(value, int) and value >= 0)
            or (isinstance(value, str) and _DECIMAL_INT.fullmatch(value))
        ):
            raise _fail(path, value, "a decimal thread id")
        return "<thread_id>"

    @staticmethod
    def thread_name(value: Any, path: tuple[str, ...]) -> Any:
        if not isinstance(value, str):
            raise _fail(path, value, "a string")
        return _DIGITS.sub("<n>", value)

    @staticmethod
    def sample_rand(value: Any, path: tuple[str, ...]) -> Any:
        try:
            number = float(value) if isinstance(value, str | int | float) else -1.0
        except ValueError:
            number = -1.0
        if isinstance(value, bool) or not 0.0 <= number < 1.0:
            raise _fail(path, value, "a decimal in [0, 1)")
        return "<sample_rand>"

    @staticmethod
    def version(value: Any, path: tuple[str, ...]) -> Any:
        if not (isinstance(value, str) and _SEMVER.fullmatch(value)):
            raise _fail(path, value, "a version X.Y.Z")
        return "<sdk_version>"

    @staticmethod
    def string(placeholder: str) -> Callable[..., Any]:
        def rule(value: Any, path: tuple[str, ...]) -> Any:
            if not isinstance(value, str):
                raise _fail(path, value, "a string")
            return placeholder

        return rule

    @staticmethod
    def string_list(placeholder: str) -> Callable[..., Any]:
        def rule(value: Any, path: tuple[str, ...]) -> Any:
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise _fail(path, value, "a list of strings")
            return placeholder

        return rule

    @staticmethod
    def lineno(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, bool) or not (isinstance(value, int) and value >= 0):
            raise _fail(path, value, "a line number")
        return "<lineno>"

    @staticmethod
    def filename(value: Any, path: tuple[str, ...]) -> Any:
        if not isinstance(value, str):
            raise _fail(path, value, "a string")
        if value.startswith("/") or re.match(r"[A-Za-z]:[\\/]", value):
            return "<path>/" + re.split(r"[\\/]", value)[-1]
        return value

    @staticmethod
    def modules(value: Any, path: tuple[str, ...]) -> Any:
        if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise _fail(path, value, "a dict of package versions")
        return "<modules>"

    @staticmethod
    def argv(value: Any, path: tuple[str, ...]) -> Any:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise _fail(path, value, "a list of strings")
        return "<argv>"

    def sdk(self, value: Any, path: tuple[str, ...]) -> Any:
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            raise _fail(path, value, "an sdk dict with a name")
        return {"name": value["name"], "version": self.version(value.get("version"), (*path, "version"))}

    # -- the walk -------------------------------------------------------------------------

    def rules(self) -> dict[str, Callable[[Any, tuple[str, ...]], Any]]:
        return {
            "event_id": self.hex_id("event_id", 32),
            "trace_id": self.hex_id("trace_id", 32),
            "span_id": self.hex_id("span_id", 16),
            "parent_span_id": self.hex_id("span_id", 16, nullable=True),
            "sentry.segment.id": self.hex_id("span_id", 16),
            "server_id": self.hex_id("server_id", 12),
            "rpc.server_id": self.hex_id("server_id", 12),
            "stream_id": self.hex_id("stream_id", 32, nullable=True),
            "rpc.stream_id": self.hex_id("stream_id", 32),
            "request_id": self.hex_id("request_id", 16),
            "rpc.request_id": self.hex_id("request_id", 16),
            "timestamp": self.timestamp,
            "start_timestamp": self.timestamp,
            "end_timestamp": self.timestamp,
            "sent_at": self.timestamp,
            "started": self.timestamp,
            "thread.id": self.thread_id,
            "thread_id": self.thread_id,
            "thread.name": self.thread_name,
            "sample_rand": self.sample_rand,
            "sentry.sdk.version": self.version,
            "abs_path": self.string("<path>"),
            "filename": self.filename,
            "lineno": self.lineno,
            "colno": self.lineno,
            "server_name": self.string("<server_name>"),
            "server.address": self.string("<server_name>"),
            "release": self.string("<release>"),
            "sentry.release": self.string("<release>"),
            "modules": self.modules,
            "sys.argv": self.argv,
            "process.command_args": self.argv,
            "sentry.sdk.integrations": self.string_list("<integrations>"),
            "process.runtime.version": self.string("<runtime_version>"),
            "sdk": self.sdk,
        }

    def walk(self, value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            rules = self.rules()
            out: dict[str, Any] = {}
            for key in sorted(value, key=str):
                item = value[key]
                name = str(key)
                sub = (*path, name)
                if name in _DROP and "_meta" not in path:
                    continue
                if len(path) >= 1 and path[-1] == "contexts" and name in _CONTEXT_PLACEHOLDERS:
                    if not isinstance(item, dict):
                        raise _fail(sub, item, "a context dict")
                    out[name] = _CONTEXT_PLACEHOLDERS[name]
                    continue
                rule = rules.get(name)
                if rule is None and _DURATION_KEY.search(name) and not name.startswith(_USER_DATA_PREFIXES):
                    rule = self.duration
                if rule is not None and "_meta" in path:
                    # Sentry's annotation of a volatile field (e.g. that a long sys.argv
                    # was trimmed) comes and goes with the field's value: drop it.
                    if not isinstance(item, dict):
                        raise _fail(sub, item, "a _meta annotation dict")
                    continue
                if rule is not None:
                    if isinstance(item, dict) and "value" in item and set(item) <= {"value", "type", "unit"}:
                        wrapped = dict(item)
                        wrapped["value"] = rule(item["value"], (*sub, "value"))
                        out[name] = self.walk_plain(wrapped)
                    else:
                        out[name] = self.walk_plain(rule(item, sub))
                    continue
                walked = self.walk(item, sub)
                if "_meta" in sub and walked == {} and item:
                    continue  # everything under it was a dropped volatile annotation
                out[name] = walked
            return out
        if isinstance(value, list | tuple):
            return [self.walk(v, (*path, str(i))) for i, v in enumerate(value)]
        if isinstance(value, str):
            return _ADDR.sub("0x<addr>", value)
        return value

    @staticmethod
    def walk_plain(value: Any) -> Any:
        """Placeholders are final: only sort keys, do not re-apply rules."""
        if isinstance(value, dict):
            return {k: value[k] for k in sorted(value, key=str)}
        return value


def _as_data(data: Any) -> Any:
    from vgi_rpc.testing import SentryCapture

    if isinstance(data, SentryCapture):
        return data.envelopes
    return data


def normalize(data: Any) -> Any:
    """Return a copy of ``data`` with volatile Sentry values replaced by placeholders.

    ``data`` is anything :class:`SentryEnvelopeExtension` accepts (a
    :class:`~vgi_rpc.testing.SentryCapture`, envelopes, payloads, lists).
    Keys are sorted.  See the module docstring for the rules.

    Raises:
        SnapshotFormatError: a volatile value does not have its expected format.
    """
    return _Normalizer().walk(_as_data(data), ())


class SentryEnvelopeExtension(JSONSnapshotExtension):
    """syrupy extension: normalised Sentry envelopes as ``*.sentry.json`` files in ``snapshots/``.

    Snapshots live in ``snapshots/<test module>/<test name>.sentry.json``
    beside the test module (``snapshot_dirname``); ``pytest --snapshot-update``
    regenerates them.  A malformed volatile value fails the assertion with
    :class:`SnapshotFormatError` instead of being written.

    The extension owns only files ending in :data:`SNAPSHOT_SUFFIX`: any other
    file under ``snapshots/`` (your own JSON, another tool's data) is never
    read, reported unused, or deleted by ``--snapshot-update``.
    """

    snapshot_dirname = "snapshots"
    file_extension = SNAPSHOT_SUFFIX.removeprefix(".")

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        """``snapshots/<test module basename>/`` beside the test module."""
        test_dir = Path(test_location.filepath).parent
        return str(test_dir / cls.snapshot_dirname / test_location.basename)

    def discover_snapshots(self, **kwargs: Any) -> SnapshotCollections:
        """syrupy's discovery, keeping only ``*.sentry.json`` files (never a file of someone else's)."""
        owned = SnapshotCollections()
        for collection in super().discover_snapshots(**kwargs):
            if str(collection.location).endswith(SNAPSHOT_SUFFIX):
                owned.add(collection)
        return owned

    def serialize(self, data: Any, *, exclude: Any = None, include: Any = None, matcher: Any = None) -> Any:
        """Normalise (see :func:`normalize`), then serialise as indented JSON."""
        return super().serialize(normalize(data), exclude=exclude, include=include, matcher=matcher)
