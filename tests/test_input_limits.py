"""Caller mistakes are 4xx, never 500 (issue 9 point 8): every input limit of AWS the service can
check is checked first, with a 400 naming the field; over real HTTP against the served app, plus the
pure rules."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from tests.conftest import Api, app_config, load_fixture, serve
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.inputs import SERVICE_STATE_MACHINE_TAG_KEYS, string_tags


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def definition_body(name: str, **extra) -> dict:
    body = load_fixture("api", "echo-chain.json")
    body["name"] = name
    body.update(extra)
    return body


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"message": message}


def workflow_ids(api: Api, definition_name: str) -> list[str]:
    response = api.get(f"/workflows?workflowDefinitionName={definition_name}")
    assert response.status_code == 200, response.text
    return [workflow["id"] for workflow in response.json()]


# Page tokens


def test_page_token_at_the_edge_of_time_is_400_on_the_dynamodb_store():
    # Year 1 at +01:00 is before datetime's minimum once moved to UTC (OverflowError).
    position = {"createdAt": "0001-01-01T00:00:00.000+01:00", "id": "x"}
    token = base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")
    served = serve(app_config(store="dynamodb", dynamodb_prefix=unique("limits")))
    try:
        response = requests.get(
            f"http://127.0.0.1:{served.port}/workflows",
            params={"workflowDefinitionName": "x", "pageToken": token},
            timeout=30,
        )
        assert_error(response, 400, f"invalid page token: {token}")
    finally:
        served.stop()


# Tags


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"": "v"}, "tags key '' must be 1-128 characters long, not 0"),
        ({"k" * 129: "v"}, f"tags key '{'k' * 129}' must be 1-128 characters long, not 129"),
        ({"aws:owner": "v"}, "tags key 'aws:owner' starts with 'aws:', which AWS reserves"),
        ({"AWS:owner": "v"}, "tags key 'AWS:owner' starts with 'aws:', which AWS reserves"),
        ({"k": "v" * 257}, "tags value of 'k' must be at most 256 characters long, not 257"),
        (
            {"k!": "v"},
            "tags key 'k!' contains '!', which AWS tags do not allow "
            "(letters, numbers, spaces and _ . : / = + - @ only)",
        ),
        (
            {"k": "a|b"},
            "tags value of 'k' contains '|', which AWS tags do not allow "
            "(letters, numbers, spaces and _ . : / = + - @ only)",
        ),
        ({f"k{i}": "v" for i in range(51)}, "tags has 51 tags, over AWS's limit of 50 per resource"),
    ],
)
def test_tags_outside_aws_rules_are_refused(tags, message):
    with pytest.raises(InvalidInput) as raised:
        string_tags(tags)
    assert raised.value.message == message


def test_tags_within_aws_rules_are_accepted():
    tags = {"Team name": "Ünïcode 42 _.:/=+-@", "k" * 128: "v" * 256, "empty": ""}
    tags.update({f"k{i}": "v" for i in range(47)})
    assert string_tags(tags) == tags


def test_the_service_tag_keys_are_the_state_machine_tags_it_adds():
    from executor.sfn_naming import state_machine_tags

    assert tuple(state_machine_tags("ns", "def", 1, "start", None)) == SERVICE_STATE_MACHINE_TAG_KEYS


def test_default_tags_over_aws_rules_are_400_and_nothing_is_saved(api):
    name = unique("limits-tags")
    response = api.post("/workflow-definitions", definition_body(name, defaultTags={"aws:x": "v"}))
    assert_error(response, 400, "defaultTags key 'aws:x' starts with 'aws:', which AWS reserves")
    assert api.get(f"/workflow-definitions/{name}").status_code == 404


def test_default_tags_count_with_the_tags_the_service_adds(api):
    name = unique("limits-tags")
    tags = {f"k{i}": "v" for i in range(46)}
    response = api.post("/workflow-definitions", definition_body(name, defaultTags=tags))
    assert_error(
        response,
        400,
        "defaultTags has 46 tags; with the 5 the service adds that is 51, "
        "over AWS's limit of 50 per resource",
    )
    assert api.get(f"/workflow-definitions/{name}").status_code == 404
    # A default tag that overrides one of the service's own is counted once.
    tags = {**{f"k{i}": "v" for i in range(44)}, "application": "mine"}
    response = api.post("/workflow-definitions", definition_body(name, defaultTags=tags))
    assert response.status_code == 201, response.text


def test_start_tags_over_aws_rules_are_400_and_nothing_is_saved(api):
    name = unique("limits-tags")
    assert api.post("/workflow-definitions", definition_body(name)).status_code == 201
    response = api.post("/workflows", {"workflowDefinition": {"name": name}, "tags": {"k": "<b>"}})
    assert_error(
        response,
        400,
        "tags value of 'k' contains '<', which AWS tags do not allow "
        "(letters, numbers, spaces and _ . : / = + - @ only)",
    )
    assert workflow_ids(api, name) == []


def test_start_tags_count_with_the_definitions_default_tags(api):
    name = unique("limits-tags")
    default_tags = {f"d{i}": "v" for i in range(30)}
    body = definition_body(name, defaultTags=default_tags)
    assert api.post("/workflow-definitions", body).status_code == 201
    tags = {f"t{i}": "v" for i in range(21)}
    response = api.post("/workflows", {"workflowDefinition": {"name": name}, "tags": tags})
    assert_error(response, 400, "tags has 51 tags, over AWS's limit of 50 per resource")
    assert workflow_ids(api, name) == []


# AWS's refusals


def client_error(code: str, message: str, status: int, operation: str = "StartExecution"):
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "message", "status", "expected"),
    [
        ("TooManyTags", "too many tags", 400, "CreateStateMachine: too many tags"),
        ("ValidationException", "1 validation error", 400, "CreateStateMachine: 1 validation error"),
        ("InvalidName", "bad name", 400, "CreateStateMachine: bad name"),
        ("InvalidExecutionInput", "bad input", 400, "CreateStateMachine: bad input"),
        ("InvalidDefinition", "bad definition", 400, "CreateStateMachine: bad definition"),
        # moto refuses a definition its parser rejects with a 400 and no code.
        ("", "ASLParserException", 400, "CreateStateMachine: ASLParserException"),
        (
            "",
            "<!DOCTYPE html><html><title>400 Bad Request</title></html>",
            400,
            "CreateStateMachine: Step Functions answered HTTP 400 with an HTML page",
        ),
    ],
)
def test_aws_refusals_of_the_callers_input_are_400(code, message, status, expected):
    from executor.sfn import translate_aws_error

    translated = translate_aws_error(client_error(code, message, status), "CreateStateMachine")
    assert (type(translated), translated.message) == (InvalidInput, expected)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "",
            "<!doctype html>\n<html><title>500 Internal Server Error</title></html>",
            "StartExecution: Step Functions answered HTTP 500 with an HTML page",
        ),
        (
            "InternalError",
            "  <html><body>oops</body></html>",
            "StartExecution: InternalError: Step Functions answered HTTP 500 with an HTML page",
        ),
        ("", "", "StartExecution: Step Functions answered HTTP 500 with no message"),
        ("KmsThrottled", "slow down", "StartExecution: KmsThrottled: slow down"),
    ],
)
def test_backend_errors_never_carry_html(code, message, expected):
    from executor.sfn import translate_aws_error
    from workflow_manager.domain.errors import BackendError

    translated = translate_aws_error(client_error(code, message, 500), "StartExecution")
    assert (type(translated), translated.message) == (BackendError, expected)


def test_a_definition_the_emulator_refuses_is_400_at_start_and_nothing_is_saved(api):
    # The service's validation allows fields it does not know; moto's ASL parser refuses them with a
    # 400 and no error code.
    name = unique("limits-asl")
    state_machine = {"StartAt": "x", "States": {"x": {"Type": "Pass", "Bogus": 1, "End": True}}}
    response = api.post("/workflow-definitions", {"name": name, "stateMachine": state_machine})
    assert response.status_code == 201, response.text
    response = api.post("/workflows", {"workflowDefinition": {"name": name}})
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith('CreateStateMachine: ASLParserException line 6:6, at "Bogus"'), message
    assert workflow_ids(api, name) == []


# Nesting of Parallel and Map states


def nested_parallels(levels: int, map_every: int = 0) -> dict:
    """A machine whose leaf Pass state is inside `levels` Parallel states (every `map_every`-th one a
    Map state instead)."""
    machine = {"StartAt": "leaf", "States": {"leaf": {"Type": "Pass", "End": True}}}
    for level in range(levels):
        if map_every and level % map_every == 0:
            state = {"Type": "Map", "ItemProcessor": machine, "End": True}
        else:
            state = {"Type": "Parallel", "Branches": [machine], "End": True}
        machine = {"StartAt": f"level{level}", "States": {f"level{level}": state}}
    return machine


def test_states_nested_deeper_than_the_limit_are_refused():
    from workflow_manager.domain.states import MAX_NESTING_DEPTH, check_nesting_depth

    check_nesting_depth(nested_parallels(MAX_NESTING_DEPTH, map_every=3))
    with pytest.raises(InvalidInput) as raised:
        check_nesting_depth(nested_parallels(MAX_NESTING_DEPTH + 1, map_every=3))
    assert (
        raised.value.message == "state 'leaf' is nested in 33 Parallel and Map states, over the limit of 32"
    )


def test_a_definition_nested_deeper_than_the_limit_is_400_and_not_saved(api):
    name = unique("limits-nesting")
    response = api.post("/workflow-definitions", {"name": name, "stateMachine": nested_parallels(33)})
    assert_error(response, 400, "state 'leaf' is nested in 33 Parallel and Map states, over the limit of 32")
    assert api.get(f"/workflow-definitions/{name}").status_code == 404
    response = api.post("/workflow-definitions", {"name": name, "stateMachine": nested_parallels(32)})
    assert response.status_code == 201, response.text
    # What is saved runs: the emulator's parser takes a machine at the limit.
    started = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {}})
    assert started.status_code == 200, started.text
    assert (
        api.wait_for_status(started.json()["id"], {"succeeded", "failed", "cancelled"})["status"]
        == "succeeded"
    )


# Request bodies: depth and chunked transfer


@pytest.mark.parametrize(
    ("body", "limit", "exceeds"),
    [
        (b'{"a": [[1]]}', 3, False),
        (b'{"a": [[[1]]]}', 3, True),
        (b'{"a": "[[[[{{{{"}', 1, False),
        (b'{"a": "quote \\" [[[[ and backslash \\\\", "b": [1]}', 2, False),
        (b'{"a": "\\\\"}' + b"[" * 5, 4, True),
        (b"[" * 1000 + b"]" * 1000, 200, True),
        (b"not json at all", 0, False),
    ],
)
def test_json_depth_is_counted_outside_strings(body, limit, exceeds):
    from workflow_manager.api.middleware import json_depth_exceeds

    assert json_depth_exceeds(body, limit) is exceeds


def test_a_body_nested_1000_deep_is_400_and_nothing_is_saved(api):
    name = unique("limits-deep")
    body = f'{{"name": "{name}", "stateMachine": {{"a": {"[" * 1000}{"]" * 1000}}}}}'
    response = api.post("/workflow-definitions", data=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "request body is nested deeper than 200 levels")
    assert api.get(f"/workflow-definitions/{name}").status_code == 404


def test_a_definition_of_150_nested_parallel_states_is_400_and_not_saved(api):
    name = unique("limits-deep")
    response = api.post("/workflow-definitions", {"name": name, "stateMachine": nested_parallels(150)})
    assert_error(response, 400, "request body is nested deeper than 200 levels")
    assert api.get(f"/workflow-definitions/{name}").status_code == 404


@pytest.mark.parametrize("content_type", ["application/json", None])
def test_a_small_chunked_body_is_read(api, content_type):
    name = unique("limits-chunked")
    body = json.dumps(definition_body(name)).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    # An iterator makes requests send `Transfer-Encoding: chunked` and no Content-Length.
    response = api.post("/workflow-definitions", data=iter([body[:10], body[10:]]), headers=headers)
    assert response.status_code == 201, response.text
    assert [version["name"] for version in api.get(f"/workflow-definitions/{name}").json()] == [name]


def test_a_chunked_body_over_the_limit_is_413(api):
    response = api.post(
        "/workflow-definitions",
        data=iter([b" " * 600_000, b" " * 600_000]),
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 413, "request body is over the limit of 1048576 bytes")


def test_a_chunked_body_nested_too_deep_is_400(api):
    response = api.post(
        "/workflow-definitions",
        data=iter([b'{"a": ', b"[" * 300, b"]" * 300 + b"}"]),
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "request body is nested deeper than 200 levels")
