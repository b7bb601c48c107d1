"""Names, ARNs, tags and the deployable definition of a workflow's Step Functions state machine.

Pure functions, no AWS calls: the Step Functions executor (`executor/sfn.py`) calls them before
DescribeStateMachine / CreateActivity / CreateStateMachine / StartExecution. They follow the
reference's `executor/sfnconventions` and `stateMachineWithFullActivityARNsAndParameters` /
`stateMachineWithDefaultRetriers` (notes 3.1, 3.2) as fixed by the contract (section 6), so a
deployment keeps finding the state machines and activities the Go service created.

Constraints and pitfalls that shaped this module:

- Step Functions names (state machines, activities, executions) are at most 80 characters and may not
  contain the characters in FORBIDDEN_NAME_CHARACTERS. A state machine name is ours alone, so a name
  that would be longer is shortened deterministically (see `state_machine_name`); the full parts are
  still on the state machine's tags. An activity name is shared with the workers that poll it
  (`{namespace}--{Resource}`), so it is never rewritten: an invalid one is rejected with InvalidInput.
- State machines are immutable per version (the executor never updates one), so everything here must
  be a deterministic function of (namespace, definition, version, StartAt) and configuration.
- The default retrier is added to Task states only, but at every depth (inside Parallel branches and
  Map iterators too); the reference added it to top-level states only and gave every top-level state a
  `Retry`, which Step Functions rejects on Choice, Pass, Wait, Succeed and Fail states.
- Step Functions gives a Task no heartbeat bound by default, so an activity task whose worker died
  would wait years (TimeoutSeconds defaults to 99,999,999 s): activity Task states that set no bound
  of their own get DEFAULT_ACTIVITY_HEARTBEAT_SECONDS (configurable).
- JSONata states (`QueryLanguage: JSONata`, on the state or inherited from the top level) have no
  `Parameters`: a glue or batch Task gets its fields in `Arguments` instead, and a JSONata Map state
  is not given `_EXECUTION_NAME` (it has no `.$` paths); its iterations must select it themselves.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from workflow_manager.domain.aws import (
    EXECUTION_NAME_KEY,
    MAX_BATCH_JOB_NAME_LENGTH,
    MAX_NAME_LENGTH,
    NAME_SEPARATOR,
    activity_name,
    is_forbidden_name_character,
)
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.inputs import SERVICE_STATE_MACHINE_TAG_KEYS, string_tags
from workflow_manager.domain.models import StateResource, StateResourceType
from workflow_manager.domain.states import iter_states, nested_state_machines, state_of, states_of

# The reference replaces the characters Step Functions forbids in names by "-" in state machine names
# (executor/sfnconventions/sfnconventions.go, note 3.1; `domain.aws.is_forbidden_name_character`).
NAME_REPLACEMENT = "-"


# A shortened state machine name ends in NAME_SEPARATOR + this many hex digits of the SHA-256 of the
# full name: 40 bits, so two definitions sharing the 68-character prefix collide with odds of about
# one in a trillion.
SHORTENED_NAME_HASH_LENGTH = 10
_SHORTENED_NAME = re.compile(rf".*{NAME_SEPARATOR}[0-9a-f]{{{SHORTENED_NAME_HASH_LENGTH}}}", re.DOTALL)

# Prepended to the Retry of every Task state that does not name sfncli.CommandTerminated: sfncli
# reports a worker killed mid-task (e.g. on deploy) with this error, and the task should run again.
# Prepended, not appended, because a States.ALL retrier must be the last one.
# (stateMachineWithDefaultRetriers, executor/workflow_manager_sfn.go; note 3.2.)
SFNCLI_COMMAND_TERMINATED = "sfncli.CommandTerminated"
DEFAULT_RETRIER: dict[str, Any] = {
    "ErrorEquals": [SFNCLI_COMMAND_TERMINATED],
    "IntervalSeconds": 10,
    "MaxAttempts": 10,
    "BackoffRate": 1.0,
}

# Given to activity Task states that set no HeartbeatSeconds(Path), so that a task whose worker died
# fails with States.Timeout (and is retried or caught) within minutes; without it, it waits for
# TimeoutSeconds, whose default is 99,999,999 s (over three years). 300 s is 60 beats of our worker
# (activity_worker.poller.HEARTBEAT_SECONDS, 5 s) and 15 of sfncli's (20 s), so a slow network or a
# throttled SendTaskHeartbeat does not fail a live task. A worker that never heartbeats fails after
# it: set `activity_heartbeat_seconds` (WFM_ACTIVITY_HEARTBEAT_SECONDS) to 0 to add none.
DEFAULT_ACTIVITY_HEARTBEAT_SECONDS = 300

# Optimised service integrations (Step Functions developer guide, "Run a Job (.sync)").
GLUE_START_JOB_RUN_SYNC = "arn:aws:states:::glue:startJobRun.sync"
BATCH_SUBMIT_JOB_SYNC = "arn:aws:states:::batch:submitJob.sync"

LAMBDA_PREFIX = "lambda:"
GLUE_PREFIX = "glue:"
BATCH_PREFIX = "batch:"
ARN_PREFIX = "arn:"

_BATCH_JOB_NAME_INVALID = re.compile(r"[^A-Za-z0-9_-]")

# Map states forward the execution name (the workflow id, injected at the top level of the input by
# the executor) into every iteration, for the activity workers (note 3.4).
EXECUTION_NAME_PARAMETER = f"{EXECUTION_NAME_KEY}.$"
EXECUTION_NAME_PATH = f"$.{EXECUTION_NAME_KEY}"

QUERY_LANGUAGE_JSONATA = "JSONata"

_ACTIVITY_ARN = re.compile(r"arn:[^:]+:states:[^:]*:[^:]*:activity:(?P<name>.+)")


class StateMachineNameParts(NamedTuple):
    namespace: str
    definition_name: str
    version: int
    start_at: str


# Names


def _replace_forbidden(name: str) -> str:
    return "".join(NAME_REPLACEMENT if is_forbidden_name_character(c) else c for c in name)


def state_machine_name(namespace: str, definition_name: str, version: int, start_at: str) -> str:
    """`{namespace}--{name}--{version}--{StartAt}` with forbidden characters replaced by `-`.

    A name longer than MAX_NAME_LENGTH is shortened to exactly that length: its first
    68 characters, then `--`, then the first 10 hex digits of the SHA-256 of the full name
    (after replacement, so the same name always gives the same hash). The result is deterministic (the same definition always finds its state machine)
    and two long names that differ anywhere, even only past the cut, get different names. Shortened
    names cannot be parsed back (`parse_state_machine_name` rejects them); the state machine's tags
    carry the parts.
    """
    full = _replace_forbidden(NAME_SEPARATOR.join((namespace, definition_name, str(version), start_at)))
    if len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:SHORTENED_NAME_HASH_LENGTH]
    keep = MAX_NAME_LENGTH - len(NAME_SEPARATOR) - SHORTENED_NAME_HASH_LENGTH
    return f"{full[:keep]}{NAME_SEPARATOR}{digest}"


def is_shortened_state_machine_name(name: str) -> bool:
    """Whether `name` has the shape `state_machine_name` gives a shortened name: exactly 80
    characters ending in `--` and 10 lowercase hex digits. (An unshortened name of exactly 80
    characters whose StartAt is 10 hex digits looks the same; no real definition is expected to.)"""
    return len(name) == MAX_NAME_LENGTH and _SHORTENED_NAME.fullmatch(name) is not None


def parse_state_machine_name(name: str) -> StateMachineNameParts:
    """The parts of a state machine name that was not shortened (the reference's
    `StateMachineNameParts`): exactly four `--`-separated parts, the third an integer.
    Raises ValueError otherwise. The parts are as they appear in the name, i.e. after the
    forbidden characters were replaced."""
    if is_shortened_state_machine_name(name):
        raise ValueError(f"state machine name was shortened and cannot be parsed: '{name}'")
    parts = name.split(NAME_SEPARATOR)
    if len(parts) != 4:
        raise ValueError(f"state machine name must have 4 parts separated by '{NAME_SEPARATOR}': '{name}'")
    namespace, definition_name, version, start_at = parts
    try:
        version_number = int(version)
    except ValueError:
        raise ValueError(f"state machine name has a non-integer version '{version}': '{name}'") from None
    return StateMachineNameParts(namespace, definition_name, version_number, start_at)


def batch_job_name(state_name: str) -> str:
    """A valid Batch job name for the jobs a Task state submits: the state name with characters
    Batch does not allow replaced by `-`, leading non-alphanumerics dropped, at most 128."""
    name = _BATCH_JOB_NAME_INVALID.sub(NAME_REPLACEMENT, state_name).lstrip("-_")
    return name[:MAX_BATCH_JOB_NAME_LENGTH] or "job"


# ARNs (the reference always uses the `aws` partition)


def state_machine_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:states:{region}:{account}:stateMachine:{name}"


def execution_arn(region: str, account: str, sm_name: str, execution_name: str) -> str:
    return f"arn:aws:states:{region}:{account}:execution:{sm_name}:{execution_name}"


def activity_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:states:{region}:{account}:activity:{name}"


def lambda_function_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


# Tags


def state_machine_tags(
    namespace: str,
    definition_name: str,
    version: int,
    start_at: str,
    default_tags: dict[str, Any] | None,
) -> dict[str, str]:
    """The reference's `StateMachineTags`, with `workflow-definition-start-at` holding the StartAt
    state (the reference wrote the definition name there; contract 6). The definition's default
    tags override; only their string values are kept (the reference's `util.ToTagMap`; the tag rule
    is `inputs.string_tags`)."""
    service_tags = (definition_name, namespace, definition_name, str(version), start_at)
    tags = dict(zip(SERVICE_STATE_MACHINE_TAG_KEYS, service_tags, strict=True))
    tags.update(string_tags(default_tags, drop_non_strings=True))
    return tags


# The deployable definition


def resolve_state_machine(
    state_machine: dict[str, Any],
    namespace: str,
    region: str,
    account: str,
    lookup_state_resource: Callable[[str, str], StateResource | None],
    job_queue: str | None = None,
    activity_heartbeat_seconds: int | None = DEFAULT_ACTIVITY_HEARTBEAT_SECONDS,
) -> dict[str, Any]:
    """A deep copy of `state_machine` ready for CreateStateMachine: every Task `Resource` resolved
    (contract 6), Map states forwarding `_EXECUTION_NAME`, the default retrier on Task states, and
    `HeartbeatSeconds: activity_heartbeat_seconds` on activity Task states that set neither
    `HeartbeatSeconds` nor `HeartbeatSecondsPath` (None or 0: none added). Step Functions requires
    HeartbeatSeconds below TimeoutSeconds, so a state whose TimeoutSeconds is not above it already has
    a bound and gets none, nor does one with `TimeoutSecondsPath` or a JSONata TimeoutSeconds (its
    value is not known before it runs). Lambda, Glue, Batch and other integrations get none.

    Task `Resource` resolution, first match wins:

    1. a state resource `(namespace, Resource)` (from `lookup_state_resource`) with a URI: the URI
       when it is an ARN; a `JobDefinitionARN` one is submitted like `batch:<uri>`, since a job
       definition ARN is not a Task resource Step Functions accepts; a URI that is not an ARN is
       an activity name (as `domain.models.resource_type_for_uri` types it), used without namespace;
    2. `lambda:X`: the Lambda function `{namespace}--X`;
    3. `glue:X`: `glue:startJobRun.sync` with `Parameters.JobName = {namespace}--X`, other
       Parameters (`Arguments`, `Arguments.$`, ...) kept;
    4. `batch:X`: `batch:submitJob.sync` with `Parameters.JobDefinition = X`, `JobName` derived from
       the state name and `JobQueue = job_queue` unless the definition sets them, other Parameters
       kept;
    5. a full ARN (`arn:...`): as is;
    6. anything else: the activity `{namespace}--{Resource}`.

    Raises InvalidInput for a structure that cannot be deployed: a malformed shape (the walker's rules,
    `domain.states`: e.g. a Parallel state without branches, a Map state without an iterator), a Task
    without a string Resource, non-object Parameters on a glue or batch Task, an activity name Step
    Functions would reject.
    """
    resolved = copy.deepcopy(state_machine)
    context = _Context(
        namespace, region, account, lookup_state_resource, job_queue, activity_heartbeat_seconds
    )
    # The walker checks the top level's shape before its QueryLanguage is read.
    states = states_of(resolved)
    _resolve_states(states, context, _query_language(resolved, "JSONPath"))
    return resolved


class _Context(NamedTuple):
    namespace: str
    region: str
    account: str
    lookup: Callable[[str, str], StateResource | None]
    job_queue: str | None
    activity_heartbeat_seconds: int | None


def _query_language(node: dict[str, Any], inherited: str) -> str:
    language = node.get("QueryLanguage")
    return language if isinstance(language, str) and language else inherited


def _resolve_states(states: dict[str, Any], context: _Context, inherited_language: str) -> None:
    for state_name, state in states.items():
        state = state_of(state_name, state)
        state_type = state.get("Type")
        language = _query_language(state, inherited_language)
        if state_type == "Task":
            _resolve_task(state_name, state, context, language)
            _add_default_retrier(state)
            _add_default_heartbeat(state, context.activity_heartbeat_seconds)
        # Parallel branches and Map iterators inherit the state's query language.
        for nested in nested_state_machines(state_name, state):
            _resolve_states(states_of(nested), context, language)
        if state_type == "Map" and language != QUERY_LANGUAGE_JSONATA:
            _forward_execution_name(state)


def _resolve_task(state_name: str, state: dict[str, Any], context: _Context, language: str) -> None:
    resource = state.get("Resource")
    if not isinstance(resource, str) or not resource:
        raise InvalidInput(f"Task state '{state_name}' has no Resource")
    namespace = context.namespace

    state_resource = context.lookup(namespace, resource)
    if state_resource is not None and state_resource.uri:
        uri = state_resource.uri
        if state_resource.type == StateResourceType.JOB_DEFINITION_ARN:
            _submit_batch_job(state_name, state, uri, context.job_queue, language)
        elif uri.startswith(ARN_PREFIX):
            state["Resource"] = uri
        else:
            # A URI that is not an ARN is an activity name (domain.models.resource_type_for_uri).
            _check_activity_name(state_name, uri)
            state["Resource"] = activity_arn(context.region, context.account, uri)
    elif resource.startswith(LAMBDA_PREFIX):
        function = activity_name(namespace, resource.removeprefix(LAMBDA_PREFIX))
        state["Resource"] = lambda_function_arn(context.region, context.account, function)
    elif resource.startswith(GLUE_PREFIX):
        parameters = _task_parameters(state_name, state, language)
        parameters.pop("JobName.$", None)
        parameters["JobName"] = activity_name(namespace, resource.removeprefix(GLUE_PREFIX))
        state["Resource"] = GLUE_START_JOB_RUN_SYNC
    elif resource.startswith(BATCH_PREFIX):
        job_definition = resource.removeprefix(BATCH_PREFIX)
        _submit_batch_job(state_name, state, job_definition, context.job_queue, language)
    elif resource.startswith(ARN_PREFIX):
        pass
    else:
        name = activity_name(namespace, resource)
        _check_activity_name(state_name, name)
        state["Resource"] = activity_arn(context.region, context.account, name)


def _task_parameters(state_name: str, state: dict[str, Any], language: str) -> dict[str, Any]:
    key = "Arguments" if language == QUERY_LANGUAGE_JSONATA else "Parameters"
    parameters = state.setdefault(key, {})
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{key} of Task state '{state_name}' must be an object")
    return parameters


def _submit_batch_job(
    state_name: str,
    state: dict[str, Any],
    job_definition: str,
    job_queue: str | None,
    language: str,
) -> None:
    parameters = _task_parameters(state_name, state, language)
    # The Resource names the job definition: it wins over one in Parameters.
    parameters.pop("JobDefinition.$", None)
    parameters["JobDefinition"] = job_definition
    # Name and queue are the definition's to choose; these are defaults.
    if "JobName" not in parameters and "JobName.$" not in parameters:
        parameters["JobName"] = batch_job_name(state_name)
    if job_queue is not None and "JobQueue" not in parameters and "JobQueue.$" not in parameters:
        parameters["JobQueue"] = job_queue
    state["Resource"] = BATCH_SUBMIT_JOB_SYNC


def _check_activity_name(state_name: str, name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"activity name of Task state '{state_name}' is longer than "
            f"{MAX_NAME_LENGTH} characters: '{name}'"
        )
    forbidden = sorted({c for c in name if is_forbidden_name_character(c)})
    if forbidden:
        raise InvalidInput(
            f"activity name of Task state '{state_name}' contains characters Step Functions "
            f"does not allow ({''.join(forbidden)!r}): '{name}'"
        )


def _forward_execution_name(state: dict[str, Any]) -> None:
    """Map iterations see only what `ItemSelector` (or the older `Parameters`) builds, so the
    execution name is added there; `$` in both is the Map state's input."""
    key = "ItemSelector" if "ItemSelector" in state else "Parameters"
    selector = state.setdefault(key, {})
    if not isinstance(selector, dict):
        return
    if EXECUTION_NAME_PARAMETER not in selector and EXECUTION_NAME_KEY not in selector:
        selector[EXECUTION_NAME_PARAMETER] = EXECUTION_NAME_PATH


