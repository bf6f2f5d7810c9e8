"""Bad input on the pipe: raw bytes in, a readable error out, and the server keeps serving.

Requests are built by hand with pyarrow (or are truncated / garbage bytes) and
written to a real pipe server: ``vgi_rpc.pipe.serve_streams`` on ``os.pipe()``s
in a thread, and a ``run_server`` subprocess for the stdout-purity check.

* Framing intact (unknown method, missing/extra parameters, wrong Arrow types,
  a request version we do not speak...): the answer is an error stream naming
  the problem and the *same* connection then serves a good call.
* Framing destroyed (garbage, truncation): the server answers with a readable
  error stream, then ends that connection; a *new* connection works.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pytest
from support.services import (
    Calculator,
    CalculatorImpl,
    Color,
    Point,
    TypesService,
    TypesServiceImpl,
    Versioned,
    VersionedImpl,
)

from vgi_rpc import RpcError, RpcServer
from vgi_rpc._types import codec_for
from vgi_rpc.pipe import serve_streams
from vgi_rpc.wire import read_response

WORKER = Path(__file__).resolve().parents[1] / "workers" / "service_worker.py"
REQUEST_MD = {"vgi_rpc.method": "add", "vgi_rpc.request_version": "1", "vgi_rpc.protocol": "Calculator"}
TYPES = TypesService.protocol_name


# --------------------------------------------------------------------------- raw plumbing


def request_bytes(
    method: str = "add",
    columns: Mapping[str, pa.Array] | None = None,
    metadata: Mapping[str, str] | None = None,
    *,
    batches: int = 1,
    protocol: str = "Calculator",
) -> bytes:
    """One request IPC stream built by hand: schema, *batches* batches, EOS.

    Without *metadata*: ``vgi_rpc.method`` *method*, request version 1 and
    ``vgi_rpc.protocol`` *protocol* (a pipe request must name its protocol).
    """
    if columns is None:
        columns = {"a": pa.array([1]), "b": pa.array([2])}
    if columns:
        batch = pa.RecordBatch.from_pydict(dict(columns))
    else:
        batch = pa.RecordBatch.from_arrays([], schema=pa.schema([]))
    md = (
        dict(metadata)
        if metadata is not None
        else {**REQUEST_MD, "vgi_rpc.method": method, "vgi_rpc.protocol": protocol}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        for _ in range(batches):
            writer.write_batch(batch, custom_metadata=md or None)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def input_stream_bytes(schema: pa.Schema | None = None) -> bytes:
    """An empty stream-input IPC stream (schema + EOS): what a client sends to end a stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema or pa.schema([])):
        pass
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


GOOD = request_bytes()


def read_one_stream(source: IO[bytes] | pa.NativeFile) -> list[tuple[pa.RecordBatch, dict[str, str]]]:
    """Read one whole response IPC stream (through EOS) and return its batches with metadata."""
    reader = pa.ipc.open_stream(source)
    out = []
    while True:
        try:
            batch, raw = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            return out
        md = {k.decode(): v.decode() for k, v in raw.items()} if raw else {}
        out.append((batch, md))


