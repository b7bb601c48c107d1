"""Compatibility fixes for moto's executing Step Functions backend, applied in-process.

With `stepfunctions.execute_state_machine` on, moto runs state machines through a port of
LocalStack's interpreter (`moto/stepfunctions/parser/`). Eight gaps in moto 5.2.5 stop it from running
our workflows; `apply_moto_compat()` closes them by patching moto's classes:

1. Activities: every execution gets an empty activity store and there is no GetActivityTask handler,
   so every activity Task fails with States.Runtime; SendTaskHeartbeat is refused (InvalidToken)
   for a task whose state has no HeartbeatSeconds.
2. SendTaskFailure drops `cause`.
3. Service integrations (`arn:aws:states:::batch:submitJob(.sync)`, ...): the request and response
   case normalisation is stubbed out, so PascalCase `Parameters` reach botocore unchanged.
4. A Task waiting on an activity nobody polls ends in AttributeError (no default start outcome).
5. StopExecution leaves an execution that waits on an activity or callback RUNNING until the wait
   ends, drops the caller's error and cause, and lets the woken task turn ABORTED into FAILED.
6. StartExecution without a name names the execution `None` (the second one is a conflict).
7. GetExecutionHistory ignores `maxResults`, `nextToken` and `reverseOrder`: every event in one page,
   oldest first, where AWS pages (at most 1,000 events) and reads newest first when asked.
8. An ended execution's status is set before its output, error and cause: a DescribeExecution (or
   an event) in between tells SUCCEEDED without an output, or FAILED without an error.

And one in moto's DynamoDB, which the DynamoDB store's tests and `workflow-manager emulator` serve:

9. A conditional write checks its condition and writes in two steps with no lock, and moto's server
   runs each request on a thread of its own: two concurrent writes can both pass a condition that
   only one may (two holders of one lease, two saves of one idempotent start). DynamoDB applies
   each write, and each transaction, atomically.

Pitfalls: the patches target moto internals, so `apply_moto_compat()` refuses any moto other than
`MOTO_VERSION`; each fix has a test in `tests/test_moto_compat.py` that fails on stock moto. Apply
the fixes before the emulator serves requests; applying them twice is harmless.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import threading
import time
import uuid
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.model import OperationModel
from moto.core.responses import ActionResult, EmptyResult
from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    ActivityCallbackEndpoint,
    ActivityTaskStartEndpoint,
    CallbackEndpoint,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.program_state import (
    ProgramEnded,
    ProgramError,
    ProgramStopped,
    ProgramTimedOut,
)
from moto.stepfunctions.parser.backend.activity import Activity, ActivityTask
from moto.stepfunctions.parser.backend.execution import (
    BaseExecutionWorkerCommunication,
    Execution,
)
from moto.stepfunctions.parser.models import (
    StepFunctionsParserBackend,
    stepfunctions_parser_backends,
)
from moto.stepfunctions.responses import StepFunctionResponse

MOTO_VERSION = "5.2.5"

# AWS holds a GetActivityTask poll open for up to 60 s. The emulator answers sooner so that workers
# notice shutdown quickly and a test never waits a minute for an empty poll.
DEFAULT_ACTIVITY_POLL_SECONDS = 5.0

# How long StopExecution waits for a just-started execution's program to begin, so it can stop it.
_STOP_GRACE_SECONDS = 2.0

_apply_lock = threading.Lock()
_store_lock = threading.Lock()  # creates a backend's shared activity store once
_applied = False
_activity_poll_seconds = DEFAULT_ACTIVITY_POLL_SECONDS


def apply_moto_compat(activity_poll_seconds: float = DEFAULT_ACTIVITY_POLL_SECONDS) -> None:
    """Patch moto's Step Functions backend in this process. Idempotent: a second call only updates
    how long GetActivityTask waits for a task before it answers `{}`.

    Raises RuntimeError when the installed moto is not the version the patches were written for.
    """
    global _applied, _activity_poll_seconds
    installed = importlib.metadata.version("moto")
    if installed != MOTO_VERSION:
        raise RuntimeError(
            f"workflow_manager.emulator.moto_compat patches moto {MOTO_VERSION} internals but moto {installed} is "
            "installed: re-verify each fix against the new version before changing MOTO_VERSION"
        )
    with _apply_lock:
        _activity_poll_seconds = activity_poll_seconds
        if _applied:
            return
        _share_activity_store_and_serve_get_activity_task()
        _pass_send_task_failure_cause()
        _normalise_service_integration_casing()
        _default_activity_start_outcome()
        _set_end_status_last()  # before fix 5, which wraps the same method
        _stop_execution_at_once()
        _name_unnamed_executions()
        _page_execution_history()
        _write_dynamodb_items_one_at_a_time()
        _applied = True


# --- Fix 1: activities ----------------------------------------------------------------------------


class _PolledActivity(Activity):
    """moto's parser Activity (a plain deque of tasks) with a condition a poll can wait on."""

    def __init__(self, arn: str, name: str, creation_date: datetime.datetime):
        super().__init__(arn=arn, name=name, creation_date=creation_date)
        self._task_added = threading.Condition()

    def add_task(self, task: ActivityTask) -> None:
        with self._task_added:
            super().add_task(task)
            self._task_added.notify()

    def take_task(self, timeout_seconds: float) -> ActivityTask | None:
        with self._task_added:
            if not self._task_added.wait_for(lambda: self._tasks, timeout=timeout_seconds):
                return None
            return self._tasks.popleft()


