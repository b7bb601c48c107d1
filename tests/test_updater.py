"""The background updater: per-workflow schedules that back off with age, and a clean stop."""

from __future__ import annotations

import boto3
import pytest

from executor.routing import ExecutorRouter
from executor.sfn import StepFunctionsExecutor
from store.memory import MemoryStore
from tests.conftest import load_fixture, wait_for
from workflow_manager.domain.models import Manager
from workflow_manager.emulator.server import emulator_client_kwargs
from workflow_manager.services.definitions import DefinitionDraft, DefinitionService
from workflow_manager.services.updater import BackgroundUpdater
from workflow_manager.services.workflows import StartRequest, WorkflowService


@pytest.fixture
def services(served_app):
    store = MemoryStore()
    sfn = boto3.client(
        "stepfunctions", **emulator_client_kwargs(served_app.app.runtime.emulator.endpoint_url)
    )
    executor = StepFunctionsExecutor(
        sfn,
        region="us-east-1",
        account_id="123456789012",
        role_arn="arn:aws:iam::123456789012:role/sfn",
        lookup_state_resource=lambda namespace, name: None,
    )
    # A namespace no worker polls: its Task states wait until stopped.
    router = ExecutorRouter({Manager.STEP_FUNCTIONS: executor})
    workflows = WorkflowService(store, router, "idle")
    return DefinitionService(store, router), workflows


def test_interval_backs_off_with_age_within_bounds(services):
    _, workflows = services
    updater = BackgroundUpdater(workflows, min_interval_seconds=1, max_interval_seconds=60)
    assert updater.interval_for_age(0) == 1
    assert updater.interval_for_age(100) == 10
    assert updater.interval_for_age(3600) == 60


def test_run_once_refreshes_due_workflows_only(services):
    definitions, workflows = services
    body = load_fixture("api", "long-task.json")
    body["name"] = "updater-long-task"
    definitions.create(DefinitionDraft(name=body["name"], state_machine=body["stateMachine"]))
    waiting = workflows.start(StartRequest(definition_name=body["name"], input={}))
    updater = BackgroundUpdater(
        workflows, min_interval_seconds=30, max_interval_seconds=60, max_refreshes_per_second=100
    )
    assert updater.run_once() == 1
    assert updater.run_once() == 0  # not due again for 30 s
    workflows.cancel(waiting.id, "test over")
    assert updater.run_once() == 0  # cancelled: no longer active


def test_updater_thread_records_a_finished_workflow_and_stops(services):
    definitions, workflows = services
    definitions.create(
        DefinitionDraft(
            name="updater-pass-only",
            state_machine={"StartAt": "only", "States": {"only": {"Type": "Pass", "End": True}}},
        )
    )
    started = workflows.start(StartRequest(definition_name="updater-pass-only", input={"a": 1}))
    updater = BackgroundUpdater(workflows, tick_seconds=0.05, min_interval_seconds=0.05)
    updater.start()
    assert updater.is_running
    try:
        wait_for(
            lambda: workflows.active_workflow_ids() == [],
            10,
            0.05,
            "the updater to record the finished workflow",
        )
    finally:
        updater.stop(timeout=5)
    assert not updater.is_running
    finished = workflows.get(started.id)
    assert finished.status == "succeeded"
    assert '"a": 1' in finished.output or '"a":1' in finished.output


def job_status(workflow, state: str) -> str:
    return {job.state: job.status for job in workflow.jobs}[state]


@pytest.fixture
def batch_services(served_app):
    """A memory store and the definition and workflow services over a Batch executor on the served
    app's emulator."""
    from executor.batch import BatchExecutor
    from executor.batch_results import BatchResultsTable, results_table_name

    clients = served_app.app.runtime.clients
    store = MemoryStore()
    batch = BatchExecutor(
        clients.client("batch"),
        BatchResultsTable(clients.client("dynamodb"), results_table_name("workflow-manager")),
        default_queue="default",
    )
    router = ExecutorRouter({Manager.BATCH: batch})
    return store, DefinitionService(store, router), WorkflowService(store, router, "ns")


