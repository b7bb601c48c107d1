"""The Step Functions executor: one state machine per (namespace, name, version, StartAt), one
execution per workflow, named by the workflow id.

- State machines are immutable per version, so DescribeStateMachine answers are cached for the life
  of the process (the reference's sfncache) and a found state machine is never compared or updated.
- Activities a definition uses are created (idempotently) before its state machine, so a worker that
  starts later finds them and the emulator knows them.
- Every page of the execution history is read (contract 7): no job is dropped because a workflow is
  large. The history is read in pages of MAX_HISTORY_PAGE_SIZE, the API's maximum, to spend as few
  GetExecutionHistory calls as possible on its low rate limit.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from executor import aws_errors, sfn_history, sfn_naming
from executor.interface import (
    ExecutionReport,
    StartedExecution,
    StartInterrupted,
    StartProgress,
    require_manager,
)
from workflow_manager.domain import inputs
from workflow_manager.domain.aws import MAX_HISTORY_PAGE_SIZE
from workflow_manager.domain.errors import (
    BackendUnavailable,
    Conflict,
    NotFound,
    WorkflowManagerError,
)
from workflow_manager.domain.models import (
    Manager,
    StateResource,
    Workflow,
    WorkflowDefinition,
    WorkflowStatus,
)

log = logging.getLogger(__name__)

# GetExecutionHistory's maximum page size (AWS Step Functions API reference, maxResults).
# How many history events this process keeps, over all executions, to read histories incrementally
# (a few hundred bytes each: tens of MB at most). The least recently read executions go first.
HISTORY_CACHE_EVENTS = 200_000

EXECUTION_STATUS_TO_WORKFLOW_STATUS = {
    "RUNNING": WorkflowStatus.RUNNING,
    "SUCCEEDED": WorkflowStatus.SUCCEEDED,
    "FAILED": WorkflowStatus.FAILED,
    "TIMED_OUT": WorkflowStatus.FAILED,
    "ABORTED": WorkflowStatus.CANCELLED,
}

# Errors of StartExecution and CreateStateMachine that a caller's input caused: its definition,
# names, input and tags (TooManyTags; ValidationException is AWS's answer to a field over its
# constraints).
_INPUT_CODES = frozenset(
    {"InvalidExecutionInput", "InvalidName", "InvalidDefinition", "TooManyTags", "ValidationException"}
)


def translate_aws_error(err: Exception, action: str) -> WorkflowManagerError:
    return aws_errors.translate_aws_error(err, action, "Step Functions", _INPUT_CODES)


class StepFunctionsExecutor:
    def __init__(
        self,
        sfn_client: Any,
        *,
        region: str,
        account_id: str | Callable[[], str],
        role_arn: str,
        lookup_state_resource: Callable[[str, str], StateResource | None],
        activity_heartbeat_seconds: int | None = sfn_naming.DEFAULT_ACTIVITY_HEARTBEAT_SECONDS,
        history_page_size: int = MAX_HISTORY_PAGE_SIZE,
        history_cache_events: int = HISTORY_CACHE_EVENTS,
    ):
        self._sfn = sfn_client
        self._history_page_size = history_page_size
        self._histories = _HistoryCache(history_cache_events)
        # The HeartbeatSeconds given to activity Tasks that set none (sfn_naming.resolve_state_machine).
        self._activity_heartbeat_seconds = activity_heartbeat_seconds
        self._region = region
        self._account_id = account_id
        self._role_arn = role_arn
        self._lookup_state_resource = lookup_state_resource
        self._state_machine_arns: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def account_id(self) -> str:
        if callable(self._account_id):
            self._account_id = self._account_id()
        return self._account_id

    # Naming

    def _state_machine_name(self, workflow: Workflow) -> str:
        definition = workflow.workflow_definition
        return sfn_naming.state_machine_name(
            workflow.namespace, definition.name, definition.version, definition.start_at
        )

    def execution_arn(self, workflow: Workflow) -> str:
        return sfn_naming.execution_arn(
            self._region, self.account_id, self._state_machine_name(workflow), workflow.id
        )

    # State machines

    def _describe_or_create_state_machine(self, workflow: Workflow) -> str:
        name = self._state_machine_name(workflow)
        with self._lock:
            cached = self._state_machine_arns.get(name)
        if cached:
            return cached
        arn = sfn_naming.state_machine_arn(self._region, self.account_id, name)
        try:
            self._sfn.describe_state_machine(stateMachineArn=arn)
        except ClientError as err:
            if aws_errors.error_code(err) != "StateMachineDoesNotExist":
                raise translate_aws_error(err, "DescribeStateMachine") from err
            self._create_state_machine(workflow, name)
        except BotoCoreError as err:
            raise translate_aws_error(err, "DescribeStateMachine") from err
        with self._lock:
            self._state_machine_arns[name] = arn
        return arn

    def _create_state_machine(self, workflow: Workflow, name: str) -> None:
        definition = workflow.workflow_definition
        resolved = sfn_naming.resolve_state_machine(
            definition.state_machine,
            workflow.namespace,
            self._region,
            self.account_id,
            self._lookup_state_resource,
            activity_heartbeat_seconds=self._activity_heartbeat_seconds,
        )
        tags = sfn_naming.state_machine_tags(
            workflow.namespace,
            definition.name,
            definition.version,
            definition.start_at,
            definition.default_tags,
        )
        try:
            for activity in sorted(sfn_naming.activity_names_in(resolved, workflow.namespace)):
                self._create_activity(activity)
            self._sfn.create_state_machine(
                name=name,
                definition=json.dumps(resolved, indent=2),
                roleArn=self._role_arn,
                tags=[{"key": k, "value": v} for k, v in sorted(tags.items())],
            )
        except ClientError as err:
            # Another replica (or request) created it first: it is the same immutable version.
            if aws_errors.error_code(err) == "StateMachineAlreadyExists":
                return
            raise translate_aws_error(err, "CreateStateMachine") from err
        except BotoCoreError as err:
            raise translate_aws_error(err, "CreateStateMachine") from err

    def _create_activity(self, name: str) -> None:
        # CreateActivity is idempotent in AWS; moto answers a repeat with ActivityAlreadyExists.
        try:
            self._sfn.create_activity(name=name)
        except ClientError as err:
            if aws_errors.error_code(err) != "ActivityAlreadyExists":
                raise

    # Executor port

    def validate_definition(self, definition: WorkflowDefinition) -> None:
        """Step Functions runs every state the domain's validation accepts; names that depend on
        the namespace are checked when a workflow starts. Another manager's definition (a router
        that routed wrongly) is refused."""
        require_manager(definition, Manager.STEP_FUNCTIONS, "Step Functions")

    def start(
        self, workflow: Workflow, progress: StartProgress | None = None, resuming: bool = False
    ) -> StartedExecution:
        """Creates the state machine (and its activities) when missing, then the execution. No
        jobs are returned: they appear in the execution history as it runs. Resuming needs nothing
        more: the execution is named after the workflow, and an existing one of this workflow's
        with its input counts as started."""
        if progress is not None:
            try:
                progress([])
            except StartInterrupted as interrupted:
                interrupted.jobs = []
                raise
        state_machine_arn = self._describe_or_create_state_machine(workflow)
        execution_input = inputs.execution_input(workflow.input, workflow.id)
        try:
            self._sfn.start_execution(
                stateMachineArn=state_machine_arn, name=workflow.id, input=execution_input
            )
        except ClientError as err:
            if aws_errors.error_code(err) == "ExecutionAlreadyExists":
                if self._is_our_execution(workflow, execution_input):
                    # A retried StartExecution (botocore's, after a timeout) that arrives when the
                    # first one's execution has finished: that execution is this workflow's.
                    return StartedExecution()
                raise Conflict(f"an execution named {workflow.id} already exists") from err
            raise translate_aws_error(err, "StartExecution") from err
        except BotoCoreError as err:
            raise translate_aws_error(err, "StartExecution") from err
        return StartedExecution(running=True)

    def _is_our_execution(self, workflow: Workflow, execution_input: str) -> bool:
        """Whether the execution named after the workflow ran on its state machine with its input."""
        try:
            execution = self._sfn.describe_execution(executionArn=self.execution_arn(workflow))
        except (ClientError, BotoCoreError):
            return False
        return execution.get("input") == execution_input

    def cancel(self, workflow: Workflow, reason: str) -> None:
        try:
            self._sfn.stop_execution(executionArn=self.execution_arn(workflow), cause=reason)
        except ClientError as err:
            if aws_errors.error_code(err) == "ExecutionDoesNotExist":
                raise NotFound(f"no execution for workflow {workflow.id}") from err
            raise translate_aws_error(err, "StopExecution") from err
        except BotoCoreError as err:
            raise translate_aws_error(err, "StopExecution") from err

    def report(
        self, workflow: Workflow, include_jobs: bool = True, include_status: bool = True
    ) -> ExecutionReport:
        arn = self.execution_arn(workflow)
        if not include_status:
            # The execution ended (its status came from its event): only its history is read.
            events = self._history(arn)
            self._histories.discard(arn)
            if not events:
                return ExecutionReport(found=False)
            jobs = sfn_history.jobs_from_history(events, workflow)
            return ExecutionReport(found=True, jobs=jobs, last_job=jobs[-1] if jobs else None)
        try:
            execution = self._sfn.describe_execution(executionArn=arn)
        except ClientError as err:
            if aws_errors.error_code(err) == "ExecutionDoesNotExist":
                return ExecutionReport(found=False)
            raise translate_aws_error(err, "DescribeExecution") from err
        except BotoCoreError as err:
            raise translate_aws_error(err, "DescribeExecution") from err
        report = status_report(execution)
        if include_jobs or report.status == WorkflowStatus.FAILED:
            events = self._history(arn)
            if execution["status"] != "RUNNING":
                self._histories.discard(arn)  # ended: its history is read no more
            jobs = sfn_history.jobs_from_history(events, workflow)
            report.jobs = jobs if include_jobs else None
            report.last_job = jobs[-1] if jobs else None
        return report

    def _history(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's whole history, oldest first. Read incrementally when this process read
        it before: newest first (`reverseOrder`), down to the last event it already has, so a
        refresh of a long-running workflow costs one page rather than all of them."""
        known = self._histories.get(execution_arn)
        events = self._full_history(execution_arn) if not known else None
        if known:
            last_id = known[-1]["id"]
            newer: list[dict[str, Any]] = []
            reached_known = False
            for page in self._history_pages(execution_arn, reverse=True):
                fresh = [event for event in page if event["id"] > last_id]
                newer.extend(fresh)
                if len(fresh) < len(page):
                    reached_known = True
                    break
            # Event ids count up from 1 with no gap: the new events follow the known ones, or the
            # history is not the one cached (read it all again).
            if reached_known or not newer or newer[-1]["id"] == last_id + 1:
                events = known + newer[::-1]
            else:
                events = self._full_history(execution_arn)
        self._histories.put(execution_arn, events)
        return events

    def _full_history(self, execution_arn: str) -> list[dict[str, Any]]:
        return [event for page in self._history_pages(execution_arn, reverse=False) for event in page]

    def _history_pages(self, execution_arn: str, reverse: bool) -> Iterator[list[dict[str, Any]]]:
        kwargs: dict[str, Any] = {
            "executionArn": execution_arn,
            "maxResults": self._history_page_size,
            "reverseOrder": reverse,
        }
        try:
            while True:
                page = self._sfn.get_execution_history(**kwargs)
                yield page.get("events", [])
                if not page.get("nextToken"):
                    return
                kwargs["nextToken"] = page["nextToken"]
        except ClientError as err:
            if aws_errors.error_code(err) == "ExecutionDoesNotExist":
                return
            raise translate_aws_error(err, "GetExecutionHistory") from err
        except BotoCoreError as err:
            raise translate_aws_error(err, "GetExecutionHistory") from err

    def check_health(self) -> None:
        try:
            self._sfn.list_state_machines(maxResults=1)
        except (ClientError, BotoCoreError) as err:
            raise BackendUnavailable(f"Step Functions is unreachable: {err}") from err


