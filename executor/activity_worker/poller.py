"""The activity worker: polls a Step Functions activity and runs a local command for each task.

It follows the contract of Clever's sfncli (the reference's worker), so existing task commands keep
working unchanged:

- The task input must be a JSON object with a string `_EXECUTION_NAME`. The object, re-serialised,
  is the command's LAST argument; the environment is the worker's plus `_EXECUTION_NAME` (and
  `WORK_DIR`, a fresh temporary directory removed afterwards, when a work directory is configured).
- stdout and stderr go to the worker's own stdout and stderr and into ring buffers of 32 KiB. On exit
  0 the last non-empty line of stdout is the output: a JSON object (empty stdout means `{}`), to
  which `_EXECUTION_NAME` is added back.
- On a nonzero exit, a last stdout line `{"error": "Name", "cause": "..."}` names the failure (also
  after SIGTERM); otherwise the failure is one of the `sfncli.*` names below with the trimmed stderr
  as cause. Error and cause are truncated to the SendTaskFailure limits.
- One SendTaskHeartbeat at once, then every 20 s. When Step Functions says the task is gone
  (TaskDoesNotExist, TaskTimedOut, InvalidToken) the command gets SIGTERM, then SIGKILL after 5 s:
  another worker is likely to be starting the same work. When the worker gets SIGTERM it forwards it
  and sends SIGKILL after 25 s, slightly under the default 30 s `docker stop` grace of ECS.

Where this differs from sfncli, on purpose: `concurrency` pollers per process (sfncli runs one task
per process; AWS recommends many open polls per activity); each command runs in its own session so
that SIGKILL takes its whole process group (SIGTERM, as in sfncli, goes to the command alone, so a
shell's trap runs). Not ported: activity tags from `_DEPLOY_ENV` and friends, ECS metadata in the
worker name, the `ActivityActivePercent` CloudWatch metric.

The embedded mode (`make run`) starts one worker per entry of a YAML file (`data/workers.yml`):

    # Activity name -> the command that runs each task. In namespace `dev`, activity `echo` is the
    # Step Functions activity `dev--echo` (a Task's `Resource: "echo"`).
    workers:
      echo:
        command: ["python3", "tasks/echo.py"]       # list of strings; a string is split shell-style
        concurrency: 2                              # optional, default 1: tasks run at once
        work_directory: /tmp/wfm-work               # optional: WORK_DIR parent, as sfncli's flag
        env: {LOG_LEVEL: debug}                     # optional: extra environment variables

Relative paths are resolved against the YAML file's directory, so `data/` can ship its scripts: the
command's first element when it contains a `/` (`./run.sh`), and any later argument that contains a
`/` and names an existing file or directory there (`tasks/hello.py`). A bare name (`python3`) is
looked up on PATH; other arguments (`validate`, `--flag`) are passed as they are.

Pitfall: GetActivityTask is a long poll (up to 60 s in AWS), so the client's read timeout must be
longer than that (AWS suggests at least 65 s); a stop waits for the poll in flight to return.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import BotoCoreError, ClientError

from workflow_manager.domain.aws import (
    EXECUTION_NAME_KEY,
    MAX_NAME_LENGTH,
    MAX_TASK_CAUSE_LENGTH,
    MAX_TASK_ERROR_LENGTH,
    NAME_SEPARATOR,
)

log = logging.getLogger(__name__)

WORK_DIR_ENV = "WORK_DIR"

# sfncli's error names (cmd/sfncli/error_names.go); task commands and Catch clauses match on them.
ERROR_TASK_INPUT_NOT_JSON = "sfncli.TaskInputNotJSON"
ERROR_TASK_INPUT_MISSING_EXECUTION_NAME = "sfncli.TaskInputMissingExecutionName"
ERROR_COMMAND_NOT_FOUND = "sfncli.CommandNotFound"
ERROR_COMMAND_KILLED = "sfncli.CommandKilled"
ERROR_COMMAND_EXITED_NONZERO = "sfncli.CommandExitedNonzero"
ERROR_TASK_OUTPUT_NOT_JSON = "sfncli.TaskOutputNotJSON"
ERROR_COMMAND_TERMINATED = "sfncli.CommandTerminated"
ERROR_UNKNOWN = "sfncli.Unknown"

# sfncli keeps the last 32,768 bytes of each stream: the output and the failure cause come from them.
OUTPUT_BUFFER_BYTES = 32_768
TRUNCATED_SUFFIX = "[truncated]"

# Grace between SIGTERM and SIGKILL: 25 s when the worker is told to stop (under ECS's 30 s docker
# stop grace), 5 s when a heartbeat says the task is gone (another worker may be starting it).
SIGTERM_GRACE_SECONDS = 25.0
HEARTBEAT_LOSS_GRACE_SECONDS = 5.0
HEARTBEAT_SECONDS = 20.0
# Heartbeat errors that mean the task is no longer ours.
TASK_GONE_ERROR_CODES = frozenset({"TaskDoesNotExist", "TaskTimedOut", "InvalidToken"})
# After a poll error the poller waits, doubling from the configured backoff up to this cap.
MAX_POLL_ERROR_BACKOFF_SECONDS = 30.0
# How often the runner checks for cancellation while the command runs.
_WAIT_STEP_SECONDS = 0.05
# After the command exits, how long to wait for its pipes to drain: a background process it left
# behind can hold them open indefinitely.
_PIPE_DRAIN_SECONDS = 5.0
# One read of a command's stream; longer lines are teed in pieces.
_READ_CHUNK_BYTES = 65_536

_tee_lock = threading.Lock()


# --- The task runner --------------------------------------------------------------------------------


def truncate_utf8(text: str, max_length: int) -> str:
    """`text` cut to at most `max_length` UTF-8 bytes (so also characters), never inside a
    character, ending with `[truncated]` when it was cut."""
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_length:
        return text
    kept = encoded[: max(0, max_length - len(TRUNCATED_SUFFIX))]
    return kept.decode("utf-8", errors="ignore") + TRUNCATED_SUFFIX


@dataclass(frozen=True)
class TaskOutcome:
    """What a task came to: `output` (JSON object text) on success, else `error` and `cause`,
    already truncated to the SendTaskFailure limits. `returncode` is the command's, as Popen reports
    it (negative: killed by that signal), or None when the command never ran."""

    output: str | None = None
    error: str | None = None
    cause: str | None = None
    returncode: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    @classmethod
    def success(cls, output: str, returncode: int | None = 0) -> TaskOutcome:
        return cls(output=output, returncode=returncode)

    @classmethod
    def failure(cls, error: str, cause: str, returncode: int | None = None) -> TaskOutcome:
        return cls(
            error=truncate_utf8(error, MAX_TASK_ERROR_LENGTH),
            cause=truncate_utf8(cause, MAX_TASK_CAUSE_LENGTH),
            returncode=returncode,
        )


class CancelEvent(threading.Event):
    """A task's cancellation: set it and the runner sends SIGTERM to the command, then SIGKILL after
    `grace_seconds` (the runner's `sigterm_grace_seconds` when None). A plain `threading.Event`
    works too."""

    def __init__(self) -> None:
        super().__init__()
        self.grace_seconds: float | None = None
        self._signals: list[int] = []
        self._signals_lock = threading.Lock()

    def cancel(self, grace_seconds: float | None = None) -> None:
        if not self.is_set():
            self.grace_seconds = grace_seconds
        self.set()

    def forward_signal(self, signum: int) -> None:
        """Have the runner pass `signum` on to the command, without cancelling it."""
        with self._signals_lock:
            self._signals.append(signum)

    def take_signals(self) -> list[int]:
        with self._signals_lock:
            signals, self._signals = self._signals, []
        return signals


class _RingBuffer:
    """The last `capacity` bytes written, as sfncli's circbuf."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._data = bytearray()
        self._wrapped = False
        self._lock = threading.Lock()

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._data += chunk
            if len(self._data) > self._capacity:
                del self._data[: len(self._data) - self._capacity]
                self._wrapped = True

    def text(self) -> str:
        with self._lock:
            data = bytes(self._data)
            if self._wrapped:
                # The cut may have split a character: drop its continuation bytes (10xxxxxx).
                start = 0
                while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
                    start += 1
                data = data[start:]
            return data.decode("utf-8", errors="replace")


def _tee_target(name: str) -> Any:
    # Looked up at each write, so whoever replaced sys.stdout (pytest's capture) gets the output.
    return getattr(sys, name)


def _tee(pipe: Any, stream_name: str, ring: _RingBuffer) -> None:
    try:
        while chunk := pipe.readline(_READ_CHUNK_BYTES):
            ring.write(chunk)
            stream = _tee_target(stream_name)
            with _tee_lock, contextlib.suppress(OSError, ValueError):
                binary = getattr(stream, "buffer", None)
                if binary is not None:
                    stream.flush()
                    binary.write(chunk)
                    binary.flush()
                else:
                    stream.write(chunk.decode("utf-8", errors="replace"))
                    stream.flush()
    except (OSError, ValueError):
        pass  # the pipe was closed under us: nothing more to read
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def _last_line(stdout: str) -> str:
    stripped = stdout.strip()
    return stripped.rsplit("\n", 1)[-1].strip() if stripped else ""


def _parse_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _dump(value: Any) -> str:
    # sfncli marshals with Go's encoding/json: compact, keys sorted, UTF-8 kept as is.
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _send_signal(process: subprocess.Popen[bytes], signum: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)


def _failure_after_exit(returncode: int, stdout: str, stderr: str, cancelled: bool) -> TaskOutcome:
    custom = _parse_object(_last_line(stdout))
    if custom is not None and isinstance(custom.get("error"), str) and custom["error"]:
        cause = custom.get("cause")
        if cause is None:
            cause = stderr
        elif not isinstance(cause, str):
            cause = _dump(cause)
        return TaskOutcome.failure(custom["error"], cause, returncode)
    if cancelled:
        return TaskOutcome.failure(ERROR_COMMAND_TERMINATED, stderr, returncode)
    if returncode > 0:
        return TaskOutcome.failure(ERROR_COMMAND_EXITED_NONZERO, stderr, returncode)
    if returncode == -signal.SIGKILL:
        return TaskOutcome.failure(ERROR_COMMAND_KILLED, stderr, returncode)
    cause = f"command ended by {_signal_name(-returncode)}"
    return TaskOutcome.failure(ERROR_UNKNOWN, f"{cause}\n{stderr}" if stderr else cause, returncode)


def run_task(
    command: Sequence[str],
    task_input: str,
    *,
    extra_env: Mapping[str, str] | None = None,
    cancel_event: threading.Event | None = None,
    sigterm_grace_seconds: float = SIGTERM_GRACE_SECONDS,
    work_directory: str | os.PathLike[str] | None = None,
) -> TaskOutcome:
    """Run `command` for one activity task, as sfncli does, and say how it ended. Never raises.

    When `cancel_event` is set the command gets SIGTERM, and SIGKILL (its whole process group)
    `sigterm_grace_seconds` later (or the event's own `grace_seconds`, see `CancelEvent`); the
    outcome is then `sfncli.CommandTerminated` unless the command printed its own error.
    """
    try:
        return _run_task(
            list(command), task_input, extra_env, cancel_event, sigterm_grace_seconds, work_directory
        )
    except Exception as err:  # the worker must always report something for the token it holds
        log.exception("task runner failed")
        return TaskOutcome.failure(ERROR_UNKNOWN, f"{type(err).__name__}: {err}")


def _run_task(
    command: list[str],
    task_input: str,
    extra_env: Mapping[str, str] | None,
    cancel_event: threading.Event | None,
    sigterm_grace_seconds: float,
    work_directory: str | os.PathLike[str] | None,
) -> TaskOutcome:
    if not command:
        return TaskOutcome.failure(ERROR_COMMAND_NOT_FOUND, "command not found: ''")
    parsed = _parse_object(task_input)
    if parsed is None:
        return TaskOutcome.failure(ERROR_TASK_INPUT_NOT_JSON, f"task input not valid JSON: '{task_input}'")
    execution_name = parsed.get(EXECUTION_NAME_KEY)
    if not isinstance(execution_name, str):
        return TaskOutcome.failure(
            ERROR_TASK_INPUT_MISSING_EXECUTION_NAME,
            f"task input missing string {EXECUTION_NAME_KEY}: '{task_input}'",
        )

    env = dict(os.environ)
    env.update(extra_env or {})
    env[EXECUTION_NAME_KEY] = execution_name
    work_dir = None
    if work_directory is not None:
        Path(work_directory).mkdir(parents=True, exist_ok=True)
        work_dir = tempfile.mkdtemp(prefix="task-", dir=work_directory)
        env[WORK_DIR_ENV] = work_dir
    try:
        argv = [*command, _dump(parsed)]
        return _run_process(argv, env, execution_name, cancel_event, sigterm_grace_seconds)
    finally:
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)


