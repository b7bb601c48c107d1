"""Running one activity task's command, as sfncli does: the task input in, the outcome out.

The command gets the task input object, re-serialised, three ways: as its last argument (sfncli's
contract), on its stdin, and in a private temporary file named by `WFM_TASK_INPUT_FILE` (removed
after the task). An input too long for one argument (Linux's MAX_ARG_STRLEN, 128 KiB, below Step
Functions' 256 KiB payloads) is not passed as an argument at all: the command is run with its own
arguments only and must read stdin or the file; passing it would fail the exec with E2BIG. It gets a
clean environment (`task_environment`): PATH, HOME and LANG from the worker's, the worker's
`extra_env` (a workers file's `env`, the `worker` command's `--env` and `--pass-env`), then
`_EXECUTION_NAME`, `WFM_TASK_INPUT_FILE` (and `WORK_DIR`, when a work directory is given). Never the worker's whole environment, as sfncli
passes it: that holds the worker's AWS credentials and the service's tokens. Its stdout and stderr
are kept in 32 KiB ring buffers and go, line by line, to the worker's own stdout and stderr (as
sfncli) or to the `executor.activity_worker.task_output` logger at DEBUG (`TaskOutput`). The last
stdout line is the output on exit 0, and the failure (a custom `{"error", "cause"}` line or one of
the `sfncli.*` names below, with the trimmed stderr as cause) otherwise, cut to the SendTaskFailure
limits.

Pitfalls: the environment dicts hold whatever the workers file gives the commands, secrets included;
they are never logged. The stdin is written from a thread and a command that never reads it (or
closes it early) is fine: the write is abandoned, never waited on.

Knows nothing of Step Functions: `ActivityWorker` (poller.py) takes the tasks and reports what
`run_task` answers, which never raises, since a token in hand must always be reported.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow_manager.domain.aws import (
    EXECUTION_NAME_KEY,
    MAX_TASK_CAUSE_LENGTH,
    MAX_TASK_ERROR_LENGTH,
)

log = logging.getLogger(__name__)
# The commands' output, when it is logged rather than teed (`TaskOutput.LOG`).
task_output_log = logging.getLogger("executor.activity_worker.task_output")

WORK_DIR_ENV = "WORK_DIR"
# The path of a private (0600) file holding the task input, removed after the task.
TASK_INPUT_FILE_ENV = "WFM_TASK_INPUT_FILE"
# Linux caps one argv element at MAX_ARG_STRLEN = 32 pages = 131,072 bytes, terminating NUL included
# (include/uapi/linux/binfmts.h); a longer one fails execve with E2BIG ("Argument list too long").
MAX_ARG_STRLEN = 32 * 4096
# What a command inherits from the worker's environment: enough to find programs, a home and a
# locale. Nothing else: the worker's environment holds its AWS credentials and the service's tokens
# (WFM_*), which a task command must not see unless the workers file or `--env` gives them.
INHERITED_ENVIRONMENT = ("PATH", "HOME", "LANG")

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
# A failure's log line quotes this much of its cause (the full cause, up to 32 KiB, is logged at DEBUG).
LOGGED_CAUSE_LENGTH = 200

# Grace between SIGTERM and SIGKILL when the worker is told to stop: 25 s, under ECS's 30 s docker
# stop grace.
SIGTERM_GRACE_SECONDS = 25.0
# How often the runner checks for cancellation while the command runs.
_WAIT_STEP_SECONDS = 0.05
# After the command exits, how long to wait for its pipes to drain: a background process it left
# behind can hold them open indefinitely.
_PIPE_DRAIN_SECONDS = 5.0
# One read of a command's stream; longer lines are teed in pieces.
_READ_CHUNK_BYTES = 65_536

_tee_lock = threading.Lock()


class TaskOutput(enum.Enum):
    """Where a command's stdout and stderr go, besides the ring buffers."""

    # To the worker's own stdout and stderr, as sfncli: the standalone `worker` command.
    STREAMS = "streams"
    # Each line to the `executor.activity_worker.task_output` logger at DEBUG: workers embedded in
    # the service, whose own stdout and stderr carry the service's log.
    LOG = "log"