def status_report(execution: dict[str, Any]) -> ExecutionReport:
    """The status part of a report (no jobs) from an execution as DescribeExecution shows it."""
    sfn_status = execution["status"]
    report = ExecutionReport(
        found=True,
        status=EXECUTION_STATUS_TO_WORKFLOW_STATUS.get(sfn_status, WorkflowStatus.QUEUED),
        stopped_at=execution.get("stopDate"),
        output=_json_text(execution.get("output")),
    )
    if sfn_status == "TIMED_OUT":
        report.status_reason = sfn_history.STATUS_REASON_WORKFLOW_TIMED_OUT
    elif sfn_status == "FAILED":
        report.status_reason = _failure_reason(execution)
    return report


def status_report_from_event(detail: dict[str, Any]) -> ExecutionReport | None:
    """The status part of a report from the detail of a "Step Functions Execution Status Change"
    event, which carries what DescribeExecution would say (status, stopDate in epoch
    milliseconds, output, error and cause), so applying it costs no call. None when the event
    lacks part of it: an output too large to be included (outputDetails.included false), or a
    failure whose error the event does not carry; the caller then asks the backend."""
    sfn_status = detail.get("status")
    if sfn_status not in EXECUTION_STATUS_TO_WORKFLOW_STATUS:
        return None
    if sfn_status == "SUCCEEDED" and (detail.get("outputDetails") or {}).get("included") is False:
        return None
    if sfn_status == "FAILED" and "error" not in detail:
        return None
    stop_ms = detail.get("stopDate")
    execution = {
        "status": sfn_status,
        "stopDate": (
            datetime.fromtimestamp(stop_ms / 1000, tz=UTC) if isinstance(stop_ms, int | float) else None
        ),
        "output": detail.get("output"),
        "error": detail.get("error"),
        "cause": detail.get("cause"),
    }
    return status_report(execution)


