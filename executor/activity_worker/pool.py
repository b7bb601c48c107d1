"""Embedded mode (`make run`): one `ActivityWorker` per entry of a workers file, in threads of the
service, stopped together when it shuts down. The commands' stdout and stderr are logged (logger
`executor.activity_worker.task_output`, DEBUG) rather than mixed raw into the service's own streams.

The workers file (`data/workers.yml`):

    # Activity name -> the command that runs each task. In namespace `dev`, activity `echo` is the
    # Step Functions activity `dev--echo` (a Task's `Resource: "echo"`).
    workers:
      echo:
        command: ["python3", "tasks/echo.py"]       # list of strings; a string is split shell-style
        concurrency: 2                              # optional, default 1: tasks run at once
        work_directory: /tmp/wfm-work               # optional: WORK_DIR parent, as sfncli's flag
        env: {LOG_LEVEL: debug}                     # optional: the command's environment variables

A command gets a clean environment, not the service's (which holds its AWS credentials and tokens):
PATH, HOME and LANG from the service, the entry's `env`, then `_EXECUTION_NAME` (and `WORK_DIR`).
Whatever else a command needs, its entry's `env` gives it.

Relative paths are resolved against the YAML file's directory, so `data/` can ship its scripts:
the command's first element when it contains a `/` (`./run.sh`), and any later argument that
contains a `/` and names an existing file or directory there (`tasks/hello.py`). A bare name
(`python3`) is looked up on PATH; other arguments (`validate`, `--flag`) are passed as they are. The
rule is `executor.local_commands.resolve_command`, which the emulator's job definitions follow too.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from executor.activity_worker.poller import ActivityWorker, polled_activity_name
from executor.activity_worker.runner import TaskOutput
from executor.local_commands import resolve_command

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """One entry of the workers file."""

    activity: str
    command: list[str]
    concurrency: int = 1
    work_directory: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def load_worker_specs(path: str | os.PathLike[str]) -> list[WorkerSpec]:
    """The entries of a workers file (format in the module docstring), commands resolved.
    Raises ValueError, naming the file and entry, on a malformed file."""
    path = Path(path)
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict) or not isinstance(document.get("workers") or {}, dict):
        raise ValueError(f"{path}: expected a mapping `workers: {{activity: {{command: [...]}}}}`")
    specs = []
    for activity, entry in (document.get("workers") or {}).items():
        where = f"{path}: workers.{activity}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with `command`, got {entry!r}")
        unknown = set(entry) - {"command", "concurrency", "work_directory", "env"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        command = entry.get("command")
        if isinstance(command, str):
            command = shlex.split(command)
        if not command or not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise ValueError(f"{where}: command must be a non-empty list of strings, got {command!r}")
        concurrency = entry.get("concurrency", 1)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"{where}: concurrency must be a positive integer, got {concurrency!r}")
        env = entry.get("env") or {}
        if not isinstance(env, dict):
            raise ValueError(f"{where}: env must be a mapping, got {env!r}")
        work_directory = entry.get("work_directory")
        specs.append(
            WorkerSpec(
                activity=str(activity),
                command=resolve_command(command, path.parent),
                concurrency=concurrency,
                work_directory=str(work_directory) if work_directory else None,
                env={str(k): str(v) for k, v in env.items()},
            )
        )
    return specs


class WorkerPool:
    """Activity workers running in threads, stopped together."""

    def __init__(self, stop_event: threading.Event):
        self._stop_event = stop_event
        self.workers: list[ActivityWorker] = []
        self._threads: list[threading.Thread] = []

    def add(self, worker: ActivityWorker) -> None:
        self.workers.append(worker)
        self._threads.append(worker.start(self._stop_event))

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop polling and wait up to `timeout` seconds for running tasks; past half of it, their
        commands get SIGTERM (and SIGKILL a quarter of it later). True when every worker stopped."""
        self._stop_event.set()
        deadline = time.monotonic() + timeout
        self._join_until(time.monotonic() + timeout / 2)
        if any(thread.is_alive() for thread in self._threads):
            for worker in self.workers:
                worker.terminate(grace_seconds=timeout / 4)
            self._join_until(deadline)
        stopped = not any(thread.is_alive() for thread in self._threads)
        if not stopped:
            log.warning("workers still running after %.1f s", timeout)
        return stopped

    def _join_until(self, deadline: float) -> None:
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def start_workers_from_file(
    sfn_client: Any,
    path: str | os.PathLike[str],
    namespace: str | None,
    stop_event: threading.Event,
    **worker_options: Any,
) -> WorkerPool:
    """Start one ActivityWorker per entry of the workers file at `path`, on activity
    `polled_activity_name(name, namespace)`. `worker_options` go to every ActivityWorker
    (poll_interval, ...); their commands' output is logged unless `output` says otherwise."""
    worker_options.setdefault("output", TaskOutput.LOG)
    specs = load_worker_specs(path)
    pool = WorkerPool(stop_event)
    for spec in specs:
        worker = ActivityWorker(
            sfn_client,
            polled_activity_name(spec.activity, namespace),
            spec.command,
            concurrency=spec.concurrency,
            work_directory=spec.work_directory,
            extra_env=spec.env,
            **worker_options,
        )
        pool.add(worker)
    log.info("started %d activity workers from %s", len(specs), path)
    return pool
