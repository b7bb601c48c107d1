"""What makes a workflow definition valid, and pruning it to the states that can still run.

Pure functions on States Language documents (dicts with PascalCase keys), no AWS and no store; the
document's shape (States, Parallel branches, Map iterators) is read through the one walker,
`workflow_manager.domain.states`, so a malformed shape has one message everywhere.
Validation follows the reference's handler (`newWorkflowDefinitionFromRequest`, notes 1.2 steps 1-5):
its two layers (notes 2.8) run recursively into Parallel branches and Map iterators (`Iterator` or
the newer `ItemProcessor`), and every message is the reference's, word for word, typos included
("transistion", "state maching"), because clients match on them. The contract (sections 1 and 4)
adds: names usable in AWS names, `Catch[].Next` targets must exist, and a `batch` definition may only
use the states the Batch executor can run.

Pitfalls:
- Pruning (`RemoveInactiveStates` in the reference) mutates. `remove_inactive_states` does so in
  place, as the reference; `validate_definition` and `prune_unreachable_states` work on a deep copy,
  so validating or resuming never changes the caller's (or the stored) document.
- Reachability is computed from `StartAt` over the transition graph. The reference removed, until
  nothing changed, states that no *other* state named; that keeps an unreachable cycle (A -> B -> A)
  which Step Functions then rejects at CreateStateMachine. A graph walk removes it, so such a
  definition fails here with "N states have no transition path" instead.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from workflow_manager.domain.aws import MAX_NAME_LENGTH, is_forbidden_name_character
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.inputs import SERVICE_STATE_MACHINE_TAG_KEYS, check_tag_count, string_tags
from workflow_manager.domain.models import Manager
from workflow_manager.domain.states import (
    check_nesting_depth,
    count_states,
    iter_states,
    list_field,
    map_processors,
    nested_state_machines,
    parallel_branches,
    state_of,
    states_of,
)

# The state types the Batch executor can run (contract section 4): it turns Task states into Batch
# jobs and follows Pass, Parallel, Succeed and Fail; it has no way to branch, wait or iterate.
BATCH_STATE_TYPES = ("Task", "Pass", "Parallel", "Succeed", "Fail")

# States whose transitions are `Next` (plus `Catch[].Next`) in the reference's RemoveInactiveStates.
_NEXT_STATE_TYPES = frozenset({"Pass", "Task", "Wait", "Parallel", "Map"})
# States that may have neither `End` nor `Next`.
_TERMINAL_OR_CHOICE_TYPES = frozenset({"Fail", "Succeed", "Choice"})


# Names


def validate_aws_name(label: str, value: Any) -> None:
    """Raise InvalidInput unless `value` can be part of a Step Functions name (contract section 1)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{label} must be a string, not {json.dumps(value)}")
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise InvalidInput(f"{label} '{value}' must be 1-{MAX_NAME_LENGTH} characters long, not {len(value)}")
    for char in value:
        if is_forbidden_name_character(char):
            raise InvalidInput(
                f"{label} '{value}' contains {char!r}, which AWS names do not allow "
                f'(no whitespace, control characters or any of <>{{}}[]?*"#%\\^|~`$&,;:/)'
            )


# The whole definition


def validate_definition(
    name: Any,
    state_machine: Any,
    manager: Any = Manager.STEP_FUNCTIONS.value,
    default_tags: Any = None,
) -> dict[str, Any]:
    """Raise InvalidInput unless the definition is valid; return its state machine unchanged.

    Checks in the reference's order (notes 1.2): the manager (a decode error there), the name, layer 1
    (`validateStateMachine`, after the nesting depth), `StartAt`, layer 2 (pruning and transitions)
    with the count of pruned states, then the contract's batch restriction, then `defaultTags`.
    """
    manager_value = _manager(manager)
    if not name:
        raise InvalidInput("WorkflowDefinition `name` is required")
    validate_aws_name("WorkflowDefinition name", name)
    if not isinstance(state_machine, dict):
        raise InvalidInput("WorkflowDefinition `stateMachine` is required and must be an object")
    # Before every recursive walk of the machine, which a deep one would overflow (RecursionError).
    check_nesting_depth(state_machine)
    validate_state_machine(state_machine)
    if not state_machine.get("StartAt"):
        raise InvalidInput("StartAt is a required field")
    pruned = copy.deepcopy(state_machine)
    states_before = count_states(pruned)
    remove_inactive_states(pruned)
    removed = states_before - count_states(pruned)
    if removed:
        raise InvalidInput(f"Invalid WorkflowDefinition: {removed} states have no transition path")
    if manager_value == Manager.BATCH:
        validate_batch_states(state_machine)
    validate_tags(default_tags)
    return state_machine


def _manager(manager: Any) -> Manager:
    try:
        return Manager(manager)
    except ValueError:
        allowed = ", ".join(m.value for m in Manager)
        raise InvalidInput(f"manager '{manager}' is not one of: {allowed}") from None


def validate_tags(tags: Any) -> None:
    """`defaultTags` follow the tag rule (`inputs.string_tags`, the reference's `validateTagsMap`),
    and fit on a state machine beside the tags the service adds (AWS's limit per resource)."""
    check_tag_count("defaultTags", string_tags(tags, field="defaultTags"), SERVICE_STATE_MACHINE_TAG_KEYS)


# Layer 1: validateStateMachine


