"""The embedded emulator's AWS Batch: jobs that really run, as local subprocesses instead of Docker
containers, and the compute environment, queue and job definitions the service's examples use.

moto's Batch runs each job's container with Docker; without Docker (`batch.use_docker = False`)
every job is SUCCEEDED at submit and `dependsOn` is ignored (reference/emulators.md).
`install_batch_runner()` keeps moto's Batch backend and replaces only the container run
(`moto.batch.models.Job.run`): a job goes SUBMITTED -> PENDING, waits for its dependencies (polled),
-> RUNNABLE -> STARTING -> RUNNING, runs the job definition's `command` (with the submission's
overrides and parameters) as a subprocess, and ends SUCCEEDED on exit code 0, FAILED otherwise.
The subprocess gets a clean environment, as a container would: PATH, HOME and LANG from the
service (INHERITED_ENVIRONMENT), the container environment (job definition, then SubmitJob
overrides), the variables Batch sets (`AWS_BATCH_JOB_ID`, `AWS_BATCH_JOB_ATTEMPT`,
`AWS_BATCH_JQ_NAME`) and the emulator's endpoint, region and dummy credentials, so
`workflow-manager publish-output` inside a job reaches the emulator's DynamoDB. Nothing else of the
service's environment (its AWS credentials, its WFM_* settings and tokens, PYTHONPATH). It runs in a
fresh temporary directory, with the service's Python environment first on PATH (so `python3` and
`workflow-manager` are the service's, importing its code as installed in that environment). Its
output is logged at DEBUG, line by line, and stored as the attempt's log stream; its environment is
never logged.

Also fixed, so that the emulator answers like AWS:
- Batch semantics moto leaves out: `retryStrategy.attempts` (from SubmitJob, else the job
  definition) re-runs a failed attempt; `timeout.attemptDurationSeconds` stops an attempt; a failed
  dependency fails its dependents without starting them (statusReason "Dependent Job failed").
- DescribeJobs: each attempt carries `container.exitCode` and `container.reason`, and the job's
  `container` the last attempt's; a job that never started has no `startedAt` (moto reports 1970).
- moto merges the container environment into the SubmitJob overrides' list in place on every
  DescribeJobs, so a polled job's description grew without bound; it is merged into a copy.
- CancelJob (before start) and TerminateJob stop the job: a running subprocess gets SIGTERM, then
  SIGKILL after KILL_GRACE_SECONDS (AWS: the container's stop timeout), on its whole process group.

moto's state manager advances a `batch::job` on every DescribeJobs by default ("immediate"); the
runner sets each status itself, so the transition is set to manual (it never advances on its own).

Pitfalls: the patches target moto internals (checked against `moto_compat.MOTO_VERSION`). Job
threads and the state manager are process-wide: install once, before jobs are submitted; installing
again only updates the options.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from moto.batch.models import Job
from moto.batch.responses import BatchResponse
from moto.batch.utils import JobStatus as BatchJobStatus
from moto.moto_api import state_manager

from workflow_manager.emulator import DUMMY_CREDENTIALS
from workflow_manager.emulator.moto_compat import MOTO_VERSION

log = logging.getLogger(__name__)

# How often a job checks its dependencies, its subprocess and a cancel. (moto's own runner: 1 s.)
DEFAULT_POLL_SECONDS = 0.05
# Between SIGTERM and SIGKILL when a running job is terminated. AWS Batch (ECS) waits 30 s by default;
# the emulator is impatient so that cancel tests stay short.
KILL_GRACE_SECONDS = 2.0
# AWS Batch's statusReason texts.
REASON_DEPENDENCY_FAILED = "Dependent Job failed"
REASON_CONTAINER_EXITED = "Essential container in task exited"
REASON_TIMEOUT = "Job attempt duration exceeded timeout"
# The environment a job inherits from the service process. A container inherits nothing; these make
# local commands work (programs found, a home, a locale). Nothing else: the service's environment
# holds its AWS credentials and its tokens (WFM_*), which a job must not see unless its job
# definition or submission sets them. PATH also gets the service's Python environment first.
INHERITED_ENVIRONMENT = ("PATH", "HOME", "LANG")


_install_lock = threading.Lock()
_installed = False
_options: dict[str, Any] = {"endpoint_url": None, "poll_seconds": DEFAULT_POLL_SECONDS}
_submission = threading.local()  # the retryStrategy of the SubmitJob being served, for Job.__init__


def install_batch_runner(endpoint_url: str | None = None, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
    """Replace moto's container run with the local runner, in this process.

    `endpoint_url` is the emulator the jobs' commands talk to; by default
    `http://127.0.0.1:$MOTO_PORT`, read when each job starts (`start_embedded_emulator` sets it)."""
    global _installed
    installed = importlib.metadata.version("moto")
    if installed != MOTO_VERSION:
        raise RuntimeError(
            f"workflow_manager.emulator.batch_runner patches moto {MOTO_VERSION} internals but moto {installed} is installed"
        )
    with _install_lock:
        _options.update(endpoint_url=endpoint_url, poll_seconds=poll_seconds)
        state_manager.set_transition("batch::job", {"progression": "manual", "times": 1})
        if _installed:
            return
        _patch_job()
        _installed = True


def _patch_job() -> None:
    original_init = Job.__init__
    original_describe = Job.describe
    original_submit = BatchResponse.submitjob

    def submitjob(self: BatchResponse) -> str:
        _submission.retry_strategy = self._get_param("retryStrategy")
        try:
            return original_submit(self)
        finally:
            _submission.retry_strategy = None

    def __init__(self: Job, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        strategy = getattr(_submission, "retry_strategy", None) or self.job_definition.retry_strategy or {}
        self.wfm_attempts = max(1, int(strategy.get("attempts") or 1))
        self.wfm_process = None

    def describe(self: Job) -> dict[str, Any]:
        result = original_describe(self)
        if not self.attempts:
            result.pop("startedAt", None)
        elif self.job_stopped:
            last = self.attempts[-1].get("container", {})
            container = result.setdefault("container", {})
            for key in ("exitCode", "reason"):
                if last.get(key) is not None:
                    container[key] = last[key]
        return result

    def get_container_property(self: Job, p: str, default: Any) -> Any:
        if p != "environment":
            return original_get_container_property(self, p, default)
        return [{"name": k, "value": v} for k, v in _container_environment(self).items()]

    original_get_container_property = Job._get_container_property
    BatchResponse.submitjob = submitjob
    Job.__init__ = __init__
    Job.describe = describe
    Job._get_container_property = get_container_property
    Job.run = _run


def _container_environment(job: Job) -> dict[str, str]:
    """The job definition's environment overlaid by the SubmitJob overrides', plus the job id."""
    environment: dict[str, str] = {}
    definition = job.job_definition.container_properties or {}
    for source in (definition.get("environment") or [], job.container_overrides.get("environment") or []):
        for variable in source:
            environment[variable["name"]] = variable["value"]
    environment["AWS_BATCH_JOB_ID"] = job.job_id
    return environment


# The runner


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _run(self: Job) -> None:
    """Job.run: the job's life from PENDING to SUCCEEDED or FAILED, in the job's own thread."""
    try:
        self.status = BatchJobStatus.PENDING
        if self.depends_on and not _wait_for_dependencies(self):
            return
        for status in (BatchJobStatus.RUNNABLE, BatchJobStatus.STARTING):
            if self.stop:
                self._mark_stopped(success=False)
                return
            self.status = status
        for number in range(1, self.wfm_attempts + 1):
            succeeded, reason = _run_attempt(self, number)
            if succeeded or self.stop or number == self.wfm_attempts:
                break
            self.status = BatchJobStatus.RUNNABLE  # Batch queues the next attempt
        if not succeeded and self.job_stopped_reason is None:
            self.job_stopped_reason = reason
        self._mark_stopped(success=succeeded)
    except Exception:
        log.exception("emulated Batch job %s failed to run", self.job_id)
        self.job_stopped_reason = self.job_stopped_reason or "emulator error"
        self._mark_stopped(success=False)


def _wait_for_dependencies(job: Job) -> bool:
    dependency_ids = [dependency["jobId"] for dependency in job.depends_on]
    while True:
        if job.stop:
            job._mark_stopped(success=False)
            return False
        statuses = [job.all_jobs[i].status if i in job.all_jobs else None for i in dependency_ids]
        if BatchJobStatus.FAILED in statuses:
            job.job_stopped_reason = REASON_DEPENDENCY_FAILED
            job._mark_stopped(success=False)
            return False
        if all(s == BatchJobStatus.SUCCEEDED for s in statuses):
            return True
        time.sleep(_options["poll_seconds"])


def _run_attempt(job: Job, number: int) -> tuple[bool, str]:
    """One attempt: run the command, record the attempt with its exit code. Returns whether it
    succeeded and, when not, Batch's reason."""
    started = datetime.now()
    if number == 1:
        job.job_started_at = started
    job.log_stream_name = job._stream_name
    container: dict[str, Any] = {
        "containerInstanceArn": "arn:aws:ecs:local:000000000000:container-instance/emulator",
        "taskArn": f"arn:aws:ecs:local:000000000000:task/emulator/{job.job_id}-{number}",
        "logStreamName": job.log_stream_name,
        "networkInterfaces": [],
    }
    attempt: dict[str, Any] = {"container": container, "startedAt": _ms(started)}
    job.attempts.append(attempt)
    job.latest_attempt = attempt
    job.status = BatchJobStatus.RUNNING

    command = job._add_parameters_to_command(job._get_container_property("command", []))
    exit_code, reason, output = _run_command(job, [str(part) for part in command], number)
    stopped = datetime.now()
    container["exitCode"] = exit_code
    if reason:
        container["reason"] = reason
    attempt["stoppedAt"] = _ms(stopped)
    attempt["statusReason"] = reason or (REASON_CONTAINER_EXITED if exit_code else "")
    _put_logs(job, output, started)
    if exit_code == 0 and not job.stop:
        return True, ""
    return False, reason or REASON_CONTAINER_EXITED


