"""Our client against the official reference server (vgi-rpc 0.52.2), over HTTP and the pipe.

The reverse of ``make conformance``'s runner: the peer venv's ``vgi-rpc-conformance``
serves the official ``ConformanceService`` (``--http 0`` announces its port;
``--pipe`` is spawned by our ``connect``) and *our* proxies call it with the
interface ported in ``_protocol.py``: scalars, void, an enum, dataclasses, defaults,
an error, a log, producers (three batches and none) and an exchange. Every test
runs once per transport, on one connection per transport.

Runs in our own suite and in ``make conformance``. Skipped when ``.venv-peer`` is
absent (``make peer-venv`` creates it); in CI (``CI=true``) a missing venv fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.worker_process import PortWorker

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conformance._protocol import ConformanceService  # noqa: E402
from tests.conformance._types import AllTypes, Point, Status  # noqa: E402
from vgi_rpc import AnnotatedBatch, RpcError, connect  # noqa: E402
from vgi_rpc.http import http_connect  # noqa: E402

REFERENCE = ROOT / ".venv-peer" / "bin" / "vgi-rpc-conformance"

ALL_TYPES = AllTypes(
    str_field="s",
    bytes_field=b"\x00\xff",
    int_field=-3,
    float_field=2.5,
    bool_field=True,
    list_of_int=[1, 2],
    list_of_str=["a"],
    dict_field={"k": 1},
    enum_field=Status.CLOSED,
    nested_point=Point(1.0, 2.0),
    optional_str=None,
    optional_int=7,
    optional_nested=None,
    list_of_nested=[Point(3.0, 4.0)],
    annotated_int32=5,
    annotated_float32=0.5,
    nested_list=[[1], []],
    dict_str_str={"a": "b"},
)


@pytest.fixture(scope="module")
def reference() -> Path:
    """The reference server's entry point in the peer venv."""
    if not REFERENCE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(".venv-peer is missing in CI")
        pytest.skip(".venv-peer (official vgi-rpc 0.52.2) is not installed; `make peer-venv` creates it")
    return REFERENCE


@pytest.fixture(scope="module")
def logs() -> list[Any]:
    """What the reference server logged to our proxy (cleared by the test that reads it)."""
    return []


@pytest.fixture(scope="module", params=["http", "pipe"])
def proxy(request: pytest.FixtureRequest, reference: Path, logs: list[Any]) -> Iterator[Any]:
    """Our proxy to the reference server: ``http_connect`` to ``--http 0``, or ``connect`` spawning ``--pipe``."""
    logs.clear()
    if request.param == "pipe":
        with connect(ConformanceService, [str(reference), "--pipe"], on_log=logs.append) as pipe_proxy:
            yield pipe_proxy
        return
    server = PortWorker([str(reference), "--http", "0"])
    try:
        with http_connect(ConformanceService, server.url, on_log=logs.append) as http_proxy:
            yield http_proxy
    finally:
        server.stop()


def test_echo_string(proxy: Any) -> None:
    """A non-ASCII string comes back unchanged."""
    assert proxy.echo_string(value="h\u00e9llo") == "h\u00e9llo"


def test_echo_int(proxy: Any) -> None:
    """The smallest int64 survives the round trip."""
    assert proxy.echo_int(value=-(2**63)) == -(2**63)


def test_void_noop(proxy: Any) -> None:
    """A method without a result returns ``None``."""
    assert proxy.void_noop() is None


def test_echo_enum(proxy: Any) -> None:
    """An enum travels by name and comes back as our member."""
    assert proxy.echo_enum(status=Status.ACTIVE) == Status.ACTIVE


def test_echo_point(proxy: Any) -> None:
    """A dataclass travels as a struct and comes back equal."""
    assert proxy.echo_point(point=Point(1.5, 2.5)) == Point(1.5, 2.5)


def test_echo_all_types(proxy: Any) -> None:
    """Every field kind of ``AllTypes`` (bytes, containers, nested, optional, annotated) round-trips."""
    assert proxy.echo_all_types(data=ALL_TYPES) == ALL_TYPES


def test_with_defaults(proxy: Any) -> None:
    """Parameters left out take the declared defaults on the server."""
    assert proxy.with_defaults(required=1) == "required=1, optional_str=default, optional_int=42"


def test_produce_n(proxy: Any) -> None:
    """A producer stream yields its three batches in order."""
    assert [b.batch.column("index")[0].as_py() for b in proxy.produce_n(count=3)] == [0, 1, 2]


def test_produce_empty(proxy: Any) -> None:
    """A producer that finishes at once yields no batch."""
    assert list(proxy.produce_empty()) == []


def test_raise_value_error(proxy: Any) -> None:
    """The server's exception arrives as an ``RpcError`` with its type and message."""
    with pytest.raises(RpcError) as caught:
        proxy.raise_value_error(message="boom")
    assert caught.value.error_type == "ValueError"
    assert "boom" in caught.value.error_message


def test_echo_with_info_log(proxy: Any, logs: list[Any]) -> None:
    """A log the server emits during the call reaches ``on_log``, once."""
    logs.clear()
    assert proxy.echo_with_info_log(value="hi") == "hi"
    assert len(logs) == 1, logs


def test_exchange_accumulate(proxy: Any) -> None:
    """An exchange keeps its state across turns: a running sum and a turn count."""
    session = proxy.exchange_accumulate()
    try:
        one = session.exchange(AnnotatedBatch.from_pydict({"value": [1.0, 2.0]}))
        two = session.exchange(AnnotatedBatch.from_pydict({"value": [10.0]}))
    finally:
        session.close()
    assert one.batch.column("running_sum").to_pylist() == [3.0]
    assert two.batch.column("running_sum").to_pylist() == [13.0]
    assert two.batch.column("exchange_count").to_pylist() == [2]