def test_a_failed_workflow_with_open_jobs_is_checked_until_they_end(batch_services):
    store, definitions, workflows = batch_services
    # One branch fails at once, which fails the workflow (the reference's rule); the other runs
    # two seconds more: the workflow is terminal with an open job all that time.
    definitions.create(
        DefinitionDraft(
            name="updater-batch-failure",
            manager="batch",
            state_machine={
                "StartAt": "both",
                "States": {
                    "both": {
                        "Type": "Parallel",
                        "End": True,
                        "Branches": [
                            {
                                "StartAt": "broken",
                                "States": {
                                    "broken": {"Type": "Task", "Resource": "wfm-test-fail", "End": True}
                                },
                            },
                            {
                                "StartAt": "nap",
                                "States": {"nap": {"Type": "Task", "Resource": "wfm-test-nap", "End": True}},
                            },
                        ],
                    }
                },
            },
        )
    )
    started = workflows.start(StartRequest(definition_name="updater-batch-failure"))
    updater = BackgroundUpdater(
        workflows, min_interval_seconds=0.05, max_interval_seconds=0.1, max_refreshes_per_second=100
    )

    def failed_while_nap_runs():
        updater.run_once()
        workflow = store.get_workflow(started.id)
        return (
            workflow if workflow.status == "failed" and job_status(workflow, "nap") != "succeeded" else None
        )

    wait_for(failed_while_nap_runs, 30, 0.05, "the workflow to fail while its other job runs")

    def nap_recorded():
        updater.run_once()
        workflow = store.get_workflow(started.id)
        return workflow if job_status(workflow, "nap") == "succeeded" else None

    workflow = wait_for(nap_recorded, 30, 0.1, "the updater to record the other job's end")
    assert workflow.status == "failed"
    updater.run_once()
    assert updater.run_once() == 0  # done: no longer checked


def test_a_workflow_a_get_saw_fail_with_open_jobs_is_still_checked_until_they_end(batch_services):
    """The updater knew the workflow while it ran; a GET, not the updater, then saw it fail while
    a job was still open. The updater still records that job's end."""
    store, definitions, workflows = batch_services

    def chain(*steps: tuple[str, str]) -> dict:
        states = {
            name: {
                "Type": "Task",
                "Resource": resource,
                **({"Next": steps[i + 1][0]} if i + 1 < len(steps) else {"End": True}),
            }
            for i, (name, resource) in enumerate(steps)
        }
        return {"StartAt": steps[0][0], "States": states}

    # One branch fails after two seconds; the other runs two seconds more.
    definitions.create(
        DefinitionDraft(
            name="updater-batch-failure-seen-by-get",
            manager="batch",
            state_machine={
                "StartAt": "both",
                "States": {
                    "both": {
                        "Type": "Parallel",
                        "End": True,
                        "Branches": [
                            chain(("first-nap", "wfm-test-nap"), ("broken", "wfm-test-fail")),
                            chain(("nap", "wfm-test-nap"), ("second-nap", "wfm-test-nap")),
                        ],
                    }
                },
            },
        )
    )
    started = workflows.start(StartRequest(definition_name="updater-batch-failure-seen-by-get"))
    updater = BackgroundUpdater(
        workflows, min_interval_seconds=0.05, max_interval_seconds=0.1, max_refreshes_per_second=100
    )
    assert updater.run_once() == 1
    assert store.get_workflow(started.id).status in ("queued", "running")

    def failed_while_second_nap_runs():
        workflow = workflows.get(started.id)
        failed = workflow.status == "failed"
        return workflow if failed and job_status(workflow, "second-nap") != "succeeded" else None

    wait_for(failed_while_second_nap_runs, 30, 0.05, "a GET to see the workflow fail while a job runs")

    def second_nap_recorded():
        updater.run_once()
        workflow = store.get_workflow(started.id)
        return workflow if job_status(workflow, "second-nap") == "succeeded" else None

    workflow = wait_for(second_nap_recorded, 30, 0.1, "the updater to record the open job's end")
    assert workflow.status == "failed"


