"""AWS call budgets shared by the replicas (issue 10): each replica holds a budgeted API action to
its share (the budget over the live replicas, counted by heartbeats in the store), applied to every
call of the client. Counted at an HTTP proxy in front of the emulator, so the bound is on the calls
that reached "AWS"; the assertions are upper bounds, which a slow machine cannot break."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from executor.call_budget import CallBudgets, ReplicaCount
from store.memory import MemoryStore
from tests.aws_proxy import AwsProxy
from tests.conftest import Api, load_fixture, proxied_config, serve
from workflow_manager.emulator.server import emulator_client_kwargs

UNKNOWN_EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:no-such-machine:no-such-execution"


@pytest.fixture
def proxy(served_app):
    running = AwsProxy(served_app.app.runtime.emulator.endpoint_url)
    yield running
    running.stop()


def sfn_client(url: str):
    return boto3.client(
        "stepfunctions", **emulator_client_kwargs(url), config=BotoConfig(retries={"total_max_attempts": 1})
    )


def test_replicas_that_beat_share_the_budget_and_one_that_leaves_gives_its_share_back():
    store = MemoryStore()
    first, second = ReplicaCount(store), ReplicaCount(store)
    assert first.beat() == 1
    assert second.beat() == 2
    budgets = CallBudgets({("stepfunctions", "DescribeExecution"): 12.0}, first)
    assert first.beat() == 2
    assert budgets.share("stepfunctions", "DescribeExecution") == 6.0
    assert budgets.share("stepfunctions", "StartExecution") is None  # not budgeted
    second.stop()  # leaves the group
    assert first.beat() == 1
    assert budgets.share("stepfunctions", "DescribeExecution") == 12.0


def test_a_burst_of_calls_stays_within_the_replica_s_share(proxy):
    # A budget of 8/s over 2 live replicas: this one's share is 4/s, in bursts of 4.
    budgets = CallBudgets({("stepfunctions", "DescribeExecution"): 8.0}, lambda: 2)
    client = budgets.attach(sfn_client(proxy.url))
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            # ExecutionDoesNotExist: the call reached the emulator all the same.
            with contextlib.suppress(ClientError):
                client.describe_execution(executionArn=UNKNOWN_EXECUTION)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - began
    calls = proxy.calls["DescribeExecution"]
    assert 1 <= calls <= 4 + 4 * elapsed + 1, (calls, elapsed)
    # An action with no budget is not held: ListStateMachines goes through at once.
    for _ in range(10):
        client.list_state_machines()
    assert proxy.calls["ListStateMachines"] == 10


def test_the_service_holds_its_own_calls_to_the_budget(proxy):
    # GETs that refresh a running workflow, from 8 clients for 2 s: each costs a DescribeExecution,
    # which the service's client holds to the default budget (12/s, one replica).
    from workflow_manager.domain.aws import AWS_CALL_BUDGETS_PER_SECOND

    budget = AWS_CALL_BUDGETS_PER_SECOND[("stepfunctions", "DescribeExecution")]
    served = serve(
        proxied_config(
            proxy.url,
            updater_enabled=False,
        )
    )
    try:
        api = Api(f"http://127.0.0.1:{served.port}")
        body = {**load_fixture("api", "long-task.json"), "name": f"budget-{uuid.uuid4().hex[:8]}"}
        assert api.post("/workflow-definitions", body).status_code == 201
        started = api.post("/workflows", {"workflowDefinition": {"name": body["name"]}, "input": {}}).json()
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                api.get(f"/workflows/{started['id']}")

        before = proxy.calls["DescribeExecution"]
        threads = [threading.Thread(target=watch) for _ in range(8)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        stop.set()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - began
        calls = proxy.calls["DescribeExecution"] - before
        assert 1 <= calls <= budget + budget * elapsed + 1, (calls, elapsed)
        assert api.delete(f"/workflows/{started['id']}", {"reason": "test over"}).status_code == 200
    finally:
        served.stop()


def test_many_watchers_of_a_workflow_cost_one_refresh_a_second(proxy):
    from workflow_manager.services.workflows import WATCHED_REFRESH_SECONDS

    served = serve(
        proxied_config(
            proxy.url,
            updater_enabled=False,
        )
    )
    try:
        api = Api(f"http://127.0.0.1:{served.port}")
        body = {**load_fixture("api", "long-task.json"), "name": f"watched-{uuid.uuid4().hex[:8]}"}
        assert api.post("/workflow-definitions", body).status_code == 201
        started = api.post("/workflows", {"workflowDefinition": {"name": body["name"]}, "input": {}}).json()
        time.sleep(WATCHED_REFRESH_SECONDS)
        before = proxy.calls["DescribeExecution"]
        began = time.monotonic()
        answers = []

        def watch() -> None:
            for _ in range(5):
                answers.append(api.get(f"/workflows/{started['id']}").json()["id"])

        threads = [threading.Thread(target=watch) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - began
        assert answers == [started["id"]] * 30  # every watcher was answered
        refreshes = proxy.calls["DescribeExecution"] - before
        assert 1 <= refreshes <= 1 + elapsed / WATCHED_REFRESH_SECONDS, (refreshes, elapsed)
        # An explicit fetchHistory=true is never answered from the store.
        before = proxy.calls["GetExecutionHistory"]
        assert api.get(f"/workflows/{started['id']}?fetchHistory=true").status_code == 200
        assert proxy.calls["GetExecutionHistory"] > before
        assert api.delete(f"/workflows/{started['id']}", {"reason": "test over"}).status_code == 200
    finally:
        served.stop()
