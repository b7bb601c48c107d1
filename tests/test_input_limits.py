"""Caller mistakes are 4xx, never 500 (issue 9 point 8): every input limit of AWS the service can
check is checked first, with a 400 naming the field; over real HTTP against the served app, plus the
pure rules."""

from __future__ import annotations

import base64
import json
import uuid

import requests

from tests.conftest import Api, app_config, load_fixture, serve


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
