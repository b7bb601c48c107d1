"""The emulator emits the events AWS does, so that the embedded default exercises the production
path (EventBridge -> SQS -> the service's event consumer, `workflow_manager.services.events`):

- `aws.states` / "Step Functions Execution Status Change" whenever an execution's status changes
  (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED), with the detail AWS sends (executionArn,
  stateMachineArn, name, status, startDate, stopDate in epoch milliseconds, input, output, their
  inputDetails/outputDetails, error, cause);
- `aws.batch` / "Batch Job State Change" whenever a job's status changes, with the job as
  DescribeJobs shows it (its tags included), as AWS sends it.

moto has no such events. Both hooks watch the one attribute every status change goes through
(`Execution.exec_status` in moto's executing Step Functions backend, the `status` setter of moto's
Batch `Job`), so no code path that changes a status can miss its event. The events go into moto's
EventBridge with PutEvents, which matches them against the rules and delivers them to SQS targets,
as AWS would.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from moto.batch.models import Job as BatchJob
from moto.events import events_backends
from moto.moto_api._internal.managed_state_model import ManagedState
from moto.stepfunctions.parser.backend.execution import Execution

log = logging.getLogger(__name__)

SFN_SOURCE = "aws.states"
SFN_DETAIL_TYPE = "Step Functions Execution Status Change"
BATCH_SOURCE = "aws.batch"
BATCH_DETAIL_TYPE = "Batch Job State Change"

_installed = False


def install_event_emission() -> None:
    """Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    _watch_execution_status()
    _watch_batch_job_status()


def _put_event(
    account_id: str, region: str, source: str, detail_type: str, resources: list[str], detail: dict
) -> None:
    try:
        events_backends[account_id][region].put_events(
            [
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Resources": resources,
                    "Detail": json.dumps(detail, default=str),
                }
            ]
        )
    except Exception:  # an event lost, as AWS may lose one: the service's polling repairs it
        log.exception("emulator: could not emit a %s event", detail_type)


def _epoch_ms(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


def _watch_execution_status() -> None:
    def get_status(self: Execution) -> Any:
        return self.__dict__.get("_wfm_exec_status")

    def set_status(self: Execution, value: Any) -> None:
        before = self.__dict__.get("_wfm_exec_status")
        self.__dict__["_wfm_exec_status"] = value
        if value is None or value == before:
            return
        # An ended execution's output, error and cause are set before its status (moto compat
        # fix 8), so the event tells all of it, as AWS's does.
        _emit_execution_change(self)

    Execution.exec_status = property(get_status, set_status)


def _emit_execution_change(execution: Execution) -> None:
    status = execution.exec_status
    detail = {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": getattr(status, "value", status),
        "startDate": _epoch_ms(execution.start_date),
        "stopDate": _epoch_ms(execution.stop_date),
        "input": execution.execution_input,
        "inputDetails": {"included": True},
        "output": json.dumps(execution.output) if execution.output is not None else None,
        "outputDetails": {"included": True} if execution.output is not None else None,
        "error": execution.error,
        "cause": execution.cause,
    }
    _put_event(
        execution.account_id, execution.region_name, SFN_SOURCE, SFN_DETAIL_TYPE, [execution.exec_arn], detail
    )


def _watch_batch_job_status() -> None:
    managed = ManagedState.status

    def set_status(self: BatchJob, value: str) -> None:
        before = self.__dict__.get("_status")
        managed.fset(self, value)
        if value != before and "job_id" in self.__dict__:
            _emit_job_change(self)

    BatchJob.status = property(managed.fget, set_status)


def _emit_job_change(job: BatchJob) -> None:
    try:
        detail = job.describe()
    except Exception:
        log.exception("emulator: could not describe Batch job %s for its event", job.job_id)
        return
    # arn:aws:batch:<region>:<account>:job/<id>
    _, _, _, region, account_id, _ = job.arn.split(":", 5)
    _put_event(account_id, region, BATCH_SOURCE, BATCH_DETAIL_TYPE, [job.arn], detail)
