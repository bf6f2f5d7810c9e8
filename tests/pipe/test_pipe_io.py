"""The pipe client's reader and writer (``vgi_rpc._pipe_io``) below the proxy.

The reader frames what it reads with ``vgi_rpc._ipc_framing.IpcFramer`` (current
format only), which walks whole messages in one loop (the usual case, an answer in
one read) and element by element (a message split across reads, bytes that are not
Arrow). These tests hold the two to the same answers -- where each stream ends, at
which byte garbage starts -- whatever the split, through the reader's own error, and
check that a write the other end does not drain still meets its deadline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pyarrow as pa
import pytest

from vgi_rpc._ipc_framing import FramingError, IpcFramer
from vgi_rpc._pipe_io import NotArrowError, PipeIO, PipeReader, PipeTimeout, PipeWriter


def _stream(rows: int, batches: int) -> bytes:
    batch = pa.record_batch(
        [pa.array(range(rows), pa.int64()), pa.array([str(i) * 3 for i in range(rows)])], names=["n", "s"]
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        for _ in range(batches):
            writer.write_batch(batch, custom_metadata={"k": "v" * rows})
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


STREAMS = [_stream(3, 1), _stream(0, 0), _stream(40, 3)]
DATA = b"".join(STREAMS)
ENDS = [sum(len(s) for s in STREAMS[: i + 1]) for i in range(len(STREAMS))]


def _splits() -> Iterator[list[int]]:
    yield []
    for cut in range(1, len(DATA)):
        yield [cut]
    for first in range(1, len(DATA), 7):
        yield [first, min(len(DATA) - 1, first + 9)]


def _feed(data: bytes, cuts: list[int]) -> IpcFramer:
    framing = IpcFramer(legacy=False)
    start = 0
    for cut in [*cuts, len(data)]:
        framing.feed(data[start:cut])
        start = cut
    return framing


def test_every_stream_end_is_found_however_the_bytes_are_split() -> None:
    """Three back-to-back streams, cut anywhere (once, twice): the framing reports the same three
    ends, and is left between messages (nothing pending) once all bytes are in."""
    for cuts in _splits():
        framing = _feed(DATA, cuts)
        assert list(framing.ends) == ENDS, cuts
        state = (framing.wanted(), bytes(framing.pending), framing.skip, framing.offset)
        assert state == (8, b"", 0, len(DATA)), cuts  # waiting for the next 8-byte prefix


@pytest.mark.parametrize("at", [0, len(STREAMS[0]), len(STREAMS[0]) + 8, len(STREAMS[0]) + 13])
def test_garbage_is_named_at_the_same_byte_whole_or_split(at: int) -> None:
    """Garbage after a valid stream, inside a message prefix or inside metadata: the error names the
    same byte offset whether the bytes arrive in one read or byte by byte (the quoted sample is what
    that read brought)."""
    data = DATA[:at] + b"hello from a stray print\n" + DATA[at:]
    offsets = set()
    for cuts in ([], list(range(1, len(data)))):
        with pytest.raises(FramingError) as info:
            _feed(data, cuts)
        offsets.add(info.value.at)
        assert info.value.sample, cuts
    assert len(offsets) == 1, offsets


def test_garbage_from_a_worker_is_a_not_arrow_error_quoting_it() -> None:
    """What the pipe client's caller finally reads: where, what, and the advice to print to stderr."""
    r, w = os.pipe()
    io = PipeIO()
    io.arm(10)
    reader = PipeReader(r, io, owns_fd=True)
    try:
        os.write(w, STREAMS[0] + b"hello from a stray print\n")
        with pytest.raises(NotArrowError) as info:
            reader.read_stream()
            reader.read_stream()
    finally:
        os.close(w)
        reader.close()
    assert str(info.value) == (
        f"the other end wrote bytes that are not Arrow IPC at byte {len(STREAMS[0])} of its output: "
        "b'hello from a stray print\\n' (a worker must keep stdout for the protocol: print to stderr)"
    )


def test_a_read_stream_answer_in_one_read_is_handed_over_whole() -> None:
    """The reader hands back exactly one stream (through its EOS), then the next one."""
    r, w = os.pipe()
    io = PipeIO()
    io.arm(10)
    reader = PipeReader(r, io, owns_fd=True)
    try:
        os.write(w, DATA)
        assert bytes(reader.read_stream()) == STREAMS[0]
        assert bytes(reader.read_stream()) == STREAMS[1]
        assert bytes(reader.read_stream()) == STREAMS[2]
    finally:
        os.close(w)
        reader.close()


def test_a_send_the_other_end_does_not_drain_meets_its_deadline() -> None:
    """PipeWriter.send writes what fits at once and waits for room for the rest: past the deadline it
    raises PipeTimeout instead of blocking (nobody reads this pipe)."""
    r, w = os.pipe()
    io = PipeIO()
    writer = PipeWriter(w, io, owns_fd=True)
    try:
        io.arm(0.2)
        with pytest.raises(PipeTimeout):
            writer.send(b"x" * (4 << 20))
    finally:
        writer.close()
        os.close(r)
