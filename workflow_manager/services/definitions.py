"""The workflow definition use cases: create, update (a new version), list and get."""

from __future__ import annotations

from typing import Any

from executor.interface import Executor
from store.interface import Store
from workflow_manager.domain import definitions
from workflow_manager.domain.errors import Conflict, InvalidInput, NotFound
from workflow_manager.domain.models import Manager, WorkflowDefinition


class DefinitionService:
    def __init__(self, store: Store, executor: Executor):
        self._store = store
        self._executor = executor

    def _build(self, body: dict[str, Any]) -> WorkflowDefinition:
        name = body.get("name") or ""
        manager = body.get("manager") or Manager.STEP_FUNCTIONS.value
        state_machine = body.get("stateMachine")
        default_tags = body.get("defaultTags")
        definitions.validate_definition(name, state_machine, manager, default_tags)
        definition = WorkflowDefinition(
            name=name,
            state_machine=state_machine,
            manager=Manager(manager),
            default_tags=dict(default_tags or {}),
        )
        self._executor.validate_definition(definition)
        return definition

    def create(self, body: dict[str, Any]) -> WorkflowDefinition:
        definition = self._build(body)
        definition.version = 0
        try:
            self._store.latest_workflow_definition(definition.name)
        except NotFound:
            return self._store.save_workflow_definition(definition)
        raise Conflict(f"Already Exists: {definition.name}")

    def update(self, name: str, body: dict[str, Any]) -> WorkflowDefinition:
        if body.get("name") != name:
            raise InvalidInput("Name in path must match WorkflowDefinition object")
        definition = self._build(body)
        return self._store.update_workflow_definition(definition)

    def list_latest(self) -> list[WorkflowDefinition]:
        return self._store.get_workflow_definitions()

    def versions(self, name: str, latest: bool) -> list[WorkflowDefinition]:
        if latest:
            return [self._store.latest_workflow_definition(name)]
        return self._store.get_workflow_definition_versions(name)

    def get(self, name: str, version: int) -> WorkflowDefinition:
        return self._store.get_workflow_definition(name, version)
