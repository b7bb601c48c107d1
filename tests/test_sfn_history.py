"""Execution history -> jobs (executor.sfn_history).

The reference's executor tests (notes 7: JobCreated, JobFailed, JobFailedNotDeployed,
WorkflowJobSucceeded, JobCancelled, JobTimedOut, WorkflowTimedOut), its table of notes 3.8, and the
contract's fixes: execution-level events reach the last job of the whole history, jobs inside
Parallel branches and Map iterations get their state resource, every job has the workflow's
namespace.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from executor.sfn_history import (
    jobs_from_history,
    last_job_from_history,
    last_lines,
    state_resource_descriptor,
)
from workflow_manager.domain.models import (
    JobStatus,
    StateResourceType,
    Workflow,
    WorkflowDefinition,
)

FIXTURES = Path(__file__).parent / "fixtures"
NAMESPACE = "my-namespace"
# boto3 returns event times in the local zone; the service keeps UTC.
LOCAL_ZONE = timezone(timedelta(hours=-7))
T0 = datetime(2024, 5, 6, 9, 0, 0, tzinfo=LOCAL_ZONE)
ACTIVITY_ARN = "arn:aws:states:us-west-2:123456789012:activity:my-namespace--"
SIX_LINE_CAUSE = "line1\nline2\nline3\nline4\nline5\nline6\n\n"


def load_definition(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "definitions" / name).read_text())


def workflow_for(definition: str = "kitchensink.json") -> Workflow:
    return Workflow(
        id="workflow-id",
        workflow_definition=WorkflowDefinition(
            name=definition.removesuffix(".json"), state_machine=load_definition(definition)
        ),
        namespace=NAMESPACE,
    )


def load_history(name: str) -> list[dict[str, Any]]:
    events = json.loads((FIXTURES / "history" / name).read_text())["events"]
    for event in events:
        event["timestamp"] = datetime.fromisoformat(event["timestamp"])
    return events


def utc(timestamp: datetime) -> datetime:
    """What the service keeps of an event time: UTC, milliseconds."""
    timestamp = timestamp.astimezone(UTC)
    return timestamp.replace(microsecond=timestamp.microsecond // 1000 * 1000)


class History:
    """Builds events in boto3's `get_execution_history` shape, one second apart. Each method takes
    the id of the event before it in its branch (`prev`, default the last event added) and returns
    the id of the last event it added."""

    def __init__(self, input_text: str = "{}"):
        self.events: list[dict[str, Any]] = []
        self.add("ExecutionStarted", 0, {"input": input_text, "roleArn": "arn:aws:iam::1:role/wm"})

    @property
    def last(self) -> int:
        return len(self.events)

    def time(self, event_id: int) -> datetime:
        return self.events[event_id - 1]["timestamp"]

    def add(
        self,
        event_type: str,
        prev: int | None = None,
        details: dict[str, Any] | None = None,
        details_key: str | None = None,
    ) -> int:
        event_id = len(self.events) + 1
        event = {
            "id": event_id,
            "previousEventId": self.last if prev is None else prev,
            "timestamp": T0 + timedelta(seconds=event_id, microseconds=456_789),
            "type": event_type,
        }
        if details is not None:
            event[details_key or f"{event_type[0].lower()}{event_type[1:]}EventDetails"] = details
        self.events.append(event)
        return event_id

    def entered(self, kind: str, name: str, input_text: str = "{}", prev: int | None = None) -> int:
        details = {"name": name, "input": input_text, "inputDetails": {"truncated": False}}
        return self.add(f"{kind}StateEntered", prev, details, "stateEnteredEventDetails")

    def exited(self, kind: str, name: str, output: str | None = "{}", prev: int | None = None) -> int:
        details = {"name": name} if output is None else {"name": name, "output": output}
        return self.add(f"{kind}StateExited", prev, details, "stateExitedEventDetails")

    def scheduled(self, resource: str, prev: int | None = None) -> int:
        details = {"resource": ACTIVITY_ARN + resource, "input": "{}", "heartbeatInSeconds": 60}
        return self.add("ActivityScheduled", prev, details)

    def started(self, worker: str, prev: int | None = None) -> int:
        return self.add("ActivityStarted", prev, {"workerName": worker})

    def failed(self, error: str, cause: str, prev: int | None = None) -> int:
        return self.add("ActivityFailed", prev, {"error": error, "cause": cause})

    def succeeded(self, output: str = "{}", prev: int | None = None) -> int:
        return self.add("ActivitySucceeded", prev, {"output": output})

    def activity_task(self, name: str, resource: str, output: str = "{}", prev: int | None = None) -> int:
        """A Task state whose activity succeeds at the first try."""
        event_id = self.entered("Task", name, prev=prev)
        event_id = self.scheduled(resource, event_id)
        event_id = self.started(f"worker-{name}", event_id)
        event_id = self.succeeded(output, event_id)
        return self.exited("Task", name, output, event_id)


# The reference's executor tests (workflow_manager_sfn_test.go)


def test_task_state_entered_creates_a_created_job():  # JobCreated
    history = History()
    entered = history.entered("Task", "start-state", '{"snack":"plum"}')
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.id == str(entered)
    assert job.status == JobStatus.CREATED
    assert job.state == "start-state"
    assert job.input == '{"snack":"plum"}'
    assert job.created_at == utc(history.time(entered))
    assert job.started_at is None
    assert job.attempts == []


def test_activity_failure_keeps_the_last_three_lines_of_the_cause():  # JobFailed
    history = History()
    history.entered("Task", "start-state")
    history.scheduled("fake-resource-1")
    history.started("worker-1")
    failed = history.failed("", SIX_LINE_CAUSE)
    workflow = workflow_for()
    [job] = jobs_from_history(history.events, workflow)
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "line4\nline5\nline6"
    assert job.stopped_at == utc(history.time(failed))
    assert last_job_from_history(history.events, workflow) == job


def test_activity_failure_reason_ends_with_the_error_name():
    history = History()
    history.entered("Task", "start-state")
    history.scheduled("fake-resource-1")
    history.started("worker-1")
    history.failed("sfncli.CommandExitedNonzero", SIX_LINE_CAUSE)
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.status_reason == "line4\nline5\nline6\nsfncli.CommandExitedNonzero"


def test_execution_failed_on_a_missing_activity_says_the_resource_does_not_exist():
    # JobFailedNotDeployed
    history = History()
    history.entered("Task", "start-state")
    details = {"error": "States.Runtime", "cause": "Internal Error (49b863bd-3367-45e8-b6d5)"}
    history.add("ExecutionFailed", details=details)
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "State resource does not exist"


def test_execution_failed_with_another_error_gives_its_cause_and_error():
    history = History()
    history.entered("Task", "start-state")
    history.add("ExecutionFailed", details={"error": "States.Runtime", "cause": SIX_LINE_CAUSE})
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.status_reason == "line4\nline5\nline6\nStates.Runtime"


def test_succeeded_task_has_its_output_and_stopped_at():  # WorkflowJobSucceeded
    history = History()
    exited = history.activity_task("start-state", "fake-resource-1", output='{"result":42}')
    history.add("ExecutionSucceeded", details={"output": '{"result":42}'})
    workflow = workflow_for()
    [job] = jobs_from_history(history.events, workflow)
    assert job.status == JobStatus.SUCCEEDED
    assert job.output == '{"result":42}'
    assert job.stopped_at == utc(history.time(exited))
    assert job.started_at == utc(history.time(exited - 2))
    assert job.container == "worker-start-state"


def test_aborted_execution_marks_the_last_job_aborted_by_user():  # JobCancelled
    history = History()
    history.activity_task("start-state", "fake-resource-1")
    history.entered("Task", "second-state")
    history.scheduled("fake-resource-2")
    history.started("worker-2")
    aborted = history.add("ExecutionAborted", details={"error": "", "cause": "sfn abort reason"})
    first, last = jobs_from_history(history.events, workflow_for())
    assert first.status == JobStatus.SUCCEEDED
    assert last.status == JobStatus.ABORTED_BY_USER
    assert last.status_reason == "sfn abort reason"
    assert last.stopped_at == utc(history.time(aborted))


def test_aborted_execution_after_a_succeeded_job_marks_it_aborted():
    # WorkflowCancelledAfterJobSucceeded: the abort lands on the last job whatever its status.
    history = History()
    history.activity_task("start-state", "fake-resource-1")
    history.add("ExecutionAborted", details={"cause": "sfn abort reason"})
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.status == JobStatus.ABORTED_BY_USER
    assert job.status_reason == "sfn abort reason"


def test_activity_timeout_says_job_timed_out():  # JobTimedOut
    history = History()
    history.entered("Task", "start-state")
    history.scheduled("fake-resource-1")
    history.started("worker-1")
    timed_out = history.add("ActivityTimedOut", details={"error": "States.Timeout", "cause": ""})
    history.add("ExecutionFailed", details={"error": "States.Timeout", "cause": "timed out"})
    # Step Functions writes both in the same instant.
    history.events[-1]["timestamp"] = history.time(timed_out)
    workflow = workflow_for()
    [job] = jobs_from_history(history.events, workflow)
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "Job timed out\nStates.Timeout"
    assert job.stopped_at == utc(history.time(timed_out))
    assert last_job_from_history(history.events, workflow) == job


def test_execution_timeout_says_workflow_timed_out():  # WorkflowTimedOut
    history = History()
    history.entered("Task", "start-state")
    history.scheduled("fake-resource-1")
    history.started("worker-1")
    history.add("ExecutionTimedOut", details={"error": "States.Timeout", "cause": SIX_LINE_CAUSE})
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "Workflow timed out\nStates.Timeout\nline4\nline5\nline6"


def test_execution_timeout_without_details_says_only_workflow_timed_out():
    history = History()
    history.entered("Task", "start-state")
    history.add("ExecutionTimedOut")
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "Workflow timed out"


# Retries, Choice and Succeed jobs


def test_retry_is_folded_into_attempts():
    history = History()
    entered = history.entered("Task", "start-state", '{"try":"me"}')
    history.scheduled("fake-resource-1")
    first_start = history.started("worker-a")
    first_failure = history.failed("sfncli.CommandTerminated", "killed")
    retry = history.scheduled("fake-resource-1")
    second_start = history.started("worker-b")
    history.succeeded('{"ok":true}')
    history.exited("Task", "start-state", '{"ok":true}')
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.id == str(retry)
    assert job.status == JobStatus.SUCCEEDED
    assert job.state == "start-state"
    assert job.input == '{"try":"me"}'
    assert job.output == '{"ok":true}'
    assert job.created_at == utc(history.time(retry))
    assert job.started_at == utc(history.time(second_start))
    assert job.container == "worker-b"
    assert job.status_reason == ""
    assert job.state_resource.name == "fake-resource-1"
    assert job.state_resource.last_updated == utc(history.time(retry))
    [attempt] = job.attempts
    assert attempt.reason == "killed\nsfncli.CommandTerminated"
    assert attempt.created_at == utc(history.time(entered))
    assert attempt.started_at == utc(history.time(first_start))
    assert attempt.stopped_at == utc(history.time(first_failure))
    assert attempt.task_arn == "worker-a"


def test_each_retry_adds_one_attempt():
    history = History()
    history.entered("Task", "start-state")
    for worker in ("a", "b", "c"):
        history.scheduled("fake-resource-1")
        history.started(worker)
        history.failed("Boom", f"try {worker}")
    history.add("ExecutionFailed", details={"error": "Boom", "cause": "try c"})
    [job] = jobs_from_history(history.events, workflow_for())
    assert [a.reason for a in job.attempts] == ["try a\nBoom", "try b\nBoom"]
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "try c\nBoom"


def test_choice_and_succeed_states_are_jobs_that_start_when_entered():
    history = History()
    history.activity_task("FirstState", "first")
    choice = history.entered("Choice", "ChoiceState", '{"foo":1}')
    choice_exit = history.exited("Choice", "ChoiceState", '{"foo":1}')
    history.entered("Pass", "a-pass-state")
    history.exited("Pass", "a-pass-state")
    done = history.entered("Succeed", "all-done", '{"foo":1}')
    done_exit = history.exited("Succeed", "all-done", '{"foo":1}')
    history.add("ExecutionSucceeded", details={"output": '{"foo":1}'})
    workflow = workflow_for("aws-choice.json")
    first, choice_job, done_job = jobs_from_history(history.events, workflow)
    assert (first.state_resource.name, first.state_resource.type) == (
        "arn:aws:lambda:REGION:ACCOUNT_ID:function:FUNCTION_NAME",
        StateResourceType.LAMBDA_FUNCTION_ARN,
    )
    assert (choice_job.state, choice_job.status) == ("ChoiceState", JobStatus.SUCCEEDED)
    assert choice_job.started_at == choice_job.created_at == utc(history.time(choice))
    assert choice_job.stopped_at == utc(history.time(choice_exit))
    assert choice_job.output == '{"foo":1}'
    assert (done_job.state, done_job.status) == ("all-done", JobStatus.SUCCEEDED)
    assert done_job.started_at == utc(history.time(done))
    assert done_job.stopped_at == utc(history.time(done_exit))
    # As the reference: a state without a Resource reports an empty name (and ActivityARN).
    assert (choice_job.state_resource.name, choice_job.state_resource.type) == (
        "",
        StateResourceType.ACTIVITY_ARN,
    )
    assert choice_job.state_resource.namespace == NAMESPACE


def test_pass_wait_and_fail_states_are_not_jobs():
    history = History()
    history.entered("Pass", "p")
    history.exited("Pass", "p")
    history.entered("Wait", "w")
    history.exited("Wait", "w")
    history.entered("Fail", "f")
    history.add("ExecutionFailed", details={"error": "E", "cause": "c"})
    assert jobs_from_history(history.events, workflow_for()) == []
    assert last_job_from_history(history.events, workflow_for()) is None


# Parallel branches and Map iterations


def test_parallel_branches_and_map_iterations_get_their_state_resources():
    events = load_history("kitchensink-map-iteration-fails.json")
    jobs = jobs_from_history(events, workflow_for())
    assert [(job.state, job.state_resource.name) for job in jobs] == [
        ("start-state", "fake-resource-1"),
        ("second-state", "fake-resource-2"),
        ("branch1", "fake-resource-3"),
        ("branch2", "fake-resource-4"),
        ("mapStateStart", "fake-resource-5"),
        ("mapStateStart", "fake-resource-5"),
    ]
    for job in jobs:
        assert job.state_resource.type == StateResourceType.ACTIVITY_ARN
        assert job.state_resource.namespace == NAMESPACE


def test_interleaved_branches_and_iterations_keep_their_own_events():
    events = load_history("kitchensink-map-iteration-fails.json")
    _, _, branch1, branch2, item1, item2 = jobs_from_history(events, workflow_for())
    assert (branch1.status, branch1.output, branch1.container) == (
        JobStatus.SUCCEEDED,
        '{"branch":1}',
        "worker-3",
    )
    assert (branch2.status, branch2.output, branch2.container) == (
        JobStatus.SUCCEEDED,
        '{"branch":2}',
        "worker-4",
    )
    assert (item1.input, item1.status, item1.output, item1.container) == (
        '{"item":1}',
        JobStatus.SUCCEEDED,
        '{"done":1}',
        "worker-5a",
    )
    # The failed iteration is the last job: the execution's failure lands on it.
    assert (item2.input, item2.status, item2.container) == ('{"item":2}', JobStatus.FAILED, "worker-5b")
    assert item2.status_reason == "line a\n  line b\nValueError: item 2\nItemError"
    assert item2.stopped_at == utc(events[-1]["timestamp"])


def test_event_times_become_utc_milliseconds():
    events = load_history("kitchensink-map-iteration-fails.json")
    start = jobs_from_history(events, workflow_for())[0]
    assert start.created_at == datetime(2024, 5, 6, 16, 0, 2, 123000, tzinfo=UTC)
    assert start.created_at.utcoffset() == timedelta(0)


def test_map_item_processor_iterations_are_jobs_with_their_state_resources():
    history = History('{"items":[1,2]}')
    history.activity_task("list-items", "ignored")
    history.add("MapStateEntered", details={"name": "process-items"}, details_key="stateEnteredEventDetails")
    map_started = history.add("MapStateStarted", details={"length": 2})
    iterations = []
    for index in (0, 1):
        started = history.add("MapIterationStarted", map_started, {"name": "process-items", "index": index})
        iterations.append(history.entered("Task", "process-item", f'{{"item":{index}}}', started))
    # Glue runs through a service integration: Task* events, not Activity* events.
    tasks = [
        history.add("TaskScheduled", i, {"resource": "startJobRun.sync", "resourceType": "glue"})
        for i in iterations
    ]
    tasks = [
        history.add("TaskStarted", t, {"resource": "startJobRun.sync", "resourceType": "glue"}) for t in tasks
    ]
    tasks = [
        history.add("TaskSubmitted", t, {"resource": "startJobRun.sync", "resourceType": "glue"})
        for t in tasks
    ]
    # Iteration 0 runs to its Succeed state; then iteration 1's job fails and is caught.
    ok = history.add("TaskSucceeded", tasks[0], {"output": '{"ok":true}'})
    ok = history.exited("Task", "process-item", '{"ok":true}', ok)
    ok = history.entered("Choice", "check-item", '{"ok":true}', ok)
    ok = history.exited("Choice", "check-item", '{"ok":true}', ok)
    ok = history.entered("Succeed", "item-done", '{"ok":true}', ok)
    ok = history.exited("Succeed", "item-done", '{"ok":true}', ok)
    history.add("MapIterationSucceeded", ok, {"name": "process-items", "index": 0})
    failure = {"error": "Glue.Failed", "cause": "out of memory"}
    failed = history.add("TaskFailed", tasks[1], {"resource": "startJobRun.sync", **failure})
    failed = history.exited("Task", "process-item", '{"Error":"Glue.Failed"}', failed)
    failed = history.entered("Fail", "item-failed", prev=failed)
    history.add("MapIterationFailed", failed, {"name": "process-items", "index": 1})
    history.add("MapStateFailed")
    history.add("ExecutionFailed", details={"error": "ItemFailed", "cause": ""})
    jobs = jobs_from_history(history.events, workflow_for("item-processor.json"))
    assert [(j.state, j.status) for j in jobs] == [
        ("list-items", JobStatus.SUCCEEDED),
        ("process-item", JobStatus.SUCCEEDED),
        ("process-item", JobStatus.FAILED),
        ("check-item", JobStatus.SUCCEEDED),
        # As the reference, the execution's failure lands on the last job entered, wherever it is.
        ("item-done", JobStatus.FAILED),
    ]
    list_items, item0, item1, check, done = jobs
    assert (list_items.state_resource.name, list_items.state_resource.type) == (
        "list-items",
        StateResourceType.LAMBDA_FUNCTION_ARN,
    )
    for job in (item0, item1):
        assert (job.state_resource.name, job.state_resource.type) == (
            "process-item-job",
            StateResourceType.TASK_ARN,
        )
    assert (item0.input, item1.input) == ('{"item":0}', '{"item":1}')
    assert item1.status_reason == "out of memory\nGlue.Failed"
    assert (check.output, check.state_resource.name) == ('{"ok":true}', "")
    assert done.status_reason == "ItemFailed"
    assert item0.output == '{"ok":true}'


# Long histories


def test_execution_level_event_pages_after_the_last_job_entered_still_reaches_it():
    page_size = 100
    history = History()
    history.activity_task("start-state", "fake-resource-1")
    entered = history.entered("Task", "end-state")
    for attempt in range(70):
        history.scheduled("fake-resource-5")
        history.started(f"worker-{attempt}")
        history.failed("Crash", f"attempt {attempt}")
    failed = history.add("ExecutionFailed", details={"error": "Crash", "cause": "attempt 69"})
    assert entered <= page_size and failed > 2 * page_size  # three pages apart
    first, last = jobs_from_history(history.events, workflow_for())
    assert first.status == JobStatus.SUCCEEDED
    assert last.state == "end-state"
    assert len(last.attempts) == 69
    assert last.status == JobStatus.FAILED
    assert last.stopped_at == utc(history.time(failed))
    assert last.status_reason == "attempt 69\nCrash"


def test_history_of_more_than_a_thousand_events_gives_every_job():
    iterations = 250
    concurrency = 40
    history = History()
    history.activity_task("start-state", "fake-resource-1")
    history.activity_task("second-state", "fake-resource-2")
    history.add(
        "ParallelStateEntered", details={"name": "parallel-state"}, details_key="stateEnteredEventDetails"
    )
    parallel = history.add("ParallelStateStarted")
    ends = [
        history.activity_task(name, resource, prev=parallel)
        for name, resource in (("branch1", "fake-resource-3"), ("branch2", "fake-resource-4"))
    ]
    history.add("ParallelStateSucceeded", ends[-1])
    history.add(
        "ParallelStateExited", details={"name": "parallel-state"}, details_key="stateExitedEventDetails"
    )
    history.add("MapStateEntered", details={"name": "map-state"}, details_key="stateEnteredEventDetails")
    map_started = history.add("MapStateStarted", details={"length": iterations})
    for batch_start in range(0, iterations, concurrency):
        batch = range(batch_start, min(batch_start + concurrency, iterations))
        # Each step of the batch's iterations interleaves with the others'.
        chains = [
            history.add("MapIterationStarted", map_started, {"name": "map-state", "index": i}) for i in batch
        ]
        chains = [
            history.entered("Task", "mapStateStart", f'{{"item":{i}}}', c)
            for i, c in zip(batch, chains, strict=True)
        ]
        chains = [history.scheduled("fake-resource-5", c) for c in chains]
        chains = [history.started(f"worker-{i}", c) for i, c in zip(batch, chains, strict=True)]
        chains = [history.succeeded(f'{{"done":{i}}}', c) for i, c in zip(batch, chains, strict=True)]
        chains = [
            history.exited("Task", "mapStateStart", f'{{"done":{i}}}', c)
            for i, c in zip(batch, chains, strict=True)
        ]
        for i, c in zip(batch, chains, strict=True):
            history.add("MapIterationSucceeded", c, {"name": "map-state", "index": i})
    history.add("MapStateSucceeded")
    history.add("MapStateExited", details={"name": "map-state"}, details_key="stateExitedEventDetails")
    history.activity_task("end-state", "fake-resource-5")
    history.add("ExecutionSucceeded", details={"output": "{}"})
    assert len(history.events) > 1000
    jobs = jobs_from_history(history.events, workflow_for())
    assert len(jobs) == 2 + 2 + iterations + 1
    assert all(job.status == JobStatus.SUCCEEDED for job in jobs)
    items = [job for job in jobs if job.state == "mapStateStart"]
    assert [job.input for job in items] == [f'{{"item":{i}}}' for i in range(iterations)]
    assert [job.output for job in items] == [f'{{"done":{i}}}' for i in range(iterations)]
    assert [job.container for job in items] == [f"worker-{i}" for i in range(iterations)]
    assert len({job.id for job in jobs}) == len(jobs)
    assert {job.state_resource.namespace for job in jobs} == {NAMESPACE}


# Edges of the mapping


def test_lambda_function_events_update_the_job():
    history = History()
    history.entered("Task", "start-state")
    history.add("LambdaFunctionScheduled", details={"resource": "arn:aws:lambda:us-west-2:1:function:f"})
    history.add("LambdaFunctionStarted")
    history.add("LambdaFunctionTimedOut", details={"error": "States.Timeout", "cause": "slow"})
    history.add("LambdaFunctionScheduled", details={"resource": "arn:aws:lambda:us-west-2:1:function:f"})
    history.add("LambdaFunctionStarted")
    history.add("LambdaFunctionFailed", details={"error": "Lambda.Unknown", "cause": "boom"})
    [job] = jobs_from_history(history.events, workflow_for())
    assert [a.reason for a in job.attempts] == ["Job timed out\nStates.Timeout\nslow"]
    assert (job.status, job.status_reason) == (JobStatus.FAILED, "boom\nLambda.Unknown")


def test_task_submit_failed_fails_the_job():
    history = History()
    history.entered("Task", "start-state")
    history.add("TaskScheduled", details={"resource": "submitJob.sync", "resourceType": "batch"})
    history.add("TaskSubmitFailed", details={"error": "Batch.ClientException", "cause": "no queue"})
    [job] = jobs_from_history(history.events, workflow_for())
    assert (job.status, job.status_reason) == (JobStatus.FAILED, "no queue\nBatch.ClientException")


def test_events_of_unknown_jobs_are_ignored():
    history = History()
    history.entered("Task", "start-state")
    history.add("ActivityFailed", prev=999, details={"error": "E", "cause": "not ours"})
    history.add("SomeFutureEvent", details={"x": 1})
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.status == JobStatus.CREATED


def test_execution_level_event_before_any_job_is_ignored():
    history = History()
    history.add("ExecutionAborted", details={"cause": "too soon"})
    assert jobs_from_history(history.events, workflow_for()) == []


def test_state_missing_from_the_definition_has_an_empty_state_resource():
    history = History()
    history.entered("Task", "renamed-since")
    [job] = jobs_from_history(history.events, workflow_for())
    assert (job.state_resource.name, job.state_resource.type) == ("", "")
    assert job.state_resource.namespace == NAMESPACE


def test_task_state_exited_without_output_keeps_the_job_output():
    history = History()
    history.entered("Task", "start-state")
    history.scheduled("fake-resource-1")
    history.started("w")
    history.succeeded()
    history.exited("Task", "start-state", output=None)
    [job] = jobs_from_history(history.events, workflow_for())
    assert job.output == ""
    assert job.stopped_at is not None


@pytest.mark.parametrize(
    ("resource", "name", "resource_type"),
    [
        ("lambda:my-function", "my-function", StateResourceType.LAMBDA_FUNCTION_ARN),
        ("glue:my-job", "my-job", StateResourceType.TASK_ARN),
        ("batch:my-job-definition", "my-job-definition", StateResourceType.JOB_DEFINITION_ARN),
        ("my-activity", "my-activity", StateResourceType.ACTIVITY_ARN),
        (
            "arn:aws:states:us-west-2:1:activity:other--thing",
            "arn:aws:states:us-west-2:1:activity:other--thing",
            StateResourceType.ACTIVITY_ARN,
        ),
        (
            "arn:aws:lambda:us-west-2:1:function:f",
            "arn:aws:lambda:us-west-2:1:function:f",
            StateResourceType.LAMBDA_FUNCTION_ARN,
        ),
        (
            "arn:aws:states:::lambda:invoke",
            "arn:aws:states:::lambda:invoke",
            StateResourceType.LAMBDA_FUNCTION_ARN,
        ),
        (
            "arn:aws:states:::batch:submitJob.sync",
            "arn:aws:states:::batch:submitJob.sync",
            StateResourceType.JOB_DEFINITION_ARN,
        ),
        (
            "arn:aws:batch:us-west-2:1:job-definition/jd:3",
            "arn:aws:batch:us-west-2:1:job-definition/jd:3",
            StateResourceType.JOB_DEFINITION_ARN,
        ),
        (
            "arn:aws:states:::glue:startJobRun.sync",
            "arn:aws:states:::glue:startJobRun.sync",
            StateResourceType.TASK_ARN,
        ),
    ],
)
def test_state_resource_descriptor(resource, name, resource_type):
    assert state_resource_descriptor(resource) == (name, resource_type)


@pytest.mark.parametrize(
    ("text", "count", "expected"),
    [
        (SIX_LINE_CAUSE, 3, "line4\nline5\nline6"),
        ("  only one  ", 3, "only one"),
        ("a\nb", 3, "a\nb"),
        ("", 3, ""),
        ("a\nb\nc", 1, "c"),
        ("a\nb\nc", 0, ""),
    ],
)
def test_last_lines(text, count, expected):
    assert last_lines(text, count) == expected


# Jobs left open when the execution ends


def _parallel_with_one_failing_branch(end_event: str, details: dict[str, Any]) -> History:
    history = History()
    parallel = history.entered("Parallel", "parallel-state")
    # The right branch enters first, so that the failing left one is the last job (the one the
    # execution's end lands on, as in the reference).
    right = history.entered("Task", "branch2", prev=parallel)
    left = history.entered("Task", "branch1", prev=parallel)
    left = history.scheduled("fake-resource-3", left)
    right = history.scheduled("fake-resource-4", right)
    left = history.started("worker-a", left)
    history.started("worker-b", right)
    history.failed("Boom", "the left branch failed", left)
    history.add(end_event, None, details)
    return history


def test_a_failed_execution_ends_the_jobs_of_its_other_branches():
    history = _parallel_with_one_failing_branch(
        "ExecutionFailed", {"error": "Boom", "cause": "the left branch failed"}
    )
    jobs = {job.state: job for job in jobs_from_history(history.events, workflow_for())}
    assert jobs["branch1"].status == JobStatus.FAILED
    # No event ever ends the right branch's task: it ends with the execution.
    assert jobs["branch2"].status == JobStatus.ABORTED_DEPS_FAILED
    assert jobs["branch2"].status_reason == "the workflow ended before this job finished"
    assert jobs["branch2"].stopped_at == utc(history.time(history.last))


def test_a_stopped_execution_ends_its_open_jobs_as_aborted_by_user():
    history = _parallel_with_one_failing_branch("ExecutionAborted", {"cause": "user stop"})
    jobs = {job.state: job for job in jobs_from_history(history.events, workflow_for())}
    assert {job.status for job in jobs.values()} <= {
        JobStatus.FAILED,
        JobStatus.ABORTED_BY_USER,
    }
    assert jobs["branch2"].status == JobStatus.ABORTED_BY_USER


def test_a_running_execution_s_history_is_read_incrementally(served_app):
    """The second report of a running execution reads the history newest first down to what the
    first read, one page here, and builds the same jobs as a whole read would."""
    import uuid

    import boto3

    from executor.sfn import StepFunctionsExecutor
    from tests.aws_proxy import AwsProxy
    from tests.conftest import wait_for
    from workflow_manager.domain.models import Workflow, WorkflowDefinition, new_id
    from workflow_manager.emulator.server import emulator_client_kwargs

    proxy = AwsProxy(served_app.app.runtime.emulator.endpoint_url)
    try:

        def executor(page_size: int) -> StepFunctionsExecutor:
            return StepFunctionsExecutor(
                boto3.client("stepfunctions", **emulator_client_kwargs(proxy.url)),
                region="us-east-1",
                account_id="123456789012",
                role_arn="arn:aws:iam::123456789012:role/sfn",
                lookup_state_resource=lambda namespace, name: None,
                history_page_size=page_size,
            )

        # Each iteration's Task waits on an activity nobody polls: eight running jobs.
        task = {"Type": "Task", "Resource": "nobody-polls", "End": True}
        machine = {
            "StartAt": "each",
            "States": {
                "each": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "ItemProcessor": {"StartAt": "wait-for-work", "States": {"wait-for-work": task}},
                    "End": True,
                },
            },
        }
        workflow = Workflow(
            id=new_id(),
            workflow_definition=WorkflowDefinition(
                name=f"incremental-{uuid.uuid4().hex[:8]}", state_machine=machine
            ),
            namespace="incremental",
            input='{"items": [1, 2, 3, 4, 5, 6, 7, 8]}',
        )
        paged = executor(page_size=5)
        paged.start(workflow)
        wait_for(
            lambda: len(paged.report(workflow).jobs or []) == 8,
            30,
            0.2,
            "the eight activity tasks",
        )
        before = proxy.calls["GetExecutionHistory"]
        again = paged.report(workflow)
        assert proxy.calls["GetExecutionHistory"] - before == 1
        whole = executor(page_size=1000).report(workflow)
        assert [(j.state, j.status) for j in again.jobs] == [(j.state, j.status) for j in whole.jobs]
        assert len(whole.jobs) == 8 and {j.status for j in whole.jobs} == {JobStatus.QUEUED}
        paged.cancel(workflow, "test over")
    finally:
        proxy.stop()
