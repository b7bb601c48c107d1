"""Definition validation and the state-machine walks (workflow_manager.domain.definitions).

The reference's validation tests (handler_test.go TestValidate*State, TestValidateTagsMap,
resources/workflow_definitions_test.go TestRemoveInactiveStates), every message of its checklist
(notes section 10, items 4-15 and 17) word for word, and the contract's additions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workflow_manager.domain import aws
from workflow_manager.domain.aws import MAX_NAME_LENGTH
from workflow_manager.domain.definitions import (
    prune_unreachable_states,
    remove_inactive_states,
    validate_aws_name,
    validate_definition,
    validate_state_machine,
    validate_tags,
)
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.states import count_states, find_state, top_level_state_names

DEFINITIONS = Path(__file__).parent / "fixtures" / "definitions"
KITCHENSINK_TAGS = {"tag1": "val1", "tag2": "val2", "tag3": "val3"}


def load(name: str) -> dict[str, Any]:
    return json.loads((DEFINITIONS / name).read_text())


def kitchensink() -> dict[str, Any]:
    """The reference's KitchenSink (notes 2.9): Task -> Task -> Parallel -> Map -> Task."""
    return load("kitchensink.json")


def one_state(state: dict[str, Any], name: str = "only") -> dict[str, Any]:
    return {"StartAt": name, "States": {name: state}}


def assert_invalid(call: Callable[[], Any], message: str | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as raised:
        call()
    if message is not None:
        assert raised.value.message == message
    return raised.value


def valid(state_machine: dict[str, Any], manager: str = "step-functions", tags=None) -> dict:
    return validate_definition("kitchensink", state_machine, manager, tags or KITCHENSINK_TAGS)


# The whole definition (TestNewWorkflowDefinitionFromRequest)


def test_kitchensink_is_a_valid_definition():
    assert valid(kitchensink()) == kitchensink()


@pytest.mark.parametrize(
    "fixture", ["kitchensink.json", "aws-choice.json", "item-processor.json", "batch-pipeline.json"]
)
def test_fixture_definitions_are_valid(fixture):
    valid(load(fixture))


def test_validation_leaves_the_callers_definition_unchanged():
    state_machine = kitchensink()
    state_machine["States"]["orphan"] = {"Type": "Succeed"}
    before = copy.deepcopy(state_machine)
    assert_invalid(lambda: valid(state_machine))
    assert state_machine == before


# Notes section 10, items 4-15 and 17: each message word for word.


def _set(path: list[str], value: Any) -> Callable[[dict], None]:
    def change(machine: dict) -> None:
        target = machine
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _delete(path: list[str]) -> Callable[[dict], None]:
    def change(machine: dict) -> None:
        target = machine
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


END = ["States", "end-state"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(_set(["States"], {}), "Must define at least one state", id="5-no-states"),
        pytest.param(_delete(["StartAt"]), "StartAt is a required field", id="6-no-start-at"),
        pytest.param(
            _set(["StartAt"], "nowhere"), "State nowhere not found in StateMachine", id="7-bad-start-at"
        ),
        pytest.param(
            _set(["States", "orphan"], {"Type": "Task", "Resource": "r", "End": True}),
            "Invalid WorkflowDefinition: 1 states have no transition path",
            id="8-unreachable",
        ),
        pytest.param(
            _delete([*END, "Resource"]),
            "Task states must contain a valid resource string",
            id="9-no-resource",
        ),
        pytest.param(
            _set([*END, "Next"], "start-state"),
            "Can only be an End state or have a Next state not both",
            id="10-end-and-next",
        ),
        pytest.param(
            _delete([*END, "End"]),
            "Must either be an End state, Choice state, or have a valid Next state",
            id="11-neither-end-nor-next",
        ),
        pytest.param(
            _set(["States", "second-state", "Next"], "nowhere"),
            "invalid transition in 'second-state': 'nowhere'",
            id="12-next-to-missing-state",
        ),
        pytest.param(
            _set(END, {"Type": "Wait", "End": True}),
            "Wait states must use one and only one field to specify wait time",
            id="13-wait-without-time",
        ),
        pytest.param(
            _set(END, {"Type": "Wait", "Seconds": 5, "Timestamp": "2030-01-01T00:00:00Z", "End": True}),
            "Wait states must use one and only one field to specify wait time",
            id="13-wait-with-two-times",
        ),
        pytest.param(
            _set(END, {"Type": "Choice", "Choices": []}),
            "Choice states must contain at least one choice",
            id="14-choice-without-choices",
        ),
        pytest.param(
            _set(END, {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": True}]}),
            "Every choice in a choice state must specify a Next state to transistion to",
            id="14-choice-without-next",
        ),
        pytest.param(
            _set(END, {"Type": "Fail", "Next": "start-state"}),
            "Fail states cannot contain a Next value",
            id="15-fail-with-next",
        ),
        pytest.param(
            _set(END, {"Type": "Succeed", "Next": "start-state"}),
            "Succeed states cannot contain a Next value",
            id="15-succeed-with-next",
        ),
        pytest.param(
            _set(END, {"Type": "Teleport", "End": True}),
            "Unrecognized state type used in state maching Teleport",
            id="unknown-type",
        ),
    ],
)
def test_invalid_definition_is_rejected_with_the_reference_message(change, message):
    state_machine = kitchensink()
    change(state_machine)
    assert_invalid(lambda: valid(state_machine), message)


def test_definition_without_name_is_rejected():  # item 4
    assert_invalid(
        lambda: validate_definition("", kitchensink(), "step-functions", {}),
        "WorkflowDefinition `name` is required",
    )
    assert_invalid(
        lambda: validate_definition(None, kitchensink(), "step-functions", {}),
        "WorkflowDefinition `name` is required",
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1, "1"), (4.5, "4.5"), (True, "true"), (None, "null"), ({"a": 1}, '{"a":1}'), (["x"], '["x"]')],
)
def test_non_string_default_tag_value_is_rejected(value, shown):  # item 17
    assert_invalid(
        lambda: validate_definition("d", kitchensink(), "step-functions", {"team": "infra", "n": value}),
        f"error converting tag value to string: {shown}",
    )


