"""Starts that outlast their request, lose an answer, are cancelled part-way, or whose service is
killed part-way (issue 9 point 5): the record ends true, with every Batch job the service
submitted recorded once and no job it cannot see or cancel.

An AwsProxy (tests/aws_proxy.py) in front of the session's emulator puts each fault exactly where
the test wants it. The SIGKILL tests run the service as separate processes (`workflow-manager
serve`, gunicorn) sharing one DynamoDB store on the emulator: one is killed mid-start, a fresh one
finishes what it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests

from executor.batch import WORKFLOW_ID_TAG
from executor.batch_results import results_table_name
from tests.aws_proxy import AwsProxy, Delay, Hold, LoseAnswer, Refuse, call_number
from tests.conftest import Api, free_port, load_fixture, proxied_config, serve, wait_for
from tests.test_api_batch import chain, post_batch_definition
from workflow_manager.emulator.server import emulator_client_kwargs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BATCH_QUEUE = "default"  # the session app's seeded job queue (Config.batch_default_queue)


@pytest.fixture
def proxied(served_app):
    """`proxied(rules, **config)`: an app of its own whose AWS calls go through an AwsProxy with
    `rules`, on the session's emulator (its store is the memory store unless WFM_STORE says)."""
    made = []

    def make(rules, **overrides):
        proxy = AwsProxy(served_app.app.runtime.emulator.endpoint_url, rules)
        served = serve(
            proxied_config(
                proxy.url,
                **overrides,
            )
        )
        made.append((served, proxy))
        return Api(f"http://127.0.0.1:{served.port}"), proxy

    yield make
    for served, proxy in made:
        served.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def batch(served_app):
    return boto3.client("batch", **emulator_client_kwargs(served_app.app.runtime.emulator.endpoint_url))


def tagged_jobs(batch, workflow: dict) -> list[dict]:
    """Every Batch job in the queue that carries the workflow's tag, whatever the service recorded."""
    names = sorted({job["name"] for job in workflow["jobs"]} | {f"{workflow['namespace']}--s*"})
    summaries = [
        summary
        for name in names
        for summary in batch.list_jobs(
            jobQueue=BATCH_QUEUE, filters=[{"name": "JOB_NAME", "values": [name]}]
        )["jobSummaryList"]
    ]
    ids = sorted({summary["jobId"] for summary in summaries})
    described = [
        job
        for start in range(0, len(ids), 100)
        for job in batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]
    ]
    return [job for job in described if job.get("tags", {}).get(WORKFLOW_ID_TAG) == workflow["id"]]


def steps(count: int, resource: str = "wfm-test-step") -> dict:
    return chain(*((f"s{index:02d}", resource) for index in range(1, count + 1)))


def wait_for_status(api: Api, workflow_id: str, statuses: set[str], timeout: float = 90) -> dict:
    def check():
        response = api.get(f"/workflows/{workflow_id}")
        return (
            response.json() if response.status_code == 200 and response.json()["status"] in statuses else None
        )

    return wait_for(check, timeout, 0.3, f"workflow {workflow_id} to be {statuses}")


def assert_each_state_ran_once(batch, workflow: dict, states: list[str]) -> None:
    in_batch = tagged_jobs(batch, workflow)
    assert sorted(job["jobName"] for job in in_batch) == sorted(
        f"{workflow['namespace']}--{s}" for s in states
    )
    assert sorted(job["jobId"] for job in in_batch) == sorted(job["id"] for job in workflow["jobs"])
    assert sorted(job["state"] for job in workflow["jobs"]) == sorted(states)


# In one process


def test_a_start_slower_than_its_wait_is_answered_queued_and_finishes_in_the_background(proxied, batch):
    # 8 SubmitJob calls of 0.8 s each: longer than the 5 s request timeout.
    api, proxy = proxied({"submitjob": lambda _n: Delay(0.8)})
    name = post_batch_definition(api, steps(8))
    began = time.monotonic()
    response = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {"n": 1}})
    answered_after = time.monotonic() - began
    assert response.status_code == 200, response.text  # not `503 Request timed out` (5 s)
    started = response.json()
    assert started["status"] == "queued"
    assert 0 < len(started["jobs"]) < 8, answered_after  # the jobs recorded so far
    finished = wait_for_status(api, started["id"], {"succeeded", "failed", "cancelled"})
    assert finished["status"] == "succeeded", finished
    assert_each_state_ran_once(batch, finished, [f"s{i:02d}" for i in range(1, 9)])
    assert proxy.calls["submitjob"] == 8


