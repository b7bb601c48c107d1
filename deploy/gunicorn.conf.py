"""gunicorn configuration for workflow-manager (`workflow-manager serve` uses it).

uvicorn workers serve the Connexion (ASGI) app. Every setting comes from `Config` (the WFM_*
variables, read in one place): the bind address, the number of processes (one in embedded mode or on
the memory store, since their state lives in the process; `WFM_WORKERS` otherwise), the log level
and format.

Metrics over all worker processes (CONTRACT 9.7): before any worker starts, PROMETHEUS_MULTIPROC_DIR
is set to a fresh directory (or the one given, emptied), where each worker's prometheus-client
writes its values and `GET /metrics` sums them; a worker that exits is marked dead, so that its
live-only values drop out (its counters stay in the sums). The hooks, not the module's top level, do
this: the module is read by tools and tests that must not get the variable set.
"""

import os

from workflow_manager.config import Config
from workflow_manager.telemetry.logs import gunicorn_log_config

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_config = Config.from_env()

wsgi_app = "workflow_manager.app:create_app()"
worker_class = "uvicorn_worker.UvicornWorker"
bind = [f"{_config.bind_host}:{_config.port}"]
workers = _config.serving_processes
# Long enough for the background updater and workers to stop after SIGTERM.
graceful_timeout = 30
timeout = 60
accesslog = "-"
errorlog = "-"
loglevel = _config.log_level.lower()
# gunicorn's own lines (and the access log) as JSON too when the service's are (WFM_LOG_FORMAT).
logconfig_dict = gunicorn_log_config(_config.logs_format) or {}


def on_starting(server):
    """In the master, before the workers fork (they inherit the variable) and load the app
    (prometheus-client reads the variable at its import)."""
    import tempfile
    from pathlib import Path

    given = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if given:
        # Files of an earlier run would be summed into this one's.
        Path(given).mkdir(parents=True, exist_ok=True)
        for old in Path(given).glob("*.db"):
            old.unlink()
    else:
        os.environ[MULTIPROC_DIR_VARIABLE] = tempfile.mkdtemp(prefix="workflow-manager-metrics-")
        server.wfm_created_metrics_dir = os.environ[MULTIPROC_DIR_VARIABLE]


def on_exit(server):
    created = getattr(server, "wfm_created_metrics_dir", None)
    if created:
        import shutil

        shutil.rmtree(created, ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    """The service's own loggers (updater, workers, emulator) log to stderr at WFM_LOG_LEVEL, as
    JSON lines or text (WFM_LOG_FORMAT)."""
    from workflow_manager.telemetry.logs import configure_logging

    configure_logging(_config.log_level, _config.logs_format)
