"""The moto compatibility fixes, exercised through a real embedded moto server and boto3.

Each fix in `workflow_manager.emulator.moto_compat` has a test here that fails on stock moto 5.2.5: if a moto
upgrade changes the behaviour a fix corrects, these say which one. Asynchronous results are polled
with a deadline.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.config import default_user_config
from moto.stepfunctions.parser.asl.eval.callback.callback import ActivityTaskStartEndpoint

from tests.conftest import wait_for
from workflow_manager.emulator import moto_compat
from workflow_manager.emulator.server import EmbeddedEmulator, emulator_client_kwargs, start_embedded_emulator

# Short polls keep an empty GetActivityTask (and so each test) at about a second.
ACTIVITY_POLL_SECONDS = 1.0
ROLE_ARN = "arn:aws:iam::123456789012:role/workflow-manager-test"
TERMINAL = {"SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmbeddedEmulator]:
    running = start_embedded_emulator()
    moto_compat.apply_moto_compat(activity_poll_seconds=ACTIVITY_POLL_SECONDS)
    yield running
    running.stop()
    moto_compat.apply_moto_compat()


@pytest.fixture(scope="module")
def sfn(emulator: EmbeddedEmulator) -> Any:
    return boto3.client("stepfunctions", **emulator_client_kwargs(emulator.endpoint_url))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _finished(sfn: Any, execution_arn: str, timeout: float = 5.0) -> dict:
    def probe() -> dict | None:
        described = sfn.describe_execution(executionArn=execution_arn)
        return described if described["status"] in TERMINAL else None

    return wait_for(probe, what=f"{execution_arn} to finish", timeout=timeout)


def _history(sfn: Any, execution_arn: str) -> list[dict]:
    return sfn.get_execution_history(executionArn=execution_arn)["events"]


def _event_types(sfn: Any, execution_arn: str) -> list[str]:
    return [event["type"] for event in _history(sfn, execution_arn)]


def _activity_machine(sfn: Any, activity_arn: str, **task_fields: Any) -> str:
    definition = {
        "StartAt": "Work",
        "States": {"Work": {"Type": "Task", "Resource": activity_arn, "End": True, **task_fields}},
    }
    return sfn.create_state_machine(
        name=_unique("activity"), definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]


def _start(sfn: Any, machine_arn: str, execution_input: dict | None = None) -> str:
    return sfn.start_execution(
        stateMachineArn=machine_arn, name=_unique("run"), input=json.dumps(execution_input or {})
    )["executionArn"]


@pytest.fixture
def activity_arn(sfn: Any) -> str:
    return sfn.create_activity(name=_unique("work"))["activityArn"]


def _poll(sfn: Any, activity_arn: str, worker_name: str = "worker-1") -> dict:
    """One GetActivityTask that must return a task."""
    task = sfn.get_activity_task(activityArn=activity_arn, workerName=worker_name)
    assert "taskToken" in task, f"poll of {activity_arn} returned no task: {task}"
    return task


# --- Fix 1: activities ----------------------------------------------------------------------------


def test_activity_task_is_delivered_to_poller_and_completes(sfn: Any, activity_arn: str) -> None:
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn), {"step": "build"})

    task = _poll(sfn, activity_arn)
    assert json.loads(task["input"]) == {"step": "build"}
    sfn.send_task_success(taskToken=task["taskToken"], output=json.dumps({"built": True}))

    described = _finished(sfn, execution_arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"built": True}


def test_activity_history_records_scheduled_started_and_succeeded(sfn: Any, activity_arn: str) -> None:
    machine_arn = _activity_machine(sfn, activity_arn, TimeoutSeconds=30, HeartbeatSeconds=10)
    execution_arn = _start(sfn, machine_arn, {"step": "test"})
    task = _poll(sfn, activity_arn, worker_name="builder-7")
    sfn.send_task_success(taskToken=task["taskToken"], output='{"ok": 1}')
    _finished(sfn, execution_arn)

    events = {event["type"]: event for event in _history(sfn, execution_arn)}
    scheduled = events["ActivityScheduled"]["activityScheduledEventDetails"]
    assert scheduled["resource"] == activity_arn
    assert json.loads(scheduled["input"]) == {"step": "test"}
    assert (scheduled["timeoutInSeconds"], scheduled["heartbeatInSeconds"]) == (30, 10)
    assert events["ActivityStarted"]["activityStartedEventDetails"] == {"workerName": "builder-7"}
    assert json.loads(events["ActivitySucceeded"]["activitySucceededEventDetails"]["output"]) == {"ok": 1}
    assert _event_types(sfn, execution_arn) == [
        "ExecutionStarted",
        "TaskStateEntered",
        "ActivityScheduled",
        "ActivityStarted",
        "ActivitySucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]


def test_activity_heartbeats_keep_task_alive_past_heartbeat_seconds(sfn: Any, activity_arn: str) -> None:
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn, HeartbeatSeconds=1))
    task = _poll(sfn, activity_arn)

    beating_until = time.monotonic() + 1.6  # longer than HeartbeatSeconds
    while time.monotonic() < beating_until:
        sfn.send_task_heartbeat(taskToken=task["taskToken"])
        time.sleep(0.3)
    sfn.send_task_success(taskToken=task["taskToken"], output="{}")

    assert _finished(sfn, execution_arn)["status"] == "SUCCEEDED"


def test_activity_heartbeat_is_accepted_without_heartbeat_seconds(sfn: Any, activity_arn: str) -> None:
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn))
    task = _poll(sfn, activity_arn)

    sfn.send_task_heartbeat(taskToken=task["taskToken"])  # stock moto: InvalidToken
    sfn.send_task_success(taskToken=task["taskToken"], output="{}")

    assert _finished(sfn, execution_arn)["status"] == "SUCCEEDED"


def test_activity_without_heartbeat_times_out(sfn: Any, activity_arn: str) -> None:
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn, HeartbeatSeconds=1))
    _poll(sfn, activity_arn)

    described = _finished(sfn, execution_arn)
    assert (described["status"], described["error"]) == ("FAILED", "States.Timeout")
    assert "ActivityTimedOut" in _event_types(sfn, execution_arn)


def test_activity_retry_and_catch_route_send_task_failure(sfn: Any, activity_arn: str) -> None:
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {
                "Type": "Task",
                "Resource": activity_arn,
                "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                "Catch": [{"ErrorEquals": ["Permanent"], "ResultPath": "$.failure", "Next": "Handled"}],
                "End": True,
            },
            "Handled": {"Type": "Pass", "End": True},
        },
    }
    machine_arn = sfn.create_state_machine(
        name=_unique("retry"), definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]
    execution_arn = _start(sfn, machine_arn, {"step": "deploy"})

    sfn.send_task_failure(taskToken=_poll(sfn, activity_arn)["taskToken"], error="Flaky", cause="blip")
    retried = _poll(sfn, activity_arn)
    sfn.send_task_failure(taskToken=retried["taskToken"], error="Permanent", cause="disk full")

    described = _finished(sfn, execution_arn)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {
        "step": "deploy",
        "failure": {"Error": "Permanent", "Cause": "disk full"},
    }


# --- Fix 2: SendTaskFailure keeps cause -----------------------------------------------------------


def test_activity_failure_keeps_cause(sfn: Any, activity_arn: str) -> None:
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn))
    task = _poll(sfn, activity_arn)
    sfn.send_task_failure(taskToken=task["taskToken"], error="BuildFailed", cause="exit code 3")

    described = _finished(sfn, execution_arn)
    assert (described["status"], described["error"], described["cause"]) == (
        "FAILED",
        "BuildFailed",
        "exit code 3",
    )
    failed = [e for e in _history(sfn, execution_arn) if e["type"] == "ActivityFailed"]
    assert failed[0]["activityFailedEventDetails"] == {"error": "BuildFailed", "cause": "exit code 3"}


# --- Fix 3: service integrations -----------------------------------------------------------------


def test_batch_submit_job_integration_reaches_batch(
    emulator: EmbeddedEmulator, sfn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without Docker moto's Batch cannot run a container; its docker-less backend marks each job
    # SUCCEEDED at submit, which is all a .sync integration needs to complete.
    monkeypatch.setitem(default_user_config["batch"], "use_docker", False)
    kwargs = emulator_client_kwargs(emulator.endpoint_url)
    batch = boto3.client("batch", **kwargs)
    iam = boto3.client("iam", **kwargs)
    role_arn = iam.create_role(RoleName=_unique("batch"), AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    environment_arn = batch.create_compute_environment(
        computeEnvironmentName=_unique("env"), type="UNMANAGED", state="ENABLED", serviceRole=role_arn
    )["computeEnvironmentArn"]
    queue_arn = batch.create_job_queue(
        jobQueueName=_unique("queue"),
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment_arn}],
    )["jobQueueArn"]
    job_definition_arn = batch.register_job_definition(
        jobDefinitionName=_unique("jobdef"),
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 128, "command": ["true"]},
    )["jobDefinitionArn"]
    definition = {
        "StartAt": "Submit",
        "States": {
            "Submit": {
                "Type": "Task",
                "Resource": "arn:aws:states:::batch:submitJob.sync",
                "Parameters": {
                    "JobName": "compile",
                    "JobQueue": queue_arn,
                    "JobDefinition": job_definition_arn,
                },
                "End": True,
            }
        },
    }
    machine_arn = sfn.create_state_machine(
        name=_unique("batch"), definition=json.dumps(definition), roleArn=role_arn
    )["stateMachineArn"]

    described = _finished(sfn, _start(sfn, machine_arn))

    assert described["status"] == "SUCCEEDED", described.get("cause")
    job = json.loads(described["output"])  # the .sync result: DescribeJobs' job, in PascalCase
    assert (job["JobName"], job["Status"], job["JobQueue"]) == ("compile", "SUCCEEDED", queue_arn)
    [in_batch] = batch.describe_jobs(jobs=[job["JobId"]])["jobs"]
    assert (in_batch["jobName"], in_batch["jobDefinition"]) == ("compile", job_definition_arn)


# --- Fix 4: activity nobody polls -----------------------------------------------------------------


def test_activity_start_wait_without_worker_has_no_outcome(emulator: EmbeddedEmulator) -> None:
    # What the interpreter does while a Task waits for a worker that never comes: stock moto
    # raises AttributeError here (no default outcome), and the Task fails with States.Runtime.
    assert ActivityTaskStartEndpoint().wait(timeout_seconds=0.01) is None


def test_activity_without_worker_times_out(sfn: Any, activity_arn: str) -> None:
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn, TimeoutSeconds=1))

    described = _finished(sfn, execution_arn)
    assert (described["status"], described["error"]) == ("FAILED", "States.Timeout")
    assert "ActivityTimedOut" in _event_types(sfn, execution_arn)
    # The timed-out task is still queued inside moto; no later worker may be handed it.
    assert "taskToken" not in sfn.get_activity_task(activityArn=activity_arn, workerName="late")


# --- Fix 5: StopExecution -------------------------------------------------------------------------


def test_stop_execution_aborts_execution_waiting_on_activity(sfn: Any, activity_arn: str) -> None:
    timeout_seconds = 2
    execution_arn = _start(sfn, _activity_machine(sfn, activity_arn, TimeoutSeconds=timeout_seconds))
    wait_for(lambda: "ActivityScheduled" in _event_types(sfn, execution_arn), what="the activity task")
    started = time.monotonic()

    sfn.stop_execution(executionArn=execution_arn, error="Cancelled", cause="cancelled by alice")

    described = sfn.describe_execution(executionArn=execution_arn)
    assert described["status"] == "ABORTED"
    assert "stopDate" in described
    # The waiting task is woken at once: the program ends well before the activity's timeout.
    aborted = wait_for(
        lambda: [e for e in _history(sfn, execution_arn) if e["type"] == "ExecutionAborted"],
        what="the ExecutionAborted event",
        timeout=timeout_seconds / 2,
    )
    assert aborted[0]["executionAbortedEventDetails"] == {
        "error": "Cancelled",
        "cause": "cancelled by alice",
    }
    # Past the moment the activity's timeout would have fired, it is still ABORTED, not FAILED.
    while time.monotonic() < started + timeout_seconds + 0.5:
        assert sfn.describe_execution(executionArn=execution_arn)["status"] == "ABORTED"
        time.sleep(0.1)
    assert "ExecutionFailed" not in _event_types(sfn, execution_arn)
    assert "taskToken" not in sfn.get_activity_task(activityArn=activity_arn, workerName="late")


def test_stop_right_after_start_aborts_before_later_states_run(sfn: Any) -> None:
    definition = {
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Next": "Pause"},
            "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Last"},
            "Last": {"Type": "Pass", "End": True},
        },
    }
    machine_arn = sfn.create_state_machine(
        name=_unique("stopped"), definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]
    execution_arn = _start(sfn, machine_arn)

    sfn.stop_execution(executionArn=execution_arn, error="Cancelled", cause="changed my mind")

    assert sfn.describe_execution(executionArn=execution_arn)["status"] == "ABORTED"
    wait_for(
        lambda: "ExecutionAborted" in _event_types(sfn, execution_arn), what="the ExecutionAborted event"
    )
    entered = [
        event["stateEnteredEventDetails"]["name"]
        for event in _history(sfn, execution_arn)
        if "stateEnteredEventDetails" in event
    ]
    assert "Last" not in entered
    assert sfn.describe_execution(executionArn=execution_arn)["status"] == "ABORTED"


# --- Fix 6: unnamed executions --------------------------------------------------------------------


def test_start_execution_without_name_gets_uuid(sfn: Any) -> None:
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    machine_arn = sfn.create_state_machine(
        name=_unique("unnamed"), definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]

    first = sfn.start_execution(stateMachineArn=machine_arn)["executionArn"]
    second = sfn.start_execution(stateMachineArn=machine_arn)["executionArn"]

    names = [sfn.describe_execution(executionArn=arn)["name"] for arn in (first, second)]
    assert [str(uuid.UUID(name)) for name in names] == names
    assert names[0] != names[1]
    assert first.endswith(":" + names[0])


# --- History paging (no fix; the executor relies on it) ---------------------------------------------


def test_execution_history_paging_loop_collects_every_event(sfn: Any) -> None:
    # moto 5.2.5 ignores maxResults and answers with the whole history and no nextToken; a
    # nextToken loop (here boto3's paginator) must still collect every event exactly once.
    states = {f"Step{i}": {"Type": "Pass", "Next": f"Step{i + 1}"} for i in range(5)}
    states["Step5"] = {"Type": "Pass", "End": True}
    machine_arn = sfn.create_state_machine(
        name=_unique("paged"),
        definition=json.dumps({"StartAt": "Step0", "States": states}),
        roleArn=ROLE_ARN,
    )["stateMachineArn"]
    execution_arn = _start(sfn, machine_arn)
    _finished(sfn, execution_arn)

    pages = sfn.get_paginator("get_execution_history").paginate(
        executionArn=execution_arn, PaginationConfig={"PageSize": 4}
    )
    paged = [event for page in pages for event in page["events"]]

    assert [event["id"] for event in paged] == list(range(1, 15))
    assert (paged[0]["type"], paged[-1]["type"]) == ("ExecutionStarted", "ExecutionSucceeded")


# --- apply_moto_compat ----------------------------------------------------------------------------


def test_apply_moto_compat_is_idempotent(emulator: EmbeddedEmulator) -> None:
    get_activity_task = moto_compat.StepFunctionResponse.get_activity_task
    stop_execution = moto_compat.StepFunctionsParserBackend.stop_execution

    moto_compat.apply_moto_compat(activity_poll_seconds=ACTIVITY_POLL_SECONDS)

    assert moto_compat.StepFunctionResponse.get_activity_task is get_activity_task
    assert moto_compat.StepFunctionsParserBackend.stop_execution is stop_execution


def test_apply_moto_compat_refuses_other_moto_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto_compat.importlib.metadata, "version", lambda name: "5.3.0")

    with pytest.raises(RuntimeError, match=r"moto 5\.2\.5 internals but moto 5\.3\.0"):
        moto_compat.apply_moto_compat()


def test_emulator_client_kwargs_use_region_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    kwargs = emulator_client_kwargs("http://127.0.0.1:1")

    assert kwargs["region_name"] == "eu-west-1"
    assert kwargs["aws_access_key_id"] == kwargs["aws_secret_access_key"] == "testing"


def test_concurrent_pollers_each_get_a_different_task(sfn: Any, activity_arn: str) -> None:
    machine_arn = _activity_machine(sfn, activity_arn)
    executions = [_start(sfn, machine_arn, {"n": n}) for n in range(3)]
    tasks: list[dict] = []

    def worker(name: str) -> None:
        tasks.append(_poll(sfn, activity_arn, worker_name=name))

    threads = [threading.Thread(target=worker, args=(f"worker-{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert sorted(json.loads(task["input"])["n"] for task in tasks) == [0, 1, 2]
    for task in tasks:
        sfn.send_task_success(taskToken=task["taskToken"], output=task["input"])
    assert [_finished(sfn, arn)["status"] for arn in executions] == ["SUCCEEDED"] * 3


# --- Fix 7: paged history -------------------------------------------------------------------------


def test_execution_history_pages_in_both_orders_as_aws_does(sfn: Any) -> None:
    states = {f"p{i}": {"Type": "Pass", "Next": f"p{i + 1}"} for i in range(5)}
    states["p5"] = {"Type": "Pass", "End": True}
    machine = sfn.create_state_machine(
        name=_unique("paged"), definition=json.dumps({"StartAt": "p0", "States": states}), roleArn=ROLE_ARN
    )["stateMachineArn"]
    execution = _start(sfn, machine)
    _finished(sfn, execution)
    everything = _history(sfn, execution)
    assert [event["id"] for event in everything] == list(range(1, len(everything) + 1))
    assert len(everything) > 8

    def pages(reverse: bool) -> list[list[int]]:
        read, kwargs = [], {"executionArn": execution, "maxResults": 4, "reverseOrder": reverse}
        while True:
            page = sfn.get_execution_history(**kwargs)
            read.append([event["id"] for event in page["events"]])
            if "nextToken" not in page:
                return read
            kwargs["nextToken"] = page["nextToken"]

    forward, backward = pages(False), pages(True)
    ids = [event["id"] for event in everything]
    assert all(len(page) == 4 for page in forward[:-1]) and sum(forward, []) == ids
    assert sum(backward, []) == ids[::-1]
    with pytest.raises(ClientError) as refused:
        sfn.get_execution_history(executionArn=execution, nextToken="not-a-token")
    assert refused.value.response["Error"]["Code"] == "InvalidToken"


# --- Fix 8: the end status last -------------------------------------------------------------------


def test_an_ended_execution_has_its_output_or_error_before_its_status(sfn: Any) -> None:
    """Whoever reads an ended status (DescribeExecution, the status change event) reads the output,
    or the error and cause, with it: each status assignment is watched for what was set by then."""
    from moto.stepfunctions.parser.backend.execution import Execution

    seen: list[tuple[str, str, Any, Any]] = []
    watched = Execution.exec_status

    def set_status(self: Execution, value: Any) -> None:
        fields = self.__dict__  # None is assigned before output and error exist
        seen.append(
            (
                fields.get("exec_arn"),
                getattr(value, "value", value),
                fields.get("output"),
                fields.get("error"),
            )
        )
        watched.fset(self, value)

    Execution.exec_status = property(watched.fget, set_status)
    try:
        executions = {}
        for end, status in (
            ({"Type": "Pass", "Result": {"done": True}, "End": True}, "SUCCEEDED"),
            ({"Type": "Fail", "Error": "Broken", "Cause": "it broke"}, "FAILED"),
        ):
            definition = {"StartAt": "end", "States": {"end": end}}
            machine = sfn.create_state_machine(
                name=_unique("ordered"), definition=json.dumps(definition), roleArn=ROLE_ARN
            )["stateMachineArn"]
            executions[status] = _start(sfn, machine)
            assert _finished(sfn, executions[status])["status"] == status
    finally:
        Execution.exec_status = watched
    ends = {(arn, status): (output, error) for arn, status, output, error in seen if status != "RUNNING"}
    assert ends[(executions["SUCCEEDED"], "SUCCEEDED")] == ({"done": True}, None)
    assert ends[(executions["FAILED"], "FAILED")] == (None, "Broken")


# --- Fix 9: DynamoDB writes one at a time ---------------------------------------------------------


def test_of_concurrent_conditional_writes_of_one_item_exactly_one_succeeds(
    emulator: EmbeddedEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models import table as moto_table

    # moto reads the item, parses the condition, then writes: a slower parse holds the window
    # between the check and the write open, so that every round's writers meet in it.
    parse = moto_table.get_filter_expression

    def slow_parse(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.02)
        return parse(*args, **kwargs)

    monkeypatch.setattr(moto_table, "get_filter_expression", slow_parse)
    dynamodb = boto3.client("dynamodb", **emulator_client_kwargs(emulator.endpoint_url))
    table = _unique("conditional")
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    writers, rounds = 8, 10
    barrier = threading.Barrier(writers)
    won: dict[int, list[str]] = {round_: [] for round_ in range(rounds)}

    def write(writer: str) -> None:
        for round_ in range(rounds):
            barrier.wait()
            try:
                dynamodb.put_item(
                    TableName=table,
                    Item={"pk": {"S": f"item-{round_}"}, "owner": {"S": writer}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except ClientError as err:
                assert err.response["Error"]["Code"] == "ConditionalCheckFailedException"
            else:
                won[round_].append(writer)

    threads = [threading.Thread(target=write, args=(f"writer-{i}",)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {round_: len(winners) for round_, winners in won.items()} == dict.fromkeys(range(rounds), 1)