def test_a_submit_job_whose_answer_was_lost_is_found_and_not_submitted_twice(proxied, batch):
    api, proxy = proxied({"submitjob": call_number(2, LoseAnswer())})
    name = post_batch_definition(api, steps(3))
    response = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {}})
    assert response.status_code == 200, response.text
    finished = wait_for_status(api, response.json()["id"], {"succeeded", "failed", "cancelled"})
    assert finished["status"] == "succeeded", finished
    assert_each_state_ran_once(batch, finished, ["s01", "s02", "s03"])
    # The lost one was looked up (ListJobs) and adopted: three SubmitJob calls for three jobs.
    assert proxy.applied["submitjob"] == 1
    assert proxy.calls["submitjob"] == 3
    assert proxy.calls["listjobs"] >= 1


def test_a_workflow_cancelled_while_it_starts_stops_submitting_and_stops_every_job(proxied, batch):
    api, proxy = proxied({"submitjob": lambda _n: Delay(0.6)})
    name = post_batch_definition(api, steps(15, "wfm-test-sleep"))
    response = api.post("/workflows", {"workflowDefinition": {"name": name}, "input": {}})
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["status"] == "queued" and len(started["jobs"]) < 15
    cancelled = api.delete(f"/workflows/{started['id']}", {"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.text

    def all_stopped():
        workflow = api.get(f"/workflows/{started['id']}").json()
        jobs = tagged_jobs(batch, workflow)
        recorded = sorted(job["id"] for job in workflow["jobs"])
        done = all(job["status"] == "FAILED" for job in jobs) and sorted(j["jobId"] for j in jobs) == recorded
        return (workflow, jobs) if done and proxy.calls["submitjob"] == len(jobs) else None

    workflow, jobs = wait_for(all_stopped, 60, 0.5, "every submitted job to be stopped and recorded")
    assert workflow["status"] == "cancelled"
    assert workflow["statusReason"] == "changed my mind"
    assert len(jobs) < 15  # the start stopped submitting
    assert all(job["statusReason"].startswith("ABORTED_BY_USER") for job in jobs), [
        j["statusReason"] for j in jobs
    ]


def test_a_start_that_fails_after_the_answer_is_recorded_failed_with_the_reason(proxied):
    # StartExecution is refused after 3.5 s: the start outlasts the 3 s wait, so the request is
    # answered `queued`, and the record then says why the workflow did not start.
    refusal = Refuse("AccessDeniedException", "not authorized to start", after_seconds=3.5)
    api, proxy = proxied({"StartExecution": call_number(1, refusal)})
    body = {**load_fixture("api", "pass-only.json"), "name": f"late-failure-{uuid.uuid4().hex[:8]}"}
    assert api.post("/workflow-definitions", body).status_code == 201
    response = api.post("/workflows", {"workflowDefinition": {"name": body["name"]}, "input": {}})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    failed = wait_for_status(api, response.json()["id"], {"failed", "succeeded"})
    assert failed["status"] == "failed"
    assert failed["statusReason"] == "StartExecution: AccessDeniedException: not authorized to start"
    assert failed["stoppedAt"]
    assert proxy.calls["StartExecution"] == 1


def test_a_start_whose_save_outlasts_the_request_timeout_is_a_503_that_started_nothing(served_app):
    # The store's PutItem (the save's commit point) takes 5.5 s: the request is answered 503 at
    # 5 s, so the workflow the save then wrote must not start, and is deleted again.
    proxy = AwsProxy(served_app.app.runtime.emulator.endpoint_url)
    served = serve(
        proxied_config(
            proxy.url,
            store="dynamodb",
            dynamodb_prefix=f"slow-save-{uuid.uuid4().hex[:8]}",
            dynamodb_create_tables=True,
        )
    )
    try:
        api = Api(f"http://127.0.0.1:{served.port}")
        body = {**load_fixture("api", "pass-only.json"), "name": f"slow-save-{uuid.uuid4().hex[:8]}"}
        assert api.post("/workflow-definitions", body).status_code == 201
        proxy.rules["PutItem"] = lambda _n: Delay(5.5)
        response = api.post("/workflows", {"workflowDefinition": {"name": body["name"]}, "input": {}})
        assert response.status_code == 503, response.text
        assert response.json()["message"] == "Request timed out"
        proxy.rules.clear()
        wait_for(lambda: proxy.calls["DeleteItem"] >= 1, 15, 0.1, "the late save to be undone")
        assert api.get(f"/workflows?workflowDefinitionName={body['name']}").json() == []
        assert proxy.calls["StartExecution"] == 0
    finally:
        served.stop()
        proxy.stop()


# Separate service processes, one of them killed


class ServiceProcess:
    """`workflow-manager serve` (gunicorn, one worker) in a process group of its own."""

    def __init__(self, env: dict[str, str]):
        self.port = free_port()
        self.api = Api(f"http://127.0.0.1:{self.port}")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workflow_manager.cli", "serve"],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env, "WFM_PORT": str(self.port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._ready, 60, 0.2, "the service process to be ready")

    def _ready(self) -> bool:
        assert self.process.poll() is None, "the service process exited"
        try:
            return requests.get(f"{self.api.base_url}/_ready", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or still booting
            return False

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def replicas(served_app):
    """`replicas(rules)`: an AwsProxy with `rules` in front of the session's emulator, and a
    function that starts a service process on it; every process shares one DynamoDB store (tables
    of their own, on the emulator directly) and takes a dead replica's start over after 3 s."""
    emulator = served_app.app.runtime.emulator.endpoint_url
    started: list[ServiceProcess] = []
    proxies: list[AwsProxy] = []
    prefix = f"kill-{uuid.uuid4().hex[:10]}"

    def make(rules):
        proxy = AwsProxy(emulator, rules)
        proxies.append(proxy)
        env = {
            "WFM_BACKEND": "endpoint",
            "WFM_AWS_ENDPOINT": proxy.url,
            "WFM_AWS_ACCOUNT_ID": "123456789012",
            "WFM_AUTH": "off",
            "WFM_STORE": "dynamodb",
            "WFM_DYNAMODB_ENDPOINT": emulator,
            "WFM_DYNAMODB_PREFIX": prefix,
            "WFM_DYNAMODB_CREATE_TABLES": "true",
            "WFM_BATCH_DEFAULT_QUEUE": BATCH_QUEUE,
            "WFM_BATCH_RESULTS_TABLE": results_table_name(served_app.app.runtime.config.dynamodb_prefix),
            "WFM_WORKERS": "1",
            "WFM_START_WORKERS": "false",
            "WFM_START_LEASE_SECONDS": "3",
            "WFM_UPDATER_TICK_SECONDS": "0.2",
            "WFM_LOG_LEVEL": "WARNING",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

        def spawn() -> ServiceProcess:
            process = ServiceProcess(env)
            started.append(process)
            return process

        return proxy, spawn

    yield make
    for process in started:
        process.stop()
    for proxy in proxies:
        proxy.stop()


def start_in_background(api: Api, body: dict) -> dict:
    """POST /workflows from a thread (the killed replica may never answer)."""
    answer: dict = {}

    def post():
        try:
            answer["response"] = api.post("/workflows", body)
        except requests.RequestException as err:
            answer["error"] = err

    threading.Thread(target=post, daemon=True).start()
    return answer


def test_a_replica_killed_between_the_save_and_the_start_leaves_a_workflow_another_finishes(replicas):
    held = Hold(forward=False)  # the StartExecution never reaches Step Functions
    proxy, spawn = replicas({"StartExecution": call_number(1, held)})
    first = spawn()
    body = {**load_fixture("api", "pass-only.json"), "name": f"killed-start-{uuid.uuid4().hex[:8]}"}
    assert first.api.post("/workflow-definitions", body).status_code == 201
    answer = start_in_background(first.api, {"workflowDefinition": {"name": body["name"]}, "input": {"k": 1}})
    assert held.arrived.wait(30), "the start did not reach StartExecution"
    saved = wait_for(
        lambda: first.api.get(f"/workflows?workflowDefinitionName={body['name']}").json(), 10, 0.1
    )
    assert [wf["status"] for wf in saved] == ["queued"]
    first.kill()
    held.release.set()

    second = spawn()
    finished = wait_for_status(second.api, saved[0]["id"], {"succeeded", "failed", "cancelled"})
    assert finished["status"] == "succeeded", finished
    assert finished["stoppedAt"]
    assert proxy.calls["StartExecution"] == 2  # the held one (dropped) and the takeover's
    listed = second.api.get(f"/workflows?workflowDefinitionName={body['name']}").json()
    assert [wf["id"] for wf in listed] == [saved[0]["id"]]
    assert answer.get("response") is None or answer["response"].json()["id"] == saved[0]["id"]


def test_a_replica_killed_between_two_batch_submissions_leaves_no_orphan_job(replicas, batch):
    # The third SubmitJob is held until the replica is dead, then reaches Batch: a job the dead
    # replica never recorded, which the one that takes over must find rather than submit again.
    held = Hold(forward=True)
    proxy, spawn = replicas({"submitjob": call_number(3, held)})
    first = spawn()
    name = post_batch_definition(first.api, steps(6))
    answer = start_in_background(first.api, {"workflowDefinition": {"name": name}, "input": {"k": 2}})
    assert held.arrived.wait(30), "the start did not reach the third SubmitJob"
    [saved] = wait_for(lambda: first.api.get(f"/workflows?workflowDefinitionName={name}").json(), 10, 0.1)
    first.kill()
    held.release.set()
    wait_for(lambda: proxy.calls["submitjob"] == 3 and held.release.is_set(), 5, 0.1)

    second = spawn()
    finished = wait_for_status(second.api, saved["id"], {"succeeded", "failed", "cancelled"})
    assert finished["status"] == "succeeded", finished
    assert_each_state_ran_once(batch, finished, [f"s{i:02d}" for i in range(1, 7)])
    assert proxy.calls["submitjob"] == 6  # three by the dead replica, three by the one that took over
    assert answer.get("response") is None or answer["response"].json()["id"] == saved["id"]
