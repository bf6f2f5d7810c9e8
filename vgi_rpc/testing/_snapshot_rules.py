"""The snapshot normaliser's rules: each volatile value's format check and its placeholder.

:class:`Normalizer` walks one snapshot's data (envelopes, payloads, lists) and
replaces, by key name, every value that varies between runs, machines or
installed packages -- ids numbered by first appearance, clocks, ports,
versions, paths -- after checking its format, raising
:class:`SnapshotFormatError` naming the field when the format is wrong.  The
rule table is written once, in docs/testing.md ("The normalisation rules");
:mod:`vgi_rpc.testing.snapshots` is the public face; this module needs no syrupy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Normalizer", "SnapshotFormatError", "scrub_string"]


class SnapshotFormatError(AssertionError):
    """A volatile value did not have the format its placeholder promises."""


_HEX = {n: re.compile(rf"[0-9a-f]{{{n}}}") for n in (12, 16, 32)}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?")
_SEMVER = re.compile(r"\d+\.\d+\.\d+([.+-]?[0-9A-Za-z.+-]*)?")  # PEP 440 pre-releases too: 3.1.0rc1
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


def _fail(path: tuple[str, ...], value: Any, expected: str) -> SnapshotFormatError:
    where = ".".join(path) or "<root>"
    return SnapshotFormatError(f"snapshot normaliser: {where} = {value!r} is not {expected}")


class Normalizer:
    """One snapshot's walk: ids numbered by first appearance, every rule applied once."""

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
        return scrub_string(value)

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
            return scrub_string(value)
        return value

    @staticmethod
    def walk_plain(value: Any) -> Any:
        """Placeholders are final: only sort keys, do not re-apply rules."""
        if isinstance(value, dict):
            return {k: value[k] for k in sorted(value, key=str)}
        return value


def scrub_string(value: str) -> str:
    """What every string loses: memory addresses and the ports of URLs."""
    return _URL_PORT.sub(r"\g<head>:<port>", _ADDR.sub("0x<addr>", value))