class _SharedActivityStore(dict):
    """The one activity store of a backend, shared by all its executions. moto passes each execution
    a fresh `{}`, so a scheduled activity task is never found (States.Runtime). Entries are created
    on first use for activity ARNs that CreateActivity registered with the backend."""

    def __init__(self, backend: StepFunctionsParserBackend):
        super().__init__()
        self._backend = backend
        self._lock = threading.Lock()

    def get(self, arn: str, default: Any = None) -> _PolledActivity | Any:
        with self._lock:
            registered = self._backend.activities.get(arn)
            if registered is None:  # never created, or deleted since
                self.pop(arn, None)
                return default
            if arn not in self:
                self[arn] = _PolledActivity(arn, registered.name, registered.creation_date)
            return self[arn]


def _activity_store_of(backend: StepFunctionsParserBackend) -> _SharedActivityStore:
    with _store_lock:
        store = backend.__dict__.get("_compat_activity_store")
        if store is None:
            store = backend._compat_activity_store = _SharedActivityStore(backend)
        return store


def _live_activity_endpoint(
    backend: StepFunctionsParserBackend, task_token: str
) -> ActivityCallbackEndpoint | None:
    """The endpoint still waiting for a worker to take `task_token`, or None when the task went
    stale in the queue (its execution stopped, or its state timed out before any worker polled)."""
    for execution in backend._get_executions(ExecutionStatus.RUNNING):
        env = execution.exec_worker.env if execution.exec_worker else None
        endpoint = env.callback_pool_manager.get(task_token) if env else None
        if isinstance(endpoint, ActivityCallbackEndpoint):
            start = endpoint.get_activity_task_start_endpoint()
            return None if start.abandoned else endpoint
    return None


def _get_activity_task(self: StepFunctionResponse) -> ActionResult:
    """GetActivityTask: long-poll the activity's queue; on a task, tell the waiting execution that
    `workerName` started it (history: ActivityStarted) and hand out its token and input."""
    activity_arn = self._get_param("activityArn")
    worker_name = self._get_param("workerName")
    backend = self.stepfunction_backend
    backend.describe_activity(activity_arn)  # InvalidArn / ActivityDoesNotExist
    if not isinstance(backend, StepFunctionsParserBackend):
        return ActionResult({})  # execution is off: nothing is ever scheduled
    activity = _activity_store_of(backend).get(activity_arn)
    deadline = time.monotonic() + _activity_poll_seconds
    while (remaining := deadline - time.monotonic()) > 0:
        task = activity.take_task(remaining)
        if task is None:
            break
        endpoint = _live_activity_endpoint(backend, task.task_token)
        if endpoint is not None:
            endpoint.notify_activity_task_start(worker_name=worker_name)
            return ActionResult({"taskToken": task.task_token, "input": task.task_input})
    return ActionResult({})


