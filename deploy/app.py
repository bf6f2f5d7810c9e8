"""The app ``make deploy-check`` runs under gunicorn: ``gunicorn -c deploy/gunicorn.conf.py deploy.app:app``.

Every worker imports this module after the fork (no ``preload_app``), so each one
initialises Sentry for itself: the real SDK, default integrations on, every
transaction sampled, and vgi_rpc's in-memory transport, which here also appends each
envelope as one JSON line to ``$VGI_SENTRY_DIR/sentry-<pid>.jsonl`` (flushed at
once, so a killed worker's envelopes survive it). On sentry-sdk 3 spans reach the
transport from the SDK's span batcher thread (a segment right after it ends, in
envelopes that may hold several requests' spans); ``worker_exit`` in
``deploy/gunicorn.conf.py`` flushes what is left when a worker exits cleanly.
Read the files with ``vgi_rpc.testing.SentryCapture.from_envelopes``. All workers
share ``$VGI_TOKEN_KEY``, so any of them serves any turn of any stream.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import sentry_sdk

from deploy.service import Fleet, FleetImpl, out_dir
from vgi_rpc import RpcServer
from vgi_rpc.http import make_wsgi_app
from vgi_rpc.sentry import SentryConfig
from vgi_rpc.testing import DEFAULT_DSN, InMemoryTransport, envelope_to_dict


class FileTransport(InMemoryTransport):
    """vgi_rpc's in-memory transport, also writing each envelope as a JSON line to *path*."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = path.open("a", encoding="utf-8")
        self._file_lock = threading.Lock()

    def capture_envelope(self, envelope: Any) -> None:
        """Record the envelope and append it to the file (flushed before returning)."""
        super().capture_envelope(envelope)
        line = json.dumps(envelope_to_dict(envelope), default=str)
        with self._file_lock:
            self._file.write(line + "\n")
            self._file.flush()


def _build() -> Any:
    sentry_sdk.init(
        dsn=DEFAULT_DSN,
        transport=FileTransport(out_dir() / f"sentry-{os.getpid()}.jsonl"),
        traces_sample_rate=1.0,
    )
    server = RpcServer(Fleet, FleetImpl())
    return make_wsgi_app(
        server,
        token_key=os.environ["VGI_TOKEN_KEY"],
        sentry_config=SentryConfig(enable_performance=True, record_params=True),
    )


app = _build()
