"""Arrow IPC stream framing, read without Arrow: where each message and each stream ends.

An IPC stream is a sequence of messages, each ``0xFFFFFFFF`` (the continuation
marker), an int32 metadata length ``L``, ``L`` bytes of flatbuffer ``Message``
metadata (whose ``bodyLength`` is the size of the body that follows), then the body;
a zero length ends the stream. The pre-1.0 ("legacy") format is the same without
the continuation marker.

:class:`IpcFramer` is the one reader of that framing. The transports feed it the
bytes as they arrive, in pieces of any size: the server's request reader
(``vgi_rpc.wire.read_stream_bytes``) to take exactly one stream off a file, the
HTTP body decoder (``vgi_rpc.http._common``) to bound what it keeps, and the pipe
client (``vgi_rpc._pipe_io``) to find each answer's end and to notice a worker that
writes something else on stdout. It never decodes: bytes that break the framing
raise :class:`FramingError` (where, what, the bytes), and each caller decides what
that means -- the servers hand what they read to pyarrow, whose message the peer
sees inside a :meth:`ProtocolError.bad_ipc_stream <vgi_rpc.errors.ProtocolError.bad_ipc_stream>`.
"""

from __future__ import annotations

import struct
from collections import deque

__all__ = [
    "CONTINUATION",
    "FramingError",
    "IpcFramer",
    "first_stream_end",
    "message_body_length",
    "starts_empty",
]

CONTINUATION = 0xFFFFFFFF

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")
_PREFIX = struct.Struct("<Ii")  # continuation marker, metadata length

_SHOWN = 64  # bytes of garbage a FramingError keeps

# What the framer reads next (the body, when ``skip`` is set, comes before all of these).
_HEAD = 0  # the first 4 bytes of a message: the continuation marker, or a legacy length
_LENGTH = 1  # the int32 metadata length after a continuation marker
_META = 2  # the flatbuffer metadata

Bytes = bytes | bytearray | memoryview


def message_body_length(meta: Bytes) -> int | None:
    """``Message.bodyLength`` (flatbuffer field 3) of one message's metadata, or None if malformed."""
    try:
        (table,) = _U32.unpack_from(meta, 0)
        (back,) = _I32.unpack_from(meta, table)
        vtable = table - back
        if vtable < 0:
            return None
        (vsize,) = _U16.unpack_from(meta, vtable)
        if vsize < 12:
            return 0 if vsize >= 4 else None  # the field is absent: its default
        (field,) = _U16.unpack_from(meta, vtable + 10)
        if not field:
            return 0
        (length,) = _I64.unpack_from(meta, table + field)
    except struct.error:
        return None
    return length if length >= 0 else None


def starts_empty(data: Bytes) -> bool:
    """Whether *data* holds no message before its end of stream: no bytes at all, or an EOS marker first.

    What a reader of in-memory bytes calls a clean end, in either framing.
    """
    size = len(data)
    if not size:
        return True
    if size < 4:
        return False
    (head,) = _U32.unpack_from(data, 0)
    if head == CONTINUATION:
        return size >= 8 and not _I32.unpack_from(data, 4)[0]
    return not head


def _walk_whole(data: Bytes, pos: int, end: int) -> tuple[int, bool]:
    """Pass over the messages lying whole in ``data[pos:end]``, from a message boundary, to one stream's end.

    The fast path: a whole request or answer in one read, in one loop over
    continuation-framed messages. Returns where the walk stopped and whether that is
    just past an end-of-stream marker; a position past *end* means the last
    message's body goes on after *end*. Whatever this loop does not take in its
    stride (a message split across reads, legacy framing, bytes that are not a
    message) is left, from the start of that message, to the element-by-element walk
    of :class:`IpcFramer`, which also names the problems.
    """
    unpack = _PREFIX.unpack_from
    view = memoryview(data)
    while pos + 8 <= end:
        marker, size = unpack(data, pos)
        if marker != CONTINUATION or size < 0:
            return pos, False
        if not size:  # the end of the stream
            return pos + 8, True
        body_at = pos + 8 + size
        if body_at > end:
            return pos, False
        length = message_body_length(view[pos + 8 : body_at])
        if length is None:
            return pos, False
        pos = body_at + length
    return pos, False


def first_stream_end(data: Bytes) -> int | None:
    """Where the IPC stream at the start of *data* ends (just past its EOS marker), if *data* holds all of it.

    ``None`` when the stream goes on past *data*, uses the legacy framing, or is not
    valid framing: then read it with an :class:`IpcFramer`, message by message.
    """
    pos, ended = _walk_whole(data, 0, len(data))
    return pos if ended else None


