"""Routes each executor call to the executor of the workflow's definition `manager`
(the reference's MultiWorkflowManager, with step-functions as the default)."""

from __future__ import annotations

from typing import Any

from executor.interface import ExecutionReport, Executor
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.models import Manager, Workflow


class ExecutorRouter:
    def __init__(self, executors: dict[Manager, Executor]):
        self._executors = executors

    def _for(self, workflow: Workflow) -> Executor:
        return self._for_manager(workflow.workflow_definition.manager)

    def _for_manager(self, manager: Manager | str | None) -> Executor:
        manager = manager or Manager.STEP_FUNCTIONS
        executor = self._executors.get(Manager(manager))
        if executor is None:
            configured = ", ".join(sorted(m.value for m in self._executors))
            raise InvalidInput(
                f"no executor is configured for manager '{manager}' (configured: {configured})"
            )
        return executor

    def validate_definition(self, manager: Manager | str, state_machine: dict[str, Any]) -> None:
        self._for_manager(manager).validate_definition(state_machine)

    def start(self, workflow: Workflow) -> None:
        self._for(workflow).start(workflow)

    def cancel(self, workflow: Workflow, reason: str) -> None:
        self._for(workflow).cancel(workflow, reason)

    def report(self, workflow: Workflow, include_jobs: bool = True) -> ExecutionReport:
        return self._for(workflow).report(workflow, include_jobs)

    def check_health(self) -> None:
        for executor in self._executors.values():
            executor.check_health()
