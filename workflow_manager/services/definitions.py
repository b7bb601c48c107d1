"""The workflow definition use cases: create, update (a new version), list and get."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from executor.interface import Executor
from store.interface import Store
from workflow_manager.domain import definitions
from workflow_manager.domain.errors import Conflict, InvalidInput, NotFound
from workflow_manager.domain.integrations import IntegrationPolicy
from workflow_manager.domain.models import Manager, WorkflowDefinition


@dataclass(frozen=True)
class DefinitionDraft:
    """A definition as a request states it, before the rules have checked it: `state_machine` and
    `default_tags` are whatever JSON the caller sent, so that the rules, not the HTTP layer, say
    what is wrong with them."""

    name: str
    state_machine: Any
    manager: str = Manager.STEP_FUNCTIONS.value
    default_tags: Any = None


class DefinitionService:
    def __init__(self, store: Store, executor: Executor, integrations: IntegrationPolicy | None = None):
        self._store = store
        self._executor = executor
        self._integrations = integrations or IntegrationPolicy()

    def _build(self, draft: DefinitionDraft) -> WorkflowDefinition:
        name, manager = draft.name, draft.manager
        state_machine, default_tags = draft.state_machine, draft.default_tags
        definitions.validate_definition(name, state_machine, manager, default_tags)
        self._integrations.check_state_machine(state_machine)
        definition = WorkflowDefinition(
            name=name,
            state_machine=state_machine,
            manager=Manager(manager),
            default_tags=dict(default_tags or {}),
        )
        self._executor.validate_definition(definition)
        return definition

    def create(self, draft: DefinitionDraft) -> WorkflowDefinition:
        definition = self._build(draft)
        definition.version = 0
        try:
            self._store.latest_workflow_definition(definition.name)
        except NotFound:
            return self._store.save_workflow_definition(definition)
        raise Conflict(f"Already Exists: {definition.name}")

    def update(self, name: str, draft: DefinitionDraft) -> WorkflowDefinition:
        if draft.name != name:
            raise InvalidInput("Name in path must match WorkflowDefinition object")
        definition = self._build(draft)
        return self._store.update_workflow_definition(definition)

    def list_latest(self) -> list[WorkflowDefinition]:
        return self._store.get_workflow_definitions()

    def versions(self, name: str, latest: bool) -> list[WorkflowDefinition]:
        if latest:
            return [self._store.latest_workflow_definition(name)]
        return self._store.get_workflow_definition_versions(name)

    def get(self, name: str, version: int) -> WorkflowDefinition:
        return self._store.get_workflow_definition(name, version)