def _share_activity_store_and_serve_get_activity_task() -> None:
    original_start = Execution.start

    def start(self: Execution) -> None:
        backend = stepfunctions_parser_backends[self.account_id][self.region_name]
        self._activity_store = _activity_store_of(backend)
        original_start(self)

    Execution.start = start
    StepFunctionResponse.get_activity_task = _get_activity_task

    # A task whose state stopped waiting for a worker (timeout, stop) stays in the activity's
    # queue; mark it so GetActivityTask skips it rather than hand out a token nobody awaits.
    ActivityTaskStartEndpoint.abandoned = False
    original_wait = ActivityTaskStartEndpoint.wait

    def wait(self: ActivityTaskStartEndpoint, timeout_seconds: float) -> Any:
        try:
            outcome = original_wait(self, timeout_seconds)
        except AttributeError:  # stock moto's missing default outcome (fix 4)
            self.abandoned = True
            raise
        self.abandoned = outcome is None
        return outcome

    ActivityTaskStartEndpoint.wait = wait

    # moto answers InvalidToken to SendTaskHeartbeat for a task whose state has no HeartbeatSeconds,
    # and to one that arrives before the interpreter has set up its heartbeat timer. AWS accepts
    # both; there is simply no timer to reset.
    original_notify_heartbeat = CallbackEndpoint.notify_heartbeat

    def notify_heartbeat(self: CallbackEndpoint) -> bool:
        return True if self._heartbeat_endpoint is None else original_notify_heartbeat(self)

    CallbackEndpoint.notify_heartbeat = notify_heartbeat


# --- Fix 2: SendTaskFailure cause -----------------------------------------------------------------


def _pass_send_task_failure_cause() -> None:
    """moto's handler reads only `error`; the parser backend accepts `cause` but never gets it, so
    the Catch output and the ActivityFailed/TaskFailed event have an empty Cause."""

    def send_task_failure(self: StepFunctionResponse) -> EmptyResult:
        backend = self.stepfunction_backend
        kwargs = {"error": self._get_param("error")}
        if isinstance(backend, StepFunctionsParserBackend):
            kwargs["cause"] = self._get_param("cause")
        backend.send_task_failure(self._get_param("taskToken"), **kwargs)
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure


# --- Fix 3: service integration parameters --------------------------------------------------------


@functools.cache
def _operation_model(service_name: str, snake_action: str) -> OperationModel | None:
    # One botocore session: loading service models is the expensive part, and they never change.
    service_model = _botocore_session().get_service_model(service_name)
    for operation_name in service_model.operation_names:
        if xform_name(operation_name) == snake_action:
            return service_model.operation_model(operation_name)
    return None


@functools.cache
def _botocore_session() -> botocore.session.Session:
    return botocore.session.get_session()


