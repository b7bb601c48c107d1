"""The examples in data/ run as the README says, with the workers `make run` starts
(data/workers.yml, given a demo directory of the test's own in WFM_DEMO_DIR), each step a real
command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from executor.activity_worker.pool import load_worker_specs
from tests.conftest import DATA, Api, beside_config, serve
from workflow_manager.emulator.seeding import ensure_batch_environment, load_job_definitions

TERMINAL = {"succeeded", "failed", "cancelled"}


def workers_file_with_env(source: Path, target: Path, env: dict[str, str]) -> Path:
    """A copy of the workers file `source` at `target`, its commands resolved (absolute paths) and
    `env` added to every entry's: the commands get a clean environment, not the test's."""
    workers = {
        spec.activity: {
            "command": spec.command,
            "concurrency": spec.concurrency,
            "env": {**spec.env, **env},
            **({"work_directory": spec.work_directory} if spec.work_directory else {}),
        }
        for spec in load_worker_specs(source)
    }
    target.write_text(yaml.safe_dump({"workers": workers}))
    return target


@pytest.fixture(scope="module")
def examples_api(served_app, tmp_path_factory):
    demo_dir = tmp_path_factory.mktemp("demo")
    # data/workers.yml's workers, whose infra.py keeps its state under WFM_DEMO_DIR.
    workers_file = workers_file_with_env(
        DATA / "workers.yml",
        tmp_path_factory.mktemp("workers") / "workers.yml",
        {"WFM_DEMO_DIR": str(demo_dir)},
    )
    # A second app on the session's emulator, in its own namespace so that its workers (the ones
    # `make run` starts) and the test workers never take each other's tasks.
    config = beside_config(
        served_app,
        workers_file=workers_file,
        default_namespace="examples",
        start_workers=True,
    )
    served = serve(config)
    # What `make run` does in embedded mode for the Batch example: its job definitions.
    clients = served.app.runtime.clients
    ensure_batch_environment(
        clients.client("batch"),
        clients.client("iam"),
        load_job_definitions(DATA / "batch-job-definitions.yml"),
        queue_name=config.batch_default_queue,
    )
    api = Api(f"http://127.0.0.1:{served.port}")
    for example in (
        "hello-workflow",
        "bootstrap-infrastructure",
        "failing-workflow",
        "build-pipeline",
    ):
        body = json.loads((DATA / f"{example}.post.json").read_text())
        assert api.post("/workflow-definitions", body).status_code == 201
    yield api, demo_dir
    served.stop()


def jobs_by_state(workflow: dict) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for job in workflow["jobs"]:
        grouped.setdefault(job["state"], []).append(job)
    return grouped


def test_bootstrap_runs_its_commands_in_order_with_parallel_map_retry_and_choice(examples_api):
    api, demo_dir = examples_api
    accounts = ["dev", "staging", "prod"]
    started = api.post(
        "/workflows",
        {
            "workflowDefinition": {"name": "bootstrap-infrastructure"},
            "input": {"tenant": "acme", "region": "us-west-2", "accounts": accounts, "apply": True},
        },
    ).json()
    finished = api.wait_for_status(started["id"], TERMINAL, timeout=60)
    assert finished["status"] == "succeeded", finished
    jobs = jobs_by_state(finished)
    assert sorted(jobs) == sorted(
        [
            "validate-parameters",
            "create-state-bucket",
            "create-lock-table",
            "plan",
            "apply-or-stop",
            "apply",
            "bootstrapped",
        ]
    )
    assert len(jobs["plan"]) == len(accounts)
    # The throttled first try of the lock table is folded into the job's attempts.
    [lock_table] = jobs["create-lock-table"]
    assert len(lock_table["attempts"]) == 1
    assert "ThrottlingException" in lock_table["attempts"][0]["reason"]

    def started_at(state: str) -> str:
        return min(job["startedAt"] for job in jobs[state])

    def stopped_at(state: str) -> str:
        return max(job["stoppedAt"] for job in jobs[state])

    assert stopped_at("validate-parameters") <= started_at("create-state-bucket")
    assert stopped_at("validate-parameters") <= started_at("create-lock-table")
    assert stopped_at("create-lock-table") <= started_at("plan")
    assert stopped_at("create-state-bucket") <= started_at("plan")
    assert stopped_at("plan") <= started_at("apply")

    tenant_dir = demo_dir / "acme"
    assert (tenant_dir / "acme-terraform-state" / "versioning").read_text() == "Enabled\n"
    for account in accounts:
        assert (tenant_dir / f"applied-{account}.txt").read_text().startswith("+ backend")
    output = json.loads(finished["output"])
    assert output["applied"]["applied"] == accounts
    assert sorted(plan["account"] for plan in output["plans"]) == sorted(accounts)


def test_bootstrap_failure_is_caught_reported_and_fails_the_workflow(examples_api):
    api, demo_dir = examples_api
    started = api.post(
        "/workflows",
        {
            "workflowDefinition": {"name": "bootstrap-infrastructure"},
            "input": {
                "tenant": "broken",
                "region": "eu-west-1",
                "accounts": ["dev"],
                "apply": True,
                "break_apply": True,
            },
        },
    ).json()
    finished = api.wait_for_status(started["id"], TERMINAL, timeout=60)
    assert finished["status"] == "failed"
    jobs = jobs_by_state(finished)
    assert jobs["apply"][0]["status"] == "failed"
    assert "apply refused for broken" in jobs["apply"][0]["statusReason"]
    # As in the reference (notes 3.8), a Fail state is no job: the execution's failure lands on
    # the last job, with the Fail state's cause and error.
    assert jobs["report-failure"][0]["statusReason"] == (
        "apply failed; see the report-failure job\nBootstrapFailed"
    )
    report = json.loads((demo_dir / "broken" / "FAILED").read_text())
    assert report["Error"] == "sfncli.CommandExitedNonzero"
    assert finished["lastJob"]["state"] == "report-failure"


def test_bootstrap_without_apply_stops_after_planning(examples_api):
    api, demo_dir = examples_api
    started = api.post(
        "/workflows",
        {
            "workflowDefinition": {"name": "bootstrap-infrastructure"},
            "input": {"tenant": "planner", "region": "us-east-1", "accounts": ["dev"], "apply": False},
        },
    ).json()
    finished = api.wait_for_status(started["id"], TERMINAL, timeout=60)
    assert finished["status"] == "succeeded"
    assert "apply" not in jobs_by_state(finished)
    assert "planned-only" in jobs_by_state(finished)
    assert not (demo_dir / "planner" / "applied-dev.txt").exists()


def test_failing_example_fails_with_the_command_reason(examples_api):
    api, _ = examples_api
    started = api.post(
        "/workflows",
        {"workflowDefinition": {"name": "failing-workflow"}, "input": {"service": "billing"}},
    ).json()
    finished = api.wait_for_status(started["id"], TERMINAL)
    assert finished["status"] == "failed"
    [job] = finished["jobs"]
    assert job["statusReason"] == (
        "cannot deploy billing: the target cluster is missing\nsfncli.CommandExitedNonzero"
    )


def test_background_updater_records_progress_without_anyone_calling_get(examples_api):
    api, _ = examples_api
    started = api.post(
        "/workflows", {"workflowDefinition": {"name": "hello-workflow"}, "input": ["updater"]}
    ).json()

    def listed_status():
        # The listing reads the store only: it never asks Step Functions.
        listed = api.get("/workflows?workflowDefinitionName=hello-workflow&limit=100").json()
        [workflow] = [wf for wf in listed if wf["id"] == started["id"]]
        return workflow if workflow["status"] == "succeeded" else None

    from tests.conftest import wait_for

    workflow = wait_for(listed_status, 30, 0.2, "the updater to record success")
    assert [job["status"] for job in workflow["jobs"]] == ["succeeded"]
    assert "Hello, updater!" in workflow["jobs"][0]["output"]


def test_build_pipeline_runs_on_batch_and_passes_artifacts_along(examples_api):
    api, _ = examples_api
    started = api.post(
        "/workflows",
        {
            "workflowDefinition": {"name": "build-pipeline"},
            "input": {"repository": "https://git.example.com/shop.git", "ref": "main"},
        },
    ).json()
    finished = api.wait_for_status(started["id"], TERMINAL, timeout=90)
    assert finished["status"] == "succeeded", [
        (j["state"], j["status"], j.get("statusReason"), j.get("attempts")) for j in finished["jobs"]
    ]
    jobs = {job["state"]: job for job in finished["jobs"]}
    assert sorted(jobs) == ["build-backend", "build-frontend", "checkout", "package", "publish"]
    for build in ("build-frontend", "build-backend"):
        assert jobs["checkout"]["stoppedAt"] <= jobs[build]["startedAt"]
        assert jobs[build]["stoppedAt"] <= jobs["package"]["startedAt"]
    commit = json.loads(jobs["checkout"]["output"])["commit"]
    package = json.loads(jobs["package"]["output"])
    assert package["contents"] == [f"backend-{commit}.tar.gz", f"frontend-{commit}.tar.gz"]
    assert json.loads(finished["output"])["published"].endswith(commit)
