"""Deterministic snapshots of Sentry envelopes (a syrupy extension).

:class:`SentryEnvelopeExtension` stores one pretty-printed JSON file per snapshot,
``snapshots/<test module>/<test name>.sentry.json`` beside the test module, and
owns only ``*.sentry.json`` files. Use it through the ``sentry_snapshot`` fixture
of the vgi_rpc pytest plugin (``pip install 'vgi-rpc[sentry,testing]'``) or with
``snapshot.use_extension(SentryEnvelopeExtension)``; the data may be a
:class:`~vgi_rpc.testing.SentryCapture`, an envelope, a payload, or a list of them.

Before serialising, :func:`normalize` replaces what varies between runs, machines
and vgi_rpc versions by placeholders, after checking each value's format
(:class:`SnapshotFormatError` otherwise). The rules, and their caveats, are
documented in docs/testing.md ("Snapshots of whole envelopes", "The
normalisation rules"). The per-key rules and their format checks are in
``_snapshot_rules``; the structural passes (vgi_rpc's frames, session buckets,
envelope order) in ``_snapshot_shape``.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
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
)

if TYPE_CHECKING:
    from syrupy.location import PyTestLocation

__all__ = [
    "KEEPABLE",
    "SNAPSHOT_SUFFIX",
    "SentryEnvelopeExtension",
    "SnapshotFormatError",
    "kept_fields",
    "normalize",
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


def _explicit_fields(data: Any) -> frozenset[str]:
    from vgi_rpc.testing import SentryCapture

    if isinstance(data, SentryCapture):
        return kept_fields(data.init_options)
    return frozenset()


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
    walked = Normalizer(frozenset(keep) | _explicit_fields(data)).walk(plain, ())
    return merge_session_aggregates(walked)


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

    def discover_snapshots(self, **kwargs: Any) -> SnapshotCollections:
        """syrupy's discovery, keeping only ``*.sentry.json`` files (never a file of someone else's)."""
        owned = SnapshotCollections()
        for collection in super().discover_snapshots(**kwargs):
            if str(collection.location).endswith(SNAPSHOT_SUFFIX):
                owned.add(collection)
        return owned

    def serialize(self, data: Any, *, exclude: Any = None, include: Any = None, matcher: Any = None) -> Any:
        """Normalise (see :func:`normalize`), then serialise as indented JSON."""
        normalised = normalize(data, keep=self.keep)
        return super().serialize(normalised, exclude=exclude, include=include, matcher=matcher)
