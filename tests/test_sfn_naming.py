"""Tests for executor.sfn_naming: state machine names, ARNs, tags and the deployable definition
(the reference's TestStateMachineName, TestStateMachineWithFullActivityARNsAndParameters and
TestStateMachineWithDefaultRetriers, with the contract's changes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from executor import sfn_naming
from executor.sfn_naming import (
    DEFAULT_ACTIVITY_HEARTBEAT_SECONDS,
    DEFAULT_RETRIER,
    StateMachineNameParts,
    activity_arn,
    activity_names_in,
    execution_arn,
    parse_state_machine_name,
    resolve_state_machine,
    state_machine_arn,
    state_machine_name,
    state_machine_tags,
)
from workflow_manager.domain.aws import MAX_NAME_LENGTH
from workflow_manager.domain.errors import InvalidInput
from workflow_manager.domain.models import StateResource, StateResourceType

FIXTURES = Path(__file__).parent / "fixtures" / "sfn_naming"
NS = "my-env"
REGION = "us-west-2"
ACCOUNT = "123456789012"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def no_state_resources(namespace: str, name: str) -> StateResource | None:
    return None


def resolve(machine: dict[str, Any], lookup=no_state_resources, **kwargs: Any) -> dict[str, Any]:
    return resolve_state_machine(machine, NS, REGION, ACCOUNT, lookup, **kwargs)


def task(resource: str, **fields: Any) -> dict[str, Any]:
    return {"StartAt": "s", "States": {"s": {"Type": "Task", "Resource": resource, "End": True, **fields}}}


def resolved_task(resource: str, lookup=no_state_resources, **fields: Any) -> dict[str, Any]:
    return resolve(task(resource, **fields), lookup)["States"]["s"]


def activity(resource: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:activity:{NS}--{resource}"


# Names


def test_state_machine_name_matches_the_reference_example():
    name = state_machine_name("production", "cil-reliability-dashboard:sfn", 3, "cil")
    assert name == "production--cil-reliability-dashboard-sfn--3--cil"


def test_state_machine_name_replaces_every_forbidden_character():
    forbidden = ' <>{}[]?*"#%\\^|~`$&,;:/'
    assert state_machine_name("ns", f"a{forbidden}b", 1, "start") == f"ns--a{'-' * len(forbidden)}b--1--start"


def test_state_machine_name_replaces_control_characters_and_other_whitespace():
    assert state_machine_name("ns", "a\tb\nc\x7fd", 1, "s") == "ns--a-b-c-d--1--s"


def test_long_state_machine_name_is_shortened_deterministically_and_uniquely():
    long_name = "a-very-long-workflow-definition-name-" * 3
    first = state_machine_name("production", long_name, 12, "start-state-one")
    second = state_machine_name("production", long_name, 12, "start-state-two")

    assert len(first) == MAX_NAME_LENGTH
    assert len(second) == MAX_NAME_LENGTH
    assert first != second
    assert first == state_machine_name("production", long_name, 12, "start-state-one")
    assert first.startswith("production--a-very-long-workflow-definition-name-")


def test_name_of_exactly_the_limit_is_kept():
    name = state_machine_name("ns", "n" * (MAX_NAME_LENGTH - len("ns--n--1--s") + 1), 1, "s")
    assert len(name) == MAX_NAME_LENGTH
    assert name.endswith("--1--s")


def test_parse_state_machine_name_round_trips():
    name = state_machine_name("production", "cil-reliability-dashboard", 3, "cil")
    assert parse_state_machine_name(name) == StateMachineNameParts(
        "production", "cil-reliability-dashboard", 3, "cil"
    )


@pytest.mark.parametrize("name", ["a--b--c", "a--b--1--c--d", "a--b--x--c"])
def test_parse_rejects_names_without_four_parts_and_an_integer_version(name):
    with pytest.raises(ValueError):
        parse_state_machine_name(name)


def test_parse_rejects_a_shortened_name():
    with pytest.raises(ValueError, match="shortened"):
        parse_state_machine_name(state_machine_name("ns", "x" * 100, 1, "start"))


# ARNs


def test_arns():
    assert state_machine_arn(REGION, ACCOUNT, "sm") == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:sm"
    assert (
        execution_arn(REGION, ACCOUNT, "sm", "wf-id")
        == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:sm:wf-id"
    )
    assert activity_arn(REGION, ACCOUNT, "ns--act") == f"arn:aws:states:{REGION}:{ACCOUNT}:activity:ns--act"


# Resource resolution


def test_plain_resource_becomes_a_namespaced_activity():
    assert resolved_task("fake-resource")["Resource"] == activity("fake-resource")


def test_lambda_resource_becomes_a_namespaced_function_arn():
    state = resolved_task("lambda:my-function")
    assert state["Resource"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{NS}--my-function"


@pytest.mark.parametrize(
    "parameters, expected",
    [
        (None, {"JobName": f"{NS}--my-job"}),
        ({"Arguments.$": "$.args"}, {"JobName": f"{NS}--my-job", "Arguments.$": "$.args"}),
        (
            {"Arguments": {"--flag": "value"}},
            {"JobName": f"{NS}--my-job", "Arguments": {"--flag": "value"}},
        ),
    ],
    ids=["no-parameters", "arguments-path", "explicit-arguments"],
)
def test_glue_resource_starts_the_namespaced_job_and_keeps_other_parameters(parameters, expected):
    fields = {} if parameters is None else {"Parameters": parameters}
    state = resolved_task("glue:my-job", **fields)
    assert state["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
    assert state["Parameters"] == expected


def test_batch_resource_submits_the_job_definition_with_a_valid_job_name():
    state = resolved_task("batch:my-job-def:3", Parameters={"ContainerOverrides.$": "$.overrides"})
    assert state["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    assert state["Parameters"] == {
        "ContainerOverrides.$": "$.overrides",
        "JobDefinition": "my-job-def:3",
        "JobName": "s",
    }


def test_batch_job_queue_argument_is_a_default_the_definition_can_override():
    machine = task("batch:def")
    machine["States"]["own-queue"] = {
        "Type": "Task",
        "Resource": "batch:def",
        "Parameters": {"JobQueue": "their-queue", "JobName.$": "$.name"},
        "End": True,
    }
    states = resolve(machine, job_queue="our-queue")["States"]
    assert states["s"]["Parameters"]["JobQueue"] == "our-queue"
    assert states["own-queue"]["Parameters"] == {
        "JobQueue": "their-queue",
        "JobName.$": "$.name",
        "JobDefinition": "def",
    }


@pytest.mark.parametrize(
    "state_name, job_name",
    [("step one", "step-one"), ("_private:step", "private-step"), ("x" * 200, "x" * 128), ("::", "job")],
)
def test_batch_job_name_is_valid_for_batch(state_name, job_name):
    assert sfn_naming.batch_job_name(state_name) == job_name


def test_full_arn_is_used_as_is():
    arn = "arn:aws:states:::sqs:sendMessage"
    assert resolved_task(arn)["Resource"] == arn


@pytest.mark.parametrize("resource", ["fake-resource", "lambda:fn", "glue:job", "batch:def"])
def test_state_resource_wins_over_the_other_rules(resource):
    uri = f"arn:aws:states:{REGION}:{ACCOUNT}:activity:elsewhere"
    looked_up: list[tuple[str, str]] = []

    def lookup(namespace: str, name: str) -> StateResource | None:
        looked_up.append((namespace, name))
        return StateResource(name=name, namespace=namespace, uri=uri, type=StateResourceType.ACTIVITY_ARN)

    state = resolved_task(resource, lookup)
    assert state["Resource"] == uri
    assert "Parameters" not in state
    assert looked_up == [(NS, resource)]


def test_job_definition_state_resource_is_submitted_to_batch():
    uri = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/fake:1"

    def lookup(namespace: str, name: str) -> StateResource | None:
        return StateResource(name, namespace, uri=uri, type=StateResourceType.JOB_DEFINITION_ARN)

    state = resolved_task("fake-resource", lookup)
    assert state["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    assert state["Parameters"]["JobDefinition"] == uri


def test_state_resource_with_a_plain_name_uri_is_that_activity():
    def lookup(namespace: str, name: str) -> StateResource | None:
        return StateResource(name, namespace, uri="shared-worker", type=StateResourceType.ACTIVITY_ARN)

    state = resolved_task("fake-resource", lookup)
    assert state["Resource"] == f"arn:aws:states:{REGION}:{ACCOUNT}:activity:shared-worker"


def test_state_resource_without_uri_is_ignored():
    def lookup(namespace: str, name: str) -> StateResource | None:
        return StateResource(name, namespace, uri="")

    assert resolved_task("fake-resource", lookup)["Resource"] == activity("fake-resource")


def test_resolution_recurses_into_parallel_branches_and_map_iterators():
    states = resolve(load("kitchensink.json"))["States"]

    assert states["start-state"]["Resource"] == activity("fake-resource-1")
    branches = states["parallel-state"]["Branches"]
    assert branches[0]["States"]["branch1"]["Resource"] == activity("fake-resource-3")
    assert (
        branches[1]["States"]["branch2"]["Resource"]
        == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{NS}--fake-function-4"
    )
    iterator_task = states["map-state"]["Iterator"]["States"]["mapStateStart"]
    assert iterator_task["Resource"] == activity("fake-resource-5")
    processor_task = states["item-processor-map"]["ItemProcessor"]["States"]["processor-start"]
    assert processor_task["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
    assert processor_task["Parameters"] == {"JobName": f"{NS}--fake-glue-job-6"}


def test_map_state_forwards_the_execution_name():
    states = resolve(load("kitchensink.json"))["States"]
    assert states["map-state"]["Parameters"] == {"_EXECUTION_NAME.$": "$._EXECUTION_NAME"}


def test_map_state_with_item_selector_forwards_the_execution_name_there():
    state = resolve(load("kitchensink.json"))["States"]["item-processor-map"]
    assert state["ItemSelector"] == {
        "value.$": "$$.Map.Item.Value",
        "_EXECUTION_NAME.$": "$._EXECUTION_NAME",
    }
    assert "Parameters" not in state


def test_map_state_keeps_an_existing_execution_name_parameter():
    machine = load("kitchensink.json")
    machine["States"]["map-state"]["Parameters"] = {
        "_EXECUTION_NAME.$": "$.custom",
        "item.$": "$$.Map.Item.Value",
    }
    state = resolve(machine)["States"]["map-state"]
    assert state["Parameters"] == {"_EXECUTION_NAME.$": "$.custom", "item.$": "$$.Map.Item.Value"}


def test_jsonata_glue_task_gets_arguments_and_map_is_not_given_a_path():
    machine = {
        "QueryLanguage": "JSONata",
        "StartAt": "glue",
        "States": {
            "glue": {"Type": "Task", "Resource": "glue:job", "Next": "map"},
            "map": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "t",
                    "States": {"t": {"Type": "Task", "Resource": "r", "End": True}},
                },
                "End": True,
            },
        },
    }
    states = resolve(machine)["States"]
    assert states["glue"]["Arguments"] == {"JobName": f"{NS}--job"}
    assert "Parameters" not in states["glue"]
    assert "Parameters" not in states["map"] and "ItemSelector" not in states["map"]


@pytest.mark.parametrize(
    "machine, message",
    [
        (
            {"StartAt": "p", "States": {"p": {"Type": "Parallel", "Branches": [None], "End": True}}},
            "every branch of Parallel state 'p' must be an object",
        ),
        (
            {"StartAt": "m", "States": {"m": {"Type": "Map", "End": True}}},
            "Map states must contain an iterator with at least one state",
        ),
        ({"StartAt": "t", "States": {"t": {"Type": "Task", "End": True}}}, "has no Resource"),
        (task("x" * 80), "longer than 80"),
        (task("bad name"), "does not allow"),
        (task("glue:job", Parameters="not-an-object"), "must be an object"),
    ],
    ids=["nil-branch", "nil-iterator", "no-resource", "long-activity", "bad-activity", "bad-parameters"],
)
def test_undeployable_definitions_are_rejected(machine, message):
    with pytest.raises(InvalidInput, match=message):
        resolve(machine)


# Default retrier


def test_default_retrier_is_prepended_before_a_states_all_retrier():
    state = resolve(load("retriers.json"))["States"]["states-all"]
    assert state["Retry"] == [DEFAULT_RETRIER, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}]


def test_default_retrier_is_not_added_when_sfncli_command_terminated_is_named():
    original = load("retriers.json")
    state = resolve(original)["States"]["custom"]
    assert state["Retry"] == original["States"]["custom"]["Retry"]


def test_default_retrier_is_added_to_a_task_without_retry_and_inside_a_map():
    states = resolve(load("retriers.json"))["States"]
    assert states["no-retry"]["Retry"] == [DEFAULT_RETRIER]
    assert states["map"]["Iterator"]["States"]["inner"]["Retry"] == [DEFAULT_RETRIER]


def test_default_retrier_is_added_inside_parallel_branches():
    branches = resolve(load("kitchensink.json"))["States"]["parallel-state"]["Branches"]
    assert branches[0]["States"]["branch1"]["Retry"] == [DEFAULT_RETRIER]


@pytest.mark.parametrize("state_name", ["choose", "pass", "wait", "map", "done"])
def test_no_retry_is_added_to_states_other_than_tasks(state_name):
    assert "Retry" not in resolve(load("retriers.json"))["States"][state_name]


def test_default_retrier_is_not_shared_between_states():
    states = resolve(load("retriers.json"))["States"]
    states["no-retry"]["Retry"][0]["MaxAttempts"] = 99
    assert states["states-all"]["Retry"][0]["MaxAttempts"] == 10
    assert DEFAULT_RETRIER["MaxAttempts"] == 10


# Copying


# Default HeartbeatSeconds on activity tasks


def _activity_state_resource(namespace: str, name: str) -> StateResource | None:
    if name != "external":
        return None
    return StateResource(
        name=name, namespace=namespace, uri="team--worker", type=StateResourceType.ACTIVITY_ARN
    )


@pytest.mark.parametrize(
    "resource, lookup",
    [
        ("plain-activity", no_state_resources),
        (f"arn:aws:states:{REGION}:{ACCOUNT}:activity:other--worker", no_state_resources),
        ("external", _activity_state_resource),
    ],
)
def test_activity_task_without_heartbeat_gets_the_default_heartbeat_seconds(resource, lookup):
    state = resolved_task(resource, lookup)
    assert state["Resource"].split(":")[5] == "activity"
    assert state["HeartbeatSeconds"] == DEFAULT_ACTIVITY_HEARTBEAT_SECONDS == 300


@pytest.mark.parametrize(
    "resource",
    [
        "lambda:fn",
        "glue:job",
        "batch:job-definition",
        "arn:aws:states:::ecs:runTask.sync",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn",
    ],
)
def test_tasks_other_than_activities_get_no_heartbeat_seconds(resource):
    assert "HeartbeatSeconds" not in resolved_task(resource)


@pytest.mark.parametrize(
    "fields",
    [
        {"HeartbeatSeconds": 30},
        {"HeartbeatSecondsPath": "$.heartbeat"},
        {"TimeoutSeconds": 300},  # HeartbeatSeconds must be below it; the timeout is the bound
        {"TimeoutSeconds": 60},
        {"TimeoutSecondsPath": "$.timeout"},
    ],
)
def test_activity_task_keeps_its_own_heartbeat_or_timeout_bound(fields):
    state = resolved_task("plain-activity", **fields)
    bounds = ("HeartbeatSeconds", "HeartbeatSecondsPath", "TimeoutSeconds", "TimeoutSecondsPath")
    assert {key: state[key] for key in bounds if key in state} == fields


def test_activity_task_with_a_longer_timeout_also_gets_the_default_heartbeat():
    assert resolved_task("plain-activity", TimeoutSeconds=3600)["HeartbeatSeconds"] == 300


def test_default_heartbeat_is_configurable_and_zero_or_none_adds_none():
    machine = task("plain-activity")
    assert resolve(machine, activity_heartbeat_seconds=60)["States"]["s"]["HeartbeatSeconds"] == 60
    assert "HeartbeatSeconds" not in resolve(machine, activity_heartbeat_seconds=0)["States"]["s"]
    assert "HeartbeatSeconds" not in resolve(machine, activity_heartbeat_seconds=None)["States"]["s"]


def test_default_heartbeat_is_added_at_every_depth():
    states = resolve(load("retriers.json"))["States"]
    assert states["map"]["Iterator"]["States"]["inner"]["HeartbeatSeconds"] == 300
    branches = resolve(load("kitchensink.json"))["States"]["parallel-state"]["Branches"]
    inner = [state for branch in branches for state in branch["States"].values() if state["Type"] == "Task"]
    assert inner and all(
        state.get("HeartbeatSeconds") == 300
        for state in inner
        if state["Resource"].split(":")[5] == "activity"
    )


def test_input_definition_is_not_mutated():
    original = load("kitchensink.json")
    before = copy.deepcopy(original)
    resolved = resolve(original)
    assert original == before
    assert resolved != before


# Activities


def test_activity_names_in_lists_activities_at_every_depth_before_and_after_resolution():
    machine = load("kitchensink.json")
    expected = {f"{NS}--fake-resource-{n}" for n in (1, 2, 3, 5)}
    assert activity_names_in(machine, NS) == expected
    assert activity_names_in(resolve(machine), NS) == expected


def test_activity_names_in_skips_activity_arns_outside_the_namespace():
    machine = task(f"arn:aws:states:{REGION}:{ACCOUNT}:activity:other-env--worker")
    assert activity_names_in(machine, NS) == set()


# Tags


def test_state_machine_tags_carry_the_start_at_state():
    tags = state_machine_tags(NS, "my-workflow", 4, "second-state", {})
    assert tags == {
        "application": "my-workflow",
        "environment": NS,
        "workflow-definition-name": "my-workflow",
        "workflow-definition-version": "4",
        "workflow-definition-start-at": "second-state",
    }


def test_default_tags_override_and_only_strings_are_kept():
    tags = state_machine_tags(NS, "wf", 1, "start", {"application": "billing", "team": "data", "n": 3})
    assert tags["application"] == "billing"
    assert tags["team"] == "data"
    assert "n" not in tags
