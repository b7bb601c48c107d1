"""gunicorn configuration for workflow-manager (`workflow-manager serve` uses it).

uvicorn workers serve the Connexion (ASGI) app. Every setting comes from `Config` (the WFM_*
variables, read in one place): the bind address, the number of processes (one in embedded mode or on
the memory store, since their state lives in the process; `WFM_WORKERS` otherwise) and the log level.
"""

from workflow_manager.config import Config

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


def post_fork(server, worker):
    """The service's own loggers (updater, workers, emulator) log to stderr at WFM_LOG_LEVEL."""
    import logging

    logging.basicConfig(level=_config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
