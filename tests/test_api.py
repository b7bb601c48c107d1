"""The HTTP contract, over real HTTP against the real app on the embedded emulator: every endpoint
and every status code of the contract's endpoint table, with workflows that really execute on
activity workers running real commands."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.conftest import DATA, Api, app_config, beside_config, load_fixture, serve, wait_for

TERMINAL = {"succeeded", "failed", "cancelled"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post_definition(api: Api, fixture: str, name: str | None = None) -> dict:
    body = load_fixture("api", fixture)
    body["name"] = name or unique(fixture.removesuffix(".json"))
    response = api.post("/workflow-definitions", body)
    assert response.status_code == 201, response.text
    return response.json()


def start(api: Api, name: str, input_value=None, path: str = "/workflows", **extra) -> dict:
    body = {"workflowDefinition": {"name": name}, **extra}
    if input_value is not None:
        body["input"] = input_value
    response = api.post(path, body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: requests.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("message"), str) and body["message"]
    if message is not None:
        assert body["message"] == message


# Health


def test_health_is_200(api):
    assert api.get("/_health").status_code == 200


def test_live_and_ready_are_200_ok(api):
    for path in ("/_live", "/_ready"):
        response = api.get(path)
        assert (response.status_code, response.json()) == (200, {"status": "ok"}), path


def test_health_is_503_when_the_executor_backend_is_unreachable():
    from tests.conftest import free_port

    config = app_config(
        backend="endpoint",
        aws_endpoint=f"http://127.0.0.1:{free_port()}",
        account_id="123456789012",
        start_workers=False,
        updater_enabled=False,
    )
    served = serve(config)
    try:
        response = requests.get(f"http://127.0.0.1:{served.port}/_health", timeout=60)
        assert_error(response, 503)
        assert_error(requests.get(f"http://127.0.0.1:{served.port}/_ready", timeout=60), 503)
        # Liveness touches no dependency: the process serves.
        live = requests.get(f"http://127.0.0.1:{served.port}/_live", timeout=60)
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
    finally:
        served.stop()


# Workflow definitions


def test_new_definition_is_version_0_and_listed(api):
    created = post_definition(api, "echo-chain.json")
    assert created["version"] == 0
    uuid.UUID(created["id"])
    assert created["manager"] == "step-functions"
    assert created["createdAt"].endswith("Z") and len(created["createdAt"]) == 24
    assert created["defaultTags"] == {"team": "tests", "tier": "dev"}
    listed = api.get("/workflow-definitions")
    assert listed.status_code == 200
    assert [d["version"] for d in listed.json() if d["name"] == created["name"]] == [0]


def test_new_definition_with_an_existing_name_is_409(api):
    created = post_definition(api, "echo-chain.json")
    body = load_fixture("api", "echo-chain.json")
    body["name"] = created["name"]
    assert_error(api.post("/workflow-definitions", body), 409, f"Already Exists: {created['name']}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("name"), "WorkflowDefinition `name` is required"),
        (lambda b: b["stateMachine"].__setitem__("States", {}), "Must define at least one state"),
        (lambda b: b["stateMachine"].pop("StartAt"), "StartAt is a required field"),
        (
            lambda b: b["stateMachine"]["States"]["first"].__setitem__("Next", "nowhere"),
            "invalid transition in 'first': 'nowhere'",
        ),
        (
            lambda b: b["defaultTags"].__setitem__("n", 1),
            "error converting tag value to string: 1",
        ),
    ],
)
def test_invalid_definition_is_400_with_the_reference_message(api, change, message):
    body = load_fixture("api", "echo-chain.json")
    body["name"] = unique("invalid")
    change(body)
    assert_error(api.post("/workflow-definitions", body), 400, message)
    assert api.get(f"/workflow-definitions/{body.get('name', 'x')}").status_code == 404


def test_definition_schema_violations_are_400(api):
    body = load_fixture("api", "echo-chain.json")
    body["name"] = unique("schema")
    body["stateMachine"]["States"]["first"]["Type"] = "Teleport"
    assert_error(api.post("/workflow-definitions", body), 400)
    response = api.post(
        "/workflow-definitions", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400)
    assert_error(api.post("/workflow-definitions"), 400)


def test_update_definition_creates_the_next_version(api):
    created = post_definition(api, "echo-chain.json")
    body = load_fixture("api", "echo-chain.json")
    body["name"] = created["name"]
    body["version"] = 42
    body["stateMachine"]["Comment"] = "second version"
    response = api.put(f"/workflow-definitions/{created['name']}", body)
    assert response.status_code == 201, response.text
    updated = response.json()
    assert updated["version"] == 1 and updated["id"] != created["id"]

    latest = api.get(f"/workflow-definitions/{created['name']}")
    assert latest.status_code == 200
    assert [d["version"] for d in latest.json()] == [1]
    versions = api.get(f"/workflow-definitions/{created['name']}?latest=false").json()
    assert [d["version"] for d in versions] == [0, 1]
    exact = api.get(f"/workflow-definitions/{created['name']}/0")
    assert exact.status_code == 200 and exact.json()["version"] == 0


def test_update_definition_errors(api):
    created = post_definition(api, "echo-chain.json")
    body = load_fixture("api", "echo-chain.json")
    body["name"] = "another-name"
    assert_error(
        api.put(f"/workflow-definitions/{created['name']}", body),
        400,
        "Name in path must match WorkflowDefinition object",
    )
    body["name"] = unique("unknown")
    assert_error(api.put(f"/workflow-definitions/{body['name']}", body), 404)


def test_get_definition_errors(api):
    created = post_definition(api, "echo-chain.json")
    assert_error(api.get(f"/workflow-definitions/{unique('nobody')}"), 404)
    assert_error(api.get(f"/workflow-definitions/{created['name']}?latest=maybe"), 400)
    assert_error(api.get(f"/workflow-definitions/{created['name']}/7"), 404, f"{created['name']}@7")
    assert_error(api.get(f"/workflow-definitions/{created['name']}/seven"), 400)


# Starting and watching workflows


def test_reference_readme_flow_with_array_input_on_the_jobs_alias(api):
    hello = json.loads((DATA / "hello-workflow.post.json").read_text())
    hello["name"] = unique("hello-workflow")
    assert api.post("/workflow-definitions", hello).status_code == 201
    response = api.post(
        "/jobs",
        {
            "workflowDefinition": {"name": hello["name"], "version": 0},
            "input": ["arg1", "arg2", "arg3"],
        },
    )
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["status"] == "queued"
    assert started["input"] == '["arg1","arg2","arg3"]'
    assert started["queue"] == "default" and started["retries"] == [] and started["jobs"] == []
    assert started["resolvedByUser"] is False

    finished = api.wait_for_status(started["id"], TERMINAL)
    assert finished["status"] == "succeeded", finished
    [job] = finished["jobs"]
    assert job["state"] == "hello" and job["status"] == "succeeded"
    assert json.loads(job["input"]) == ["arg1", "arg2", "arg3"]
    assert "Hello" in job["output"]


def test_object_input_runs_every_task_with_status_attempts_input_and_output(api):
    definition = post_definition(api, "echo-chain.json")
    started = start(api, definition["name"], {"greeting": "hi"}, tags={"tier": "prod"})
    assert started["tags"] == {"team": "tests", "tier": "prod"}
    assert started["input"] == '{"greeting":"hi"}'
    finished = api.wait_for_status(started["id"], TERMINAL)
    assert finished["status"] == "succeeded", finished
    assert finished["resolvedByUser"] is True
    assert [j["state"] for j in finished["jobs"]] == ["first", "second"]
    for job in finished["jobs"]:
        assert job["status"] == "succeeded"
        assert job["attempts"] == []
        assert job["stateResource"]["name"] == "echo"
        assert job["stateResource"]["namespace"] == "default"
        assert job["startedAt"] <= job["stoppedAt"]
    first_input = json.loads(finished["jobs"][0]["input"])
    assert first_input == {"greeting": "hi", "_EXECUTION_NAME": started["id"]}
    output = json.loads(finished["output"])
    assert output["first"]["echoed"]["greeting"] == "hi"
    assert output["second"]["echoed"]["first"] == output["first"]


def test_start_input_as_json_text_and_latest_version(api):
    definition = post_definition(api, "echo-chain.json")
    body = load_fixture("api", "echo-chain.json")
    body["name"] = definition["name"]
    body["stateMachine"]["States"]["second"]["ResultPath"] = "$.v1"
    assert api.put(f"/workflow-definitions/{definition['name']}", body).status_code == 201
    started = start(api, definition["name"], '{"n": 1}')
    assert started["workflowDefinition"]["version"] == 1
    assert started["input"] == '{"n": 1}'
    pinned = api.post("/workflows", {"workflowDefinition": {"name": definition["name"], "version": 0}}).json()
    assert pinned["workflowDefinition"]["version"] == 0 and pinned["input"] == "{}"
    finished = api.wait_for_status(started["id"], TERMINAL)
    assert "v1" in json.loads(finished["output"])


def test_start_errors(api):
    definition = post_definition(api, "echo-chain.json")
    assert_error(api.post("/workflows", {"workflowDefinition": {"name": unique("nobody")}}), 404)
    assert_error(
        api.post("/workflows", {"workflowDefinition": {"name": definition["name"], "version": 9}}),
        404,
        f"{definition['name']}@9",
    )
    ref = {"name": definition["name"]}
    assert_error(api.post("/workflows", {"workflowDefinition": ref, "input": "not json"}), 400)
    assert_error(
        api.post("/workflows", {"workflowDefinition": ref, "tags": {"n": 2}}),
        400,
        "error converting tag value to string: 2",
    )
    assert_error(api.post("/workflows", {"workflowDefinition": ref, "namespace": "a b"}), 400)
    assert_error(api.post("/workflows", {"input": "{}"}), 400)
    assert_error(api.post("/jobs"), 400)
    listed = api.get(f"/workflows?workflowDefinitionName={definition['name']}").json()
    assert listed == []


def test_get_unknown_workflow_is_404(api):
    missing = str(uuid.uuid4())
    assert_error(api.get(f"/workflows/{missing}"), 404, missing)


def test_failed_workflow_reports_the_failed_job(api):
    definition = post_definition(api, "failing.json")
    started = start(api, definition["name"], {})
    finished = api.wait_for_status(started["id"], TERMINAL)
    assert finished["status"] == "failed"
    [job] = finished["jobs"]
    assert job["status"] == "failed"
    assert job["statusReason"].endswith("sfncli.CommandExitedNonzero")
    assert "the task failed on purpose" in job["statusReason"]
    assert finished["lastJob"]["state"] == "boom"
    assert finished["resolvedByUser"] is False


def test_parallel_map_and_choice_states_become_jobs(api):
    definition = post_definition(api, "parallel-map-choice.json")
    started = start(api, definition["name"], {"items": [{"n": 1}, {"n": 2}], "go": True})
    finished = api.wait_for_status(started["id"], TERMINAL)
    assert finished["status"] == "succeeded", finished
    states = sorted(j["state"] for j in finished["jobs"])
    assert states == ["decide", "done", "left", "per-item", "per-item", "right"]
    for job in finished["jobs"]:
        assert job["status"] == "succeeded"
        if job["state"] in ("left", "right", "per-item"):
            assert job["stateResource"]["name"] == "echo"
    items = sorted(json.loads(j["input"])["item"]["n"] for j in finished["jobs"] if j["state"] == "per-item")
    assert items == [1, 2]


def test_a_failed_parallel_ends_the_job_of_its_other_branch(api):
    definition = post_definition(api, "parallel-one-branch-fails.json")
    started = start(api, definition["name"], {"seconds": 3})
    finished = api.wait_for_status(started["id"], TERMINAL)
    assert finished["status"] == "failed"
    jobs = {job["state"]: job for job in finished["jobs"]}
    assert jobs["boom"]["status"] == "failed"
    # The slow branch never reports: its job ends with the execution, so the workflow is done
    # (it can be resolved, and resume answers about the state rather than "still active").
    assert jobs["slow"]["status"] in ("aborted_deps_failed", "failed")
    assert_error(
        api.post(f"/workflows/{started['id']}", {"StartAt": "after"}),
        400,
        "No job found for StartAt after",
    )


# Listing


def test_list_pages_with_next_page_path(api):
    definition = post_definition(api, "echo-chain.json")
    ids = [start(api, definition["name"], {"i": i})["id"] for i in range(5)]
    name = definition["name"]
    response = api.get(f"/workflows?workflowDefinitionName={name}&limit=2")
    assert response.status_code == 200
    seen = [wf["id"] for wf in response.json()]
    while "X-Next-Page-Path" in response.headers:
        next_path = response.headers["X-Next-Page-Path"]
        query = parse_qs(urlparse(next_path).query)
        assert query["workflowDefinitionName"] == [name] and query["limit"] == ["2"]
        response = api.get(next_path)
        assert response.status_code == 200
        seen.extend(wf["id"] for wf in response.json())
    assert seen == list(reversed(ids))

    oldest = api.get(f"/workflows?workflowDefinitionName={name}&oldestFirst=true&limit=10")
    assert [wf["id"] for wf in oldest.json()] == ids
    assert "X-Next-Page-Path" not in oldest.headers

    summary = api.get(f"/workflows?workflowDefinitionName={name}&summaryOnly=true").json()
    assert summary[0]["workflowDefinition"] == {"name": name, "version": 0}
    assert summary[0]["jobs"] == [] and "output" not in summary[0]


def test_list_filters_by_status(api):
    definition = post_definition(api, "failing.json")
    started = start(api, definition["name"], {})
    api.wait_for_status(started["id"], TERMINAL)
    name = definition["name"]
    failed = api.get(f"/workflows?workflowDefinitionName={name}&status=failed").json()
    assert [wf["id"] for wf in failed] == [started["id"]]
    assert api.get(f"/workflows?workflowDefinitionName={name}&status=running").json() == []
    unresolved = api.get(f"/workflows?workflowDefinitionName={name}&resolvedByUser=false").json()
    assert [wf["id"] for wf in unresolved] == [started["id"]]


def test_list_errors_are_400(api):
    assert_error(api.get("/workflows"), 400)
    assert_error(api.get("/workflows?workflowDefinitionName=x&limit=10001"), 400)
    assert_error(api.get("/workflows?workflowDefinitionName=x&status=dancing"), 400)
    assert_error(api.get("/workflows?workflowDefinitionName=x&pageToken=garbage!"), 400)


# Cancel


def test_cancel_of_a_workflow_held_in_a_long_task(api):
    definition = post_definition(api, "long-task.json")
    started = start(api, definition["name"], {"seconds": 120})

    def running_job():
        workflow = api.get(f"/workflows/{started['id']}").json()
        return any(j["status"] == "running" for j in workflow["jobs"])

    wait_for(running_job, 30, 0.2, "the long task to start")
    response = api.delete(f"/workflows/{started['id']}", {"reason": "try out cancelling"})
    assert response.status_code == 200, response.text
    workflow = api.get(f"/workflows/{started['id']}").json()
    assert workflow["status"] == "cancelled"
    assert workflow["statusReason"] == "try out cancelling"
    assert workflow["resolvedByUser"] is True
    assert workflow["jobs"][-1]["status"] == "aborted_by_user"
    again = api.delete(f"/workflows/{started['id']}", {"reason": "again"})
    assert again.status_code == 200
    assert api.get(f"/workflows/{started['id']}").json()["statusReason"] == "try out cancelling"


def test_cancel_errors(api):
    assert_error(api.delete(f"/workflows/{uuid.uuid4()}", {"reason": "x"}), 404)
    definition = post_definition(api, "echo-chain.json")
    started = start(api, definition["name"], {})
    assert_error(api.delete(f"/workflows/{started['id']}"), 400)
    api.wait_for_status(started["id"], TERMINAL)
    assert_error(
        api.delete(f"/workflows/{started['id']}", {"reason": "too late"}),
        400,
        f"Cancellation not allowed. Workflow {started['id']} is succeeded",
    )


# Idempotency-Key (CONTRACT 9.2)


def test_the_same_idempotency_key_and_body_return_the_first_workflow(api):
    definition = post_definition(api, "pass-only.json")
    key = unique("key")
    body = {"workflowDefinition": {"name": definition["name"]}, "input": {"n": 1}}
    first = api.post("/workflows", body, headers={"Idempotency-Key": key})
    again = api.post("/jobs", body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (200, 200), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    other = api.post("/workflows", {**body, "input": {"n": 2}}, headers={"Idempotency-Key": key})
    assert_error(
        other,
        409,
        f"Idempotency-Key '{key}' was used for another request, which started workflow {first.json()['id']}",
    )
    without_key = start(api, definition["name"], {"n": 1})
    assert without_key["id"] != first.json()["id"]
    listed = api.get(f"/workflows?workflowDefinitionName={definition['name']}").json()
    assert sorted(w["id"] for w in listed) == sorted([first.json()["id"], without_key["id"]])


def test_an_idempotency_key_over_255_characters_is_400_and_starts_nothing(api):
    definition = post_definition(api, "pass-only.json")
    response = api.post(
        "/workflows",
        {"workflowDefinition": {"name": definition["name"]}},
        headers={"Idempotency-Key": "k" * 256},
    )
    assert_error(response, 400)
    assert api.get(f"/workflows?workflowDefinitionName={definition['name']}").json() == []


def test_100_concurrent_starts_with_20_repeated_keys_start_80_workflows_that_all_finish(api):
    from concurrent.futures import ThreadPoolExecutor

    definition = post_definition(api, "pass-only.json")
    keys = [unique("key") for _ in range(80)]
    requests_keys = keys + keys[:20]  # 20 keys sent twice

    def send(key):
        body = {"workflowDefinition": {"name": definition["name"]}, "input": {"key": key}}
        return key, Api(api.base_url).post("/workflows", body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(send, requests_keys))
    assert [r.status_code for _, r in results if r.status_code != 200] == []
    ids_by_key: dict[str, set[str]] = {}
    for key, response in results:
        ids_by_key.setdefault(key, set()).add(response.json()["id"])
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    listed = api.get(f"/workflows?workflowDefinitionName={definition['name']}&limit=1000").json()
    assert len(listed) == 80
    assert {w["id"] for w in listed} == {next(iter(ids)) for ids in ids_by_key.values()}
    for workflow in listed:
        assert api.wait_for_status(workflow["id"], TERMINAL, timeout=60)["status"] == "succeeded"


# Resume and resolve


def test_resume_from_the_failed_state_succeeds_once_the_cause_is_fixed(api, tmp_path):
    definition = post_definition(api, "resumable.json")
    marker = tmp_path / "fixed.txt"
    started = start(api, definition["name"], {"path": str(marker)})
    failed = api.wait_for_status(started["id"], TERMINAL)
    assert failed["status"] == "failed"
    assert [j["state"] for j in failed["jobs"]] == ["prepare", "check"]

    assert_error(api.post(f"/workflows/{started['id']}", {"StartAt": "nowhere"}), 400)
    assert_error(
        api.post(f"/workflows/{started['id']}", {"StartAt": "finish"}),
        400,
        "No job found for StartAt finish",
    )
    marker.write_text("fixed by hand")
    response = api.post(f"/workflows/{started['id']}", {"StartAt": "check"})
    assert response.status_code == 200, response.text
    retry = response.json()
    assert retry["retryFor"] == started["id"]
    assert retry["workflowDefinition"]["stateMachine"]["StartAt"] == "check"
    assert sorted(retry["workflowDefinition"]["stateMachine"]["States"]) == ["check", "finish"]
    assert json.loads(retry["input"])["prepared"]["echoed"]["path"] == str(marker)

    original = api.get(f"/workflows/{started['id']}").json()
    assert original["retries"] == [retry["id"]]
    assert_error(api.post(f"/workflows/{started['id']}", {"StartAt": "check"}), 409)

    finished = api.wait_for_status(retry["id"], TERMINAL)
    assert finished["status"] == "succeeded", finished
    assert [j["state"] for j in finished["jobs"]] == ["check", "finish"]
    assert json.loads(finished["jobs"][0]["output"])["checked"]["content"] == "fixed by hand"


def test_concurrent_resumes_start_exactly_one_retry(api):
    from concurrent.futures import ThreadPoolExecutor

    definition = post_definition(api, "resumable.json")
    started = start(api, definition["name"], {"path": "/nonexistent/never"})
    api.wait_for_status(started["id"], TERMINAL)

    def resume(_):
        return Api(api.base_url).post(f"/workflows/{started['id']}", {"StartAt": "check"})

    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(resume, range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409], [r.text for r in responses]
    retry_id = next(r.json()["id"] for r in responses if r.status_code == 200)
    assert api.get(f"/workflows/{started['id']}").json()["retries"] == [retry_id]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["message"] == (
            f"Cannot resume workflow {started['id']} because it has active descendants"
        )
    # Only the one retry was ever recorded for the definition: the losers left no record behind.
    listed = api.get(f"/workflows?workflowDefinitionName={definition['name']}&limit=100").json()
    assert sorted(w["id"] for w in listed) == sorted([started["id"], retry_id])
    api.wait_for_status(retry_id, TERMINAL)


def test_resume_errors(api):
    assert_error(api.post(f"/workflows/{uuid.uuid4()}", {"StartAt": "x"}), 404)
    definition = post_definition(api, "long-task.json")
    started = start(api, definition["name"], {"seconds": 60})
    refused = api.post(f"/workflows/{started['id']}", {"StartAt": "nap"})
    assert_error(refused, 409)
    # Queued, or running by now (its RUNNING event may have been applied already).
    assert refused.json()["message"] in {
        f"Workflow {started['id']} active: {s}" for s in ("queued", "running")
    }
    assert_error(api.post(f"/workflows/{started['id']}"), 400)
    api.delete(f"/workflows/{started['id']}", {"reason": "done testing"})


def test_resume_of_a_state_that_never_started_is_400(api):
    definition = post_definition(api, "resumable.json")
    started = start(api, definition["name"], {"path": "/nonexistent/never"})
    api.wait_for_status(started["id"], TERMINAL)
    # 'finish' never ran; 'check' ran and failed; a cancelled resolved workflow is done too.
    assert_error(
        api.post(f"/workflows/{started['id']}", {"StartAt": "finish"}),
        400,
        "No job found for StartAt finish",
    )


def test_resolve(api):
    definition = post_definition(api, "failing.json")
    started = start(api, definition["name"], {})
    api.wait_for_status(started["id"], TERMINAL)
    response = api.post(f"/workflows/{started['id']}/resolved")
    assert response.status_code == 201
    assert api.get(f"/workflows/{started['id']}").json()["resolvedByUser"] is True
    assert_error(
        api.post(f"/workflows/{started['id']}/resolved"),
        409,
        f"workflow {started['id']} already resolved",
    )
    assert_error(api.post(f"/workflows/{uuid.uuid4()}/resolved"), 404)


# State resources


def test_state_resources_crud(api):
    namespace, name = unique("ns"), unique("res")
    uri = "arn:aws:states:us-east-1:123456789012:activity:custom-activity"
    created = api.post("/state-resources", {"name": name, "namespace": namespace, "uri": uri})
    assert created.status_code == 201, created.text
    assert created.json()["type"] == "ActivityARN" and created.json()["lastUpdated"]
    got = api.get(f"/state-resources/{namespace}/{name}")
    assert got.status_code == 200 and got.json()["uri"] == uri

    lambda_uri = "arn:aws:lambda:us-east-1:123456789012:function:f"
    put = api.put(
        f"/state-resources/{namespace}/{name}",
        {"name": name, "namespace": namespace, "uri": lambda_uri},
    )
    assert put.status_code == 201 and put.json()["type"] == "LambdaFunctionARN"
    assert_error(
        api.put(f"/state-resources/{namespace}/{name}", {"name": "x", "namespace": namespace, "uri": uri}),
        400,
        "StateResource.Name does not match name in path",
    )
    assert_error(
        api.put(f"/state-resources/{namespace}/{name}", {"name": name, "namespace": "y", "uri": uri}),
        400,
        "StateResource.Namespace does not match namespace in path",
    )
    assert api.delete(f"/state-resources/{namespace}/{name}").status_code == 200
    assert_error(api.get(f"/state-resources/{namespace}/{name}"), 404)
    assert_error(api.delete(f"/state-resources/{namespace}/{name}"), 404)
    assert_error(api.post("/state-resources", {"name": "a b", "namespace": namespace, "uri": uri}), 400)


def test_state_resource_routes_a_task_to_its_activity(api):
    namespace = unique("ns")
    activity_arn = "arn:aws:states:us-east-1:123456789012:activity:default--echo"
    created = api.post(
        "/state-resources", {"name": "renamed-echo", "namespace": namespace, "uri": activity_arn}
    )
    assert created.status_code == 201
    body = load_fixture("api", "echo-chain.json")
    body["name"] = unique("routed")
    for state in body["stateMachine"]["States"].values():
        state["Resource"] = "renamed-echo"
    assert api.post("/workflow-definitions", body).status_code == 201
    started = start(api, body["name"], {"x": 1}, namespace=namespace)
    finished = api.wait_for_status(started["id"], TERMINAL)
    assert finished["status"] == "succeeded", finished


# Transport


def test_body_over_the_limit_is_413(api):
    body = load_fixture("api", "echo-chain.json")
    body["name"] = unique("big")
    body["stateMachine"]["Comment"] = "x" * (1024 * 1024 + 1)
    assert_error(api.post("/workflow-definitions", body), 413)
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


def test_request_over_the_timeout_is_503(served_app):
    config = beside_config(
        served_app,
        request_timeout_seconds=0.000001,
        start_workers=False,
        updater_enabled=False,
    )
    served = serve(config)
    try:
        response = requests.get(f"http://127.0.0.1:{served.port}/workflow-definitions", timeout=30)
        assert_error(response, 503, "Request timed out")
    finally:
        served.stop()


def test_unknown_route_and_method_are_json_errors(api):
    assert_error(api.get("/nothing-here"), 404)
    response = api.request("PATCH", "/workflows")
    assert_error(response, 405)
    assert "GET" in response.headers.get("Allow", "")


def test_path_with_control_characters_is_400(api):
    assert_error(api.get("/state-resources/%C3%B0%0A/name"), 400)
    assert_error(api.get("/workflows/abc%0A"), 400)


def test_swagger_ui_and_spec_are_served(api):
    spec = api.get("/swagger.json")
    assert spec.status_code == 200
    assert "/workflows/{workflowID}" in spec.json()["paths"]
    assert api.get("/ui/").status_code == 200


def test_curl_style_form_content_type_and_trailing_slash_are_accepted(api):
    definition = post_definition(api, "echo-chain.json")
    body = json.dumps({"workflowDefinition": {"name": definition["name"]}, "input": ["a"]})
    response = api.request(
        "POST",
        "/jobs/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["input"] == '["a"]'
