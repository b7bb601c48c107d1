"""AWS events as the fast path to the store (issue 10): the embedded emulator emits Step Functions
execution and Batch job status changes into its EventBridge, the rules deliver them to the
service's SQS queue, and the event consumer applies them. Here the background updater is off, so
only events can bring a workflow to its end, and the workflows are read through the listing, which
never asks the backend."""

from __future__ import annotations

import json
import uuid

import pytest

from executor.aws_events import ensure_event_routing, status_of, workflow_id_of
from executor.batch import WORKFLOW_ID_TAG
from executor.sfn_history import STATUS_REASON_WORKFLOW_TIMED_OUT
from tests.aws_proxy import AwsProxy
from tests.conftest import Api, app_config, load_fixture, proxied_config, serve, wait_for
from tests.test_api_batch import chain, post_batch_definition
from workflow_manager.domain.models import WorkflowStatus


@pytest.fixture(scope="module")
def events_only_api(served_app):
    # An embedded app shares the process's emulator; a prefix of its own gives it its own queue.
    served = serve(
        app_config(
            updater_enabled=False, start_workers=False, dynamodb_prefix=f"events-{uuid.uuid4().hex[:8]}"
        )
    )
    assert served.app.runtime.events is not None
    yield Api(f"http://127.0.0.1:{served.port}"), served.app.runtime
    served.stop()


def listed(api: Api, name: str, workflow_id: str) -> dict:
    [workflow] = [
        wf for wf in api.get(f"/workflows?workflowDefinitionName={name}").json() if wf["id"] == workflow_id
    ]
    return workflow


def test_a_step_functions_workflow_reaches_its_end_by_events_alone(events_only_api):
    api, runtime = events_only_api
    body = {**load_fixture("api", "pass-only.json"), "name": f"by-events-{uuid.uuid4().hex[:8]}"}
    assert api.post("/workflow-definitions", body).status_code == 201
    started = api.post("/workflows", {"workflowDefinition": {"name": body["name"]}, "input": {"n": 1}}).json()
    finished = wait_for(
        lambda: (wf := listed(api, body["name"], started["id"]))["status"] == "succeeded" and wf,
        30,
        0.2,
        "the succeeded event to be applied",
    )
    assert finished["stoppedAt"]
    assert runtime.events.applied >= 2  # RUNNING and SUCCEEDED


def test_a_batch_workflow_reaches_its_end_by_events_alone(events_only_api):
    api, _runtime = events_only_api
    name = post_batch_definition(api, chain(("first", "wfm-test-step"), ("second", "wfm-test-step")))
    started = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {"n": 2}}).json()
    finished = wait_for(
        lambda: (wf := listed(api, name, started["id"]))["status"] == "succeeded" and wf,
        60,
        0.2,
        "the Batch job events to be applied",
    )
    assert [job["status"] for job in finished["jobs"]] == ["succeeded", "succeeded"]


def test_events_name_their_workflow_or_none():
    sfn = {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"name": "wf-1", "status": "SUCCEEDED"},
    }
    tagged = {
        "source": "aws.batch",
        "detail-type": "Batch Job State Change",
        "detail": {"jobId": "j", "tags": {WORKFLOW_ID_TAG: "wf-2"}},
    }
    by_environment = {
        "source": "aws.batch",
        "detail-type": "Batch Job State Change",
        "detail": {"jobId": "j", "container": {"environment": [{"name": "WORKFLOW_ID", "value": "wf-3"}]}},
    }
    foreign = {"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": {"jobId": "j"}}
    other = {
        "source": "aws.ec2",
        "detail-type": "EC2 Instance State-change Notification",
        "detail": {"name": "x"},
    }
    assert [workflow_id_of(e) for e in (sfn, tagged, by_environment, foreign, other)] == [
        "wf-1",
        "wf-2",
        "wf-3",
        None,
        None,
    ]