class FramingError(ValueError):
    """Bytes that cannot be Arrow IPC framing.

    Attributes:
        what: What was found (``"bytes that are not Arrow IPC"``, or metadata that is
            not a flatbuffer ``Message``).
        at: Its offset in everything fed to the framer (a message's start for a bad
            prefix, the metadata's start for bad metadata).
        sample: Up to 64 of the offending bytes, as far as the feed that found them went.
    """

    def __init__(self, what: str, at: int, sample: bytes) -> None:
        super().__init__(f"{what} at byte {at}: {sample!r}")
        self.what = what
        self.at = at
        self.sample = sample


class IpcFramer:
    """Follows the messages of back-to-back IPC streams as their bytes arrive, in pieces of any size.

    :meth:`feed` takes the next bytes; :attr:`ends` collects where each stream ended
    (the offset just past its EOS marker, counted from the first byte fed), for the
    caller to pop. Bytes that break the framing raise :class:`FramingError`; the
    framer is then done with. *legacy* accepts the pre-1.0 framing too (a bare
    length, no continuation marker); without it a bare length is garbage, which
    is what a reader of a peer that always writes the current format wants (text
    such as ``hell`` would otherwise be a 1.8 GB metadata length to wait for).
    """

    __slots__ = ("ends", "head", "need", "offset", "pending", "skip", "start", "what")

    def __init__(self, *, legacy: bool = True) -> None:
        # With legacy framing a message starts with 4 bytes (the marker, or a bare
        # length); without, with the whole 8-byte prefix, read at once.
        self.head = 4 if legacy else 8
        self.what = _HEAD  # the element being read (after any body still to skip)
        self.need = self.head  # its size
        self.pending = bytearray()  # its bytes so far, when it was split across feeds
        self.skip = 0  # body bytes still to pass over
        self.offset = 0  # bytes fed so far
        self.start = 0  # where the message being read started (its prefix read)
        self.ends: deque[int] = deque()

    def wanted(self) -> int:
        """How many more bytes complete what the framer is reading (a body, a prefix, metadata)."""
        return self.skip or self.need - len(self.pending)

    def reach(self) -> int:
        """The offset the bytes must reach for the framer's next decision.

        A message prefix is decided on at its full 8 bytes, in either framing (the
        legacy one's first metadata bytes included), and a body reaches through the
        next message's prefix.
        """
        if self.skip:
            return self.offset + self.skip + 8
        if self.what == _HEAD:
            return self.offset - len(self.pending) + 8
        prefix_end = self.start + 8
        if self.what == _LENGTH or self.offset < prefix_end:
            return prefix_end
        return self.offset - len(self.pending) + self.need

    def feed(self, data: Bytes) -> None:
        """Follow *data*, the next bytes of the byte stream (raises :class:`FramingError` on garbage)."""
        pos, end = 0, len(data)
        try:
            while pos < end:
                if self.skip:
                    step = min(self.skip, end - pos)
                    self.skip -= step
                    pos += step
                    continue
                if self.what == _HEAD and not self.pending:
                    reached, ended = _walk_whole(data, pos, end)
                    if ended:
                        self.ends.append(self.offset + reached)
                    elif reached > end:  # the last message's body goes on in the next feed
                        self.skip = reached - end
                        return
                    if reached != pos:
                        pos = reached
                        continue
                pos = self._step(data, pos, end)
        finally:
            self.offset += end

    def _step(self, data: Bytes, pos: int, end: int) -> int:
        """Take in one element (or the part of it *data* holds); where to go on from."""
        need = self.need
        pending = self.pending
        if pending or end - pos < need:  # an element split across feeds
            step = min(need - len(pending), end - pos)
            pending += data[pos : pos + step]
            pos += step
            if len(pending) < need:
                return pos
            element = bytes(pending)
            pending.clear()
        else:
            element = bytes(data[pos : pos + need])
            pos += need
        self._element(element, data, pos)
        return pos

    def _element(self, element: bytes, data: Bytes, after: int) -> None:
        at = self.offset + after - len(element)  # where the element started
        what = self.what
        if what == _META:
            length = message_body_length(element)
            if length is None:
                raise FramingError(
                    "an IPC message whose metadata is not a flatbuffer Message", at, element[:16]
                )
            self.skip = length
            self.what, self.need = _HEAD, self.head
            return
        (value,) = _U32.unpack_from(element, 0)
        if what == _HEAD:
            self.start = at
            if value == CONTINUATION:
                if len(element) == 4:  # the length follows
                    self.what = _LENGTH
                    return
                (value,) = _U32.unpack_from(element, 4)
            elif self.head == 8:  # no marker, and legacy framing is not accepted
                value = CONTINUATION
        if value >= 0x80000000:  # a negative length (or no marker)
            marker = _U32.pack(CONTINUATION) if what == _LENGTH else b""
            sample = marker + element + bytes(data[after : after + _SHOWN])
            raise FramingError("bytes that are not Arrow IPC", self.start, sample[:_SHOWN])
        if value:
            self.what, self.need = _META, value
        else:  # the end of one stream; the next one starts with a prefix again
            self.what, self.need = _HEAD, self.head
            self.ends.append(self.offset + after)
