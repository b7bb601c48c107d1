"""The one walker of States Language documents: the shape of a state machine and of its nested
machines (Parallel `Branches`, Map `Iterator` / `ItemProcessor`), and the walks over them.

Every module that reads a definition's structure (validation in `definitions`, the Step Functions
resolution in `executor.sfn_naming`, the Batch plan in `executor.batch_plan`, the history reader in
`executor.sfn_history`) goes through these accessors, so a malformed shape is rejected everywhere
with the same InvalidInput and the same message. The reference decoded the document into typed Go
structs first (a 400 for a wrong JSON type); the accessors raise InvalidInput for the same mistakes
instead of letting a TypeError become a 500.

The shape rules, from the States Language specification and, where the reference validated them, in
the reference's words (clients match on those texts):
- a state machine is an object whose `States` is an object of states, at least one ("Must define at
  least one state", as the reference said for a machine without states);
- a state is an object; a list field (`Choices`, `Catch`) is an array when present;
- a Parallel state has at least one branch, each an object;
- a Map state has its iteration's machine in `Iterator` (the reference's, deprecated by AWS) or
  `ItemProcessor` (its replacement), an object. Both keys are supported; when both are present both
  are walked.

Pitfall: State names are unique across a whole state machine (Step Functions requires it), which is
what makes `find_state` over nested machines unambiguous.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workflow_manager.domain.errors import InvalidInput

# Keys of a Map state that hold its iteration's state machine, in the order they are walked.
MAP_PROCESSOR_KEYS = ("Iterator", "ItemProcessor")

# How deep Parallel branches and Map iterators may nest: a state inside 32 of them is the deepest
# allowed. Step Functions documents no such limit, but every walker here recurses once per level
# (validation's deepcopy spends 8 frames of Python's 1,000-frame recursion limit per level and
# fails near 120 levels), and the embedded emulator's ASL parser gives up from 36 levels, so that a
# deeper definition would be saved and then refused at every start. No machine written by hand
# nests anywhere near 32; tests/test_input_limits.py runs one at the limit.
MAX_NESTING_DEPTH = 32

# The reference's messages (handler.go `validateStateMachine`), word for word.
NO_STATES_MESSAGE = "Must define at least one state"
NO_BRANCH_MESSAGE = "Parallel states must contain at least one branch"
NO_ITERATOR_MESSAGE = "Map states must contain an iterator with at least one state"


# Accessors: each returns the part asked for or raises InvalidInput naming the malformed part.


def states_of(state_machine: Any) -> dict[str, Any]:
    """The `States` object of a state machine (its top level, a branch or an iterator)."""
    if not isinstance(state_machine, dict):
        raise InvalidInput("a state machine must be an object")
    states = state_machine.get("States")
    if states is None:
        raise InvalidInput(NO_STATES_MESSAGE)
    if not isinstance(states, dict):
        raise InvalidInput("States must be an object of states")
    if not states:
        raise InvalidInput(NO_STATES_MESSAGE)
    return states


def state_of(state_name: str, state: Any) -> dict[str, Any]:
    """A state, checked to be an object."""
    if not isinstance(state, dict):
        raise InvalidInput(f"state '{state_name}' must be an object")
    return state


def list_field(state_name: str, state: dict[str, Any], key: str) -> list[Any]:
    """A list field of a state (`Choices`, `Catch`, `Branches`): [] when absent."""
    value = state.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{key} of state '{state_name}' must be an array")
    return value


def parallel_branches(state_name: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The branches of a Parallel state: at least one, each an object."""
    branches = list_field(state_name, state, "Branches")
    for branch in branches:
        if not isinstance(branch, dict):
            raise InvalidInput(f"every branch of Parallel state '{state_name}' must be an object")
    if not branches:
        raise InvalidInput(NO_BRANCH_MESSAGE)
    return branches


def map_processors(state_name: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The iteration machines of a Map state (`Iterator`, `ItemProcessor`): at least one, objects."""
    processors = [state[key] for key in MAP_PROCESSOR_KEYS if state.get(key) is not None]
    for processor in processors:
        if not isinstance(processor, dict):
            raise InvalidInput(f"the iterator of Map state '{state_name}' must be an object")
    if not processors:
        raise InvalidInput(NO_ITERATOR_MESSAGE)
    return processors


def nested_state_machines(state_name: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The branches of a Parallel state or the iterators of a Map state; [] for other states."""
    state_type = state.get("Type")
    if state_type == "Parallel":
        return parallel_branches(state_name, state)
    if state_type == "Map":
        return map_processors(state_name, state)
    return []


# Walks


def iter_states(state_machine: Any, depth: int = 0) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Every state as (name, state, depth), depth first in document order: a Parallel or Map state
    comes before the states of its branches or iterators (depth 0 is the top level)."""
    for state_name, state in states_of(state_machine).items():
        state = state_of(state_name, state)
        yield state_name, state, depth
        for nested in nested_state_machines(state_name, state):
            yield from iter_states(nested, depth + 1)


def check_nesting_depth(state_machine: Any) -> None:
    """Raise InvalidInput, naming the first state found too deep, when a state is nested in more
    than MAX_NESTING_DEPTH Parallel or Map states. Iterative, so that it can run before the
    recursive walks it protects; malformed parts are left to the accessors' own messages."""
    pending = [(state_machine, 0)]
    while pending:
        machine, depth = pending.pop()
        for state_name, state in _states_or_empty(machine).items():
            if not isinstance(state, dict):
                continue
            if depth > MAX_NESTING_DEPTH:
                raise InvalidInput(
                    f"state '{state_name}' is nested in {depth} Parallel and Map states, over the "
                    f"limit of {MAX_NESTING_DEPTH}"
                )
            pending.extend((nested, depth + 1) for nested in _nested_or_empty(state_name, state))


def count_states(state_machine: Any) -> int:
    """Every state at every depth: a Parallel or Map state counts itself and the states inside it."""
    return sum(1 for _ in iter_states(state_machine))


# Lenient look-ups for readers of stored definitions (the history, a resume request): a malformed
# part is skipped rather than raised, because these answer "is it there", not "is it valid".


def top_level_state_names(state_machine: Any) -> list[str]:
    """The names of the top-level states, in document order; [] for a malformed machine."""
    return list(_states_or_empty(state_machine))


def find_state(state_machine: Any, name: str) -> dict[str, Any] | None:
    """The state called `name`, at the top level or inside any Parallel branch or Map iterator;
    None when there is none (malformed parts are skipped)."""
    states = _states_or_empty(state_machine)
    state = states.get(name)
    if isinstance(state, dict):
        return state
    for state_name, state in states.items():
        if not isinstance(state, dict):
            continue
        for nested in _nested_or_empty(state_name, state):
            found = find_state(nested, name)
            if found is not None:
                return found
    return None


def _states_or_empty(state_machine: Any) -> dict[str, Any]:
    try:
        return states_of(state_machine)
    except InvalidInput:
        return {}


def _nested_or_empty(state_name: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return nested_state_machines(state_name, state)
    except InvalidInput:
        return []
