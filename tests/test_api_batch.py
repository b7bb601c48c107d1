"""Batch workflows over HTTP on the embedded default: definitions with `manager: batch` run as AWS
Batch jobs (the emulator's runner really runs each job's command), with dependencies, data passed
between jobs, failure, cancel and resume."""

from __future__ import annotations

import json

from tests.conftest import load_fixture, wait_for
from tests.test_api import TERMINAL, assert_error, unique


def post_batch_definition(api, state_machine: dict, name: str | None = None) -> str:
    name = name or unique("batch")
    body = {"name": name, "manager": "batch", "stateMachine": state_machine}
    response = api.post("/workflow-definitions", body)
    assert response.status_code == 201, response.text
    assert response.json()["manager"] == "batch"
    return name


def chain(*steps: tuple[str, str]) -> dict:
    """A state machine of Task states run one after the other: (state name, job definition)."""
    states = {}
    for index, (state, resource) in enumerate(steps):
        states[state] = {"Type": "Task", "Resource": resource}
        if index + 1 < len(steps):
            states[state]["Next"] = steps[index + 1][0]
        else:
            states[state]["End"] = True
    return {"StartAt": steps[0][0], "States": states}


def start(api, name: str, input_value) -> dict:
    response = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": input_value})
    assert response.status_code == 200, response.text
    return response.json()


def by_state(workflow: dict) -> dict[str, dict]:
    return {job["state"]: job for job in workflow["jobs"]}


def wait_for_job_status(api, name: str, workflow_id: str, state: str, status: str) -> dict:
    """The workflow once its job of `state` has `status`. A workflow is failed as soon as one job
    fails (the reference's rule); Batch fails the dependents a moment later, and the background
    updater records it: this reads the listing, which never asks Batch."""

    def check():
        [workflow] = [
            wf
            for wf in api.get(f"/workflows?workflowDefinitionName={name}&limit=100").json()
            if wf["id"] == workflow_id
        ]
        return workflow if by_state(workflow)[state]["status"] == status else None

    return wait_for(check, 30, 0.2, f"job {state} of {workflow_id} to be {status}")


def test_batch_definition_with_a_choice_is_400(api):
    body = load_fixture("api", "parallel-map-choice.json")
    body["name"] = unique("batch-choice")
    body["manager"] = "batch"
    response = api.post("/workflow-definitions", body)
    assert_error(response, 400)
    assert "each-item" in response.json()["message"] or "decide" in response.json()["message"]
    assert api.get(f"/workflow-definitions/{body['name']}").status_code == 404


def test_batch_workflow_runs_jobs_in_dependency_order_and_passes_outputs(api):
    name = post_batch_definition(api, load_fixture("batch", "pipeline.json"))
    started = start(api, name, {"repository": "shop"})
    assert started["status"] == "queued"
    assert sorted(j["state"] for j in started["jobs"]) == [
        "build-a",
        "build-b",
        "checkout",
        "package",
        "publish",
    ]
    finished = api.wait_for_status(started["id"], TERMINAL, timeout=60)
    assert finished["status"] == "succeeded", finished
    jobs = by_state(finished)
    assert all(job["status"] == "succeeded" for job in jobs.values())
    assert jobs["checkout"]["stoppedAt"] <= jobs["build-a"]["startedAt"]
    assert jobs["checkout"]["stoppedAt"] <= jobs["build-b"]["startedAt"]
    assert max(jobs["build-a"]["stoppedAt"], jobs["build-b"]["stoppedAt"]) <= jobs["package"]["startedAt"]
    assert jobs["package"]["stoppedAt"] <= jobs["publish"]["startedAt"]

    checkout = json.loads(jobs["checkout"]["output"])
    assert checkout == {"state": "checkout", "input": {"repository": "shop"}}
    package_input = json.loads(jobs["package"]["output"])["input"]
    assert sorted(build["state"] for build in package_input) == ["build-a", "build-b"]
    assert all(build["input"] == checkout for build in package_input)
    assert json.loads(finished["output"])["state"] == "publish"


def test_failing_batch_job_fails_the_workflow_and_aborts_its_dependents(api):
    name = post_batch_definition(
        api, chain(("first", "wfm-test-step"), ("broken", "wfm-test-fail"), ("after", "wfm-test-step"))
    )
    started = start(api, name, {})
    assert api.wait_for_status(started["id"], TERMINAL, timeout=60)["status"] == "failed"
    finished = wait_for_job_status(api, name, started["id"], "after", "aborted_deps_failed")
    assert finished["status"] == "failed"
    jobs = by_state(finished)
    assert jobs["first"]["status"] == "succeeded"
    assert jobs["broken"]["status"] == "failed"
    assert jobs["broken"]["attempts"][-1]["exitCode"] == 3
    assert jobs["after"]["status"] == "aborted_deps_failed"
    assert finished["lastJob"]["state"] == "broken"


