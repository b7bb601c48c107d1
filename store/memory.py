"""The in-memory store, for development and the embedded default.

It has the semantics every store must have (reference notes 5.2), not the reference memory store's
quirks (5.3): conflicts are per `(name, version)`, the definition list holds the latest version of
each name, and lookups of a missing version are a NotFound. Thread-safe: the API and the background
updater use it at once, so every operation holds one lock and hands out deep copies.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from store.clock import MonotonicClock
from store.interface import WorkflowPage, WorkflowQuery
from store.paging import decode_page_token, encode_page_token
from workflow_manager.domain.errors import ConcurrentModification, Conflict, NotFound, TerminalStatusGuard
from workflow_manager.domain.models import (
    StateResource,
    Workflow,
    WorkflowDefinition,
    utc_now,
)
from workflow_manager.domain.schemas import format_time
from workflow_manager.domain.status import is_active, moves_back_from_terminal

_PAGE_KEYS = frozenset({"createdAt", "id"})


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._clock = MonotonicClock()
        self._definitions: dict[str, dict[int, WorkflowDefinition]] = {}
        self._workflows: dict[str, Workflow] = {}
        self._state_resources: dict[tuple[str, str], StateResource] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}
        self._members: dict[str, dict[str, datetime]] = {}

    # Workflow definitions

    def save_workflow_definition(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        with self._lock:
            versions = self._definitions.setdefault(definition.name, {})
            if definition.version in versions:
                raise Conflict(f"Already Exists: {definition.name}")
            stored = definition.copy()
            stored.created_at = self._clock.now()
            versions[definition.version] = stored
            return stored.copy()

    def update_workflow_definition(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        with self._lock:
            latest = self.latest_workflow_definition(definition.name)
            stored = definition.copy()
            stored.version = latest.version + 1
            stored.created_at = self._clock.now(after=latest.created_at)
            self._definitions[definition.name][stored.version] = stored
            return stored.copy()

    def get_workflow_definitions(self) -> list[WorkflowDefinition]:
        with self._lock:
            return [
                versions[max(versions)].copy()
                for _, versions in sorted(self._definitions.items())
                if versions
            ]

    def get_workflow_definition_versions(self, name: str) -> list[WorkflowDefinition]:
        with self._lock:
            versions = self._definitions.get(name)
            if not versions:
                raise NotFound(name)
            return [versions[v].copy() for v in sorted(versions)]

    def get_workflow_definition(self, name: str, version: int) -> WorkflowDefinition:
        with self._lock:
            definition = self._definitions.get(name, {}).get(version)
            if definition is None:
                raise NotFound(f"{name}@{version}")
            return definition.copy()

    def latest_workflow_definition(self, name: str) -> WorkflowDefinition:
        with self._lock:
            versions = self._definitions.get(name)
            if not versions:
                raise NotFound(name)
            return versions[max(versions)].copy()

    # State resources

    def save_state_resource(self, resource: StateResource) -> StateResource:
        with self._lock:
            stored = StateResource(**vars(resource))
            stored.last_updated = self._clock.now()
            self._state_resources[(resource.namespace, resource.name)] = stored
            return StateResource(**vars(stored))

    def get_state_resource(self, namespace: str, name: str) -> StateResource:
        with self._lock:
            resource = self._state_resources.get((namespace, name))
            if resource is None:
                raise NotFound(f"{namespace}--{name}")
            return StateResource(**vars(resource))

    def delete_state_resource(self, namespace: str, name: str) -> None:
        with self._lock:
            if self._state_resources.pop((namespace, name), None) is None:
                raise NotFound(f"{namespace}--{name}")

    # Workflows

    def save_workflow(self, workflow: Workflow) -> None:
        with self._lock:
            if workflow.id in self._workflows:
                raise Conflict(f"Already Exists: {workflow.id}")
            now = self._clock.now()
            workflow.created_at = now
            workflow.last_updated = now
            workflow.revision = 1
            self._workflows[workflow.id] = workflow.copy()

    def update_workflow(self, workflow: Workflow) -> None:
        with self._lock:
            stored = self._workflows.get(workflow.id)
            if stored is None:
                raise NotFound(workflow.id)
            if stored.revision != workflow.revision:
                raise ConcurrentModification(f"workflow {workflow.id} was changed concurrently")
            if moves_back_from_terminal(stored.status, workflow.status):
                raise TerminalStatusGuard(
                    f"cannot update workflow {workflow.id} from terminal status {stored.status}"
                    f" to {workflow.status}"
                )
            workflow.last_updated = self._clock.now(after=stored.last_updated)
            workflow.revision = stored.revision + 1
            self._workflows[workflow.id] = workflow.copy()

    def get_workflow(self, workflow_id: str) -> Workflow:
        with self._lock:
            workflow = self._workflows.get(workflow_id)
            if workflow is None:
                raise NotFound(workflow_id)
            return workflow.copy()

    def delete_workflow(self, workflow_id: str) -> None:
        with self._lock:
            if self._workflows.pop(workflow_id, None) is None:
                raise NotFound(workflow_id)

    def list_workflows(self, query: WorkflowQuery) -> WorkflowPage:
        after = decode_page_token(query.page_token, _PAGE_KEYS) if query.page_token else None
        with self._lock:
            matching = [
                wf
                for wf in self._workflows.values()
                if wf.workflow_definition.name == query.workflow_definition_name
                and (query.status is None or wf.status == query.status)
                and (
                    query.resolved_by_user is None or (wf.resolved_by_user is True) == query.resolved_by_user
                )
            ]

            def sort_key(wf: Workflow) -> tuple[str, str]:
                return (format_time(wf.created_at), wf.id)

            matching.sort(key=sort_key, reverse=not query.oldest_first)
            if after is not None:
                position = (after["createdAt"], after["id"])
                if query.oldest_first:
                    matching = [wf for wf in matching if sort_key(wf) > position]
                else:
                    matching = [wf for wf in matching if sort_key(wf) < position]
            page = [wf.copy() for wf in matching[: query.limit]]
            if query.summary_only:
                for workflow in page:
                    workflow.jobs = []
            token = ""
            if len(matching) > query.limit:
                last = page[-1]
                token = encode_page_token({"createdAt": format_time(last.created_at), "id": last.id})
            return WorkflowPage(workflows=page, next_page_token=token)

    def list_active_workflow_ids(self) -> list[str]:
        with self._lock:
            return [wf.id for wf in self._workflows.values() if is_active(wf)]

    # Leases

    def acquire_lease(self, name: str, owner: str, duration: timedelta) -> bool:
        with self._lock:
            now = utc_now()
            holder = self._leases.get(name)
            if holder is not None and holder[0] != owner and holder[1] > now:
                return False
            self._leases[name] = (owner, now + duration)
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            if self._leases.get(name, ("", None))[0] == owner:
                del self._leases[name]

    def heartbeat(self, group: str, member: str, ttl: timedelta) -> int:
        with self._lock:
            now = utc_now()
            members = self._members.setdefault(group, {})
            members[member] = now + ttl
            return sum(1 for until in members.values() if until > now)

    def leave(self, group: str, member: str) -> None:
        with self._lock:
            self._members.get(group, {}).pop(member, None)

    def check_health(self) -> None:
        return None