def _run_process(
    argv: list[str],
    env: dict[str, str],
    execution_name: str,
    cancel_event: threading.Event | None,
    sigterm_grace_seconds: float,
) -> TaskOutcome:
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # so that SIGKILL can take the command's whole process group
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return TaskOutcome.failure(ERROR_COMMAND_NOT_FOUND, f"command not found: '{argv[0]}'")
    log.info("task started: %s (pid %d) for execution %s", argv[0], process.pid, execution_name)

    stdout, stderr = _RingBuffer(OUTPUT_BUFFER_BYTES), _RingBuffer(OUTPUT_BUFFER_BYTES)
    readers = [
        threading.Thread(target=_tee, args=(process.stdout, "stdout", stdout), daemon=True),
        threading.Thread(target=_tee, args=(process.stderr, "stderr", stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()

    cancelled = False
    kill_at: float | None = None
    while True:
        try:
            returncode = process.wait(timeout=_WAIT_STEP_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        for signum in getattr(cancel_event, "take_signals", list)():
            _send_signal(process, signum)
        if not cancelled and cancel_event is not None and cancel_event.is_set():
            cancelled = True
            grace = getattr(cancel_event, "grace_seconds", None)
            grace = sigterm_grace_seconds if grace is None else grace
            log.info("task cancelled: SIGTERM to pid %d, SIGKILL in %.1f s", process.pid, grace)
            _send_signal(process, signal.SIGTERM)
            kill_at = time.monotonic() + grace
        if kill_at is not None and time.monotonic() >= kill_at:
            log.warning("task did not stop within its grace period: SIGKILL to pid %d", process.pid)
            _send_signal(process, signal.SIGKILL, group=True)
            kill_at = None
    if cancelled:
        # Whatever the command started goes with it; otherwise its pipes might never close.
        _send_signal(process, signal.SIGKILL, group=True)

    drain_deadline = time.monotonic() + _PIPE_DRAIN_SECONDS
    for reader in readers:
        reader.join(timeout=max(0.0, drain_deadline - time.monotonic()))
    stdout_text = stdout.text()
    stderr_text = stderr.text().strip()
    log.info("task ended: pid %d, return code %d", process.pid, returncode)

    if returncode != 0:
        return _failure_after_exit(returncode, stdout_text, stderr_text, cancelled)
    last_line = _last_line(stdout_text)
    output = _parse_object(last_line) if last_line else {}
    if output is None:
        return TaskOutcome.failure(
            ERROR_TASK_OUTPUT_NOT_JSON, f"stdout not valid JSON: '{last_line}'", returncode
        )
    output[EXECUTION_NAME_KEY] = execution_name
    return TaskOutcome.success(_dump(output), returncode)


# --- Step Functions: the activity and its pollers ---------------------------------------------------


def _error_code(err: Exception) -> str:
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def activity_name(activity: str, namespace: str | None = None) -> str:
    """The Step Functions activity name for `activity` in `namespace`: `{namespace}--{activity}`,
    or `activity` itself without a namespace."""
    name = f"{namespace}{NAME_SEPARATOR}{activity}" if namespace else activity
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"activity name must be 1 to {MAX_NAME_LENGTH} characters: {name!r} has {len(name)}")
    return name


def default_worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[-MAX_NAME_LENGTH:]


def ensure_activity(sfn_client: Any, name: str) -> str:
    """The ARN of activity `name`, created when missing. CreateActivity is idempotent in AWS;
    moto answers ActivityAlreadyExists instead, and then the ARN is looked up."""
    try:
        return sfn_client.create_activity(name=name)["activityArn"]
    except ClientError as err:
        if _error_code(err) != "ActivityAlreadyExists":
            raise
    for page in sfn_client.get_paginator("list_activities").paginate():
        for activity in page.get("activities", []):
            if activity["name"] == name:
                return activity["activityArn"]
    raise RuntimeError(f"activity {name!r} already exists but ListActivities does not show it")


def _name_of_activity(activity: str) -> str:
    # arn:aws:states:us-east-1:123456789012:activity:NAME
    return activity.split(":activity:", 1)[1] if activity.startswith("arn:") else activity


class ActivityWorker:
    """Polls one activity and runs `command` for each task, up to `concurrency` at once.

    `activity_arn` may also be a bare activity name: `run` creates the activity when missing either
    way and polls the ARN CreateActivity answers. Each of the `concurrency` pollers polls at most once
    per `poll_interval` and runs one task at a time.
    """

    def __init__(
        self,
        sfn_client: Any,
        activity_arn: str,
        command: Sequence[str],
        *,
        worker_name: str | None = None,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        sigterm_grace_seconds: float = SIGTERM_GRACE_SECONDS,
        heartbeat_loss_grace_seconds: float = HEARTBEAT_LOSS_GRACE_SECONDS,
        poll_error_backoff_seconds: float = 1.0,
        work_directory: str | os.PathLike[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if not command:
            raise ValueError("command must not be empty")
        self._client = sfn_client
        self.activity_arn = activity_arn
        self.command = list(command)
        self.worker_name = (worker_name or default_worker_name())[:MAX_NAME_LENGTH]
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.heartbeat_seconds = heartbeat_seconds
        self.sigterm_grace_seconds = sigterm_grace_seconds
        self.heartbeat_loss_grace_seconds = heartbeat_loss_grace_seconds
        self.poll_error_backoff_seconds = poll_error_backoff_seconds
        self.work_directory = work_directory
        self.extra_env = dict(extra_env or {})
        # Set once the activity exists and polling begins.
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, CancelEvent] = {}
        self._terminating = False

    # -- lifecycle

    def run(self, stop_event: threading.Event) -> None:
        """Poll until `stop_event` is set, then return once the tasks in hand have finished."""
        if not self._ensure_activity(stop_event):
            return
        self.ready.set()
        log.info(
            "worker %s polling %s (concurrency %d): %s",
            self.worker_name,
            self.activity_arn,
            self.concurrency,
            shlex.join(self.command),
        )
        pollers = [
            threading.Thread(
                target=self._poll_loop,
                args=(stop_event,),
                name=f"poller-{_name_of_activity(self.activity_arn)}-{index}",
                daemon=True,
            )
            for index in range(self.concurrency)
        ]
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()
        log.info("worker %s stopped", self.worker_name)

    def start(self, stop_event: threading.Event) -> threading.Thread:
        """`run` in a daemon thread, started."""
        thread = threading.Thread(
            target=self.run,
            args=(stop_event,),
            name=f"worker-{_name_of_activity(self.activity_arn)}",
            daemon=True,
        )
        thread.start()
        return thread

    def terminate(self, grace_seconds: float | None = None) -> None:
        """As sfncli on SIGTERM: SIGTERM to every running command, SIGKILL after the grace period
        (`sigterm_grace_seconds` by default); tasks taken from now on are terminated at once.
        Their failures (`sfncli.CommandTerminated`) are still reported. Does not stop polling."""
        with self._lock:
            self._terminating = True
            running = list(self._running.values())
        grace = self.sigterm_grace_seconds if grace_seconds is None else grace_seconds
        for cancel in running:
            cancel.cancel(grace)

    def forward_signal(self, signum: int) -> None:
        """Send `signum` to every running command (sfncli forwards every signal it gets)."""
        with self._lock:
            running = list(self._running.values())
        for cancel in running:
            cancel.forward_signal(signum)

    @property
    def running_tasks(self) -> int:
        with self._lock:
            return len(self._running)

    # -- internals

    def _ensure_activity(self, stop_event: threading.Event) -> bool:
        name = _name_of_activity(self.activity_arn)
        backoff = self.poll_error_backoff_seconds
        while not stop_event.is_set():
            try:
                self.activity_arn = ensure_activity(self._client, name)
                return True
            except (ClientError, BotoCoreError, RuntimeError) as err:
                if self.activity_arn.startswith("arn:"):
                    # Perhaps no CreateActivity permission: the ARN may still be pollable.
                    log.warning("CreateActivity %s failed, polling anyway: %s", name, err)
                    return True
                log.error("CreateActivity %s failed, retrying in %.1f s: %s", name, backoff, err)
            stop_event.wait(backoff)
            backoff = min(backoff * 2, MAX_POLL_ERROR_BACKOFF_SECONDS)
        return False

    def _poll_loop(self, stop_event: threading.Event) -> None:
        backoff = self.poll_error_backoff_seconds
        next_poll = 0.0
        while not stop_event.is_set():
            # At most one poll per poll_interval (sfncli's rate.NewLimiter(rate.Every(1s), 1)).
            if stop_event.wait(max(0.0, next_poll - time.monotonic())):
                break
            next_poll = time.monotonic() + self.poll_interval
            try:
                response = self._client.get_activity_task(
                    activityArn=self.activity_arn, workerName=self.worker_name
                )
            except (ClientError, BotoCoreError) as err:
                log.error(
                    "GetActivityTask %s failed, retrying in %.1f s: %s", self.activity_arn, backoff, err
                )
                stop_event.wait(backoff)
                backoff = min(backoff * 2, MAX_POLL_ERROR_BACKOFF_SECONDS)
                continue
            backoff = self.poll_error_backoff_seconds
            token = response.get("taskToken")
            if not token:  # the poll timed out with no work
                continue
            # A token in hand is always worked and reported, even when stopping: dropping it would
            # leave its execution waiting until the state times out.
            self._work(token, response.get("input") or "")

    def _work(self, token: str, task_input: str) -> None:
        cancel = CancelEvent()
        with self._lock:
            self._running[token] = cancel
            if self._terminating:
                cancel.cancel(self.sigterm_grace_seconds)
        done = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat_loop, args=(token, cancel, done), name="heartbeat", daemon=True
        )
        heartbeat.start()
        try:
            outcome = run_task(
                self.command,
                task_input,
                extra_env=self.extra_env,
                cancel_event=cancel,
                sigterm_grace_seconds=self.sigterm_grace_seconds,
                work_directory=self.work_directory,
            )
        finally:
            done.set()
            with self._lock:
                self._running.pop(token, None)
        heartbeat.join()
        self._report(token, outcome)

    def _heartbeat_loop(self, token: str, cancel: CancelEvent, done: threading.Event) -> None:
        while True:
            try:
                self._client.send_task_heartbeat(taskToken=token)
            except (ClientError, BotoCoreError) as err:
                if _error_code(err) in TASK_GONE_ERROR_CODES:
                    log.warning("heartbeat: task is gone (%s), cancelling its command", _error_code(err))
                    cancel.cancel(self.heartbeat_loss_grace_seconds)
                    return
                log.error("heartbeat failed: %s", err)
            if done.wait(self.heartbeat_seconds):
                return

    def _report(self, token: str, outcome: TaskOutcome) -> None:
        try:
            if outcome.succeeded:
                self._client.send_task_success(taskToken=token, output=outcome.output)
            else:
                log.info("task failed: %s: %s", outcome.error, outcome.cause)
                self._client.send_task_failure(taskToken=token, error=outcome.error, cause=outcome.cause)
        except (ClientError, BotoCoreError) as err:
            verb = "SendTaskSuccess" if outcome.succeeded else "SendTaskFailure"
            log.error("%s failed: %s", verb, err)


# --- The `worker` command -----------------------------------------------------------------------------


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `workflow-manager worker --activity NAME [...] -- COMMAND [ARGS...]`."""
    parser.add_argument("--activity", required=True, help="activity name (the Task's Resource)")
    parser.add_argument(
        "--namespace",
        default=None,
        help="namespace: the activity polled is NAMESPACE--ACTIVITY (none: ACTIVITY as given)",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="tasks run at once (default 1, as sfncli)")
    parser.add_argument(
        "--worker-name", default=None, help="name reported to Step Functions (default HOST-PID)"
    )
    parser.add_argument(
        "--work-directory",
        default=None,
        help="give each task a fresh WORK_DIR under this directory, removed afterwards",
    )
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds between polls of one poller (default 1)"
    )
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=HEARTBEAT_SECONDS,
        help=f"seconds between task heartbeats (default {HEARTBEAT_SECONDS:g})",
    )
    parser.add_argument(
        "task_command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="the command to run for each task; the task input is appended as its last argument",
    )


def run_worker_command(args: argparse.Namespace, sfn_client: Any) -> int:
    """Run a worker until SIGINT or SIGTERM; the exit status.

    SIGINT stops polling and lets running tasks finish (and is forwarded to them, as sfncli forwards
    every signal); SIGTERM also forwards SIGTERM to them and sends SIGKILL 25 s later.
    """
    command = list(args.task_command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("worker: a command is required: worker --activity NAME -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if args.concurrency < 1:
        print(f"worker: --concurrency must be at least 1, not {args.concurrency}", file=sys.stderr)
        return 2
    try:
        name = activity_name(args.activity, args.namespace)
    except ValueError as err:
        print(f"worker: {err}", file=sys.stderr)
        return 2
    worker = ActivityWorker(
        sfn_client,
        name,
        command,
        worker_name=args.worker_name,
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        heartbeat_seconds=args.heartbeat_seconds,
        work_directory=args.work_directory,
    )
    stop_event = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("worker got %s: stopping after the running tasks", _signal_name(signum))
        stop_event.set()
        if signum == signal.SIGTERM:
            worker.terminate()
        else:
            worker.forward_signal(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    try:
        thread = worker.start(stop_event)
        # Joined in steps: the main thread must stay free to run the signal handler.
        while thread.is_alive():
            thread.join(timeout=0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


# --- Embedded mode: workers from a YAML file -----------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """One entry of the workers file."""

    activity: str
    command: list[str]
    concurrency: int = 1
    work_directory: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def _resolve_command(command: list[str], base: Path) -> list[str]:
    resolved = list(command)
    first = resolved[0]
    if "/" in first and not os.path.isabs(first):
        resolved[0] = str((base / first).resolve())
    for index in range(1, len(resolved)):
        argument = resolved[index]
        if "/" in argument and not os.path.isabs(argument) and (base / argument).exists():
            resolved[index] = str((base / argument).resolve())
    return resolved


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
                command=_resolve_command(command, path.parent),
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
    `{namespace}--{name}`. `worker_options` go to every ActivityWorker (poll_interval, ...)."""
    specs = load_worker_specs(path)
    pool = WorkerPool(stop_event)
    for spec in specs:
        worker = ActivityWorker(
            sfn_client,
            activity_name(spec.activity, namespace),
            spec.command,
            concurrency=spec.concurrency,
            work_directory=spec.work_directory,
            extra_env=spec.env,
            **worker_options,
        )
        pool.add(worker)
    log.info("started %d activity workers from %s", len(specs), path)
    return pool