def test_definition_without_state_machine_is_invalid_input_not_a_crash():
    assert_invalid(lambda: validate_definition("d", None, "step-functions", {}))
    assert_invalid(lambda: validate_definition("d", "[]", "step-functions", {}))


def test_unknown_manager_is_rejected():
    error = assert_invalid(lambda: validate_definition("d", kitchensink(), "kubernetes", {}))
    assert "kubernetes" in error.message


def test_checks_run_in_the_reference_order():
    # Layer 1 before the StartAt check, the StartAt check before layer 2, layer 2 before the tags.
    state_machine = kitchensink()
    del state_machine["StartAt"]
    del state_machine["States"]["end-state"]["Resource"]
    assert_invalid(lambda: valid(state_machine), "Task states must contain a valid resource string")
    state_machine = kitchensink()
    del state_machine["StartAt"]
    state_machine["States"]["second-state"]["Next"] = "nowhere"
    assert_invalid(lambda: valid(state_machine), "StartAt is a required field")
    state_machine = kitchensink()
    state_machine["States"]["second-state"]["Next"] = "nowhere"
    assert_invalid(
        lambda: valid(state_machine, tags={"n": 1}), "invalid transition in 'second-state': 'nowhere'"
    )


def test_malformed_shapes_are_invalid_input_not_a_crash():
    for state_machine in (
        {"StartAt": "a", "States": []},
        {"StartAt": "a", "States": {"a": "Task"}},
        one_state({"Type": "Parallel", "Branches": {"StartAt": "x"}, "End": True}),
        one_state({"Type": "Map", "Iterator": [], "End": True}),
        one_state({"Type": "Choice", "Choices": "b"}),
        one_state({"Type": "Wait", "Seconds": "10", "End": True}),
        one_state({"Type": "Task", "Resource": "r", "End": True, "Catch": {"Next": "x"}}),
    ):
        assert_invalid(lambda state_machine=state_machine: valid(state_machine))


# Contract additions: Catch[].Next must exist.


def test_catch_next_naming_a_missing_state_is_rejected():
    state_machine = kitchensink()
    state_machine["States"]["second-state"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "cleanup"}]
    assert_invalid(lambda: valid(state_machine), "invalid transition in 'second-state': 'cleanup'")


def test_catch_next_on_an_end_state_is_checked_too():
    state_machine = kitchensink()
    state_machine["States"]["end-state"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "gone"}]
    assert_invalid(lambda: valid(state_machine), "invalid transition in 'end-state': 'gone'")


def test_a_state_reached_only_through_a_catch_is_kept():
    state_machine = kitchensink()
    state_machine["States"]["second-state"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "Next": "cleanup"}]
    state_machine["States"]["cleanup"] = {"Type": "Fail", "Error": "Cleaned"}
    valid(state_machine)


def test_catch_next_inside_a_map_item_processor_is_checked():
    state_machine = load("item-processor.json")
    processor = state_machine["States"]["process-items"]["ItemProcessor"]
    processor["States"]["process-item"]["Catch"][0]["Next"] = "item-lost"
    assert_invalid(lambda: valid(state_machine), "invalid transition in 'process-item': 'item-lost'")


