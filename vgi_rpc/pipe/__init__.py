"""The pipe transport: lock-step Arrow IPC streams over a pair of byte pipes.

* :func:`run_server` serves a worker's stdin/stdout; :func:`serve_streams` any
  pair of binary streams (``vgi_rpc.pipe.server``: the framing loop);
* :func:`connect` spawns such a worker and yields a typed proxy;
  :func:`serve_pipe` runs the server on a background thread in this process
  (``vgi_rpc.pipe.client``: the client side).
"""

from __future__ import annotations

from vgi_rpc.pipe.client import DEFAULT_TIMEOUT, connect, serve_pipe
from vgi_rpc.pipe.server import run_server, serve_streams
from vgi_rpc.wire import LogMessage

__all__ = ["DEFAULT_TIMEOUT", "LogMessage", "connect", "run_server", "serve_pipe", "serve_streams"]
