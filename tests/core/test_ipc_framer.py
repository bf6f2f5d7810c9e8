"""``vgi_rpc._ipc_framing``: the one IPC framer, and the one error for bytes that are not Arrow IPC.

The framer is fed bytes in pieces of any size and must find every stream's end in
both framings (the current one with the ``0xFFFFFFFF`` continuation marker, and
the pre-1.0 bare length), whatever the split; say how many bytes complete what it
is reading (so a reader takes exactly one stream off a file); leave a truncated
stream unfinished; and raise :class:`FramingError` at the right byte for garbage.
Above it, bad IPC in a request or response is one :class:`ProtocolError` (made by
``ProtocolError.bad_ipc_stream``) whose ``bad_ipc`` flag, not its text, is what the
pipe server branches on; on the wire it stays the ``bad_request`` ProtocolError the
peers know.
"""

from __future__ import annotations

import io
import struct

import pyarrow as pa
import pytest

from vgi_rpc._ipc_framing import FramingError, IpcFramer, first_stream_end, starts_empty
from vgi_rpc.errors import ProtocolError
from vgi_rpc.wire import error_metadata, read_request, read_response, request_bytes

LEGACY = pa.ipc.IpcWriteOptions(use_legacy_format=True)


def _stream(rows: int, batches: int, *, legacy: bool = False) -> bytes:
    batch = pa.record_batch(
        [pa.array(range(rows), pa.int64()), pa.array(["x" * i for i in range(rows)])], names=["n", "s"]
    )
    sink = pa.BufferOutputStream()
    options = LEGACY if legacy else pa.ipc.IpcWriteOptions()
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        for i in range(batches):
            writer.write_batch(batch, custom_metadata={"turn": str(i)})
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _streams(*, legacy: bool) -> list[bytes]:
    return [_stream(2, 1, legacy=legacy), _stream(0, 0, legacy=legacy), _stream(9, 3, legacy=legacy)]


def _ends(streams: list[bytes]) -> list[int]:
    return [sum(len(s) for s in streams[: i + 1]) for i in range(len(streams))]


def _feed(framer: IpcFramer, data: bytes, cuts: list[int]) -> IpcFramer:
    start = 0
    for cut in [*cuts, len(data)]:
        framer.feed(data[start:cut])
        start = cut
    return framer


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "pre-1.0"])
def test_every_stream_end_is_found_whatever_the_split(legacy: bool) -> None:
    """Three back-to-back streams, cut once at every byte, then fed byte by byte: the same ends."""
    streams = _streams(legacy=legacy)
    data = b"".join(streams)
    splits = [[], *([cut] for cut in range(1, len(data))), list(range(1, len(data)))]
    for cuts in splits:
        framer = _feed(IpcFramer(), data, cuts)
        assert list(framer.ends) == _ends(streams), cuts
        assert (framer.wanted(), bytes(framer.pending), framer.offset) == (4, b"", len(data)), cuts


def test_the_strict_framer_follows_the_current_format_and_refuses_the_legacy_one() -> None:
    streams = _streams(legacy=False)
    data = b"".join(streams)
    for cuts in ([], list(range(1, len(data)))):
        assert list(_feed(IpcFramer(legacy=False), data, cuts).ends) == _ends(streams)
    with pytest.raises(FramingError) as info:
        IpcFramer(legacy=False).feed(_stream(1, 1, legacy=True))
    assert (info.value.what, info.value.at) == ("bytes that are not Arrow IPC", 0)


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "pre-1.0"])
def test_reading_what_it_wants_takes_exactly_one_stream(legacy: bool) -> None:
    """``wanted()`` bytes at a time: the prefix, the metadata, the body, up to the EOS and no further."""
    first, second = _stream(3, 2, legacy=legacy), _stream(1, 1, legacy=legacy)
    source = io.BytesIO(first + second)
    framer = IpcFramer()
    taken = b""
    while not framer.ends:
        chunk = source.read(framer.wanted())
        taken += chunk
        framer.feed(chunk)
    assert taken == first
    assert source.read() == second


def test_end_of_stream_markers_in_both_framings() -> None:
    for eos, legacy in ((b"\xff\xff\xff\xff\x00\x00\x00\x00", False), (b"\x00\x00\x00\x00", True)):
        framer = _feed(IpcFramer(legacy=legacy), eos * 3, [])
        assert list(framer.ends) == [len(eos), 2 * len(eos), 3 * len(eos)]


@pytest.mark.parametrize("legacy", [False, True], ids=["current", "pre-1.0"])
def test_a_truncated_stream_has_no_end_and_wants_more(legacy: bool) -> None:
    data = _stream(5, 2, legacy=legacy)
    for cut in range(1, len(data)):
        framer = _feed(IpcFramer(), data[:cut], [])
        assert not framer.ends, cut
        assert framer.wanted() > 0, cut
        assert framer.reach() > cut, cut