def assert_error(response: list[tuple[pa.RecordBatch, dict[str, str]]], *fragments: str) -> dict[str, str]:
    """The response is exactly one EXCEPTION batch whose message names every fragment."""
    assert len(response) == 1, response
    batch, md = response[0]
    assert batch.num_rows == 0
    assert md["vgi_rpc.log_level"] == "EXCEPTION"
    message = md["vgi_rpc.log_message"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return md


def assert_good(response: list[tuple[pa.RecordBatch, dict[str, str]]], value: Any = 3) -> None:
    assert len(response) == 1, response
    batch, md = response[0]
    assert "vgi_rpc.log_level" not in md
    assert batch.to_pydict() == {"result": [value]}


class RawConnection:
    """A real pipe server (``serve_streams`` in a thread) that we talk to in raw bytes."""

    def __init__(self, server: RpcServer) -> None:
        self._server = server
        c2s_r, c2s_w = os.pipe()
        s2c_r, s2c_w = os.pipe()
        self._server_in = os.fdopen(c2s_r, "rb")
        self._server_out = os.fdopen(s2c_w, "wb")
        self.out = os.fdopen(c2s_w, "wb")
        self.inp = os.fdopen(s2c_r, "rb")
        self.server_error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            serve_streams(self._server, self._server_in, self._server_out)
        except BaseException as exc:  # the loop must never raise: record it for the test
            self.server_error = exc
        finally:
            self._server_out.close()
            self._server_in.close()

    def send(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()

    def read(self) -> list[tuple[pa.RecordBatch, dict[str, str]]]:
        return read_one_stream(self.inp)

    def call(self, data: bytes) -> list[tuple[pa.RecordBatch, dict[str, str]]]:
        self.send(data)
        return self.read()

    def close_input(self) -> None:
        self.out.close()

    def assert_closed_by_server(self) -> None:
        """The server ended the connection: its thread finished and its output is at EOF."""
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.server_error is None, self.server_error
        assert self.inp.read() == b""

    def close(self) -> None:
        if not self.out.closed:
            self.out.close()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.server_error is None, self.server_error
        self.inp.close()


@pytest.fixture
def server() -> RpcServer:
    return RpcServer(Calculator, CalculatorImpl())


@pytest.fixture
def conn(server: RpcServer) -> Iterator[RawConnection]:
    c = RawConnection(server)
    yield c
    c.close()


def new_conn(server: RpcServer) -> RawConnection:
    return RawConnection(server)


# --------------------------------------------------------------------------- framing intact

INTACT: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "unknown method": (request_bytes("subtract"), ("unknown method", "'subtract'")),
    "missing parameter": (request_bytes(columns={"a": pa.array([1])}), ("missing parameter", "'b'")),
    "extra parameter": (
        request_bytes(columns={"a": pa.array([1]), "b": pa.array([2]), "c": pa.array([3])}),
        ("unexpected parameter", "'c'"),
    ),
    "wrong arrow type": (
        request_bytes(columns={"a": pa.array(["one"]), "b": pa.array([2])}),
        ("'a'", "string", "int64"),
    ),
    "float for int": (
        request_bytes(columns={"a": pa.array([1.5]), "b": pa.array([2])}),
        ("'a'", "double", "int64"),
    ),
    "int for a str parameter": (
        request_bytes(
            "greet", {"name": pa.array([7]), "greeting": pa.array(["Hi"]), "punctuation": pa.array(["!"])}
        ),
        ("'name'", "int64", "string"),
    ),
    "bool for an int parameter": (
        request_bytes(columns={"a": pa.array([True]), "b": pa.array([2])}),
        ("'a'", "bool", "int64"),
    ),
    "null for a non-optional parameter": (
        request_bytes(columns={"a": pa.array([None], pa.int64()), "b": pa.array([2])}),
        ("'a'", "null"),
    ),
    "two rows": (
        request_bytes(columns={"a": pa.array([1, 2]), "b": pa.array([2, 3])}),
        ("exactly 1 row", "got 2"),
    ),
    "zero rows": (
        request_bytes(columns={"a": pa.array([], pa.int64()), "b": pa.array([], pa.int64())}),
        ("exactly 1 row", "got 0"),
    ),
    "request version 2": (
        request_bytes(metadata={**REQUEST_MD, "vgi_rpc.request_version": "2"}),
        ("request version", "'2'"),
    ),
    "no request version": (
        request_bytes(metadata={"vgi_rpc.method": "add"}),
        ("request version", "None"),
    ),
    "no method metadata": (
        request_bytes(metadata={"vgi_rpc.request_version": "1"}),
        ("vgi_rpc.method",),
    ),
    "no metadata at all": (request_bytes(metadata={}), ("vgi_rpc.method",)),
    "other protocol": (
        request_bytes(metadata={**REQUEST_MD, "vgi_rpc.protocol": "Thermostat"}),
        ("'Thermostat'",),
    ),
    "several batches": (request_bytes(batches=3), ("3 batches",)),
    "no batch": (input_stream_bytes(pa.schema([("a", pa.int64()), ("b", pa.int64())])), ("no batch",)),
}


@pytest.mark.parametrize("case", list(INTACT))
def test_bad_request_gets_a_named_error_and_the_connection_keeps_serving(
    conn: RawConnection, case: str
) -> None:
    data, fragments = INTACT[case]
    md = assert_error(conn.call(data), *fragments)
    assert md.get("vgi_rpc.server_id")
    assert_good(conn.call(GOOD))
    assert_good(conn.call(GOOD))


def test_error_streams_read_as_rpc_errors_for_a_client(conn: RawConnection) -> None:
    """What the official client would do with the answer: an RpcError with kind and code."""
    conn.send(request_bytes("subtract"))
    raw = pa.ipc.open_stream(conn.inp)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, raw.schema) as writer:
        for batch, md in iter(lambda: _next_or_none(raw), None):
            writer.write_batch(batch, custom_metadata=md)
    with pytest.raises(RpcError) as info:
        read_response(sink.getvalue())
    assert info.value.error_type == "ProtocolError"
    assert info.value.error_kind == "method_not_implemented"
    assert info.value.error_code == "UNIMPLEMENTED"
    assert "subtract" in info.value.error_message
    assert_good(conn.call(GOOD))


