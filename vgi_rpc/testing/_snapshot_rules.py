"""The snapshot normaliser: syrupy's ``matcher=``/``exclude=`` that check and replace volatile values.

syrupy's JSON serialiser walks the data and sorts the keys; :class:`Normalizer`
is what it calls on the way.  :meth:`Normalizer.match` replaces, by key name,
every value that varies between runs, machines or installed packages -- ids
numbered by first appearance, clocks, ports, versions, paths -- after checking
its format (:class:`SnapshotFormatError`, naming the field, otherwise);
:meth:`Normalizer.exclude` drops source lines and frame locals.  The rule table
is written once, in docs/testing.md ("The normalisation rules");
:mod:`vgi_rpc.testing.snapshots` is the public face.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Normalizer", "SnapshotFormatError", "scrub_string"]

Rule = Callable[[Any, tuple[str, ...]], Any]


class SnapshotFormatError(AssertionError):
    """A volatile value did not have the format its placeholder promises."""


_HEX = {n: re.compile(rf"[0-9a-f]{{{n}}}") for n in (12, 16, 32)}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?")
_SEMVER = re.compile(r"\d+\.\d+\.\d+([.+-]?[0-9A-Za-z.+-]*)?")  # PEP 440 pre-releases too: 3.1.0rc1
_DIGITS = re.compile(r"\d+")
_ADDR = re.compile(r"0x[0-9a-fA-F]{6,16}")
_DURATION_KEY = re.compile(r"(^|[._])(duration|elapsed)([._](ms|ns|us|s|seconds|millis))?$")
# Keys under these prefixes carry the application's own data (recorded params):
# never treat them as SDK timing values, whatever they are called.
_USER_DATA_PREFIXES = ("rpc.param.",)
_DROP = frozenset({"pre_context", "context_line", "post_context", "vars"})
_CONTEXT_PLACEHOLDERS = {"runtime": "<runtime>", "os": "<os>", "device": "<device>"}
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


def _check(ok: Any, expected: str, result: str | Callable[[Any], Any]) -> Rule:
    """A rule: fail naming ``expected`` unless ``value`` is ``ok``, else ``result`` (a placeholder or a function).

    ``ok`` is a type, a pattern a string must match whole, or a predicate.
    """

    def rule(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(ok, type):
            good = isinstance(value, ok)
        elif isinstance(ok, re.Pattern):
            good = isinstance(value, str) and ok.fullmatch(value) is not None
        else:
            good = ok(value)
        if not good:
            raise _fail(path, value, expected)
        return result if isinstance(result, str) else result(value)

    return rule


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _digits(v: Any) -> bool:
    return isinstance(v, str) and v.isdigit()


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, str) for s in v)


def _unit_interval(v: Any) -> bool:
    try:
        number = float(v) if isinstance(v, str | int | float) else -1.0
    except ValueError:
        number = -1.0
    return not isinstance(v, bool) and 0.0 <= number < 1.0


def _port_number(v: Any) -> bool:
    return not isinstance(v, bool) and (
        (isinstance(v, int) and 0 < v < 65536) or (_digits(v) and 0 < int(v) < 65536)
    )


def _relative(value: str) -> str:
    if value.startswith("/") or re.match(r"[A-Za-z]:[\\/]", value):
        return "<path>/" + re.split(r"[\\/]", value)[-1]
    return value


_timestamp = _check(
    lambda v: (_number(v) and v > 0) or (isinstance(v, str) and bool(_ISO.fullmatch(v))),
    "an ISO 8601 timestamp or a positive epoch number",
    "<timestamp>",
)
_version = _check(_SEMVER, "a version X.Y.Z", "<sdk_version>")
# sentry.python.falcon -> sentry.python: the suffix names an installed integration
_sdk_name = _check(
    _SDK_NAME, "an SDK name 'sentry.<platform>[.<integration>]'", lambda v: _SDK_NAME.sub(r"\g<base>", v)
)
_port = _check(_port_number, "a TCP port (1-65535)", "<port>")
# python-httpx/0.28.1 -> python-httpx/<version> (User-Agent, SERVER_SOFTWARE)
_software = _check(
    str, "a product/version string", lambda v: _SOFTWARE_VERSION.sub(r"\g<product>/<version>", v)
)
# body sizes follow the compression library's version; Accept-Encoding, which packages are installed
_size = _check(lambda v: _count(v) or _digits(v), "a size in bytes (a non-negative integer)", "<size>")
_accept_encoding = _check(_TOKEN_LIST, "a list of content codings", "<accept_encoding>")
_duration = _check(lambda v: _number(v) and v >= 0, "a non-negative number", "<duration>")


def _table(*rows: tuple[str, Rule]) -> dict[str, Rule]:
    """``("key other.key", rule)`` rows -> ``{key: rule}``."""
    return {key: rule for keys, rule in rows for key in keys.split()}


def _thread_id(v: Any) -> bool:
    return _count(v) or (isinstance(v, str) and bool(_DIGITS.fullmatch(v)))


def _modules(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(s, str) for s in v.values())


_SIMPLE = _table(
    ("timestamp start_timestamp end_timestamp sent_at started", _timestamp),
    ("thread.id thread_id", _check(_thread_id, "a decimal thread id", "<thread_id>")),
    ("thread.name", _check(str, "a string", lambda v: _DIGITS.sub("<n>", v))),
    ("sample_rand", _check(_unit_interval, "a decimal in [0, 1)", "<sample_rand>")),
    ("sentry.sdk.version", _version),
    ("sentry.sdk.name", _sdk_name),
    ("abs_path", _check(str, "a string", "<path>")),
    ("filename", _check(str, "a string", _relative)),
    ("lineno colno", _check(_count, "a line number", "<lineno>")),
    ("server_name server.address SERVER_NAME", _check(str, "a string", "<server_name>")),
    ("modules", _check(_modules, "a dict of package versions", "<modules>")),
    ("sys.argv process.command_args", _check(_strings, "a list of strings", "<argv>")),
    ("sentry.sdk.integrations", _check(_strings, "a list of strings", "<integrations>")),
    ("process.runtime.version process.runtime.description", _check(str, "a string", "<runtime_version>")),
    ("SERVER_PORT server.port client.port url.port network.peer.port network.local.port", _port),
    ("net.host.port net.peer.port", _port),
    ("SERVER_SOFTWARE user_agent.original", _software),
    ("CONTENT_LENGTH http.request.body.size http.response.body.size", _size),
    ("http.request_content_length http.response_content_length", _size),
    ("os.name", _check(str, "a string", "<os>")),
    ("os.version os.build os.kernel_version", _check(str, "a string", "<os_version>")),
)


def _host(value: Any, path: tuple[str, ...]) -> Any:
    """``Host: 127.0.0.1:37205`` -> ``127.0.0.1:<port>`` (a Host without a port stays)."""
    match = _HOST_PORT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _fail(path, value, "a host[:port]")
    if match["port"] is None:
        return value
    _port(match["port"], path)
    return f"{match['host']}:<port>"


def _url(value: Any, path: tuple[str, ...]) -> Any:
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


def _each(rule: Rule) -> Rule:
    """A rule applied to each value of a list (a header's values as a span attribute) or to one value."""

    def each(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, list):
            return [rule(v, (*path, str(i))) for i, v in enumerate(value)]
        return rule(value, path)

    return each


class Normalizer:
    """One snapshot's rules, as syrupy's ``matcher=``/``exclude=``: ids numbered by first appearance."""

    def __init__(self, keep: Collection[str] = ()) -> None:
        self._numbers: dict[str, dict[Any, int]] = {}
        self._final: set[tuple[str, ...]] = set()  # where a placeholder went: not walked into
        self.keep = frozenset(keep)
        self._rules = {**_SIMPLE, **self.id_rules()}
        self._header_rules: dict[str, Rule] = {
            "host": _host,
            "user-agent": _software,
            "server": _software,
            "content-length": _size,
            "accept-encoding": _accept_encoding,
            "sentry-trace": self.sentry_trace,
            "baggage": self.baggage,
        }

    def numbered(self, kind: str, value: Any) -> str:
        seen = self._numbers.setdefault(kind, {})
        if value not in seen:
            seen[value] = len(seen) + 1
        return f"<{kind}:{seen[value]}>"

    def hex_id(self, kind: str, width: int, *, nullable: bool = False) -> Rule:
        def rule(value: Any, path: tuple[str, ...]) -> Any:
            if value is None and nullable:
                return None
            if not (isinstance(value, str) and _HEX[width].fullmatch(value)):
                raise _fail(path, value, f"{width} lower-case hex digits")
            return self.numbered(kind, value)

        return rule

    def id_rules(self) -> dict[str, Rule]:
        hex_id = self.hex_id
        return _table(
            ("event_id", hex_id("event_id", 32)),
            ("trace_id", hex_id("trace_id", 32)),
            ("span_id sentry.segment.id", hex_id("span_id", 16)),
            ("parent_span_id", hex_id("span_id", 16, nullable=True)),
            ("server_id rpc.server_id", hex_id("server_id", 12)),
            ("stream_id", hex_id("stream_id", 32, nullable=True)),
            ("rpc.stream_id", hex_id("stream_id", 32)),
            ("request_id rpc.request_id", hex_id("request_id", 16)),
            ("release sentry.release", self.kept_or("release")),
            ("environment sentry.environment", self.kept_or("environment")),
            ("url.full http.url", _url),
            ("sdk", self.sdk),
        )

    def kept_or(self, field: str) -> Rule:
        """``release``/``environment``: verbatim if the user set it, else a placeholder."""
        return _check(str, "a string", lambda v: v if field in self.keep else f"<{field}>")

    @staticmethod
    def sdk(value: Any, path: tuple[str, ...]) -> Any:
        if not (isinstance(value, dict) and isinstance(value.get("name"), str)):
            raise _fail(path, value, "an sdk dict with a name")
        return {
            "name": _sdk_name(value["name"], (*path, "name")),
            "version": _version(value.get("version"), (*path, "version")),
        }

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
            rule = self._rules.get(key.removeprefix("sentry-")) if key.startswith("sentry-") else None
            members.append(member if rule is None else f"{key}={rule(raw, (*path, key))}")
        return ",".join(members)

    def rule_for(self, name: str, path: tuple[str, ...]) -> Rule | None:
        """The rule for key ``name`` under ``path`` (``None``: walk into the value)."""
        if path and path[-1] == "headers" and name.lower() in self._header_rules:
            return self._header_rules[name.lower()]
        for prefix in ("http.request.header.", "http.response.header."):
            # sentry-sdk 3's span attributes: a header's values as a list, each checked like the header
            rule = self._header_rules.get(name[len(prefix) :].lower()) if name.startswith(prefix) else None
            if rule is not None:
                return _each(rule)
        if name == "url" and path and path[-1] == "request":
            return _url
        if (
            name not in self._rules
            and _DURATION_KEY.search(name)
            and not name.startswith(_USER_DATA_PREFIXES)
        ):
            return _duration
        return self._rules.get(name)

    # -- syrupy's hooks ---------------------------------------------------------------------------------

    @staticmethod
    def exclude(*, prop: Any, path: Any) -> bool:
        """syrupy's ``exclude=``: source lines and frame locals go (a ``_meta`` note about them stays)."""
        return prop in _DROP and all(key != "_meta" for key, _ in path)

    def match(self, *, data: Any, path: Any) -> Any:
        """syrupy's ``matcher=``: the value at ``path`` checked and replaced by its rule, if it has one."""
        keys = tuple(str(key) for key, _ in path)
        if any(keys[:n] in self._final for n in range(len(keys))):
            return data  # a placeholder is final
        if path and isinstance(path[-1][0], str):  # a dict's value (a list's items have no rule)
            name, parent = keys[-1], keys[:-1]
            if parent and parent[-1] == "contexts" and name in _CONTEXT_PLACEHOLDERS:
                if not isinstance(data, dict):
                    raise _fail(keys, data, "a context dict")
                return _CONTEXT_PLACEHOLDERS[name]
            rule = self.rule_for(name, parent)
            if rule is not None and "_meta" in parent:
                raise _fail(keys, data, "a _meta annotation dict")  # prune() took the dicts
            if rule is not None:
                self._final.add(keys)
                if isinstance(data, dict) and "value" in data and set(data) <= {"value", "type", "unit"}:
                    return {**data, "value": rule(data["value"], (*keys, "value"))}
                return rule(data, keys)
        if isinstance(data, dict) and "_meta" in data and "_meta" not in keys:
            notes = self.prune(data["_meta"], (*keys, "_meta"))
            return (
                {k: v for k, v in data.items() if k != "_meta"} if notes == {} else {**data, "_meta": notes}
            )
        return scrub_string(data) if isinstance(data, str) else data

    def prune(self, node: Any, path: tuple[str, ...]) -> Any:
        """A ``_meta`` tree without its notes on volatile fields, nor what they alone held.

        Sentry's annotation of a volatile field (that a long ``sys.argv`` was
        trimmed) comes and goes with the field's value.
        """
        if isinstance(node, list):
            return [self.prune(v, (*path, str(i))) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out: dict[Any, Any] = {}
        for key in sorted(node, key=str):
            item, name = node[key], str(key)
            if path[-1] == "contexts" and name in _CONTEXT_PLACEHOLDERS:
                out[key] = item
            elif self.rule_for(name, path) is not None:
                if not isinstance(item, dict):  # not a note: match() fails on it, in the walk's order
                    out[key] = item
            elif (kept := self.prune(item, (*path, name))) != {}:
                out[key] = kept
        return out


def scrub_string(value: str) -> str:
    """What every string loses: memory addresses and the ports of URLs."""
    return _URL_PORT.sub(r"\g<head>:<port>", _ADDR.sub("0x<addr>", value))