class ReplayingExecutor:
    """The real executor, except that `report` answers, once, a report recorded earlier: what a
    refresh that read the execution before another refresh, and wrote after it, applies."""

    def __init__(self, executor, stale_report):
        self._executor = executor
        self._stale = stale_report

    def __getattr__(self, name):
        return getattr(self._executor, name)

    def report(self, workflow, include_jobs=True, include_status=True):
        stale, self._stale = self._stale, None
        if stale is not None:
            return stale
        return self._executor.report(workflow, include_jobs=include_jobs, include_status=include_status)


def test_a_report_read_before_a_newer_one_cannot_erase_jobs_or_status(services):
    definitions, workflows = services
    definitions.create(
        DefinitionDraft(
            name="updater-two-jobs",
            state_machine={
                "StartAt": "pick",
                "States": {
                    "pick": {
                        "Type": "Choice",
                        "Choices": [{"Variable": "$.go", "BooleanEquals": True, "Next": "pause"}],
                        "Default": "pause",
                    },
                    "pause": {"Type": "Wait", "Seconds": 2, "Next": "done"},
                    "done": {"Type": "Succeed"},
                },
            },
        )
    )
    started = workflows.start(StartRequest(definition_name="updater-two-jobs", input={"go": True}))
    executor = workflows._executor
    early = wait_for(
        lambda: (r := executor.report(workflows.get(started.id), include_jobs=True)).jobs and r,
        10,
        0.05,
        "a report with the first job",
    )
    assert [job.state for job in early.jobs] == ["pick"]
    finished = wait_for(
        lambda: (wf := workflows.refresh(started.id)).status == "succeeded" and wf, 20, 0.2, "the end"
    )
    assert [job.state for job in finished.jobs] == ["pick", "done"]

    workflows._executor = ReplayingExecutor(executor, early)
    after = workflows.refresh(started.id)
    assert after.status == "succeeded"
    assert [job.state for job in after.jobs] == ["pick", "done"]
    assert [job.state for job in workflows.get(started.id).jobs] == ["pick", "done"]


def test_a_workflow_whose_refresh_raises_does_not_stall_the_others(services):
    definitions, workflows = services
    body = load_fixture("api", "long-task.json")
    body["name"] = "updater-stall"
    definitions.create(DefinitionDraft(name=body["name"], state_machine=body["stateMachine"]))
    good = workflows.start(StartRequest(definition_name=body["name"], input={}))
    # A record the executor cannot read (its definition's state machine is not an object): refreshing
    # it raises an error that is not one of the service's own.
    broken = workflows.start(StartRequest(definition_name=body["name"], input={}))
    stored = workflows._store.get_workflow(broken.id)
    stored.workflow_definition.state_machine = "not a state machine"
    workflows._store.update_workflow(stored)
    updater = BackgroundUpdater(
        workflows, min_interval_seconds=30, max_interval_seconds=60, max_refreshes_per_second=100
    )
    assert updater.run_once() == 2  # both tried: the broken one did not end the pass
    assert updater.run_once() == 0  # and both are next due in 30 s, the broken one too
    assert workflows.get(good.id).status in ("queued", "running")
    workflows.cancel(good.id, "test over")


