"""``vgi_rpc.wire.read_stream_bytes``: exactly one IPC stream's bytes off a file, whatever the file.

The pipe transport frames each whole request and unary answer with it before
pyarrow decodes them from memory. Every stream pyarrow writes -- any schema
(dictionaries, nested types, no columns), any number of batches, custom
metadata, the pre-1.0 framing -- must come back byte for byte and leave the
file positioned at the next stream, through a buffered reader (where the stream
is found in the peeked buffer, or is larger than it), a ``BytesIO`` (no peek)
and a raw pipe that returns short reads.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vgi_rpc.wire import read_stream_bytes

SCHEMAS = [
    pa.schema([]),
    pa.schema([("a", pa.int64()), ("b", pa.int64())]),
    pa.schema([("s", pa.utf8()), ("f", pa.float64())]),
    pa.schema([("e", pa.dictionary(pa.int16(), pa.utf8()))]),
    pa.schema([("l", pa.list_(pa.int32())), ("m", pa.map_(pa.utf8(), pa.int64()))]),
    pa.schema([("p", pa.struct([("x", pa.float64()), ("y", pa.float64())])), ("bin", pa.binary())]),
]


def _values(field: pa.Field, rows: int, seed: int) -> pa.Array:
    t = field.type
    if pa.types.is_dictionary(t):
        return pa.array([f"v{(seed + i) % 3}" for i in range(rows)]).dictionary_encode().cast(t)
    if pa.types.is_integer(t):
        return pa.array([seed + i for i in range(rows)], t)
    if pa.types.is_floating(t):
        return pa.array([seed / 3 + i for i in range(rows)], t)
    if pa.types.is_string(t):
        return pa.array(["ü" * ((seed + i) % 5) for i in range(rows)], t)
    if pa.types.is_binary(t):
        return pa.array([bytes(range((seed + i) % 40)) for i in range(rows)], t)
    if pa.types.is_list(t):
        return pa.array([list(range((seed + i) % 4)) for i in range(rows)], t)
    if pa.types.is_map(t):
        return pa.array([[("k", seed + i)] for i in range(rows)], t)
    return pa.array([{"x": float(i), "y": float(seed)} for i in range(rows)], t)


def stream(schema: pa.Schema, batches: int, rows: int, seed: int, *, legacy: bool = False) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(use_legacy_format=legacy)
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        for b in range(batches):
            arrays = [_values(f, rows, seed + b) for f in schema]
            batch = pa.RecordBatch.from_arrays(arrays, schema=schema) if len(schema) else pa.record_batch([])
            writer.write_batch(batch, custom_metadata={"turn": str(b), "x": "y" * (seed % 7)})
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


class ShortReads(io.RawIOBase):
    """A raw file returning at most *chunk* bytes per read, as a pipe may."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = memoryview(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._chunk, len(self._data))
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def sources(data: bytes) -> dict[str, Any]:
    return {
        "buffered": io.BufferedReader(io.BytesIO(data)),
        "small buffer": io.BufferedReader(io.BytesIO(data), buffer_size=64),
        "BytesIO": io.BytesIO(data),
        "raw short reads": ShortReads(data, 7),
        "buffered short reads": io.BufferedReader(ShortReads(data, 13), buffer_size=128),
    }


@settings(max_examples=60, deadline=None)
@given(
    schema=st.sampled_from(SCHEMAS),
    batches=st.integers(0, 3),
    rows=st.integers(0, 4),
    seed=st.integers(0, 100),
    legacy=st.booleans(),
)
def test_each_stream_comes_back_byte_for_byte_and_the_next_one_follows(
    schema: pa.Schema, batches: int, rows: int, seed: int, legacy: bool
) -> None:
    first = stream(schema, batches, rows, seed, legacy=legacy)
    second = stream(SCHEMAS[1], 1, 1, seed + 1)
    for name, source in sources(first + second + b"trailing").items():
        assert read_stream_bytes(source) == first, name
        assert read_stream_bytes(source) == second, name
        assert source.read() == b"trailing", name


def test_clean_end_of_file_is_empty() -> None:
    for name, source in sources(b"").items():
        assert read_stream_bytes(source) == b"", name


def test_a_stream_larger_than_the_read_buffer() -> None:
    big = stream(SCHEMAS[4], 3, 3000, 5)
    assert len(big) > 65536
    for name, source in sources(big + big).items():
        assert read_stream_bytes(source) == big, name
        assert read_stream_bytes(source) == big, name


@pytest.mark.parametrize(
    "garbage",
    [b"GET / HTTP/1.1\r\n\r\n", b"\xff" * 16, b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"junk" * 4, b"\x00\x01"],
    ids=["text", "negative length", "junk metadata", "truncated prefix"],
)
def test_garbage_stops_the_reading_and_pyarrow_names_the_problem(garbage: bytes) -> None:
    for name, source in sources(garbage).items():
        data = read_stream_bytes(source)
        assert garbage.startswith(data), name
        with pytest.raises((pa.ArrowInvalid, OSError)):
            reader = pa.ipc.open_stream(pa.py_buffer(data))
            reader.read_all()


def test_a_truncated_stream_returns_what_arrived() -> None:
    data = stream(SCHEMAS[2], 2, 2, 3)
    cut = data[: len(data) - 20]
    for name, source in sources(cut).items():
        assert read_stream_bytes(source) == cut, name


def test_a_real_pipe_with_the_stream_written_in_pieces() -> None:
    data = stream(SCHEMAS[3], 2, 5, 9)
    r, w = os.pipe()
    with os.fdopen(r, "rb") as reader, os.fdopen(w, "wb", buffering=0) as writer:

        def feed() -> None:
            for i in range(0, len(data), 11):
                writer.write(data[i : i + 11])

        t = threading.Thread(target=feed)
        t.start()
        assert read_stream_bytes(reader) == data
        t.join()