# Contract additions: the batch manager runs Task, Pass, Parallel, Succeed and Fail only.


def test_batch_definition_with_supported_states_is_valid():
    valid(load("batch-pipeline.json"), manager="batch")


def test_batch_definition_with_a_choice_inside_a_parallel_branch_is_rejected():
    assert_invalid(
        lambda: valid(load("batch-choice-in-parallel.json"), manager="batch"),
        "state 'prepare-b' has type Choice, which the batch manager cannot run; "
        "allowed: Task, Pass, Parallel, Succeed, Fail",
    )
    # The same definition is fine for Step Functions.
    valid(load("batch-choice-in-parallel.json"), manager="step-functions")


@pytest.mark.parametrize(
    "replacement",
    [
        {"Type": "Wait", "Seconds": 5, "Next": "done"},
        {
            "Type": "Map",
            "Iterator": one_state({"Type": "Task", "Resource": "r", "End": True}),
            "Next": "done",
        },
    ],
    ids=["Wait", "Map"],
)
def test_batch_definition_with_map_or_wait_is_rejected(replacement):
    state_machine = load("batch-pipeline.json")
    state_machine["States"]["load"] = replacement
    valid(state_machine, manager="step-functions")
    assert_invalid(
        lambda: valid(state_machine, manager="batch"),
        f"state 'load' has type {replacement['Type']}, which the batch manager cannot run; "
        "allowed: Task, Pass, Parallel, Succeed, Fail",
    )


# Names usable in AWS names (contract section 1).


@pytest.mark.parametrize("char", [*sorted(aws.FORBIDDEN_NAME_CHARACTERS), " ", "\t", "\n", "\x07"])
def test_definition_name_with_a_forbidden_character_is_rejected(char):
    name = f"my{char}workflow"
    error = assert_invalid(lambda: validate_definition(name, kitchensink(), "step-functions", {}))
    assert f"'{name}'" in error.message
    assert "WorkflowDefinition name" in error.message


def test_definition_name_length_is_limited_to_80_characters():
    valid_name = "n" * MAX_NAME_LENGTH
    validate_definition(valid_name, kitchensink(), "step-functions", {})
    error = assert_invalid(lambda: validate_definition(valid_name + "n", kitchensink(), "step-functions", {}))
    assert "1-80 characters" in error.message


@pytest.mark.parametrize("name", ["hello-workflow", "a", "under_score.dot+plus=eq@at!", "ünïcödé"])
def test_usable_aws_names_are_accepted(name):
    validate_aws_name("namespace", name)


def test_non_string_aws_name_is_rejected():
    assert_invalid(lambda: validate_aws_name("namespace", 7), "namespace must be a string, not 7")


# handler_test.go: TestValidate*State


def test_validate_map_state():
    assert_invalid(
        lambda: validate_state_machine(one_state({"Type": "Map", "End": True})),
        "Map states must contain an iterator with at least one state",
    )
    map_state = kitchensink()["States"]["map-state"]
    map_state["Parameters"] = {"_EXECUTION_NAME.$": "$._EXECUTION_NAME"}
    validate_state_machine(one_state(map_state))


def test_validate_map_state_with_an_empty_iterator():
    assert_invalid(
        lambda: validate_state_machine(one_state({"Type": "Map", "Iterator": {}, "End": True})),
        "Must define at least one state",
    )


def test_validate_task_state():
    assert_invalid(
        lambda: validate_state_machine(one_state({"Type": "Task", "End": True})),
        "Task states must contain a valid resource string",
    )
    validate_state_machine(one_state({"Type": "Task", "Resource": "fake-resource", "End": True}))


def test_validate_parallel_state():
    assert_invalid(
        lambda: validate_state_machine(one_state({"Type": "Parallel", "End": True})),
        "Parallel states must contain at least one branch",
    )
    branch_without_resource = one_state({"Type": "Task", "End": True, "Retry": []}, "branch1")
    assert_invalid(
        lambda: validate_state_machine(
            one_state({"Type": "Parallel", "End": True, "Branches": [branch_without_resource]})
        ),
        "Task states must contain a valid resource string",
    )
    branch = one_state({"Type": "Task", "Resource": "fake-resource", "End": True}, "branch1")
    validate_state_machine(one_state({"Type": "Parallel", "End": True, "Branches": [branch]}))


