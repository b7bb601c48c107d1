"""The workflow a thread of work is about, for the logs (CONTRACT 9.7: the workflow id where there
is one). The workflow service sets it around each use case on one workflow (`working_on`), so every
line logged beneath it, by the executors and the store too, carries the id without each log call
naming it. A contextvar: each request's thread and the updater's own thread see only their own.

Stdlib only, at the bottom of the layers, so that the services and the ports may import it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

CURRENT_WORKFLOW_ID: ContextVar[str | None] = ContextVar("workflow_manager_workflow_id", default=None)


@contextlib.contextmanager
def working_on(workflow_id: str | None) -> Iterator[None]:
    token = CURRENT_WORKFLOW_ID.set(workflow_id)
    try:
        yield
    finally:
        CURRENT_WORKFLOW_ID.reset(token)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def about_workflow(method: _Method) -> _Method:
    """Runs a method `working_on` the workflow of its first argument: a workflow id (a str), or a
    workflow (anything with an `id`)."""

    @functools.wraps(method)
    def wrapper(self, subject, *args, **kwargs):
        workflow_id = subject if isinstance(subject, str) else getattr(subject, "id", None)
        with working_on(workflow_id):
            return method(self, subject, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class WorkflowIdFilter(logging.Filter):
    """Gives every record a `workflow_id` attribute: the one passed with `extra=`, else the
    current one (None outside work on a workflow)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "workflow_id", None) is None:
            record.workflow_id = CURRENT_WORKFLOW_ID.get()
        return True
