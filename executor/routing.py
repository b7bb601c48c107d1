"""Routes each executor call to the executor of the definition's `manager` (the reference's
MultiWorkflowManager, with step-functions as the default). The router is itself an Executor, so
the services cannot tell routing from a single backend."""

from __future__ import annotations

from executor.interface import ExecutionReport, Executor, StartedExecution, StartProgress
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.models import Manager, Workflow, WorkflowDefinition


class ExecutorRouter:
    def __init__(self, executors: dict[Manager, Executor]):
        self._executors = executors

    def _for(self, definition: WorkflowDefinition) -> Executor:
        manager = definition.manager or Manager.STEP_FUNCTIONS
        executor = self._executors.get(Manager(manager))
        if executor is None:
            configured = ", ".join(sorted(m.value for m in self._executors))
            raise InvalidInput(
                f"no executor is configured for manager '{manager}' (configured: {configured})"
            )
        return executor

    def validate_definition(self, definition: WorkflowDefinition) -> None:
        self._for(definition).validate_definition(definition)

    def start(
        self, workflow: Workflow, progress: StartProgress | None = None, resuming: bool = False
    ) -> StartedExecution:
        return self._for(workflow.workflow_definition).start(workflow, progress, resuming)

    def cancel(self, workflow: Workflow, reason: str) -> None:
        self._for(workflow.workflow_definition).cancel(workflow, reason)

    def report(
        self, workflow: Workflow, include_jobs: bool = True, include_status: bool = True
    ) -> ExecutionReport:
        return self._for(workflow.workflow_definition).report(workflow, include_jobs, include_status)

    def check_health(self) -> None:
        for executor in self._executors.values():
            executor.check_health()
