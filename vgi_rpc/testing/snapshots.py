"""Deterministic snapshots of Sentry data (syrupy extensions), one pretty-printed JSON file each.

:class:`SentryCallsExtension` (the ``sentry_snapshot`` fixture's) stores what
Sentry keeps about each call -- error events, root span, child spans, session
counts -- read the same on sentry-sdk 2 and 3 and whatever the SDK's batching
(:func:`normalize_calls`). :class:`SentryEnvelopeExtension` stores whole
envelopes (:func:`normalize`); :class:`PerSdkEnvelopeExtension` (the
``sentry_envelope_snapshot`` fixture's) keeps them in one folder per SDK
generation. Files: ``snapshots/<test module>/[sdk<N>/]<test name>.sentry.json``
beside the test module; each extension owns only the ``*.sentry.json`` files of
its own folder. Needs ``pip install 'vgi-rpc[sentry,testing]'``.

Values that vary between runs, machines and versions become placeholders after
their format is checked (:class:`SnapshotFormatError` otherwise). What is kept,
what is dropped, and the rules: docs/testing.md, "Snapshots of what Sentry
stores", "Snapshots of whole envelopes" and "The normalisation rules" -- the one
place the rule table is written.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vgi_rpc._extras import require

require("vgi_rpc.testing.snapshots", "testing", only=("pytest", "syrupy"))

from syrupy.data import SnapshotCollections  # noqa: E402
from syrupy.extensions.json import JSONSnapshotExtension  # noqa: E402

from vgi_rpc.testing._snapshot_rules import Normalizer, SnapshotFormatError  # noqa: E402
from vgi_rpc.testing._snapshot_shape import (  # noqa: E402
    collapse_library_frames,
    merge_session_aggregates,
    order_envelopes,
    stored_calls,
)

if TYPE_CHECKING:
    from syrupy.location import PyTestLocation

__all__ = [
    "KEEPABLE",
    "SNAPSHOT_SUFFIX",
    "PerSdkEnvelopeExtension",
    "SentryCallsExtension",
    "SentryEnvelopeExtension",
    "SnapshotFormatError",
    "kept_by_fixture",
    "kept_fields",
    "normalize",
    "normalize_calls",
    "sdk_folder",
]

SnapshotFormatError.__module__ = __name__  # its public home

#: The file name suffix of every snapshot this extension writes, reads and deletes.
SNAPSHOT_SUFFIX = ".sentry.json"

#: Fields kept verbatim when you passed them to ``sentry_sdk.init`` yourself (see :func:`normalize`).
KEEPABLE = frozenset({"release", "environment"})


def _as_data(data: Any) -> Any:
    from vgi_rpc.testing import SentryCapture

    if isinstance(data, SentryCapture):
        return data.envelopes
    return data


def kept_fields(options: Mapping[str, Any]) -> frozenset[str]:
    """The fields of :data:`KEEPABLE` that ``options`` (a capture's ``init_options``) set to a string."""
    return frozenset(name for name in KEEPABLE if isinstance(options.get(name), str))


_fixture_kept: frozenset[str] = frozenset()


@contextmanager
def kept_by_fixture(fields: Collection[str]) -> Iterator[None]:
    """While active, every extension of this module also keeps ``fields`` (the snapshot fixtures use it).

    So ``sentry_snapshot.use_extension(MyExtension)`` pins the ``release`` and
    ``environment`` the test's ``sentry_capture`` was given, like the fixture's
    own extension.
    """
    global _fixture_kept
    previous, _fixture_kept = _fixture_kept, frozenset(fields)
    try:
        yield
    finally:
        _fixture_kept = previous


def _explicit_fields(data: Any) -> frozenset[str]:
    from vgi_rpc.testing import SentryCapture

    if isinstance(data, SentryCapture):
        return kept_fields(data.init_options)
    return frozenset()


def _walk(data: Any, normalizer: Normalizer) -> Any:
    """syrupy's own JSON walk (sorted keys) with the normaliser as its ``matcher=`` and ``exclude=``.

    ``JSONSnapshotExtension._filter`` is what its ``serialize`` runs before
    ``json.dumps``; the same signature from syrupy 4.6 (our floor) to 7.
    """
    walked = JSONSnapshotExtension._filter(
        data, path=(), matcher=normalizer.match, exclude=normalizer.exclude
    )
    return _plain(walked)


def _plain(value: Any) -> Any:
    """syrupy's ``OrderedDict`` -> ``dict``, so what :func:`normalize` returns reads like its input."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return [_plain(item) for item in value] if isinstance(value, list) else value


def normalize(data: Any, *, keep: Collection[str] = ()) -> Any:
    """Return a copy of ``data`` with volatile Sentry values replaced by placeholders.

    ``data`` is anything :class:`SentryEnvelopeExtension` accepts (a
    :class:`~vgi_rpc.testing.SentryCapture`, envelopes, payloads, lists).
    Keys are sorted.  The rules: docs/testing.md, "The normalisation rules".

    ``keep`` names fields of :data:`KEEPABLE` (``"release"``, ``"environment"``)
    to pin verbatim instead of replacing them: the ones you passed to
    ``sentry_sdk.init`` yourself.  For a ``SentryCapture`` they are taken from
    the options it was started with; the ``sentry_snapshot`` fixture does the
    same with the test's ``sentry_capture``.

    Raises:
        SnapshotFormatError: a volatile value does not have its expected format.
        ValueError: ``keep`` names a field that cannot be kept.
    """
    unknown = set(keep) - KEEPABLE
    if unknown:
        raise ValueError(f"normalize(keep=...) accepts {sorted(KEEPABLE)}, not {sorted(unknown)}")
    plain = order_envelopes(copy.deepcopy(_as_data(data)))
    collapse_library_frames(plain)
    return merge_session_aggregates(_walk(plain, Normalizer(frozenset(keep) | _explicit_fields(data))))


def normalize_calls(data: Any) -> dict[str, Any]:
    """What Sentry stores about each call in ``data``, the same on every SDK generation, normalised.

    ``data`` is a :class:`~vgi_rpc.testing.SentryCapture` or a list of
    envelopes.  The result is ``{"calls": [...], "sessions": {...}}``: per call
    (in the order the calls started) its ``root`` span, its child ``spans`` and
    its ``errors``, whatever envelopes carried them and in whichever item format
    (2.x ``transaction`` items, streamed ``span`` items).  Ids are numbered by
    first appearance after their format is checked; the rest of the rules as in
    :func:`normalize`.  What is kept and dropped: docs/testing.md, "Snapshots of
    what Sentry stores".

    Raises:
        SnapshotFormatError: a volatile value (an id, a timestamp...) does not have its expected format.
    """
    envelopes = _as_data(data)
    if not isinstance(envelopes, list):
        raise TypeError(
            f"normalize_calls() takes a SentryCapture or a list of envelopes, not {type(data).__name__}"
        )
    result: dict[str, Any] = _walk(stored_calls(copy.deepcopy(envelopes)), Normalizer())
    return result


def sdk_folder() -> str:
    """``"sdk2"`` or ``"sdk3"``: the folder of the installed sentry-sdk generation (by its major version)."""
    import sentry_sdk

    return "sdk" + str(sentry_sdk.VERSION).split(".", 1)[0]


_SDK_FOLDER = re.compile(r"sdk\d+")


class SentryEnvelopeExtension(JSONSnapshotExtension):
    """syrupy extension: normalised Sentry envelopes as ``*.sentry.json`` files in ``snapshots/``.

    Snapshots live in ``snapshots/<test module>/<test name>.sentry.json``
    beside the test module (``snapshot_dirname``); ``pytest --snapshot-update``
    regenerates them.  A malformed volatile value fails the assertion with
    :class:`SnapshotFormatError` instead of being written.

    The extension owns only files ending in :data:`SNAPSHOT_SUFFIX`: any other
    file under ``snapshots/`` (your own JSON, another tool's data) is never
    read, reported unused, or deleted by ``--snapshot-update``.

    ``keep`` (set on an instance; the ``sentry_snapshot`` fixture sets it from
    the test's ``sentry_capture`` options) is passed to :func:`normalize`.
    """

    snapshot_dirname = "snapshots"
    file_extension = SNAPSHOT_SUFFIX.removeprefix(".")
    keep: frozenset[str] = frozenset()

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        """``snapshots/<test module basename>/`` beside the test module."""
        test_dir = Path(test_location.filepath).parent
        return str(test_dir / cls.snapshot_dirname / test_location.basename)

    def discover_snapshots(self, *, test_location: PyTestLocation, **kwargs: Any) -> SnapshotCollections:
        """syrupy's discovery, keeping only this extension's own files.

        Those end in :data:`SNAPSHOT_SUFFIX` and are not inside a generation
        folder (``sdk<N>/``) of which :meth:`dirname` is not part: another
        generation's set is never read, reported unused, or deleted.
        """
        owned = SnapshotCollections()
        home = Path(self.dirname(test_location=test_location))
        for collection in super().discover_snapshots(test_location=test_location, **kwargs):
            location = Path(str(collection.location))
            inner = location.relative_to(home).parts[:-1] if location.is_relative_to(home) else ()
            if location.name.endswith(SNAPSHOT_SUFFIX) and not any(_SDK_FOLDER.fullmatch(p) for p in inner):
                owned.add(collection)
        return owned

    def serialize(self, data: Any, *, exclude: Any = None, include: Any = None, matcher: Any = None) -> Any:
        """Normalise (see :func:`normalize`), then serialise as indented JSON."""
        normalised = normalize(data, keep=self.keep | _fixture_kept)
        return super().serialize(normalised, exclude=exclude, include=include, matcher=matcher)


class PerSdkEnvelopeExtension(SentryEnvelopeExtension):
    """Whole envelopes, one set per sentry-sdk generation: ``snapshots/<test module>/sdk<N>/``.

    The envelopes of sentry-sdk 3 differ from 2.x's (span items instead of
    transactions), so a project that runs on both keeps one set per generation;
    each generation's extension owns only its own folder (:func:`sdk_folder`),
    so the other set is neither reported unused nor deleted by
    ``--snapshot-update``.  The ``sentry_envelope_snapshot`` fixture uses it.
    """

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        """The base folder (:meth:`SentryEnvelopeExtension.dirname`) plus ``sdk2``/``sdk3``."""
        return str(Path(super().dirname(test_location=test_location)) / sdk_folder())


class SentryCallsExtension(SentryEnvelopeExtension):
    """What Sentry stores about each call (:func:`normalize_calls`): the ``sentry_snapshot`` fixture's extension.

    One file holds on sentry-sdk 2 and 3 and under any batching of envelopes;
    stored in ``snapshots/<test module>/<test name>.sentry.json`` like
    :class:`SentryEnvelopeExtension`'s (it owns the same files, never a
    generation folder's).  Takes a :class:`~vgi_rpc.testing.SentryCapture` or
    a list of envelopes; anything else (a payload, a dict you built) is
    serialised with :func:`normalize` as by the envelope extension.
    """

    def serialize(self, data: Any, *, exclude: Any = None, include: Any = None, matcher: Any = None) -> Any:
        """Reduce to the stored calls (:func:`normalize_calls`), then serialise as indented JSON."""
        plain = _as_data(data)
        if not (
            isinstance(plain, list) and plain and all(isinstance(e, dict) and "items" in e for e in plain)
        ):
            return super().serialize(data, exclude=exclude, include=include, matcher=matcher)
        calls = normalize_calls(plain)
        return JSONSnapshotExtension.serialize(self, calls, exclude=exclude, include=include, matcher=matcher)