def test_cancel_of_a_running_batch_workflow(api):
    name = post_batch_definition(
        api, chain(("first", "wfm-test-step"), ("long", "wfm-test-sleep"), ("after", "wfm-test-step"))
    )
    started = start(api, name, {})

    def long_job_running():
        workflow = api.get(f"/workflows/{started['id']}").json()
        return by_state(workflow)["long"]["status"] == "running"

    wait_for(long_job_running, 60, 0.2, "the long job to run")
    response = api.delete(f"/workflows/{started['id']}", {"reason": "stop the build"})
    assert response.status_code == 200, response.text
    workflow = api.get(f"/workflows/{started['id']}").json()
    assert workflow["status"] == "cancelled"
    assert workflow["statusReason"] == "stop the build"

    def jobs_aborted():
        jobs = by_state(api.get(f"/workflows/{started['id']}?fetchHistory=true").json())
        return jobs if jobs["long"]["status"] == jobs["after"]["status"] == "aborted_by_user" else None

    jobs = wait_for(jobs_aborted, 30, 0.2, "the cancelled jobs to be aborted_by_user")
    assert jobs["first"]["status"] == "succeeded"


def test_resume_of_a_failed_batch_workflow_from_the_failed_state(api, tmp_path):
    name = post_batch_definition(
        api,
        chain(
            ("prepare", "wfm-test-step"),
            ("check", "wfm-test-needs-file"),
            ("finish", "wfm-test-step"),
        ),
    )
    marker = tmp_path / "fixed.txt"
    started = start(api, name, {"path": str(marker)})
    assert api.wait_for_status(started["id"], TERMINAL, timeout=60)["status"] == "failed"
    wait_for_job_status(api, name, started["id"], "finish", "aborted_deps_failed")

    marker.write_text("fixed")
    response = api.post(f"/workflows/{started['id']}", {"StartAt": "check"})
    assert response.status_code == 200, response.text
    retry = response.json()
    assert retry["retryFor"] == started["id"]
    assert sorted(j["state"] for j in retry["jobs"]) == ["check", "finish"]
    finished = api.wait_for_status(retry["id"], TERMINAL, timeout=60)
    assert finished["status"] == "succeeded", finished
    jobs = by_state(finished)
    assert json.loads(jobs["check"]["output"]) == {"content": "fixed"}
    assert api.get(f"/workflows/{started['id']}").json()["retries"] == [retry["id"]]


def test_a_start_that_fails_part_way_is_recorded_failed_with_its_jobs_terminated(api):
    state_machine = load_fixture("batch", "pipeline.json")
    state_machine["States"]["package"]["Resource"] = "wfm-test-no-such-definition"
    name = post_batch_definition(api, state_machine)
    response = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {}})
    assert_error(response, 400)
    message = response.json()["message"]
    assert "SubmitJob for state 'package'" in message
    assert message.endswith("(3 of 5 jobs had been submitted and were terminated)")

    [recorded] = api.get(f"/workflows?workflowDefinitionName={name}").json()
    assert message.startswith(f"workflow {recorded['id']} failed to start: ")
    assert recorded["status"] == "failed"
    assert recorded["statusReason"] in message
    assert sorted(j["state"] for j in recorded["jobs"]) == ["build-a", "build-b", "checkout"]

    def terminated():
        workflow = api.get(f"/workflows/{recorded['id']}?fetchHistory=true").json()
        statuses = {j["status"] for j in workflow["jobs"]}
        return workflow if statuses <= {"failed", "aborted_deps_failed", "aborted_by_user"} else None

    wait_for(terminated, 30, 0.2, "the submitted jobs to be terminated")


def test_background_updater_finishes_a_batch_workflow_without_anyone_calling_get(api):
    name = post_batch_definition(api, chain(("only", "wfm-test-step")))
    started = start(api, name, {"n": 1})

    def listed_succeeded():
        # The listing reads the store only; the background updater asks Batch.
        [workflow] = api.get(f"/workflows?workflowDefinitionName={name}").json()
        return workflow if workflow["status"] == "succeeded" else None

    workflow = wait_for(listed_succeeded, 60, 0.2, "the updater to record the batch workflow")
    assert workflow["id"] == started["id"]
    assert [job["status"] for job in workflow["jobs"]] == ["succeeded"]