def _next_or_none(reader: pa.ipc.RecordBatchStreamReader) -> Any:
    try:
        return reader.read_next_batch_with_custom_metadata()
    except StopIteration:
        return None


def test_compatible_arrow_types_are_cast(conn: RawConnection) -> None:
    data = request_bytes(columns={"a": pa.array([40], pa.int32()), "b": pa.array([2], pa.int8())})
    assert_good(conn.call(data), 42)
    greet = {
        "name": pa.array(["Ada"], pa.large_string()),
        "greeting": pa.array(["Hi"]),
        "punctuation": pa.array(["."]),
    }
    response = conn.call(request_bytes("greet", greet))
    assert response[0][0].to_pydict() == {"result": ["Hi, Ada."]}
    divide = {"a": pa.array([1], pa.int64()), "b": pa.array([4.0], pa.float32())}
    response = conn.call(request_bytes("divide", divide))
    assert response[0][0].to_pydict() == {"result": [0.25]}


def test_omitted_parameters_with_defaults_take_the_protocol_default(conn: RawConnection) -> None:
    """Peers fill defaults in, but a request without those columns is still served."""
    response = conn.call(request_bytes("greet", {"name": pa.array(["Ada"])}))
    assert response[0][0].to_pydict() == {"result": ["Hello, Ada!"]}
    response = conn.call(request_bytes("greet", {"name": pa.array(["Ada"]), "punctuation": pa.array(["?"])}))
    assert response[0][0].to_pydict() == {"result": ["Hello, Ada?"]}


def test_compatible_container_types_are_cast() -> None:
    c = new_conn(RpcServer(TypesService, TypesServiceImpl()))
    try:
        values = pa.array([[1, None, 3]], pa.list_(pa.int32()))
        response = c.call(request_bytes("echo_list_int", {"value": values}, protocol=TYPES))
        assert response[0][0].to_pydict() == {"result": [[1, None, 3]]}
        mapping = pa.array([[("k", 1)]], pa.map_(pa.large_string(), pa.int8()))
        response = c.call(request_bytes("echo_dict_str_int", {"value": mapping}, protocol=TYPES))
        assert response[0][0].column(0).to_pylist() == [[("k", 1)]]
    finally:
        c.close()


