"""Deterministic snapshots of Sentry envelopes (a syrupy extension).

:class:`SentryEnvelopeExtension` stores one pretty-printed JSON file per
snapshot under ``snapshots/<test module>/<test name>.sentry.json`` next to the
test module (``tests/snapshots/`` for a suite in ``tests/``), so each envelope
is reviewed like code.  Use it through the ``sentry_snapshot`` fixture of the
vgi_rpc pytest plugin (installed with ``pip install 'vgi-rpc[sentry,testing]'``)::

    def test_error_event(sentry_capture, sentry_snapshot):
        ...
        assert sentry_capture.envelopes == sentry_snapshot

or with ``snapshot.use_extension(SentryEnvelopeExtension)``.  The data may be
a :class:`~vgi_rpc.testing.SentryCapture` (all its envelopes), one envelope
dict, an event payload, or a list of any of these.

Only ``*.sentry.json`` files belong to the extension: anything else under
``snapshots/`` is never read, reported unused or deleted.

A snapshot holds on every run and every machine: before serialising,
:func:`normalize` replaces what varies between runs (ids, clocks, ports),
between machines (host names, paths, runtime, OS and package versions, which
optional packages are installed) and between vgi_rpc versions (its own stack
frames) -- but only after checking each value's *format*: a malformed id,
timestamp or port raises :class:`SnapshotFormatError` naming the field (the
test fails, even under ``--snapshot-update``), it is never silently replaced.

Identifiers are numbered by first appearance (``<span_id:1>``,
``<span_id:2>``...), so relationships stay pinned: an error event carrying
the transaction's span id, a child span's ``parent_span_id``, or every turn
of a stream sharing one ``rpc.stream_id`` show up as the *same* placeholder.

Rules (by key name, at any depth unless a parent is given; a value wrapped as
``{"value": v, "type": t}`` -- Sentry's attribute form -- is checked and
replaced inside the wrapper):

=====================================  =========================  ==========================
key                                    format checked             placeholder
=====================================  =========================  ==========================
``event_id``                           32 lower-case hex          ``<event_id:N>``
``trace_id``                           32 lower-case hex          ``<trace_id:N>``
``span_id``, ``parent_span_id``,       16 lower-case hex          ``<span_id:N>``
``sentry.segment.id``
``server_id``, ``rpc.server_id``       12 lower-case hex          ``<server_id:N>``
``stream_id``, ``rpc.stream_id``       32 lower-case hex          ``<stream_id:N>``
``request_id``, ``rpc.request_id``     16 lower-case hex          ``<request_id:N>``
``timestamp``, ``start_timestamp``,    ISO 8601 or epoch number   ``<timestamp>``
``end_timestamp``, ``sent_at``,
``started``
``*duration*``, ``elapsed*`` [#]_      number >= 0                ``<duration>``
``thread.id``, ``thread_id``           decimal integer            ``<thread_id>``
``thread.name``                        string                     digit runs -> ``<n>``
``sample_rand``                        decimal in [0, 1)          ``<sample_rand>``
``sdk``: ``name``                      ``sentry.<platform>[.x]``  ``sentry.<platform>`` [#]_
``sdk``: ``version``,                  ``X.Y.Z...``               ``<sdk_version>``
``sentry.sdk.version``
``sentry.sdk.name``                    ``sentry.<platform>[.x]``  ``sentry.<platform>``
``abs_path``                           string                     ``<path>``
``filename`` (absolute)                string                     ``<path>/<basename>``
``lineno``, ``colno``                  integer                    ``<lineno>``
``server_name``, ``server.address``,   string                     ``<server_name>``
``SERVER_NAME``
``environment``,                       string                     ``<environment>`` [#]_
``sentry.environment``
``release``, ``sentry.release``        string                     ``<release>`` [#]_
``modules``                            dict of strings            ``<modules>``
``sys.argv``,                          list of strings            ``<argv>``
``process.command_args``
``sentry.sdk.integrations``            list of strings            ``<integrations>``
``process.runtime.version``,           string                     ``<runtime_version>``
``process.runtime.description``
``contexts.runtime/os/device``         dict                       ``<runtime>`` etc.
``os.name``                            string                     ``<os>``
``os.version``, ``os.build``,          string                     ``<os_version>``
``os.kernel_version``
``SERVER_PORT``, ``server.port``,      integer 1-65535            ``<port>``
``client.port``, ``url.port``,
``net[work].*.port``
``request.url``, ``url.full``,         URL ``scheme://host/...``  its port -> ``<port>``
``http.url``
``SERVER_SOFTWARE``,                   string                     ``product/<version>``
``user_agent.original``
``CONTENT_LENGTH``,                    integer >= 0               ``<size>``
``http.*.body.size``,
``http.*_content_length``
=====================================  =========================  ==========================

HTTP headers (keys of a ``headers`` dict, any case; and, for span items of
sentry-sdk 3, each value of the attributes ``http.request.header.<name>`` /
``http.response.header.<name>``):

==========================  ================================  =======================================
header                      format checked                    placeholder
==========================  ================================  =======================================
``Host``                    ``host[:port]``                   ``host:<port>``
``User-Agent``, ``Server``  string                            ``product/<version>``
``Content-Length``          integer >= 0                      ``<size>`` [#]_
``Accept-Encoding``         list of content codings           ``<accept_encoding>`` [#]_
``sentry-trace``            ``<32 hex>-<16 hex>[-0|1]``       ``<trace_id:N>-<span_id:N>[-0|1]``
``baggage``                 ``key=value,...``                 each ``sentry-<key>`` by its key's rule
==========================  ================================  =======================================

.. [#] any key ending in ``duration``/``elapsed`` (optionally ``_ms``, ``_s``...),
   except recorded parameters (``rpc.param.*``).
.. [#] the suffix names an integration that happens to be installed: a
   ``serve_pipe`` test reports ``sentry.python.falcon`` where falcon is
   installed and ``sentry.python`` where it is not.
.. [#] kept verbatim when you passed ``environment=`` yourself (marker, ini
   option, ``sentry_options`` fixture or ``sentry_capture(environment=...)``);
   otherwise it is the SDK's default or ``SENTRY_ENVIRONMENT``.
.. [#] kept verbatim when you passed ``release=`` yourself (a string);
   otherwise it is :data:`vgi_rpc.testing.DEFAULT_RELEASE`, which
   ``sentry_capture`` sets so that no envelope depends on the machine.
.. [#] ``http_connect`` compresses request bodies of 1 KiB or more (zstd by
   default); compressed sizes, like Arrow IPC framing, follow library versions.
.. [#] httpx offers ``br``/``zstd`` only when brotli/zstandard are installed.

In every remaining string, memory addresses ``0x7f...`` become ``0x<addr>``
and the port of any URL (``http://127.0.0.1:37205/...``) becomes ``<port>``.
In a ``sessions`` payload, buckets that became equal once ``started`` is
``<timestamp>`` are merged, their counts summed (the SDK buckets sessions by
the minute, so a test running across a minute boundary would show two).
In a list of envelopes, those holding only ``sessions``, ``log``,
``client_report`` or ``trace_metric`` items move to the end (stable, by item
type): SDK worker threads send them, so their place among the event, transaction
and span envelopes is timing (on sentry-sdk 3 the span batcher and the session
flush race).  The order of the other envelopes is kept: it is the order the SDK
sent them in.

**vgi_rpc's own frames.** Each run of consecutive stack frames inside the
``vgi_rpc`` package (module ``vgi_rpc`` or ``vgi_rpc.*``) becomes one
placeholder frame ``{"function": "<vgi_rpc frames>", "module": "vgi_rpc",
"in_app": false}``, and the SDK's ``_meta`` notes about those frames (a
filtered local variable of ours) go with them; notes about your frames follow
your frames to their new index.  Your own frames stay, with ``function``,
``module``, ``filename``, ``in_app`` (``lineno``, ``abs_path`` normalised as
above), so a snapshot pins your code, not the internals of the vgi_rpc version
you happen to run.

Dropped outright: ``pre_context``, ``context_line``, ``post_context`` (source
lines), ``vars`` (frame locals, full of object reprs) and the SDK's package
and integration lists (``sdk.packages``, ``sdk.integrations``: they follow
what is installed).  Other ``_meta`` notes stay pinned (what the SDK filtered
or trimmed), except those about a volatile field, which come and go with it.

Caveat: everything else is pinned verbatim, your frames' module, function and
file names included, so refactoring *your* code on the stack changes the
snapshot -- that is the point: review the diff and run ``--snapshot-update``.

This module is the public face (the extension, :func:`normalize`); the per-key
rules and their format checks are in ``_snapshot_rules``, the structural passes
(vgi_rpc's frames, session buckets, envelope order) in ``_snapshot_shape``.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vgi_rpc._extras import require

require("vgi_rpc.testing.snapshots", "testing")

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
    Keys are sorted.  See the module docstring for the rules.

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
