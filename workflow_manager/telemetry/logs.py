"""The service's log lines: JSON objects, one per line (`WFM_LOG_FORMAT=json`, the default outside
embedded mode), or text for a person at a terminal (the default in embedded mode).

A JSON line has `time` (ISO 8601, UTC), `level`, `logger`, `message`, `workflow_id` (when the line is about a
workflow: `workflow_manager.logcontext`), and the exception's traceback as `exc_info`. Formatted by
python-json-logger: a logging.Formatter, so the handlers, levels and every existing log call stay
as they are.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

from workflow_manager.logcontext import WorkflowIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(message)s %(workflow_id)s"
JSON_RENAMES = {"levelname": "level", "name": "logger"}


class _TextWithWorkflow(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        workflow_id = getattr(record, "workflow_id", None)
        return f"{line} [workflow {workflow_id}]" if workflow_id else line


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, timestamp="time")
    return _TextWithWorkflow(TEXT_FORMAT)


def json_formatter() -> logging.Formatter:
    """For logging.config.dictConfig (`"()": ...`): gunicorn's own loggers, in deploy/gunicorn.conf.py."""
    return formatter("json")


def gunicorn_log_config(log_format: str) -> dict | None:
    """gunicorn's `logconfig_dict` for its own loggers (start-up, worker exits, the access log) in
    JSON lines; None for text (gunicorn's own format). Its loggers do not propagate, so that the
    root handler the workers configure does not write their lines a second time."""
    if log_format != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": ["json"]},
        "loggers": {
            name: {"level": "INFO", "handlers": ["json"], "propagate": False, "qualname": name}
            for name in ("gunicorn.error", "gunicorn.access")
        },
        "handlers": {"json": handler},
        "formatters": {"json": {"()": "workflow_manager.telemetry.logs.json_formatter"}},
    }


def log_handler(log_format: str, stream=None) -> logging.Handler:
    """A stream handler (stderr by default) in the format, with the workflow id filter."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(WorkflowIdFilter())
    return handler


def configure_logging(level: str, log_format: str) -> None:
    """The root logger writes to stderr at `level` in `log_format` (replacing what was there)."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format)], force=True)