def test_protocol_version_mismatch_is_named() -> None:
    c = new_conn(RpcServer(Versioned, VersionedImpl()))
    try:
        base = {"vgi_rpc.method": "ping", "vgi_rpc.request_version": "1", "vgi_rpc.protocol": "Versioned"}
        empty: dict[str, pa.Array] = {}
        md = assert_error(
            c.call(request_bytes(columns=empty, metadata={**base, "vgi_rpc.protocol_version": "3.0.0"})),
            "3.0.0",
            "2.1.0",
        )
        assert md["vgi_rpc.error_kind"] == "protocol_version_mismatch"
        ok = c.call(request_bytes(columns=empty, metadata={**base, "vgi_rpc.protocol_version": "2.1.9"}))
        assert ok[0][0].to_pydict() == {"result": ["pong"]}
    finally:
        c.close()


TYPED: dict[str, tuple[str, dict[str, pa.Array], tuple[str, ...]]] = {
    "enum member that does not exist": (
        "echo_color",
        {"value": pa.array(["PURPLE"]).cast(pa.dictionary(pa.int16(), pa.utf8()))},
        ("'PURPLE'", "Color"),
    ),
    "enum as a number": ("echo_color", {"value": pa.array([1])}, ("'value'", "int64")),
    "dataclass bytes that are not IPC": ("echo_point", {"value": pa.array([b"not ipc"])}, ("'value'",)),
    "dataclass IPC of another schema": (
        "echo_point",
        {"value": pa.array([request_bytes(columns={"z": pa.array([1])})])},
        ("'value'",),
    ),
    "list of the wrong item type": (
        "echo_list_int",
        {"value": pa.array([["a"]])},
        ("'value'", "list<item: string>"),
    ),
    "int64 that overflows an int32 parameter": (
        "echo_i32",
        {"value": pa.array([2**40])},
        ("'value'", "int64", "int32"),
    ),
    "map with the wrong key type": (
        "echo_dict_str_int",
        {"value": pa.array([[(1, 2)]], pa.map_(pa.int64(), pa.int64()))},
        ("'value'",),
    ),
}


@pytest.mark.parametrize("case", list(TYPED))
def test_bad_values_for_rich_types_are_named(case: str) -> None:
    method, columns, fragments = TYPED[case]
    c = new_conn(RpcServer(TypesService, TypesServiceImpl()))
    try:
        assert_error(c.call(request_bytes(method, columns, protocol=TYPES)), method, *fragments)
        # the same connection still decodes good values (an enum as plain utf8 too)
        good = c.call(request_bytes("echo_color", {"value": pa.array([Color.RED.name])}, protocol=TYPES))
        assert good[0][0].column(0).to_pylist() == ["RED"]
        blob = codec_for(Point).encode(Point(1.0, 2.0))
        good = c.call(request_bytes("echo_point", {"value": pa.array([blob])}, protocol=TYPES))
        assert codec_for(Point).decode(good[0][0].column(0)[0].as_py()) == Point(1.0, 2.0)
    finally:
        c.close()


def test_bad_parameters_for_a_stream_method(conn: RawConnection) -> None:
    """The error answers the request; the client's input stream that follows is consumed."""
    conn.send(request_bytes("countdown", {"n": pa.array(["three"]), "tag": pa.array([""])}))
    assert_error(conn.read(), "countdown", "'n'", "string")
    conn.send(input_stream_bytes())
    assert_good(conn.call(GOOD))


def test_unknown_method_then_a_good_stream_call(conn: RawConnection) -> None:
    assert_error(conn.call(request_bytes("nope")), "'nope'")
    conn.send(request_bytes("countdown", {"n": pa.array([1]), "tag": pa.array([""])}))
    sink = pa.BufferOutputStream()
    tick = pa.RecordBatch.from_arrays([], schema=pa.schema([]))
    writer = pa.ipc.new_stream(sink, tick.schema)
    writer.write_batch(tick)
    conn.send(sink.getvalue().to_pybytes())
    reader = pa.ipc.open_stream(conn.inp)
    log, log_md = reader.read_next_batch_with_custom_metadata()
    assert log.num_rows == 0
    assert log_md[b"vgi_rpc.log_message"] == b"tick 0"
    assert reader.read_next_batch().to_pydict() == {"i": [0]}
    conn.send(input_stream_bytes()[-8:])  # EOS of the input stream: the producer ends
    with pytest.raises(StopIteration):
        reader.read_next_batch()
    assert_good(conn.call(GOOD))