def test_a_lost_event_is_repaired_by_the_sweep(served_app):
    """Events that never arrive (here: a queue no rule feeds) leave the work to the updater, which
    runs as the sweep (under its lease) and still records the workflow's end."""
    import boto3

    from workflow_manager.emulator.server import emulator_client_kwargs

    sqs = boto3.client("sqs", **emulator_client_kwargs(served_app.app.runtime.emulator.endpoint_url))
    silent_queue = sqs.create_queue(QueueName=f"silent-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    served = serve(app_config(start_workers=False, events_queue_url=silent_queue))
    try:
        api, runtime = Api(f"http://127.0.0.1:{served.port}"), served.app.runtime
        assert runtime.events is not None and runtime.updater is not None
        body = {**load_fixture("api", "pass-only.json"), "name": f"lost-events-{uuid.uuid4().hex[:8]}"}
        assert api.post("/workflow-definitions", body).status_code == 201
        started = api.post("/workflows", {"workflowDefinition": {"name": body["name"]}, "input": {}}).json()
        wait_for(
            lambda: listed(api, body["name"], started["id"])["status"] == "succeeded",
            30,
            0.2,
            "the sweep to record the end",
        )
        assert runtime.events.applied == 0
    finally:
        served.stop()


def _sfn_event(**detail) -> dict:
    return {"source": "aws.states", "detail-type": "Step Functions Execution Status Change", "detail": detail}


def test_a_step_functions_status_event_tells_what_describe_execution_would():
    succeeded = status_of(
        _sfn_event(
            name="wf-1",
            status="SUCCEEDED",
            stopDate=1_700_000_000_500,
            output='{"n": 1}',
            outputDetails={"included": True},
            error=None,
            cause=None,
        )
    )
    assert succeeded is not None
    assert succeeded.status == WorkflowStatus.SUCCEEDED
    assert succeeded.output == '{"n": 1}'
    assert succeeded.stopped_at.isoformat() == "2023-11-14T22:13:20.500000+00:00"
    assert succeeded.jobs is None

    failed = status_of(_sfn_event(name="wf-1", status="FAILED", stopDate=1, error="Broken", cause="it broke"))
    assert (failed.status, failed.status_reason) == (WorkflowStatus.FAILED, "it broke\nBroken")
    timed_out = status_of(_sfn_event(name="wf-1", status="TIMED_OUT", stopDate=1))
    assert (timed_out.status, timed_out.status_reason) == (
        WorkflowStatus.FAILED,
        STATUS_REASON_WORKFLOW_TIMED_OUT,
    )
    assert status_of(_sfn_event(name="wf-1", status="ABORTED", stopDate=1)).status == WorkflowStatus.CANCELLED
    assert status_of(_sfn_event(name="wf-1", status="RUNNING")).status == WorkflowStatus.RUNNING

    # What the event does not tell is asked of the backend (None: refresh the workflow).
    too_large = _sfn_event(name="wf-1", status="SUCCEEDED", output=None, outputDetails={"included": False})
    assert status_of(too_large) is None
    assert status_of(_sfn_event(name="wf-1", status="FAILED", stopDate=1)) is None  # no error
    assert status_of(_sfn_event(name="wf-1", status="PENDING_REDRIVE")) is None
    batch = {
        "source": "aws.batch",
        "detail-type": "Batch Job State Change",
        "detail": {"status": "SUCCEEDED"},
    }
    assert status_of(batch) is None


@pytest.fixture
def counted_api(served_app):
    """An app on the emulator through a proxy that counts its AWS calls, reading events from a
    queue of its own that the emulator's rules feed; no updater, so only events move workflows."""
    import boto3

    from workflow_manager.emulator.server import emulator_client_kwargs

    endpoint = served_app.app.runtime.emulator.endpoint_url
    kwargs = emulator_client_kwargs(endpoint)
    prefix = f"counted-{uuid.uuid4().hex[:8]}"
    queue_url = ensure_event_routing(boto3.client("events", **kwargs), boto3.client("sqs", **kwargs), prefix)
    proxy = AwsProxy(endpoint)
    served = serve(
        proxied_config(
            proxy.url,
            updater_enabled=False,
            events_queue_url=queue_url,
        )
    )
    yield Api(f"http://127.0.0.1:{served.port}"), proxy, served.app.runtime
    served.stop()
    proxy.stop()


def _wait_then(end: dict) -> dict:
    # Choice and Succeed states are jobs (as Tasks are) and need no worker.
    return {
        "StartAt": "pause",
        "States": {
            "pause": {"Type": "Wait", "Seconds": 2, "Next": "decide"},
            "decide": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "last"}],
                "Default": "last",
            },
            "last": end,
        },
    }


@pytest.mark.parametrize(
    ("end", "status", "reason"),
    [
        ({"Type": "Succeed"}, "succeeded", ""),
        ({"Type": "Fail", "Error": "Broken", "Cause": "it broke"}, "failed", "it broke\nBroken"),
    ],
)
def test_a_workflow_runs_and_ends_by_its_events_without_describe_execution_and_its_jobs_follow(
    counted_api, end, status, reason
):
    api, proxy, runtime = counted_api
    name = f"ended-by-event-{uuid.uuid4().hex[:8]}"
    assert (
        api.post("/workflow-definitions", {"name": name, "stateMachine": _wait_then(end)}).status_code == 201
    )
    started = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {"n": 1}}).json()
    wait_for(lambda: listed(api, name, started["id"])["status"] == "running", 30, 0.1, "the running event")
    # The start's own write made it running (a RUNNING event that came before needs nothing), and
    # the end is the event's: no DescribeExecution at all.
    ended = wait_for(
        lambda: (wf := listed(api, name, started["id"]))["status"] == status and wf, 30, 0.1, "the end event"
    )
    assert proxy.calls["DescribeExecution"] == 0
    assert ended["stoppedAt"]
    assert ended.get("statusReason", "") == reason
    # The jobs are read after (GetExecutionHistory, by the consumer's deferred refresh: the
    # listing asks the backend nothing), and the workflow leaves the active list.
    finished = wait_for(
        lambda: (
            (wf := listed(api, name, started["id"]))["jobs"]
            and started["id"] not in runtime.workflows.active_workflow_ids()
            and wf
        ),
        30,
        0.2,
        "the jobs to be read after the end",
    )
    assert proxy.calls["DescribeExecution"] == 0
    assert proxy.calls["GetExecutionHistory"] >= 1
    states = [job["state"] for job in finished["jobs"]]
    if status == "succeeded":
        assert states == ["decide", "last"]
        assert json.loads(finished["output"])["n"] == 1
    else:
        assert states == ["decide"]
        assert finished["lastJob"]["state"] == "decide"  # recorded once the jobs were read