def test_validate_choice_state():
    assert_invalid(
        lambda: validate_state_machine(one_state({"Type": "Choice"})),
        "Choice states must contain at least one choice",
    )
    assert_invalid(
        lambda: validate_state_machine(one_state({"Type": "Choice", "Choices": [{}]})),
        "Every choice in a choice state must specify a Next state to transistion to",
    )
    validate_state_machine(one_state({"Type": "Choice", "Choices": [{"Next": "fakeState"}]}))


def test_validate_wait_state():
    message = "Wait states must use one and only one field to specify wait time"
    assert_invalid(lambda: validate_state_machine(one_state({"Type": "Wait"})), message)
    assert_invalid(
        lambda: validate_state_machine(
            one_state({"Type": "Wait", "Timestamp": "timestamp", "TimestampPath": "timestampPath"})
        ),
        message,
    )
    # As the reference: Seconds 0 is Go's zero value, so it counts as no field.
    assert_invalid(lambda: validate_state_machine(one_state({"Type": "Wait", "Seconds": 0})), message)
    validate_state_machine(one_state({"Type": "Wait", "Timestamp": "timestamp"}))
    validate_state_machine(one_state({"Type": "Wait", "Seconds": 10}))
    validate_state_machine(one_state({"Type": "Wait", "SecondsPath": "$.wait"}))


def test_validate_end_state():
    assert_invalid(
        lambda: validate_state_machine(one_state({"Type": "Fail", "Next": "fakeStat"})),
        "Fail states cannot contain a Next value",
    )
    validate_state_machine(one_state({"Type": "Succeed"}))


def test_validate_pass_state_has_no_checks():
    validate_state_machine(one_state({"Type": "Pass"}))


def test_validate_tags_map():
    validate_tags({"team": "infra", "k": "v"})
    validate_tags(None)
    assert_invalid(
        lambda: validate_tags({"team": "infra", "k": "v", "num": 4}),
        "error converting tag value to string: 4",
    )


# Recursion into Map iterators, in both forms.


def test_layer_one_recurses_into_a_map_item_processor():
    state_machine = load("item-processor.json")
    processor = state_machine["States"]["process-items"]["ItemProcessor"]
    del processor["States"]["process-item"]["Resource"]
    assert_invalid(lambda: valid(state_machine), "Task states must contain a valid resource string")


def test_layer_two_recurses_into_a_map_item_processor():
    state_machine = load("item-processor.json")
    processor = state_machine["States"]["process-items"]["ItemProcessor"]
    processor["States"]["check-item"]["Default"] = "nowhere"
    assert_invalid(lambda: valid(state_machine), "invalid transition in 'check-item': 'nowhere'")


def test_unreachable_state_inside_a_map_item_processor_is_counted():
    state_machine = load("item-processor.json")
    processor = state_machine["States"]["process-items"]["ItemProcessor"]
    processor["States"]["forgotten"] = {"Type": "Pass", "End": True}
    assert_invalid(
        lambda: valid(state_machine), "Invalid WorkflowDefinition: 1 states have no transition path"
    )


def test_unreachable_state_inside_a_parallel_branch_is_counted():
    state_machine = kitchensink()
    branch = state_machine["States"]["parallel-state"]["Branches"][0]
    branch["States"]["forgotten"] = {"Type": "Succeed"}
    assert_invalid(
        lambda: valid(state_machine), "Invalid WorkflowDefinition: 1 states have no transition path"
    )


def test_unreachable_parallel_state_counts_itself_and_its_branch_states():
    state_machine = kitchensink()
    state_machine["States"]["map-state"]["Next"] = "end-state"
    state_machine["States"]["second-state"]["Next"] = "map-state"
    # parallel-state and branch1 and branch2 are unreachable now.
    assert_invalid(
        lambda: valid(state_machine), "Invalid WorkflowDefinition: 3 states have no transition path"
    )


def test_unreachable_cycle_is_pruned():
    state_machine = kitchensink()
    state_machine["States"]["loop-a"] = {"Type": "Pass", "Next": "loop-b"}
    state_machine["States"]["loop-b"] = {"Type": "Pass", "Next": "loop-a"}
    assert_invalid(
        lambda: valid(state_machine), "Invalid WorkflowDefinition: 2 states have no transition path"
    )


def test_count_states_counts_every_depth():
    assert count_states(kitchensink()) == 8
    assert count_states(load("item-processor.json")) == 7


# resources/workflow_definitions_test.go: TestRemoveInactiveStates


def test_remove_inactive_states_removes_states_with_no_path_to_them():
    state_machine = kitchensink()
    state_machine["StartAt"] = "second-state"
    remove_inactive_states(state_machine)
    assert top_level_state_names(state_machine) == [
        "second-state",
        "parallel-state",
        "map-state",
        "end-state",
    ]


