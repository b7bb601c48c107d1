"""The plan of a Batch workflow: which Task states become Batch jobs, what each one waits for, and in
which order they are submitted. Pure functions on States Language documents, no AWS calls; their
shape is read through the one walker, `workflow_manager.domain.states`.

The reference's 2017 executor ordered states with a Kahn's-algorithm toposort over `Next` edges
(`resources.OrderedStates`, `toposort.Sort`; notes 4.2). This module keeps that sort (same waves,
same order within a wave) and adds what the contract asks of the batch manager (section 6):

- Parallel branches run side by side: the first job of every branch depends on what preceded the
  Parallel state, and the state after the Parallel depends on the last job of every branch.
- Pass, Succeed and Fail states are not jobs; dependencies pass through them. (A Pass state's
  `Result` or `Parameters` are not applied: Batch jobs exchange data through published outputs, see
  `executor.batch_results`. A Fail state only ends its chain: it cannot fail a workflow whose
  jobs all succeeded.)
- A plan may start from any top-level state (resume): only the jobs reachable from it are planned,
  and the first of them depend on nothing.

Constraints that shaped it:

- AWS Batch allows at most MAX_JOB_DEPENDENCIES dependencies per job; a state after a Parallel with
  more branches than that cannot be submitted, so such a definition is rejected when it is saved.
- A batch definition has no Choice, so each (sub-)state machine is one chain of `Next` edges, and
  `Catch` is rejected: Batch cannot route a failed job to a handler, and a state reachable only
  through a `Catch` would otherwise run at the start with no dependency at all.
- Batch job attempts and timeouts have their own bounds (MAX_BATCH_ATTEMPTS,
  MIN_ATTEMPT_DURATION_SECONDS); see `job_attempts` and `job_timeout_seconds`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workflow_manager.domain.aws import MAX_BATCH_ATTEMPTS, MAX_JOB_DEPENDENCIES, MIN_ATTEMPT_DURATION_SECONDS
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.states import parallel_branches, state_of, states_of

# States Language: a retrier without MaxAttempts retries 3 times.
DEFAULT_RETRIER_MAX_ATTEMPTS = 3

CYCLE_MESSAGE = "Detected cycle in dependency graph"

_PASS_THROUGH_TYPES = frozenset({"Pass"})
_END_TYPES = frozenset({"Succeed", "Fail"})


@dataclass
class PlannedJob:
    """One Batch job: the Task state it runs and the states whose jobs it waits for."""

    state_name: str
    state: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)


def toposort(dependencies: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The reference's `toposort.Sort`: waves of nodes, every node after the nodes it depends on.

    `dependencies[n]` lists the nodes `n` depends on; every node must be a key. Kahn's algorithm runs
    from the nodes nothing depends on, in waves, and the waves are then reversed, so the result puts
    predecessors first. Order within a wave is the order in which nodes became free (the roots in the
    mapping's order, then each node's dependencies in listed order), which reproduces the reference's
    test cases. Raises InvalidInput("Detected cycle in dependency graph") on a cycle.
    """
    in_degrees: dict[str, int] = {}
    for node, deps in dependencies.items():
        in_degrees.setdefault(node, 0)
        for dep in deps:
            in_degrees[dep] = in_degrees.get(dep, 0) + 1
    free = [node for node, degree in in_degrees.items() if degree == 0]
    waves: list[list[str]] = []
    while free:
        wave, free = free, []
        waves.append(wave)
        for node in wave:
            for dep in dependencies.get(node, ()):
                in_degrees[dep] -= 1
                if in_degrees[dep] == 0:
                    free.append(dep)
    if sum(len(wave) for wave in waves) != len(in_degrees):
        raise InvalidInput(CYCLE_MESSAGE)
    waves.reverse()
    return waves


def plan_jobs(state_machine: dict[str, Any], start_at: str | None = None) -> list[PlannedJob]:
    """The Batch jobs of `state_machine` in submission order (every job after its dependencies).

    `start_at` (a top-level state, default `StartAt`) plans a resume: only the jobs reachable from it.
    Raises InvalidInput for a state the batch manager cannot run, a broken transition, a cycle, or a
    job with more than MAX_JOB_DEPENDENCIES dependencies, naming the state.
    """
    states = states_of(state_machine)
    start = start_at if start_at is not None else state_machine.get("StartAt")
    if not isinstance(start, str) or start not in states:
        raise InvalidInput(f"State {start if isinstance(start, str) else ''} not found in StateMachine")
    tasks: dict[str, dict[str, Any]] = {}
    dependencies: dict[str, list[str]] = {}
    _walk_chain(states, start, [], tasks, dependencies)
    for state_name, deps in dependencies.items():
        if len(deps) > MAX_JOB_DEPENDENCIES:
            raise InvalidInput(
                f"state '{state_name}' depends on {len(deps)} jobs; AWS Batch allows at most "
                f"{MAX_JOB_DEPENDENCIES} dependencies per job"
            )
    # The toposort wants "who depends on whom" keyed by every node, as the reference built it.
    order = [name for wave in toposort(dependencies) for name in wave]
    return [PlannedJob(name, tasks[name], list(dependencies[name])) for name in order]