def _normalise_service_integration_casing() -> None:
    """moto stubs `_normalise_parameters`/`_normalise_response` out (LocalStack's versions read its
    own service specs). Without them `Parameters: {"JobName": ...}` reaches
    `batch.submit_job(JobName=...)` (KeyError 'JobName' in moto's Batch) and the `.sync` resolver
    looks for `JobId` in a `jobId` response. The conversion helpers are still there; they only
    need botocore's operation model for the input and output shapes."""

    def normalise(self: StateTaskService, payload: Any, shape: str, convert: str, service, action) -> None:
        operation = _operation_model(
            self._get_boto_service_name(service), self._get_boto_service_action(action)
        )
        operation_shape = getattr(operation, shape) if operation is not None else None
        if operation_shape is not None:
            getattr(self, convert)(payload, operation_shape)

    # moto calls these with keyword arguments: the parameter names are part of the interface.
    def _normalise_parameters(
        self: StateTaskService,
        parameters: dict,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        normalise(self, parameters, "input_shape", "_to_boto_request", boto_service_name, service_action_name)

    def _normalise_response(
        self: StateTaskService,
        response: Any,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        normalise(
            self, response, "output_shape", "_from_boto_response", boto_service_name, service_action_name
        )

    StateTaskService._normalise_parameters = _normalise_parameters
    StateTaskService._normalise_response = _normalise_response


# --- Fix 4: activity start without a worker -------------------------------------------------------


def _default_activity_start_outcome() -> None:
    """`ActivityTaskStartEndpoint` sets `_outcome` only when a worker takes the task, so a wait
    that ends without one (TimeoutSeconds passed, or StopExecution woke it) reads a missing
    attribute: AttributeError, reported as States.Runtime instead of the States.Timeout moto
    intended. A class-level default of None restores that path."""
    ActivityTaskStartEndpoint._outcome = None


# --- Fix 5: StopExecution -------------------------------------------------------------------------


def _stop_program(
    execution: Execution, stop_date: datetime.datetime, error: str | None, cause: str | None
) -> Environment | None:
    """Flag the execution's program as stopped; returns its environment. Right after
    StartExecution the worker thread may not have built the environment, or the program not yet
    be running (`set_stop` then does nothing, and moto would run the whole workflow after the
    stop): wait for it, within `_STOP_GRACE_SECONDS`."""
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    while True:
        env = execution.exec_worker.env if execution.exec_worker else None
        if env is not None:
            env.set_stop(stop_date=stop_date, cause=cause, error=error)
            if env._program_state is not None:  # stopped now, or it had already ended
                return env
        if time.monotonic() > deadline:
            return env
        time.sleep(0.005)


def _stop_execution_at_once() -> None:
    """moto's StopExecution only flags the program as stopped: a task blocked on an activity or
    callback event keeps the execution RUNNING until that wait ends (for an activity with no
    TimeoutSeconds, 99999999 s). It also passes error="" and cause="", and when the woken task then
    fails, `Environment.set_error` overwrites the stopped state, so the execution ends FAILED.

    Here StopExecution marks the execution ABORTED before it returns, records the caller's error
    and cause on the ExecutionAborted event, and wakes every waiting activity/callback endpoint;
    the stopped state is sticky against later errors and timeouts."""

    def stop_execution(
        self: StepFunctionsParserBackend,
        execution_arn: str,
        error: str | None = None,
        cause: str | None = None,
    ) -> Execution:
        execution = self.describe_execution(execution_arn)
        if execution.exec_status != ExecutionStatus.RUNNING:
            return execution
        stop_date = datetime.datetime.now(tz=datetime.UTC)
        execution.exec_status = ExecutionStatus.ABORTED
        execution.stop_date = stop_date
        env = _stop_program(execution, stop_date, error, cause)
        if env is not None:
            for endpoint in list(env.callback_pool_manager._pool.values()):
                endpoint.interrupt_all()
                if isinstance(endpoint, ActivityCallbackEndpoint):
                    endpoint.get_activity_task_start_endpoint()._next_activity_task_start_event.set()
        return execution

    StepFunctionsParserBackend.stop_execution = stop_execution

    original_handler = StepFunctionResponse.stop_execution

    def stop_execution_handler(self: StepFunctionResponse) -> ActionResult:
        backend = self.stepfunction_backend
        if not isinstance(backend, StepFunctionsParserBackend):
            return original_handler(self)
        execution = backend.stop_execution(
            self._get_param("executionArn"),
            error=self._get_param("error"),
            cause=self._get_param("cause"),
        )
        return ActionResult({"stopDate": execution.stop_date})

    StepFunctionResponse.stop_execution = stop_execution_handler

    def _keep_stopped(original: Any) -> Any:
        @functools.wraps(original)
        def guarded(self: Environment, *args: Any, **kwargs: Any) -> None:
            if isinstance(self._program_state, ProgramStopped):
                return
            original(self, *args, **kwargs)

        return guarded

    Environment.set_error = _keep_stopped(Environment.set_error)
    Environment.set_timed_out = _keep_stopped(Environment.set_timed_out)

    original_reflect = BaseExecutionWorkerCommunication._reflect_execution_status

    def _reflect_execution_status(self: BaseExecutionWorkerCommunication) -> None:
        # StopExecution already set ABORTED and the stop date; the program's end must not move them.
        if self.execution.exec_status == ExecutionStatus.ABORTED:
            return
        original_reflect(self)

    BaseExecutionWorkerCommunication._reflect_execution_status = _reflect_execution_status


# --- Fix 8: the end status last -------------------------------------------------------------------


def _set_end_status_last() -> None:
    """moto's `_reflect_execution_status` sets SUCCEEDED (or FAILED) and then the output (or the
    error and cause). The status goes last here, so that whoever reads the status (DescribeExecution,
    the emulator's status change event) reads the rest with it."""

    def _reflect_execution_status(self: BaseExecutionWorkerCommunication) -> None:
        execution = self.execution
        ended = execution.exec_worker.env.program_state()
        if isinstance(ended, ProgramEnded):
            execution.output = execution.exec_worker.env.states.get_input()
            status = ExecutionStatus.SUCCEEDED
        elif isinstance(ended, ProgramStopped):
            status = ExecutionStatus.ABORTED
        elif isinstance(ended, ProgramError):
            execution.error = (ended.error or {}).get("error")
            execution.cause = (ended.error or {}).get("cause")
            status = ExecutionStatus.FAILED
        elif isinstance(ended, ProgramTimedOut):
            status = ExecutionStatus.TIMED_OUT
        else:
            raise RuntimeWarning(f"Execution ended with unsupported ProgramState type '{type(ended)}'.")
        execution.stop_date = datetime.datetime.now(tz=datetime.UTC)
        execution.exec_status = status

    BaseExecutionWorkerCommunication._reflect_execution_status = _reflect_execution_status


# --- Fix 6: unnamed executions --------------------------------------------------------------------


def _name_unnamed_executions() -> None:
    """The parser backend builds the execution ARN from `name` as given, so an unnamed execution is
    `...:None` and the next unnamed one fails with ExecutionAlreadyExists. AWS generates a UUID."""
    original_start_execution = StepFunctionsParserBackend.start_execution

    def start_execution(
        self: StepFunctionsParserBackend,
        state_machine_arn: str,
        name: str | None = None,
        execution_input: str | None = None,
        trace_header: str | None = None,
    ) -> Execution:
        return original_start_execution(
            self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
        )

    StepFunctionsParserBackend.start_execution = start_execution


# --- Fix 7: paged history -------------------------------------------------------------------------

# GetExecutionHistory `maxResults`: "Maximum value of 1000"; 0 or none means the default page.
HISTORY_MAX_PAGE = 1000


def _page_execution_history() -> None:
    """Page GetExecutionHistory as AWS does: `maxResults` events per page (at most 1,000), oldest
    first or newest first (`reverseOrder`), a `nextToken` while events remain. The token is the
    offset of the next page in that order (opaque to callers, as AWS's is)."""
    from moto.stepfunctions.exceptions import InvalidToken

    def get_execution_history(self: StepFunctionResponse) -> ActionResult:
        execution_arn = self._get_param("executionArn")
        requested = self._get_param("maxResults") or HISTORY_MAX_PAGE
        page_size = max(1, min(int(requested), HISTORY_MAX_PAGE))
        events = list(self.stepfunction_backend.get_execution_history(execution_arn)["events"])
        if self._get_param("reverseOrder"):
            events.reverse()
        token = self._get_param("nextToken")
        try:
            start = int(token) if token else 0
        except ValueError:
            raise InvalidToken(str(token)) from None
        result: dict[str, Any] = {"events": events[start : start + page_size]}
        if start + page_size < len(events):
            result["nextToken"] = str(start + page_size)
        return ActionResult(result)

    StepFunctionResponse.get_execution_history = get_execution_history


# --- Fix 9: DynamoDB writes one at a time ---------------------------------------------------------

# One lock for every table of every account: moto's DynamoDB is a test and development server, so
# writes one at a time cost nothing that matters, and a transaction spans tables.
_dynamodb_write_lock = threading.RLock()


def _write_dynamodb_items_one_at_a_time() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    def one_at_a_time(original: Any) -> Any:
        @functools.wraps(original)
        def locked(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            with _dynamodb_write_lock:
                return original(self, *args, **kwargs)

        return locked

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        setattr(DynamoDBBackend, name, one_at_a_time(getattr(DynamoDBBackend, name)))
