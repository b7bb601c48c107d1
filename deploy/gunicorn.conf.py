"""gunicorn configuration for workflow-manager (`workflow-manager serve` uses it).

uvicorn workers serve the Connexion (ASGI) app. The embedded default runs one worker process,
because the AWS emulator and the in-memory store live in that process; against real AWS (or any
endpoint) with a shared store, run as many as the machine allows (`WFM_WORKERS`).
"""

import os

_backend = os.environ.get("WFM_BACKEND", "embedded")
_embedded = _backend == "embedded" or os.environ.get("WFM_STORE", "memory") == "memory"

wsgi_app = "workflow_manager.app:create_app()"
worker_class = "uvicorn_worker.UvicornWorker"
bind = [
    f"{os.environ.get('WFM_HOST', '127.0.0.1' if _backend == 'embedded' else '0.0.0.0')}"
    f":{os.environ.get('WFM_PORT', '8080')}"
]
workers = 1 if _embedded else int(os.environ.get("WFM_WORKERS", "2"))
# Long enough for the background updater and workers to stop after SIGTERM.
graceful_timeout = 30
timeout = 60
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("WFM_LOG_LEVEL", "info")


def post_fork(server, worker):
    """The service's own loggers (updater, workers, emulator) log to stderr at WFM_LOG_LEVEL."""
    import logging

    logging.basicConfig(
        level=os.environ.get("WFM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
