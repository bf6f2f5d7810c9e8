"""Exceptions a vgi-rpc caller can see."""

from __future__ import annotations

__all__ = ["ECHO_LIMIT", "MESSAGE_LIMIT", "ProtocolError", "RpcError", "clip"]

ECHO_LIMIT = 256
"""Most characters of one client-supplied value (a method name, path, header...) an error repeats."""

MESSAGE_LIMIT = 4096
"""Most characters of a :class:`ProtocolError` message (longer ones keep their start and end)."""


def clip(value: str, limit: int = ECHO_LIMIT) -> str:
    """*value* cut to *limit* characters, marked with how long it really was.

    Error messages that quote what a client sent go through this, so a 1 MiB method
    name cannot turn into a 2 MB error response: ``clip("x" * 300)`` is 256 ``x``
    followed by ``...[300 chars]``.
    """
    if len(value) <= limit:
        return value
    return f"{value[:limit]}...[{len(value)} chars]"


def _bounded(message: str) -> str:
    if len(message) <= MESSAGE_LIMIT:
        return message
    marker = f"...[{len(message)} chars]..."
    room = MESSAGE_LIMIT - len(marker)
    tail = room // 4
    return f"{message[: room - tail]}{marker}{message[-tail:]}"


class RpcError(Exception):
    """A call failed on the server (or the server refused the request).

    Attributes:
        error_type: The server-side exception's class name (e.g. ``"ValueError"``),
            or a protocol error kind such as ``"ProtocolError"``.
        error_message: The message exactly as the server sent it (the server's
            ``"<Type>: <message>"``). ``str()`` of the error is that message, with
            ``"<error_type>: "`` put in front only when it does not start with it.
        remote_traceback: The server's formatted traceback, only when the server
            was configured to include tracebacks; otherwise ``None``.
        error_kind: Optional machine-readable kind (``"method_not_implemented"``...).
        error_code: Optional code (``"UNKNOWN"``, ``"UNIMPLEMENTED"``...).
        request_id: The server's id for the request, when it sent one.
    """

    def __init__(
        self,
        error_type: str,
        error_message: str,
        *,
        remote_traceback: str | None = None,
        error_kind: str | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        # The server's message already starts with "<type>: " (the wire's log message
        # does, as the reference server's): name the type once.
        named = error_message.startswith(f"{error_type}: ")
        super().__init__(error_message if named else f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.remote_traceback = remote_traceback
        self.error_kind = error_kind
        self.error_code = error_code
        self.request_id = request_id


class ProtocolError(Exception):
    """A request or response broke the wire protocol (bad IPC, missing metadata...).

    Raised by the server for malformed requests (sent back to the client as an
    error stream) and by clients for malformed responses. The message is at most
    :data:`MESSAGE_LIMIT` characters: a longer one keeps its start and its end
    around a ``...[<n> chars]...`` marker (*n* is the original length).

    Attributes:
        error_kind: Machine-readable kind, e.g. ``"bad_request"``,
            ``"method_not_implemented"``, ``"protocol_not_supported"``; the peer
            receives it as ``vgi_rpc.error_kind``.
        status: The HTTP status the HTTP transport answers with.
        bad_ipc: Whether the bytes were not an Arrow IPC stream at all (the error
            :meth:`bad_ipc_stream` makes). A byte-stream transport then cannot find
            where the next request starts, so the pipe hangs up after answering. Not
            on the wire: the peer sees ``error_kind`` ``"bad_request"``, as the
            reference server sends it.
    """

    bad_ipc = False

    def __init__(self, message: str, *, error_kind: str = "bad_request", status: int = 400) -> None:
        super().__init__(_bounded(message))
        self.error_kind = error_kind
        self.status = status

    @classmethod
    def bad_ipc_stream(cls, what: str, problem: object) -> ProtocolError:
        """The one error for bytes that are not an Arrow IPC stream: ``"<what> is not a valid Arrow IPC stream: <problem>"``.

        *what* names the stream (``"request"``, ``"response"``), *problem* is what
        pyarrow said about it. The error has :attr:`bad_ipc` set.
        """
        error = cls(f"{what} is not a valid Arrow IPC stream: {problem}")
        error.bad_ipc = True
        return error
