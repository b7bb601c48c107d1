"""The activity worker proper: polls one Step Functions activity and runs a command for each task.

`ActivityWorker` creates the activity when missing, keeps `concurrency` GetActivityTask polls open,
hands each task to `run_task` (runner.py), heartbeats while it runs and reports the outcome with
SendTaskSuccess or SendTaskFailure. A token in hand is always worked and reported. A failure is
logged at WARNING with its error name and a short cause (the full cause at DEBUG); the commands'
output goes where `output` says (`TaskOutput`: the worker's streams, or a logger at DEBUG).

Pitfall: GetActivityTask is a long poll (up to 60 s in AWS), so the client's read timeout must be
longer than that (AWS suggests at least 65 s); a stop waits for the poll in flight to return.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from executor.activity_worker.runner import (
    SIGTERM_GRACE_SECONDS,
    CancelEvent,
    TaskOutcome,
    TaskOutput,
    run_task,
)
from executor.aws_errors import error_code
from workflow_manager.domain.aws import MAX_NAME_LENGTH, activity_name

log = logging.getLogger(__name__)

# Grace between SIGTERM and SIGKILL when a heartbeat says the task is gone: 5 s, another worker may
# be starting the same work.
HEARTBEAT_LOSS_GRACE_SECONDS = 5.0
# Seconds between SendTaskHeartbeat calls while a command runs. The worker cannot see the state's
# HeartbeatSeconds (GetActivityTask gives only the token and the input), so it beats often enough for
# any state with HeartbeatSeconds of 10 or more, two beats per window, and finds a cancelled or timed
# out task within 5 s. sfncli's 20 s failed every state with a smaller HeartbeatSeconds. A running
# task costs 0.2 calls per second against SendTaskHeartbeat's throttling token bucket (per account and
# Region; Step Functions developer guide, "Quotas related to API action throttling"). States with a
# smaller HeartbeatSeconds need `--heartbeat-seconds` below half of it.
HEARTBEAT_SECONDS = 5.0
# Heartbeat errors that mean the task is no longer ours.
TASK_GONE_ERROR_CODES = frozenset({"TaskDoesNotExist", "TaskTimedOut", "InvalidToken"})
# After a poll error the poller waits, doubling from the configured backoff up to this cap.
MAX_POLL_ERROR_BACKOFF_SECONDS = 30.0


def polled_activity_name(activity: str, namespace: str | None = None) -> str:
    """The name of the activity a worker for `activity` polls: `activity_name(namespace, activity)`
    (`{namespace}--{activity}`), or `activity` itself without a namespace. ValueError unless it has
    1 to MAX_NAME_LENGTH characters, since CreateActivity would refuse it."""
    name = activity_name(namespace, activity) if namespace else activity
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
        if error_code(err) != "ActivityAlreadyExists":
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
    per `poll_interval` and runs one task at a time. `extra_env` is added to the commands' clean
    environment (runner.task_environment); `output` says where their stdout and stderr go.
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
        output: TaskOutput = TaskOutput.STREAMS,
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
        self.output = output
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
                output=self.output,
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
                if error_code(err) in TASK_GONE_ERROR_CODES:
                    log.warning("heartbeat: task is gone (%s), cancelling its command", error_code(err))
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
                log.warning("task failed: %s: %s", outcome.error, outcome.short_cause)
                log.debug("task failed: %s, full cause:\n%s", outcome.error, outcome.cause)
                self._client.send_task_failure(taskToken=token, error=outcome.error, cause=outcome.cause)
        except (ClientError, BotoCoreError) as err:
            verb = "SendTaskSuccess" if outcome.succeeded else "SendTaskFailure"
            log.error("%s failed: %s", verb, err)
