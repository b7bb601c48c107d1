"""AWS events as the fast path to the store (issue 10): the embedded emulator emits Step Functions
execution and Batch job status changes into its EventBridge, the rules deliver them to the
service's SQS queue, and the event consumer applies them. Here the background updater is off, so
only events can bring a workflow to its end, and the workflows are read through the listing, which
never asks the backend."""

from __future__ import annotations

import uuid

import pytest

from executor.aws_events import workflow_id_of
from executor.batch import WORKFLOW_ID_TAG
from tests.conftest import Api, app_config, load_fixture, serve, wait_for
from tests.test_api_batch import chain, post_batch_definition


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
