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
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vgi_rpc._extras import require

require("vgi_rpc.testing.snapshots", "testing")

from syrupy.data import SnapshotCollections  # noqa: E402
from syrupy.extensions.json import JSONSnapshotExtension  # noqa: E402

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

#: The file name suffix of every snapshot this extension writes, reads and deletes.
SNAPSHOT_SUFFIX = ".sentry.json"

#: Fields kept verbatim when you passed them to ``sentry_sdk.init`` yourself (see :func:`normalize`).
KEEPABLE = frozenset({"release", "environment"})


class SnapshotFormatError(AssertionError):
    """A volatile value did not have the format its placeholder promises."""


_HEX = {n: re.compile(rf"[0-9a-f]{{{n}}}") for n in (12, 16, 32)}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?")
_SEMVER = re.compile(r"\d+\.\d+\.\d+([.+-]?[0-9A-Za-z.+-]*)?")  # PEP 440 pre-releases too: 3.0.0b2
_DECIMAL_INT = re.compile(r"\d+")
_ADDR = re.compile(r"0x[0-9a-fA-F]{6,16}")
_DIGITS = re.compile(r"\d+")
_DURATION_KEY = re.compile(r"(^|[._])(duration|elapsed)([._](ms|ns|us|s|seconds|millis))?$")

# Keys under these prefixes carry the application's own data (recorded params):
# never treat them as SDK timing values, whatever they are called.
_USER_DATA_PREFIXES = ("rpc.param.",)
_DROP = frozenset({"pre_context", "context_line", "post_context", "vars"})
_CONTEXT_PLACEHOLDERS = {"runtime": "<runtime>", "os": "<os>", "device": "<device>"}

# -- what varies with the machine, the run or vgi_rpc's own code ------------------------------------
# scheme://[userinfo@]host:PORT -- the port of any URL in any string
_URL_PORT = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://(?:[^/\s@\"']*@)?(?:\[[0-9A-Fa-f:.]+\]|[^/\s:?#\[\]@\"']+))"
    r":(?P<port>\d{1,5})(?![\d])"
)
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@]+)(?::(?P<port>\d{1,5}))?")
# product/version tokens of User-Agent and SERVER_SOFTWARE ("python-httpx/0.28.1", "gunicorn/23.0")
_SOFTWARE_VERSION = re.compile(r"(?P<product>[A-Za-z0-9][A-Za-z0-9_.+-]*)/(?P<version>\d[0-9A-Za-z.+_-]*)")
_TOKEN_LIST = re.compile(
    r"\s*[A-Za-z0-9*_.+-]+(\s*;\s*q=[0-9.]+)?(\s*,\s*[A-Za-z0-9*_.+-]+(\s*;\s*q=[0-9.]+)?)*\s*"
)
_SDK_NAME = re.compile(r"(?P<base>sentry\.[a-z0-9_-]+)(\.[A-Za-z0-9_.-]+)?")
_SENTRY_TRACE = re.compile(r"(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})(?P<sampled>-[01])?")
# The placeholder that stands for a run of vgi_rpc's own stack frames.
_LIBRARY_FRAME = {"function": "<vgi_rpc frames>", "module": "vgi_rpc", "in_app": False}
_LIBRARY_PACKAGE = "vgi_rpc"


def _fail(path: tuple[str, ...], value: Any, expected: str) -> SnapshotFormatError:
    where = ".".join(path) or "<root>"
    return SnapshotFormatError(f"snapshot normaliser: {where} = {value!r} is not {expected}")