# --------------------------------------------------------------------------- framing destroyed


def _random_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


BROKEN: dict[str, bytes] = {
    "text garbage": b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    "negative length": b"\xff" * 16,
    "legacy zero marker": b"\x00" * 8,
    "truncated request": GOOD[: len(GOOD) // 2],
    "truncated after the continuation marker": GOOD[:4],
    "schema then garbage": GOOD[: GOOD.index(b"\xff\xff\xff\xff", 8)]
    + b"\xff\xff\xff\xff"
    + b"\x10\x00\x00\x00"
    + b"junk" * 4,
    "random bytes a": _random_bytes(1, 64),
    "random bytes b": _random_bytes(2, 300),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_garbage_is_answered_then_the_connection_ends(server: RpcServer, case: str) -> None:
    c = new_conn(server)
    c.send(BROKEN[case])
    c.close_input()  # the server cannot know where garbage ends: EOF tells it
    response = c.read()
    assert_error(response, "not a valid Arrow IPC stream")
    c.assert_closed_by_server()
    fresh = new_conn(server)
    try:
        assert_good(fresh.call(GOOD))
    finally:
        fresh.close()


def test_good_call_then_garbage_answers_both(server: RpcServer) -> None:
    c = new_conn(server)
    assert_good(c.call(GOOD))
    c.send(b"\xff" * 16)
    assert_error(c.read(), "negative metadata length")
    c.close_input()
    c.assert_closed_by_server()


def test_clean_eof_ends_the_connection_without_an_answer(server: RpcServer) -> None:
    c = new_conn(server)
    assert_good(c.call(GOOD))
    c.close_input()
    c.assert_closed_by_server()  # nothing written after the last answer


# --------------------------------------------------------------------------- run_server: stdout purity


def _split_streams(data: bytes) -> list[list[tuple[pa.RecordBatch, dict[str, str]]]]:
    """Parse *data* as back-to-back IPC streams; fail if any byte is not part of one."""
    source = pa.BufferReader(data)
    streams = []
    while source.tell() < len(data):
        streams.append(read_one_stream(source))
    assert source.tell() == len(data)
    return streams


def test_run_server_writes_only_protocol_to_stdout() -> None:
    """Bad requests, printing implementations and stdout-bound logging: stdout holds only answers."""
    shout = request_bytes("shout", {"text": pa.array(["hey"])})
    fail = request_bytes("fail", {"message": pa.array(["boom"]), "error_type": pa.array(["ValueError"])})
    sequence = [
        (GOOD, "good"),
        (request_bytes("subtract"), "error"),
        (shout, "shout"),
        (request_bytes(columns={"a": pa.array(["x"]), "b": pa.array([1])}), "error"),
        (request_bytes(metadata={**REQUEST_MD, "vgi_rpc.request_version": "9"}), "error"),
        (fail, "error"),
        (request_bytes(batches=2), "error"),
        (GOOD, "good"),
        (b"\xff" * 16, "error"),  # destroys framing: answered, then the worker stops
    ]
    proc = subprocess.run(
        [sys.executable, str(WORKER), "calculator", "--noisy"],
        input=b"".join(data for data, _ in sequence),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    streams = _split_streams(proc.stdout)
    assert len(streams) == len(sequence)
    for (_, kind), response in zip(sequence, streams, strict=True):
        if kind == "good":
            assert_good(response)
        elif kind == "shout":
            assert response[0][0].to_pydict() == {"result": ["HEY"]}
        else:
            assert_error(response)
    stderr = proc.stderr.decode(errors="replace")
    assert "shout printed hey" in stderr
    assert "shout wrote fd1 hey" in stderr
    assert "raised ValueError: boom" in stderr  # the server's WARNING went to the stdout-bound handler
    assert b"printed" not in proc.stdout
    assert b"wrote fd1" not in proc.stdout
