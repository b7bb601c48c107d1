"""The one States Language walker (workflow_manager.domain.states).

A malformed shape gets the same InvalidInput message from every module that walks a definition:
validation (`definitions`), the Step Functions resolution and its activity list (`sfn_naming`) and
the Batch plan (`batch_plan`). The walks themselves: depth-first order, both Map forms, and the
lenient look-ups that skip malformed parts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from executor.batch_plan import plan_jobs
from executor.sfn_naming import activity_names_in, resolve_state_machine
from tests.conftest import load_fixture
from workflow_manager.domain.definitions import validate_state_machine
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.states import (
    count_states,
    find_state,
    iter_states,
    nested_state_machines,
    top_level_state_names,
)

TASK = {"Type": "Task", "Resource": "job", "End": True}


def one_state(name: str, state: Any) -> dict[str, Any]:
    return {"StartAt": name, "States": {name: state}}


def parallel(**fields: Any) -> dict[str, Any]:
    return one_state("p", {"Type": "Parallel", "End": True, **fields})


def map_state(**fields: Any) -> dict[str, Any]:
    return one_state("m", {"Type": "Map", "End": True, **fields})


WALKERS: dict[str, Callable[[Any], Any]] = {
    "validation": validate_state_machine,
    "step-functions": lambda machine: resolve_state_machine(
        machine, "ns", "us-west-2", "123456789012", lambda namespace, name: None
    ),
    "activities": lambda machine: activity_names_in(machine, "ns"),
    "batch": plan_jobs,
}
# The Batch plan rejects a Map state by its type before looking inside it.
NOT_BATCH = ("validation", "step-functions", "activities")

MALFORMED = [
    pytest.param([], "a state machine must be an object", tuple(WALKERS), id="machine-not-an-object"),
    pytest.param({"StartAt": "a"}, "Must define at least one state", tuple(WALKERS), id="no-states"),
    pytest.param(
        {"StartAt": "a", "States": {}}, "Must define at least one state", tuple(WALKERS), id="empty-states"
    ),
    pytest.param(
        {"StartAt": "a", "States": []}, "States must be an object of states", tuple(WALKERS), id="states-list"
    ),
    pytest.param(one_state("a", "Task"), "state 'a' must be an object", tuple(WALKERS), id="state-string"),
    pytest.param(
        parallel(Branches={"StartAt": "x"}),
        "Branches of state 'p' must be an array",
        tuple(WALKERS),
        id="branches-object",
    ),
    pytest.param(
        parallel(Branches=[None]),
        "every branch of Parallel state 'p' must be an object",
        tuple(WALKERS),
        id="branch-null",
    ),
    pytest.param(
        parallel(), "Parallel states must contain at least one branch", tuple(WALKERS), id="no-branches"
    ),
    pytest.param(
        parallel(Branches=[]),
        "Parallel states must contain at least one branch",
        tuple(WALKERS),
        id="empty-branches",
    ),
    pytest.param(
        parallel(Branches=[{"StartAt": "x"}]),
        "Must define at least one state",
        tuple(WALKERS),
        id="branch-without-states",
    ),
    pytest.param(
        map_state(Iterator=[]),
        "the iterator of Map state 'm' must be an object",
        NOT_BATCH,
        id="iterator-list",
    ),
    pytest.param(
        map_state(ItemProcessor="x"),
        "the iterator of Map state 'm' must be an object",
        NOT_BATCH,
        id="item-processor-string",
    ),
    pytest.param(
        map_state(),
        "Map states must contain an iterator with at least one state",
        NOT_BATCH,
        id="no-iterator",
    ),
    pytest.param(map_state(Iterator={}), "Must define at least one state", NOT_BATCH, id="empty-iterator"),
]


@pytest.mark.parametrize(("machine", "message", "walkers"), MALFORMED)
def test_a_malformed_shape_has_one_message_in_every_walker(machine, message, walkers):
    for walker in walkers:
        with pytest.raises(InvalidInput) as raised:
            WALKERS[walker](machine)
        assert (walker, raised.value.message) == (walker, message)


def test_iter_states_is_depth_first_in_document_order():
    walked = [
        (name, depth) for name, _, depth in iter_states(load_fixture("definitions", "kitchensink.json"))
    ]
    assert walked == [
        ("start-state", 0),
        ("second-state", 0),
        ("parallel-state", 0),
        ("branch1", 1),
        ("branch2", 1),
        ("map-state", 0),
        ("mapStateStart", 1),
        ("end-state", 0),
    ]
    assert count_states(load_fixture("definitions", "kitchensink.json")) == len(walked)


def test_a_map_state_with_both_forms_walks_both_and_a_null_one_is_absent():
    iterator = one_state("old", TASK)
    processor = one_state("new", TASK)
    both = {"Type": "Map", "Iterator": iterator, "ItemProcessor": processor, "End": True}
    assert nested_state_machines("m", both) == [iterator, processor]
    assert nested_state_machines("m", {**both, "Iterator": None}) == [processor]
    assert nested_state_machines("t", TASK) == []


def test_look_ups_skip_malformed_parts():
    machine = {
        "StartAt": "broken",
        "States": {
            "broken": {"Type": "Parallel", "Branches": "not-a-list", "Next": "map"},
            "odd": "not-a-state",
            "map": {"Type": "Map", "Iterator": one_state("inner", TASK), "End": True},
        },
    }
    assert find_state(machine, "inner") == TASK
    assert find_state(machine, "odd") is None
    assert top_level_state_names(machine) == ["broken", "odd", "map"]
    assert top_level_state_names({"States": []}) == []
    assert find_state([], "inner") is None
