"""HTTP handlers, one per swagger operationId (snake_cased), each a few lines: turn the validated
request (camelCase JSON) into the service's typed arguments, call one service, return
`(body, status[, headers])`. The wire format is known here and in `domain.schemas`, nowhere else.
Errors are raised as `workflow_manager.domain.errors` and turned into responses in one place
(`workflow_manager.api.errors`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from connexion import request

from store.interface import WorkflowQuery
from workflow_manager.api.auth import current_principal
from workflow_manager.api.middleware import REQUEST_DEADLINE_SCOPE_KEY
from workflow_manager.domain import schemas
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.models import Manager, WorkflowStatus
from workflow_manager.services.definitions import DefinitionDraft, DefinitionService
from workflow_manager.services.state_resources import StateResourceService
from workflow_manager.services.workflows import StartRequest, WorkflowService


def _required_body(body: Any) -> dict[str, Any]:
    if body is None:
        raise InvalidInput("request body is required, but was empty")
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


def _definition_draft(body: dict[str, Any]) -> DefinitionDraft:
    return DefinitionDraft(
        name=body.get("name") or "",
        state_machine=body.get("stateMachine"),
        manager=body.get("manager") or Manager.STEP_FUNCTIONS.value,
        default_tags=body.get("defaultTags"),
    )


def _start_request(
    body: dict[str, Any], idempotency_key: str | None = None, deadline: float | None = None
) -> StartRequest:
    ref = body.get("workflowDefinition")
    ref = ref if isinstance(ref, dict) else {}
    return StartRequest(
        definition_name=ref.get("name") or "",
        definition_version=ref.get("version"),
        namespace=body.get("namespace") or "",
        queue=body.get("queue") or "",
        input=body.get("input"),
        tags=body.get("tags"),
        idempotency_key=idempotency_key,
        deadline=deadline,
    )


def _state_resource_fields(body: dict[str, Any]) -> tuple[str, str, str, str]:
    """(name, namespace, uri, type) of a state resource request."""
    return body.get("name") or "", body.get("namespace") or "", body.get("uri") or "", body.get("type") or ""


class Handlers:
    def __init__(
        self,
        definitions: DefinitionService,
        workflows: WorkflowService,
        state_resources: StateResourceService,
        check_health: Any,
        render_metrics: Callable[[], tuple[bytes, str]],
    ):
        self._definitions = definitions
        self._workflows = workflows
        self._state_resources = state_resources
        self._check_health = check_health
        self._render_metrics = render_metrics

    def health_check(self):
        self._check_health()
        return None, 200

    def live_check(self):
        # Touches nothing: a liveness probe must not fail (and restart the process) because a
        # backend is slow or down.
        return {"status": "ok"}, 200

    def ready_check(self):
        self._check_health()
        return {"status": "ok"}, 200

    def get_metrics(self):
        body, content_type = self._render_metrics()
        return body, 200, {"Content-Type": content_type}

    # Workflow definitions

    def get_workflow_definitions(self):
        return [schemas.dump_definition(d) for d in self._definitions.list_latest()], 200

    def new_workflow_definition(self, body=None):
        definition = self._definitions.create(_definition_draft(_required_body(body)))
        return schemas.dump_definition(definition), 201

    def get_workflow_definition_versions_by_name(self, name: str, latest: bool = True):
        versions = self._definitions.versions(name, latest)
        return [schemas.dump_definition(d) for d in versions], 200

    def update_workflow_definition(self, name: str, body=None):
        definition = self._definitions.update(name, _definition_draft(_required_body(body)))
        return schemas.dump_definition(definition), 201

    def get_workflow_definition_by_name_and_version(self, name: str, version: str):
        # Declared as a string with an integer pattern, so a non-integer is a 400, not a 404.
        return schemas.dump_definition(self._definitions.get(name, int(version))), 200

    # Workflows

    def start_workflow(self, body=None):
        # A header parameter (validated by the spec, 1-255 characters); Connexion passes handlers
        # only path, query and body parameters.
        key = request.headers.get("Idempotency-Key")
        deadline = request.scope.get("extensions", {}).get(REQUEST_DEADLINE_SCOPE_KEY)
        workflow = self._workflows.start(
            _start_request(_required_body(body), key, deadline), current_principal()
        )
        return schemas.dump_workflow(workflow), 200

    def start_job(self, body=None):
        return self.start_workflow(body)

    def get_workflows(
        self,
        workflow_definition_name: str = "",
        limit: int = 10,
        oldest_first: bool | None = None,
        page_token: str = "",
        status: str | None = None,
        resolved_by_user: bool | None = None,
        summary_only: bool = False,
    ):
        limit = limit or 10  # the reference reads limit=0 as the default page size
        query = WorkflowQuery(
            workflow_definition_name=workflow_definition_name,
            limit=limit,
            oldest_first=bool(oldest_first),
            page_token=page_token or "",
            status=WorkflowStatus(status) if status else None,
            resolved_by_user=resolved_by_user,
            summary_only=summary_only,
        )
        page = self._workflows.list(query)
        body = [schemas.dump_workflow(wf, summary_only=summary_only) for wf in page.workflows]
        headers = {}
        if page.next_page_token:
            params: dict[str, Any] = {
                "limit": limit,
                "pageToken": page.next_page_token,
                "summaryOnly": str(summary_only).lower(),
                "workflowDefinitionName": workflow_definition_name,
            }
            if oldest_first is not None:
                params["oldestFirst"] = str(oldest_first).lower()
            if resolved_by_user is not None:
                params["resolvedByUser"] = str(resolved_by_user).lower()
            if status:
                params["status"] = status
            headers["X-Next-Page-Path"] = "/workflows?" + urlencode(sorted(params.items()))
        return body, 200, headers

    def get_workflow_by_id(self, workflow_id: str, fetch_history: bool = False):
        return schemas.dump_workflow(self._workflows.get(workflow_id, fetch_history)), 200

    def cancel_workflow(self, workflow_id: str, body=None):
        reason = _required_body(body).get("reason") or ""
        self._workflows.cancel(workflow_id, reason, current_principal())
        return None, 200

    def resume_workflow_by_id(self, workflow_id: str, body=None):
        start_at = _required_body(body).get("StartAt") or ""
        workflow = self._workflows.resume(workflow_id, start_at, current_principal())
        return schemas.dump_workflow(workflow), 200

    def resolve_workflow_by_id(self, workflow_id: str):
        self._workflows.resolve(workflow_id, current_principal())
        return None, 201

    # State resources

    def post_state_resource(self, body=None):
        resource = self._state_resources.put(*_state_resource_fields(_required_body(body)))
        return schemas.dump_state_resource(resource), 201

    def get_state_resource(self, namespace: str, name: str):
        return schemas.dump_state_resource(self._state_resources.get(namespace, name)), 200

    def put_state_resource(self, namespace: str, name: str, body=None):
        resource = self._state_resources.put(
            *_state_resource_fields(_required_body(body)), path=(namespace, name)
        )
        return schemas.dump_state_resource(resource), 201

    def delete_state_resource(self, namespace: str, name: str):
        self._state_resources.delete(namespace, name)
        return None, 200
