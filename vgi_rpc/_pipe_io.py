"""The pipe client's two file descriptors, with a deadline and an eye on the bytes.

:class:`PipeReader` and :class:`PipeWriter` are the file objects the pipe client
hands to Arrow. Both use non-blocking descriptors and ``poll()``, so a call armed
with a deadline (:meth:`PipeIO.arm`) raises :class:`PipeTimeout` instead of waiting
forever for a worker that neither answers nor exits, or that stops reading. The
reader also follows the Arrow IPC framing of everything it reads
(:class:`~vgi_rpc._ipc_framing.IpcFramer`: each message must start with the
continuation marker and a sane length) and raises
:class:`NotArrowError` showing the offending bytes as soon as the worker writes
something else to stdout, rather than letting Arrow wait for a 1.8 GB "message"
whose length was the text ``hell``.
"""

from __future__ import annotations

import os
import select
import time

from vgi_rpc._ipc_framing import FramingError, IpcFramer

__all__ = ["NotArrowError", "PipeIO", "PipeReader", "PipeTimeout", "PipeWriter"]

# What a pipe holds by default. Not more: os.read allocates its whole size first, and
# an allocation past glibc's mmap threshold (128 KiB) can cost an mmap, an mremap and a
# munmap per read (~19 us; a unary round trip is ~120 us).
_READ_SIZE = 1 << 16
_WRITE_SIZE = 1 << 20


class PipeTimeout(TimeoutError):
    """The armed deadline passed while waiting for the other end of the pipe."""


class NotArrowError(OSError):
    """The bytes read from the pipe cannot be an Arrow IPC stream."""


class PipeIO:
    """The deadline shared by one connection's reader and writer."""

    __slots__ = ("deadline", "timeout")

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.timeout: float | None = None

    def arm(self, timeout: float | None) -> None:
        """Give the next operations *timeout* seconds from now (``None``: no limit)."""
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def wait(self, poller: select.poll) -> None:
        """Block until *poller*'s descriptor is ready, or raise :class:`PipeTimeout` at the deadline."""
        while True:
            if self.deadline is None:
                left_ms = None
            else:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise PipeTimeout(f"no answer within {self.timeout:g} s")
                left_ms = max(1, int(left * 1000))
            if poller.poll(left_ms):
                return


def _poller(fd: int, events: int) -> select.poll:
    """A poll object watching *fd* for *events* (made once per descriptor, not per wait)."""
    poller = select.poll()
    poller.register(fd, events | select.POLLERR | select.POLLHUP)
    return poller