def validate_state_machine(state_machine: dict[str, Any]) -> None:
    """The reference's `validateStateMachine`: per-type checks of every state, at every depth."""
    # The walker raises the reference's "Must define at least one state", "Map states must contain
    # an iterator with at least one state" and "Parallel states must contain at least one branch".
    for state_name, state in states_of(state_machine).items():
        state = state_of(state_name, state)
        state_type = state.get("Type")
        if state_type == "Map":
            for processor in map_processors(state_name, state):
                validate_state_machine(processor)
        elif state_type == "Parallel":
            for branch in parallel_branches(state_name, state):
                validate_state_machine(branch)
        elif state_type == "Task":
            if not state.get("Resource"):
                raise InvalidInput("Task states must contain a valid resource string")
        elif state_type == "Choice":
            choices = list_field(state_name, state, "Choices")
            if not choices:
                raise InvalidInput("Choice states must contain at least one choice")
            for choice in choices:
                if not isinstance(choice, dict) or not choice.get("Next"):
                    raise InvalidInput(
                        "Every choice in a choice state must specify a Next state to transistion to"
                    )
        elif state_type == "Pass":
            pass
        elif state_type == "Wait":
            _validate_wait(state_name, state)
        elif state_type in ("Fail", "Succeed"):
            if state.get("Next"):
                raise InvalidInput(f"{state_type} states cannot contain a Next value")
        else:
            raise InvalidInput(f"Unrecognized state type used in state maching {_text(state_type)}")


def _validate_wait(state_name: str, state: dict[str, Any]) -> None:
    seconds = state.get("Seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
        raise InvalidInput(f"Seconds of Wait state '{state_name}' must be an integer")
    # As the reference: `Seconds: 0` counts as not set (Go's zero value).
    fields_set = [
        seconds is not None and seconds > 0,
        bool(state.get("SecondsPath")),
        bool(state.get("Timestamp")),
        bool(state.get("TimestampPath")),
    ]
    if fields_set.count(True) != 1:
        raise InvalidInput("Wait states must use one and only one field to specify wait time")


# Layer 2: RemoveInactiveStates


def remove_inactive_states(state_machine: dict[str, Any]) -> None:
    """The reference's `RemoveInactiveStates`, in place and recursive: drop the states not reachable
    from `StartAt`, then check that every remaining state's transitions lead to existing states."""
    states = states_of(state_machine)
    start_at = state_machine.get("StartAt")
    if not isinstance(start_at, str) or start_at not in states:
        raise InvalidInput(f"State {_text(start_at)} not found in StateMachine")
    reachable = _reachable_from(start_at, states)
    for state_name in [name for name in states if name not in reachable]:
        del states[state_name]
    for state_name, state in states.items():
        _check_transitions(state_name, state, states)
        for nested in nested_state_machines(state_name, state):
            remove_inactive_states(nested)


def _reachable_from(start_at: str, states: dict[str, Any]) -> set[str]:
    reachable = {start_at}
    pending = [start_at]
    while pending:
        state_name = pending.pop()
        for target in _transitions(state_name, state_of(state_name, states[state_name])):
            if target in states and target not in reachable:
                reachable.add(target)
                pending.append(target)
    return reachable


def _transitions(state_name: str, state: dict[str, Any]) -> list[Any]:
    state_type = state.get("Type")
    if state_type in _NEXT_STATE_TYPES:
        return [state.get("Next"), *_catch_targets(state_name, state)]
    if state_type == "Choice":
        targets = [c.get("Next") for c in list_field(state_name, state, "Choices") if isinstance(c, dict)]
        return [*targets, state.get("Default")]
    if state_type in ("Succeed", "Fail"):
        return []
    raise InvalidInput(f"{_text(state_type)} states not supported yet")


def _catch_targets(state_name: str, state: dict[str, Any]) -> list[Any]:
    return [c.get("Next") for c in list_field(state_name, state, "Catch") if isinstance(c, dict)]


def _check_transitions(state_name: str, state: dict[str, Any], states: dict[str, Any]) -> None:
    """The reference's `hasValidTransitions`, plus the contract's `Catch[].Next` check."""
    state_type = state.get("Type")
    end = state.get("End") is True
    next_state = state.get("Next")
    if end and next_state:
        raise InvalidInput("Can only be an End state or have a Next state not both")
    if not end and not next_state and state_type not in _TERMINAL_OR_CHOICE_TYPES:
        raise InvalidInput("Must either be an End state, Choice state, or have a valid Next state")
    targets: list[Any] = []
    if state_type in _NEXT_STATE_TYPES and not end:
        targets.append(next_state)
    elif state_type == "Choice":
        choices = list_field(state_name, state, "Choices")
        targets.extend(c.get("Next") if isinstance(c, dict) else None for c in choices)
        if state.get("Default"):
            targets.append(state["Default"])
    targets.extend(_catch_targets(state_name, state))
    for target in targets:
        if not isinstance(target, str) or target not in states:
            raise InvalidInput(f"invalid transition in '{state_name}': '{_text(target)}'")


def prune_unreachable_states(state_machine: dict[str, Any], start_at: str | None = None) -> dict[str, Any]:
    """A deep copy of `state_machine` starting at `start_at` (when given), without the states that
    can no longer be reached (the reference's RetryWorkflow, notes 1.8 step 7)."""
    pruned = copy.deepcopy(state_machine)
    if start_at is not None:
        pruned["StartAt"] = start_at
    remove_inactive_states(pruned)
    return pruned


# Batch manager


def validate_batch_states(state_machine: dict[str, Any]) -> None:
    """Raise InvalidInput naming the first state, at any depth, that the Batch executor cannot run."""
    for state_name, state, _ in iter_states(state_machine):
        state_type = state.get("Type")
        if state_type not in BATCH_STATE_TYPES:
            raise InvalidInput(
                f"state '{state_name}' has type {_text(state_type)}, which the batch manager cannot "
                f"run; allowed: {', '.join(BATCH_STATE_TYPES)}"
            )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _text(value: Any) -> str:
    """A value as Go's `%s` showed the reference's strings: "" for a missing one."""
    if value is None:
        return ""
    return value if isinstance(value, str) else _json(value)
