"""The multi-worker deployment check (``make deploy-check``): app, gunicorn and nginx configs."""