def _run_command(job: Job, command: list[str], attempt: int) -> tuple[int | None, str, bytes]:
    if not command:
        return 0, "", b""  # an image's default command: nothing to run locally
    timeout = job._get_attempt_duration()
    deadline = time.monotonic() + timeout if timeout else None
    with tempfile.TemporaryDirectory(prefix="wfm-batch-") as workdir, tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=_process_environment(job, attempt),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a stop reaches its children
            )
        except OSError as err:
            return None, f"CannotStartContainerError: {err}", b""
        job.wfm_process = process
        reason = ""
        try:
            while process.poll() is None:
                if job.stop:
                    _stop_process(process)
                    reason = job.job_stopped_reason or ""
                elif deadline is not None and time.monotonic() > deadline:
                    _stop_process(process)
                    reason = REASON_TIMEOUT
                else:
                    time.sleep(_options["poll_seconds"])
        finally:
            if process.poll() is None:
                _stop_process(process)
            job.wfm_process = None
        output.seek(0)
        return process.returncode, reason, output.read()


def _stop_process(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _process_environment(job: Job, attempt: int) -> dict[str, str]:
    environment = {name: os.environ[name] for name in INHERITED_ENVIRONMENT if name in os.environ}
    # No empty entry: it would mean the working directory.
    path = [str(Path(sys.executable).parent), *os.environ.get("PATH", "").split(os.pathsep)]
    environment["PATH"] = os.pathsep.join(entry for entry in path if entry)
    environment.update(_container_environment(job))
    region = job.backend.region_name
    endpoint = _options["endpoint_url"] or f"http://127.0.0.1:{os.environ.get('MOTO_PORT', '5000')}"
    environment.update(
        {
            "AWS_BATCH_JOB_ATTEMPT": str(attempt),
            "AWS_BATCH_JQ_NAME": job.job_queue.name,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
        }
    )
    return environment


def _put_logs(job: Job, output: bytes, started: datetime) -> None:
    """The command's output (stdout and stderr) as the attempt's CloudWatch log stream, as Batch."""
    lines = [line for line in output.decode(errors="replace").splitlines() if line]
    for line in lines:
        log.debug("job %s: %s", job.job_id, line)
    if not lines:
        return
    try:
        job._log_backend.ensure_log_group(job._log_group)
        job._log_backend.ensure_log_stream(job._log_group, job.log_stream_name)
        stamp = _ms(started)
        job._log_backend.put_log_events(
            job._log_group, job.log_stream_name, [{"timestamp": stamp, "message": line} for line in lines]
        )
    except Exception:  # logs are a convenience; never fail a job over them
        log.debug("could not store the logs of job %s", job.job_id, exc_info=True)