class PipeReader:
    """A readable file object over a pipe descriptor, for Arrow: deadline-aware, framing-checked."""

    def __init__(self, fd: int, io: PipeIO, *, owns_fd: bool = False) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.io = io
        self.owns_fd = owns_fd
        self._poller = _poller(fd, select.POLLIN)
        self._data = b""  # read from the pipe, not yet handed out from _pos on
        self._pos = 0
        self._handed = 0  # bytes handed out so far
        self._framing = IpcFramer(legacy=False)  # our workers (and the reference's) write the current format
        self._eof = False
        self.closed = False

    def readable(self) -> bool:
        """Yes."""
        return True

    def _chunk(self) -> bytes:
        """The next bytes from the pipe (b"" at end of file), waiting up to the deadline.

        Waits before reading: when the client reads, the other end has usually not
        answered yet, and a read that finds nothing costs a ``BlockingIOError``
        (~1.1 us here) where a poll that finds the answer there costs ~0.5 us.
        """
        while True:
            self.io.wait(self._poller)
            try:
                chunk = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:  # woken with nothing to read after all: wait again
                continue
            if not chunk:
                self._eof = True
                return chunk
            try:
                self._framing.feed(chunk)
            except FramingError as exc:
                raise NotArrowError(
                    f"the other end wrote {exc.what} at byte {exc.at} of its output: {exc.sample!r} "
                    "(a worker must keep stdout for the protocol: print to stderr)"
                ) from None
            return chunk

    def read(self, n: int = -1) -> bytes:
        """Up to *n* bytes (all until EOF for ``n < 0``); fewer only at end of file."""
        if self.closed:
            raise ValueError("read from a closed pipe connection")
        data, pos = self._data, self._pos
        if 0 <= n <= len(data) - pos:  # the usual case: Arrow asks for what is here
            self._pos = pos + n
            self._handed += n
            return data[pos : pos + n]
        parts = [data[pos:]]
        have = len(parts[0])
        while (n < 0 or have < n) and not self._eof:
            chunk = self._chunk()
            parts.append(chunk)
            have += len(chunk)
        joined = b"".join(parts)
        if n < 0 or n >= have:
            self._data, self._pos = b"", 0
            self._handed += have
            return joined
        self._data, self._pos = joined, n
        self._handed += n
        return joined[:n]

    def read_stream(self) -> memoryview:
        """One whole IPC stream (through its end-of-stream marker), for Arrow to read in place.

        Reads until the framing walk has seen the stream end (or the pipe closes: then
        whatever came, so that Arrow reports the truncation), in one buffer.
        """
        if self.closed:
            raise ValueError("read from a closed pipe connection")
        ends = self._framing.ends
        handed = self._handed
        while ends and ends[0] <= handed:
            ends.popleft()
        data, pos = self._data, self._pos
        parts = [data[pos:]] if pos < len(data) else []
        have = len(data) - pos
        while not ends and not self._eof:
            chunk = self._chunk()
            if chunk:
                parts.append(chunk)
                have += len(chunk)
        size = ends.popleft() - handed if ends else have
        joined = parts[0] if len(parts) == 1 else b"".join(parts)
        self._data, self._pos = joined, size
        self._handed = handed + size
        return memoryview(joined)[:size]

    def close(self) -> None:
        """Stop using the descriptor (and close it when this object owns it)."""
        if not self.closed:
            self.closed = True
            if self.owns_fd:
                os.close(self.fd)


class PipeWriter:
    """A writable file object over a pipe descriptor, for Arrow: buffered, deadline-aware.

    Arrow writes an IPC message in several small pieces; they are collected and sent
    by :meth:`flush` (or once 1 MiB has gathered), so one request costs one or two
    system calls, as with a buffered file.
    """

    def __init__(self, fd: int, io: PipeIO, *, owns_fd: bool = False) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.io = io
        self.owns_fd = owns_fd
        self.closed = False
        self._buf = bytearray()
        self._poller = _poller(fd, select.POLLOUT)

    def writable(self) -> bool:
        """Yes."""
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue *data*; sent by :meth:`flush`, or at once past 1 MiB."""
        if self.closed:
            raise BrokenPipeError("the pipe connection is closed")
        n = len(memoryview(data).cast("B"))
        self._buf += data
        if len(self._buf) >= _WRITE_SIZE:
            self.flush()
        return n

    def send(self, data: bytes) -> None:
        """Write *data* and flush: one system call when nothing is queued and the pipe has room."""
        if self._buf or self.closed:
            self.write(data)
            self.flush()
            return
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):  # the pipe is full: queue the rest and wait for room
            self._buf += memoryview(data)[sent:]
            self.flush()

    def flush(self) -> None:
        """Send everything queued (waiting for room in the pipe, up to the deadline)."""
        if not self._buf:
            return
        if self.closed:
            raise BrokenPipeError("the pipe connection is closed")
        view = memoryview(self._buf)
        try:
            while view:
                try:
                    n = os.write(self.fd, view[:_WRITE_SIZE])
                except BlockingIOError:
                    self.io.wait(self._poller)
                    continue
                view = view[n:]
        finally:
            sent = len(self._buf) - len(view)
            view.release()
            del self._buf[:sent]

    def close(self) -> None:
        """Stop using the descriptor (and close it when this object owns it); unsent bytes are dropped."""
        if not self.closed:
            self.closed = True
            self._buf.clear()
            if self.owns_fd:
                os.close(self.fd)