def _add_default_retrier(state: dict[str, Any]) -> None:
    retriers = state.get("Retry")
    if retriers is None:
        retriers = []
    if not isinstance(retriers, list):
        return
    for retrier in retriers:
        if isinstance(retrier, dict) and SFNCLI_COMMAND_TERMINATED in (retrier.get("ErrorEquals") or []):
            state["Retry"] = retriers
            return
    state["Retry"] = [copy.deepcopy(DEFAULT_RETRIER), *retriers]


def _add_default_heartbeat(state: dict[str, Any], heartbeat_seconds: int | None) -> None:
    resource = state.get("Resource")
    if not heartbeat_seconds or not isinstance(resource, str) or not _ACTIVITY_ARN.fullmatch(resource):
        return
    if "HeartbeatSeconds" in state or "HeartbeatSecondsPath" in state or "TimeoutSecondsPath" in state:
        return
    timeout = state.get("TimeoutSeconds")
    if timeout is not None and (not isinstance(timeout, int) or timeout <= heartbeat_seconds):
        return
    state["HeartbeatSeconds"] = heartbeat_seconds


# Activities


def activity_names_in(state_machine: dict[str, Any], namespace: str) -> set[str]:
    """The activity names (`{namespace}--{Resource}`) the definition's Task states use, at any depth,
    so the executor can CreateActivity them before CreateStateMachine.

    Works on a definition before or after `resolve_state_machine`: a Resource that the resolution
    rules would make an activity gives `{namespace}--{Resource}`, and an activity ARN gives its name
    when that name is in `namespace` (an activity ARN outside it belongs to someone else). Before
    resolution, state resources are not looked up, so prefer the resolved definition. A malformed
    shape raises the walker's InvalidInput (`domain.states`).
    """
    names: set[str] = set()
    for _, state, _ in iter_states(state_machine):
        resource = state.get("Resource")
        if state.get("Type") == "Task" and isinstance(resource, str) and resource:
            name = _activity_name_of(resource, namespace)
            if name is not None:
                names.add(name)
    return names


def _activity_name_of(resource: str, namespace: str) -> str | None:
    if resource.startswith(ARN_PREFIX):
        match = _ACTIVITY_ARN.fullmatch(resource)
        if match and match["name"].startswith(f"{namespace}{NAME_SEPARATOR}"):
            return match["name"]
        return None
    if resource.startswith((LAMBDA_PREFIX, GLUE_PREFIX, BATCH_PREFIX)):
        return None
    return activity_name(namespace, resource)