def test_remove_inactive_states_removes_states_even_if_one_is_left():
    state_machine = kitchensink()
    state_machine["StartAt"] = "end-state"
    remove_inactive_states(state_machine)
    assert top_level_state_names(state_machine) == ["end-state"]


def test_remove_inactive_states_fails_if_links_are_missing():
    state_machine = kitchensink()
    del state_machine["States"]["second-state"]
    assert_invalid(
        lambda: remove_inactive_states(state_machine),
        "invalid transition in 'start-state': 'second-state'",
    )


def test_remove_inactive_states_fails_if_start_at_is_missing():
    state_machine = kitchensink()
    state_machine["StartAt"] = ""
    assert_invalid(lambda: remove_inactive_states(state_machine), "State  not found in StateMachine")


def test_remove_inactive_states_keeps_all_states_if_start_at_does_not_change():
    state_machine = kitchensink()
    remove_inactive_states(state_machine)
    assert state_machine == kitchensink()


def test_remove_inactive_states_works_with_choice_and_fail_states():
    state_machine = load("aws-choice.json")
    remove_inactive_states(state_machine)
    assert state_machine == load("aws-choice.json")
    assert_invalid(
        lambda: remove_inactive_states(load("aws-choice-invalid-default.json")),
        "invalid transition in 'ChoiceState': 'MissingDefaultState'",
    )


def test_remove_inactive_states_fails_if_a_parallel_branch_is_malformed():
    assert_invalid(
        lambda: remove_inactive_states(load("parallel-branch-without-end.json")),
        "Must either be an End state, Choice state, or have a valid Next state",
    )


def test_remove_inactive_states_fails_if_a_map_iterator_is_malformed():
    assert_invalid(
        lambda: remove_inactive_states(load("map-iterator-dangling-next.json")),
        "invalid transition in 'mapStateStart': 'mapStateBad'",
    )


# Resume: prune_unreachable_states


def test_prune_unreachable_states_starts_at_the_given_state_on_a_copy():
    state_machine = kitchensink()
    pruned = prune_unreachable_states(state_machine, "parallel-state")
    assert pruned["StartAt"] == "parallel-state"
    assert top_level_state_names(pruned) == ["parallel-state", "map-state", "end-state"]
    assert state_machine == kitchensink()
    pruned["States"]["end-state"]["Resource"] = "changed"
    assert state_machine["States"]["end-state"]["Resource"] == "fake-resource-5"


def test_prune_unreachable_states_without_start_at_keeps_the_definition():
    assert prune_unreachable_states(kitchensink()) == kitchensink()


def test_prune_unreachable_states_keeps_states_reachable_through_a_loop():
    state_machine = load("aws-choice.json")
    # NextState loops back to FirstState, which is then reachable from ChoiceState.
    del state_machine["States"]["NextState"]["End"]
    state_machine["States"]["NextState"]["Next"] = "FirstState"
    pruned = prune_unreachable_states(state_machine, "ChoiceState")
    assert set(top_level_state_names(pruned)) == set(top_level_state_names(state_machine))


def test_prune_unreachable_states_to_a_missing_state_is_rejected():
    assert_invalid(
        lambda: prune_unreachable_states(kitchensink(), "branch1"),
        "State branch1 not found in StateMachine",
    )


# Walks: top_level_state_names, find_state


def test_top_level_state_names_are_in_document_order():
    assert top_level_state_names(kitchensink()) == [
        "start-state",
        "second-state",
        "parallel-state",
        "map-state",
        "end-state",
    ]
    assert top_level_state_names({}) == []


@pytest.mark.parametrize(
    ("fixture", "name", "resource"),
    [
        ("kitchensink.json", "start-state", "fake-resource-1"),
        ("kitchensink.json", "branch2", "fake-resource-4"),
        ("kitchensink.json", "mapStateStart", "fake-resource-5"),
        ("item-processor.json", "process-item", "glue:process-item-job"),
        ("item-processor.json", "report", "arn:aws:states:us-east-1:123456789012:activity:report"),
    ],
)
def test_find_state_searches_branches_and_iterators(fixture, name, resource):
    assert find_state(load(fixture), name)["Resource"] == resource


def test_find_state_finds_non_task_states_inside_an_item_processor():
    assert find_state(load("item-processor.json"), "check-item")["Type"] == "Choice"


def test_find_state_of_a_missing_state_is_none():
    assert find_state(kitchensink(), "nowhere") is None
    assert find_state({}, "nowhere") is None
