"""The executor contract: one suite, run against every implementation of `executor.interface.Executor`
on the embedded emulator (as `test_store_contract.py` runs one suite against both stores).

Implementations: the Step Functions executor (Pass, Wait and Succeed states, which need no worker),
the Batch executor (the job definitions of `tests/fixtures/batch/job-definitions.yml`, run by the
emulator as local subprocesses), and the router in front of each, which must be indistinguishable
from the executor it routes to. Each backend supplies its own definitions (what it can run, what it
cannot, what runs until cancelled, what its backend refuses) and what it expects of them; the tests
are the same. Asynchronous results are polled with a deadline.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from executor.batch import BatchExecutor
from executor.batch_results import BatchResultsTable
from executor.interface import ExecutionReport, Executor, StartedExecution, StartInterrupted
from executor.routing import ExecutorRouter
from executor.sfn import StepFunctionsExecutor
from tests.conftest import FIXTURES, wait_for
from workflow_manager.config import EMULATOR_ACCOUNT_ID
from workflow_manager.domain.aws import EXECUTION_NAME_KEY
from workflow_manager.domain.errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from workflow_manager.domain.models import (
    JobStatus,
    Manager,
    Workflow,
    WorkflowDefinition,
    WorkflowStatus,
    new_id,
)
from workflow_manager.emulator.seeding import ensure_batch_environment, load_job_definitions
from workflow_manager.emulator.server import emulator_client_kwargs

REGION = "us-east-1"
SFN_ROLE_ARN = f"arn:aws:iam::{EMULATOR_ACCOUNT_ID}:role/wfm-contract-sfn"
BATCH_QUEUE = "wfm-contract-queue"
BATCH_ENVIRONMENT_NAMES = {
    "queue_name": BATCH_QUEUE,
    "compute_environment_name": "wfm-contract-compute",
    "role_name": "wfm-contract-batch",
}
TERMINAL = {WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
START_INPUT = {"order": 42}
# A port nothing listens on, and a client that does not retry it.
UNREACHABLE_ENDPOINT = "http://127.0.0.1:9"
NO_RETRIES = BotoConfig(retries={"max_attempts": 0}, connect_timeout=1)


def task(resource: str) -> dict[str, Any]:
    return {"StartAt": "only", "States": {"only": {"Type": "Task", "Resource": resource, "End": True}}}


# Runs on Step Functions, and not on Batch: a Batch workflow needs a Task state to submit.
PASS_THEN_SUCCEED = {
    "StartAt": "greet",
    "States": {
        "greet": {"Type": "Pass", "Result": {"greeting": "hello"}, "ResultPath": "$.result", "Next": "done"},
        "done": {"Type": "Succeed"},
    },
}


@dataclass
class Backend:
    """One implementation under the contract, and what it is expected to do."""

    executor: Executor
    manager: Manager
    runnable: dict[str, Any]  # succeeds on its own, quickly
    runs_until_cancelled: dict[str, Any]
    unrunnable: WorkflowDefinition  # refused by validate_definition...
    unrunnable_message: str  # ...with a message matching this
    refused_start: dict[str, Any]  # a state machine whose start the backend refuses...
    refused_start_namespace: str  # ...in this namespace...
    refused_start_message: str  # ...with a message matching this
    started_jobs: list[tuple[str, JobStatus]]  # (state, status) of the jobs `start` created
    finished_jobs: list[tuple[str, JobStatus]]  # (state, status) of the jobs of the succeeded runnable
    expected_output: Callable[[Workflow], Any]  # the succeeded runnable's output, as JSON
    unreachable: Callable[[], Executor]

    def workflow(self, state_machine: dict[str, Any], namespace: str = "contract") -> Workflow:
        definition = WorkflowDefinition(
            name=f"contract-{uuid.uuid4().hex[:12]}", state_machine=state_machine, manager=self.manager
        )
        return Workflow(
            id=new_id(),
            workflow_definition=definition,
            namespace=namespace,
            input=json.dumps(START_INPUT),
        )

    def start(self, workflow: Workflow) -> StartedExecution:
        """Start, and record the created jobs on the workflow as the domain does."""
        started = self.executor.start(workflow)
        workflow.jobs = started.jobs
        return started

    def report(self, workflow: Workflow) -> ExecutionReport:
        """A report, its jobs recorded on the workflow as the domain does."""
        report = self.executor.report(workflow)
        if report.jobs is not None:
            workflow.jobs = report.jobs
        return report

    def terminal_report(self, workflow: Workflow, timeout: float = 30.0) -> ExecutionReport:
        def check() -> ExecutionReport | None:
            report = self.report(workflow)
            return report if report.status in TERMINAL else None

        return wait_for(check, timeout, 0.1, f"workflow {workflow.id} to reach a terminal status")


# The emulator and the two implementations


@pytest.fixture(scope="module")
def sfn_executor(client_kwargs: dict[str, str]) -> StepFunctionsExecutor:
    return sfn_executor_on(boto3.client("stepfunctions", **client_kwargs))


def sfn_executor_on(client: Any) -> StepFunctionsExecutor:
    return StepFunctionsExecutor(
        client,
        region=REGION,
        account_id=EMULATOR_ACCOUNT_ID,
        role_arn=SFN_ROLE_ARN,
        lookup_state_resource=lambda namespace, name: None,
    )


@pytest.fixture(scope="module")
def batch_executor(client_kwargs: dict[str, str], batch_results: BatchResultsTable) -> BatchExecutor:
    batch = boto3.client("batch", **client_kwargs)
    ensure_batch_environment(
        batch,
        boto3.client("iam", **client_kwargs),
        load_job_definitions(FIXTURES / "batch" / "job-definitions.yml"),
        **BATCH_ENVIRONMENT_NAMES,
    )
    return BatchExecutor(batch, batch_results, default_queue=BATCH_QUEUE)


def step_functions_backend(executor: Executor) -> Backend:
    return Backend(
        executor=executor,
        manager=Manager.STEP_FUNCTIONS,
        runnable=PASS_THEN_SUCCEED,
        runs_until_cancelled={
            "StartAt": "nap",
            "States": {"nap": {"Type": "Wait", "Seconds": 300, "End": True}},
        },
        unrunnable=WorkflowDefinition(
            name="contract-batch", state_machine=task("step"), manager=Manager.BATCH
        ),
        unrunnable_message="the Step Functions executor runs 'step-functions' definitions",
        # An activity is named {namespace}--{Resource}, at most 80 characters (Step Functions' limit).
        refused_start=task("work"),
        refused_start_namespace="n" * 76,
        refused_start_message="activity name of Task state 'only' is longer than 80 characters",
        started_jobs=[],
        finished_jobs=[("done", JobStatus.SUCCEEDED)],
        expected_output=lambda workflow: {
            **START_INPUT,
            EXECUTION_NAME_KEY: workflow.id,
            "result": {"greeting": "hello"},
        },
        unreachable=lambda: sfn_executor_on(
            boto3.client("stepfunctions", **emulator_client_kwargs(UNREACHABLE_ENDPOINT), config=NO_RETRIES)
        ),
    )


def batch_backend(executor: Executor, results: BatchResultsTable) -> Backend:
    return Backend(
        executor=executor,
        manager=Manager.BATCH,
        runnable=task("wfm-test-step"),
        runs_until_cancelled=task("wfm-test-sleep"),
        unrunnable=WorkflowDefinition(
            name="contract-pass-only", state_machine=PASS_THEN_SUCCEED, manager=Manager.BATCH
        ),
        unrunnable_message="needs at least one Task state",
        # Batch answers SubmitJob for an unknown job definition with ClientException.
        refused_start=task("wfm-contract-no-such-job-definition"),
        refused_start_namespace="contract",
        refused_start_message=r"SubmitJob for state 'only': .*\(0 of 1 jobs had been submitted",
        started_jobs=[("only", JobStatus.CREATED)],
        finished_jobs=[("only", JobStatus.SUCCEEDED)],
        # tests/fixtures/batch/step.sh publishes its state and the input it got.
        expected_output=lambda workflow: {"state": "only", "input": START_INPUT},
        unreachable=lambda: BatchExecutor(
            boto3.client("batch", **emulator_client_kwargs(UNREACHABLE_ENDPOINT), config=NO_RETRIES),
            results,
            default_queue=BATCH_QUEUE,
        ),
    )


@pytest.fixture(params=["step-functions", "batch", "router:step-functions", "router:batch"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param.endswith("step-functions"):
        sfn = request.getfixturevalue("sfn_executor")
        if request.param == "step-functions":
            return step_functions_backend(sfn)
        routed = step_functions_backend(ExecutorRouter({Manager.STEP_FUNCTIONS: sfn}))
        # Routed by manager: a batch definition reaches no executor.
        routed.unrunnable_message = (
            r"no executor is configured for manager 'batch' \(configured: step-functions\)"
        )
        routed.unreachable = lambda: ExecutorRouter(
            {Manager.STEP_FUNCTIONS: step_functions_backend(sfn).unreachable()}
        )
        return routed
    results = request.getfixturevalue("batch_results")
    batch = request.getfixturevalue("batch_executor")
    if request.param == "batch":
        return batch_backend(batch, results)
    routed = batch_backend(ExecutorRouter({Manager.BATCH: batch}), results)
    routed.unreachable = lambda: ExecutorRouter({Manager.BATCH: batch_backend(batch, results).unreachable()})
    return routed


# The contract


def test_a_definition_the_executor_cannot_run_is_invalid_input_at_validation(backend: Backend):
    with pytest.raises(InvalidInput, match=backend.unrunnable_message):
        backend.executor.validate_definition(backend.unrunnable)


def test_definitions_the_executor_can_run_pass_validation(backend: Backend):
    for state_machine in (backend.runnable, backend.runs_until_cancelled):
        definition = backend.workflow(state_machine).workflow_definition
        assert backend.executor.validate_definition(definition) is None


def test_start_returns_the_jobs_it_created_and_leaves_the_workflow_unchanged(backend: Backend):
    workflow = backend.workflow(backend.runnable)
    before = workflow.copy()

    started = backend.executor.start(workflow)

    assert workflow == before
    assert isinstance(started, StartedExecution)
    assert [(job.state, job.status) for job in started.jobs] == backend.started_jobs
    assert len({job.id for job in started.jobs if job.id}) == len(started.jobs)  # each has its own id
    workflow.jobs = started.jobs
    assert backend.executor.report(workflow).found is True


def test_a_started_workflow_reports_succeeded_with_its_output(backend: Backend):
    workflow = backend.workflow(backend.runnable)
    backend.start(workflow)

    report = backend.terminal_report(workflow)

    assert report.found is True
    assert report.status == WorkflowStatus.SUCCEEDED, report.status_reason
    assert json.loads(report.output) == backend.expected_output(workflow)
    assert [(job.state, job.status) for job in report.jobs] == backend.finished_jobs
    assert report.stopped_at is not None


def test_report_of_a_workflow_never_started_is_not_found(backend: Backend):
    report = backend.executor.report(backend.workflow(backend.runnable))

    assert report.found is False
    assert report.status is None and report.jobs is None


def test_cancel_of_a_running_workflow_leads_to_a_cancelled_report(backend: Backend):
    workflow = backend.workflow(backend.runs_until_cancelled)
    backend.start(workflow)
    wait_for(
        lambda: backend.report(workflow).status == WorkflowStatus.RUNNING,
        30,
        0.05,
        f"workflow {workflow.id} to run",
    )

    backend.executor.cancel(workflow, "contract test over")
    report = backend.terminal_report(workflow)

    assert report.status == WorkflowStatus.CANCELLED


def test_progress_hears_before_any_work_is_created_and_can_stop_the_start(backend: Backend):
    workflow = backend.workflow(backend.runnable)
    heard: list[list] = []

    def stop(jobs):
        heard.append(list(jobs))
        raise StartInterrupted("cancelled while starting", terminate=True)

    with pytest.raises(StartInterrupted) as stopped:
        backend.executor.start(workflow, stop)

    assert heard == [[]]
    assert stopped.value.jobs == []
    assert backend.executor.report(workflow).found is False  # nothing was created


def test_a_resumed_start_adopts_what_an_unrecorded_earlier_attempt_created(backend: Backend):
    workflow = backend.workflow(backend.runnable)
    first = backend.executor.start(workflow)  # an attempt that died before recording anything

    resumed = backend.executor.start(workflow, resuming=True)

    assert [job.id for job in resumed.jobs] == [job.id for job in first.jobs]
    workflow.jobs = resumed.jobs
    report = backend.terminal_report(workflow)
    assert report.status == WorkflowStatus.SUCCEEDED, report.status_reason
    assert [(job.state, job.status) for job in report.jobs] == backend.finished_jobs


def test_cancel_of_a_workflow_never_started_is_not_found(backend: Backend):
    with pytest.raises(NotFound):
        backend.executor.cancel(backend.workflow(backend.runs_until_cancelled), "never started")


def test_check_health_passes_when_the_backend_answers_and_raises_backend_unavailable_when_not(
    backend: Backend,
):
    assert backend.executor.check_health() is None
    with pytest.raises(BackendUnavailable):
        backend.unreachable().check_health()


def test_a_start_the_backend_refuses_for_the_callers_input_is_invalid_input_and_runs_nothing(
    backend: Backend,
):
    workflow = backend.workflow(backend.refused_start, namespace=backend.refused_start_namespace)
    before = workflow.copy()

    # The domain error itself (not StartAbandoned): nothing was created that the caller must record.
    with pytest.raises(InvalidInput, match=backend.refused_start_message):
        backend.executor.start(workflow)

    assert workflow == before
    assert backend.executor.report(workflow).found is False


# Step Functions only: a retried StartExecution


def test_a_start_retried_after_the_execution_finished_is_the_same_execution(sfn_executor):
    backend = step_functions_backend(sfn_executor)
    workflow = backend.workflow(backend.runnable)
    backend.start(workflow)
    assert backend.terminal_report(workflow).status == WorkflowStatus.SUCCEEDED
    # botocore retries StartExecution after a read timeout; when the retry lands after the
    # execution finished, AWS answers ExecutionAlreadyExists. Same name, same input: it is ours.
    assert sfn_executor.start(workflow).jobs == []
    assert backend.report(workflow).status == WorkflowStatus.SUCCEEDED


def test_a_start_whose_name_an_execution_with_another_input_holds_is_a_conflict(sfn_executor):
    backend = step_functions_backend(sfn_executor)
    workflow = backend.workflow(backend.runnable)
    backend.start(workflow)
    backend.terminal_report(workflow)
    workflow.input = json.dumps({"other": "input"})
    with pytest.raises(Conflict, match=f"an execution named {workflow.id} already exists"):
        sfn_executor.start(workflow)
