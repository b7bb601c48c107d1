"""Seeding the embedded emulator: it starts empty, so the service gives it the Batch compute
environment, job queue and job definitions the examples use (from `data/batch-job-definitions.yml`),
and the Batch results table.

The job definitions run local commands (the emulator's Batch runner, `batch_runner`), so each one's
relative paths are resolved against the file that names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from executor.aws_errors import error_code
from executor.batch_results import BatchResultsTable
from executor.local_commands import resolve_command

# Defaults of ensure_batch_environment (moto wants Batch names of at least 3 characters).
DEFAULT_JOB_QUEUE = "default"
DEFAULT_COMPUTE_ENVIRONMENT = "workflow-manager-local"
DEFAULT_SERVICE_ROLE = "workflow-manager-batch"
# Never pulled: the runner runs the command locally.
EMULATOR_IMAGE = "workflow-manager/local"
_BATCH_TRUST_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Principal":{"Service":"batch.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
)


@dataclass
class BatchEnvironment:
    role_arn: str
    compute_environment_arn: str
    job_queue_arn: str
    job_definition_arns: dict[str, str] = field(default_factory=dict)


def load_job_definitions(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The job definitions of a YAML file `job-definitions: {name: {command: [...]}}` (or
    `{name: [...]}`), commands resolved against the file's folder. ValueError on a malformed file."""
    path = Path(path)
    document = yaml.safe_load(path.read_text()) or {}
    entries = document.get("job-definitions") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected a mapping `job-definitions: {{name: {{command: [...]}}}}`")
    definitions = {}
    for name, entry in entries.items():
        command = entry.get("command") if isinstance(entry, dict) else entry
        if not (isinstance(command, str) and command) and not (
            isinstance(command, list) and command and all(isinstance(p, str | int) for p in command)
        ):
            raise ValueError(f"{path}: job definition '{name}' needs a command (a list or a string)")
        definitions[str(name)] = resolve_command(command, path.parent)
    return definitions


def ensure_batch_environment(
    batch_client: Any,
    iam_client: Any,
    job_definitions: Mapping[str, Sequence[str] | str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    queue_name: str = DEFAULT_JOB_QUEUE,
    compute_environment_name: str = DEFAULT_COMPUTE_ENVIRONMENT,
    role_name: str = DEFAULT_SERVICE_ROLE,
) -> BatchEnvironment:
    """Create, unless they exist, the IAM service role, an unmanaged compute environment, the job
    queue `queue_name` and a job definition per entry of `job_definitions` (name -> command, relative
    paths resolved against `base_dir`). A job definition whose latest active revision runs another
    command gets a new revision. Idempotent."""
    try:
        role_arn = iam_client.get_role(RoleName=role_name)["Role"]["Arn"]
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise
        role_arn = iam_client.create_role(RoleName=role_name, AssumeRolePolicyDocument=_BATCH_TRUST_POLICY)[
            "Role"
        ]["Arn"]

    environments = batch_client.describe_compute_environments(computeEnvironments=[compute_environment_name])[
        "computeEnvironments"
    ]
    if environments:
        environment_arn = environments[0]["computeEnvironmentArn"]
    else:
        environment_arn = batch_client.create_compute_environment(
            computeEnvironmentName=compute_environment_name,
            type="UNMANAGED",
            state="ENABLED",
            serviceRole=role_arn,
        )["computeEnvironmentArn"]

    queues = batch_client.describe_job_queues(jobQueues=[queue_name])["jobQueues"]
    if queues:
        queue_arn = queues[0]["jobQueueArn"]
    else:
        queue_arn = batch_client.create_job_queue(
            jobQueueName=queue_name,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment_arn}],
        )["jobQueueArn"]

    arns = {}
    for name, command in job_definitions.items():
        resolved = resolve_command(command, base_dir)
        active = batch_client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")[
            "jobDefinitions"
        ]
        latest = max(active, key=lambda d: d["revision"]) if active else None
        if latest is not None and latest.get("containerProperties", {}).get("command") == resolved:
            arns[name] = latest["jobDefinitionArn"]
            continue
        arns[name] = batch_client.register_job_definition(
            jobDefinitionName=name,
            type="container",
            containerProperties={
                "image": EMULATOR_IMAGE,
                "command": resolved,
                "resourceRequirements": [
                    {"type": "VCPU", "value": "1"},
                    {"type": "MEMORY", "value": "512"},
                ],
            },
        )["jobDefinitionArn"]
    return BatchEnvironment(role_arn, environment_arn, queue_arn, arns)


def seed_embedded_batch(
    batch_client: Any,
    iam_client: Any,
    results: BatchResultsTable,
    job_definitions_file: Path | None,
    *,
    queue_name: str = DEFAULT_JOB_QUEUE,
) -> BatchEnvironment:
    """Give the emulator the results table, a compute environment, the job queue `queue_name` and
    the job definitions of `job_definitions_file` (none when it is None or missing)."""
    results.ensure_table()
    job_definitions = (
        load_job_definitions(job_definitions_file)
        if job_definitions_file is not None and job_definitions_file.exists()
        else {}
    )
    return ensure_batch_environment(batch_client, iam_client, job_definitions, queue_name=queue_name)
