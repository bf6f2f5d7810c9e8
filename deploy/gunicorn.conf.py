# gunicorn settings for vgi_rpc behind nginx (make deploy-check uses exactly this file).
# Run: VGI_TOKEN_KEY=... gunicorn -c deploy/gunicorn.conf.py deploy.app:app
import os

bind = os.environ.get("VGI_BIND", "127.0.0.1:8001")  # loopback: only nginx talks to it
workers = int(os.environ.get("VGI_WORKERS", "2"))  # processes; every one shares VGI_TOKEN_KEY
worker_class = "gthread"  # threads in each worker: a slow call does not block the worker
threads = 4
preload_app = False  # each worker imports the app (and initialises Sentry) after the fork
keepalive = 2  # seconds an idle connection from nginx stays open
timeout = 30  # a worker silent this long is killed and replaced
graceful_timeout = 10
accesslog = None
errorlog = "-"
loglevel = "warning"


def worker_exit(server, worker):  # gunicorn calls it with the arbiter and the worker
    """In the worker as it exits cleanly: send what the Sentry SDK still holds.

    sentry-sdk 3 streams spans through a batcher thread; a graceful stop (SIGTERM,
    max_requests, a reload) flushes it here, so the worker's last spans reach its
    transport (deploy/app.py: its JSON-lines file) before the process is gone.
    A SIGKILLed worker keeps only what it had already written.
    """
    import sentry_sdk

    sentry_sdk.flush(timeout=5)
