"""Only the integrations a definition may use (CONTRACT 9.1): the policy on its own, then over real
HTTP on the served app, for definitions of both managers and for state resource URIs, with and
without WFM_ALLOWED_INTEGRATIONS."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import beside_config, serve
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.integrations import IntegrationPolicy

AWS_SDK = "arn:aws:states:::aws-sdk:iam:listRoles"
ALLOW_IAM = ("arn:aws:states:::aws-sdk:iam:",)


def task(resource) -> dict:
    return {"StartAt": "t", "States": {"t": {"Type": "Task", "Resource": resource, "End": True}}}


@pytest.mark.parametrize(
    "resource",
    [
        "echo",
        "my-state-resource",
        "lambda:resize",
        "glue:nightly",
        "batch:wfm-test-step",
        "workflow:child",
        "workflow:child:3",
        "approval",
        "arn:aws:states:us-east-1:123456789012:activity:echo",
        "arn:aws:lambda:us-east-1:123456789012:function:resize",
        "arn:aws:lambda:us-east-1:123456789012:function:resize:live",
        "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:resize",
        "arn:aws:batch:us-east-1:123456789012:job-definition/build:4",
        "arn:aws:states:::lambda:invoke",
        "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "arn:aws:states:::batch:submitJob",
        "arn:aws:states:::batch:submitJob.sync",
        "arn:aws:states:::glue:startJobRun.sync",
        "arn:aws:states:::states:startExecution.sync:2",
        "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "arn:aws:states:::sns:publish",
        "arn:aws:states:::events:putEvents",
        "arn:aws-cn:states:::events:putEvents.waitForTaskToken",
    ],
)
def test_the_contracts_resources_are_allowed(resource):
    IntegrationPolicy().check_state_machine(task(resource))
    IntegrationPolicy().check_uri(resource)


@pytest.mark.parametrize(
    "resource",
    [
        AWS_SDK,
        "arn:aws:states:::aws-sdk:s3:getObject",
        "arn:aws:states:::ecs:runTask.sync",
        "arn:aws:states:::dynamodb:putItem",
        "arn:aws:states:::lambda:invoke.sync:3",
        "arn:aws:states:::sns:publish.sync.extra",
        "arn:aws:iam::123456789012:role/admin",
        "arn:aws:states:us-east-1:123456789012:stateMachine:other",
        "lambda:",
        "s3:bucket",
        "approval:x",
    ],
)
def test_anything_else_is_refused_naming_the_state_and_the_resource(resource):
    with pytest.raises(InvalidInput) as raised:
        IntegrationPolicy().check_state_machine(task(resource))
    assert raised.value.message == (
        f"state 't' uses resource '{resource}', which is not an allowed integration"
        " (an operator may allow it with WFM_ALLOWED_INTEGRATIONS)"
    )
    with pytest.raises(InvalidInput, match="StateResource uri .* is not an allowed integration"):
        IntegrationPolicy().check_uri(resource)


@pytest.mark.parametrize("processor_key", ["Iterator", "ItemProcessor"])
def test_the_check_reaches_map_iterations_and_parallel_branches(processor_key):
    nested = {
        "StartAt": "fan",
        "States": {
            "fan": {
                "Type": "Parallel",
                "Branches": [
                    task("echo"),
                    {
                        "StartAt": "each",
                        "States": {
                            "each": {
                                "Type": "Map",
                                processor_key: task(AWS_SDK) | {"StartAt": "t"},
                                "End": True,
                            }
                        },
                    },
                ],
                "End": True,
            }
        },
    }
    with pytest.raises(InvalidInput, match=f"state 't' uses resource '{AWS_SDK}'"):
        IntegrationPolicy().check_state_machine(nested)
    IntegrationPolicy(ALLOW_IAM).check_state_machine(nested)


def test_listed_prefixes_allow_more_and_only_what_they_start():
    policy = IntegrationPolicy(ALLOW_IAM)
    policy.check_state_machine(task(AWS_SDK))
    with pytest.raises(InvalidInput):
        policy.check_state_machine(task("arn:aws:states:::aws-sdk:s3:getObject"))


def test_a_resource_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidInput, match="state 't': Resource must be a string, not dict"):
        IntegrationPolicy().check_state_machine(task({"arn": "x"}))


# Over HTTP


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def definition(resource: str, manager: str = "step-functions") -> dict:
    return {"name": unique("integration"), "manager": manager, "stateMachine": task(resource)}


def assert_refused(response, resource: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["message"] == (
        f"state 't' uses resource '{resource}', which is not an allowed integration"
        " (an operator may allow it with WFM_ALLOWED_INTEGRATIONS)"
    )


@pytest.mark.parametrize("manager", ["step-functions", "batch"])
def test_posting_a_definition_with_an_unlisted_integration_is_400_and_saves_nothing(api, manager):
    body = definition(AWS_SDK, manager)
    assert_refused(api.post("/workflow-definitions", body), AWS_SDK)
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


def test_a_new_version_with_an_unlisted_integration_is_400_and_not_created(api):
    body = definition("echo")
    assert api.post("/workflow-definitions", body).status_code == 201
    body["stateMachine"] = task(AWS_SDK)
    assert_refused(api.put(f"/workflow-definitions/{body['name']}", body), AWS_SDK)
    versions = api.get(f"/workflow-definitions/{body['name']}?latest=false").json()
    assert [v["version"] for v in versions] == [0]


def test_a_state_resource_with_an_unlisted_uri_is_400_and_not_saved(api):
    name = unique("res")
    message = f"StateResource uri '{AWS_SDK}' is not an allowed integration (an operator may allow it with WFM_ALLOWED_INTEGRATIONS)"
    posted = api.post("/state-resources", {"name": name, "namespace": "default", "uri": AWS_SDK})
    assert posted.status_code == 400 and posted.json()["message"] == message
    put = api.put(f"/state-resources/default/{name}", {"name": name, "namespace": "default", "uri": AWS_SDK})
    assert put.status_code == 400 and put.json()["message"] == message
    assert api.get(f"/state-resources/default/{name}").status_code == 404


@pytest.fixture(scope="module")
def permissive_api(served_app):
    from tests.conftest import Api

    served = serve(
        beside_config(
            served_app,
            allowed_integrations=ALLOW_IAM,
            start_workers=False,
            updater_enabled=False,
        )
    )
    yield Api(f"http://127.0.0.1:{served.port}")
    served.stop()


def test_wfm_allowed_integrations_lets_its_prefixes_through(permissive_api):
    body = definition(AWS_SDK)
    assert permissive_api.post("/workflow-definitions", body).status_code == 201
    name = unique("res")
    created = permissive_api.post("/state-resources", {"name": name, "namespace": "default", "uri": AWS_SDK})
    assert created.status_code == 201, created.text
    other = "arn:aws:states:::aws-sdk:s3:getObject"
    assert_refused(permissive_api.post("/workflow-definitions", definition(other)), other)


@pytest.mark.parametrize("key", ["ItemReader", "ResultWriter"])
def test_a_distributed_maps_reader_and_writer_are_held_to_the_list(key):
    s3 = "arn:aws:states:::s3:getObject"
    machine = {
        "StartAt": "each",
        "States": {
            "each": {
                "Type": "Map",
                "ItemProcessor": task("echo"),
                key: {"Resource": s3, "Parameters": {"Bucket": "b", "Key": "k"}},
                "End": True,
            }
        },
    }
    with pytest.raises(InvalidInput) as raised:
        IntegrationPolicy().check_state_machine(machine)
    assert raised.value.message == (
        f"state 'each' uses resource '{s3}', which is not an allowed integration"
        " (an operator may allow it with WFM_ALLOWED_INTEGRATIONS)"
    )
    IntegrationPolicy(("arn:aws:states:::s3:",)).check_state_machine(machine)