class _Normalizer:
    def __init__(self, keep: Collection[str] = ()) -> None:
        self._numbers: dict[str, dict[Any, int]] = {}
        self.keep = frozenset(keep)
        self._rules = {**self.rules(), **self.portable_rules()}
        self._header_rules = self.header_rules()

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
        return {
            "name": self.sdk_name(value["name"], (*path, "name")),
            "version": self.version(value.get("version"), (*path, "version")),
        }

    # -- values that depend on the machine, the run, or what else is installed ---------------

    @staticmethod
    def sdk_name(value: Any, path: tuple[str, ...]) -> Any:
        """``sentry.python.falcon`` -> ``sentry.python``: the suffix names an installed integration."""
        match = _SDK_NAME.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise _fail(path, value, "an SDK name 'sentry.<platform>[.<integration>]'")
        return match["base"]

    @staticmethod
    def port(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, bool) or not (
            (isinstance(value, int) and 0 < value < 65536)
            or (isinstance(value, str) and value.isdigit() and 0 < int(value) < 65536)
        ):
            raise _fail(path, value, "a TCP port (1-65535)")
        return "<port>"

    @classmethod
    def host(cls, value: Any, path: tuple[str, ...]) -> Any:
        """``Host: 127.0.0.1:37205`` -> ``127.0.0.1:<port>`` (a Host without a port stays)."""
        match = _HOST_PORT.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise _fail(path, value, "a host[:port]")
        if match["port"] is None:
            return value
        cls.port(match["port"], path)
        return f"{match['host']}:<port>"

    @staticmethod
    def url(value: Any, path: tuple[str, ...]) -> Any:
        """A URL's port -> ``<port>`` (the generic string rule); here the URL's form is checked first."""
        try:
            parts = urlsplit(value) if isinstance(value, str) else None
            valid = parts is not None and bool(parts.scheme) and bool(parts.netloc)
            if valid and parts is not None:
                parts.port  # noqa: B018 - raises ValueError on a port out of range
        except ValueError:
            valid = False
        if not valid:
            raise _fail(path, value, "a URL scheme://host[:port]/...")
        return _scrub_string(value)

    @staticmethod
    def software(value: Any, path: tuple[str, ...]) -> Any:
        """``python-httpx/0.28.1`` -> ``python-httpx/<version>`` (User-Agent, SERVER_SOFTWARE)."""
        if not isinstance(value, str):
            raise _fail(path, value, "a product/version string")
        return _SOFTWARE_VERSION.sub(r"\g<product>/<version>", value)

    @staticmethod
    def size(value: Any, path: tuple[str, ...]) -> Any:
        """Body sizes (``Content-Length``...) follow the compression library's version: ``<size>``."""
        if isinstance(value, bool) or not (
            (isinstance(value, int) and value >= 0) or (isinstance(value, str) and value.isdigit())
        ):
            raise _fail(path, value, "a size in bytes (a non-negative integer)")
        return "<size>"

    @staticmethod
    def accept_encoding(value: Any, path: tuple[str, ...]) -> Any:
        """``gzip, deflate, zstd``: the list follows which compression packages are installed."""
        if not (isinstance(value, str) and _TOKEN_LIST.fullmatch(value)):
            raise _fail(path, value, "a list of content codings")
        return "<accept_encoding>"

    def sentry_trace(self, value: Any, path: tuple[str, ...]) -> Any:
        """The ``sentry-trace`` header: ``<trace_id:N>-<span_id:N>[-sampled]``, numbered like the ids."""
        match = _SENTRY_TRACE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise _fail(path, value, "a sentry-trace header '<32 hex>-<16 hex>[-0|1]'")
        trace = self.numbered("trace_id", match["trace"])
        span = self.numbered("span_id", match["span"])
        return f"{trace}-{span}{match['sampled'] or ''}"

    def baggage(self, value: Any, path: tuple[str, ...]) -> Any:
        """The ``baggage`` header: each ``sentry-<key>=<value>`` member normalised like its key."""
        if not isinstance(value, str):
            raise _fail(path, value, "a baggage header string")
        members: list[str] = []
        for member in (m.strip() for m in value.split(",") if m.strip()):
            key, sep, raw = member.partition("=")
            if not sep:
                raise _fail(path, value, "a baggage header 'key=value,...'")
            if not key.startswith("sentry-"):
                members.append(member)
                continue
            rule = self._rules.get(key.removeprefix("sentry-"))
            if rule is None:
                members.append(member)
                continue
            members.append(f"{key}={rule(raw, (*path, key))}")
        return ",".join(members)

    def kept_or(self, field: str, verdict: Callable[..., Any]) -> Callable[..., Any]:
        """``release``/``environment``: verbatim if the user set it, else ``verdict`` decides."""

        def rule(value: Any, path: tuple[str, ...]) -> Any:
            if not isinstance(value, str):
                raise _fail(path, value, "a string")
            return value if field in self.keep else verdict(value, path)

        return rule

    def portable_rules(self) -> dict[str, Callable[[Any, tuple[str, ...]], Any]]:
        """Rules for what a snapshot must not pin to keep holding on another run or machine."""
        environment = self.kept_or("environment", self.string("<environment>"))
        release = self.kept_or("release", self.string("<release>"))
        return {
            "release": release,
            "sentry.release": release,
            "environment": environment,
            "sentry.environment": environment,
            "sentry.sdk.name": self.sdk_name,
            "SERVER_PORT": self.port,
            "server.port": self.port,
            "client.port": self.port,
            "url.port": self.port,
            "network.peer.port": self.port,
            "network.local.port": self.port,
            "net.host.port": self.port,
            "net.peer.port": self.port,
            "SERVER_NAME": self.string("<server_name>"),
            "SERVER_SOFTWARE": self.software,
            "user_agent.original": self.software,
            "CONTENT_LENGTH": self.size,
            "http.request.body.size": self.size,
            "http.response.body.size": self.size,
            "http.request_content_length": self.size,
            "http.response_content_length": self.size,
            "url.full": self.url,
            "http.url": self.url,
            "os.name": self.string("<os>"),
            "os.version": self.string("<os_version>"),
            "os.build": self.string("<os_version>"),
            "os.kernel_version": self.string("<os_version>"),
            "process.runtime.description": self.string("<runtime_version>"),
        }

    def span_attribute_header_rule(self, name: str) -> Callable[[Any, tuple[str, ...]], Any] | None:
        """sentry-sdk 3's span attributes ``http.request.header.<name>`` (a list of values): the header's rule.

        Span streaming records headers as attributes, not under a ``headers``
        dict; each value is checked and replaced like the same header's.
        """
        for prefix in ("http.request.header.", "http.response.header."):
            if name.startswith(prefix):
                rule = self._header_rules.get(name[len(prefix) :].lower())
                if rule is None:
                    return None

                def each(value: Any, path: tuple[str, ...], rule: Callable[..., Any] = rule) -> Any:
                    if isinstance(value, list):
                        return [rule(v, (*path, str(i))) for i, v in enumerate(value)]
                    return rule(value, path)

                return each
        return None

    def header_rules(self) -> dict[str, Callable[[Any, tuple[str, ...]], Any]]:
        """Rules for HTTP headers (keys directly under a ``headers`` dict), by lower-case name."""
        return {
            "host": self.host,
            "user-agent": self.software,
            "server": self.software,
            "content-length": self.size,
            "accept-encoding": self.accept_encoding,
            "sentry-trace": self.sentry_trace,
            "baggage": self.baggage,
        }

    def rule_for(self, name: str, path: tuple[str, ...]) -> Callable[[Any, tuple[str, ...]], Any] | None:
        """The rule for key ``name`` under ``path`` (``None``: walk into the value)."""
        if path and path[-1] == "headers":
            rule = self._header_rules.get(name.lower())
            if rule is not None:
                return rule
        header_rule = self.span_attribute_header_rule(name)
        if header_rule is not None:
            return header_rule
        if name == "url" and path and path[-1] == "request":
            return self.url
        rule = self._rules.get(name)
        if rule is None and _DURATION_KEY.search(name) and not name.startswith(_USER_DATA_PREFIXES):
            return self.duration
        return rule

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
            "modules": self.modules,
            "sys.argv": self.argv,
            "process.command_args": self.argv,
            "sentry.sdk.integrations": self.string_list("<integrations>"),
            "process.runtime.version": self.string("<runtime_version>"),
            "sdk": self.sdk,
        }

    def walk(self, value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
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
                rule = self.rule_for(name, path)
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
                if "_meta" in sub and walked == {}:
                    continue  # every note under it went (a volatile field's, or a vgi_rpc frame's)
                out[name] = walked
            return out
        if isinstance(value, list | tuple):
            return [self.walk(v, (*path, str(i))) for i, v in enumerate(value)]
        if isinstance(value, str):
            return _scrub_string(value)
        return value

    @staticmethod
    def walk_plain(value: Any) -> Any:
        """Placeholders are final: only sort keys, do not re-apply rules."""
        if isinstance(value, dict):
            return {k: value[k] for k in sorted(value, key=str)}
        return value


def _scrub_string(value: str) -> str:
    """What every string loses: memory addresses and the ports of URLs."""
    return _URL_PORT.sub(r"\g<head>:<port>", _ADDR.sub("0x<addr>", value))


# -- vgi_rpc's own stack frames ------------------------------------------------------------------


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


def _collapse_library_frames(node: Any, meta: Any = None, path: tuple[str, ...] = ()) -> None:
    """In place: collapse vgi_rpc frames everywhere under ``node``, moving ``_meta`` notes along.

    A payload's ``_meta`` mirrors the payload's shape, frames by index
    (``_meta.exception.values.0.stacktrace.frames.3.vars``); ``meta`` is the
    nearest enclosing payload's ``_meta`` and ``path`` the way from that payload
    to ``node``.
    """
    if isinstance(node, list):
        for index, value in enumerate(node):
            _collapse_library_frames(value, meta, (*path, str(index)))
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
            _collapse_library_frames(value, meta, (*path, str(key)))


def _merge_session_aggregates(node: Any) -> Any:
    """In place, after the walk: a ``sessions`` payload's buckets that became equal are summed.

    The SDK buckets request sessions by the minute they started; once ``started``
    is ``<timestamp>``, a test that ran across a minute boundary would otherwise
    show two buckets where another run shows one.
    """
    if isinstance(node, list):
        for value in node:
            _merge_session_aggregates(value)
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
            _merge_session_aggregates(value)
    return node


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
    plain = copy.deepcopy(_as_data(data))
    _collapse_library_frames(plain)
    walked = _Normalizer(frozenset(keep) | _explicit_fields(data)).walk(plain, ())
    return _merge_session_aggregates(walked)


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