def task_environment(
    extra_env: Mapping[str, str] | None,
    execution_name: str,
    work_dir: str | os.PathLike[str] | None = None,
    input_file: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """The environment of a task's command: INHERITED_ENVIRONMENT from this process's (those set),
    then `extra_env`, then the contract's `_EXECUTION_NAME` and, when given, `WORK_DIR` and
    `WFM_TASK_INPUT_FILE`."""
    env = {name: os.environ[name] for name in INHERITED_ENVIRONMENT if name in os.environ}
    env.update(extra_env or {})
    env[EXECUTION_NAME_KEY] = execution_name
    if work_dir is not None:
        env[WORK_DIR_ENV] = os.fspath(work_dir)
    if input_file is not None:
        env[TASK_INPUT_FILE_ENV] = os.fspath(input_file)
    return env


def fits_in_one_argument(text: str) -> bool:
    """Whether `text` can be one argv element: its UTF-8 bytes and a NUL within MAX_ARG_STRLEN."""
    return len(text.encode("utf-8")) + 1 <= MAX_ARG_STRLEN


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

    @property
    def short_cause(self) -> str:
        """The cause's last non-empty line (stderr's, mostly), cut to LOGGED_CAUSE_LENGTH: what a log
        line says of a failure."""
        stripped = (self.cause or "").strip()
        last = stripped.rsplit("\n", 1)[-1].strip()
        return truncate_utf8(last, LOGGED_CAUSE_LENGTH)

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
    """A task's cancellation: set it and the runner sends SIGTERM to the command's process group,
    then SIGKILL after `grace_seconds` (the runner's `sigterm_grace_seconds` when None). A plain
    `threading.Event` works too."""

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


def _tee(pipe: Any, stream_name: str, ring: _RingBuffer, output: TaskOutput, pid: int) -> None:
    try:
        while chunk := pipe.readline(_READ_CHUNK_BYTES):
            ring.write(chunk)
            if output is TaskOutput.LOG:
                line = chunk.decode("utf-8", errors="replace").rstrip("\r\n")
                task_output_log.debug("pid %d %s: %s", pid, stream_name, line)
                continue
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


def signal_name(number: int) -> str:
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
    cause = f"command ended by {signal_name(-returncode)}"
    return TaskOutcome.failure(ERROR_UNKNOWN, f"{cause}\n{stderr}" if stderr else cause, returncode)


def run_task(
    command: Sequence[str],
    task_input: str,
    *,
    extra_env: Mapping[str, str] | None = None,
    cancel_event: threading.Event | None = None,
    sigterm_grace_seconds: float = SIGTERM_GRACE_SECONDS,
    work_directory: str | os.PathLike[str] | None = None,
    output: TaskOutput = TaskOutput.STREAMS,
) -> TaskOutcome:
    """Run `command` for one activity task, as sfncli does, and say how it ended. Never raises.

    The command's environment is `task_environment(extra_env, ...)`; its output goes where `output`
    says besides the ring buffers.

    When `cancel_event` is set the command's process group gets SIGTERM, and SIGKILL
    `sigterm_grace_seconds` later (or the event's own `grace_seconds`, see `CancelEvent`); the
    outcome is then `sfncli.CommandTerminated` unless the command printed its own error.
    """
    try:
        return _run_task(
            list(command), task_input, extra_env, cancel_event, sigterm_grace_seconds, work_directory, output
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
    output: TaskOutput,
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

    work_dir = None
    input_file = None
    if work_directory is not None:
        Path(work_directory).mkdir(parents=True, exist_ok=True)
        work_dir = tempfile.mkdtemp(prefix="task-", dir=work_directory)
    try:
        command_input = _dump(parsed)
        # mkstemp: created 0600, readable by the command (same user) and no one else.
        descriptor, input_file = tempfile.mkstemp(prefix="task-input-", suffix=".json")
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(command_input)
        env = task_environment(extra_env, execution_name, work_dir, input_file)
        if fits_in_one_argument(command_input):
            argv = [*command, command_input]
        else:
            log.info(
                "task input of %d bytes is too long for one argument: on stdin and in %s only",
                len(command_input.encode("utf-8")),
                TASK_INPUT_FILE_ENV,
            )
            argv = list(command)
        return _run_process(
            argv, env, command_input, execution_name, cancel_event, sigterm_grace_seconds, output
        )
    finally:
        if input_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(input_file)
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)


def _write_stdin(pipe: Any, data: bytes) -> None:
    # A command may never read its stdin, or close it early: either is fine.
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError, ValueError):
            pipe.close()


def _run_process(
    argv: list[str],
    env: dict[str, str],
    command_input: str,
    execution_name: str,
    cancel_event: threading.Event | None,
    sigterm_grace_seconds: float,
    output: TaskOutput,
) -> TaskOutcome:
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
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
        threading.Thread(
            target=_tee, args=(process.stdout, "stdout", stdout, output, process.pid), daemon=True
        ),
        threading.Thread(
            target=_tee, args=(process.stderr, "stderr", stderr, output, process.pid), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    # Daemon and never joined: a command that neither reads its stdin nor exits must not block it.
    threading.Thread(
        target=_write_stdin, args=(process.stdin, command_input.encode("utf-8")), daemon=True
    ).start()

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
            log.info("task cancelled: SIGTERM to process group %d, SIGKILL in %.1f s", process.pid, grace)
            # To the whole group: a shell waits for its foreground child before running its trap,
            # so SIGTERM to the shell alone would let the child's work run on to the SIGKILL.
            _send_signal(process, signal.SIGTERM, group=True)
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
    task_output = _parse_object(last_line) if last_line else {}
    if task_output is None:
        return TaskOutcome.failure(
            ERROR_TASK_OUTPUT_NOT_JSON, f"stdout not valid JSON: '{last_line}'", returncode
        )
    task_output[EXECUTION_NAME_KEY] = execution_name
    return TaskOutcome.success(_dump(task_output), returncode)