def _json_text(output: str | None) -> str | None:
    """The execution's output as JSON text: the emulator returns a top-level JSON string without
    its quotes, which would leave `output` unparsable for clients."""
    if output is None:
        return None
    try:
        json.loads(output)
    except ValueError:
        return json.dumps(output)
    return output


def _failure_reason(execution: dict[str, Any]) -> str:
    error = execution.get("error") or ""
    cause = execution.get("cause") or ""
    return "\n".join(
        part for part in (sfn_history.last_lines(cause, sfn_history.MAX_FAILURE_REASON_LINES), error) if part
    ).strip()


class _HistoryCache:
    """Execution histories by ARN, least recently used dropped first past `max_events` events."""

    def __init__(self, max_events: int):
        self._max_events = max_events
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._events = 0

    def get(self, execution_arn: str) -> list[dict[str, Any]]:
        with self._lock:
            events = self._entries.get(execution_arn)
            if events is None:
                return []
            self._entries.move_to_end(execution_arn)
            return list(events)

    def discard(self, execution_arn: str) -> None:
        with self._lock:
            self._events -= len(self._entries.pop(execution_arn, None) or [])

    def put(self, execution_arn: str, events: list[dict[str, Any]]) -> None:
        with self._lock:
            previous = self._entries.pop(execution_arn, None)
            self._events -= len(previous or [])
            if len(events) > self._max_events:
                return
            self._entries[execution_arn] = events
            self._events += len(events)
            while self._events > self._max_events:
                _, dropped = self._entries.popitem(last=False)
                self._events -= len(dropped)
