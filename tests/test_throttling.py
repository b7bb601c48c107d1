"""Throttling (issue 9): an HTTP proxy in front of the session's emulator answers
`ThrottlingException` to the first calls of some Step Functions operations, as AWS does past its
quotas. Nothing is lost and nothing is left false: a start that stays throttled is a 503 that left
no record, its repeat with the same Idempotency-Key starts the workflow once, and the updater,
throttled too, still records the workflow's end."""

from __future__ import annotations

import pytest

from tests.aws_proxy import AwsProxy, Throttle, first_calls
from tests.conftest import Api, load_fixture, proxied_config, serve, wait_for

# Long enough for botocore to exhaust its retries of a throttled call in the worst case.
THROTTLED_START_SECONDS = 120


@pytest.fixture
def throttled_api(served_app):
    # wiring.RETRY_CONFIG's `max_attempts: 5` is botocore's retries after the first try: 6 throttled
    # StartExecution calls exhaust one start; 12 DescribeExecution ones fail two whole refreshes.
    proxy = AwsProxy(
        served_app.app.runtime.emulator.endpoint_url,
        {"StartExecution": first_calls(6, Throttle()), "DescribeExecution": first_calls(12, Throttle())},
    )
    served = serve(
        proxied_config(
            proxy.url,
            # The request waits for its start for as long as it takes (the default 3 s would
            # answer it `queued` while botocore still retries: tests/test_start_faults.py).
            # botocore's backoff before its 5 retries is random, up to 1+2+4+8+16 = 31 s, and the
            # adaptive mode's client-side rate adds to it after throttles: the wait and the
            # client's timeout leave room for the worst case.
            request_timeout_seconds=THROTTLED_START_SECONDS,
            start_wait_seconds=THROTTLED_START_SECONDS,
        )
    )
    yield Api(f"http://127.0.0.1:{served.port}", timeout_seconds=THROTTLED_START_SECONDS + 30), proxy
    served.stop()
    proxy.stop()


def test_a_throttled_start_leaves_no_record_and_its_repeat_ends_true(throttled_api):
    api, proxy = throttled_api
    body = {**load_fixture("api", "pass-only.json"), "name": "throttled-pass-only"}
    assert api.post("/workflow-definitions", body).status_code == 201
    start = {"workflowDefinition": {"name": body["name"]}, "input": {"n": 1}}
    key = {"Idempotency-Key": "throttled-start-1"}

    refused = api.post("/workflows", start, headers=key)
    assert refused.status_code == 503, (refused.text, proxy.calls, proxy.applied)
    assert refused.json()["message"] == "StartExecution: Step Functions is unavailable: Rate exceeded"
    assert proxy.applied["StartExecution"] == 6
    assert api.get(f"/workflows?workflowDefinitionName={body['name']}").json() == []

    started = api.post("/workflows", start, headers=key)
    assert started.status_code == 200, started.text
    workflow_id = started.json()["id"]
    finished = wait_for(
        lambda: (wf := api.get(f"/workflows/{workflow_id}").json())["status"] == "succeeded" and wf,
        2 * THROTTLED_START_SECONDS,  # two whole refreshes are throttled out first
        0.5,
        "the workflow to be recorded succeeded",
    )
    assert [job["state"] for job in finished["jobs"]] == []  # a Pass state makes no job
    assert finished["stoppedAt"]
    assert proxy.applied["DescribeExecution"] == 12
    listed = api.get(f"/workflows?workflowDefinitionName={body['name']}").json()
    assert [w["id"] for w in listed] == [workflow_id]
    assert api.post("/workflows", start, headers=key).json()["id"] == workflow_id
