"""Arrow IPC stream framing, read without Arrow: where each message starts and ends.

An IPC stream is a sequence of messages, each ``0xFFFFFFFF`` (the continuation
marker), an int32 metadata length ``L``, ``L`` bytes of flatbuffer ``Message``
metadata (whose ``bodyLength`` is the size of the body that follows), then the body;
a zero length ends the stream. Knowing those lengths lets a reader bound what it
keeps (``vgi_rpc.http`` decoding compressed bodies) or notice bytes that cannot be
Arrow at all (the pipe client reading a worker's stdout) before handing anything
to Arrow.
"""

from __future__ import annotations

import struct

__all__ = ["CONTINUATION", "message_body_length", "prefix_length"]

CONTINUATION = 0xFFFFFFFF

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")


def prefix_length(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """``(metadata length, prefix size)`` of the message starting at *pos* (8 bytes must be there).

    A pre-1.0 stream has no continuation marker (prefix size 4). A length of 0 is
    the end of the stream; a negative one is not Arrow.
    """
    (head,) = _U32.unpack_from(data, pos)
    if head == CONTINUATION:
        return _I32.unpack_from(data, pos + 4)[0], 8
    return (head if head < 0x80000000 else -1), 4


def message_body_length(meta: bytes | bytearray | memoryview) -> int | None:
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