def _record_without_execution(workflows, definitions, name: str, status: str):
    """A workflow record whose execution never started (a crash between the save and the start)."""
    from workflow_manager.domain.models import Workflow, WorkflowStatus, new_id

    definitions.create(
        DefinitionDraft(
            name=name, state_machine={"StartAt": "only", "States": {"only": {"Type": "Pass", "End": True}}}
        )
    )
    definition = workflows._store.latest_workflow_definition(name)
    workflow = Workflow(
        id=new_id(), workflow_definition=definition, namespace="idle", status=WorkflowStatus(status)
    )
    workflows._store.save_workflow(workflow)
    return workflow.id


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_workflow_whose_execution_does_not_exist_is_failed_after_the_grace(services, status):
    from datetime import timedelta

    definitions, workflows = services
    workflow_id = _record_without_execution(workflows, definitions, f"updater-zombie-{status}", status)
    # Within the grace (DescribeExecution's eventual consistency) it is left as it is.
    assert workflows.refresh(workflow_id).status == status
    impatient = WorkflowService(workflows._store, workflows._executor, "idle", zombie_window=timedelta(0))
    failed = impatient.refresh(workflow_id)
    assert failed.status == "failed"
    assert failed.status_reason == "execution not found: the backend has no execution for this workflow"
    assert failed.stopped_at is not None
    assert workflows.get(workflow_id).stopped_at == failed.stopped_at


def test_cancel_of_a_workflow_whose_execution_does_not_exist_cancels_it(services):
    definitions, workflows = services
    workflow_id = _record_without_execution(workflows, definitions, "updater-zombie-cancel", "running")
    workflows.cancel(workflow_id, "it never ran")
    cancelled = workflows.get(workflow_id)
    assert (cancelled.status, cancelled.status_reason, cancelled.resolved_by_user) == (
        "cancelled",
        "it never ran",
        True,
    )
    assert cancelled.stopped_at is not None


def test_past_the_history_read_limit_a_get_answers_from_the_store_and_fetch_history_is_503(services):
    from workflow_manager.domain.errors import BackendUnavailable

    definitions, workflows = services
    body = load_fixture("api", "long-task.json")
    body["name"] = "updater-history-limit"
    definitions.create(DefinitionDraft(name=body["name"], state_machine=body["stateMachine"]))
    started = workflows.start(StartRequest(definition_name=body["name"], input={}))
    wait_for(lambda: workflows.refresh(started.id).status == "running", 10, 0.1, "running")
    # No history read may run (every slot taken): the stored record is the answer.
    busy = WorkflowService(workflows._store, workflows._executor, "idle", max_concurrent_history_reads=0)
    stored = workflows._store.get_workflow(started.id)
    assert busy.get(started.id) == stored
    with pytest.raises(BackendUnavailable, match="too many execution histories are being read at once"):
        busy.get(started.id, fetch_history=True)
    workflows.cancel(started.id, "test over")


def test_only_the_sweep_lease_holder_refreshes_and_a_dead_holder_is_taken_over(services):
    from datetime import timedelta

    from workflow_manager.services.updater import SweepLease

    definitions, workflows = services
    body = load_fixture("api", "long-task.json")
    body["name"] = "updater-lease-long-task"
    definitions.create(DefinitionDraft(name=body["name"], state_machine=body["stateMachine"]))
    waiting = workflows.start(StartRequest(definition_name=body["name"], input={}))
    store = workflows._store  # the two replicas share it, as replicas share DynamoDB
    lease = timedelta(seconds=1.5)

    def replica() -> BackgroundUpdater:
        return BackgroundUpdater(
            workflows,
            min_interval_seconds=0,
            max_interval_seconds=0,
            max_refreshes_per_second=100,
            lease=SweepLease(store, duration=lease),
        )

    first, second = replica(), replica()
    assert first.run_once() == 1
    assert second.run_once() == 0  # the lease is the first one's
    assert first.run_once() == 1
    # The first replica dies (stops renewing, never releases): the second takes the sweep over
    # once the lease has run out, and the first, back, finds it taken.
    wait_for(lambda: second.run_once() == 1, 5, 0.1, "the second replica to take the sweep over")
    first._lease._check_at = 0  # its next pass asks the store again
    assert first.run_once() == 0
    workflows.cancel(waiting.id, "test over")