@pytest.mark.parametrize(
    ("garbage", "what"),
    [
        (b"\xff\xff\xff\xff\xf0\xff\xff\xff", "bytes that are not Arrow IPC"),  # negative length
        (b"\x00\x00\x00\x90rest", "bytes that are not Arrow IPC"),  # negative bare length
        (b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"junk" * 4, "metadata is not a flatbuffer Message"),
    ],
    ids=["negative length", "negative legacy length", "junk metadata"],
)
def test_garbage_after_a_stream_is_named_at_its_byte(garbage: bytes, what: str) -> None:
    good = _stream(2, 1)
    for cuts in ([], list(range(1, len(good) + len(garbage)))):
        with pytest.raises(FramingError) as info:
            _feed(IpcFramer(), good + garbage, cuts)
        assert what in info.value.what
        expected_at = len(good) + (8 if "metadata" in what else 0)
        assert info.value.at == expected_at, cuts
        assert info.value.sample


def test_a_stray_print_is_garbage_only_to_the_strict_framer() -> None:
    """``hell`` is a 1.8 GB legacy metadata length: the lenient framer waits for it, the strict one refuses."""
    text = b"hello from a stray print\n"
    lenient = IpcFramer()
    lenient.feed(text)
    assert lenient.wanted() == struct.unpack("<I", b"hell")[0] - (len(text) - 4)
    with pytest.raises(FramingError) as info:
        IpcFramer(legacy=False).feed(text)
    assert info.value.sample == text


def test_first_stream_end_finds_a_whole_current_stream_in_a_buffer() -> None:
    data = _stream(4, 2)
    assert first_stream_end(data + _stream(1, 1) + b"more") == len(data)
    assert first_stream_end(data[:-1]) is None
    assert first_stream_end(_stream(4, 2, legacy=True)) is None  # read message by message instead


@pytest.mark.parametrize(
    ("data", "empty"),
    [
        (b"", True),
        (b"\x00\x00\x00\x00", True),
        (b"\x00\x00\x00\x00garbage", True),
        (b"\xff\xff\xff\xff\x00\x00\x00\x00", True),
        (b"\x00", False),
        (b"\xff\xff\xff\xff", False),
        (b"\xff\xff\xff\xff\x00\x00", False),
        (b"\xff\xff\xff\xff\x10\x00\x00\x00", False),
    ],
)
def test_starts_empty(data: bytes, empty: bool) -> None:
    assert starts_empty(data) is empty


# --------------------------------------------------------------------------- the typed error

GOOD = request_bytes("add", pa.record_batch({"a": [1], "b": [2]}), protocol="Calculator")


@pytest.mark.parametrize(
    "data",
    [
        b"garbage, not arrow at all",
        b"\xff" * 16,
        GOOD[:-20],
        b"\xff\xff\xff\xff\x10\x00\x00\x00" + b"junk" * 4,
    ],
    ids=["text", "negative length", "truncated", "junk metadata"],
)
def test_bad_ipc_in_a_request_is_one_flagged_protocol_error(data: bytes) -> None:
    for source in (data, io.BufferedReader(io.BytesIO(data))):
        with pytest.raises(ProtocolError) as info:
            read_request(source)
        error = info.value
        assert error.bad_ipc
        assert str(error).startswith("request is not a valid Arrow IPC stream: ")
        md = error_metadata(error)  # what the peer sees: unchanged
        assert md["vgi_rpc.error_kind"] == "bad_request"
        assert md["vgi_rpc.log_message"].startswith(
            "ProtocolError: request is not a valid Arrow IPC stream: "
        )


def test_other_protocol_errors_are_not_bad_ipc() -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, pa.schema([])):
        pass
    with pytest.raises(ProtocolError) as info:
        read_request(sink.getvalue().to_pybytes())  # valid IPC, no batch
    assert not info.value.bad_ipc
    assert not ProtocolError("anything").bad_ipc


def test_bad_ipc_in_a_response_is_the_same_error() -> None:
    with pytest.raises(ProtocolError) as info:
        read_response(b"\x00garbage\xff" * 4)
    assert info.value.bad_ipc
    assert str(info.value).startswith("response is not a valid Arrow IPC stream: ")


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff\x00\x00\x00\x00"])
def test_bytes_without_a_message_are_a_clean_end(data: bytes) -> None:
    """In memory (an HTTP body) no message before the EOS is the end; from a file only no bytes are."""
    with pytest.raises(EOFError):
        read_request(data)
    with pytest.raises(EOFError):
        read_request(io.BufferedReader(io.BytesIO(b"")))
    if data:
        with pytest.raises(ProtocolError) as info:
            read_request(io.BufferedReader(io.BytesIO(data)))
        assert info.value.bad_ipc
