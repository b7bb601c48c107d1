"""The activity worker: sfncli's contract with real subprocesses (tests/fixtures/worker/), then end to
end through the embedded emulator (a real moto server) with boto3.

Asynchronous results are polled with a deadline; grace periods, heartbeat intervals and the
emulator's GetActivityTask wait are shortened through parameters to keep the file fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from executor.activity_worker.command import add_worker_arguments, task_command_environment
from executor.activity_worker.poller import (
    HEARTBEAT_LOSS_GRACE_SECONDS,
    HEARTBEAT_SECONDS,
    ActivityWorker,
    ensure_activity,
    polled_activity_name,
)
from executor.activity_worker.pool import load_worker_specs, start_workers_from_file
from executor.activity_worker.runner import (
    LOGGED_CAUSE_LENGTH,
    MAX_ARG_STRLEN,
    CancelEvent,
    TaskOutcome,
    TaskOutput,
    fits_in_one_argument,
    run_task,
    task_environment,
    truncate_utf8,
)
from tests.conftest import wait_for
from workflow_manager.domain.aws import MAX_TASK_CAUSE_LENGTH, MAX_TASK_ERROR_LENGTH

SCRIPTS = Path(__file__).parent / "fixtures" / "worker"
PROJECT_ROOT = Path(__file__).parent.parent
INPUT = json.dumps({"_EXECUTION_NAME": "wf-123", "key": "value"})
ROLE_ARN = "arn:aws:iam::123456789012:role/sfn"
TERMINAL = {"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"}
# What a worker's environment may hold and its commands must never see.
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "worker-secret-key",
    "AWS_SESSION_TOKEN": "worker-session-token",
    "WFM_AUTH_TOKENS_FILE": "/etc/wfm/tokens.yml",
    "DEPLOY_TOKEN": "ghp_workersowntoken",
}
# The emulator holds an empty GetActivityTask this long; a worker's stop waits for the poll in flight.
ACTIVITY_POLL_SECONDS = 0.5


def script(name: str) -> list[str]:
    return [str(SCRIPTS / name)]


class TaskInThread:
    """run_task in a thread, so that a test can cancel it while it runs."""

    def __init__(self, command: list[str], marker: Path, **kwargs: Any):
        self.cancel = CancelEvent()
        self.outcome: TaskOutcome | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(command,),
            kwargs={"extra_env": {"MARKER": str(marker)}, "cancel_event": self.cancel, **kwargs},
            daemon=True,
        )
        self._thread.start()

    def _run(self, command: list[str], **kwargs: Any) -> None:
        self.outcome = run_task(command, INPUT, **kwargs)

    def result(self, timeout: float = 10.0) -> TaskOutcome:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the task did not end within {timeout} s"
        assert self.outcome is not None
        return self.outcome


# --- The task runner: sfncli's contract -------------------------------------------------------------


def test_output_is_the_last_stdout_line_after_noise():
    outcome = run_task(script("stdout_parsing.sh"), INPUT)

    assert outcome.succeeded
    assert json.loads(outcome.output) == {"task": "output", "n": 2, "_EXECUTION_NAME": "wf-123"}


def test_empty_stdout_outputs_an_empty_object_with_the_execution_name():
    outcome = run_task(script("empty_stdout.sh"), INPUT)

    assert outcome.succeeded
    assert json.loads(outcome.output) == {"_EXECUTION_NAME": "wf-123"}


def test_input_is_the_last_argument_and_execution_name_is_in_the_environment():
    command = [*script("report_invocation.py"), "first", "--flag"]

    outcome = run_task(command, INPUT, extra_env={"EXTRA": "from-worker"})

    report = json.loads(outcome.output)
    assert report["argv"][:2] == ["first", "--flag"]
    assert json.loads(report["argv"][-1]) == json.loads(INPUT)
    assert len(report["argv"]) == 3
    assert report["execution_name_env"] == "wf-123"
    assert report["extra_env"] == "from-worker"
    assert report["work_dir"] is None


def test_work_directory_gives_a_fresh_work_dir_removed_afterwards(tmp_path: Path):
    outcome = run_task(script("report_invocation.py"), INPUT, work_directory=tmp_path)

    report = json.loads(outcome.output)
    assert report["work_dir_is_dir"] is True
    assert Path(report["work_dir"]).parent == tmp_path
    assert not Path(report["work_dir"]).exists()


def _input_of_size(size: int) -> dict[str, Any]:
    """A task input whose serialisation is about `size` bytes, with multi-byte characters."""
    return {"_EXECUTION_NAME": "wf-123", "blob": "é" * (size // 2)}


def _sha256_of_command_input(task_input: dict[str, Any]) -> str:
    # As the runner re-serialises it (sfncli's Go encoding/json: compact, sorted keys, UTF-8 kept).
    text = json.dumps(task_input, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_input_too_long_for_one_argument_reaches_the_command_on_stdin_and_in_a_private_file():
    task_input = _input_of_size(200 * 1024)
    assert not fits_in_one_argument(json.dumps(task_input, ensure_ascii=False))

    outcome = run_task([*script("report_input.py"), "first"], json.dumps(task_input))

    assert outcome.succeeded, outcome.cause
    report = json.loads(outcome.output)
    expected = _sha256_of_command_input(task_input)
    # Not passed as an argument (execve would refuse it): the command's own arguments only.
    assert report["argv_sha256"] == [hashlib.sha256(b"first").hexdigest()]
    assert report["stdin_sha256"] == report["file_sha256"] == expected
    assert report["file_mode"] == 0o600
    assert not Path(report["file_path"]).exists()


def test_input_that_fits_is_the_last_argument_and_also_on_stdin_and_in_the_file():
    task_input = _input_of_size(1024)

    outcome = run_task(script("report_input.py"), json.dumps(task_input))

    assert outcome.succeeded, outcome.cause
    report = json.loads(outcome.output)
    expected = _sha256_of_command_input(task_input)
    assert report["argv_sha256"] == [expected]
    assert report["stdin_sha256"] == report["file_sha256"] == expected


def test_command_that_never_reads_a_large_stdin_is_not_blocked_by_it():
    # 200 KiB is more than a pipe holds: the runner's write blocks until the command exits.
    outcome = run_task(script("stdout_parsing.sh"), json.dumps(_input_of_size(200 * 1024)))

    assert outcome.succeeded, outcome.cause


def test_one_argument_limit_is_linux_max_arg_strlen_with_its_nul():
    assert MAX_ARG_STRLEN == 131_072
    assert fits_in_one_argument("x" * (MAX_ARG_STRLEN - 1))
    assert not fits_in_one_argument("x" * MAX_ARG_STRLEN)
    assert not fits_in_one_argument("é" * (MAX_ARG_STRLEN // 2))  # two bytes each


@pytest.fixture
def worker_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets in this process's environment, beside HOME and a UTF-8 LANG (see
    print_environment.py)."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", "/home/worker")
    monkeypatch.setenv("LANG", "C.UTF-8")


def test_task_environment_is_path_home_lang_then_the_extra_env_then_the_contract_variables(
    worker_secrets: None, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("LANG")  # not set, not passed

    env = task_environment({"EXTRA": "x", "HOME": "/home/task", "_EXECUTION_NAME": "ignored"}, "wf-1", "/w")

    assert env == {
        "PATH": os.environ["PATH"],
        "HOME": "/home/task",
        "EXTRA": "x",
        "_EXECUTION_NAME": "wf-1",
        "WORK_DIR": "/w",
    }


def test_command_sees_a_clean_environment_without_the_workers_secrets(worker_secrets: None, tmp_path: Path):
    # sys.executable: a `python3` found on PATH may be a wrapper (pyenv's) that sets variables of its own.
    command = [sys.executable, *script("print_environment.py")]

    outcome = run_task(command, INPUT, extra_env={"EXTRA": "from-worker"}, work_directory=tmp_path)

    assert outcome.succeeded, outcome.cause
    seen = json.loads(outcome.output)["environment"]
    assert set(seen) == {
        "PATH",
        "HOME",
        "LANG",
        "_EXECUTION_NAME",
        "EXTRA",
        "WORK_DIR",
        "WFM_TASK_INPUT_FILE",
    }
    assert {name: seen[name] for name in ("PATH", "HOME", "LANG", "_EXECUTION_NAME", "EXTRA")} == {
        "PATH": os.environ["PATH"],
        "HOME": "/home/worker",
        "LANG": "C.UTF-8",
        "_EXECUTION_NAME": "wf-123",
        "EXTRA": "from-worker",
    }
    assert Path(seen["WORK_DIR"]).parent == tmp_path
    assert not any(secret in outcome.output for secret in SECRETS.values())


def test_command_output_is_logged_at_debug_instead_of_teed_when_asked(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
):
    caplog.set_level(logging.DEBUG, logger="executor.activity_worker.task_output")

    outcome = run_task(script("stdout_parsing.sh"), INPUT, output=TaskOutput.LOG)

    assert outcome.succeeded
    logged = [r for r in caplog.records if r.name == "executor.activity_worker.task_output"]
    assert {r.levelno for r in logged} == {logging.DEBUG}
    messages = [r.getMessage().split(" ", 2)[2] for r in logged]  # without "pid N "
    assert "stdout: starting up" in messages
    assert "stderr: a warning" in messages
    assert capsys.readouterr() == ("", "")

    run_task(script("stdout_parsing.sh"), INPUT)  # the default tees, as sfncli

    teed = capsys.readouterr()
    assert "starting up" in teed.out
    assert "a warning" in teed.err


def test_output_is_found_after_more_stdout_than_the_ring_buffer_holds():
    noise = "x" * 1000
    program = f"for _ in range(100): print({noise!r})\nprint('{{\"big\": true}}')"

    outcome = run_task([sys.executable, "-c", program], INPUT)

    assert json.loads(outcome.output) == {"big": True, "_EXECUTION_NAME": "wf-123"}


def test_nonzero_exit_reports_command_exited_nonzero_with_trimmed_stderr_as_cause():
    outcome = run_task(script("exit_nonzero.sh"), INPUT)

    assert (outcome.error, outcome.cause) == (
        "sfncli.CommandExitedNonzero",
        "disk full: cannot write /data/out",
    )
    assert outcome.returncode == 3


def test_nonzero_exit_with_error_json_on_the_last_line_reports_that_error():
    outcome = run_task(script("custom_error.sh"), INPUT)

    assert (outcome.error, outcome.cause) == ("MyError", "why")


def test_output_that_is_not_a_json_object_fails_with_task_output_not_json():
    outcome = run_task(script("output_not_json.sh"), INPUT)

    assert outcome.error == "sfncli.TaskOutputNotJSON"
    assert outcome.cause == "stdout not valid JSON: 'done, but not JSON'"


@pytest.mark.parametrize("task_input", ["not json", "[1, 2]", '"a string"'])
def test_input_that_is_not_a_json_object_fails_without_running_the_command(task_input: str, tmp_path: Path):
    marker = tmp_path / "ran"

    outcome = run_task(["touch", str(marker)], task_input)

    assert outcome.error == "sfncli.TaskInputNotJSON"
    assert task_input in outcome.cause
    assert not marker.exists()


@pytest.mark.parametrize("task_input", ['{"key": "value"}', '{"_EXECUTION_NAME": 7}'])
def test_input_without_a_string_execution_name_fails(task_input: str):
    outcome = run_task(["true"], task_input)

    assert outcome.error == "sfncli.TaskInputMissingExecutionName"


def test_missing_executable_fails_with_command_not_found():
    outcome = run_task(["/nonexistent/task-command", "arg"], INPUT)

    assert outcome.error == "sfncli.CommandNotFound"
    assert outcome.cause == "command not found: '/nonexistent/task-command'"
    assert outcome.returncode is None


def test_command_killed_by_sigkill_reports_command_killed():
    outcome = run_task(script("killed.sh"), INPUT)

    assert (outcome.error, outcome.cause) == ("sfncli.CommandKilled", "about to be killed")


def test_cancel_forwards_sigterm_to_the_command_and_reports_command_terminated(tmp_path: Path):
    marker = tmp_path / "marker"
    task = TaskInThread(script("trap_sigterm.sh"), marker, sigterm_grace_seconds=5.0)
    wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start")

    task.cancel.set()

    outcome = task.result()
    assert (outcome.error, outcome.cause) == ("sfncli.CommandTerminated", "stopping on SIGTERM")
    assert marker.read_text() == "got SIGTERM\n"
    assert outcome.returncode == 143


def test_error_json_printed_on_sigterm_is_reported_instead_of_command_terminated(tmp_path: Path):
    marker = tmp_path / "marker"
    task = TaskInThread(script("trap_sigterm_custom_error.sh"), marker, sigterm_grace_seconds=5.0)
    wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start")

    task.cancel.set()

    assert (task.result().error, task.result().cause) == ("GracefulStop", "cleaned up")


def test_command_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path):
    marker = tmp_path / "marker"
    task = TaskInThread(script("ignore_sigterm.sh"), marker, sigterm_grace_seconds=60.0)
    wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start")

    # The event's own grace (as the heartbeat's 5 s) overrides the runner's 60 s.
    task.cancel.cancel(grace_seconds=0.3)

    outcome = task.result(timeout=10.0)
    assert outcome.error == "sfncli.CommandTerminated"
    assert outcome.returncode == -signal.SIGKILL
    assert "ignored SIGTERM" in marker.read_text()


def _live_processes_in_group(pgid: int) -> list[int]:
    """The processes of group `pgid` still alive (zombies waiting for a reaper excluded)."""
    alive = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat_file.parent.name))
    return alive


def test_cancel_sends_sigterm_to_the_process_group_so_a_shell_stops_before_its_work_is_done(tmp_path: Path):
    marker = tmp_path / "marker"
    # A long grace: only SIGTERM to the group, not the SIGKILL, can stop the shell's foreground sleep.
    task = TaskInThread(script("work_then_marker.sh"), marker, sigterm_grace_seconds=60.0)
    wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start")
    pgid = int(Path(f"{marker}.started").read_text())

    task.cancel.set()

    outcome = task.result(timeout=5.0)  # the work would take 10 s
    assert outcome.error == "sfncli.CommandTerminated"
    assert outcome.returncode == 143
    assert Path(f"{marker}.sigterm").read_text() == "got SIGTERM\n"
    assert _live_processes_in_group(pgid) == []
    assert not marker.exists()


def test_long_error_name_is_truncated_without_splitting_a_character():
    outcome = run_task(script("long_error.py"), INPUT)

    assert outcome.error.endswith("[truncated]")
    assert outcome.error.startswith("é" * 100)
    assert len(outcome.error.encode()) <= MAX_TASK_ERROR_LENGTH
    assert "\ufffd" not in outcome.error
    assert outcome.cause == "short cause"


def test_long_cause_is_truncated_to_the_send_task_failure_limit():
    task_input = "€" * 20_000  # 60,000 bytes, not JSON: the cause quotes it

    outcome = run_task(["true"], task_input)

    assert outcome.error == "sfncli.TaskInputNotJSON"
    assert outcome.cause.startswith("task input not valid JSON: '€€€")
    assert outcome.cause.endswith("€[truncated]")
    assert len(outcome.cause.encode()) <= MAX_TASK_CAUSE_LENGTH
    assert "\ufffd" not in outcome.cause


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 256, "short"),
        ("a" * 20, 20, "a" * 20),
        ("a" * 21, 20, "a" * 9 + "[truncated]"),
        ("€" * 10, 20, "€" * 3 + "[truncated]"),  # 9 bytes of room: three 3-byte characters
        ("a" + "€" * 7, 21, "a€€€[truncated]"),  # 10 bytes of room: the fourth € would be cut
    ],
)
def test_truncate_utf8_cuts_between_characters(text: str, limit: int, expected: str):
    assert truncate_utf8(text, limit) == expected


# --- Names, the command line and the workers file ----------------------------------------------------


def test_activity_name_prefixes_the_namespace():
    assert polled_activity_name("echo", "dev") == "dev--echo"
    assert polled_activity_name("echo", None) == "echo"
    with pytest.raises(ValueError, match="1 to 80 characters"):
        polled_activity_name("a" * 80, "dev")


def test_worker_arguments_take_the_command_after_double_dash():
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)

    args = parser.parse_args(
        ["--activity", "echo", "--namespace", "dev", "--concurrency", "3", "--", "cmd", "--flag", "-x"]
    )

    assert (args.activity, args.namespace, args.concurrency) == ("echo", "dev", 3)
    assert args.worker_name is None
    assert args.task_command == ["--", "cmd", "--flag", "-x"]


def test_worker_arguments_take_env_assignments_and_names_to_pass():
    parser = argparse.ArgumentParser()
    add_worker_arguments(parser)

    args = parser.parse_args(
        ["--activity", "echo", "--env", "LEVEL=3", "--env", "URL=http://h/?a=b", "--pass-env", "AWS_REGION"]
        + ["--pass-env", "UNSET", "--env", "EMPTY=", "--", "cmd", "--env", "NOT=MINE"]
    )

    assert args.env == [("LEVEL", "3"), ("URL", "http://h/?a=b"), ("EMPTY", "")]
    assert args.pass_env == ["AWS_REGION", "UNSET"]
    assert args.task_command == ["--", "cmd", "--env", "NOT=MINE"]
    worker_environment = {"AWS_REGION": "eu-west-1", "LEVEL": "from-worker", "SECRET": "s"}
    assert task_command_environment(args.env, args.pass_env, worker_environment) == {
        "AWS_REGION": "eu-west-1",
        "LEVEL": "3",
        "URL": "http://h/?a=b",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--env", "LEVEL"], "argument --env: expected NAME=VALUE, got 'LEVEL'"),
        (["--env", "=3"], "argument --env: expected NAME=VALUE with a non-empty NAME"),
        (["--pass-env", "A=B"], "argument --pass-env: expected a variable NAME, got 'A=B'"),
    ],
)
def test_malformed_env_argument_exits_2_with_a_message(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
):
    parser = argparse.ArgumentParser(prog="workflow-manager worker")
    add_worker_arguments(parser)

    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--activity", "echo", *arguments, "--", "cmd"])

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_workers_file_resolves_paths_against_its_directory(tmp_path: Path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "echo.py").write_text("")
    (tmp_path / "workers.yml").write_text(
        "workers:\n"
        "  echo:\n"
        "    command: [python3, tasks/echo.py, validate, --out=x/y]\n"
        "    concurrency: 2\n"
        "  local:\n"
        "    command: ./run.sh --now\n"
        "    env: {LEVEL: 3}\n"
    )

    specs = load_worker_specs(tmp_path / "workers.yml")

    assert [(spec.activity, spec.command, spec.concurrency, spec.env) for spec in specs] == [
        ("echo", ["python3", str(tmp_path / "tasks" / "echo.py"), "validate", "--out=x/y"], 2, {}),
        ("local", [str(tmp_path / "run.sh"), "--now"], 1, {"LEVEL": "3"}),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("workers:\n  echo: {command: []}\n", "workers.echo: command must be a non-empty list"),
        ("workers:\n  echo: {command: [x], concurrency: 0}\n", "concurrency must be a positive integer"),
        ("workers:\n  echo: {command: [x], retries: 2}\n", r"unknown keys \['retries'\]"),
        ("- echo\n", "expected a mapping"),
    ],
)
def test_malformed_workers_file_is_rejected_naming_the_entry(tmp_path: Path, content: str, message: str):
    path = tmp_path / "workers.yml"
    path.write_text(content)

    with pytest.raises(ValueError, match=message):
        load_worker_specs(path)


@pytest.mark.parametrize("path", ["data/workers.yml", "tests/fixtures/workers.yml"])
def test_shipped_workers_files_name_existing_scripts(path: str):
    specs = load_worker_specs(PROJECT_ROOT / path)

    assert specs
    for spec in specs:
        scripts = [Path(argument) for argument in spec.command if argument.endswith(".py")]
        assert scripts and all(script.is_file() for script in scripts), spec


# --- End to end: Step Functions (the embedded emulator) and the worker -------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    emulator_module = pytest.importorskip("workflow_manager.emulator.server")
    from workflow_manager.emulator import moto_compat

    running = emulator_module.start_embedded_emulator()
    moto_compat.apply_moto_compat(activity_poll_seconds=ACTIVITY_POLL_SECONDS)
    yield running
    running.stop()
    moto_compat.apply_moto_compat()  # back to the default wait, for other modules


@pytest.fixture(scope="module")
def sfn(emulator: Any) -> Any:
    from workflow_manager.emulator.server import emulator_client_kwargs

    return boto3.client("stepfunctions", **emulator_client_kwargs(emulator.endpoint_url))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _activity_machine(sfn: Any, activity_arn: str, **task_fields: Any) -> str:
    definition = {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": activity_arn, "End": True, **task_fields}},
    }
    created = sfn.create_state_machine(
        name=_unique("worker-test"), definition=json.dumps(definition), roleArn=ROLE_ARN
    )
    return created["stateMachineArn"]


def _start(sfn: Any, machine_arn: str, **task_input: Any) -> str:
    name = _unique("wf")
    execution_input = json.dumps({"_EXECUTION_NAME": name, **task_input})
    return sfn.start_execution(stateMachineArn=machine_arn, name=name, input=execution_input)["executionArn"]


def _finished(sfn: Any, execution_arn: str, timeout: float = 15.0) -> dict:
    def probe() -> dict | None:
        described = sfn.describe_execution(executionArn=execution_arn)
        return described if described["status"] in TERMINAL else None

    return wait_for(probe, what=f"{execution_arn} to finish", timeout=timeout)


def _events(sfn: Any, execution_arn: str, event_type: str) -> list[dict]:
    events = sfn.get_execution_history(executionArn=execution_arn)["events"]
    return [event for event in events if event["type"] == event_type]


class RunningWorker:
    """An ActivityWorker running in a thread for the length of a `with` block."""

    def __init__(self, sfn: Any, activity: str, command: list[str], **kwargs: Any):
        kwargs.setdefault("poll_interval", 0.05)
        kwargs.setdefault("worker_name", "test-worker")
        self.worker = ActivityWorker(sfn, activity, command, **kwargs)
        self.stop_event = threading.Event()

    def __enter__(self) -> ActivityWorker:
        self.thread = self.worker.start(self.stop_event)
        wait_for(self.worker.ready.is_set, what="the worker to poll")
        return self.worker

    def __exit__(self, *exc_info: Any) -> None:
        self.stop_event.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the worker did not stop"


def test_execution_succeeds_with_the_command_output(sfn: Any):
    activity_arn = ensure_activity(sfn, _unique("echo"))
    machine_arn = _activity_machine(sfn, activity_arn)
    execution_arn = _start(sfn, machine_arn, greeting="hi")

    with RunningWorker(sfn, activity_arn, script("stdout_parsing.sh")):
        described = _finished(sfn, execution_arn)

    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {
        "task": "output",
        "n": 2,
        "_EXECUTION_NAME": execution_arn.rsplit(":", 1)[1],
    }
    assert _events(sfn, execution_arn, "ActivityStarted")[0]["activityStartedEventDetails"]["workerName"] == (
        "test-worker"
    )


def test_execution_with_an_input_too_long_for_one_argument_succeeds(sfn: Any):
    activity_arn = ensure_activity(sfn, _unique("large"))
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn), blob="é" * (100 * 1024))

    with RunningWorker(sfn, activity_arn, script("report_input.py")):
        described = _finished(sfn, execution_arn)

    assert described["status"] == "SUCCEEDED", described
    report = json.loads(described["output"])
    assert report["argv_sha256"] == []
    task_input = {"_EXECUTION_NAME": execution_arn.rsplit(":", 1)[1], "blob": "é" * (100 * 1024)}
    assert report["stdin_sha256"] == report["file_sha256"] == _sha256_of_command_input(task_input)


def test_worker_given_an_activity_name_creates_the_activity(sfn: Any):
    name = _unique("created-by-worker")

    with RunningWorker(sfn, name, script("empty_stdout.sh")) as running:
        arn = running.activity_arn

    assert arn.endswith(f":activity:{name}")
    assert sfn.describe_activity(activityArn=arn)["name"] == name


def test_failing_command_fails_the_execution_with_its_error_name(sfn: Any):
    activity_arn = ensure_activity(sfn, _unique("fail"))
    machine_arn = _activity_machine(sfn, activity_arn)
    execution_arn = _start(sfn, machine_arn)

    with RunningWorker(sfn, activity_arn, script("exit_nonzero.sh")):
        described = _finished(sfn, execution_arn)

    assert described["status"] == "FAILED"
    failed = _events(sfn, execution_arn, "ActivityFailed")[0]["activityFailedEventDetails"]
    assert (failed["error"], failed["cause"]) == (
        "sfncli.CommandExitedNonzero",
        "disk full: cannot write /data/out",
    )


def test_concurrency_two_runs_two_tasks_at_once(sfn: Any, tmp_path: Path):
    activity_arn = ensure_activity(sfn, _unique("overlap"))
    machine_arn = _activity_machine(sfn, activity_arn)
    executions = [_start(sfn, machine_arn, id=task_id) for task_id in ("a", "b")]
    release = tmp_path / "release"
    env = {"INTERVALS_DIR": str(tmp_path), "RELEASE_FILE": str(release)}

    with RunningWorker(sfn, activity_arn, script("record_interval.py"), concurrency=2, extra_env=env):
        # Each task holds until released: both started means both ran at once.
        wait_for(lambda: all((tmp_path / f"{t}.started").exists() for t in "ab"), what="both tasks to start")
        release.touch()
        statuses = [_finished(sfn, arn)["status"] for arn in executions]

    assert statuses == ["SUCCEEDED", "SUCCEEDED"]
    a, b = (json.loads((tmp_path / f"{t}.json").read_text()) for t in "ab")
    assert max(a["started"], b["started"]) < min(a["ended"], b["ended"])


def test_heartbeat_finding_the_task_gone_sends_sigterm_to_the_command(sfn: Any, tmp_path: Path):
    activity_arn = ensure_activity(sfn, _unique("gone"))
    machine_arn = _activity_machine(sfn, activity_arn)
    execution_arn = _start(sfn, machine_arn)
    marker = tmp_path / "marker"

    with RunningWorker(
        sfn,
        activity_arn,
        script("trap_sigterm.sh"),
        heartbeat_seconds=0.1,
        heartbeat_loss_grace_seconds=5.0,
        extra_env={"MARKER": str(marker)},
    ) as running:
        wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start")
        sfn.stop_execution(executionArn=execution_arn, error="Stopped", cause="by the test")
        wait_for(marker.exists, what="the command to get SIGTERM")
        wait_for(lambda: running.running_tasks == 0, what="the task to end")

    assert marker.read_text() == "got SIGTERM\n"
    assert _finished(sfn, execution_arn)["status"] == "ABORTED"


def test_stopped_execution_stops_its_command_within_a_heartbeat_and_the_grace(sfn: Any, tmp_path: Path):
    activity_arn = ensure_activity(sfn, _unique("stopped"))
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn))
    marker = tmp_path / "marker"

    # The default heartbeat interval and grace: what a deployed worker does.
    with RunningWorker(
        sfn, activity_arn, script("work_then_marker.sh"), extra_env={"MARKER": str(marker)}
    ) as running:
        wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start")
        pgid = int(Path(f"{marker}.started").read_text())
        stopped_at = time.monotonic()
        sfn.stop_execution(executionArn=execution_arn, error="Stopped", cause="by the test")
        bound = HEARTBEAT_SECONDS + HEARTBEAT_LOSS_GRACE_SECONDS
        wait_for(lambda: running.running_tasks == 0, what="the task to end", timeout=bound + 2)
        took = time.monotonic() - stopped_at

    # The command's 10 s of work never finished: it is gone, group and all, and left no marker.
    assert took < HEARTBEAT_SECONDS + 1.0  # SIGTERM to the group stopped it; no SIGKILL was needed
    assert Path(f"{marker}.sigterm").read_text() == "got SIGTERM\n"
    assert _live_processes_in_group(pgid) == []
    assert not marker.exists()
    assert _finished(sfn, execution_arn)["status"] == "ABORTED"


def test_timed_out_state_stops_its_command(sfn: Any, tmp_path: Path):
    activity_arn = ensure_activity(sfn, _unique("timeout"))
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn, TimeoutSeconds=1))
    marker = tmp_path / "marker"

    with RunningWorker(
        sfn,
        activity_arn,
        script("work_then_marker.sh"),
        heartbeat_seconds=0.2,
        extra_env={"MARKER": str(marker)},
    ) as running:
        wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start")
        described = _finished(sfn, execution_arn)
        wait_for(lambda: running.running_tasks == 0, what="the task to end", timeout=5.0)

    assert described["status"] == "FAILED"
    assert described.get("error") == "States.Timeout"
    assert Path(f"{marker}.sigterm").read_text() == "got SIGTERM\n"
    assert not marker.exists()


def test_state_with_a_short_heartbeat_seconds_succeeds_when_the_worker_beats_often_enough(sfn: Any):
    activity_arn = ensure_activity(sfn, _unique("beats"))
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn, HeartbeatSeconds=3))
    program = "import time; time.sleep(8); print('{\"slept\": 8}')"

    with RunningWorker(sfn, activity_arn, [sys.executable, "-c", program], heartbeat_seconds=1.0):
        described = _finished(sfn, execution_arn, timeout=20.0)

    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["slept"] == 8


def test_state_whose_heartbeat_seconds_is_under_the_workers_interval_times_out(sfn: Any):
    # The worker cannot see HeartbeatSeconds: its interval must be set below it (README).
    activity_arn = ensure_activity(sfn, _unique("too-slow"))
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn, HeartbeatSeconds=1))
    program = "import time; time.sleep(4)"

    with RunningWorker(sfn, activity_arn, [sys.executable, "-c", program], heartbeat_seconds=3.0):
        described = _finished(sfn, execution_arn, timeout=20.0)

    assert described["status"] == "FAILED"
    # AWS names it States.HeartbeatTimeout; moto (the emulator) says States.Timeout.
    assert described.get("error") in {"States.HeartbeatTimeout", "States.Timeout"}


def test_workers_file_starts_namespaced_workers_that_stop_cleanly(sfn: Any, tmp_path: Path):
    namespace = _unique("ns")
    (tmp_path / "workers.yml").write_text(
        f"workers:\n  echo:\n    command: [{SCRIPTS / 'report_invocation.py'}, hello]\n    concurrency: 2\n"
    )
    activity_arn = ensure_activity(sfn, f"{namespace}--echo")
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn))

    pool = start_workers_from_file(
        sfn, tmp_path / "workers.yml", namespace, threading.Event(), poll_interval=0.05
    )
    try:
        described = _finished(sfn, execution_arn)
    finally:
        stopped = pool.stop(timeout=10)

    assert stopped
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["argv"][0] == "hello"
    assert [w.activity_arn for w in pool.workers] == [activity_arn]
    # Inside the service, the commands' output goes to its log, not raw into its streams.
    assert [w.output for w in pool.workers] == [TaskOutput.LOG]


def test_failed_task_is_logged_at_warning_in_one_short_line(sfn: Any, caplog: pytest.LogCaptureFixture):
    activity_arn = ensure_activity(sfn, _unique("noisy"))
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn))
    reason = "cannot reach the registry: " + "r" * 300
    program = f"import sys; sys.stderr.write('noise\\n' * 5000 + {reason!r} + '\\n'); sys.exit(1)"
    caplog.set_level(logging.DEBUG, logger="executor.activity_worker")

    with RunningWorker(sfn, activity_arn, [sys.executable, "-c", program]):
        assert _finished(sfn, execution_arn)["status"] == "FAILED"
        wait_for(lambda: _failure_records(caplog, logging.DEBUG), what="the failure to be logged")

    [warning] = _failure_records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        f"task failed: sfncli.CommandExitedNonzero: {truncate_utf8(reason, LOGGED_CAUSE_LENGTH)}"
    )
    assert "\n" not in warning.getMessage()
    assert _failure_records(caplog, logging.INFO) == []
    [debug] = _failure_records(caplog, logging.DEBUG)
    assert "noise\nnoise" in debug.getMessage()
    # The stderr is in no record at INFO or above.
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "noise\nnoise" in r.getMessage()]


def _failure_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.getMessage().startswith("task failed")]


def test_worker_command_forwards_sigterm_and_the_task_fails_command_terminated(
    emulator: Any, sfn: Any, tmp_path: Path
):
    namespace, activity = _unique("cli"), "trap"
    activity_arn = ensure_activity(sfn, f"{namespace}--{activity}")
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn))
    marker = tmp_path / "marker"
    env = {
        **os.environ,
        "WFM_BACKEND": "endpoint",
        "WFM_AWS_ENDPOINT": emulator.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "MARKER": str(marker),
    }
    command = [sys.executable, "-m", "workflow_manager.cli", "worker", "--activity", activity]
    command += ["--namespace", namespace, "--poll-interval", "0.05", "--pass-env", "MARKER"]
    command += ["--", *script("trap_sigterm.sh")]
    process = subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: Path(f"{marker}.started").exists(), what="the command to start", timeout=20)
        process.send_signal(signal.SIGTERM)
        described = _finished(sfn, execution_arn)
        returncode = process.wait(timeout=10)
    finally:
        process.kill()
        process.wait()

    assert marker.read_text() == "got SIGTERM\n"
    assert described["status"] == "FAILED"
    failed = _events(sfn, execution_arn, "ActivityFailed")[0]["activityFailedEventDetails"]
    assert (failed["error"], failed["cause"]) == ("sfncli.CommandTerminated", "stopping on SIGTERM")
    assert returncode == 0
