"""The store port: persistence of definitions, workflows and state resources.

Every implementation (`store.memory`, `store.dynamodb`) passes the one contract suite in
`tests/test_store_contract.py`. The semantics are the reference's shared store suite (notes 5.2):

- definitions: a saved `(name, version)` is never overwritten (Conflict); `update_workflow_definition`
  saves version latest + 1 and loses a race with a Conflict, never an overwrite.
- workflows: `save_workflow` sets `created_at = last_updated = now` and rejects a duplicate id;
  `update_workflow` sets `last_updated = now`, and succeeds only when the stored revision is the one the
  caller read (ConcurrentModification otherwise) and when it does not move a terminal status back
  (TerminalStatusGuard). Each successful write bumps `revision` on the object passed in.
- listing: by definition name, newest (or oldest) first by `created_at`, optional status and
  `resolved_by_user` filters, opaque page tokens (InvalidInput for one the store did not issue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from workflow_manager.domain.models import StateResource, Workflow, WorkflowDefinition, WorkflowStatus

MAX_LIST_LIMIT = 10000


@dataclass
class WorkflowQuery:
    workflow_definition_name: str
    limit: int = 10
    oldest_first: bool = False
    page_token: str = ""
    status: WorkflowStatus | None = None
    # None: no filter; True: only resolved; False: "not true" (the reference's must_not).
    resolved_by_user: bool | None = None
    summary_only: bool = False


@dataclass
class WorkflowPage:
    workflows: list[Workflow]
    next_page_token: str = ""


class Store(Protocol):
    # Workflow definitions
    def save_workflow_definition(self, definition: WorkflowDefinition) -> WorkflowDefinition: ...
    def update_workflow_definition(self, definition: WorkflowDefinition) -> WorkflowDefinition: ...
    def get_workflow_definitions(self) -> list[WorkflowDefinition]: ...
    def get_workflow_definition_versions(self, name: str) -> list[WorkflowDefinition]: ...
    def get_workflow_definition(self, name: str, version: int) -> WorkflowDefinition: ...
    def latest_workflow_definition(self, name: str) -> WorkflowDefinition: ...

    # State resources
    def save_state_resource(self, resource: StateResource) -> StateResource: ...
    def get_state_resource(self, namespace: str, name: str) -> StateResource: ...
    def delete_state_resource(self, namespace: str, name: str) -> None: ...

    # Workflows
    def save_workflow(self, workflow: Workflow) -> None: ...
    def update_workflow(self, workflow: Workflow) -> None: ...
    def get_workflow(self, workflow_id: str) -> Workflow: ...
    def delete_workflow(self, workflow_id: str) -> None: ...
    def list_workflows(self, query: WorkflowQuery) -> WorkflowPage: ...
    def list_active_workflow_ids(self) -> list[str]:
        """Ids of every active workflow (domain.status.is_active: its status is not terminal, or
        its jobs are still to be read), for the background updater."""
        ...

    # Leases: one holder at a time across every replica (the background updater's sweep).
    def acquire_lease(self, name: str, owner: str, duration: timedelta) -> bool:
        """Take the lease `name` for `owner` until now + `duration`, or renew it when `owner` holds
        it. True when `owner` holds it after the call; False when another owner's lease is
        unexpired. One conditional write."""
        ...

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up, if `owner` holds it."""
        ...

    # Group membership with heartbeats (the live replicas, which share the AWS call budgets).
    def heartbeat(self, group: str, member: str, ttl: timedelta) -> int:
        """Record that `member` of `group` lives until now + `ttl`; return how many members live."""
        ...

    def leave(self, group: str, member: str) -> None:
        """Remove `member` from `group` (it stops counting at once)."""
        ...

    def check_health(self) -> None:
        """Raise BackendUnavailable when the store cannot be reached."""
        ...
