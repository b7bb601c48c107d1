"""The domain's entities: workflow definitions, workflows, jobs and state resources.

Plain dataclasses with snake_case fields and aware UTC datetimes. The wire format (camelCase JSON,
RFC 3339 millisecond times) lives in `workflow_manager.domain.schemas`; States Language documents
(`state_machine`) stay as the caller's JSON objects with their PascalCase keys, because they are
handed to Step Functions as they are.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class WorkflowStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"


class JobStatus(StrEnum):
    CREATED = "created"
    QUEUED = "queued"
    WAITING_FOR_DEPS = "waiting_for_deps"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED_DEPS_FAILED = "aborted_deps_failed"
    ABORTED_BY_USER = "aborted_by_user"


class Manager(StrEnum):
    STEP_FUNCTIONS = "step-functions"
    BATCH = "batch"


class StateResourceType(StrEnum):
    JOB_DEFINITION_ARN = "JobDefinitionARN"
    ACTIVITY_ARN = "ActivityARN"
    LAMBDA_FUNCTION_ARN = "LambdaFunctionARN"
    TASK_ARN = "TaskARN"


def resource_type_for_uri(uri: str) -> StateResourceType:
    """The type a state resource has when the request names none (contract 3)."""
    if uri.startswith("arn:") and ":batch:" in uri and ":job-definition/" in uri:
        return StateResourceType.JOB_DEFINITION_ARN
    if uri.startswith("arn:") and ":lambda:" in uri:
        return StateResourceType.LAMBDA_FUNCTION_ARN
    if uri.startswith("arn:") and ":states:" in uri and ":activity:" in uri:
        return StateResourceType.ACTIVITY_ARN
    if uri.startswith("arn:"):
        return StateResourceType.TASK_ARN
    return StateResourceType.ACTIVITY_ARN


def utc_now() -> datetime:
    """Now, in UTC, truncated to the millisecond the wire format carries, so that a value read
    back from any store compares equal to the one written."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


# The namespace of the ids of workflows started with an Idempotency-Key (a fixed, random UUID).
IDEMPOTENT_ID_NAMESPACE = uuid.UUID("5b0d2c1e-7a43-4c8e-9f0a-3f1d2e6b8a47")


def idempotent_workflow_id(caller: str, idempotency_key: str) -> str:
    """The id of the workflow a caller's Idempotency-Key starts: the same for every repeat, so the
    store's conditional save of a new id is what lets one request of many start it."""
    return str(uuid.uuid5(IDEMPOTENT_ID_NAMESPACE, f"{caller}\n{idempotency_key}"))


@dataclass
class StateResource:
    name: str
    namespace: str
    uri: str = ""
    type: StateResourceType | str = ""
    last_updated: datetime | None = None


@dataclass
class JobAttempt:
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    container_instance_arn: str = ""
    task_arn: str = ""
    reason: str = ""
    exit_code: int | None = None


@dataclass
class Job:
    id: str
    state: str = ""
    status: JobStatus = JobStatus.CREATED
    name: str = ""
    input: str = ""
    output: str = ""
    status_reason: str = ""
    container: str = ""
    queue: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    attempts: list[JobAttempt] = field(default_factory=list)
    state_resource: StateResource | None = None


@dataclass
class WorkflowDefinition:
    name: str
    state_machine: dict[str, Any]
    version: int = 0
    manager: Manager = Manager.STEP_FUNCTIONS
    default_tags: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    created_at: datetime | None = None

    def copy(self) -> WorkflowDefinition:
        return copy.deepcopy(self)

    @property
    def start_at(self) -> str:
        return self.state_machine.get("StartAt", "")


@dataclass(frozen=True)
class StartClaim:
    """Who is starting a workflow, and until when (a lease). A workflow is saved with a claim
    before anything is started, and the claim is cleared by the write that records the finished
    start: a claim on a saved workflow is the durable intent to start it. The owner renews the
    claim while it works; once it has expired, any replica may take the start over (its owner
    died) and finish it. `owner` is one start attempt's token, not a replica's."""

    owner: str
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass
class Workflow:
    id: str
    workflow_definition: WorkflowDefinition
    status: WorkflowStatus = WorkflowStatus.QUEUED
    namespace: str = ""
    queue: str = "default"
    input: str = "{}"
    created_at: datetime | None = None
    last_updated: datetime | None = None
    stopped_at: datetime | None = None
    resolved_by_user: bool = False
    retry_for: str = ""
    retries: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    last_job: Job | None = None
    status_reason: str = ""
    output: str = ""
    jobs: list[Job] = field(default_factory=list)
    # Set while the start is not finished (see StartClaim). Never on the wire.
    start_claim: StartClaim | None = None
    # Set when the status came from an event (executor.aws_events) ahead of the jobs: the
    # execution ended, its history is still to be read. The store keeps the workflow among the
    # active ones until a refresh reads the jobs and clears it. Never on the wire.
    jobs_pending: bool = False
    # Optimistic-concurrency token, owned by the store: a write succeeds only when the revision it
    # read is still current. Never on the wire.
    revision: int = 0

    def copy(self) -> Workflow:
        return copy.deepcopy(self)