def _walk_chain(
    states: dict[str, Any],
    start: str,
    incoming: list[str],
    tasks: dict[str, dict[str, Any]],
    dependencies: dict[str, list[str]],
) -> list[str]:
    """Follow one chain of `Next` edges from `start`, recording each Task state's dependencies.
    `incoming` are the jobs the chain's first job waits for; returns the jobs its end leaves (what
    the state after it waits for)."""
    current = list(incoming)
    seen: set[str] = set()
    state_name: Any = start
    while True:
        if not isinstance(state_name, str) or state_name not in states:
            raise InvalidInput(f"invalid transition: '{state_name if state_name is not None else ''}'")
        if state_name in seen:
            raise InvalidInput(f"{CYCLE_MESSAGE}: state '{state_name}' is reached again")
        seen.add(state_name)
        state = state_of(state_name, states[state_name])
        if state.get("Catch"):
            raise InvalidInput(f"state '{state_name}' has a Catch, which the batch manager cannot run")
        state_type = state.get("Type")
        if state_type == "Task":
            if state_name in dependencies:
                raise InvalidInput(f"{CYCLE_MESSAGE}: state '{state_name}' is reached again")
            tasks[state_name] = state
            dependencies[state_name] = current
            current = [state_name]
        elif state_type == "Parallel":
            ends: list[str] = []
            for branch in parallel_branches(state_name, state):
                branch_states = states_of(branch)
                ends.extend(_walk_chain(branch_states, branch.get("StartAt"), current, tasks, dependencies))
            current = list(dict.fromkeys(ends))
        elif state_type in _END_TYPES:
            return current
        elif state_type not in _PASS_THROUGH_TYPES:
            raise InvalidInput(
                f"state '{state_name}' has type {state_type if isinstance(state_type, str) else ''}, "
                "which the batch manager cannot run"
            )
        if state.get("End") is True:
            return current
        state_name = state.get("Next")


# Per-job settings


def job_attempts(state_name: str, state: dict[str, Any]) -> int | None:
    """Batch `retryStrategy.attempts` for a Task state's `Retry`, or None when it has none.

    States Language `MaxAttempts` counts retries after the first attempt (default 3; 0 means never
    retry); Batch `attempts` counts all attempts. So attempts = 1 + the largest MaxAttempts of the
    state's retriers, capped at MAX_BATCH_ATTEMPTS. Batch retries on any failure, so `ErrorEquals`
    cannot be honoured. (The reference sent MaxAttempts itself, one attempt short.)
    """
    retriers = state.get("Retry")
    if not retriers:
        return None
    if not isinstance(retriers, list):
        raise InvalidInput(f"Retry of state '{state_name}' must be an array")
    retries = 0
    for retrier in retriers:
        if not isinstance(retrier, dict):
            raise InvalidInput(f"every retrier of state '{state_name}' must be an object")
        max_attempts = retrier.get("MaxAttempts", DEFAULT_RETRIER_MAX_ATTEMPTS)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 0:
            raise InvalidInput(
                f"MaxAttempts of state '{state_name}' must be a non-negative integer, not {max_attempts!r}"
            )
        retries = max(retries, max_attempts)
    return min(1 + retries, MAX_BATCH_ATTEMPTS)


def job_timeout_seconds(state_name: str, state: dict[str, Any]) -> int | None:
    """Batch `timeout.attemptDurationSeconds` for a Task state's `TimeoutSeconds` (per attempt, as in
    Step Functions), or None when it has none. Below Batch's minimum of 60 seconds it is rejected:
    running a job longer than the definition allows would be a silent change of meaning."""
    timeout = state.get("TimeoutSeconds")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise InvalidInput(f"TimeoutSeconds of state '{state_name}' must be a positive integer")
    if timeout < MIN_ATTEMPT_DURATION_SECONDS:
        raise InvalidInput(
            f"TimeoutSeconds of state '{state_name}' is {timeout}; AWS Batch's minimum job timeout is "
            f"{MIN_ATTEMPT_DURATION_SECONDS} seconds"
        )
    return timeout


def validate_batch_definition(state_machine: dict[str, Any]) -> None:
    """What a `manager: batch` definition needs beyond its state types (which
    `definitions.validate_batch_states` checks first): at least one Task state, a plan that can be
    submitted (no cycle, no Catch, at most MAX_JOB_DEPENDENCIES dependencies per job), and Retry and
    TimeoutSeconds that Batch can honour. Raises InvalidInput naming the state."""
    jobs = plan_jobs(state_machine)
    if not jobs:
        raise InvalidInput("a batch workflow definition needs at least one Task state reachable from StartAt")
    for job in jobs:
        job_attempts(job.state_name, job.state)
        job_timeout_seconds(job.state_name, job.state)


def final_jobs(plan: Sequence[PlannedJob]) -> list[str]:
    """The states of the jobs no other job depends on (whose outputs are the workflow's output), in
    plan order."""
    depended_on = {dep for job in plan for dep in job.depends_on}
    return [job.state_name for job in plan if job.state_name not in depended_on]
