"""The Batch executor: its status rules, queue map and job names, and whole workflows on the embedded
emulator, whose Batch runs each job's command as a local subprocess (`workflow_manager.emulator.batch_runner`).

The executor is driven directly (start, report, cancel), as the domain does; asynchronous results are
polled with a deadline.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from executor.batch import (
    ABORTED_BY_USER_PREFIX,
    SUBMISSION_FAILED_PREFIX,
    BatchExecutor,
    job_name,
    job_status_from_batch,
)
from executor.batch_results import BatchResultsTable, dependents_input
from executor.interface import StartAbandoned, StartedExecution
from executor.rate_limit import TokenBucket
from tests.conftest import DATA, FIXTURES, load_fixture, wait_for
from workflow_manager.domain.aws import MAX_SUBMIT_JOBS_PER_SECOND
from workflow_manager.domain.definitions import prune_unreachable_states
from workflow_manager.domain.errors import BackendUnavailable, InvalidInput, NotFound
from workflow_manager.domain.models import (
    Job,
    JobStatus,
    Manager,
    StateResource,
    Workflow,
    WorkflowDefinition,
    WorkflowStatus,
    new_id,
)
from workflow_manager.domain.status import workflow_status_from_jobs
from workflow_manager.emulator import DUMMY_CREDENTIALS, batch_runner
from workflow_manager.emulator.seeding import BatchEnvironment, ensure_batch_environment, load_job_definitions
from workflow_manager.emulator.server import EmbeddedEmulator, emulator_client_kwargs

QUEUE = "wfm-test-queue"
ENVIRONMENT_NAMES = {
    "queue_name": QUEUE,
    "compute_environment_name": "wfm-test-compute",
    "role_name": "wfm-test-batch",
}
TERMINAL = {WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
DONE_JOBS = {
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.ABORTED_DEPS_FAILED,
    JobStatus.ABORTED_BY_USER,
}


# Status mapping (the reference's taskStatus, notes 4.5, with its defects fixed)


@pytest.mark.parametrize(
    ("batch_job", "status"),
    [
        ({"status": "SUBMITTED"}, JobStatus.CREATED),
        ({"status": "PENDING"}, JobStatus.WAITING_FOR_DEPS),
        ({"status": "RUNNABLE"}, JobStatus.QUEUED),
        ({"status": "STARTING"}, JobStatus.QUEUED),
        ({"status": "RUNNING", "startedAt": 1}, JobStatus.RUNNING),
        ({"status": "SUCCEEDED", "startedAt": 1}, JobStatus.SUCCEEDED),
        (
            {"status": "FAILED", "startedAt": 1, "statusReason": "Essential container in task exited"},
            JobStatus.FAILED,
        ),
        ({"status": "FAILED", "statusReason": "Dependent Job failed"}, JobStatus.ABORTED_DEPS_FAILED),
        ({"status": "FAILED", "startedAt": 0}, JobStatus.ABORTED_DEPS_FAILED),
        ({"status": "FAILED", "statusReason": "ABORTED_BY_USER: stop"}, JobStatus.ABORTED_BY_USER),
        # Started and then terminated by the user: the reference said failed.
        (
            {"status": "FAILED", "startedAt": 1, "statusReason": "ABORTED_BY_USER: stop"},
            JobStatus.ABORTED_BY_USER,
        ),
        # The reference's own cancel wrote the prefix in lower case, which its mapping missed.
        ({"status": "FAILED", "statusReason": "aborted_by_user: stop"}, JobStatus.ABORTED_BY_USER),
        ({"status": "SOMETHING_NEW"}, JobStatus.CREATED),
        ({}, JobStatus.CREATED),
    ],
)
def test_batch_job_status_maps_to_job_status(batch_job, status):
    assert job_status_from_batch(batch_job) == status


S = JobStatus


@pytest.mark.parametrize(
    ("statuses", "status"),
    [
        ([S.CREATED, S.QUEUED, S.WAITING_FOR_DEPS], WorkflowStatus.QUEUED),  # queued until a job runs
        ([S.SUCCEEDED, S.RUNNING, S.WAITING_FOR_DEPS], WorkflowStatus.RUNNING),
        ([S.SUCCEEDED, S.WAITING_FOR_DEPS], WorkflowStatus.QUEUED),  # one success is not success
        ([S.SUCCEEDED, S.SUCCEEDED], WorkflowStatus.SUCCEEDED),
        ([S.SUCCEEDED, S.FAILED, S.RUNNING], WorkflowStatus.FAILED),
        ([S.ABORTED_DEPS_FAILED, S.ABORTED_DEPS_FAILED], WorkflowStatus.FAILED),
        ([S.FAILED, S.ABORTED_BY_USER], WorkflowStatus.CANCELLED),  # any user abort wins
        ([S.RUNNING, S.ABORTED_BY_USER, S.ABORTED_DEPS_FAILED], WorkflowStatus.CANCELLED),
        ([], WorkflowStatus.QUEUED),
    ],
)
def test_workflow_status_follows_the_reference_rules(statuses, status):
    assert workflow_status_from_jobs(statuses) == status


# Queue map, job names, rate limit, input rule


def offline_executor(**kwargs: Any) -> BatchExecutor:
    return BatchExecutor(None, BatchResultsTable(None, "unused"), **kwargs)


def test_default_queue_is_the_configured_default_job_queue():
    executor = offline_executor(default_queue="main-queue", custom_queues={"default": "ignored"})
    assert executor.job_queue("default") == "main-queue"


def test_custom_queue_maps_through_the_queue_map():
    arn = "arn:aws:batch:us-east-1:123456789012:job-queue/gpu"
    executor = offline_executor(default_queue="main-queue", custom_queues={"gpu": arn})
    assert executor.job_queue("gpu") == arn


def test_unknown_queue_is_invalid_input():
    executor = offline_executor(default_queue="main-queue", custom_queues={"gpu": "gpu-queue"})
    with pytest.raises(InvalidInput) as raised:
        executor.job_queue("cpu")
    assert raised.value.message == "error getting job queue: cpu"


@pytest.mark.parametrize(
    ("namespace", "state", "name"),
    [
        ("default", "checkout", "default--checkout"),
        ("prod", "Build Frontend", "prod--Build-Frontend"),
        ("team.a", "step:1/2", "team-a--step-1-2"),
        ("_ns", "x", "ns--x"),  # a name starts with a letter or digit
        ("ns", "s" * 200, ("ns--" + "s" * 200)[:128]),
    ],
)
def test_job_names_follow_the_namespace_convention_within_batch_rules(namespace, state, name):
    assert job_name(namespace, state) == name
    assert len(name) <= 128


def test_submissions_are_limited_to_fifty_per_second():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = TokenBucket(MAX_SUBMIT_JOBS_PER_SECOND, clock=lambda: now[0], sleep=sleep)
    for _ in range(MAX_SUBMIT_JOBS_PER_SECOND * 3):
        limiter.acquire()
    # A burst of 50, then 50 a second: 150 submissions take 2 seconds.
    assert now[0] == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(
    ("start", "outputs", "job_input"),
    [
        ('{"a":1}', [], '{"a":1}'),
        ("", [], "{}"),
        ("{}", ['{"x":1}'], '{"x":1}'),
        ("{}", [None], "null"),
        ("{}", ['{"x":1}', "[2]", None], '[{"x":1},[2],null]'),
    ],
)
def test_a_job_input_is_the_start_input_the_one_output_or_an_array_of_outputs(start, outputs, job_input):
    assert dependents_input(start, outputs) == job_input


def test_report_of_a_workflow_without_jobs_is_not_found_and_cancel_is_not_found():
    executor = offline_executor(default_queue="q")
    workflow = new_workflow({"StartAt": "a", "States": {"a": {"Type": "Task", "Resource": "r", "End": True}}})
    assert executor.report(workflow).found is False
    with pytest.raises(NotFound):
        executor.cancel(workflow, "why")


# On the embedded emulator


@pytest.fixture(scope="module")
def batch(client_kwargs: dict[str, str]) -> Any:
    return boto3.client("batch", **client_kwargs)


@pytest.fixture(scope="module")
def iam(client_kwargs: dict[str, str]) -> Any:
    return boto3.client("iam", **client_kwargs)


@pytest.fixture(scope="module")
def environment(batch: Any, iam: Any) -> BatchEnvironment:
    definitions = load_job_definitions(FIXTURES / "batch" / "job-definitions.yml")
    return ensure_batch_environment(batch, iam, definitions, **ENVIRONMENT_NAMES)


@pytest.fixture(scope="module")
def results(batch_results: BatchResultsTable) -> BatchResultsTable:
    return batch_results


@pytest.fixture(scope="module")
def executor(batch: Any, results: BatchResultsTable, environment: BatchEnvironment) -> BatchExecutor:
    resources = {("ns-with-resource", "aliased-step"): "wfm-test-step"}

    def lookup(namespace: str, name: str) -> StateResource | None:
        uri = resources.get((namespace, name))
        return StateResource(name=name, namespace=namespace, uri=uri) if uri else None

    return BatchExecutor(
        batch,
        results,
        default_queue=QUEUE,
        custom_queues={"by-arn": environment.job_queue_arn},
        lookup_state_resource=lookup,
    )


def new_workflow(
    state_machine: dict, input: str = "{}", queue: str = "default", namespace: str = "test"
) -> Workflow:
    definition = WorkflowDefinition(name="batch-test", state_machine=state_machine, manager=Manager.BATCH)
    return Workflow(
        id=new_id(), workflow_definition=definition, namespace=namespace, queue=queue, input=input
    )


def with_resources(state_machine: dict, resources: dict[str, str]) -> dict:
    """A copy of `state_machine` whose named Task states (at any depth) run other job definitions."""
    changed = copy.deepcopy(state_machine)

    def visit(machine: dict) -> None:
        for name, state in machine["States"].items():
            if name in resources:
                state["Resource"] = resources[name]
            for branch in state.get("Branches", []):
                visit(branch)

    visit(changed)
    return changed


def pipeline(**resources: str) -> dict:
    return with_resources(
        load_fixture("batch", "pipeline.json"), {k.replace("_", "-"): v for k, v in resources.items()}
    )


def start(executor: BatchExecutor, workflow: Workflow) -> StartedExecution:
    """Start the workflow and record the submitted jobs on it, as the domain does."""
    started = executor.start(workflow)
    workflow.jobs = started.jobs
    return started


def finished(executor: BatchExecutor, workflow: Workflow, timeout: float = 30.0):
    """The report once the workflow is terminal and every job is done; the jobs are recorded on the
    workflow as the domain does."""

    def check():
        report = executor.report(workflow)
        if report.jobs is not None:
            workflow.jobs = report.jobs
        done = report.status in TERMINAL and all(job.status in DONE_JOBS for job in report.jobs or [])
        return report if done else None

    return wait_for(check, timeout, 0.1, f"workflow {workflow.id} to finish")


def by_state(jobs: list[Job]) -> dict[str, Job]:
    return {job.state: job for job in jobs}


def output(job: Job) -> Any:
    return json.loads(job.output)


def test_pipeline_runs_jobs_in_dependency_order_and_passes_outputs_along(executor: BatchExecutor):
    workflow = new_workflow(pipeline(), input='{"repository": "shop"}')

    start(executor, workflow)

    assert [(job.state, job.name, job.status) for job in workflow.jobs] == [
        (state, f"test--{state}", JobStatus.CREATED)
        for state in ("checkout", "build-a", "build-b", "package", "publish")
    ]
    report = finished(executor, workflow)
    assert report.status == WorkflowStatus.SUCCEEDED, report.status_reason
    jobs = by_state(report.jobs)
    assert {job.status for job in jobs.values()} == {JobStatus.SUCCEEDED}

    # Dependency order, from the recorded times: no job started before its dependencies stopped...
    for later, earlier in [
        ("build-a", "checkout"),
        ("build-b", "checkout"),
        ("package", "build-a"),
        ("package", "build-b"),
        ("publish", "package"),
    ]:
        assert jobs[later].started_at >= jobs[earlier].stopped_at, (later, earlier)
    # ...and the two builds ran side by side.
    assert jobs["build-a"].started_at < jobs["build-b"].stopped_at
    assert jobs["build-b"].started_at < jobs["build-a"].stopped_at

    # Data: each job's output holds the input it got from the jobs before it.
    checkout = {"state": "checkout", "input": {"repository": "shop"}}
    build_a = {"state": "build-a", "input": checkout}
    build_b = {"state": "build-b", "input": checkout}
    package = {"state": "package", "input": [build_a, build_b]}
    publish = {"state": "publish", "input": package}
    assert [output(jobs[s]) for s in ("checkout", "build-a", "build-b", "package", "publish")] == [
        checkout,
        build_a,
        build_b,
        package,
        publish,
    ]
    assert json.loads(jobs["package"].input) == [build_a, build_b]
    assert json.loads(jobs["checkout"].input) == {"repository": "shop"}
    assert json.loads(report.output) == publish

    checkout_job = jobs["checkout"]
    assert checkout_job.queue.endswith(f":job-queue/{QUEUE}")
    assert checkout_job.state_resource.uri == "wfm-test-step"
    assert [
        (a.exit_code, a.started_at is not None, a.stopped_at is not None) for a in checkout_job.attempts
    ] == [(0, True, True)]
    assert report.stopped_at == jobs["publish"].stopped_at


def test_failing_job_fails_the_workflow_and_its_dependents_are_aborted(executor: BatchExecutor):
    workflow = new_workflow(pipeline(build_b="wfm-test-fail"))

    start(executor, workflow)
    report = finished(executor, workflow)

    assert report.status == WorkflowStatus.FAILED
    assert {state: job.status for state, job in by_state(report.jobs).items()} == {
        "checkout": JobStatus.SUCCEEDED,
        "build-a": JobStatus.SUCCEEDED,
        "build-b": JobStatus.FAILED,
        "package": JobStatus.ABORTED_DEPS_FAILED,
        "publish": JobStatus.ABORTED_DEPS_FAILED,
    }
    assert report.last_job.state == "build-b"
    assert [a.exit_code for a in report.last_job.attempts] == [3]
    assert report.status_reason == "job 'build-b' failed: Essential container in task exited; exit code 3"
    assert by_state(report.jobs)["package"].started_at is None


def test_cancel_mid_run_cancels_the_workflow_and_aborts_its_jobs(executor: BatchExecutor):
    workflow = new_workflow(pipeline(build_a="wfm-test-sleep"))
    start(executor, workflow)

    def build_a_running():
        jobs = by_state(executor.report(workflow).jobs)
        return jobs["build-a"].status == JobStatus.RUNNING

    wait_for(build_a_running, 20, 0.05, "build-a to run")
    executor.cancel(workflow, "no longer needed")
    report = finished(executor, workflow)

    assert report.status == WorkflowStatus.CANCELLED
    jobs = by_state(report.jobs)
    assert jobs["checkout"].status == JobStatus.SUCCEEDED
    # build-b may have finished before the cancel reached it.
    assert jobs["build-b"].status in (JobStatus.SUCCEEDED, JobStatus.ABORTED_BY_USER)
    for state in ("build-a", "package", "publish"):
        assert jobs[state].status == JobStatus.ABORTED_BY_USER, state
        assert jobs[state].status_reason == f"{ABORTED_BY_USER_PREFIX}: no longer needed"
    assert jobs["build-a"].started_at is not None  # terminated while running
    assert jobs["package"].started_at is None  # cancelled before it started


def test_resume_from_the_failed_state_submits_only_the_jobs_from_it_and_succeeds(
    executor: BatchExecutor, batch: Any, iam: Any, tmp_path: Path
):
    gate = tmp_path / "gate-open"
    gate_definition = f"wfm-test-gate-{uuid.uuid4().hex[:8]}"
    step = FIXTURES / "batch" / "step.sh"
    ensure_batch_environment(
        batch,
        iam,
        {
            gate_definition: [
                "sh",
                "-c",
                f"test -e {gate} || {{ echo gate closed >&2; exit 4; }}; exec sh {step}",
            ]
        },
        **ENVIRONMENT_NAMES,
    )
    state_machine = pipeline(package=gate_definition)
    original = new_workflow(state_machine, input='{"repository": "shop"}')
    start(executor, original)
    failed = finished(executor, original)
    assert failed.status == WorkflowStatus.FAILED
    assert failed.last_job.state == "package"
    recorded_input = failed.last_job.input
    assert [job["state"] for job in json.loads(recorded_input)] == ["build-a", "build-b"]

    gate.touch()
    # As the domain resumes: the definition from the failed state on, with the job's recorded input.
    resumed = new_workflow(prune_unreachable_states(state_machine, "package"), input=recorded_input)
    start(executor, resumed)

    assert [job.state for job in resumed.jobs] == ["package", "publish"]
    report = finished(executor, resumed)
    assert report.status == WorkflowStatus.SUCCEEDED, report.status_reason
    jobs = by_state(report.jobs)
    assert output(jobs["package"])["input"] == json.loads(recorded_input)
    assert output(jobs["publish"])["input"] == output(jobs["package"])
    assert json.loads(report.output) == output(jobs["publish"])


def test_submission_failure_part_way_terminates_what_was_submitted(executor: BatchExecutor, batch: Any):
    workflow = new_workflow(pipeline(checkout="wfm-test-sleep", package="wfm-test-no-such-definition"))

    with pytest.raises(StartAbandoned) as raised:
        executor.start(workflow)

    error = raised.value.error
    assert isinstance(error, InvalidInput)
    assert error.message.startswith("SubmitJob for state 'package': ")
    assert error.message.endswith("(3 of 5 jobs had been submitted and were terminated)")
    assert workflow.jobs == []  # the workflow is left as it was; the error carries the jobs
    workflow.jobs = raised.value.jobs  # as the domain records them
    assert [job.state for job in workflow.jobs] == ["checkout", "build-a", "build-b"]

    def all_failed():
        described = batch.describe_jobs(jobs=[job.id for job in workflow.jobs])["jobs"]
        return described if all(j["status"] == "FAILED" for j in described) else None

    for described in wait_for(all_failed, 20, 0.05, "the submitted jobs to be terminated"):
        assert described["statusReason"].startswith(
            f"{SUBMISSION_FAILED_PREFIX}: SubmitJob for state 'package'"
        )
    assert executor.report(workflow).status == WorkflowStatus.FAILED


def test_a_caller_mistake_found_before_submission_submits_nothing(executor: BatchExecutor, batch: Any):
    def submitted() -> int:
        return len(
            batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["*"]}])["jobSummaryList"]
        )

    before = submitted()
    unknown_queue = new_workflow(pipeline(), queue="no-such-queue")
    with pytest.raises(InvalidInput, match="error getting job queue: no-such-queue"):
        executor.start(unknown_queue)
    short_timeout = new_workflow(pipeline(publish="wfm-test-step"))
    short_timeout.workflow_definition.state_machine["States"]["publish"]["TimeoutSeconds"] = 10
    with pytest.raises(InvalidInput, match="TimeoutSeconds of state 'publish' is 10"):
        executor.start(short_timeout)

    assert unknown_queue.jobs == short_timeout.jobs == []
    assert submitted() == before


def single_task(resource: str, **fields: Any) -> dict:
    return {
        "StartAt": "only",
        "States": {"only": {"Type": "Task", "Resource": resource, "End": True, **fields}},
    }


def test_retry_max_attempts_rerun_a_failed_attempt_and_attempts_show_exit_codes(executor: BatchExecutor):
    workflow = new_workflow(
        single_task("wfm-test-flaky", Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}])
    )

    start(executor, workflow)
    report = finished(executor, workflow)

    assert report.status == WorkflowStatus.SUCCEEDED, report.status_reason
    [job] = report.jobs
    assert [attempt.exit_code for attempt in job.attempts] == [5, 0]
    assert job.attempts[0].stopped_at <= job.attempts[1].started_at


def test_custom_queue_and_state_resource_pick_the_job_queue_and_definition(
    executor: BatchExecutor, environment: BatchEnvironment
):
    workflow = new_workflow(single_task("aliased-step"), queue="by-arn", namespace="ns-with-resource")

    start(executor, workflow)
    report = finished(executor, workflow)

    assert report.status == WorkflowStatus.SUCCEEDED, report.status_reason
    [job] = report.jobs
    assert job.queue == environment.job_queue_arn
    assert job.name == "ns-with-resource--only"
    assert job.state_resource.uri == "wfm-test-step"


def test_check_health_answers_when_batch_is_reachable_and_raises_when_not(
    executor: BatchExecutor, results: BatchResultsTable
):
    executor.check_health()
    unreachable = boto3.client(
        "batch",
        **emulator_client_kwargs("http://127.0.0.1:9"),
        config=BotoConfig(retries={"max_attempts": 0}, connect_timeout=1),
    )
    with pytest.raises(BackendUnavailable):
        BatchExecutor(unreachable, results, default_queue=QUEUE).check_health()


def test_emulated_batch_stops_an_attempt_at_its_timeout(batch: Any, environment: BatchEnvironment):
    # Batch's minimum timeout is 60 s, which the executor enforces; the emulator takes any value.
    job_id = batch.submit_job(
        jobName="wfm-test-timeout",
        jobDefinition="wfm-test-sleep",
        jobQueue=QUEUE,
        timeout={"attemptDurationSeconds": 1},
    )["jobId"]

    def stopped():
        [described] = batch.describe_jobs(jobs=[job_id])["jobs"]
        return described if described["status"] in ("SUCCEEDED", "FAILED") else None

    described = wait_for(stopped, 20, 0.05, "the job to time out")
    assert (described["status"], described["statusReason"]) == ("FAILED", batch_runner.REASON_TIMEOUT)
    assert job_status_from_batch(described) == JobStatus.FAILED


# What the service's environment may hold and a job must never see, unless its job definition or
# submission sets it.
SERVICE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIASERVICEKEY",
    "AWS_SECRET_ACCESS_KEY": "service-secret-key",
    "AWS_SESSION_TOKEN": "service-session-token",
    "AWS_PROFILE": "service-profile",
    "WFM_AUTH_TOKENS_FILE": "/etc/wfm/tokens.yml",
    "DEPLOY_TOKEN": "ghp_servicesowntoken",
    "PYTHONPATH": "/service/lib",
    "VIRTUAL_ENV": "/service/venv",
}


def test_emulated_batch_job_gets_its_container_environment_and_none_of_the_services(
    batch: Any,
    environment: BatchEnvironment,
    client_kwargs: dict[str, str],
    emulator: EmbeddedEmulator,
    monkeypatch: pytest.MonkeyPatch,
):
    logs = boto3.client("logs", **client_kwargs)  # before the service's variables change
    definition = f"wfm-test-environment-{uuid.uuid4().hex[:8]}"
    batch.register_job_definition(
        jobDefinitionName=definition,
        type="container",
        containerProperties={
            "image": "workflow-manager/local",
            "command": ["python3", str(FIXTURES / "worker" / "print_environment.py")],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
            "environment": [
                {"name": "FROM_DEFINITION", "value": "definition"},
                {"name": "OVERRIDDEN", "value": "definition"},
                {"name": "WFM_JOB_SETTING", "value": "set by the job definition"},
            ],
        },
    )
    for name, value in SERVICE_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", "/home/service")
    monkeypatch.setenv("LANG", "C.UTF-8")  # see print_environment.py

    job_id = batch.submit_job(
        jobName="wfm-test-environment",
        jobDefinition=definition,
        jobQueue=QUEUE,
        containerOverrides={
            "environment": [
                {"name": "OVERRIDDEN", "value": "submission"},
                {"name": "FROM_SUBMISSION", "value": "submission"},
            ]
        },
    )["jobId"]

    def stopped():
        [described] = batch.describe_jobs(jobs=[job_id])["jobs"]
        return described if described["status"] in ("SUCCEEDED", "FAILED") else None

    described = wait_for(stopped, 20, 0.05, "the job to finish")
    assert described["status"] == "SUCCEEDED", described.get("statusReason")
    events = logs.get_log_events(
        logGroupName="/aws/batch/job", logStreamName=described["container"]["logStreamName"]
    )["events"]
    [seen] = [json.loads(event["message"])["environment"] for event in events]
    assert set(seen) == {
        "PATH",
        "HOME",
        "LANG",
        "FROM_DEFINITION",
        "OVERRIDDEN",
        "WFM_JOB_SETTING",
        "FROM_SUBMISSION",
        "AWS_BATCH_JOB_ID",
        "AWS_BATCH_JOB_ATTEMPT",
        "AWS_BATCH_JQ_NAME",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert seen["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert (seen["HOME"], seen["LANG"]) == ("/home/service", "C.UTF-8")
    assert (seen["FROM_DEFINITION"], seen["OVERRIDDEN"], seen["FROM_SUBMISSION"]) == (
        "definition",
        "submission",
        "submission",
    )
    assert seen["WFM_JOB_SETTING"] == "set by the job definition"
    assert (seen["AWS_BATCH_JOB_ID"], seen["AWS_BATCH_JOB_ATTEMPT"], seen["AWS_BATCH_JQ_NAME"]) == (
        job_id,
        "1",
        QUEUE,
    )
    assert seen["AWS_ENDPOINT_URL"] == emulator.endpoint_url
    # The emulator's dummy credentials, which it accepts, so that jobs can publish their outputs.
    assert (seen["AWS_ACCESS_KEY_ID"], seen["AWS_SECRET_ACCESS_KEY"]) == (
        DUMMY_CREDENTIALS["aws_access_key_id"],
        DUMMY_CREDENTIALS["aws_secret_access_key"],
    )
    assert not any(secret in json.dumps(seen) for secret in SERVICE_SECRETS.values())


# The container commands


def run_output_command(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "executor.batch_results", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )


def test_publish_output_and_job_input_commands_pass_outputs_by_job_id(
    emulator: EmbeddedEmulator, results: BatchResultsTable
):
    endpoint = {
        "AWS_ENDPOINT_URL": emulator.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "WFM_BATCH_RESULTS_TABLE": results.table_name,
    }
    first, second = f"job-{uuid.uuid4()}", f"job-{uuid.uuid4()}"

    published = run_output_command(
        ["publish-output", '{"artifact": "a.tgz"}'], {**endpoint, "AWS_BATCH_JOB_ID": first}
    )
    assert published.returncode == 0, published.stderr
    from_stdin = run_output_command(
        ["publish-output"], {**endpoint, "AWS_BATCH_JOB_ID": second}, stdin="[1, 2]\n"
    )
    assert from_stdin.returncode == 0, from_stdin.stderr

    both = run_output_command(["job-input"], {**endpoint, "_BATCH_DEPENDENCIES": f"{first},{second}"})
    assert json.loads(both.stdout) == [{"artifact": "a.tgz"}, [1, 2]]
    one = run_output_command(["job-input"], {**endpoint, "_BATCH_DEPENDENCIES": first})
    assert json.loads(one.stdout) == {"artifact": "a.tgz"}
    start = run_output_command(
        ["job-input"], {**endpoint, "_BATCH_DEPENDENCIES": "", "_BATCH_START": '{"go": 1}'}
    )
    assert json.loads(start.stdout) == {"go": 1}

    not_json = run_output_command(["publish-output", "{oops"], {**endpoint, "AWS_BATCH_JOB_ID": first})
    assert not_json.returncode == 2
    assert "output is not valid JSON" in not_json.stderr
    assert results.outputs([first]) == {first: '{"artifact": "a.tgz"}'}


# The data/ example


def _cli_has_batch_commands() -> bool:
    cli = Path(sys.executable).parent / "workflow-manager"
    try:
        return (
            subprocess.run([str(cli), "job-input", "--help"], capture_output=True, timeout=30).returncode == 0
        )
    except OSError:
        return False


@pytest.fixture
def workflow_manager_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the `workflow-manager` CLI has the job-input and publish-output commands, jobs get a
    stand-in on PATH that runs them from their module."""
    if _cli_has_batch_commands():
        return
    shim = tmp_path / "bin" / "workflow-manager"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m executor.batch_results "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    original = batch_runner._process_environment

    def with_shim(job, attempt):
        environment = original(job, attempt)
        environment["PATH"] = f"{shim.parent}{os.pathsep}{environment['PATH']}"
        return environment

    monkeypatch.setattr(batch_runner, "_process_environment", with_shim)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_build_pipeline_example_passes_artifact_metadata_to_publish(
    executor: BatchExecutor, batch: Any, iam: Any, workflow_manager_cli: None
):
    ensure_batch_environment(
        batch, iam, load_job_definitions(DATA / "batch-job-definitions.yml"), **ENVIRONMENT_NAMES
    )
    body = json.loads((DATA / "build-pipeline.post.json").read_text())
    workflow = new_workflow(body["stateMachine"], input='{"repository": "https://git.example.com/shop.git"}')

    start(executor, workflow)
    report = finished(executor, workflow)

    assert report.status == WorkflowStatus.SUCCEEDED, report.status_reason
    jobs = by_state(report.jobs)
    commit = output(jobs["checkout"])["commit"]
    assert json.loads(report.output) == {
        "published": f"registry.example.com/shop:{commit}",
        "bundle": f"shop-{commit}.zip",
        "contents": [f"backend-{commit}.tar.gz", f"frontend-{commit}.tar.gz"],
    }
    assert [job["component"] for job in json.loads(jobs["package"].input)] == ["frontend", "backend"]
