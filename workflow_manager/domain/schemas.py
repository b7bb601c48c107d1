"""The wire format of the domain's entities, as marshmallow schemas.

One place decides how an entity looks in JSON, for the HTTP API and for stores that keep documents:
camelCase keys, RFC 3339 UTC times with milliseconds (`2026-11-25T12:00:00.000Z`), unset times and
empty optional strings omitted, lists always `[]`, and `version: 0` / `resolvedByUser: false` present
(the contract fixes the reference's `omitempty` on those).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, post_dump, post_load

from workflow_manager.domain.models import (
    Job,
    JobAttempt,
    JobStatus,
    Manager,
    StateResource,
    Workflow,
    WorkflowDefinition,
    WorkflowStatus,
)

# Keys whose falsy values are part of the contract and so are never dropped from a dump.
_ALWAYS_PRESENT = {"version", "resolvedByUser", "retries", "jobs", "attempts", "tags", "defaultTags"}


def format_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class Rfc3339Millis(fields.Field):
    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format_time(value)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            return parse_time(value)
        except (TypeError, ValueError) as err:
            raise self.make_error("invalid") from err

    default_error_messages = {"invalid": "Not a valid RFC 3339 date-time."}


class _WireSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    @post_dump
    def _drop_unset(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k in _ALWAYS_PRESENT or v not in (None, "")}


class StateResourceSchema(_WireSchema):
    name = fields.String(load_default="")
    namespace = fields.String(load_default="")
    uri = fields.String(load_default="")
    type = fields.String(load_default="")
    last_updated = Rfc3339Millis(data_key="lastUpdated", load_default=None)

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> StateResource:
        return StateResource(**data)


class JobAttemptSchema(_WireSchema):
    created_at = Rfc3339Millis(data_key="createdAt", load_default=None)
    started_at = Rfc3339Millis(data_key="startedAt", load_default=None)
    stopped_at = Rfc3339Millis(data_key="stoppedAt", load_default=None)
    container_instance_arn = fields.String(data_key="containerInstanceARN", load_default="")
    task_arn = fields.String(data_key="taskARN", load_default="")
    reason = fields.String(load_default="")
    exit_code = fields.Integer(data_key="exitCode", load_default=None, allow_none=True)

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> JobAttempt:
        return JobAttempt(**data)


class JobSchema(_WireSchema):
    id = fields.String(load_default="")
    state = fields.String(load_default="")
    status = fields.Enum(JobStatus, by_value=True, load_default=JobStatus.CREATED)
    name = fields.String(load_default="")
    input = fields.String(load_default="")
    output = fields.String(load_default="")
    status_reason = fields.String(data_key="statusReason", load_default="")
    container = fields.String(load_default="")
    queue = fields.String(load_default="")
    created_at = Rfc3339Millis(data_key="createdAt", load_default=None)
    started_at = Rfc3339Millis(data_key="startedAt", load_default=None)
    stopped_at = Rfc3339Millis(data_key="stoppedAt", load_default=None)
    attempts = fields.List(fields.Nested(JobAttemptSchema), load_default=list)
    state_resource = fields.Nested(
        StateResourceSchema, data_key="stateResource", load_default=None, allow_none=True
    )

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Job:
        return Job(**data)


class WorkflowDefinitionSchema(_WireSchema):
    id = fields.String(load_default="")
    name = fields.String(required=True)
    version = fields.Integer(load_default=0)
    created_at = Rfc3339Millis(data_key="createdAt", load_default=None)
    manager = fields.Enum(Manager, by_value=True, load_default=Manager.STEP_FUNCTIONS)
    state_machine = fields.Dict(data_key="stateMachine", load_default=dict)
    default_tags = fields.Dict(
        keys=fields.String(), values=fields.String(), data_key="defaultTags", load_default=dict
    )

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> WorkflowDefinition:
        return WorkflowDefinition(**data)


class WorkflowSchema(_WireSchema):
    id = fields.String(required=True)
    created_at = Rfc3339Millis(data_key="createdAt", load_default=None)
    stopped_at = Rfc3339Millis(data_key="stoppedAt", load_default=None)
    last_updated = Rfc3339Millis(data_key="lastUpdated", load_default=None)
    workflow_definition = fields.Nested(WorkflowDefinitionSchema, data_key="workflowDefinition")
    status = fields.Enum(WorkflowStatus, by_value=True, load_default=WorkflowStatus.QUEUED)
    namespace = fields.String(load_default="")
    queue = fields.String(load_default="default")
    input = fields.String(load_default="{}")
    resolved_by_user = fields.Boolean(data_key="resolvedByUser", load_default=False)
    retry_for = fields.String(data_key="retryFor", load_default="")
    retries = fields.List(fields.String(), load_default=list)
    tags = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    last_job = fields.Nested(JobSchema, data_key="lastJob", load_default=None, allow_none=True)
    status_reason = fields.String(data_key="statusReason", load_default="")
    output = fields.String(load_default="")
    jobs = fields.List(fields.Nested(JobSchema), load_default=list)

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> Workflow:
        return Workflow(**data)


_state_resource_schema = StateResourceSchema()
_job_schema = JobSchema()
_definition_schema = WorkflowDefinitionSchema()
_workflow_schema = WorkflowSchema()

# The fields a summary carries (contract 8, reference 5.5's projection): no jobs, no output, no
# statusReason, no lastJob, and the definition reduced to its name and version.
SUMMARY_FIELDS = (
    "id",
    "createdAt",
    "stoppedAt",
    "lastUpdated",
    "status",
    "namespace",
    "queue",
    "input",
    "resolvedByUser",
    "retryFor",
    "retries",
    "tags",
)


def dump_state_resource(resource: StateResource) -> dict[str, Any]:
    return _state_resource_schema.dump(resource)


def dump_job(job: Job) -> dict[str, Any]:
    return _job_schema.dump(job)


def load_job(data: dict[str, Any]) -> Job:
    return _job_schema.load(data)


def dump_definition(definition: WorkflowDefinition) -> dict[str, Any]:
    return _definition_schema.dump(definition)


def load_definition(data: dict[str, Any]) -> WorkflowDefinition:
    return _definition_schema.load(data)


def dump_workflow(workflow: Workflow, summary_only: bool = False) -> dict[str, Any]:
    data = _workflow_schema.dump(workflow)
    if not summary_only:
        return data
    summary = {key: data[key] for key in SUMMARY_FIELDS if key in data}
    summary["workflowDefinition"] = {
        "name": workflow.workflow_definition.name,
        "version": workflow.workflow_definition.version,
    }
    summary["jobs"] = []
    return summary


def load_workflow(data: dict[str, Any]) -> Workflow:
    return _workflow_schema.load(data)
