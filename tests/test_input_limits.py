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
